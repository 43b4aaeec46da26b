"""Read-path helpers: ``Version.tables_for_get`` agrees with ``files_for_get``
(sentinel upper bounds included), ``level_has_deletions``, the lock-free
``TableCache`` hit path, and seeks/windows of the iterators against a dict."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from lsm import DB
from lsm.cache import TableCache
from lsm.dbformat import KIND_VALUE, pack_internal_key
from lsm.version import FileMetaData, Version, VersionEdit, sentinel_key


def _meta(number: int, lo: bytes, hi: bytes, sentinel: bool, dels: int = 0) -> FileMetaData:
    largest = sentinel_key(hi) if sentinel else pack_internal_key(hi, 1, KIND_VALUE)
    return FileMetaData(number, 100, pack_internal_key(lo, 1, KIND_VALUE), largest, 1, 1, 10,
                        dels)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 6), st.booleans()),
                min_size=1, max_size=12),
       st.lists(st.integers(0, 50), min_size=1, max_size=20))
def test_tables_for_get_matches_files_for_get(spans: list, probes: list) -> None:
    # level 1: disjoint files cut from sorted points (a sentinel upper bound
    # may equal the next file's lower bound); level 0: overlapping files
    points = sorted({a for a, _, _ in spans} | {a + w for a, w, _ in spans})
    new = []
    num = 1
    for i in range(0, len(points) - 1, 2):
        lo, hi = points[i], points[i + 1]
        sent = spans[i % len(spans)][2]
        new.append((1, _meta(num, b"%03d" % lo, b"%03d" % hi, sent)))
        num += 1
        if sent and i + 2 < len(points):     # next file starts at this file's exclusive end
            points[i + 2] = max(points[i + 2], hi)
    for a, w, sent in spans[:3]:
        new.append((0, _meta(num, b"%03d" % a, b"%03d" % (a + w + 1), sent)))
        num += 1
    v = Version.empty(3).apply(VersionEdit(new_files=tuple(new)))
    for p in probes:
        k = b"%03d" % p
        assert v.tables_for_get(k) == [f for _, f in v.files_for_get(k)]


def test_tables_for_get_sentinel_boundary() -> None:
    v = Version.empty(3).apply(VersionEdit(new_files=(
        (1, _meta(1, b"a", b"k", True)), (1, _meta(2, b"k", b"p", False)),
        (2, _meta(3, b"a", b"z", False, dels=2)))))
    assert [f.number for f in v.tables_for_get(b"k")] == [2, 3]   # file 1 stops before k
    assert [f.number for f in v.tables_for_get(b"j")] == [1, 3]
    assert v.tables_for_get(b"zz") == []
    assert not v.level_has_deletions(1) and v.level_has_deletions(2)


def test_table_cache_hit_path_lru() -> None:
    opened: list[int] = []

    class R:
        def __init__(self, n: int) -> None:
            self.n = n
            self.closed = False

        def close(self) -> None:
            self.closed = True

    def opener(n: int) -> R:
        opened.append(n)
        return R(n)

    tc = TableCache(opener, 2)
    a = tc.get(1)
    tc.get(2)
    assert tc.get(1) is a                 # a hit, and 1 becomes most recent
    tc.get(3)                             # evicts 2, not 1
    assert 1 in tc and 2 not in tc and opened == [1, 2, 3]
    assert tc.hits == 1 and tc.misses == 3
    tc._check()


def test_seeks_and_windows_against_dict(tmp_path) -> None:
    rng = random.Random(5)
    model: dict[bytes, bytes] = {}
    with DB(str(tmp_path / "db"), create_if_missing=True, write_buffer_size=16 << 10,
            block_size=256) as db:
        for i in range(3000):
            k = b"%05d" % rng.randrange(4000)
            if rng.random() < 0.1:
                db.delete(k)
                model.pop(k, None)
            else:
                v = b"v%d" % i
                db.put(k, v)
                model[k] = v
            if i == 1500:
                db.flush()
        keys = sorted(model)
        for _ in range(60):
            t = b"%05d" % rng.randrange(4100)
            want = [(k, model[k]) for k in keys if k >= t]
            with db.iterator(start=t) as it:
                got = [kv for _, kv in zip(range(40), it)]
            assert got == want[:40]
            want_r = [(k, model[k]) for k in reversed(keys) if k < t]
            with db.iterator(stop=t, reverse=True) as it:
                got = [kv for _, kv in zip(range(40), it)]
            assert got == want_r[:40]
        assert list(db.iterator()) == [(k, model[k]) for k in keys]
        assert list(db.iterator(reverse=True)) == [(k, model[k]) for k in reversed(keys)]
        for k in keys[::37]:
            assert db.get(k) == model[k]


def test_concurrent_table_gets(tmp_path) -> None:
    # threads share the pooled scratch buffers of TableReader.lookup and the
    # lock-free cache lookups; a tiny block cache keeps evictions frequent
    import threading

    with DB(str(tmp_path / "db"), create_if_missing=True, write_buffer_size=32 << 10,
            block_size=512, block_cache_size=16 << 10) as db:
        for i in range(4000):
            db.put(b"k%05d" % i, b"v%05d" % i * 3)
        db.flush()
        errors: list[BaseException] = []

        def reader(seed: int) -> None:
            rng = random.Random(seed)
            try:
                for _ in range(1500):
                    i = rng.randrange(4400)
                    want = b"v%05d" % i * 3 if i < 4000 else None
                    assert db.get(b"k%05d" % i) == want
            except BaseException as exc:    # surfaced by the main thread
                errors.append(exc)

        threads = [threading.Thread(target=reader, args=(s,)) for s in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[0]
        db._block_cache._check()
