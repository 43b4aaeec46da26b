"""Threads: writers, readers, iterators, snapshots and compactions at once.
Every observation must be explainable by some serial order of the atomic
batches: pairs written together are seen together, counters never go back,
and the final state is the model's."""

from __future__ import annotations

import threading
import time

import lsm

OPTS = dict(write_buffer_size=8192, block_size=512, target_file_size_base=4096,
            max_bytes_for_level_base=16384, level0_file_num_compaction_trigger=2)


def test_writers_readers_compaction(tmp_path):
    db = lsm.DB(tmp_path / "db", create_if_missing=True, **OPTS)
    errors: list[BaseException] = []
    stop = threading.Event()
    N = 1500
    W = 2

    def guard(fn):
        def run(*a):
            try:
                fn(*a)
            except BaseException as exc:   # reported by the main thread
                errors.append(exc)
                stop.set()
        return run

    @guard
    def writer(w):
        for n in range(1, N + 1):
            with db.write_batch() as wb:
                slot = b"%d-%02d" % (w, n % 25)
                wb.put(b"x" + slot, b"%08d" % n + b"." * 40)
                wb.put(b"y" + slot, b"%08d" % n + b"." * 40)
                wb.put(b"ctr%d" % w, b"%08d" % n)
            if n % 97 == 0:
                db.delete_range(b"z", b"zz")   # empty ranges mixed in
            if stop.is_set():
                return

    @guard
    def reader():
        last = [0] * W
        while not stop.is_set():
            with db.snapshot() as snap:
                for w in range(W):
                    c = snap.get(b"ctr%d" % w)
                    c = int(c) if c else 0
                    assert c >= last[w], "counter went backwards"
                    last[w] = c
                items = dict(snap.iterator(prefix=b"x"))
                ys = dict(snap.iterator(prefix=b"y"))
                assert {k[1:]: v for k, v in items.items()} == {k[1:]: v for k, v in ys.items()}
                for k, v in items.items():
                    assert snap.get(b"y" + k[1:]) == v
            v = db.get(b"ctr0")
            assert v is None or int(v) >= 0

    @guard
    def scanner():
        while not stop.is_set():
            prev = None
            for k, _ in db.iterator(reverse=True):
                assert prev is None or k < prev
                prev = k

    @guard
    def compactor():
        while not stop.is_set():
            db.compact_range(b"x0", b"y1")
            time.sleep(0.01)

    writers = [threading.Thread(target=writer, args=(w,)) for w in range(W)]
    others = [threading.Thread(target=f) for f in (reader, reader, scanner, compactor)]
    for t in writers + others:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in others:
        t.join()
    if errors:
        raise errors[0]
    expect = {}
    for w in range(W):
        for n in range(N - 24, N + 1):
            slot = b"%d-%02d" % (w, n % 25)
            expect[b"x" + slot] = expect[b"y" + slot] = b"%08d" % n + b"." * 40
        expect[b"ctr%d" % w] = b"%08d" % N
    assert dict(db.iterator()) == expect
    st = db.stats()
    assert st["flushes"] > 0 and st["background_error"] is None
    db._check()
    db.close()
    with lsm.DB(tmp_path / "db", **OPTS) as again:
        assert dict(again.iterator()) == expect
