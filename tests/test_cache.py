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
