"""BlockFS on a SuperDisk whose cache (the local SSD) is lost in the middle
of the run: the file system keeps working from the durable leg, and after a
restart with a blank cache every synced byte is there while the cache is
rebuilt."""

from __future__ import annotations

import random

from blockdev import BlockFS
from blockdev.device import MemoryDevice
from blockdev.faulty import FaultyDevice
from blockdev.superdisk import Layout, SuperDisk

BS = 4096
SIZE = 4 << 20
REGION = 256 * 1024
LEG = Layout.for_size(SIZE, BS, REGION).leg_size


def legs():
    return (FaultyDevice(MemoryDevice(LEG, name="durable"), name="durable"),
            FaultyDevice(MemoryDevice(LEG, name="cache"), name="cache"))


def open_sd(d, c, create=False):
    return SuperDisk.open(durable=d, cache=c, create=create, size=SIZE if create else None,
                          region_size=REGION, background_rebuild=False, rebuild_rate=None,
                          bitmap_clear_delay=0.0)


def read_all(fs: BlockFS, name: str) -> bytes:
    with fs.open(name) as r:
        return r.read(0, r.size)


def payload(i: int, n: int) -> bytes:
    return bytes([(i * 7 + j) % 251 for j in range(256)]) * (n // 256) + bytes(n % 256)


def test_cache_lost_mid_run_then_blank_cache_rebuild() -> None:
    d, c = legs()
    sd = open_sd(d, c, create=True)
    fs = BlockFS(sd, create=True)
    expected: dict[str, bytes] = {}
    wal = fs.create("000001.log")
    wal_bytes = b""
    for i in range(40):
        if i == 15:
            c.lose()  # the local SSD disappears under the running file system
        name = f"{i:06d}.sst"
        data = payload(i, 3000 + 1000 * i)
        w = fs.create(name)
        w.append(data)
        w.sync()
        w.close()
        expected[name] = data
        rec = f"record {i};".encode()
        wal.append(rec)
        wal_bytes += rec
        if i % 4 == 0:
            wal.sync()
        if i % 9 == 8:
            victim = sorted(expected)[0]
            fs.delete(victim)
            del expected[victim]
    wal.sync()
    st = sd.status()
    assert st["state"] == "degraded" and st["counters"]["ejections"] == 1
    for name, data in expected.items():
        assert read_all(fs, name) == data
    assert read_all(fs, "000001.log") == wal_bytes
    fs.check()
    fs.close()
    sd.close()
    # Host maintenance: the SSD comes back blank.
    c.revive(wipe=True)
    sd = open_sd(d, c)
    assert sd.status()["state"] == "rebuilding"
    fs = BlockFS.mount(sd)
    for name, data in expected.items():
        assert read_all(fs, name) == data  # served from durable during the rebuild
    w = fs.create("after")
    w.append(b"written while rebuilding")
    w.sync()
    w.close()
    sd.rebuild(wait=True)
    assert sd.status()["state"] == "clean"
    assert read_all(fs, "after") == b"written while rebuilding"
    assert read_all(fs, "000001.log") == wal_bytes
    fs.check()
    fs.close()
    sd.close()


def test_crash_with_cache_loss_keeps_synced_bytes() -> None:
    rng = random.Random(5)
    d, c = legs()
    sd = open_sd(d, c, create=True)
    fs = BlockFS(sd, create=True)
    synced: dict[str, bytes] = {}
    writers = {}
    appended: dict[str, bytes] = {}
    for step in range(120):
        name = f"f{rng.randrange(5)}"
        if name not in writers:
            writers[name] = fs.create(name)
            appended[name] = b""
            synced.pop(name, None)
        data = payload(step, rng.choice([10, 500, 4096, 7000]))
        writers[name].append(data)
        appended[name] += data
        if rng.random() < 0.3:
            writers[name].sync()
            synced[name] = appended[name]
        if step == 60:
            c.lose()
    # Power loss: the process dies, unflushed durable writes are lost, and
    # the cache comes back blank.
    fs._abandon(power_loss=True)
    d.crash("random", seed=9)
    sd.abandon()
    d.restart()
    c.revive(wipe=True)
    sd = open_sd(d, c)
    fs = BlockFS.mount(sd)
    for name, data in synced.items():
        got = read_all(fs, name)
        assert got[:len(data)] == data
        assert appended[name].startswith(got)
    fs.check()
    sd.rebuild(wait=True)
    for name, data in synced.items():
        assert read_all(fs, name)[:len(data)] == data
    fs.close()
    sd.close()
