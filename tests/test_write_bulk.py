"""Bulk write-path forms against their per-entry references: TableBuilder.add_many
(same bytes, same errors as add), compaction's _Output.add_many (same output
tables as per-entry add), MemTable.point_run / the vectorised _build, and
build_table_sorted against build_table."""

from __future__ import annotations

import os
import random

import pytest

from blockdev.errors import ArgumentTypeError, ClosedError, InvalidArgumentError
from blockdev.fs import PosixFS
from lsm import compaction as cmod
from lsm import filenames as fn
from lsm.cache import TableCache
from lsm.compaction import (Compaction, build_table, build_table_sorted, run_compaction)
from lsm.dbformat import KIND_RANGE_TOMBSTONE, KIND_TOMBSTONE, KIND_VALUE, pack_internal_key
from lsm.memtable import MemTable
from lsm.options import Options
from lsm.sstable.builder import TableBuilder
from lsm.sstable.reader import TableReader
from lsm.version import FileMetaData


class _Buf:
    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def append(self, data: bytes) -> None:
        self.parts.append(bytes(data))
        self.size += len(data)


def _entries(rnd: random.Random, n: int) -> list[tuple[bytes, bytes]]:
    uks = sorted({os.urandom(rnd.randint(1, 20)) for _ in range(n)})
    out = []
    seq = 10 ** 6
    for u in uks:
        for _ in range(rnd.choice([1, 1, 1, 2, 3])):
            seq -= 1
            kind = rnd.choice([KIND_TOMBSTONE, KIND_VALUE, KIND_VALUE])
            value = b"" if kind == KIND_TOMBSTONE else os.urandom(rnd.randint(0, 300))
            out.append((pack_internal_key(u, seq, kind), value))
    return out


def _build(entries: list[tuple[bytes, bytes]], max_chunk: int | None, **kw: object
           ) -> tuple[bytes, object]:
    f = _Buf()
    b = TableBuilder(f, **kw)
    if max_chunk is None:
        for k, v in entries:
            b.add(k, v)
    else:
        rnd = random.Random(len(entries))
        i = 0
        while i < len(entries):
            c = rnd.randint(1, max_chunk)
            part = entries[i:i + c]
            b.add_many([k for k, _ in part], tuple(v for _, v in part))
            i += c
    props = b.finish()
    return b"".join(f.parts), props


@pytest.mark.parametrize("seed", range(12))
def test_add_many_same_bytes_as_add(seed: int) -> None:
    rnd = random.Random(seed)
    entries = _entries(rnd, rnd.randint(1, 2500))
    kw = {"block_size": rnd.choice([64, 300, 4096]),
          "block_restart_interval": rnd.choice([1, 4, 16])}
    ref = _build(entries, None, **kw)
    for chunk in (1, 5, 97, 10 ** 6):
        assert _build(entries, chunk, **kw) == ref


def _error_of(fn_: object) -> tuple[type, str] | None:
    try:
        fn_()  # type: ignore[operator]
    except Exception as exc:   # noqa: BLE001 -- compared, not swallowed
        return type(exc), str(exc)
    return None


@pytest.mark.parametrize("bad", [
    "order", "equal", "kind2", "short", "type_key", "type_value", "across_calls"])
def test_add_many_errors_match_add(bad: str) -> None:
    keys = [pack_internal_key(b"k%03d" % i, 100 - i, KIND_VALUE) for i in range(40)]
    values = [b"v%d" % i for i in range(40)]
    if bad == "order":
        keys[20], keys[21] = keys[21], keys[20]
    elif bad == "equal":
        keys[21] = keys[20]
    elif bad == "kind2":
        keys[7] = pack_internal_key(b"k007", 93, KIND_RANGE_TOMBSTONE)
    elif bad == "short":
        keys[3] = b"short"
    elif bad == "type_key":
        keys[5] = bytearray(keys[5])      # add converts bytes-likes: accepted
    elif bad == "type_value":
        values[9] = "str"                 # type: ignore[call-overload]
    elif bad == "across_calls":
        keys = keys[20:] + keys[:20]
    ref_f, many_f = _Buf(), _Buf()
    ref, many = TableBuilder(ref_f, block_size=64), TableBuilder(many_f, block_size=64)
    half = 10 if bad == "across_calls" else 0

    def per_entry() -> None:
        for k, v in zip(keys, values):
            ref.add(k, v)

    def bulk() -> None:
        if half:
            many.add_many(keys[:half], values[:half])
        many.add_many(keys[half:], values[half:])

    e1, e2 = _error_of(per_entry), _error_of(bulk)
    assert e1 == e2
    if bad != "type_key":
        assert e1 is not None
    assert ref.num_entries == many.num_entries        # the same prefix was added
    if e1 is None:
        assert ref.finish() == many.finish() and ref_f.parts == many_f.parts


def test_add_many_arguments() -> None:
    b = TableBuilder(_Buf())
    with pytest.raises(ArgumentTypeError):
        b.add_many(iter([]), [])                       # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError):
        b.add_many([], None)                           # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        b.add_many([pack_internal_key(b"a", 1, KIND_VALUE)], [])
    b.add_many([], [])
    b.finish()
    with pytest.raises(ClosedError):
        b.add_many([], [])


def _filled_memtable(rnd: random.Random, n: int, multi: bool, tombs: bool) -> MemTable:
    m = MemTable()
    seq = 1
    for _ in range(n):
        k = b"%06d" % rnd.randrange(n if multi else 10 ** 6)
        if not multi and m.get(k, 10 ** 9) is not None:
            continue
        kind = KIND_VALUE if rnd.random() < 0.8 else KIND_TOMBSTONE
        m.add(seq, kind, k, os.urandom(rnd.randint(0, 50)) if kind else b"")
        seq += 1
    if tombs:
        m.add(seq, KIND_RANGE_TOMBSTONE, b"000100", b"000200")
    return m


@pytest.mark.parametrize("multi", [False, True])
@pytest.mark.parametrize("tombs", [False, True])
def test_point_run_and_sorted_build(tmp_path, multi: bool, tombs: bool) -> None:
    rnd = random.Random(int(multi) * 2 + int(tombs))
    m = _filled_memtable(rnd, 3000, multi, tombs)
    ref_keys, ref_values = m.run()
    with pytest.raises(InvalidArgumentError):
        m.point_run()                                  # not frozen
    m.freeze()
    keys, values = m.point_run()
    points = [(k, v) for k, v in zip(ref_keys, ref_values) if k[-8] != KIND_RANGE_TOMBSTONE]
    assert list(zip(keys, values)) == points
    assert m.run() == (ref_keys, ref_values)
    m._check()
    fs = PosixFS(str(tmp_path), create=True)
    opts = Options(block_size=512)
    a = build_table(fs, 1, list(zip(ref_keys, ref_values)), [], opts)
    b = build_table_sorted(fs, 2, keys, values, m.range_tombstones(), opts)
    assert a is not None and b is not None
    assert (a.smallest, a.largest, a.smallest_seq, a.largest_seq, a.num_entries,
            a.num_deletions) == (b.smallest, b.largest, b.smallest_seq, b.largest_seq,
                                 b.num_entries, b.num_deletions)
    ra = fs.open(fn.table_file_name(1)).read(0, a.size)
    rb = fs.open(fn.table_file_name(2)).read(0, b.size)
    assert ra == rb


def test_build_table_sorted_arguments(tmp_path) -> None:
    fs = PosixFS(str(tmp_path), create=True)
    with pytest.raises(ArgumentTypeError):
        build_table_sorted(fs, 1, [], [], [], {})      # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError):
        build_table_sorted(fs, 1, (), [], [], Options())  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        build_table_sorted(fs, 1, [b"x" * 9], [], [], Options())
    assert build_table_sorted(fs, 1, [], [], [(b"b", b"a", 3)], Options()) is None
    with pytest.raises(InvalidArgumentError):         # kind 2 in the point lists
        build_table_sorted(fs, 2, [pack_internal_key(b"a", 1, KIND_RANGE_TOMBSTONE)], [b"b"],
                           [], Options())
    assert not fs.list()                               # failed builds leave no file


def _compact(tmp_path, per_entry: bool, monkeypatch, with_gps: bool
             ) -> list[tuple[int, bytes]]:
    """One L1 -> L2 compaction of three input files, with dense grandparents in
    L3 (outputs cut by them) or none and larger values (cut by size)."""
    opts = Options(block_size=256, target_file_size_base=128 << 10)
    fs = PosixFS(str(tmp_path), create=True)
    cache = TableCache(lambda n: TableReader(fs.open(fn.table_file_name(n)),
                                             fn.table_file_name(n)), 100)
    rnd = random.Random(7)
    number = [100]

    def new_number() -> int:
        number[0] += 1
        return number[0]

    def table(lo: int, hi: int, seq0: int, step: int, vmax: int = 120) -> FileMetaData:
        m = MemTable()
        s = seq0
        for i in range(lo, hi, step):
            m.add(s, KIND_VALUE, b"key%06d" % i, rnd.randbytes(rnd.randint(10, vmax)))
            s += 1
        m.freeze()
        k, v = m.point_run()
        meta = build_table_sorted(fs, new_number(), k, v, [], opts)
        assert meta is not None
        return meta

    vmax = 30 if with_gps else 300
    inputs1 = [table(0, 6000, 50_000, 3, vmax)]
    inputs2 = [table(0, 3000, 1, 2, vmax), table(3000, 6000, 10_000, 2, vmax)]
    # grandparents ~35x denser than the inputs: outputs are cut by them
    gps = [table(a, a + 500, 20_000 + a, 1, 2000)
           for a in range(0, 6000, 500)] if with_gps else []
    c = Compaction(level=1, output_level=2, inputs=(tuple(inputs1), tuple(inputs2)),
                   grandparents=tuple(gps), bottom=False, trivial_move=False,
                   reason="test")
    if per_entry:
        def add_many(self: object, keys: list[bytes], values: list[bytes]) -> None:
            for k, v in zip(keys, values):
                self.add(k, v)                         # type: ignore[attr-defined]
        monkeypatch.setattr(cmod._Output, "add_many", add_many)
    edit, _stats = run_compaction(c, fs=fs, table_cache=cache, options=opts,
                                  new_file_number=new_number, snapshots=[])
    out = []
    for _lv, meta in edit.new_files:
        data = fs.open(fn.table_file_name(meta.number)).read(0, meta.size)
        out.append((meta.size, data))
    return out


@pytest.mark.parametrize("with_gps", [True, False])
def test_compaction_chunks_cut_like_per_entry(tmp_path, monkeypatch, with_gps: bool) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    bulk = _compact(tmp_path / "a", False, monkeypatch, with_gps)
    ref = _compact(tmp_path / "b", True, monkeypatch, with_gps)
    assert len(ref) > 3                                # cut several times
    assert bulk == ref


def test_put_fast_path_wal_bytes_match_encode_records(tmp_path) -> None:
    """put's inline one-record payload (any value length, short and long keys)
    is byte for byte the batch encoding: the log replays to the same values."""
    from lsm.batch import WriteBatch
    from lsm.db import DB
    from lsm.wal import LogReader

    sizes = [0, 1, 127, 128, 300, 16383, 16384, 70000]
    db = DB(str(tmp_path / "db"), create_if_missing=True)
    for i, n in enumerate(sizes):
        db.put(b"k%02d" % i, bytes([i]) * n)
    db.put(b"L" * 200, b"long key")
    log_name = db._log.name
    seq0 = db._seq - len(sizes)
    fs = db._fs
    payloads = [rec for rec in LogReader(fs.open(log_name), log_name)]
    db.close()
    for j, n in enumerate(sizes):
        wb = WriteBatch()
        wb.put(b"k%02d" % j, bytes([j]) * n)
        assert payloads[-len(sizes) - 1 + j] == wb.encode(seq0 + j)
    db = DB(str(tmp_path / "db"))
    for i, n in enumerate(sizes):
        assert db.get(b"k%02d" % i) == bytes([i]) * n
    assert db.get(b"L" * 200) == b"long key"
    db.close()
