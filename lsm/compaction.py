"""Compaction: choosing work (leveled or tiered) and doing it.

Picking returns a ``Compaction``, a plain value naming the input files, the
output level and whether tombstones may be dropped (``bottom``); running it
(``run_compaction``) merges the inputs through ``lsm._native.merge`` in
``MERGE_COMPACT`` mode and writes new tables.  The caller (the DB) applies
the returned ``VersionEdit``.  docs/architecture.md "Compaction" describes
the policies; in short:

Leveled (default, LevelDB-shaped)
    score(L0) = files / level0_file_num_compaction_trigger;
    score(Lk) = bytes / (max_bytes_for_level_base x multiplier**(k-1)) for
    1 <= k < num_levels-1.  The highest score >= 1 is compacted into the next
    level.  L0: the oldest file, expanded (transitively) to every L0 file
    overlapping it.  Lk: round robin -- the first file whose largest key is
    past ``compact_pointers[k]``, wrapping around.  Then every overlapping
    file of the output level joins, and the level inputs are widened to what
    the combined range covers when that adds no output-level file.  One input
    file with nothing to merge with and little grandparent overlap is a
    *trivial move* (the file changes level; no I/O).

Tiered (``compaction_style="tiered"``, size-tiered like Cassandra's STCS)
    Sorted runs, newest first: every L0 file is one run (flushes land
    there), and every non-empty level Lk (k >= 1) holds exactly one run.  A
    deeper slot always holds older data, so a point lookup can stop at the
    first hit.  Buckets are windows of *adjacent* runs of similar size (each
    within [0.5, 1.5] x the running average; runs below
    ``write_buffer_size`` count as equal); a window that touches L0 also
    takes every older L0 file.  The newest bucket with >= min_merge_width runs
    is merged (at most max_merge_width runs); if none qualifies but L0 holds
    >= level0_file_num_compaction_trigger files, all of L0 is merged.  The
    output replaces the window at the slot of its oldest run; a window made
    of L0 files only goes to the empty level just above the first occupied
    one -- if L1 is occupied, the runs of L1..Le-1 first shift one level
    down into the first empty level Le (metadata only), or, with no empty
    level, L1 joins the merge.

Running (bounded memory): each input run is read block by block; a window
ends at a user-key boundary (the smallest "last buffered user key" over the
unfinished runs) so every version of a user key is merged together; range
tombstones of the inputs overlapping the window join it as one more run; a
range tombstone the merge keeps is written once, but into every output
file whose key range it overlaps, clipped at the file boundaries (an output
ending inside a tombstone ends at the exclusive sentinel of the next file's
first user key).  Outputs are cut at ``target_file_size_base`` (and when
their grandparent overlap passes 10 x that), never between two versions of
one user key.  Every output is synced before the edit is returned.
"""

from __future__ import annotations

import struct
import threading
import time
from array import array
from bisect import bisect_left, bisect_right
from itertools import accumulate
from operator import add as _add
from operator import sub as _sub
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

from blockdev.errors import ArgumentTypeError, CorruptionError, Error, InvalidArgumentError
from lsm import _native
from lsm import filenames as fn
from lsm.dbformat import KIND_RANGE_TOMBSTONE, internal_sort_key
from lsm.options import Options
from lsm.version import FileMetaData, Version, VersionEdit, sentinel_key

__all__ = [
    "Compaction", "CompactionStats", "pick_compaction", "pick_range_compaction",
    "build_table", "build_table_sorted", "run_compaction", "level_scores",
]

_NO_LIMIT = (1 << 64) - 1      # table_blocks: no byte limit
WINDOW_BYTES = 1 << 20         # decompressed block bytes held per input run (packed path) ...
MIN_WINDOW_BYTES = 256 << 10   # ... at least, when a compaction's runs and slices share
TOTAL_WINDOW_BYTES = 6 << 20   # this much (memory stays bounded with many L0 runs)
WINDOW_ENTRIES = 4096          # entries buffered per input run before a merge window
EXPAND_LIMIT_FILES = 25        # x target_file_size_base: cap on widened inputs
GRANDPARENT_LIMIT_FILES = 10   # x target_file_size_base: overlap that cuts an output
SUBCOMPACTION_MIN_FILES = 4    # x target_file_size_base: smallest input split into slices
TIERED_BUCKET_LOW = 0.5
TIERED_BUCKET_HIGH = 1.5
_PACK = struct.Struct("<Q").pack


@dataclass(frozen=True)
class Compaction:
    """A unit of compaction work (a plain value; picking never does I/O).

    ``inputs[0]``: files of ``level``; ``inputs[1]``: files of
    ``output_level``.  Tiered compactions may read more levels: ``sources``
    then lists every input run ``(level, files)`` newest first, and ``moves``
    lists metadata-only level changes ``(from_level, to_level, file)`` to
    apply with the result.  ``bottom``: no file below ``output_level``
    overlaps the input range, so tombstones may be dropped.
    """

    level: int
    output_level: int
    inputs: tuple[tuple[FileMetaData, ...], tuple[FileMetaData, ...]]
    bottom: bool
    trivial_move: bool
    reason: str
    sources: tuple[tuple[int, tuple[FileMetaData, ...]], ...] = ()
    moves: tuple[tuple[int, int, FileMetaData], ...] = ()
    grandparents: tuple[FileMetaData, ...] = field(default=(), repr=False)

    def input_runs(self) -> list[tuple[int, tuple[FileMetaData, ...]]]:
        """Input sorted runs, newest first: each L0 file alone, each deeper
        level's files together."""
        if self.sources:
            runs = list(self.sources)
        else:
            runs = [(self.level, self.inputs[0]), (self.output_level, self.inputs[1])]
        out: list[tuple[int, tuple[FileMetaData, ...]]] = []
        for level, files in runs:
            if level == 0:
                out.extend((0, (f,)) for f in files)
            elif files:
                out.append((level, tuple(files)))
        return out

    def input_files(self) -> list[tuple[int, FileMetaData]]:
        """Every input file with its level."""
        return [(level, f) for level, files in self.input_runs() for f in files]

    def key_range(self) -> tuple[bytes, bytes]:
        """(smallest, largest) user key over all inputs."""
        files = [f for _, f in self.input_files()]
        return (min(f.smallest[:-8] for f in files), max(f.largest[:-8] for f in files))

    def _check(self) -> None:
        assert 0 <= self.level <= self.output_level
        assert self.inputs[0] or self.sources
        assert not (self.trivial_move and (self.inputs[1] or len(self.inputs[0]) != 1))
        numbers = [f.number for _, f in self.input_files()]
        assert len(numbers) == len(set(numbers))


@dataclass
class CompactionStats:
    """What one compaction did."""

    bytes_read: int = 0
    bytes_written: int = 0
    input_files: int = 0
    output_files: int = 0
    seconds: float = 0.0
    entries_read: int = 0
    entries_written: int = 0
    range_tombstones_written: int = 0
    subcompactions: int = 1       # key-range slices run in parallel



# ---------------------------------------------------------------------------
# Picking


def _range_of(files: Iterable[FileMetaData]) -> tuple[bytes, bytes]:
    files = list(files)
    return (min(f.smallest[:-8] for f in files), max(f.largest[:-8] for f in files))


def _is_bottom(version: Version, output_level: int, lo: bytes, hi: bytes) -> bool:
    return not any(version.overlapping(level, lo, hi)
                   for level in range(output_level + 1, version.num_levels))


def _total(files: Iterable[FileMetaData]) -> int:
    return sum(f.size for f in files)


def level_scores(version: Version, options: Options) -> list[float]:
    """Leveled compaction score of every level (the last level scores 0)."""
    scores = [len(version.levels[0]) / options.level0_file_num_compaction_trigger]
    for level in range(1, version.num_levels):
        if level == version.num_levels - 1:
            scores.append(0.0)
        else:
            scores.append(version.level_bytes(level) / options.max_bytes_for_level(level))
    return scores


def _expand_l0(version: Version, seed: list[FileMetaData]) -> list[FileMetaData]:
    """Every L0 file transitively overlapping ``seed``, newest first."""
    chosen = {f.number for f in seed}
    lo, hi = _range_of(seed)
    while True:
        grown = version.overlapping(0, lo, hi)
        if {f.number for f in grown} <= chosen:
            break
        chosen |= {f.number for f in grown}
        lo, hi = _range_of([f for f in version.levels[0] if f.number in chosen])
    return [f for f in version.levels[0] if f.number in chosen]


def _leveled(version: Version, options: Options, level: int,
             inputs0: list[FileMetaData], reason: str, allow_trivial: bool) -> Compaction:
    out_level = level + 1
    if level == 0:
        inputs0 = _expand_l0(version, inputs0)
    lo, hi = _range_of(inputs0)
    inputs1 = version.overlapping(out_level, lo, hi)
    if level > 0 and inputs1:
        # widen the level inputs to the combined range if that adds no output file
        alo, ahi = _range_of(inputs0 + inputs1)
        wider = version.overlapping(level, alo, ahi)
        limit = EXPAND_LIMIT_FILES * options.target_file_size_base
        if len(wider) > len(inputs0) and _total(wider) + _total(inputs1) < limit:
            wlo, whi = _range_of(wider)
            if len(version.overlapping(out_level, wlo, whi)) == len(inputs1):
                inputs0 = wider
                lo, hi = wlo, whi
    if inputs1:
        lo = min(lo, _range_of(inputs1)[0])
        hi = max(hi, _range_of(inputs1)[1])
    grandparents: list[FileMetaData] = []
    if out_level + 1 < version.num_levels:
        grandparents = version.overlapping(out_level + 1, lo, hi)
    trivial = (allow_trivial and len(inputs0) == 1 and not inputs1
               and _total(grandparents) <= GRANDPARENT_LIMIT_FILES * options.target_file_size_base)
    return Compaction(level=level, output_level=out_level,
                      inputs=(tuple(inputs0), tuple(inputs1)),
                      bottom=_is_bottom(version, out_level, lo, hi),
                      trivial_move=trivial, reason=reason,
                      grandparents=tuple(grandparents))


def pick_compaction(version: Version, options: Options, compact_pointers: dict[int, bytes]
                    ) -> Compaction | None:
    """The most urgent compaction of ``version``, or None if none is needed.

    O(files).  Requires: ``version`` built with ``options.num_levels`` levels.
    """
    _check_args(version, options)
    if not isinstance(compact_pointers, dict):
        raise ArgumentTypeError("compact_pointers must be a dict")
    if options.compaction_style == "tiered":
        return _pick_tiered(version, options)
    scores = level_scores(version, options)
    best = max(range(version.num_levels - 1), key=lambda lv: (scores[lv], -lv))
    if scores[best] < 1.0:
        return None
    if best == 0:
        seed = [version.levels[0][-1]]          # the oldest L0 file
        reason = f"L0 file count {len(version.levels[0])}"
    else:
        files = version.levels[best]
        pointer = compact_pointers.get(best)
        seed = [files[0]]
        if pointer is not None:
            p = internal_sort_key(pointer)
            for f in files:
                if internal_sort_key(f.largest) > p:
                    seed = [f]
                    break
        reason = f"L{best} score {scores[best]:.2f}"
    return _leveled(version, options, best, seed, reason, allow_trivial=True)


def pick_range_compaction(version: Version, options: Options, level: int,
                          start: bytes | None, stop: bytes | None) -> Compaction | None:
    """A manual compaction of the files of ``level`` overlapping user keys
    ``[start, stop]`` (None = unbounded) into the next level; None when no
    file overlaps, ``level`` is the last, or (for ``level`` >= 1) no deeper
    level holds data of the range -- L0 always goes down to L1, deeper data
    stays in the deepest level that holds the range, as in LevelDB.
    Calling again after applying the result continues with the rest of the
    range, so a loop over levels 0..num_levels-2 calling until None pushes
    the range down to its deepest occupied level.
    Tiered: level 0 merges every run overlapping the range into one (None
    when at most one run overlaps); other levels return None.  No trivial
    moves: every file is rewritten (dropping what tombstones hide).
    """
    _check_args(version, options)
    if type(level) is not int:
        raise ArgumentTypeError(f"level must be an int, not {type(level).__name__}")
    if not 0 <= level < version.num_levels:
        raise InvalidArgumentError(f"level out of range: {level}")
    for name, key in (("start", start), ("stop", stop)):
        if key is not None and not isinstance(key, bytes):
            raise ArgumentTypeError(f"{name} must be bytes or None, not {type(key).__name__}")
    if options.compaction_style == "tiered":
        return _pick_tiered_range(version, options, level, start, stop)
    if level >= version.num_levels - 1:
        return None
    files = version.overlapping(level, start, stop)
    if not files:
        return None
    if level > 0 and not any(version.overlapping(lv, start, stop)
                             for lv in range(level + 1, version.num_levels)):
        return None     # already the deepest data of the range (LevelDB's rule)
    if level > 0:
        limit = EXPAND_LIMIT_FILES * options.target_file_size_base
        taken: list[FileMetaData] = []
        for f in files:
            taken.append(f)
            if _total(taken) >= limit:
                break
        files = taken
    return _leveled(version, options, level, files, f"manual L{level}", allow_trivial=False)


def _check_args(version: Version, options: Options) -> None:
    if not isinstance(version, Version):
        raise ArgumentTypeError(f"version must be a Version, not {type(version).__name__}")
    if not isinstance(options, Options):
        raise ArgumentTypeError(f"options must be an Options, not {type(options).__name__}")
    if version.num_levels != options.num_levels:
        raise InvalidArgumentError("version and options disagree on num_levels")


# -- tiered -------------------------------------------------------------------


def _runs(version: Version) -> list[tuple[int, tuple[FileMetaData, ...]]]:
    """Sorted runs newest first: each L0 file, then each non-empty level."""
    runs: list[tuple[int, tuple[FileMetaData, ...]]] = [(0, (f,)) for f in version.levels[0]]
    runs += [(lv, version.levels[lv]) for lv in range(1, version.num_levels)
             if version.levels[lv]]
    return runs


def _tiered_window(version: Version, options: Options,
                   runs: list[tuple[int, tuple[FileMetaData, ...]]], i: int, j: int,
                   reason: str) -> Compaction:
    """Merge runs[i:j] (adjacent, newest first) into one run."""
    window = list(runs[i:j])
    moves: list[tuple[int, int, FileMetaData]] = []
    oldest = window[-1][0]
    if oldest > 0:
        out_level = oldest
    else:
        occupied = [lv for lv in range(1, version.num_levels) if version.levels[lv]]
        first = occupied[0] if occupied else version.num_levels
        if first > 1:
            out_level = first - 1
        else:
            empty = [lv for lv in range(2, version.num_levels) if not version.levels[lv]]
            if empty:
                e = empty[0]
                for lv in range(e - 1, 0, -1):      # shift L1..Le-1 one level down
                    moves.extend((lv, lv + 1, f) for f in version.levels[lv])
                out_level = 1
            else:
                window.append((1, version.levels[1]))
                out_level = 1
    files = [f for _, fs in window for f in fs]
    lo, hi = _range_of(files)
    first_level = window[0][0]
    newer = tuple(f for lv, fs in window if lv != out_level for f in fs)
    at_out = tuple(f for lv, fs in window if lv == out_level for f in fs)
    # runs shifted down by `moves` are older than the output too
    bottom = (_is_bottom(version, out_level, lo, hi)
              and not any(f.overlaps(lo, hi) for _, _, f in moves))
    return Compaction(level=first_level, output_level=out_level, inputs=(newer, at_out),
                      bottom=bottom, trivial_move=False,
                      reason=reason, sources=tuple(window), moves=tuple(moves))


def _pick_tiered(version: Version, options: Options) -> Compaction | None:
    runs = _runs(version)
    n0 = len(version.levels[0])
    small = options.write_buffer_size
    sizes = [_total(files) for _, files in runs]
    for i in range(len(runs)):
        j = i + 1
        total = sizes[i]
        while j < len(runs) and j - i < options.max_merge_width:
            avg = total / (j - i)
            s = sizes[j]
            similar = ((s <= small and avg <= small)
                       or TIERED_BUCKET_LOW * avg <= s <= TIERED_BUCKET_HIGH * avg)
            if not similar and not j < n0:       # L0 windows always reach the oldest L0 file
                break
            total += s
            j += 1
        if i < n0 and j < n0:
            continue                             # cannot leave older L0 files behind
        if j - i >= options.min_merge_width:
            return _tiered_window(version, options, runs, i, j,
                                  f"tiered bucket of {j - i} runs")
    if n0 >= options.level0_file_num_compaction_trigger and n0 >= 2:
        return _tiered_window(version, options, runs, 0, n0, f"tiered L0 file count {n0}")
    return None


def _pick_tiered_range(version: Version, options: Options, level: int,
                       start: bytes | None, stop: bytes | None) -> Compaction | None:
    if level != 0:
        return None
    runs = _runs(version)
    hit = [k for k, (_, files) in enumerate(runs)
           if any(f.overlaps(start, stop) for f in files)]
    if not hit:
        return None
    i, j = hit[0], hit[-1] + 1
    if i < len(version.levels[0]):
        j = max(j, len(version.levels[0]))      # take every older L0 file too
    if j - i < 2:
        return None
    return _tiered_window(version, options, runs, i, j, "manual tiered")


# ---------------------------------------------------------------------------
# Writing tables


def _builder(fs: Any, name: str, options: Options) -> tuple[Any, Any]:
    from lsm.sstable.builder import TableBuilder

    file = fs.create(name)
    try:
        builder = TableBuilder(file, name=name, block_size=options.block_size,
                               block_restart_interval=options.block_restart_interval,
                               bloom_bits_per_key=options.bloom_bits_per_key,
                               compression=options.compression)
    except BaseException:
        file.close()
        raise
    return file, builder


def _discard(fs: Any, file: Any, name: str) -> None:
    """Close and delete a half-written output; the original error is what matters."""
    try:
        file.close()
    except Error:
        pass
    try:
        fs.delete(name)
    except Error:
        pass


def _meta(number: int, file: Any, props: Any, tombs: Sequence[tuple[bytes, bytes, int]],
          point_smallest: bytes | None, point_largest: bytes | None) -> FileMetaData:
    lows = [] if point_smallest is None else [point_smallest]
    highs = [] if point_largest is None else [point_largest]
    lows += [s + _PACK((q << 8) | KIND_RANGE_TOMBSTONE) for s, _, q in tombs]
    highs += [sentinel_key(e) for _, e, _ in tombs]
    smallest = min(lows, key=internal_sort_key)
    largest = max(highs, key=internal_sort_key)
    return FileMetaData(
        number=number, size=int(file.size), smallest=smallest, largest=largest,
        smallest_seq=props.smallest_seq, largest_seq=props.largest_seq,
        num_entries=props.num_entries + len(tombs),
        num_deletions=props.num_tombstones + len(tombs))


def build_table(fs: Any, number: int, entries: Iterable[tuple[bytes, bytes]],
                range_tombstones: Iterable[tuple[bytes, bytes, int]], options: Options
                ) -> FileMetaData | None:
    """Write ``entries`` (internal order; kind-2 entries are taken as range
    tombstones) and ``range_tombstones`` to ``%06d.sst``, sync and close it.
    Returns its metadata, or None (and creates no file) when there is nothing
    to write.  O(entries).
    """
    if not isinstance(options, Options):
        raise ArgumentTypeError(f"options must be an Options, not {type(options).__name__}")
    tombs = [(s, e, q) for s, e, q in range_tombstones if s < e]
    keys: list[bytes] = []
    values: list[bytes] = []
    kadd, vadd = keys.append, values.append
    for ikey, value in entries:
        if ikey[-8] == KIND_RANGE_TOMBSTONE:
            if ikey[:-8] < value:
                tombs.append((ikey[:-8], value, int.from_bytes(ikey[-7:], "little")))
            continue
        kadd(ikey)
        vadd(value)
    return _build_sorted(fs, number, keys, values, tombs, options)


def build_table_sorted(fs: Any, number: int, keys: list[bytes], values: list[bytes],
                       range_tombstones: Iterable[tuple[bytes, bytes, int]], options: Options
                       ) -> FileMetaData | None:
    """``build_table`` for point entries already split into two lists (a
    frozen memtable's ``point_run()``): no per-entry Python loop, the table
    builder takes the lists block at a time (``TableBuilder.add_many``).
    O(entries).

    Requires: ``keys`` internal keys of kind TOMBSTONE or VALUE in strictly
    increasing internal order (InvalidArgumentError otherwise), ``values``
    the same length.
    """
    if not isinstance(options, Options):
        raise ArgumentTypeError(f"options must be an Options, not {type(options).__name__}")
    if not isinstance(keys, list) or not isinstance(values, list):
        raise ArgumentTypeError("keys and values must be lists")
    if len(keys) != len(values):
        raise InvalidArgumentError("keys and values differ in length")
    tombs = [(s, e, q) for s, e, q in range_tombstones if s < e]
    return _build_sorted(fs, number, keys, values, tombs, options)


def build_table_packed(fs: Any, number: int, packed: tuple, order: Any,
                       range_tombstones: Iterable[tuple[bytes, bytes, int]], options: Options
                       ) -> FileMetaData | None:
    """``build_table`` for a flush: ``packed`` is a memtable's
    ``packed_entries()`` (user keys and ``trailer || value`` entries),
    ``order`` their internal order (``_native.sort_entries``).  The data
    blocks, index keys, filter hashes and statistics come from one native
    ``table_blocks`` call with the GIL released; Python only compresses and
    writes the blocks.  The blocks are exactly those ``TableBuilder.add``
    would cut.  O(entries) native work, O(blocks) Python work.
    """
    if not isinstance(options, Options):
        raise ArgumentTypeError(f"options must be an Options, not {type(options).__name__}")
    tombs = [(s, e, q) for s, e, q in range_tombstones if s < e]
    n = len(order)
    if not n and not tombs:
        return None
    name = fn.table_file_name(number)
    file, builder = _builder(fs, name, options)
    try:
        smallest = largest = None
        if n:
            chunk = _native.table_blocks(packed, 1, order, 0, n, options.block_size,
                                         options.block_restart_interval, _NO_LIMIT, None, None)
            builder.add_chunk(chunk)
            smallest, largest = chunk.first_key, chunk.last_keys[-1]
        for s, e, q in tombs:
            builder.add_range_tombstone(s, e, q)
        props = builder.finish()
        file.sync()
        meta = _meta(number, file, props, tombs, smallest, largest)
        file.close()
        return meta
    except BaseException:
        _discard(fs, file, name)
        raise


def _build_sorted(fs: Any, number: int, keys: list[bytes], values: list[bytes],
                  tombs: list[tuple[bytes, bytes, int]], options: Options
                  ) -> FileMetaData | None:
    if not keys and not tombs:
        return None
    name = fn.table_file_name(number)
    file, builder = _builder(fs, name, options)
    try:
        if keys:
            builder.add_many(keys, values)
        for s, e, q in tombs:
            builder.add_range_tombstone(s, e, q)
        props = builder.finish()
        file.sync()
        meta = _meta(number, file, props, tombs, keys[0] if keys else None,
                     keys[-1] if keys else None)
        file.close()
        return meta
    except BaseException:
        _discard(fs, file, name)
        raise


class _OutputFiles:
    """What both compaction writers share: the output being written
    (``fs``, ``file``, ``builder``, ``name``) and the finished ``metas``."""

    fs: Any
    file: Any
    builder: Any
    name: str
    metas: list[FileMetaData]

    def abandon(self) -> None:
        """Delete every output written so far (the compaction failed)."""
        if self.file is not None:
            _discard(self.fs, self.file, self.name)
            self.file = self.builder = None
        for meta in self.metas:
            try:
                self.fs.delete(fn.table_file_name(meta.number))
            except Error:
                pass


class _Output(_OutputFiles):
    """Writes the merged stream into output tables (cutting, tombstone clipping)."""

    def __init__(self, fs: Any, options: Options, new_file_number: Callable[[], int],
                 grandparents: Sequence[FileMetaData]) -> None:
        self.fs = fs
        self.options = options
        self.new_file_number = new_file_number
        self.grandparents = list(grandparents)
        self.gp_index = 0
        self.gp_bytes = 0
        self.gp_seen = False
        self.gp_limit = GRANDPARENT_LIMIT_FILES * options.target_file_size_base
        self.target = options.target_file_size_base
        # bytes the builder has not flushed yet can be at most about a block
        # plus the index and filter: below target - slack no cut is possible
        self.slack = 4 * options.block_size + (64 << 10)
        self.metas: list[FileMetaData] = []
        self.file: Any = None
        self.builder: Any = None
        self.name = ""
        self.number = 0
        self.tombs: list[tuple[bytes, bytes, int]] = []
        self.smallest: bytes | None = None
        self.largest: bytes | None = None
        self.last_user: bytes | None = None
        self.tombs_written = 0

    def _past_grandparents(self, user_key: bytes) -> bool:
        gps = self.grandparents
        while (self.gp_index < len(gps)
               and gps[self.gp_index].largest[:-8] < user_key):
            if self.gp_seen:
                self.gp_bytes += gps[self.gp_index].size
            self.gp_index += 1
        self.gp_seen = True
        if self.gp_bytes > self.gp_limit:
            self.gp_bytes = 0
            return True
        return False

    def _boundary(self, user_key: bytes) -> None:
        """A new user key begins: maybe cut the current output before it."""
        cut = self._past_grandparents(user_key) if self.grandparents else False
        builder = self.builder
        if builder is not None and (
                cut or (builder.file_size + self.slack >= self.target
                        and builder.estimated_size >= self.target)):
            self.finish(user_key)
        self.last_user = user_key
        if self.builder is None:
            self.number = self.new_file_number()
            self.name = fn.table_file_name(self.number)
            self.file, self.builder = _builder(self.fs, self.name, self.options)

    def add(self, ikey: bytes, value: bytes) -> None:
        user_key = ikey[:-8]
        if user_key != self.last_user or self.builder is None:
            builder = self.builder
            if (builder is None or self.grandparents
                    or builder.file_size + self.slack >= self.target):
                self._boundary(user_key)
            else:
                self.last_user = user_key      # fast path: far from any cut
        if self.smallest is None:
            self.smallest = ikey
        self.builder.add(ikey, value)
        self.largest = ikey

    def add_many(self, keys: list[bytes], values: list[bytes]) -> None:
        """``add`` for every point entry of ``keys``/``values`` (internal
        order), in chunks: each chunk starts with one ``add`` (which may cut
        the output), then as many following entries as cannot reach a cut --
        their raw bytes fit below the size at which ``add`` starts checking,
        and their user keys do not pass the current grandparent -- go to the
        table builder in one ``add_many``.  The outputs are exactly those of
        per-entry ``add``.  O(entries) with C-level per-entry work."""
        n = len(keys)
        pos = 0
        acc: list[int] | None = None
        margin = self.slack + self.options.block_size + 1024   # + the pending block
        while pos < n:
            self.add(keys[pos], values[pos])
            pos += 1
            if pos >= n:
                break
            budget = self.target - margin - self.builder.file_size
            if budget <= 0:
                continue
            if acc is None:     # raw bytes per entry + 8: over-estimates the file growth
                acc = list(accumulate(map(_add, map(len, keys), map(len, values)), initial=0))
                acc = list(map(_add, acc, range(0, 8 * (n + 1), 8)))
            j = bisect_right(acc, acc[pos] + budget, pos) - 1
            gps = self.grandparents
            if gps and self.gp_index < len(gps) and j > pos:
                bound = gps[self.gp_index].largest[:-8]
                lo, hi = pos, j            # first entry whose user key passes the grandparent
                while lo < hi:
                    mid = (lo + hi) // 2
                    if keys[mid][:-8] <= bound:
                        lo = mid + 1
                    else:
                        hi = mid
                j = lo
            if j > pos:
                self.builder.add_many(keys[pos:j], values[pos:j])
                self.last_user = keys[j - 1][:-8]
                self.largest = keys[j - 1]
                pos = j

    def add_tombstone(self, start: bytes, end: bytes, seq: int) -> None:
        if start != self.last_user or self.builder is None:
            self._boundary(start)
        self.tombs.append((start, end, seq))

    def finish(self, cut: bytes | None) -> None:
        """Finish the current output; range tombstones reaching past ``cut``
        are clipped there and carried into the next output."""
        written: list[tuple[bytes, bytes, int]] = []
        carry: list[tuple[bytes, bytes, int]] = []
        for s, e, q in self.tombs:
            if cut is not None and e > cut:
                if s < cut:
                    written.append((s, cut, q))
                carry.append((cut, e, q))
            else:
                written.append((s, e, q))
        for s, e, q in written:
            self.builder.add_range_tombstone(s, e, q)
        props = self.builder.finish()
        self.file.sync()
        meta = _meta(self.number, self.file, props, written, self.smallest, self.largest)
        self.file.close()
        self.metas.append(meta)
        self.tombs_written += len(written)
        self.file = self.builder = None
        self.tombs = carry
        self.smallest = self.largest = None


def _run_blocks(table_cache: Any, files: Sequence[FileMetaData]
                ) -> Iterator[tuple[str, Any]]:
    """The decoded data blocks (``TableReader.blocks`` items) of a sorted
    run's files, in order, as ``(file name, block)``.  Each table is opened
    (through the table cache) only when the previous one is exhausted."""
    for f in files:
        reader = table_cache.get(f.number)
        for block in reader.blocks():
            yield reader.name, block


class _Source:
    """One input sorted run read block by block (files of a level in order)."""

    def __init__(self, table_cache: Any, files: Sequence[FileMetaData]) -> None:
        self.it = _run_blocks(table_cache, files)
        self.keys: list[bytes] = []
        self.values: list[bytes] = []
        self.exhausted = False
        self.entries = 0

    def _load_block(self) -> bool:
        item = next(self.it, None)
        if item is None:
            self.exhausted = True
            return False
        block = item[1]
        self.keys.extend(block[0])
        self.values.extend(block[1])
        self.entries += len(block[0])
        return True

    def fill(self, n: int) -> None:
        while not self.exhausted and len(self.keys) < n:
            self._load_block()

    def grow(self) -> None:
        if not self.exhausted:
            self._load_block()

    def last_user(self) -> bytes:
        return self.keys[-1][:-8]

    def take_below(self, bound: bytes | None) -> tuple[list[bytes], list[bytes]]:
        """Remove and return the buffered entries with user key < ``bound``."""
        keys = self.keys
        if bound is None:
            i = len(keys)
        else:
            lo, hi = 0, len(keys)
            while lo < hi:
                mid = (lo + hi) // 2
                if keys[mid][:-8] < bound:
                    lo = mid + 1
                else:
                    hi = mid
            i = lo
        if i == 0:
            return [], []
        taken = (keys[:i], self.values[:i])
        self.keys = keys[i:]
        self.values = self.values[i:]
        return taken


class _BlockSource:
    """One input sorted run (the files of a level, in order) held as raw
    data blocks -- verified and decompressed, never decoded in Python --
    for the packed compaction path.  The held blocks lie back to back in
    ``buf`` (``lens[i]`` bytes each); ``lasts[i]`` is the last user key of
    block ``i`` (from the index), so window bounds need no decoding, and
    ``names``/``offs`` say where it came from.  Blocks arrive a file chunk
    at a time (``TableReader.raw_block_chunks``): no Python work per block.
    Only the blocks that may hold user keys in ``[start, stop)`` are read."""

    def __init__(self, table_cache: Any, files: Sequence[FileMetaData],
                 start: bytes | None = None, stop: bytes | None = None,
                 chunk_bytes: int = WINDOW_BYTES) -> None:
        self.it = self._chunks(table_cache, files, start, stop, chunk_bytes)
        self.buf = bytearray()
        self.lens = array("Q")
        self.lasts: list[bytes] = []
        self.names: list[str] = []
        self.offs: list[int] = []
        self.exhausted = False

    @staticmethod
    def _chunks(table_cache: Any, files: Sequence[FileMetaData], start: bytes | None,
                stop: bytes | None, chunk_bytes: int
                ) -> Iterator[tuple[str, Any, Any, list[bytes], list[int]]]:
        for f in files:
            reader = table_cache.get(f.number)
            for data, ends, uks, offs in reader.raw_block_chunks(chunk_bytes, start, stop):
                yield reader.name, data, ends, uks, offs

    def _next(self) -> bool:
        item = next(self.it, None)
        if item is None:
            self.exhausted = True
            return False
        name, data, ends, uks, offs = item
        self.buf += data
        prev = array("Q", (0,))
        prev += ends[:-1]
        self.lens += array("Q", map(_sub, ends, prev))
        self.lasts += uks
        self.names += [name] * len(uks)
        self.offs += offs
        return True

    def fill(self, budget: int, after: bytes | None) -> None:
        """Hold at least ``budget`` bytes and, unless exhausted, a block whose
        last user key is above ``after`` (so every window makes progress)."""
        while not self.exhausted and (len(self.buf) < budget or not self.lasts
                                      or (after is not None and self.lasts[-1] <= after)):
            self._next()

    def drop_below(self, bound: bytes) -> None:
        """Drop the held blocks whose every entry is below ``bound``."""
        i = bisect_left(self.lasts, bound)
        if i:
            del self.buf[:sum(self.lens[:i])]
            del self.lens[:i], self.lasts[:i], self.names[:i], self.offs[:i]


class _PackedOutput(_OutputFiles):
    """Writes a merged packed window into output tables: ``table_blocks``
    encodes the blocks (GIL released) and stops at file cuts -- the
    grandparent rule, or a byte budget derived from the target file size
    and the compression ratio seen so far; ``TableBuilder.add_chunk``
    writes them."""

    def __init__(self, fs: Any, options: Options, new_file_number: Callable[[], int],
                 grandparents: Sequence[FileMetaData]) -> None:
        self.fs = fs
        self.options = options
        self.new_file_number = new_file_number
        self.gps = None
        if grandparents:
            self.gps = _native.Grandparents(
                [f.largest[:-8] for f in grandparents], [f.size for f in grandparents],
                GRANDPARENT_LIMIT_FILES * options.target_file_size_base)
        self.target = options.target_file_size_base
        self.metas: list[FileMetaData] = []
        self.file: Any = None
        self.builder: Any = None
        self.name = ""
        self.number = 0
        self.smallest: bytes | None = None
        self.raw = 0          # key + value bytes written, and the file bytes they took
        self.stored = 0

    def add(self, packed: tuple, order: Any) -> None:
        """Write the entries ``order`` picks from ``packed`` (internal keys and
        values, in internal order).  O(entries) native, O(blocks) Python."""
        n = len(order)
        pos = 0
        opts = self.options
        while pos < n:
            if self.builder is None:
                self.number = self.new_file_number()
                self.name = fn.table_file_name(self.number)
                self.file, self.builder = _builder(self.fs, self.name, opts)
                self.smallest = None
            builder = self.builder
            ratio = self.raw / self.stored if self.stored else 1.0
            budget = int((self.target - builder.estimated_size) * max(ratio, 1.0))
            before = builder.file_size
            chunk = _native.table_blocks(packed, 0, order, pos, n, opts.block_size,
                                         opts.block_restart_interval,
                                         max(budget, opts.block_size), builder.last_key,
                                         self.gps)
            builder.add_chunk(chunk)
            if self.smallest is None and chunk.entries:
                self.smallest = chunk.first_key
            self.raw += chunk.key_bytes + chunk.value_bytes
            self.stored += builder.file_size - before
            pos = chunk.next_pos
            if chunk.stop == 2 or (chunk.stop == 1 and builder.estimated_size >= self.target):
                self.finish()

    def finish(self) -> None:
        """Finish the current output (if any entry went in)."""
        builder = self.builder
        if builder is None:
            return
        if builder.num_entries == 0:
            _discard(self.fs, self.file, self.name)
            self.file = self.builder = None
            return
        largest = builder.last_key
        props = builder.finish()
        self.file.sync()
        meta = _meta(self.number, self.file, props, [], self.smallest, largest)
        self.file.close()
        self.metas.append(meta)
        self.file = self.builder = None


def _run_packed(c: "Compaction", sources: list[_BlockSource], out: _PackedOutput,
                snaps: list[int], stats: "CompactionStats", start: bytes | None = None,
                stop: bytes | None = None, cancel: list[bool] | None = None,
                window: int = WINDOW_BYTES) -> None:
    """The compaction merge without range tombstones, over packed windows,
    of the user keys in ``[start, stop)`` (None: unbounded): each window
    takes every held entry with user key in ``[lo, bound)``, where
    ``bound`` is the smallest last user key held by a run that still has
    blocks to read (or ``stop``), so no user key is split across windows.
    Per window three native calls (unpack, merge, encode) do the per-entry
    work.  Stops early (raising ``_Cancelled``) once ``cancel[0]`` is set.
    Memory: O(``window`` x input runs)."""
    lo = start
    while True:
        if cancel is not None and cancel[0]:
            raise _Cancelled()
        for s in sources:
            s.fill(window, lo)
        bound: bytes | None = None
        for s in sources:
            if not s.exhausted and (bound is None or s.lasts[-1] < bound):
                bound = s.lasts[-1]
        last = False
        if stop is not None and (bound is None or bound >= stop):
            bound, last = stop, True
        held = [s for s in sources if s.lasts]
        if held:
            blens = array("Q")
            for s in held:
                blens += s.lens
            try:
                packed, starts = _native.blocks_unpack_flat(
                    [s.buf for s in held], blens, array("Q", [len(s.lens) for s in held]),
                    lo, bound)
            except CorruptionError as exc:
                b = getattr(exc, "block_index", None)
                names = [n for s in held for n in s.names]
                offs = [o for s in held for o in s.offs]
                if b is None or b >= len(names):
                    raise
                raise CorruptionError(f"sstable: bad data block ({exc.args[0]})",
                                      names[b], offs[b]) from None
            if len(packed[1]):
                order = _native.merge_indices(packed, starts, 0, snaps, _native.MERGE_COMPACT,
                                              c.bottom)
                out.add(packed, order)
                stats.entries_read += len(packed[1])
                stats.entries_written += len(order)
        if bound is None or last:
            break
        for s in sources:
            s.drop_below(bound)
        lo = bound
    out.finish()


class _Cancelled(Exception):
    """A subcompaction stopped because another one failed (never escapes
    ``run_compaction``)."""


def _overlaps(f: FileMetaData, start: bytes | None, stop: bytes | None) -> bool:
    """Whether ``f`` may hold a user key in ``[start, stop)``."""
    return ((start is None or f.largest[:-8] >= start)
            and (stop is None or f.smallest[:-8] < stop))


def _split_keys(table_cache: Any, runs: Sequence[tuple[int, Sequence[FileMetaData]]],
                parts: int, min_bytes: int) -> list[bytes]:
    """At most ``parts - 1`` increasing user keys that cut the inputs into
    key ranges of about equal stored bytes, for subcompactions; none when
    the inputs total less than ``min_bytes``.  The estimate walks every
    input table's index: a sample every ``step`` blocks (at most about 64
    per table) carries the bytes of the blocks since the previous one.
    O(sampled blocks x log).  Requires: input tables openable."""
    total = sum(f.size for _, files in runs for f in files)
    if parts < 2 or total < max(min_bytes, 1):
        return []
    samples: list[tuple[bytes, int]] = []
    for _, files in runs:
        for f in files:
            uks, sizes = table_cache.get(f.number).block_sizes()
            n = len(uks)
            step = max(1, n // 64)
            for i in range(0, n, step):
                j = min(i + step, n)
                samples.append((uks[j - 1], sum(sizes[i:j])))
    samples.sort(key=lambda kv: kv[0])
    data = sum(b for _, b in samples)
    if not samples or data <= 0:
        return []
    keys: list[bytes] = []
    acc = 0
    want = 1
    for key, b in samples:
        acc += b
        if acc * parts >= want * data:
            if (not keys or key > keys[-1]) and key < samples[-1][0]:
                keys.append(key)
            while want < parts and acc * parts >= want * data:   # a big sample may pass several
                want += 1
            if want >= parts:
                break
    return keys


def _run_subcompactions(c: Compaction, runs: Sequence[tuple[int, Sequence[FileMetaData]]],
                        splits: list[bytes], *, fs: Any, table_cache: Any, options: Options,
                        new_file_number: Callable[[], int], snaps: list[int],
                        stats: "CompactionStats") -> list[FileMetaData]:
    """Run the packed merge of ``c`` as ``len(splits) + 1`` subcompactions
    over the user-key ranges the ``splits`` cut, the first in this thread
    and the others in threads of their own (the native calls release the
    GIL, so the slices use more than one core).  Each slice reads only the
    blocks of its range and writes its own outputs; the outputs are
    returned in key order.  On any error every output is deleted and the
    first real error is raised (the other slices stop at their next
    window).  Adds the entry counts to ``stats``."""
    bounds: list[bytes | None] = [None, *splits, None]
    cancel = [False]
    slices = []
    # the slices and runs share one compaction's window memory (file reads
    # are no larger than a window: stored bytes, about half what they hold)
    window = min(WINDOW_BYTES, max(TOTAL_WINDOW_BYTES // ((len(splits) + 1) * max(len(runs), 1)),
                                   MIN_WINDOW_BYTES))
    for lo, hi in zip(bounds, bounds[1:]):
        sources = [_BlockSource(table_cache, [f for f in files if _overlaps(f, lo, hi)], lo, hi,
                                window // 2)
                   for _, files in runs]
        gps = [f for f in c.grandparents if _overlaps(f, lo, hi)]
        slices.append((sources, _PackedOutput(fs, options, new_file_number, gps),
                       CompactionStats(), lo, hi))
    errors: list[BaseException | None] = [None] * len(slices)

    def work(i: int) -> None:
        sources, out, st, lo, hi = slices[i]
        try:
            _run_packed(c, sources, out, snaps, st, lo, hi, cancel, window)
        except BaseException as exc:
            errors[i] = exc
            cancel[0] = True

    threads = [threading.Thread(target=work, args=(i,), daemon=True,
                                name=f"{threading.current_thread().name}-sub{i}")
               for i in range(1, len(slices))]
    for t in threads:
        t.start()
    work(0)
    for t in threads:
        t.join()
    failed = [e for e in errors if e is not None]
    if failed:
        for _, out, _, _, _ in slices:
            out.abandon()
        real = [e for e in failed if not isinstance(e, _Cancelled)]
        raise (real or failed)[0]
    metas: list[FileMetaData] = []
    for _, out, st, _, _ in slices:
        metas.extend(out.metas)
        stats.entries_read += st.entries_read
        stats.entries_written += st.entries_written
    return metas


def run_compaction(c: Compaction, *, fs: Any, table_cache: Any, options: Options,
                   new_file_number: Callable[[], int], snapshots: Sequence[int],
                   ) -> tuple[VersionEdit, CompactionStats]:
    """Do the work of ``c``; return the edit (inputs deleted, outputs added,
    compaction pointer, tiered moves) and statistics.  The caller applies
    the edit.  A trivial move does no I/O.  On error the outputs written so
    far are deleted and the error is raised.

    Memory: O(WINDOW_ENTRIES x input runs + range tombstones).
    Requires: ``snapshots`` the live snapshot sequences; ``table_cache.get``
    opens input tables by number.
    """
    if not isinstance(c, Compaction):
        raise ArgumentTypeError(f"c must be a Compaction, not {type(c).__name__}")
    if not isinstance(options, Options):
        raise ArgumentTypeError(f"options must be an Options, not {type(options).__name__}")
    if not callable(new_file_number):
        raise ArgumentTypeError("new_file_number must be callable")
    snaps = sorted(set(int(s) for s in snapshots))
    t0 = time.monotonic()
    stats = CompactionStats()
    pointers: tuple[tuple[int, bytes], ...] = ()
    if c.inputs[0] and c.level > 0 and not c.sources:
        pointers = ((c.level, max((f.largest for f in c.inputs[0]), key=internal_sort_key)),)
    moved_deleted = tuple((a, f.number) for a, _, f in c.moves)
    moved_added = tuple((b, f) for _, b, f in c.moves)
    inputs = c.input_files()
    if c.trivial_move:
        edit = VersionEdit(
            compact_pointers=pointers,
            deleted_files=tuple((lv, f.number) for lv, f in inputs) + moved_deleted,
            new_files=tuple((c.output_level, f) for _, f in inputs) + moved_added)
        stats.seconds = time.monotonic() - t0
        return edit, stats

    tombs: list[tuple[bytes, bytes, int]] = []
    for _, f in inputs:
        tombs.extend(table_cache.get(f.number).range_tombstones)
    if not tombs:
        # the common case: no range tombstones, so the merge is the plain
        # k-way merge over packed windows (no Python object per entry), in
        # key-range slices that run in parallel when the work is large
        runs = c.input_runs()
        splits = _split_keys(table_cache, runs, options.max_subcompactions,
                             SUBCOMPACTION_MIN_FILES * options.target_file_size_base)
        metas = _run_subcompactions(c, runs, splits, fs=fs, table_cache=table_cache,
                                    options=options, new_file_number=new_file_number,
                                    snaps=snaps, stats=stats)
        stats.subcompactions = len(splits) + 1
        return _finish_stats(c, stats, inputs, metas, 0, pointers, moved_deleted,
                             moved_added, t0)
    sources = [_Source(table_cache, files) for _, files in c.input_runs()]
    tomb_entries = sorted(((s + _PACK((q << 8) | KIND_RANGE_TOMBSTONE), e) for s, e, q in tombs),
                          key=lambda kv: internal_sort_key(kv[0]))
    out = _Output(fs, options, new_file_number, c.grandparents)
    emitted: set[tuple[bytes, bytes, int]] = set()
    merge = _native.merge
    mode = _native.MERGE_COMPACT
    lo: bytes | None = None
    try:
        while True:
            for s in sources:
                s.fill(WINDOW_ENTRIES)
            bound: bytes | None = None
            for s in sources:
                if not s.exhausted:
                    u = s.last_user()
                    if bound is None or u < bound:
                        bound = u
            runs = []
            for s in sources:
                keys, values = s.take_below(bound)
                if keys:
                    runs.append((keys, values))
            if not runs and bound is not None:
                for s in sources:       # every buffered entry is at user key `bound`
                    if not s.exhausted and s.last_user() == bound:
                        s.grow()
                continue
            window_tombs = [kv for kv in tomb_entries
                            if (bound is None or kv[0][:-8] < bound)
                            and (lo is None or kv[1] > lo)]
            if window_tombs:
                runs.append(([k for k, _ in window_tombs], [v for _, v in window_tombs]))
            if runs:
                keys, values = merge(runs, 0, snaps, mode, c.bottom)
                add, add_tomb = out.add, out.add_tombstone
                if not window_tombs:    # only range tombstones are kind 2: none here
                    out.add_many(keys, values)
                else:
                    for k, v in zip(keys, values):
                        if k[-8] == KIND_RANGE_TOMBSTONE:
                            t = (k[:-8], v, int.from_bytes(k[-7:], "little"))
                            if t not in emitted:
                                emitted.add(t)
                                add_tomb(*t)
                        else:
                            add(k, v)
                stats.entries_written += len(keys)
            if bound is None:
                break
            lo = bound
        if out.builder is not None:
            out.finish(None)
    except BaseException:
        out.abandon()
        raise
    stats.entries_read = sum(s.entries for s in sources)
    return _finish_stats(c, stats, inputs, out.metas, out.tombs_written, pointers,
                         moved_deleted, moved_added, t0)


def _finish_stats(c: Compaction, stats: CompactionStats, inputs: Sequence[tuple[int, Any]],
                  metas: list[FileMetaData], tombs_written: int, pointers: tuple,
                  moved_deleted: tuple, moved_added: tuple, t0: float
                  ) -> tuple[VersionEdit, CompactionStats]:
    """The edit and the remaining statistics of a finished compaction."""
    stats.bytes_read = sum(f.size for _, f in inputs)
    stats.bytes_written = sum(m.size for m in metas)
    stats.input_files = len(inputs)
    stats.output_files = len(metas)
    stats.range_tombstones_written = tombs_written
    stats.seconds = time.monotonic() - t0
    edit = VersionEdit(
        compact_pointers=pointers,
        deleted_files=tuple((lv, f.number) for lv, f in inputs) + moved_deleted,
        new_files=tuple((c.output_level, m) for m in metas) + moved_added)
    return edit, stats
