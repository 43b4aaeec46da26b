"""Hypothesis state machine: writes, flushes, crashes, cache loss and return,
bit flips and rebuild steps interleaved against a model of what must be
readable.

Model: ``cur[b]`` is what a read of block ``b`` must return.  ``flushed[b]``
is the value covered by the last completed flush and ``since[b]`` the values
written after it; after a crash a block may hold its flushed value or any of
the values written since (the device contract), and must read back stably.
"""

from __future__ import annotations

from typing import Dict, Set

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from blockdev.device import MemoryDevice
from blockdev.faulty import FaultyDevice
from blockdev.superdisk import Layout, SuperDisk

BS = 4096
NBLOCKS = 64
SIZE = NBLOCKS * BS
REGION = 4 * BS
LEG = Layout.for_size(SIZE, BS, REGION).leg_size
ZERO = bytes(BS)


def val(tag: int) -> bytes:
    return bytes([tag % 255 + 1]) * BS


class SuperDiskMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.d = FaultyDevice(MemoryDevice(LEG, name="d"), name="d")
        self.c = FaultyDevice(MemoryDevice(LEG, name="c"), name="c")
        self.sd = self._open(create=True)
        self.cur: Dict[int, bytes] = {}
        self.flushed: Dict[int, bytes] = {}
        self.since: Dict[int, Set[bytes]] = {}
        self.tag = 0

    def _open(self, create: bool = False, cache: bool = True) -> SuperDisk:
        return SuperDisk.open(durable=self.d, cache=self.c if cache else None, create=create,
                              size=SIZE if create else None, region_size=REGION,
                              background_rebuild=False, rebuild_rate=None, bitmap_clear_delay=0.0)

    # -- rules --------------------------------------------------------------------------
    @rule(block=st.integers(0, NBLOCKS - 1), n=st.integers(1, 4))
    def write(self, block: int, n: int) -> None:
        n = min(n, NBLOCKS - block)
        datas = []
        for i in range(n):
            self.tag += 1
            datas.append(val(self.tag))
        self.sd.write(block * BS, b"".join(datas))
        for i, v in enumerate(datas):
            self.cur[block + i] = v
            self.since.setdefault(block + i, set()).add(v)

    @rule(block=st.integers(0, NBLOCKS - 1))
    def discard(self, block: int) -> None:
        self.sd.discard(block * BS, BS)
        self.cur[block] = ZERO
        self.since.setdefault(block, set()).update({ZERO})

    @rule()
    def flush(self) -> None:
        self.sd.flush()
        self.flushed = dict(self.cur)
        self.since.clear()

    @rule(block=st.integers(0, NBLOCKS - 1), n=st.integers(1, 8))
    def read(self, block: int, n: int) -> None:
        n = min(n, NBLOCKS - block)
        got = self.sd.read(block * BS, n * BS)
        want = b"".join(self.cur.get(block + i, ZERO) for i in range(n))
        assert got == want

    @rule(mode=st.sampled_from(["all", "random"]), seed=st.integers(0, 1000))
    def crash(self, mode: str, seed: int) -> None:
        self.d.crash(mode, seed=seed)
        self.c.crash(mode, seed=seed + 1)
        self.sd.abandon()
        self.d.restart()
        self.c.restart()
        self.sd = self._open()
        for b, values in self.since.items():
            got = self.sd.read(b * BS, BS)
            allowed = values | {self.flushed.get(b, ZERO)}
            assert got in allowed, f"block {b} after crash holds a value never written"
            self.cur[b] = got
        self.flushed = dict(self.cur)
        self.since.clear()

    @rule()
    def lose_cache(self) -> None:
        self.c.lose()

    @precondition(lambda self: self.c.lost)
    @rule(wipe=st.booleans(), reopen=st.booleans())
    def cache_returns(self, wipe: bool, reopen: bool) -> None:
        self.c.revive(wipe=wipe)
        if reopen:
            self.sd.close()
            self.sd = self._open()
        else:
            st_ = self.sd.status()
            if st_["legs"]["cache"]["state"] == "failed":
                self.sd.add_cache(self.c)

    @rule()
    def reopen_without_cache_then_with(self) -> None:
        self.sd.close()
        self.sd = self._open(cache=False)
        self.tag += 1
        self.sd.write(0, val(self.tag))          # a write while the cache is away
        self.cur[0] = val(self.tag)
        self.since.setdefault(0, set()).add(val(self.tag))
        self.sd.flush()
        self.flushed = dict(self.cur)
        self.since.clear()
        self.sd.close()
        self.sd = self._open()

    @rule(block=st.integers(0, NBLOCKS - 1), seed=st.integers(0, 100))
    def flip_cache(self, block: int, seed: int) -> None:
        self.c.flip_bits(self.sd._layout.data_offset // BS + block, seed=seed)

    @precondition(lambda self: self.sd.status()["state"] == "clean")
    @rule(block=st.integers(0, NBLOCKS - 1), seed=st.integers(0, 100))
    def flip_durable(self, block: int, seed: int) -> None:
        # Reads are served from the cache, so durable damage is found by a
        # scrub (and must be repaired before a crash could re-checksum the
        # region from durable: a documented non-guarantee).
        # Only blocks with content: bytes of an unused (zero-entry) durable block
        # are never verified, and damage there inside a region that is dirty
        # at a crash would be adopted by the re-checksum (documented).
        if self.cur.get(block, ZERO) == ZERO:
            return
        self.read(block, 1)                      # the cache copy is good before we damage durable
        if self.sd.status()["state"] != "clean":
            return
        self.d.flip_bits(self.sd._layout.data_offset // BS + block, seed=seed)
        res = self.sd.scrub()
        assert res["durable_bad"] == 1, res
        assert res["unrecoverable"] == 0
        self.sd.scrub(repair=True)
        assert self.sd.scrub()["durable_bad"] == 0
        self.read(block, 1)

    @rule(nbytes=st.integers(1, 40).map(lambda k: k * BS))
    def rebuild_step(self, nbytes: int) -> None:
        self.sd.rebuild_step(nbytes)

    @invariant()
    def consistent(self) -> None:
        self.sd._check()

    def teardown(self) -> None:
        try:
            if self.c.lost:
                self.c.revive(wipe=False)
            if self.sd.status()["legs"]["cache"]["state"] == "failed":
                self.sd.add_cache(self.c)
            self.sd.rebuild(wait=True)
            self.sd.flush()
            assert self.sd.status()["state"] == "clean"
            lay = self.sd._layout
            for b in range(NBLOCKS):
                assert self.sd.read(b * BS, BS) == self.cur.get(b, ZERO)
                if self.sd._table[b]:
                    off = lay.data_offset + b * BS
                    assert self.d.inner.read(off, BS) == self.c.inner.read(off, BS), f"legs differ at {b}"
            res = self.sd.scrub()
            assert res["mismatches"] == res["durable_bad"] == res["cache_bad"] == 0, res
        finally:
            self.sd.close()


SuperDiskMachine.TestCase.settings = settings(
    max_examples=30, stateful_step_count=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestSuperDiskStateMachine = SuperDiskMachine.TestCase
