"""SuperDisk: read-only inspection (``SuperDisk.inspect``), the rebuild's
remaining-bytes figure with stale regions, leg locking, named format versions."""

from __future__ import annotations

import hashlib

import pytest

from blockdev.device import MemoryDevice
from blockdev.errors import LockError, UnsupportedFormatError
from blockdev.superdisk import (
    FORMAT_VERSION,
    Layout,
    SuperDisk,
    SuperDiskFormat,
    Superblock,
    format_inspect,
)

BS = 4096
SIZE = 1 << 20               # 256 data blocks
REGION = 64 * 1024           # 16 blocks per region -> 16 regions
LEG = Layout.for_size(SIZE, BS, REGION).leg_size


def open_sd(d, c, create=False, **kw):
    opts = dict(region_size=REGION, background_rebuild=False, rebuild_rate=None, bitmap_clear_delay=0.0)
    opts["size"] = SIZE if create else None
    opts.update(kw)
    return SuperDisk.open(durable=d, cache=c, create=create, **opts)


def block(b: int, tag: int = 0) -> bytes:
    return bytes([(b * 7 + tag) % 251 + 1]) * BS


def _readd_with_stale_regions():
    """A cache that left while recovering (cursor at 64 blocks) returns after
    every region was written: a re-add with dirty regions on both sides of
    the cursor."""
    d, c = MemoryDevice(LEG, name="d"), MemoryDevice(LEG, name="c")
    sd = open_sd(d, c, create=True)
    assert sd.rebuild_step(64 * BS) == 64 * BS
    sd.fail_cache("test")
    for r in range(16):
        sd.write(r * 16 * BS, block(r * 16, 1))
    sd.flush()
    sd.add_cache(c)
    return sd, d, c


def test_remaining_bytes_never_counts_a_stale_region_twice():
    sd, d, c = _readd_with_stale_regions()
    st = sd.status()
    rb = st["rebuild"]
    assert st["state"] == "rebuilding" and rb["cursor"] == 64 * BS
    # regions 0-3 lie below the cursor and resync; 4-15 are the recovery pass's
    assert rb["stale_regions"] == 4
    assert rb["remaining_bytes"] == SIZE                      # 192 blocks recovery + 64 resync
    assert rb["remaining_bytes"] <= rb["total"]
    last = rb["remaining_bytes"]
    while True:
        got = sd.rebuild_step(8 * BS)                      # partial regions: resync_pos in play
        sd._check()
        now = sd.status()["rebuild"]["remaining_bytes"]
        if not got:
            break
        assert now == last - got, (last, got, now)        # the figure is the work left, exactly
        last = now
    assert sd.status()["state"] == "clean" and last == 0
    for r in range(16):
        assert sd.read(r * 16 * BS, BS) == block(r * 16, 1)
        assert c.read(sd._layout.data_offset + r * 16 * BS, BS) == block(r * 16, 1)
    sd.close()


def test_inspect_reads_without_writing_and_predicts_assembly():
    sd, d, c = _readd_with_stale_regions()
    sd.rebuild_step(4 * BS)
    gen = sd.status()["generation"]
    sd.abandon()                                           # as if the process died mid-resync
    before = (hashlib.sha256(d.read(0, LEG)).digest(), hashlib.sha256(c.read(0, LEG)).digest())
    info = SuperDisk.inspect(d, c)
    after = (hashlib.sha256(d.read(0, LEG)).digest(), hashlib.sha256(c.read(0, LEG)).digest())
    assert before == after
    assert info["generation"] == gen and info["clean_shutdown"] is False
    assert info["assembly"] == "trusted" and info["state"] == "rebuilding"
    assert info["format_version"] == 1
    assert info["bitmap"]["dirty_regions"] == 16
    assert info["rebuild"]["stale_regions"] == 4
    assert info["rebuild"]["remaining_bytes"] <= info["rebuild"]["total"]
    assert info["legs"]["durable"]["superblock"]["role"] == "durable"
    assert info["legs"]["cache"]["superblock"]["cache_state"] == "recovering"
    assert info["legs"]["durable"]["in_use"] is None      # device objects: not ours to lock
    text = format_inspect(info)
    assert "nothing written" in text and "cache=trusted" in text
    # the prediction matches what assembly then does
    sd = open_sd(d, c)
    st = sd.status()
    assert st["state"] == info["state"] and st["generation"] > gen
    sd.close()
    # degraded and blank-cache predictions; a non-SuperDisk durable is refused
    assert SuperDisk.inspect(d)["state"] == "degraded"
    blank = SuperDisk.inspect(d, MemoryDevice(LEG, name="blank"))
    assert blank["assembly"] == "rebuild" and blank["rebuild"]["remaining_bytes"] == SIZE
    with pytest.raises(UnsupportedFormatError):
        SuperDisk.inspect(MemoryDevice(LEG, name="empty"))


def test_path_legs_are_locked_and_inspect_sees_them_in_use(tmp_path):
    dp, cp = str(tmp_path / "d.img"), str(tmp_path / "c.img")
    sd = open_sd(dp, cp, create=True)
    with pytest.raises(LockError, match="d.img"):
        open_sd(dp, None)
    with pytest.raises(LockError, match="c.img"):
        open_sd(MemoryDevice(LEG, name="other"), cp, create=True)
    info = SuperDisk.inspect(dp, cp)
    assert info["legs"]["durable"]["in_use"] is True and info["legs"]["cache"]["in_use"] is True
    sd.close()
    info = SuperDisk.inspect(dp, cp)
    assert info["legs"]["durable"]["in_use"] is False and info["state"] == "rebuilding"
    open_sd(dp, cp).close()                                # released on close


def test_named_format_versions_keep_the_bytes():
    from blockdev.blockfs import FORMAT_VERSION as FS_VERSION, BlockFSFormat
    assert FORMAT_VERSION is SuperDiskFormat.V1 and int(FORMAT_VERSION) == 1
    assert FS_VERSION is BlockFSFormat.V1 and int(FS_VERSION) == 1
    assert [m.value for m in SuperDiskFormat] == [1] and [m.value for m in BlockFSFormat] == [1]
    d = MemoryDevice(LEG, name="d")
    sd = open_sd(d, None, create=True)
    sd.close()
    for slot in (0, 1):
        raw = d.read(slot * BS, BS)
        assert raw[8:12] == b"\x01\x00\x00\x00"        # the u32 written is still plain 1
        sb = Superblock.decode(raw, "d", slot * BS)
        assert sb.version == 1 and type(sb.version) is int
    enc = sb.encode(BS)
    assert enc == Superblock.decode(enc, "d", 0).encode(BS)
