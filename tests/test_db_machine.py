"""The DB against a dict model (lsm.testing.DBStateMachine) on both targets:
a directory (PosixFS) and a BlockFS on a MemoryDevice; leveled and tiered."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

import blockdev
from lsm.testing import DBStateMachine

_SETTINGS = settings(max_examples=40, stateful_step_count=60, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])


class DirectoryMachine(DBStateMachine):
    pass


class BlockDeviceMachine(DBStateMachine):
    def make_target(self):
        return blockdev.MemoryDevice(8 << 20, block_size=4096)


class TieredMachine(DBStateMachine):
    options = dict(DBStateMachine.options, compaction_style="tiered", min_merge_width=2)


TestDirectoryMachine = DirectoryMachine.TestCase
TestDirectoryMachine.settings = _SETTINGS
TestBlockDeviceMachine = BlockDeviceMachine.TestCase
TestBlockDeviceMachine.settings = _SETTINGS
TestTieredMachine = TieredMachine.TestCase
TestTieredMachine.settings = settings(_SETTINGS, max_examples=15)
