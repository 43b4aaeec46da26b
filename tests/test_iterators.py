"""Iterator semantics: every argument of DB.iterator() and the raw iterator,
against the reference model (lsm.testing.model) and against plyvel itself,
with the data spread over the memtable, L0 tables and deeper levels."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lsm
from lsm import _native
from lsm.iterators import bytes_increment
from lsm.testing.machine import KEYS, iter_args, moves, raw_moves
from lsm.testing.model import ModelCursor, ModelRawCursor, model_iterate

SMALL = dict(write_buffer_size=4096, block_size=256, target_file_size_base=2048,
             max_bytes_for_level_base=8192, level0_file_num_compaction_trigger=4)


def _fill(db, rnd: random.Random, n: int, nkeys: int = 300, model: dict | None = None) -> dict:
    model = {} if model is None else model
    for i in range(n):
        k = b"%04d" % rnd.randrange(nkeys)
        r = rnd.random()
        if r < 0.75:
            v = b"v%d-" % i * rnd.randrange(1, 6)
            db.put(k, v)
            model[k] = v
        elif r < 0.93:
            db.delete(k)
            model.pop(k, None)
        else:
            k2 = b"%04d" % (int(k) + rnd.randrange(12))
            a, b = min(k, k2), max(k, k2)
            db.delete_range(a, b)
            for x in [x for x in model if a <= x < b]:
                del model[x]
    return model


@pytest.fixture(scope="module")
def layered(tmp_path_factory):
    """A DB whose data lives in tables at several levels plus the memtable."""
    path = tmp_path_factory.mktemp("it") / "db"
    db = lsm.DB(path, create_if_missing=True, **SMALL)
    rnd = random.Random(7)
    model = _fill(db, rnd, 2500)
    db.compact_range()
    _fill(db, rnd, 800, model=model)   # newer data on top: memtable, L0, deeper levels
    assert _truth(db) == sorted(model.items())
    yield db
    db.close()


def _truth(db) -> list:
    return sorted((k, db.get(k)) for k in (b"%04d" % i for i in range(300)) if db.get(k) is not None)


def test_bytes_increment():
    assert bytes_increment(b"ab") == b"ac"
    assert bytes_increment(b"a\xff") == b"b"
    assert bytes_increment(b"\xff\xff") is None
    assert bytes_increment(b"") is None


def test_full_scans_match_gets(layered):
    db = layered
    items = _truth(db)
    assert len(items) > 50
    assert list(db.iterator()) == items
    assert list(db.iterator(reverse=True)) == items[::-1]
    assert list(db.keys()) == [k for k, _ in items]
    assert list(db.values()) == [v for _, v in items]
    assert list(db.iterator(include_key=False, include_value=False)) == [None] * len(items)


def test_levels_are_populated(layered):
    db = layered
    st = db.stats()
    assert sum(1 for lv in st["levels"] if lv["files"]) >= 1
    assert st["num_files"] >= 2


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=st.integers(0, 310), b=st.integers(0, 310), incl_a=st.booleans(), incl_b=st.booleans(),
       reverse=st.booleans(), use_a=st.booleans(), use_b=st.booleans())
def test_bounds_match_model(layered, a, b, incl_a, incl_b, reverse, use_a, use_b):
    db = layered
    items = _truth(db)
    kw = dict(start=b"%04d" % a if use_a else None, stop=b"%04d" % b if use_b else None,
              include_start=incl_a, include_stop=incl_b, reverse=reverse)
    assert list(db.iterator(**kw)) == model_iterate(items, **kw)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prefix=st.sampled_from([b"", b"0", b"00", b"01", b"012", b"02", b"0299", b"1", b"\xff"]),
       reverse=st.booleans())
def test_prefix_matches_model(layered, prefix, reverse):
    db = layered
    items = _truth(db)
    assert list(db.iterator(prefix=prefix, reverse=reverse)) == \
        model_iterate(items, prefix=prefix, reverse=reverse)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=st.integers(0, 310), b=st.integers(0, 310), reverse=st.booleans(),
       walk=st.lists(st.one_of(st.sampled_from(["next", "prev", "seek_to_start", "seek_to_stop"]),
                               st.tuples(st.just("seek"), st.integers(0, 310))), max_size=40))
def test_cursor_walk_matches_model(layered, a, b, reverse, walk):
    db = layered
    items = _truth(db)
    kw = dict(start=b"%04d" % min(a, b), stop=b"%04d" % max(a, b), reverse=reverse)
    m = ModelCursor(items, **kw)
    with db.iterator(**kw) as it:
        for move in walk:
            results = []
            for obj in (m, it):
                try:
                    if move == "next":
                        r = next(obj) if obj is it else obj.next()
                    elif isinstance(move, tuple):
                        r = getattr(obj, move[0])(b"%04d" % move[1])
                    else:
                        r = getattr(obj, move)()
                    results.append(("ok", r))
                except StopIteration:
                    results.append(("stop",))
            assert results[0] == results[1], (kw, walk, move)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(walk=st.lists(st.one_of(
    st.sampled_from(["next", "prev", "seek_to_first", "seek_to_last"]),
    st.tuples(st.sampled_from(["seek", "seek_for_prev"]), st.integers(0, 310))), max_size=60))
def test_raw_iterator_matches_model(layered, walk):
    db = layered
    m = ModelRawCursor(_truth(db))
    with db.raw_iterator() as it:
        assert not it.valid()
        for move in walk:
            if move in ("next", "prev") and not m.valid():
                with pytest.raises(lsm.IteratorInvalidError):
                    getattr(it, move)()
                continue
            if isinstance(move, tuple):
                getattr(m, move[0])(b"%04d" % move[1])
                getattr(it, move[0])(b"%04d" % move[1])
            else:
                getattr(m, move)()
                getattr(it, move)()
            assert it.valid() == m.valid()
            if m.valid():
                assert it.item() == (m.key(), m.value())
            else:
                with pytest.raises(lsm.IteratorInvalidError):
                    it.key()


def test_long_sequential_scan_crosses_windows(tmp_path):
    with lsm.DB(tmp_path / "db", create_if_missing=True, **SMALL) as db:
        for i in range(5000):
            db.put(b"k%06d" % i, b"x" * 20)
            if i % 7 == 0:
                db.put(b"k%06d" % (i // 2), b"y" * 5)    # several versions per key
        expect = {b"k%06d" % i: b"x" * 20 for i in range(5000)}
        for i in range(0, 5000, 7):
            expect[b"k%06d" % (i // 2)] = b"y" * 5
        items = sorted(expect.items())
        assert list(db.iterator()) == items
        assert list(db.iterator(reverse=True)) == items[::-1]
        it = db.iterator()
        got = [next(it) for _ in range(3000)]
        back = [it.prev() for _ in range(3000)]
        assert back == got[::-1]


def test_range_tombstone_spanning_windows(tmp_path):
    with lsm.DB(tmp_path / "db", create_if_missing=True, **SMALL) as db:
        for i in range(3000):
            db.put(b"k%06d" % i, b"v" * 30)
        db.flush()
        db.delete_range(b"k000100", b"k002900")
        keep = [b"k%06d" % i for i in list(range(100)) + list(range(2900, 3000))]
        assert list(db.keys()) == keep
        assert list(db.keys(reverse=True)) == keep[::-1]
        db.flush()
        assert list(db.keys()) == keep
        assert db.get(b"k000100") is None and db.get(b"k000099") == b"v" * 30


def test_snapshot_isolation_of_iterators(tmp_path):
    with lsm.DB(tmp_path / "db", create_if_missing=True, **SMALL) as db:
        for i in range(200):
            db.put(b"%03d" % i, b"old")
        it = db.iterator(include_value=True)
        snap = db.snapshot()
        for i in range(200):
            db.put(b"%03d" % i, b"new")
        db.delete_range(b"050", b"100")
        db.flush()
        assert {v for _, v in it} == {b"old"}
        assert sum(1 for _ in snap.iterator()) == 200
        assert len(list(db.iterator())) == 150
        snap.close()


def test_pushdown_reads_few_blocks(tmp_path):
    with lsm.DB(tmp_path / "db", create_if_missing=True, block_cache_size=0,
                **{k: v for k, v in SMALL.items()}) as db:
        for i in range(4000):
            db.put(b"k%06d" % i, b"v" * 40)
        db.compact_range()
        with db._compaction_lock:     # no background compaction swaps the files meanwhile
            readers = [db._table_cache.get(f.number)
                       for lv in db._state.version.levels for f in lv]
            before = sum(r.blocks_read for r in readers)
            total_blocks = sum(r.properties.num_data_blocks for r in readers)
            assert list(db.keys(start=b"k001000", stop=b"k001010")) == \
                [b"k%06d" % i for i in range(1000, 1010)]
            used = sum(r.blocks_read for r in readers) - before
        # 10 keys fill 2-3 blocks of 256 bytes; a file boundary inside the
        # range (where a compaction or subcompaction slice cut) adds the
        # blocks at both files' edges -- still a handful of the hundreds
        assert 0 < used <= 6 and total_blocks > 100


def test_argument_validation(layered):
    db = layered
    with pytest.raises(TypeError, match="prefix"):
        db.iterator(prefix=b"a", start=b"b")
    with pytest.raises(TypeError, match="start"):
        db.iterator(start="a")
    with pytest.raises(TypeError, match="reverse"):
        db.iterator(reverse="yes")
    with pytest.raises(TypeError, match="target"):
        db.iterator().seek("x")
    with pytest.raises(TypeError):
        db.raw_iterator().seek(None)


def test_closed_iterator_and_db(tmp_path):
    db = lsm.DB(tmp_path / "db", create_if_missing=True)
    db.put(b"a", b"1")
    db.put(b"b", b"2")
    it = db.iterator()
    assert next(it) == (b"a", b"1")
    it.close()
    with pytest.raises(lsm.ClosedError):
        next(it)
    it2 = db.iterator()
    raw = db.raw_iterator()
    raw.seek_to_first()
    snap = db.snapshot()
    next(it2)
    db.close()
    with pytest.raises(lsm.ClosedError):
        next(it2)
    with pytest.raises(lsm.ClosedError):
        it2.prev()
    with pytest.raises(lsm.ClosedError):
        raw.key()
    with pytest.raises(lsm.ClosedError):
        snap.get(b"a")
    with pytest.raises(lsm.ClosedError):
        db.iterator()
    it2.close()
    snap.close()


plyvel = pytest.importorskip("plyvel")


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.dictionaries(st.sampled_from(KEYS), st.binary(max_size=4), max_size=12),
       args=iter_args, walk=moves)
def test_same_as_plyvel(tmp_path_factory, data, args, walk):
    """Our iterator does what plyvel's does -- except plyvel's known bug: moving
    backwards onto an item equal to ``start`` (or ``prefix``) from the stop end
    stops early (``db.iterator(start=b'a', stop=b'b', reverse=True)`` yields
    nothing when b'a' exists), so examples where start/prefix is a stored key
    are left out."""
    base = tmp_path_factory.mktemp("pv")
    pdb = plyvel.DB(str(base / "p"), create_if_missing=True)
    db = lsm.DB(base / "l", create_if_missing=True)
    try:
        for k, v in data.items():
            pdb.put(k, v)
            db.put(k, v)
        low = args.get("prefix", args.get("start"))
        if low is not None and low in data:
            return   # plyvel bug territory (see docstring)
        assert list(db.iterator(**args)) == list(pdb.iterator(**args))
        a, b = db.iterator(**args), pdb.iterator(**args)
        # plyvel's seek() followed by a step back can leave the range (its
        # IN_BETWEEN_ALREADY_POSITIONED state skips the bound check): the
        # model tests cover seek; here walks stop at the first seek
        for move in walk:
            if isinstance(move, tuple):
                break
            out = []
            for obj in (a, b):
                try:
                    if move == "next":
                        out.append(("ok", next(obj)))
                    elif isinstance(move, tuple):
                        out.append(("ok", getattr(obj, move[0])(move[1])))
                    else:
                        out.append(("ok", getattr(obj, move)()))
                except StopIteration:
                    out.append(("stop",))
            assert out[0] == out[1], (args, walk, move)
        a.close()
        b.close()
        ra, rb = db.raw_iterator(), pdb.raw_iterator()
        for move in ["seek_to_first", "next", "next", "prev", ("seek", b"b"),
                     "seek_to_last", "prev", ("seek", b"zz")]:
            if isinstance(move, tuple):
                getattr(ra, move[0])(move[1])
                getattr(rb, move[0])(move[1])
            else:
                if move in ("next", "prev") and not rb.valid():
                    continue
                getattr(ra, move)()
                getattr(rb, move)()
            assert ra.valid() == rb.valid()
            if rb.valid():
                assert (ra.key(), ra.value()) == (rb.key(), rb.value())
    finally:
        pdb.close()
        db.close()


def test_writes_during_iteration_are_invisible(tmp_path):
    """The iterator pages through the live memtable; keys written meanwhile
    (inside the range, ahead of the cursor) must not appear."""
    with lsm.DB(tmp_path / "db", create_if_missing=True, write_buffer_size=8 << 20) as db:
        for i in range(0, 6000, 2):
            db.put(b"k%06d" % i, b"old")
        for reverse in (False, True):
            seen = []
            with db.iterator(reverse=reverse) as it:
                for n, (k, v) in enumerate(it):
                    seen.append((k, v))
                    j = int(k[1:]) + (-3 if reverse else 3)
                    db.put(b"k%06d" % j, b"new")             # a new key ahead
                    db.put(b"k%06d" % (j + (-1 if reverse else 1)), b"new")  # overwrite ahead
                    if n % 500 == 0:
                        db.delete_range(b"k000000", b"k999999")
            expect = [(b"k%06d" % i, b"old") for i in range(0, 6000, 2)]
            assert seen == (expect[::-1] if reverse else expect)
            db.delete_range(b"k", b"l")
            for i in range(0, 6000, 2):
                db.put(b"k%06d" % i, b"old")


def test_for_loop_makes_pairs_one_at_a_time(tmp_path):
    """A ``for k, v in db.iterator()`` loop gets its pairs from zip, one at a
    time, instead of a buffered list of tuples per window: iterating creates
    no pile of GC-tracked objects, so the cyclic collector stays asleep."""
    import gc
    with lsm.DB(tmp_path / "db", create_if_missing=True) as db:
        with db.write_batch() as wb:
            for i in range(30000):
                wb.put(b"k%06d" % i, b"v%d" % i)
        db.compact_range()                    # no background work during the count
        runs = []

        def count(phase, info):
            if phase == "start":
                runs.append(info["generation"])

        gc.collect()
        gc.callbacks.append(count)
        try:
            n = 0
            for k, v in db.iterator():
                n += 1
        finally:
            gc.callbacks.remove(count)
        assert n == 30000
        if _native.implementation == "native":   # the twins make garbage of their own
            assert len(runs) < 10, runs          # a list of 30000 tuples: ~40 collections
        it = db.iterator()
        first = [next(it), next(it)]
        rest = list(it)                       # pairs kept alive: each one its own tuple
        assert first + rest == [(b"k%06d" % i, b"v%d" % i) for i in range(30000)]
