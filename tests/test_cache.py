"""Tests of lsm/cache.py: BlockCache (sharded, byte-bounded LRU) and TableCache."""

from __future__ import annotations

import random
import threading

import pytest

from blockdev.errors import ArgumentTypeError, ClosedError, InvalidArgumentError
from lsm.cache import BlockCache, TableCache


def test_lru_order_single_shard():
    c = BlockCache(300, shards=1)
    for i in range(3):
        c.insert((1, i), f"v{i}", 100)
    assert c.usage == 300
    assert c.get((1, 0)) == "v0"          # 0 is now most recent
    c.insert((1, 3), "v3", 100)            # evicts 1 (least recent)
    assert c.get((1, 1)) is None
    assert [c.get((1, i)) for i in (0, 2, 3)] == ["v0", "v2", "v3"]
    assert c.hits == 4 and c.misses == 1
    c._check()


def test_capacity_bound_and_replacement():
    c = BlockCache(1000, shards=4)
    rng = random.Random(0)
    for i in range(2000):
        c.insert((i % 7, i), i, rng.randrange(1, 120))
        assert c.usage <= c.capacity
    c._check()
    c.insert((9, 9), "a", 50)
    c.insert((9, 9), "b", 60)             # replace: usage counts the new charge only
    assert c.get((9, 9)) == "b"
    c._check()
    c.erase((9, 9))
    assert c.get((9, 9)) is None
    c._check()
    c.insert((5, 5), "huge", 10_000)       # bigger than a shard: not cached
    assert c.get((5, 5)) is None
    c.clear()
    assert c.usage == 0 and len(c) == 0


def test_zero_capacity_and_arguments():
    c = BlockCache(0)
    c.insert((1, 1), "x", 1)
    assert c.get((1, 1)) is None
    c.insert((1, 2), "y", 0)               # zero charge fits even a zero cache
    assert c.get((1, 2)) == "y"
    with pytest.raises(InvalidArgumentError):
        BlockCache(-1)
    with pytest.raises(ArgumentTypeError):
        BlockCache("10")
    with pytest.raises(InvalidArgumentError):
        BlockCache(10, shards=0)
    with pytest.raises(ArgumentTypeError):
        c.insert([1], "x", 1)


def test_block_cache_threads_smoke():
    c = BlockCache(50_000, shards=8)
    errors = []

    def work(seed):
        rng = random.Random(seed)
        try:
            for _ in range(3000):
                k = (rng.randrange(4), rng.randrange(500))
                v = c.get(k)
                if v is None:
                    c.insert(k, k, rng.randrange(10, 200))
                else:
                    assert v == k
                if rng.random() < 0.05:
                    c.erase(k)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    c._check()
    assert c.usage <= c.capacity


class FakeReader:
    def __init__(self, n):
        self.n = n
        self.closed = False

    def close(self):
        self.closed = True


def test_table_cache_lru_and_evict():
    opened = []

    def opener(n):
        r = FakeReader(n)
        opened.append(r)
        return r

    tc = TableCache(opener, max_open=2)
    r1 = tc.get(1)
    assert tc.get(1) is r1
    tc.get(2)
    tc.get(1)            # 1 most recent
    tc.get(3)            # drops 2
    assert 2 not in tc and 1 in tc and 3 in tc
    assert len(opened) == 3
    tc.evict(1)
    assert 1 not in tc and not r1.closed     # holders keep using it
    assert tc.get(1) is not r1
    tc._check()
    tc.close()
    assert all(r.closed for r in opened if r is not r1 and r.n != 2)
    with pytest.raises(ClosedError):
        tc.get(1)


def test_table_cache_opener_error_propagates():
    def opener(n):
        raise OSError("boom")

    tc = TableCache(opener, 4)
    with pytest.raises(OSError):
        tc.get(7)
    assert len(tc) == 0
    with pytest.raises(InvalidArgumentError):
        TableCache(opener, 0)


def test_table_cache_threads_one_reader_per_number():
    lock = threading.Lock()
    count = {"open": 0}

    def opener(n):
        with lock:
            count["open"] += 1
        return FakeReader(n)

    tc = TableCache(opener, max_open=8)
    errors = []

    def work(seed):
        rng = random.Random(seed)
        try:
            for _ in range(2000):
                n = rng.randrange(12)
                r = tc.get(n)
                assert r.n == n and not (r.closed and n in tc and tc.get(n) is r)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    tc._check()
    tc.close()


def _real_table(tmp_path):
    from blockdev.fs import PosixFS
    from lsm.dbformat import pack_internal_key
    from lsm.sstable import TableBuilder
    fs = PosixFS(str(tmp_path / "db"), create=True)
    for number in (1, 2, 3):
        w = fs.create("%06d.sst" % number)
        b = TableBuilder(w, name="%06d.sst" % number, block_size=128)
        for i in range(300):
            b.add(pack_internal_key(b"k%04d" % i, number, 1), b"t%d-%d" % (number, i))
        b.finish()
        w.close()
    return fs


def test_table_cache_with_real_readers(tmp_path):
    """Evicted readers keep working for their holders and close their file
    once the last reference goes; many threads share readers and blocks."""
    import gc
    from lsm.sstable import TableReader
    fs = _real_table(tmp_path)
    bc = BlockCache(1 << 16, shards=4)
    files = []

    def opener(n):
        f = fs.open("%06d.sst" % n)
        files.append(f)
        return TableReader(f, "%06d.sst" % n, block_cache=bc, cache_id=n)

    tc = TableCache(opener, max_open=2)
    r1 = tc.get(1)
    tc.get(2)
    tc.get(3)                                   # evicts 1
    assert 1 not in tc
    assert r1.get(b"k0007", 5) == (1, 1, b"t1-7")
    f1 = files[0]
    del r1
    gc.collect()
    with pytest.raises(ClosedError):            # closed by the last holder going away
        f1.read(0, 1)
    errors = []

    def work(seed):
        rng = random.Random(seed)
        try:
            for _ in range(400):
                n = rng.randrange(1, 4)
                i = rng.randrange(300)
                r = tc.get(n)
                assert r.get(b"k%04d" % i, 10) == (n, 1, b"t%d-%d" % (n, i))
                if rng.random() < 0.05:
                    got = [k for keys, _ in r.blocks() for k in keys]
                    assert len(got) == 300
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[0]
    bc._check()
    assert bc.usage <= bc.capacity and bc.hits > 0
    tc.close()
    fs.close()
