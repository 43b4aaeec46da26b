"""The DB against a dict model (lsm.testing.DBStateMachine) on both targets:
a directory (PosixFS) and a BlockFS on a MemoryDevice; leveled and tiered;
odd options.  (CI runs this file twice: native core and LSM_PURE=1.)"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

import blockdev
from lsm.testing import DBStateMachine

_SETTINGS = settings(max_examples=60, stateful_step_count=60, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])


class DirectoryMachine(DBStateMachine):
    pass


class BlockDeviceMachine(DBStateMachine):
    def make_target(self):
        return blockdev.MemoryDevice(8 << 20, block_size=4096)


class OddOptionsMachine(DBStateMachine):
    """No block cache, no bloom filter, no compression, a table cache smaller
    than the table count, one background thread."""
    options = dict(DBStateMachine.options, block_cache_size=0, bloom_bits_per_key=0,
                   compression=None, max_open_files=10, max_background_jobs=1)


class TieredMachine(DBStateMachine):
    options = dict(DBStateMachine.options, compaction_style="tiered", min_merge_width=2)


TestDirectoryMachine = DirectoryMachine.TestCase
TestDirectoryMachine.settings = _SETTINGS
TestBlockDeviceMachine = BlockDeviceMachine.TestCase
TestBlockDeviceMachine.settings = _SETTINGS
TestOddOptionsMachine = OddOptionsMachine.TestCase
TestOddOptionsMachine.settings = settings(_SETTINGS, max_examples=20)
TestTieredMachine = TieredMachine.TestCase
TestTieredMachine.settings = settings(_SETTINGS, max_examples=15)


class SoakDirectoryMachine(DBStateMachine):
    pass


class SoakBlockDeviceMachine(BlockDeviceMachine):
    pass


_SOAK = settings(max_examples=400, stateful_step_count=100, deadline=None,
                 suppress_health_check=list(HealthCheck))
TestSoakDirectoryMachine = SoakDirectoryMachine.TestCase
TestSoakDirectoryMachine.settings = _SOAK
TestSoakDirectoryMachine.pytestmark = [pytest.mark.slow]
TestSoakBlockDeviceMachine = SoakBlockDeviceMachine.TestCase
TestSoakBlockDeviceMachine.settings = _SOAK
TestSoakBlockDeviceMachine.pytestmark = [pytest.mark.slow]
