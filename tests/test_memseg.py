"""Memtable segments (lsm/_memseg.py, native/memtab.c): C against the twins
byte for byte, malformed arguments included; the memtable with segments
against a model; the DB's bulk write path."""

from __future__ import annotations

import os
import random
from array import array

import pytest
from hypothesis import given, settings, strategies as st

import lsm
from blockdev.errors import ArgumentTypeError, InvalidArgumentError
from lsm import _memseg as M
from lsm import _native
from lsm._twins import pack
from lsm.db import SEGMENT_MIN_RECORDS
from lsm.dbformat import KIND_TOMBSTONE, KIND_VALUE, MAX_SEQUENCE
from lsm.memtable import SEGMENT_FANOUT, MemTable

C = M.c_functions()
T = M.TWINS
needs_c = pytest.mark.skipif(C is None, reason="native extension not built")
IMPLS = [T] + ([C] if C is not None else [])

small_keys = st.binary(max_size=3) | st.sampled_from([b"a", b"ab", b"b", b"\xff" * 20])
records = st.lists(st.tuples(st.sampled_from([0, 1]), small_keys, st.binary(max_size=12)),
                   min_size=1, max_size=70)


def _batch(recs: list) -> tuple[bytes, tuple]:
    kinds = bytes(k for k, _, _ in recs)
    return kinds, pack([key for _, key, _ in recs], [v if k else b"" for k, _, v in recs])


def _fields(seg: M.Segment) -> tuple:
    return (seg.keys, seg.klens, seg.koffs, seg.ents, seg.elens, seg.eoffs, seg.table,
            seg.n, seg.min_seq, seg.max_seq, seg.tombstones)


def _error(fn, *args) -> tuple:
    try:
        fn(*args)
    except Exception as exc:        # noqa: BLE001 - compared between implementations
        return type(exc), str(exc)
    return None, None


# ------------------------------------------------------------ C vs twins

@needs_c
@settings(max_examples=60, deadline=None)
@given(recs=records, seq=st.integers(0, 1 << 20))
def test_build_c_equals_twin(recs: list, seq: int) -> None:
    kinds, packed = _batch(recs)
    a = C["segment_build"](seq, kinds, packed)
    b = T["segment_build"](seq, kinds, packed)
    assert _fields(a) == _fields(b)
    a._check()
    assert C["batch_encode_packed"](seq, kinds, packed) == \
        T["batch_encode_packed"](seq, kinds, packed) == \
        bytes(C["batch_encode_packed_view"](seq, kinds, packed)) == \
        bytes(T["batch_encode_packed_view"](seq, kinds, packed))


@needs_c
@settings(max_examples=30, deadline=None)
@given(batches=st.lists(records, min_size=1, max_size=5), probes=st.lists(small_keys, max_size=8))
def test_get_and_concat_c_equal_twin(batches: list, probes: list) -> None:
    segs = []
    seq = 1
    for recs in batches:
        kinds, packed = _batch(recs)
        segs.append(C["segment_build"](seq, kinds, packed))
        seq += len(recs)
    cv, tv = C["segments_view"](segs), T["segments_view"](segs)
    keys = {key for recs in batches for _, key, _ in recs} | set(probes)
    for key in keys:
        for read_seq in range(0, seq + 1):
            assert C["segments_get"](cv, key, read_seq) == T["segments_get"](tv, key, read_seq)
    for lo in range(len(segs)):
        for hi in range(lo + 1, len(segs) + 1):
            a = C["segments_concat"](segs[lo:hi])
            b = T["segments_concat"](segs[lo:hi])
            assert _fields(a) == _fields(b)
            a._check()


@pytest.mark.parametrize("impl", IMPLS, ids=lambda f: "twin" if f is T else "c")
def test_get_semantics(impl: dict) -> None:
    """Newest version <= read_seq, newest segment first; tombstones returned."""
    s1 = impl["segment_build"](10, b"\x01\x01\x00", pack([b"k", b"k", b"j"], [b"v10", b"v11", b""]))
    s2 = impl["segment_build"](20, b"\x00\x01", pack([b"k", b"x"], [b"", b"x20"]))
    view = impl["segments_view"]([s1, s2])
    get = impl["segments_get"]
    assert get(view, b"k", 9) is None
    assert get(view, b"k", 10) == (10, KIND_VALUE, b"v10")
    assert get(view, b"k", 19) == (11, KIND_VALUE, b"v11")
    assert get(view, b"k", 20) == (20, KIND_TOMBSTONE, b"")
    assert get(view, b"j", MAX_SEQUENCE) == (12, KIND_TOMBSTONE, b"")
    assert get(view, b"x", 20) is None
    assert get(view, b"x", 21) == (21, KIND_VALUE, b"x20")
    assert get(view, b"nope", MAX_SEQUENCE) is None
    assert get(impl["segments_view"]([]), b"k", 5) is None
    merged = impl["segments_concat"]([s1, s2])
    assert merged.n == 5 and merged.min_seq == 10 and merged.max_seq == 21
    assert merged.tombstones == 2
    one = impl["segments_view"]([merged])
    for key in (b"k", b"j", b"x", b"nope"):
        for read_seq in range(8, 24):
            assert get(one, key, read_seq) == get(view, key, read_seq)


BAD_BUILDS = [
    ("seq", "x", b"\x01", pack([b"a"], [b"v"])),
    ("kinds type", 1, [1], pack([b"a"], [b"v"])),
    ("packed type", 1, b"\x01", [b"a"]),
    ("empty", 1, b"", pack([], [])),
    ("negative seq", -1, b"\x01", pack([b"a"], [b"v"])),
    ("seq overflow", MAX_SEQUENCE, b"\x01\x01", pack([b"a", b"b"], [b"v", b"w"])),
    ("kind 2", 1, b"\x02", pack([b"a"], [b"b"])),
    ("tombstone value", 1, b"\x00", pack([b"a"], [b"v"])),
    ("count mismatch", 1, b"\x01\x01", pack([b"a"], [b"v"])),
    ("key lengths", 1, b"\x01", (b"abc", array("Q", [2]), b"v", array("Q", [1]))),
    ("value lengths", 1, b"\x01", (b"a", array("Q", [1]), b"vv", array("Q", [5]))),
    ("lens typecode", 1, b"\x01", (b"a", array("I", [1]), b"v", array("Q", [1]))),
]


@needs_c
@pytest.mark.parametrize("case", BAD_BUILDS, ids=[c[0] for c in BAD_BUILDS])
def test_bad_arguments_same_error(case: tuple) -> None:
    _, seq, kinds, packed = case
    for name in ("segment_build", "batch_encode_packed"):
        c_err = _error(C[name], seq, kinds, packed)
        t_err = _error(T[name], seq, kinds, packed)
        assert c_err == t_err
        assert c_err[0] in (ArgumentTypeError, InvalidArgumentError), c_err


@pytest.mark.parametrize("impl", IMPLS, ids=lambda f: "twin" if f is T else "c")
def test_view_and_concat_arguments(impl: dict) -> None:
    s1 = impl["segment_build"](1, b"\x01", pack([b"a"], [b"v"]))
    s2 = impl["segment_build"](2, b"\x01", pack([b"b"], [b"w"]))
    with pytest.raises(ArgumentTypeError):
        impl["segments_view"]([s1, "x"])
    with pytest.raises(ArgumentTypeError):
        impl["segments_get"](impl["segments_view"]([s1]), "a", 5)
    with pytest.raises(InvalidArgumentError):
        impl["segments_concat"]([s2, s1])           # not in sequence order
    with pytest.raises(InvalidArgumentError):
        impl["segments_concat"]([])


def test_selected_implementation() -> None:
    want = "native" if (_native.implementation == "native" and C is not None) else "python"
    assert M.implementation == want
    assert set(M.SEGMENT_FUNCTIONS) == set(T)


# ------------------------------------------------------ memtable + segments

class _Model:
    """Every version of every key: (seq, kind, value)."""

    def __init__(self) -> None:
        self.versions: dict[bytes, list[tuple[int, int, bytes]]] = {}

    def add(self, seq: int, kind: int, key: bytes, value: bytes) -> None:
        self.versions.setdefault(key, []).append((seq, kind, value))

    def get(self, key: bytes, read_seq: int):
        best = None
        for v in self.versions.get(key, []):
            if v[0] <= read_seq and (best is None or v[0] > best[0]):
                best = v
        return best

    def run(self, start, stop) -> list[tuple[bytes, int, bytes]]:
        out = []
        for key in sorted(self.versions):
            if (start is None or key >= start) and (stop is None or key < stop):
                for seq, kind, value in sorted(self.versions[key], reverse=True):
                    out.append((key, seq, kind, value))
        return out


def _decode_run(ikeys: list[bytes], values: list[bytes]) -> list:
    out = []
    for k, v in zip(ikeys, values):
        t = int.from_bytes(k[-8:], "little")
        out.append((k[:-8], t >> 8, t & 0xFF, v))
    return out


@settings(max_examples=40, deadline=None)
@given(ops=st.lists(st.one_of(
    st.tuples(st.just("add"), st.sampled_from([0, 1]), small_keys, st.binary(max_size=6)),
    st.tuples(st.just("batch"), st.lists(st.tuples(st.sampled_from([0, 1]), small_keys,
                                                   st.binary(max_size=6)), max_size=6)),
    st.tuples(st.just("segment"), records)), min_size=1, max_size=14),
    bounds=st.tuples(st.none() | small_keys, st.none() | small_keys))
def test_memtable_with_segments_matches_model(ops: list, bounds: tuple) -> None:
    mem = MemTable()
    model = _Model()
    seq = 1
    for op in ops:
        if op[0] == "add":
            _, kind, key, value = op
            value = value if kind else b""
            mem.add(seq, kind, key, value)
            model.add(seq, kind, key, value)
            seq += 1
        elif op[0] == "batch":
            items = [(k, key, v if k else b"") for k, key, v in op[1]]
            seq2 = mem.add_batch(seq, items)
            for i, (k, key, v) in enumerate(items):
                model.add(seq + i, k, key, v)
            seq = seq2
        else:
            kinds, packed = _batch(op[1])
            seq2 = mem.add_segment(seq, kinds, packed)
            for i, (k, key, v) in enumerate(op[1]):
                model.add(seq + i, k, key, v if k else b"")
            seq = seq2
    mem._check()
    keys = set(model.versions) | {b"zz"}
    for key in keys:
        for read_seq in range(0, seq + 1):
            assert mem.get(key, read_seq) == model.get(key, read_seq), (key, read_seq)
    assert mem._sorted_keys() == sorted(model.versions)
    start, stop = bounds
    assert _decode_run(*mem.run(start, stop)) == model.run(start, stop)
    mem.freeze()
    assert _decode_run(*mem.run()) == model.run(None, None)
    assert _decode_run(*mem.run()) == model.run(None, None)      # the cached full run
    assert _decode_run(*mem.point_run()) == model.run(None, None)
    packed = mem.packed_entries()
    order = _native.sort_entries(packed)
    ks = _native.unpack_items(packed[0], packed[1])
    es = _native.unpack_items(packed[2], packed[3])
    flushed = [(ks[i], int.from_bytes(es[i][:8], "little") >> 8,
                es[i][0], es[i][8:]) for i in order]
    assert flushed == model.run(None, None)


def test_segments_stay_few() -> None:
    """Concatenation bounds the segment count: O(log n) for n equal batches."""
    mem = MemTable()
    seq = 1
    for b in range(200):
        keys = [b"%06d" % (b * 10 + i) for i in range(10)]
        seq = mem.add_segment(seq, b"\x01" * 10, pack(keys, [b"v"] * 10))
    segs = mem._seg[0]
    levels = 1
    while SEGMENT_FANOUT ** levels < 200:
        levels += 1
    assert len(segs) <= (SEGMENT_FANOUT - 1) * levels + 1 < 200
    assert sum(s.n for s in segs) == 2000 and len(mem) == 2000
    mem._check()
    assert mem.get(b"%06d" % 1234, seq) == (1235, KIND_VALUE, b"v")


def test_add_segment_preconditions() -> None:
    mem = MemTable()
    mem.add(5, KIND_VALUE, b"a", b"v")
    with pytest.raises(InvalidArgumentError):
        mem.add_segment(5, b"\x01", pack([b"b"], [b"w"]))      # sequence not above
    mem.freeze()
    with pytest.raises(InvalidArgumentError):
        mem.add_segment(9, b"\x01", pack([b"b"], [b"w"]))


# --------------------------------------------------------------- the DB

def test_db_bulk_batch_uses_a_segment_and_survives_reopen(tmp_path) -> None:
    path = str(tmp_path / "db")
    rng = random.Random(3)
    expect: dict[bytes, bytes] = {b"k0001": b"single"}
    with lsm.DB(path, create_if_missing=True) as db:
        db.put(b"k0001", b"single")
        with db.write_batch() as wb:
            for i in range(SEGMENT_MIN_RECORDS + 10):
                key = b"k%04d" % rng.randrange(50)
                if rng.random() < 0.2:
                    wb.delete(key)
                    expect.pop(key, None)
                else:
                    value = os.urandom(8)
                    wb.put(key, value)
                    expect[key] = value
        assert db._state.mem._seg is not None, "a bulk batch is kept as a segment"
        small = db.write_batch()
        small.put(b"s", b"1")
        small.write()
        expect[b"s"] = b"1"
        snap = db.snapshot()
        with db.write_batch() as wb:
            for i in range(SEGMENT_MIN_RECORDS):
                wb.put(b"k%04d" % i, b"new")
        for key, value in expect.items():
            assert snap.get(key) == value
        assert list(snap.iterator()) == sorted(expect.items())
        snap.close()
        for i in range(SEGMENT_MIN_RECORDS):
            expect[b"k%04d" % i] = b"new"
        assert list(db.iterator()) == sorted(expect.items())
    with lsm.DB(path) as db:                # replayed from the WAL
        assert list(db.iterator()) == sorted(expect.items())
        db.compact_range(None, None)
        assert list(db.iterator()) == sorted(expect.items())


def test_db_unbound_batch_checks_limits(tmp_path) -> None:
    with lsm.DB(str(tmp_path / "db"), create_if_missing=True, max_key_size=8) as db:
        wb = lsm.WriteBatch()
        for i in range(SEGMENT_MIN_RECORDS):
            wb.put(b"%d" % i, b"v")
        wb.put(b"x" * 9, b"v")
        with pytest.raises(InvalidArgumentError, match="max_key_size"):
            db.write(wb)
        assert db.get(b"1") is None        # nothing of the batch applied


@needs_c
def test_stale_build_is_refused() -> None:
    """A native module lacking a segment function is not used (ImportError
    naming it; ``c_functions`` then falls back to the twins)."""
    from types import SimpleNamespace
    api = _native.c_api()

    class Lib:
        def __getattr__(self, name: str):
            if name == "lsm_segments_get":
                raise AttributeError(name)
            return getattr(api.lib, name)

    with pytest.raises(ImportError, match="lsm_segments_get"):
        M._make_c(SimpleNamespace(ffi=api.ffi, lib=Lib()))
