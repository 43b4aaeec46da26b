"""SuperDisk scenarios: one test per failure story of issue 3, plus API checks."""

from __future__ import annotations

import os
import threading

import pytest

from blockdev.device import MemoryDevice
from blockdev.errors import (
    ArgumentTypeError,
    CorruptionError,
    DurableLegError,
    InvalidArgumentError,
    ReadOnlyError,
    UnsupportedFormatError,
)
from blockdev.faulty import FaultyDevice
from blockdev.superdisk import Layout, SuperDisk, format_status

BS = 4096
SIZE = 1 << 20               # 256 data blocks
REGION = 64 * 1024           # 16 blocks per region -> 16 regions
LEG = Layout.for_size(SIZE, BS, REGION).leg_size


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def legs(name_d="durable", name_c="cache"):
    return (FaultyDevice(MemoryDevice(LEG, name=name_d), name=name_d),
            FaultyDevice(MemoryDevice(LEG, name=name_c), name=name_c))


def open_sd(d, c, create=False, **kw):
    opts = dict(region_size=REGION, background_rebuild=False, rebuild_rate=None, bitmap_clear_delay=0.0)
    opts["size"] = SIZE if create else None
    opts.update(kw)
    return SuperDisk.open(durable=d, cache=c, create=create, **opts)


def new_array(**kw):
    d, c = legs()
    sd = open_sd(d, c, create=True, **kw)
    sd.rebuild(wait=True)
    assert sd.status()["state"] == "clean"
    return sd, d, c


def pattern(block: int, tag: int = 0) -> bytes:
    return bytes([(block * 7 + tag) % 251 + 1]) * BS


def fill(sd, blocks, tag=0):
    for b in blocks:
        sd.write(b * BS, pattern(b, tag))


def data_block(sd, dev, b):
    return dev.inner.read(sd._layout.data_offset + b * BS, BS)


def assert_legs_identical(sd, d, c):
    """Every block with content has the same bytes on both legs, and the
    checksum areas are identical."""
    lay = sd._layout
    sd._persist_csums()
    for b in range(lay.nblocks):
        if sd._table[b]:
            assert data_block(sd, d, b) == data_block(sd, c, b), f"block {b} differs"
    assert (d.inner.read(lay.csum_offset, lay.csum_blocks * BS)
            == c.inner.read(lay.csum_offset, lay.csum_blocks * BS))


def crash_and_reopen(sd, d, c, mode="all", seed=0, **kw):
    d.crash(mode, seed=seed)
    c.crash(mode, seed=seed + 1)
    sd.abandon()
    d.restart()
    c.restart()
    return open_sd(d, c, **kw)


# -- basics ---------------------------------------------------------------------------
def test_create_roundtrip_status_and_reopen():
    sd, d, c = new_array()
    assert sd.size == SIZE and sd.block_size == BS
    fill(sd, range(0, 256, 3))
    sd.flush()
    for b in range(0, 256, 3):
        assert sd.read(b * BS, BS) == pattern(b)
    assert sd.read(BS, BS) == bytes(BS)
    st = sd.status()
    assert st["state"] == "clean" and st["legs"]["cache"]["state"] == "in_sync"
    assert st["counters"]["reads_durable"] == 0 and st["counters"]["reads_cache"] > 0
    text = format_status(st)
    assert "raid1" in text and "[UU]" in text
    gen = st["generation"]
    sd.close()
    sd = open_sd(d, c)
    assert sd.status()["state"] == "clean"
    assert sd.status()["generation"] > gen
    assert sd.read(3 * BS, BS) == pattern(3)
    sd._check()
    sd.close()


def test_writes_and_reads_multi_block_and_discard():
    sd, d, c = new_array()
    data = b"".join(pattern(b, 1) for b in range(10, 30))
    sd.write(10 * BS, data)
    assert sd.read(10 * BS, 20 * BS) == data
    sd.discard(12 * BS, 4 * BS)
    assert sd.read(12 * BS, 4 * BS) == bytes(4 * BS)
    assert sd.read(16 * BS, BS) == pattern(16, 1)
    sd.flush()
    assert_legs_identical(sd, d, c)
    sd.close()


def test_arguments_are_validated():
    d, c = legs()
    with pytest.raises(UnsupportedFormatError):
        open_sd(d, c)                       # blank durable, no create
    with pytest.raises(InvalidArgumentError):
        SuperDisk.open(durable=d, cache=c, create=True, durable_failure_policy="maybe")
    with pytest.raises(ArgumentTypeError):
        SuperDisk.open(durable=d, cache=c, create="yes")  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError):
        SuperDisk.open(durable=42, create=True)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        SuperDisk.open(durable=d, cache=d, create=True)
    sd = open_sd(d, c, create=True)
    with pytest.raises(InvalidArgumentError):
        sd.read(1, BS)
    with pytest.raises(ArgumentTypeError):
        sd.rebuild_step("10")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        sd.rebuild_step(0)
    sd.close()
    with pytest.raises(InvalidArgumentError):
        open_sd(d, c, size=2 * SIZE)        # size mismatch with the array


def test_durable_passed_as_cache_is_refused():
    sd, d, c = new_array()
    sd.close()
    d2, _ = legs("other-durable", "x")
    sd2 = open_sd(d2, None, create=True)
    sd2.close()
    with pytest.raises(InvalidArgumentError):
        open_sd(d, d2)                      # another array's durable disk as cache


def test_path_legs(tmp_path):
    dp, cp = tmp_path / "durable.img", tmp_path / "cache.img"
    sd = SuperDisk.open(durable=str(dp), cache=str(cp), create=True, size=SIZE, region_size=REGION,
                        background_rebuild=False)
    sd.rebuild(wait=True)
    sd.write(0, pattern(0))
    sd.flush()
    sd.close()
    os.remove(cp)                           # the ephemeral SSD came back empty
    sd = SuperDisk.open(durable=str(dp), cache=str(cp), region_size=REGION, background_rebuild=False)
    assert sd.status()["state"] == "rebuilding"
    assert sd.read(0, BS) == pattern(0)
    sd.rebuild(wait=True)
    assert sd.status()["state"] == "clean"
    sd.close()


# -- the scenarios of issue 3 ----------------------------------------------------------------
def test_bad_sector_on_cache_served_repaired_then_served_from_cache():
    sd, d, c = new_array()
    fill(sd, range(20))
    sd.flush()
    c.add_read_error(sd._layout.data_offset // BS + 5)      # a pending sector
    assert sd.read(5 * BS, BS) == pattern(5)
    k = sd.status()["counters"]
    assert k["corrected_errors"] == 1 and k["read_errors_cache"] >= 1
    before = k["reads_durable"]
    assert sd.read(5 * BS, BS) == pattern(5)
    k = sd.status()["counters"]
    assert k["reads_durable"] == before                 # later served from the cache
    assert sd.status()["state"] == "clean"
    sd.close()


def test_repair_that_fails_ejects_cache():
    sd, d, c = new_array()
    fill(sd, range(20))
    sd.flush()
    c.add_read_error(sd._layout.data_offset // BS + 7, sticky=True)
    assert sd.read(7 * BS, BS) == pattern(7)
    st = sd.status()
    assert st["state"] == "degraded" and st["legs"]["cache"]["state"] == "failed"
    assert st["counters"]["ejections"] == 1 and st["counters"]["repair_failures"] == 1
    r = st["counters"]["reads_durable"]
    assert sd.read(3 * BS, BS) == pattern(3)
    assert sd.status()["counters"]["reads_durable"] == r + 1
    sd.write(3 * BS, pattern(3, 9))         # writes still succeed, degraded
    sd.flush()
    assert sd.read(3 * BS, BS) == pattern(3, 9)
    sd.close()


def test_many_corrected_errors_eject_and_counter_decays():
    clock = Clock()
    sd, d, c = new_array(max_corrected_errors=4, error_half_life=10.0, clock=clock)
    fill(sd, range(30))
    sd.flush()
    base = sd._layout.data_offset // BS
    for b in range(4):
        c.flip_bits(base + b, seed=b)
        assert sd.read(b * BS, BS) == pattern(b)
    assert sd.status()["state"] == "clean" and sd.error_score() == pytest.approx(4.0)
    clock.t += 100.0                         # ten half-lives later the score has decayed
    assert sd.error_score() < 0.01
    for b in range(4, 7):
        c.flip_bits(base + b, seed=b)
        assert sd.read(b * BS, BS) == pattern(b)
    assert sd.status()["state"] == "clean"   # 3 recent errors (+ decayed ones) <= 4
    for b in range(7, 9):                    # more than 4 within the window: ejected
        c.flip_bits(base + b, seed=b)
        assert sd.read(b * BS, BS) == pattern(b)
    st = sd.status()
    assert st["state"] == "degraded" and st["counters"]["ejections"] == 1
    assert st["counters"]["corrected_errors"] == 8
    sd.close()


def test_cache_lost_then_blank_full_rebuild():
    sd, d, c = new_array()
    fill(sd, range(64))
    sd.flush()
    c.lose()
    sd.write(64 * BS, pattern(64))          # the cache write fails: degraded, write succeeds
    st = sd.status()
    assert st["state"] == "degraded" and st["counters"]["ejections"] == 1
    assert sd.read(64 * BS, BS) == pattern(64)
    sd.close()
    c.revive(wipe=True)                     # SSD back blank after host maintenance
    sd = open_sd(d, c)
    st = sd.status()
    assert st["state"] == "rebuilding" and st["action"] == "recovery" and st["rebuild"]["cursor"] == 0
    assert any("blank" in n for n in st["notes"])
    for b in range(65):
        assert sd.read(b * BS, BS) == pattern(b)
    sd.rebuild(wait=True)
    assert sd.status()["state"] == "clean"
    assert_legs_identical(sd, d, c)
    sd.close()


def test_reads_during_rebuild_and_crash_mid_rebuild_resumes():
    sd, d, c = new_array()
    fill(sd, range(256))
    sd.close()
    c.revive(wipe=True)
    sd = open_sd(d, c)
    sd.rebuild_step(100 * BS)
    st = sd.status()
    assert st["rebuild"]["cursor"] == 100 * BS and st["rebuild"]["eta_seconds"] is not None
    k0 = dict(sd.status()["counters"])
    assert sd.read(10 * BS, BS) == pattern(10)        # below the cursor: cache
    assert sd.read(200 * BS, BS) == pattern(200)      # above: durable
    k1 = sd.status()["counters"]
    assert k1["reads_cache"] == k0["reads_cache"] + 1
    assert k1["reads_durable"] == k0["reads_durable"] + 1
    sd.write(10 * BS, pattern(10, 1))                 # writes on both sides of the cursor
    sd.write(200 * BS, pattern(200, 1))
    sd.flush()
    sd.rebuild_step(50 * BS)
    sd = crash_and_reopen(sd, d, c, mode="random", seed=3)
    st = sd.status()
    assert st["state"] == "rebuilding"
    assert st["rebuild"]["cursor"] == 150 * BS               # resumed from the persisted cursor
    assert sd.read(10 * BS, BS) == pattern(10, 1)
    assert sd.read(200 * BS, BS) == pattern(200, 1)
    sd.rebuild(wait=True)
    assert sd.status()["state"] == "clean"
    assert_legs_identical(sd, d, c)
    for b in range(256):
        assert sd.read(b * BS, BS) == pattern(b, 1 if b in (10, 200) else 0)
    sd.close()


def test_background_rebuild_thread_completes():
    sd, d, c = new_array()
    fill(sd, range(0, 256, 2))
    sd.close()
    c.revive(wipe=True)
    sd = open_sd(d, c, background_rebuild=True, rebuild_chunk=64 * 1024)
    sd.rebuild(wait=True)                    # joins the background thread
    assert sd.status()["state"] == "clean"
    assert_legs_identical(sd, d, c)
    sd.close()


def test_only_durable_present_at_start():
    sd, d, c = new_array()
    fill(sd, range(16))
    sd.close()
    sd = open_sd(d, None)
    st = sd.status()
    assert st["state"] == "degraded" and st["legs"]["cache"]["state"] == "missing"
    assert sd.read(3 * BS, BS) == pattern(3)
    sd.write(40 * BS, pattern(40))
    sd.flush()
    assert "[U_]" in sd.format_status()
    c2 = FaultyDevice(MemoryDevice(LEG, name="new-cache"))
    sd.add_cache(c2)
    assert sd.status()["state"] == "rebuilding"
    sd.rebuild(wait=True)
    assert sd.status()["state"] == "clean"
    assert_legs_identical(sd, d, c2)
    sd.close()


def test_writes_while_degraded_then_readd_syncs_only_dirty_regions():
    sd, d, c = new_array()
    fill(sd, range(256))
    sd.close()
    sd = open_sd(d, None)                    # cache missing at this assembly
    fill(sd, [5, 6, 100, 101, 200], tag=2)   # regions 0, 6, 12
    sd.flush()
    assert sd.status()["bitmap"]["dirty_regions"] == 3   # bits stay set while degraded
    sd.close()
    sd = open_sd(d, c)
    st = sd.status()
    assert st["state"] == "rebuilding" and st["action"] == "resync"
    assert st["rebuild"]["stale_regions"] == 3
    assert any("bitmap resync" in n for n in st["notes"])
    assert sd.read(5 * BS, BS) == pattern(5, 2)          # stale region: from durable
    sd.rebuild(wait=True)
    st = sd.status()
    assert st["state"] == "clean"
    assert st["counters"]["resynced_regions"] == 3 and st["counters"]["rebuilt_bytes"] == 0
    assert_legs_identical(sd, d, c)
    sd.flush()
    assert sd.status()["bitmap"]["dirty_regions"] == 0   # cleared lazily once in sync
    sd.close()


def test_runtime_fail_and_readd_same_cache():
    sd, d, c = new_array()
    fill(sd, range(64))
    sd.flush()
    sd.fail_cache("operator test")
    fill(sd, [1, 50], tag=3)
    sd.flush()
    sd.add_cache(c)
    st = sd.status()
    assert st["action"] == "resync" and st["rebuild"]["stale_regions"] == 2
    sd.rebuild(wait=True)
    assert_legs_identical(sd, d, c)
    assert sd.read(50 * BS, BS) == pattern(50, 3)
    sd.close()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_crash_during_writes_bitmap_resync_leaves_legs_identical(seed):
    sd, d, c = new_array()
    fill(sd, range(0, 128))
    sd.flush()
    for b in (3, 4, 70, 71, 72):              # unflushed writes, some multi-block
        sd.write(b * BS, pattern(b, 5))
    sd.write(90 * BS, b"".join(pattern(x, 5) for x in range(90, 94)))
    sd = crash_and_reopen(sd, d, c, mode="random", seed=seed)
    st = sd.status()
    assert any("unclean shutdown" in n for n in st["notes"])
    assert st["counters"]["rechecksummed_regions"] == sd._bitmap.count_dirty() > 0
    for b in range(128):                      # every block is old or new, never an error
        got = sd.read(b * BS, BS)
        assert got in (pattern(b), pattern(b, 5))
        if b not in (3, 4, 70, 71, 72, 90, 91, 92, 93):
            assert got == pattern(b)
    sd.rebuild(wait=True)
    assert sd.status()["state"] == "clean"
    assert_legs_identical(sd, d, c)
    sd.close()


def test_durable_lost_policy_fail():
    sd, d, c = new_array()
    fill(sd, range(8))
    sd.flush()
    d.lose()
    with pytest.raises(DurableLegError):
        sd.write(0, pattern(0, 1))
    with pytest.raises(DurableLegError):
        sd.write(BS, pattern(1, 1))
    with pytest.raises(DurableLegError):
        sd.read(0, BS)
    with pytest.raises(DurableLegError):
        sd.flush()
    assert sd.status()["state"] == "failed"
    sd.close()


def test_durable_lost_policy_read_only():
    sd, d, c = new_array(durable_failure_policy="read-only")
    fill(sd, range(8))
    sd.flush()
    d.lose()
    with pytest.raises(DurableLegError):
        sd.write(0, pattern(0, 1))
    with pytest.raises(ReadOnlyError):
        sd.write(BS, pattern(1, 1))
    with pytest.raises(ReadOnlyError):
        sd.discard(0, BS)
    assert sd.read(2 * BS, BS) == pattern(2)   # reads served from the cache
    assert sd.status()["state"] == "read-only"
    assert "durable" in " ".join(sd.status()["notes"])
    sd.close()


def test_stale_cache_generation_is_not_trusted():
    sd, d, c = new_array()
    fill(sd, range(32))
    sd.close()
    old_cache_image = c.inner.read(0, LEG)     # cache as of generation G
    sd = open_sd(d, c)
    fill(sd, range(32), tag=4)
    sd.close()                                  # both legs now at a later generation
    c.inner.write(0, old_cache_image)           # an old copy of the cache comes back
    sd = open_sd(d, c)
    st = sd.status()
    assert st["state"] == "rebuilding" and st["rebuild"]["cursor"] == 0
    assert any("stale" in n for n in st["notes"])
    for b in range(32):
        assert sd.read(b * BS, BS) == pattern(b, 4)
    sd.rebuild(wait=True)
    assert_legs_identical(sd, d, c)
    sd.close()


def test_durable_restored_from_older_snapshot_wins_over_cache():
    sd, d, c = new_array()
    fill(sd, range(32))
    sd.close()
    snapshot = d.inner.read(0, LEG)
    sd = open_sd(d, c)
    fill(sd, range(32), tag=6)
    fill(sd, [40])
    sd.close()
    d.inner.write(0, snapshot)                  # restore the durable disk from the snapshot
    sd = open_sd(d, c)
    st = sd.status()
    assert any("newer than durable" in n for n in st["notes"])
    for b in range(32):
        assert sd.read(b * BS, BS) == pattern(b)         # durable is the truth
    assert sd.read(40 * BS, BS) == bytes(BS)
    sd.rebuild(wait=True)
    assert_legs_identical(sd, d, c)
    assert sd.read(5 * BS, BS) == pattern(5)
    sd.close()


def test_snapshot_taken_while_open_never_returns_newer_cache_bytes():
    sd, d, c = new_array()
    fill(sd, range(64))
    sd.flush()
    snapshot = d.inner.read(0, LEG)             # crash-consistent snapshot of a running array
    fill(sd, range(64), tag=8)
    sd.flush()
    sd.abandon()
    d.inner.write(0, snapshot)
    sd = open_sd(d, c)
    for b in range(64):
        assert sd.read(b * BS, BS) == pattern(b)         # never the cache's newer bytes
    sd.close()


def test_silent_bit_flips_on_either_leg():
    sd, d, c = new_array()
    fill(sd, range(16))
    sd.flush()
    base = sd._layout.data_offset // BS
    c.flip_bits(base + 1, count=2, seed=1)                # cache: corrected from durable
    assert sd.read(BS, BS) == pattern(1)
    assert data_block(sd, c, 1) == pattern(1)
    sd.fail_cache("test")                                 # reads now come from durable
    sd.add_cache(c)
    sd.rebuild(wait=True)
    d.flip_bits(base + 2, seed=2)                         # durable: healed from the good cache
    sd.scrub()                                            # (scrub only reports)
    sd.fail_cache("route to durable")
    c.clear_faults()
    # the cache still holds a good copy, checksum-verified even while ejected
    assert sd.read(2 * BS, BS) == pattern(2)
    assert sd.status()["counters"]["durable_healed"] == 1
    assert data_block(sd, d, 2) == pattern(2)
    sd.add_cache(c)
    sd.rebuild(wait=True)
    d.flip_bits(base + 3, seed=3)                         # both legs bad: CorruptionError
    c.flip_bits(base + 3, seed=4)
    with pytest.raises(CorruptionError) as ei:
        sd.read(3 * BS, BS)
    assert ei.value.offset == 3 * BS
    assert sd.status()["counters"]["unrecoverable"] >= 1
    sd.close()


def test_scrub_reports_and_repairs():
    sd, d, c = new_array()
    fill(sd, range(32))
    sd.flush()
    base = sd._layout.data_offset // BS
    d.flip_bits(base + 4, seed=1)
    c.flip_bits(base + 9, seed=2)
    res = sd.scrub()
    assert res["durable_bad"] == 1 and res["cache_bad"] == 1 and res["mismatches"] == 2
    assert res["unrecoverable"] == 0 and res["repaired"] == 0
    res = sd.scrub(repair=True)
    assert res["repaired"] == 2
    res = sd.scrub()
    assert res["durable_bad"] == res["cache_bad"] == res["mismatches"] == 0
    assert_legs_identical(sd, d, c)
    sd.close()


def test_concurrent_writers_and_readers():
    sd, d, c = new_array(io_threads=4)
    errors = []

    def worker(t):
        try:
            for i in range(40):
                b = (t * 64 + i) % 256
                sd.write(b * BS, pattern(b, t))
                assert sd.read(b * BS, BS) == pattern(b, t)
                if i % 10 == 0:
                    sd.flush()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    sd.flush()
    assert_legs_identical(sd, d, c)
    sd._check()
    sd.close()


def test_closed_superdisk_raises():
    from blockdev.errors import ClosedError
    sd, d, c = new_array()
    sd.close()
    with pytest.raises(ClosedError):
        sd.read(0, BS)
    with pytest.raises(ClosedError):
        sd.status() if False else sd.rebuild_step(BS)


def test_foreign_cache_is_rebuilt_and_superblock_slots_and_versions():
    sd, d, c = new_array()
    fill(sd, range(8))
    sd.close()
    d2, c2 = legs("d2", "c2")
    other = open_sd(d2, c2, create=True)
    other.rebuild(wait=True)
    other.close()
    sd = open_sd(d, c2)                       # the cache of another array
    st = sd.status()
    assert st["state"] == "rebuilding" and any("another array" in n for n in st["notes"])
    sd.rebuild(wait=True)
    assert sd.read(2 * BS, BS) == pattern(2)
    sd.close()
    # a torn / corrupt newest superblock slot: the other slot is used
    from blockdev.superdisk import _read_sb
    sb, _ = _read_sb(d, BS)
    slot = sb.update_seq % 2
    raw = bytearray(d.inner.read(slot * BS, BS))
    raw[40] ^= 0xFF                           # damage inside the checksummed fields
    d.inner.write(slot * BS, bytes(raw))
    sb2, _ = _read_sb(d, BS)
    assert sb2 is not None and sb2.update_seq == sb.update_seq - 1
    # a newer format version is refused with a clear error
    raw = bytearray(d.inner.read((sb2.update_seq % 2) * BS, BS))
    raw[8] = 9
    d.inner.write((sb2.update_seq % 2) * BS, bytes(raw))
    with pytest.raises(UnsupportedFormatError):
        open_sd(d, c)
