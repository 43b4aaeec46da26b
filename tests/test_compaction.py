"""Compaction picking (leveled, tiered) and running on real tables."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blockdev.errors import ArgumentTypeError, CorruptionError, InvalidArgumentError
from blockdev.fs import PosixFS
from lsm import _native
from lsm import compaction as cmod
from lsm import filenames as fn
from lsm.cache import TableCache
from lsm.compaction import (Compaction, build_table, level_scores, pick_compaction,
                            pick_range_compaction, run_compaction)
from lsm.dbformat import (KIND_RANGE_TOMBSTONE, KIND_TOMBSTONE, KIND_VALUE, MAX_SEQUENCE,
                          internal_sort_key, pack_internal_key)
from lsm.memtable import MemTable
from lsm.options import Options
from lsm.sstable.reader import TableReader
from lsm.version import FileMetaData, Version, VersionEdit, sentinel_key


def fm(number: int, lo: bytes, hi: bytes, size: int = 1000, seq: int = 1) -> FileMetaData:
    return FileMetaData(number, size, pack_internal_key(lo, seq, KIND_VALUE),
                        pack_internal_key(hi, seq, KIND_VALUE), seq, seq, 10, 0)


def version_of(levels: dict[int, list[FileMetaData]], num_levels: int = 7) -> Version:
    edit = VersionEdit(new_files=tuple((lv, f) for lv, files in levels.items() for f in files))
    v = Version.empty(num_levels).apply(edit)
    v._check()
    return v


OPTS = Options(level0_file_num_compaction_trigger=4, max_bytes_for_level_base=10_000,
               level_size_multiplier=10, target_file_size_base=1024, write_buffer_size=4096)


# -- leveled picking ----------------------------------------------------------

def test_nothing_to_do() -> None:
    v = version_of({0: [fm(1, b"a", b"b")], 1: [fm(2, b"a", b"z", size=5000)]})
    assert pick_compaction(v, OPTS, {}) is None


def test_l0_trigger_expands_overlapping_l0() -> None:
    v = version_of({0: [fm(1, b"a", b"c", seq=1), fm(2, b"b", b"e", seq=2),
                        fm(3, b"x", b"y", seq=3), fm(4, b"d", b"f", seq=4)],
                    1: [fm(10, b"a", b"b"), fm(11, b"f", b"g"), fm(12, b"m", b"n")],
                    2: [fm(20, b"a", b"z")]})
    c = pick_compaction(v, OPTS, {})
    assert c is not None and (c.level, c.output_level) == (0, 1)
    assert [f.number for f in c.inputs[0]] == [4, 2, 1]      # not 3: it overlaps none
    assert [f.number for f in c.inputs[1]] == [10, 11]
    assert not c.trivial_move and not c.bottom               # L2 overlaps
    c._check()


def test_scores_round_robin_and_bottom() -> None:
    l1 = [fm(10 + i, b"k%d0" % i, b"k%d9" % i, size=4000) for i in range(4)]   # 16000 > 10000
    l2 = [fm(20, b"k00", b"k05", size=100), fm(21, b"k20", b"k29", size=100)]
    v = version_of({1: l1, 2: l2})
    scores = level_scores(v, OPTS)
    assert scores[1] == pytest.approx(1.6) and scores[6] == 0
    c = pick_compaction(v, OPTS, {})
    assert c.level == 1 and [f.number for f in c.inputs[0]] == [10]
    assert [f.number for f in c.inputs[1]] == [20] and c.bottom and not c.trivial_move
    # round robin: the pointer at file 10's largest picks file 11 (nothing below: trivial)
    c = pick_compaction(v, OPTS, {1: l1[0].largest})
    assert [f.number for f in c.inputs[0]] == [11] and c.trivial_move
    c = pick_compaction(v, OPTS, {1: l1[1].largest})
    assert [f.number for f in c.inputs[0]] == [12] and [f.number for f in c.inputs[1]] == [21]
    c = pick_compaction(v, OPTS, {1: l1[3].largest})          # wraps around
    assert [f.number for f in c.inputs[0]] == [10]


def test_trivial_move_blocked_by_grandparents() -> None:
    l1 = [fm(10, b"a", b"c", size=20_000)]
    big = [fm(30 + i, b"a%d" % i, b"a%d" % i, size=5000) for i in range(4)]    # 20000 > 10240
    c = pick_compaction(version_of({1: l1, 3: big}), OPTS, {})
    assert c.level == 1 and c.inputs[1] == () and not c.trivial_move
    assert [f.number for f in c.grandparents] == [30, 31, 32, 33] and not c.bottom
    c = pick_compaction(version_of({1: l1, 4: big}), OPTS, {})
    assert c.inputs[1] == () and c.trivial_move and not c.bottom
    c = pick_compaction(version_of({1: l1, 3: big[:2]}), OPTS, {})
    assert c.trivial_move     # 10000 bytes of grandparent overlap is within 10 x 1024


def test_level_inputs_widened_when_free() -> None:
    l1 = [fm(10, b"b", b"c", size=6000), fm(11, b"d", b"e", size=6000)]
    l2 = [fm(20, b"a", b"f")]
    c = pick_compaction(version_of({1: l1, 2: l2}), OPTS, {})
    assert [f.number for f in c.inputs[0]] == [10, 11] and [f.number for f in c.inputs[1]] == [20]


def test_range_compaction() -> None:
    v = version_of({0: [fm(1, b"a", b"c", seq=2), fm(2, b"m", b"n", seq=3)],
                    1: [fm(10, b"a", b"b"), fm(11, b"p", b"q")]})
    c = pick_range_compaction(v, OPTS, 0, b"b", b"b")
    assert [f.number for f in c.inputs[0]] == [1] and [f.number for f in c.inputs[1]] == [10]
    assert not c.trivial_move and c.reason.startswith("manual")
    c = pick_range_compaction(v, OPTS, 0, b"m", None)
    assert [f.number for f in c.inputs[0]] == [2] and not c.trivial_move
    assert pick_range_compaction(v, OPTS, 1, b"c", b"o") is None
    assert pick_range_compaction(v, OPTS, 6, None, None) is None
    assert pick_range_compaction(v, OPTS, 1, None, None) is None    # nothing deeper
    v3 = v.apply(VersionEdit(new_files=((4, fm(40, b"q", b"r")),)))
    c = pick_range_compaction(v3, OPTS, 1, None, None)
    assert [f.number for f in c.inputs[0]] == [10, 11] and c.output_level == 2
    assert not c.bottom and c.inputs[1] == ()
    assert pick_range_compaction(v3, OPTS, 1, None, b"o") is None  # L4 is outside the range
    with pytest.raises(InvalidArgumentError):
        pick_range_compaction(v, OPTS, 7, None, None)
    with pytest.raises(ArgumentTypeError):
        pick_range_compaction(v, OPTS, 0, "a", None)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        pick_compaction(Version.empty(3), OPTS, {})


# -- tiered picking -------------------------------------------------------------

TIERED = dataclasses.replace(OPTS, compaction_style="tiered", min_merge_width=3,
                             max_merge_width=5, write_buffer_size=4096)


def l0(n: int, start: int = 1, size: int = 3000) -> list[FileMetaData]:
    return [fm(start + i, b"a", b"z", size=size, seq=start + i) for i in range(n)]


def test_tiered_bucket_of_flushes_goes_above_first_occupied() -> None:
    v = version_of({0: l0(3), 4: [fm(50, b"a", b"z", size=10**6)]})
    c = pick_compaction(v, TIERED, {})
    assert c.output_level == 3 and not c.bottom and not c.moves
    assert sorted(f.number for _, f in c.input_files()) == [1, 2, 3]
    assert pick_compaction(version_of({0: l0(2)}), TIERED, {}) is None


def test_tiered_similar_levels_merge_into_oldest_slot() -> None:
    v = version_of({0: [fm(1, b"a", b"b", size=100)],
                    1: [fm(10, b"a", b"z", size=50_000)], 2: [fm(20, b"a", b"z", size=60_000)],
                    3: [fm(30, b"a", b"z", size=45_000)], 5: [fm(50, b"a", b"z", size=10**7)]})
    c = pick_compaction(v, TIERED, {})
    assert [lv for lv, _ in c.sources] == [1, 2, 3] and c.output_level == 3
    assert not c.bottom and c.level == 1


def test_tiered_shift_down_when_l1_occupied() -> None:
    v = version_of({0: l0(4), 1: [fm(10, b"a", b"z", size=10**5)],
                    2: [fm(20, b"a", b"z", size=10**6)], 4: [fm(40, b"a", b"z", size=10**7)]})
    c = pick_compaction(v, TIERED, {})
    assert c.output_level == 1 and not c.bottom
    assert sorted((a, b, f.number) for a, b, f in c.moves) == [(1, 2, 10), (2, 3, 20)]
    only_l1 = version_of({0: l0(4), 1: [fm(10, b"a", b"z", size=10**5)]})
    c = pick_compaction(only_l1, TIERED, {})
    assert c.output_level == 1 and c.moves and not c.bottom     # the shifted L1 is older
    disjoint = version_of({0: l0(4), 1: [fm(10, b"zz", b"zzz", size=10**5)]})
    assert pick_compaction(disjoint, TIERED, {}).bottom
    assert sorted(f.number for _, f in c.input_files()) == [1, 2, 3, 4]
    full = version_of({0: l0(4), **{lv: [fm(10 * lv, b"a", b"z", size=10**lv)]
                                    for lv in range(1, 7)}})
    c = pick_compaction(full, TIERED, {})      # no empty level: L1 joins the merge
    assert c.output_level == 1 and not c.moves
    assert sorted(f.number for _, f in c.input_files()) == [1, 2, 3, 4, 10]


def test_tiered_l0_trigger_fallback_and_range() -> None:
    sizes = [100, 3000, 9000, 40000]   # dissimilar flushes? all <= write_buffer_size count equal
    o = dataclasses.replace(TIERED, write_buffer_size=4096, min_merge_width=5)
    files = [fm(i + 1, b"a", b"z", size=s, seq=i + 1) for i, s in enumerate(sizes)]
    c = pick_compaction(version_of({0: files}), o, {})
    assert c is not None and "L0 file count" in c.reason and c.output_level == 6 and c.bottom
    v = version_of({0: [fm(1, b"a", b"b")], 2: [fm(20, b"c", b"d")], 5: [fm(50, b"a", b"z")]})
    c = pick_range_compaction(v, TIERED, 0, None, None)
    assert [lv for lv, _ in c.sources] == [0, 2, 5] and c.output_level == 5 and c.bottom
    assert pick_range_compaction(v, TIERED, 1, None, None) is None
    assert pick_range_compaction(version_of({5: [fm(50, b"a", b"z")]}), TIERED, 0,
                                 None, None) is None


# -- running on real tables -------------------------------------------------------

class Env:
    def __init__(self, path: str, options: Options) -> None:
        self.fs = PosixFS(path, create=True)
        self.options = options
        self.next = 1
        self.cache = TableCache(self.open, 100)

    def open(self, number: int) -> TableReader:
        name = fn.table_file_name(number)
        return TableReader(self.fs.open(name), name)

    def number(self) -> int:
        self.next += 1
        return self.next

    def table(self, entries: list[tuple[int, int, bytes, bytes]]) -> FileMetaData | None:
        mt = MemTable()
        for seq, kind, key, value in entries:
            mt.add(seq, kind, key, value)
        keys, values = mt.run()
        return build_table(self.fs, self.number(), list(zip(keys, values)), [], self.options)

    def run_of(self, metas: list[FileMetaData]) -> tuple[list[bytes], list[bytes]]:
        keys: list[bytes] = []
        values: list[bytes] = []
        for m in metas:
            r = self.cache.get(m.number)
            for k, v in r.entries():
                keys.append(k)
                values.append(v)
            for s, e, q in r.range_tombstones:
                keys.append(pack_internal_key(s, q, KIND_RANGE_TOMBSTONE))
                values.append(e)
        pairs = sorted(zip(keys, values), key=lambda kv: internal_sort_key(kv[0]))
        return [k for k, _ in pairs], [v for _, v in pairs]


def visible(env: Env, metas: list[FileMetaData], read_seq: int) -> list[tuple[bytes, bytes]]:
    keys, values = _native.merge([env.run_of(metas)], read_seq)
    return [(k[:-8], v) for k, v in zip(keys, values)]


ops_strategy = st.lists(st.one_of(
    st.tuples(st.just(KIND_VALUE), st.integers(0, 40), st.binary(max_size=30)),
    st.tuples(st.just(KIND_TOMBSTONE), st.integers(0, 40), st.just(b"")),
    st.tuples(st.just(KIND_RANGE_TOMBSTONE), st.integers(0, 40), st.integers(1, 12)),
), min_size=1, max_size=150)


def key(i: int) -> bytes:
    return b"key%03d" % i


@settings(max_examples=40, deadline=None)
@given(ops=ops_strategy, nfiles=st.integers(1, 4), snaps=st.lists(st.integers(0, 160),
       max_size=3), bottom=st.booleans(), window=st.sampled_from([3, 17, 4096]),
       parts=st.sampled_from([1, 2, 5]))
def test_run_compaction_preserves_every_snapshot(tmp_path_factory, ops, nfiles, snaps, bottom,
                                                 window, parts) -> None:
    # parts > 1: without range tombstones the merge runs in key-range slices
    # (SUBCOMPACTION_MIN_FILES patched to 0 so even tiny inputs are split)
    env = Env(str(tmp_path_factory.mktemp("c")), Options(block_size=256,
                                                          target_file_size_base=1024,
                                                          max_subcompactions=parts))
    base = 100         # sequences 1..99 belong to older data below the compaction
    entries = []
    for seq, (kind, k, v) in enumerate(ops, start=base):
        if kind == KIND_RANGE_TOMBSTONE:
            entries.append((seq, kind, key(k), key(k + v)))
        else:
            entries.append((seq, kind, key(k), v))
    # split the history into nfiles L0 files of consecutive sequences (newest first)
    cut = sorted(random.Random(len(ops)).sample(range(1, len(entries)), min(nfiles - 1,
                 len(entries) - 1))) if len(entries) > 1 else []
    chunks = [entries[a:b] for a, b in zip([0] + cut, cut + [len(entries)])]
    metas = [m for m in (env.table(ch) for ch in chunks) if m is not None]
    assert metas
    v = version_of({0: metas})
    snapshots = sorted(set(base + x for x in snaps))
    older = env.table([(i + 1, KIND_VALUE, key(i), b"old") for i in range(60)])
    c = dataclasses.replace(pick_range_compaction(v, env.options, 0, None, None), bottom=bottom)
    old_window, old_min = cmod.WINDOW_ENTRIES, cmod.SUBCOMPACTION_MIN_FILES
    cmod.WINDOW_ENTRIES, cmod.SUBCOMPACTION_MIN_FILES = window, 0
    try:
        edit, stats = run_compaction(c, fs=env.fs, table_cache=env.cache, options=env.options,
                                     new_file_number=env.number, snapshots=snapshots)
    finally:
        cmod.WINDOW_ENTRIES, cmod.SUBCOMPACTION_MIN_FILES = old_window, old_min
    outs = [f for _, f in edit.new_files]
    assert sorted(n for _, n in edit.deleted_files) == sorted(m.number for m in metas)
    assert stats.output_files == len(outs) and stats.input_files == len(metas)
    v2 = v.apply(edit)          # outputs are disjoint at L1
    v2._check()
    last = base + len(entries) - 1
    for s in snapshots + [last, MAX_SEQUENCE]:
        if s > last:
            s = last
        assert visible(env, outs, s) == visible(env, metas, s), s
        if not bottom:   # whatever lies below must stay hidden exactly as before
            assert visible(env, outs + [older], s) == visible(env, metas + [older], s), s
    # per output file: extents cover its entries and tombstones; no user key split
    users_seen: set[bytes] = set()
    for m in outs:
        r = env.cache.get(m.number)
        ks = [k for k, _ in r.entries()]
        users = {k[:-8] for k in ks}
        assert not users & users_seen
        users_seen |= users
        lo, hi = internal_sort_key(m.smallest), internal_sort_key(m.largest)
        for k in ks:
            assert lo <= internal_sort_key(k) <= hi
        for s, e, q in r.range_tombstones:
            assert lo <= internal_sort_key(pack_internal_key(s, q, KIND_RANGE_TOMBSTONE))
            assert internal_sort_key(sentinel_key(e)) <= hi
    if bottom and not snapshots:
        for m in outs:
            r = env.cache.get(m.number)
            assert not r.range_tombstones
            assert all(kk[-8] == KIND_VALUE for kk, _ in r.entries())


def _many_tables(env: Env, nfiles: int, nkeys: int) -> list[FileMetaData]:
    rng = random.Random(7)
    metas = []
    seq = 1
    for _ in range(nfiles):
        entries = []
        for k in rng.sample(range(nkeys), nkeys // 2):
            kind = KIND_TOMBSTONE if rng.random() < 0.1 else KIND_VALUE
            entries.append((seq, kind, key(k), b"" if kind == KIND_TOMBSTONE
                            else b"v%d-" % seq * 8))
            seq += 1
        metas.append(env.table(entries))
    return metas


@pytest.mark.parametrize("parts", [2, 3, 8])
def test_subcompactions_match_one_merge(tmp_path, parts: int) -> None:
    """A large compaction without range tombstones runs as ``parts`` key
    slices: the outputs hold exactly what one merge writes, disjoint and in
    key order, and no input block is read twice or skipped."""
    def run(sub: int, path: str) -> tuple[Env, list[FileMetaData], list[FileMetaData], object]:
        env = Env(path, Options(block_size=256, target_file_size_base=4096,
                                max_subcompactions=sub))
        metas = _many_tables(env, 4, 900)
        v = version_of({0: metas})
        c = pick_range_compaction(v, env.options, 0, None, None)
        edit, stats = run_compaction(c, fs=env.fs, table_cache=env.cache,
                                     options=env.options, new_file_number=env.number,
                                     snapshots=[])
        v.apply(edit)._check()
        return env, metas, [f for _, f in edit.new_files], stats

    env1, metas1, outs1, stats1 = run(1, str(tmp_path / "one"))
    envn, metasn, outsn, statsn = run(parts, str(tmp_path / "many"))
    assert stats1.subcompactions == 1 and statsn.subcompactions == parts
    assert statsn.entries_read == stats1.entries_read == sum(
        sum(1 for _ in env1.cache.get(m.number).entries()) for m in metas1)
    assert statsn.entries_written == stats1.entries_written
    assert visible(envn, outsn, MAX_SEQUENCE) == visible(env1, outs1, MAX_SEQUENCE)
    assert visible(envn, outsn, MAX_SEQUENCE) == visible(envn, metasn, MAX_SEQUENCE)
    keys = [internal_sort_key(k) for m in outsn for k, _ in envn.cache.get(m.number).entries()]
    assert keys == sorted(keys) and len(keys) == statsn.entries_written
    for a, b in zip(outsn, outsn[1:]):
        assert a.largest[:-8] < b.smallest[:-8]


def test_split_keys_balance_bytes(tmp_path) -> None:
    env = Env(str(tmp_path), Options(block_size=256, target_file_size_base=4096))
    metas = _many_tables(env, 3, 900)
    runs = [(0, (m,)) for m in metas]
    total = sum(m.size for m in metas)
    assert cmod._split_keys(env.cache, runs, 4, total + 1) == []      # too small to split
    assert cmod._split_keys(env.cache, runs, 1, 0) == []
    keys = cmod._split_keys(env.cache, runs, 4, 0)
    assert len(keys) == 3 and keys == sorted(set(keys))
    # each slice holds a fair share of the entries (the estimate is per block)
    users = sorted(k[:-8] for m in metas for k, _ in env.cache.get(m.number).entries())
    bounds = [b""] + keys + [b"\xff"]
    shares = [sum(1 for u in users if lo <= u < hi) / len(users)
              for lo, hi in zip(bounds, bounds[1:])]
    assert all(0.15 < x < 0.35 for x in shares), shares


def test_subcompaction_failure_deletes_every_output(tmp_path) -> None:
    """A slice that fails (a corrupt block high in the key range) stops the
    others; every output of every slice is deleted and the error raised."""
    env = Env(str(tmp_path), Options(block_size=256, target_file_size_base=2048,
                                     max_subcompactions=3, paranoid_checks=True))
    metas = _many_tables(env, 3, 900)
    victim = metas[-1]
    name = fn.table_file_name(victim.number)
    reader = TableReader(env.fs.open(name), name)
    uks, sizes = reader.block_sizes()
    off = reader.approximate_offset(pack_internal_key(uks[-3], MAX_SEQUENCE, KIND_VALUE))
    reader.close()
    path = tmp_path / name
    data = bytearray(path.read_bytes())
    data[off + 5] ^= 0xFF
    path.write_bytes(bytes(data))
    before = set(env.fs.list())
    v = version_of({0: metas})
    c = pick_range_compaction(v, env.options, 0, None, None)
    old_min = cmod.SUBCOMPACTION_MIN_FILES
    cmod.SUBCOMPACTION_MIN_FILES = 0
    try:
        with pytest.raises(CorruptionError) as info:
            run_compaction(c, fs=env.fs, table_cache=env.cache, options=env.options,
                           new_file_number=env.number, snapshots=[])
    finally:
        cmod.SUBCOMPACTION_MIN_FILES = old_min
    assert info.value.file == name
    assert set(env.fs.list()) == before


def test_range_tombstone_spanning_outputs_is_clipped(tmp_path) -> None:
    env = Env(str(tmp_path), Options(block_size=256, target_file_size_base=1024))
    base = [(i + 1, KIND_VALUE, key(i), b"v" * 60) for i in range(60)]
    older = env.table(base)
    newer = env.table([(100, KIND_RANGE_TOMBSTONE, key(10), key(50)),
                       (101, KIND_VALUE, key(20), b"new")])
    v = version_of({0: [older, newer]})
    c = pick_range_compaction(v, env.options, 0, None, None)
    snapshots = [60]       # keeps the deleted values visible to the snapshot
    edit, stats = run_compaction(c, fs=env.fs, table_cache=env.cache, options=env.options,
                                 new_file_number=env.number, snapshots=snapshots)
    outs = [f for _, f in edit.new_files]
    assert len(outs) >= 3
    pieces = []
    for m in outs:
        pieces += env.cache.get(m.number).range_tombstones
    pieces.sort()
    # fragments tile [key010, key050) exactly, once
    assert pieces[0][0] == key(10) and pieces[-1][1] == key(50)
    assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:]))
    assert all(q == 100 for _, _, q in pieces)
    assert stats.range_tombstones_written == len(pieces)
    v.apply(edit)._check()
    for s in (60, 101):
        assert visible(env, outs, s) == visible(env, [older, newer], s)
    got = dict(visible(env, outs, 101))
    assert key(20) in got and key(30) not in got and key(55) in got
    # at the bottom with no snapshot the tombstone and what it hides are gone
    edit2, _ = run_compaction(dataclasses.replace(c, bottom=True), fs=env.fs,
                              table_cache=env.cache, options=env.options,
                              new_file_number=env.number, snapshots=[])
    outs2 = [f for _, f in edit2.new_files]
    assert not any(env.cache.get(m.number).range_tombstones for m in outs2)
    assert visible(env, outs2, 101) == visible(env, [older, newer], 101)
    n = sum(1 for m in outs2 for _ in env.cache.get(m.number).entries())
    assert n == 60 - 40 + 1


def test_trivial_move_edit_and_pointer(tmp_path) -> None:
    env = Env(str(tmp_path), OPTS)
    f = fm(5, b"a", b"b", size=20_000)
    v = version_of({1: [f]})
    c = pick_compaction(v, OPTS, {})
    assert c.trivial_move
    edit, stats = run_compaction(c, fs=env.fs, table_cache=env.cache, options=OPTS,
                                 new_file_number=env.number, snapshots=[])
    assert edit.deleted_files == ((1, 5),) and edit.new_files == ((2, f),)
    assert edit.compact_pointers == ((1, f.largest),) and stats.bytes_written == 0


def test_tiered_run_with_moves(tmp_path) -> None:
    env = Env(str(tmp_path), dataclasses.replace(TIERED, block_size=256))
    rnd = random.Random(1)
    l1 = env.table([(i + 1, KIND_VALUE, key(i), rnd.randbytes(900)) for i in range(10)])
    flushes = [env.table([(100 + j, KIND_VALUE, key(j), b"new%d" % j)]) for j in range(4)]
    v = version_of({0: flushes, 1: [l1]})
    c = pick_compaction(v, env.options, {})
    assert c.output_level == 1 and c.moves
    edit, _ = run_compaction(c, fs=env.fs, table_cache=env.cache, options=env.options,
                             new_file_number=env.number, snapshots=[])
    v2 = v.apply(edit)
    v2._check()
    assert [f.number for f in v2.levels[2]] == [l1.number] and not v2.levels[0]
    merged = [f for f in v2.levels[1]]
    assert dict(visible(env, merged, 200)) == {key(j): b"new%d" % j for j in range(4)}
    # a get walks L1 (newer) before L2 (older)
    hits = v2.files_for_get(key(2))
    assert [lv for lv, _ in hits] == [1, 2]


def test_build_table_cases(tmp_path) -> None:
    env = Env(str(tmp_path), Options())
    assert build_table(env.fs, 7, [], [], env.options) is None
    assert not env.fs.exists(fn.table_file_name(7))
    assert build_table(env.fs, 8, [], [(b"b", b"a", 3)], env.options) is None  # empty range
    m = build_table(env.fs, 9, [(pack_internal_key(b"m", 5, KIND_VALUE), b"x"),
                                (pack_internal_key(b"q", 6, KIND_RANGE_TOMBSTONE), b"t")],
                    [(b"a", b"c", 4)], env.options)
    assert m.smallest == pack_internal_key(b"a", 4, KIND_RANGE_TOMBSTONE)
    assert m.largest == sentinel_key(b"t")
    assert (m.smallest_seq, m.largest_seq, m.num_entries, m.num_deletions) == (4, 6, 3, 2)
    r = env.cache.get(9)
    assert sorted(r.range_tombstones) == [(b"a", b"c", 4), (b"q", b"t", 6)]
    assert m.size == env.fs.size(fn.table_file_name(9))
    with pytest.raises(ArgumentTypeError):
        build_table(env.fs, 10, [], [], {})  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):   # out-of-order input: file removed
        build_table(env.fs, 11, [(pack_internal_key(b"b", 1, 1), b""),
                                 (pack_internal_key(b"a", 1, 1), b"")], [], env.options)
    assert not env.fs.exists(fn.table_file_name(11))


def test_compaction_check() -> None:
    c = Compaction(level=1, output_level=2, inputs=((fm(1, b"a", b"b"),), ()), bottom=True,
                   trivial_move=True, reason="t")
    c._check()
    assert c.key_range() == (b"a", b"b")


# -- a small LSM driven by the pickers: every read agrees with a model -----------

def lookup(env: Env, version: Version, k: bytes, read_seq: int) -> bytes | None:
    """A LevelDB-style point lookup: files in search order, first point hit wins
    unless a range tombstone seen on the way (or in that file) is newer."""
    tomb = 0
    for _, f in version.files_for_get(k):
        r = env.cache.get(f.number)
        for s, e, q in r.range_tombstones:
            if s <= k < e and tomb < q <= read_seq:
                tomb = q
        hit = r.get(k, read_seq)
        if hit is not None:
            seq, kind, value = hit
            return value if kind == KIND_VALUE and seq > tomb else None
    return None


@pytest.mark.parametrize("style", ["leveled", "tiered"])
def test_picker_driven_lsm_matches_model(tmp_path, style: str) -> None:
    opts = Options(block_size=256, target_file_size_base=2048, max_bytes_for_level_base=8192,
                   level_size_multiplier=2, write_buffer_size=4096, compaction_style=style,
                   min_merge_width=2, max_merge_width=4, num_levels=5,
                   level0_file_num_compaction_trigger=2)
    env = Env(str(tmp_path), opts)
    rnd = random.Random(11 if style == "leveled" else 12)
    version = Version.empty(opts.num_levels)
    pointers: dict[int, bytes] = {}
    model: dict[bytes, bytes] = {}
    snapshots: dict[int, dict[bytes, bytes]] = {}
    seq = 0
    compactions = 0
    for _ in range(30):                         # 30 flushes
        mt = MemTable()
        for _ in range(60):
            seq += 1
            k = key(rnd.randrange(120))
            r = rnd.random()
            if r < 0.75:
                v = b"%d" % seq + b"." * rnd.randrange(40)
                mt.add(seq, KIND_VALUE, k, v)
                model[k] = v
            elif r < 0.95:
                mt.add(seq, KIND_TOMBSTONE, k, b"")
                model.pop(k, None)
            else:
                e = key(rnd.randrange(120) + 1)
                if k < e:
                    mt.add(seq, KIND_RANGE_TOMBSTONE, k, e)
                    for kk in [x for x in model if k <= x < e]:
                        del model[kk]
        keys, values = mt.run()
        meta = build_table(env.fs, env.number(),
                           [(a, b) for a, b in zip(keys, values) if a[-8] != KIND_RANGE_TOMBSTONE],
                           mt.range_tombstones(), opts)
        version = version.apply(VersionEdit(new_files=((0, meta),)))
        if rnd.random() < 0.2:
            snapshots[seq] = dict(model)
        if snapshots and rnd.random() < 0.1:
            del snapshots[min(snapshots)]
        while True:
            c = pick_compaction(version, opts, pointers)
            if c is None:
                break
            c._check()
            edit, _ = run_compaction(c, fs=env.fs, table_cache=env.cache, options=opts,
                                     new_file_number=env.number, snapshots=sorted(snapshots))
            version = version.apply(edit)
            pointers.update(edit.compact_pointers)
            version._check()
            compactions += 1
            assert compactions < 500
        if style == "tiered":
            assert all(len({f.number for f in fs}) == len(fs) for fs in version.levels)
    assert compactions > 5
    probe = [key(i) for i in range(125)]
    for read_seq, expect in list(snapshots.items()) + [(seq, model)]:
        for k in probe:
            assert lookup(env, version, k, read_seq) == expect.get(k), (read_seq, k)
    # manual compaction of everything keeps the latest state and drops what is hidden
    manual = 0
    for level in range(opts.num_levels - 1):
        for _ in range(100):
            c = pick_range_compaction(version, opts, level, None, None)
            if c is None:
                break
            edit, _ = run_compaction(c, fs=env.fs, table_cache=env.cache, options=opts,
                                     new_file_number=env.number, snapshots=[])
            version = version.apply(edit)
            version._check()
            manual += 1
    for k in probe:
        assert lookup(env, version, k, seq) == model.get(k)
    occupied = [lv for lv in range(opts.num_levels) if version.levels[lv]]
    assert len(occupied) == 1 and occupied[0] > 0
    if style == "tiered" and manual:   # one merge of every run at the bottom: no deletion left
        for _, f in version.all_files():
            r = env.cache.get(f.number)
            assert not r.range_tombstones
            assert all(k[-8] == KIND_VALUE for k, _ in r.entries())
    # (leveled, as LevelDB and RocksDB by default: the deepest level is not
    # rewritten, so deletions kept there for snapshots that are gone now stay)
