"""Read-path native functions (native/read.c) vs their twins, and the
engine pieces built on them: ``tables_probe`` (random and malformed probe
blobs, both implementations, same result or the same error), ``GetPlan``
(the DB's one-call table probe agrees with the per-table path), and the
block cache's ``offer`` admission.
"""

from __future__ import annotations

import random
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lsm
from blockdev.errors import ArgumentTypeError, CorruptionError, InvalidArgumentError
from lsm import _native, _twins
from lsm.cache import BlockCache
from native_support import C, T, needs_c, outcome

MEDIUM = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEYS = [b"", b"a", b"ab", b"b", b"ba", b"c", b"d", b"e", b"f", b"zz"]


def same(*args: Any) -> tuple:
    a = outcome(T.tables_probe, *args)
    b = outcome(C.tables_probe, *args)
    assert a == b, f"tables_probe: python {a!r} != native {b!r}"
    return a


@st.composite
def tables(draw: Any, n: int) -> list[bytes]:
    """``n`` probe blobs of tables over small keys (with or without filters)."""
    out = []
    for _ in range(n):
        uks = sorted(draw(st.lists(st.sampled_from(KEYS), min_size=0, max_size=6)))
        trailers = [draw(st.integers(0, 2**64 - 1)) for _ in uks]
        if draw(st.booleans()) and uks:
            filt = T.bloom_build(uks, draw(st.integers(1, 12)))
        else:
            filt = None
        lo = draw(st.sampled_from(KEYS))
        hi = draw(st.sampled_from(KEYS))
        out.append(T.probe_blob_encode(filt, min(lo, hi), max(lo, hi), draw(st.booleans()),
                                       uks, trailers))
    return out


@st.composite
def groups_for(draw: Any, n: int) -> list[tuple[int, int]]:
    out = []
    left = n
    while left:
        c = draw(st.integers(1, left))
        out.append((draw(st.integers(0, 1)), c))
        left -= c
    return out


@needs_c
@MEDIUM
@given(st.data())
def test_tables_probe_equivalence(data: Any) -> None:
    n = data.draw(st.integers(0, 5))
    tabs = data.draw(tables(n))
    groups = data.draw(groups_for(n))
    for key in KEYS + [b"aa", b"zzz"]:
        seq = data.draw(st.integers(0, 2**56 - 1))
        same(tabs, groups, key, seq)


@needs_c
@MEDIUM
@given(st.data())
def test_tables_probe_malformed(data: Any) -> None:
    """Mutated blobs (bytes flipped, truncated, extended): same answer or
    same CorruptionError (message and offset) from both."""
    n = data.draw(st.integers(1, 4))
    tabs = data.draw(tables(n))
    i = data.draw(st.integers(0, n - 1))
    b = bytearray(tabs[i])
    how = data.draw(st.sampled_from(["flip", "truncate", "extend", "header"]))
    if how == "flip" and b:
        for _ in range(data.draw(st.integers(1, 4))):
            b[data.draw(st.integers(0, len(b) - 1))] = data.draw(st.integers(0, 255))
    elif how == "truncate":
        del b[data.draw(st.integers(0, len(b))):]
    elif how == "extend":
        b += data.draw(st.binary(min_size=1, max_size=8))
    else:
        off = data.draw(st.sampled_from([0, 4, 8, 12, 16, 20]))
        b[off:off + 4] = struct.pack("<I", data.draw(st.integers(0, 2**32 - 1)))
    tabs[i] = bytes(b)
    groups = data.draw(groups_for(n))
    for key in (b"a", b"c", b"f", b"zz"):
        r = same(tabs, groups, key, data.draw(st.integers(0, 2**56 - 1)))
        if r[0] == "err":
            assert r[1] is CorruptionError


def test_tables_probe_key_end_errors() -> None:
    """A key_end out of order is reported at its offset when it is read."""
    blob = bytearray(T.probe_blob_encode(None, b"a", b"z", False, [b"b", b"d", b"f"], [9, 9, 9]))
    ends = _twins.PROBE_HEADER_SIZE + 1 + 1 + 8 * 3        # lo "a", hi "z"
    struct.pack_into("<I", blob, ends + 4, 0)               # key 1 ends before key 0
    impls = [T] + ([C] if C is not None else [])
    for impl in impls:
        with pytest.raises(CorruptionError) as ei:
            impl.tables_probe([bytes(blob)], [(0, 1)], b"d", 5)
        assert ei.value.offset == ends + 4
        assert "tables_probe table 0" in str(ei.value)
    for impl in impls:
        with pytest.raises(CorruptionError) as ei:
            impl.tables_probe([bytes(blob[:-1])], [(1, 1)], b"d", 5)
        assert ei.value.offset == 0


def test_tables_probe_semantics() -> None:
    """Extents, bloom, index search and the trailer step, on a hand-built set."""
    f1 = T.bloom_build([b"b", b"d"], 10)
    t0 = T.probe_blob_encode(f1, b"b", b"d", False, [b"b", b"d"], [(7 << 8) | 1, (3 << 8) | 1])
    # one user key spread over two blocks: newest version (seq 9) in block 0
    t1 = T.probe_blob_encode(None, b"a", b"k", False, [b"c", b"c", b"k"],
                             [(9 << 8) | 1, (2 << 8) | 1, (1 << 8) | 1])
    t2 = T.probe_blob_encode(None, b"m", b"p", True, [b"p"], [(1 << 8) | 1])
    impls = [T] + ([C] if C is not None else [])
    for impl in impls:
        p = impl.tables_probe
        assert p([t0, t1, t2], [(0, 1), (1, 2)], b"b", 100) == [(0, 0), (1, 0)]
        assert p([t0, t1, t2], [(0, 1), (1, 2)], b"c", 100) == [(1, 0)]
        assert p([t0, t1, t2], [(0, 1), (1, 2)], b"c", 5) == [(1, 1)]   # skips seq 9
        assert p([t0, t1, t2], [(0, 1), (1, 2)], b"d", 100)[0] == (0, 1)
        assert p([t0, t1, t2], [(0, 1), (1, 2)], b"n", 100) == [(2, 0)]
        assert p([t0, t1, t2], [(0, 1), (1, 2)], b"p", 100) == []       # exclusive end
        assert p([t0, t1, t2], [(0, 1), (1, 2)], b"zz", 100) == []
        assert p([], [], b"a", 0) == []


def test_tables_probe_argument_errors() -> None:
    t = T.probe_blob_encode(None, b"a", b"b", False, [b"a"], [1])
    impls = [T] + ([C] if C is not None else [])
    for impl in impls:
        with pytest.raises(ArgumentTypeError):
            impl.tables_probe("x", [(0, 1)], b"a", 0)
        with pytest.raises(ArgumentTypeError):
            impl.tables_probe([t], [(0, 1)], "a", 0)
        with pytest.raises(InvalidArgumentError):
            impl.tables_probe([t], [(0, 2)], b"a", 0)
        with pytest.raises(InvalidArgumentError):
            impl.tables_probe([t], [(2, 1)], b"a", 0)
        with pytest.raises(InvalidArgumentError):
            impl.tables_probe([t], [(0, 1)], b"a", 2**56)
        assert impl.tables_probe([bytearray(t)], [[0, 1]], b"a", 0) == [(0, 0)]


@needs_c
def test_read_functions_in_the_loaded_module() -> None:
    """The read-path C functions exist in the build (the GIL release of
    every declared function is checked by tests/test_native_gil.py)."""
    for name in _native.READ_C_FUNCTIONS:
        assert callable(getattr(C.lib, name)), name
    assert C.tables_probe is not T.tables_probe
    assert _native.tables_probe is (T.tables_probe if _native.implementation == "python"
                                    else C.tables_probe)


# ---- the engine: GetPlan and the cache admission ---------------------------

def _fill(path: Any, n: int, seed: int) -> tuple[lsm.DB, dict[bytes, bytes]]:
    db = lsm.DB(str(path), create_if_missing=True, write_buffer_size=64 << 10,
                block_cache_size=256 << 10)
    rnd = random.Random(seed)
    model: dict[bytes, bytes] = {}
    for i in range(n):
        k = b"%08d" % rnd.randrange(n * 2)
        if rnd.random() < 0.1:
            db.delete(k)
            model.pop(k, None)
        else:
            v = bytes([i % 251]) * rnd.randrange(1, 60)
            db.put(k, v)
            model[k] = v
    return db, model


def test_get_plan_agrees_with_model(tmp_path: Any) -> None:
    db, model = _fill(tmp_path / "db", 6000, 1)
    try:
        db.flush()
        snap = db.snapshot()
        for i in range(0, 12000, 3):
            k = b"%08d" % i
            assert db.get(k) == model.get(k)
        plan = db._get_plan
        if _native.implementation == "native" and _native.c_api() is not None:
            assert plan is not None and plan.ok and plan.ntabs >= 1
            plan._check()
        # overwrite some keys: the snapshot still sees the old values
        old = {k: v for k, v in list(model.items())[:200]}
        for k in old:
            db.put(k, b"new")
        db.flush()
        for k, v in old.items():
            assert db.get(k) == b"new"
            assert snap.get(k) == v
        snap.close()
    finally:
        db.close()


def test_get_plan_falls_back_with_range_tombstones(tmp_path: Any) -> None:
    db, model = _fill(tmp_path / "db", 3000, 2)
    try:
        db.delete_range(b"00001000", b"00002000")
        db.flush()
        for k in list(model):
            if b"00001000" <= k < b"00002000":
                del model[k]
        for i in range(0, 6000, 7):
            k = b"%08d" % i
            assert db.get(k) == model.get(k)
        plan = db._get_plan
        assert plan is None or not plan.ok or all(not r.range_tombstones for r in plan.readers)
    finally:
        db.close()


def test_cache_offer_admits_on_second_offer() -> None:
    c = BlockCache(1 << 20)
    assert c.offer((1, 0), b"x" * 100, 200) is False
    assert c.get((1, 0)) is None
    assert c.offer((1, 0), b"x" * 100, 200) is True
    assert c.get((1, 0)) == b"x" * 100
    assert c.rejected == 1
    c._check()
    # the window is bounded: a key offered long ago is forgotten
    cap = c._door_cap
    c.offer((2, 0), b"y", 10)
    for i in range(2 * cap + 2):
        c.offer((3, i), b"z", 10)
    assert c.offer((2, 0), b"y", 10) is False
    with pytest.raises(ArgumentTypeError):
        c.offer([2, 0], b"y", 10)  # type: ignore[arg-type]


def test_iterator_for_loop_stays_in_sync_with_the_cursor(tmp_path: Any) -> None:
    """``for`` over an Iterator consumes list iterators at C speed; the
    cursor (next/prev/seek) and a later ``for`` see exactly its position."""
    db = lsm.DB(str(tmp_path / "db"), create_if_missing=True, write_buffer_size=32 << 10)
    try:
        keys = [b"%06d" % i for i in range(3000)]
        for k in keys:
            db.put(k, k + b"v")
        db.flush()
        for k in keys[::2]:
            db.put(k, k + b"w")         # memtable + tables: merged windows
        want = [(k, k + (b"w" if i % 2 == 0 else b"v")) for i, k in enumerate(keys)]
        it = db.iterator()
        got = []
        for kv in it:
            got.append(kv)
            if len(got) == 1500:
                break
        assert got == want[:1500]
        assert next(it) == want[1500]
        assert it.prev() == want[1500]
        assert it.prev() == want[1499]
        g = iter(it)
        assert next(g) == want[1499]
        it.seek(b"002500")               # detaches g: it resumes from the cursor
        assert next(g) == want[2500]
        assert next(it) == want[2501]
        assert list(g) == want[2502:]
        assert list(it) == []
        it.close()
        with pytest.raises(lsm.ClosedError):
            next(iter(it))
        rit = db.iterator(reverse=True, include_value=False)
        assert [k for _, k in zip(range(10), rit)] == keys[::-1][:10]
        assert list(rit) == keys[::-1][10:]
    finally:
        db.close()


# ---- blocks_decode: several data blocks in one call ---------------------------

def _blocks_of(draw_sizes: list[int], seed: int) -> tuple[bytes, Any, list]:
    rnd = random.Random(seed)
    blocks = []
    entries = []
    for n in draw_sizes:
        ks = sorted({bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 12)))
                     for _ in range(n)})
        vs = [bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 20))) for _ in ks]
        blocks.append(_native.block_encode(ks, vs, rnd.randrange(1, 8)))
        entries.append((ks, vs))
    from array import array
    ends = array("Q")
    total = 0
    for b in blocks:
        total += len(b)
        ends.append(total)
    return b"".join(blocks), ends, entries


@needs_c
@MEDIUM
@given(sizes=st.lists(st.integers(1, 30), max_size=6), seed=st.integers(0, 10**6),
       flip=st.none() | st.integers(0, 10**6))
def test_blocks_decode_matches_twin_and_block_decode(sizes: list, seed: int, flip: Any) -> None:
    data, ends, entries = _blocks_of(sizes, seed)
    if flip is not None and data:
        d = bytearray(data)
        d[flip % len(d)] ^= 0x5A
        data = bytes(d)
    a = outcome(T.blocks_decode, data, ends)
    b = outcome(C.blocks_decode, data, ends)
    assert a == b
    if flip is None:
        keys, values, counts = a[1]
        assert keys == [k for ks, _ in entries for k in ks]
        assert values == [v for _, vs in entries for v in vs]
        assert list(counts) == [len(ks) for ks, _ in entries]


@pytest.mark.parametrize("impl", [T] + ([C] if C is not None else []),
                         ids=lambda m: "python" if m is T else "native")
def test_blocks_decode_arguments_and_offsets(impl: Any) -> None:
    from array import array
    data, ends, _ = _blocks_of([5, 7, 3], 1)
    with pytest.raises(ArgumentTypeError, match="ends"):
        impl.blocks_decode(data, [len(data)])
    with pytest.raises(InvalidArgumentError):
        impl.blocks_decode(data, array("Q", [len(data) + 1]))
    with pytest.raises(InvalidArgumentError):
        impl.blocks_decode(data, array("Q", [ends[1], ends[0]]))
    assert impl.blocks_decode(b"", array("Q")) == ([], [], array("Q"))
    # damage in the second block: the offset is a position in data, past block 0
    bad = bytearray(data)
    bad[ends[1] - 1] ^= 0xFF                 # its restart count
    with pytest.raises(CorruptionError) as ei:
        impl.blocks_decode(bytes(bad), ends)
    assert ends[0] <= ei.value.offset < ends[1]


@needs_c
@MEDIUM
@given(seed=st.integers(0, 10**6), nruns=st.integers(0, 5))
def test_merge_trusted_is_merge_on_valid_runs(seed: int, nruns: int) -> None:
    """The engine's unchecked merge (iterators) gives merge's result."""
    from lsm.dbformat import pack_internal_key
    rnd = random.Random(seed)
    runs = []
    seq = 1
    for _ in range(nruns):
        ks = sorted({bytes([rnd.randrange(97, 103)]) * rnd.randrange(1, 3) for _ in range(8)})
        keys = []
        for k in ks:
            keys.append(pack_internal_key(k, seq, rnd.choice([0, 1])))
            seq += 1
        runs.append((keys, [b"v%d" % i for i in range(len(keys))]))
    for read_seq in (0, seq // 2, seq):
        assert C.merge_trusted(runs, read_seq, (), _native.MERGE_READ, False) == \
            C.merge(runs, read_seq, (), _native.MERGE_READ, False)
    assert _native.merge_trusted is (C.merge_trusted if _native.implementation == "native"
                                     else T.merge)
