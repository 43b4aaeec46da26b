"""Crash consistency: after any simulated power loss (CrashFS over a
directory, FaultyDevice under BlockFS) or a real SIGKILL of a writer
process, the DB opens and holds exactly a prefix of the write history, with
no holes and no half batch, including every sync-acknowledged write."""

from __future__ import annotations

import random

import pytest

import blockdev
import lsm
from blockdev.fs import PosixFS
from lsm.testing import (CrashFS, FaultyDevice, apply_op, crash_db, crash_device_db,
                         verify_prefix_of_history)
from lsm.tools import stress

SMALL = dict(write_buffer_size=4096, block_size=512, target_file_size_base=4096,
             max_bytes_for_level_base=16384, level0_file_num_compaction_trigger=2)


def _random_history(rnd: random.Random, start: int, n: int) -> list[tuple[list, bool]]:
    out = []
    for i in range(start, start + n):
        r = rnd.random()
        k = b"k%03d" % rnd.randrange(150)
        if r < 0.7:
            ops = [("put", k, b"%d" % i * rnd.randrange(1, 30))]
        elif r < 0.8:
            ops = [("delete", k)]
        elif r < 0.85:
            ops = [("delete_range", k, k[:-1] + b"9")]
        else:
            ops = [("put", b"k%03d" % rnd.randrange(150), b"b%d" % i) for _ in range(5)]
            ops.append(("delete", b"k%03d" % rnd.randrange(150)))
        out.append((ops, rnd.random() < 0.15))
    return out


def _apply(db, ops, sync):
    if len(ops) == 1:
        op = ops[0]
        getattr(db, op[0])(*op[1:], sync=sync)
    else:
        with db.write_batch(sync=sync) as wb:
            for op in ops:
                getattr(wb, op[0])(*op[1:])


def _rounds(open_db, crash, rnd, rounds=4, per_round=300, keeps_all=lambda r: False):
    """``rounds`` rounds of a random history, each ended by ``crash(db, r)``;
    after it the DB must hold a prefix of the round's history covering every
    sync write, and every write when ``keeps_all(r)`` (a process kill)."""
    state: dict = {}
    for r in range(rounds):
        db = open_db(r == 0)
        assert dict(db.iterator()) == state
        history = _random_history(rnd, r * per_round, per_round)
        must = 0
        for i, (ops, sync) in enumerate(history):
            _apply(db, ops, sync)
            if sync:
                must = i + 1
            if rnd.random() < 0.02:
                db.flush()
        if keeps_all(r):
            must = len(history)
        crash(db, r)
        db = open_db(False)
        recovered = dict(db.iterator())
        db._check()
        db.close()
        k = verify_prefix_of_history(recovered, [h[0] for h in history], must, initial=state)
        expect = dict(state)
        for ops, _ in history[:k]:
            for op in ops:
                apply_op(expect, op)
        assert recovered == expect
        state = recovered


@pytest.mark.parametrize("mode", ["all", "random"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_crashfs_directory(tmp_path, mode, seed):
    fs = CrashFS(PosixFS(tmp_path / "db", create=True))
    rnd = random.Random(seed)

    def open_db(create):
        return lsm.DB(fs, create_if_missing=create, **SMALL)

    def crash(db, r):
        crash_db(db, fs, mode, seed=seed * 100 + r)
    _rounds(open_db, crash, rnd)


@pytest.mark.parametrize("mode", ["all", "random"])
@pytest.mark.parametrize("seed", [4, 5])
def test_faulty_device_blockfs(mode, seed):
    dev = FaultyDevice(blockdev.MemoryDevice(16 << 20))
    rnd = random.Random(seed)

    def open_db(create):
        return lsm.DB(dev, create_if_missing=create, **SMALL)

    def crash(db, r):
        crash_device_db(db, dev, mode, seed=seed * 100 + r)
    _rounds(open_db, crash, rnd, rounds=3)


@pytest.mark.parametrize("seed", [6, 7])
def test_faulty_device_blockfs_process_kills(seed):
    """Inside a block device a killed process loses no acknowledged write,
    sync or not (the WAL is flushed to the device after each write group);
    rounds ended by a kill alternate with power losses, which may then drop
    the unflushed device writes the killed rounds left behind."""
    dev = FaultyDevice(blockdev.MemoryDevice(16 << 20))
    rnd = random.Random(seed)

    def open_db(create):
        return lsm.DB(dev, create_if_missing=create, **SMALL)

    def killed(r):
        return r % 2 == 0

    def crash(db, r):
        crash_device_db(db, dev, "process" if killed(r) else "random", seed=seed * 100 + r)
    _rounds(open_db, crash, rnd, rounds=4, keeps_all=killed)


def test_unsynced_write_survives_process_kill_on_blockfs():
    dev = FaultyDevice(blockdev.MemoryDevice(4 << 20))
    db = lsm.DB(dev, create_if_missing=True)
    db.put(b"durable", b"1", sync=True)
    db.put(b"volatile", b"2")
    assert crash_device_db(db, dev, "process") == 0
    with lsm.DB(dev) as db:
        assert db.get(b"durable") == b"1"
        assert db.get(b"volatile") == b"2"     # it had left the process
    db = lsm.DB(dev)
    db.put(b"volatile2", b"3")
    crash_device_db(db, dev, "all")
    with lsm.DB(dev) as db:
        assert db.get(b"volatile") == b"2"     # made durable by the reopen
        assert db.get(b"volatile2") is None    # a power loss drops unflushed device writes


def test_unsynced_writes_may_be_lost_but_synced_ones_never(tmp_path):
    fs = CrashFS(PosixFS(tmp_path / "db", create=True))
    db = lsm.DB(fs, create_if_missing=True)
    db.put(b"durable", b"1", sync=True)
    db.put(b"volatile", b"2")
    crash_db(db, fs, "all")
    with lsm.DB(fs) as db:
        assert db.get(b"durable") == b"1"
        assert db.get(b"volatile") is None     # mode "all" drops every unsynced byte


@pytest.mark.parametrize("device", ["posix", "blockfs"])
def test_kill_9_writer_process(tmp_path, device):
    """A SIGKILLed writer loses no acknowledged write, sync or not, on a
    directory and inside a file-backed block device."""
    summary = stress.run(str(tmp_path), duration=3.0, kills=2, seed=11, keys=500,
                         device=device, quiet=True)
    assert summary["rounds"] == 2 and summary["writes"] > 0


def test_kill_9_superdisk_with_cache_faults(tmp_path):
    """SIGKILLed writer on a SuperDisk whose cache leg is lost or corrupted
    between rounds: every acknowledged write survives, sync or not."""
    summary = stress.run(str(tmp_path), duration=3.0, kills=2, seed=9, keys=500,
                         device="superdisk", quiet=True)
    assert summary["rounds"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("device", ["posix", "blockfs", "superdisk"])
def test_kill_9_soak(tmp_path, device):
    summary = stress.run(str(tmp_path), duration=60.0, kills=0, seed=12, keys=2000,
                         device=device, quiet=True)
    assert summary["rounds"] >= 10


def test_sync_write_first_syncs_the_deferred_old_logs(tmp_path):
    """On PosixFS the log of a memtable switched away with unsynced writes is
    synced by the next sync write, before that write's own log: after a
    power loss the sync-acknowledged write never stands without the writes
    before it (no hole), even while no flush has run."""
    import threading
    fs = CrashFS(PosixFS(tmp_path / "db", create=True))
    db = lsm.DB(fs, create_if_missing=True, write_buffer_size=4096, max_write_buffer_number=8)
    gate = threading.Event()
    db._flush_step = lambda: (gate.wait(0.5), False)[1]     # hold every flush
    for i in range(150):
        db.put(b"v%04d" % i, b"x" * 50)                      # several memtables, unsynced
    assert db._old_logs, "the switched-away logs wait for a sync write"
    db.put(b"durable", b"1", sync=True)
    assert not db._old_logs
    crash_db(db, fs, "all")
    with lsm.DB(fs) as db:
        assert db.get(b"durable") == b"1"
        assert [k for k, _ in db.iterator()] == [b"durable"] + [b"v%04d" % i for i in range(150)]
