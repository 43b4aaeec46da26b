"""Iterators: the windowed k-way merge of every source, and the user cursors.

Design
------
A read *view* is a fixed picture of the LSM: the memtables (newest first),
the immutable ``Version`` (its SSTables) and a read sequence number.  A view
pins its Version (the DB deletes no file a pinned Version names) until it is
closed.

A *scan* walks a view in one direction between two user-key bounds.  Each
source (a memtable run, an L0 table, or one sorted level of tables) yields
*chunks*: sorted lists of internal keys and values (one ``MemTable.run`` of
16 to 1024 user keys -- small first, so a seek reads little -- or 1, 2, 4 ..
16 decoded data blocks).  The scan merges them in *windows*:

forward
    ``bound`` = the smallest "last user key" among the current chunks of the
    sources that still have more chunks.  Every entry with a user key
    ``< bound`` is present in the current chunks (a source's later chunks
    hold only keys ``>= `` its last one), so those entries -- all versions of
    each user key -- are merged by ``lsm._native.merge(MERGE_READ)`` in one
    C call, together with the range tombstones that overlap the window.  A
    source whose remaining entries are all versions of one user key has its
    next chunk appended first, so every window makes progress.
backward
    the mirror image: ``bound`` = the largest first user key; entries with a
    user key ``> bound`` are merged; the output is reversed.

Seeks read little: entries of a freshly loaded chunk below the window's
start (a block holds keys before the seek key) are skipped before the merge,
and the first windows are capped -- at most ``_WINDOW_CAP_FIRST`` (16)
entries of any source, 4x more per window, uncapped past 1024 -- by lowering
``bound`` to a source's 16th (64th, ...) user key when that key is past the
source's first one (so the window is never empty).

The merge output of a window is turned into a Python list of ready-made
items (``(key, value)`` tuples, keys, values or ``None`` per
include_key/include_value), so ``Iterator.__next__`` is an index into a list.
Bounds and prefixes are pushed down: only files overlapping the range are
opened, a table's blocks are read from the block that may hold the first key
in range, and a source stops once a chunk starts beyond the range.

Cursor semantics (plyvel's): an ``Iterator`` sits in a *gap* between two
items of its range.  ``next()`` returns the item after the gap and moves past
it, ``prev()`` returns the item before the gap and moves before it (so
``prev()`` after ``next()`` returns the same item); on a reverse iterator the
two are swapped.  ``seek_to_start()`` puts the gap before the first item of
the range, ``seek_to_stop()`` after the last, ``seek(k)`` before the first
item ``>= k`` (clamped to the range) -- for every direction.
``include_start``/``include_stop`` always refer to ``start``/``stop``, also
when ``reverse=True``.  ``prefix`` replaces ``start``/``stop``.

Complexity: a window over ``s`` sources of ``m`` entries costs one C merge,
O(m log s); each item then costs O(1) Python work.
"""

from __future__ import annotations

import struct
from bisect import bisect_left, bisect_right
from itertools import chain as _chain
from operator import itemgetter, length_hint as _length_hint
from typing import Any, Callable, Iterator as _TypingIterator, Sequence

from blockdev.errors import ArgumentTypeError, ClosedError, Error
from lsm import _native
from lsm.dbformat import KIND_RANGE_TOMBSTONE, KIND_SEEK, MAX_SEQUENCE, internal_sort_key

__all__ = [
    "Iterator", "RawIterator", "IteratorInvalidError", "ReadView", "resolve_bounds",
    "bytes_increment",
]

_TRAILER = struct.Struct("<Q")
_SEEK_TRAILER = _TRAILER.pack((MAX_SEQUENCE << 8) | KIND_SEEK)   # sorts first among versions
_LAST_TRAILER = _TRAILER.pack(0)                                  # sorts last among versions

MEM_CHUNK = 1024          # most user keys per memtable chunk (first chunks are smaller)
_UK = itemgetter(slice(None, -8))   # internal key -> user key, at C speed
_chain_from = _chain.from_iterable
MAX_BLOCKS_PER_CHUNK = 16  # table chunks grow 1, 2, 4, ... blocks up to this many
_WINDOW_CAP_FIRST = 16     # the first window takes <= this many entries per source, the
_WINDOW_CAP_MAX = 1024     # next ones 4x more each, uncapped after this many


class IteratorInvalidError(Error):
    """A ``RawIterator`` was asked for its key/value or moved while not valid."""


def bytes_increment(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix``
    (``None`` when there is none: empty or all-0xff prefix).  O(len)."""
    b = bytearray(prefix)
    while b:
        if b[-1] != 0xFF:
            b[-1] += 1
            return bytes(b)
        b.pop()
    return None


def _as_key(value: Any, name: str) -> bytes:
    if type(value) is bytes:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise ArgumentTypeError(f"{name} must be bytes-like, got {type(value).__name__}")


def _as_bool(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, int)):
        raise ArgumentTypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def resolve_bounds(start: Any, stop: Any, include_start: Any, include_stop: Any,
                   prefix: Any) -> tuple[bytes | None, bool, bytes | None, bool]:
    """Validate plyvel-style range arguments and return ``(lo, lo_incl, hi, hi_incl)``.

    ``prefix`` cannot be combined with ``start``/``stop`` (ArgumentTypeError,
    as plyvel raises TypeError) and overrides include_start/include_stop.
    """
    include_start = _as_bool(include_start, "include_start")
    include_stop = _as_bool(include_stop, "include_stop")
    if prefix is not None:
        prefix = _as_key(prefix, "prefix")
        if start is not None or stop is not None:
            raise ArgumentTypeError("'prefix' cannot be used together with 'start' or 'stop'")
        return prefix, True, bytes_increment(prefix), False
    lo = None if start is None else _as_key(start, "start")
    hi = None if stop is None else _as_key(stop, "stop")
    return lo, include_start, hi, include_stop


# ---------------------------------------------------------------------------
# the read view and its sources


class ReadView:
    """A fixed picture of the DB for one iterator: memtables, Version, read_seq.

    ``get_table(number)`` returns an open TableReader; ``release`` (if given)
    is called once by ``close()`` to unpin the Version.  ``lo``/``hi`` bound
    the memtable runs taken (hi exclusive); scans may narrow them further.
    """

    def __init__(self, memtables: Sequence[Any], version: Any, read_seq: int,
                 get_table: Callable[[int], Any], *, lo: bytes | None = None,
                 hi: bytes | None = None, release: Callable[[], None] | None = None) -> None:
        self.memtables = tuple(memtables)
        self.version = version
        self.read_seq = read_seq
        self.get_table = get_table
        self._lo = lo
        self._hi = hi
        self._release = release
        self._tombstones: list[tuple[bytes, bytes, int]] | None = None
        self.closed = False

    def close(self) -> None:
        """Unpin the Version (idempotent)."""
        if not self.closed:
            self.closed = True
            rel, self._release = self._release, None
            if rel is not None:
                rel()

    # -- lazily computed, shared by every scan of the view ------------------
    def tombstones(self) -> list[tuple[bytes, bytes, int]]:
        """Every range tombstone visible at read_seq that may overlap [lo, hi),
        sorted by start key."""
        if self._tombstones is None:
            seq = self.read_seq
            lo, hi = self._lo, self._hi
            out: list[tuple[bytes, bytes, int]] = []
            for mem in self.memtables:
                out.extend(t for t in mem.range_tombstones() if t[2] <= seq)
            v = self.version
            for level in range(len(v.levels)):
                if not v.level_has_deletions(level):
                    continue
                for f in v.overlapping(level, lo, hi):
                    if f.num_deletions == 0:   # counts range tombstones too: none here
                        continue
                    out.extend(t for t in self.get_table(f.number).range_tombstones
                               if t[2] <= seq)
            out = [t for t in out if (hi is None or t[0] < hi) and (lo is None or t[1] > lo)]
            out.sort()
            self._tombstones = out
        return self._tombstones

    def scan(self, ascending: bool, lo: bytes | None, lo_incl: bool,
             hi: bytes | None, hi_incl: bool) -> "_Scan":
        """A new scan over user keys in the given bounds (None = unbounded)."""
        if self.closed:
            raise ClosedError("iterator is closed")
        return _Scan(self, ascending, lo, lo_incl, hi, hi_incl)


def _mem_sorted_keys(mem: Any) -> list[bytes]:
    """The memtable's sorted user keys (a list the memtable replaces, never
    mutates).  Helper kept here: lsm/memtable.py offers ``run(start, stop)``
    only, and an iterator must not copy a whole memtable to read a few
    entries, so it pages through ``run`` with key bounds taken from this list."""
    return mem._sorted_keys()


def _mem_chunks(mem: Any, ascending: bool, lo: bytes | None, hi: bytes | None
                ) -> _TypingIterator[tuple[list[bytes], list[bytes]]]:
    """Chunks of about MEM_CHUNK user keys of one memtable between user keys
    lo and hi (both inclusive; callers trim).  Each chunk is one
    ``mem.run(a, b)``: O(chunk) work per chunk, nothing outside the range.
    Range tombstones are left out (the scan adds every one of them)."""
    keys = _mem_sorted_keys(mem)
    n = len(keys)
    first = 0 if lo is None else bisect_left(keys, lo)
    end = n if hi is None else bisect_right(keys, hi)

    def fetch(i: int, j: int) -> tuple[list[bytes], list[bytes]]:
        # checked per chunk: a live memtable may gain range tombstones meanwhile
        # (run() puts them, unclipped, among the entries -- drop them all)
        ks, vs = mem.run(keys[i], keys[j] if j < n else None)
        if mem.range_tombstones():     # after run(): sees every tombstone run() saw
            keep = [x for x, k in enumerate(ks) if k[-8] != KIND_RANGE_TOMBSTONE]
            if len(keep) != len(ks):
                ks = [ks[x] for x in keep]
                vs = [vs[x] for x in keep]
        return ks, vs

    size = 16                       # grows to MEM_CHUNK: short scans stay cheap
    if ascending:
        i = first
        while i < end:
            j = min(end, i + size)
            ks, vs = fetch(i, j)
            if ks:
                yield ks, vs
            i = j
            size = min(MEM_CHUNK, size * 4)
    else:
        j = end
        while j > first:
            i = max(first, j - size)
            ks, vs = fetch(i, j)
            if ks:
                yield ks, vs
            j = i
            size = min(MEM_CHUNK, size * 4)


def _table_chunks(reader: Any, ascending: bool, lo: bytes | None, hi: bytes | None,
                  first: bool = True
                  ) -> _TypingIterator[tuple[list[bytes], list[bytes]]]:
    """Chunks of decoded blocks of one table, 1, 2, 4 .. blocks at a time."""
    if ascending:
        start = lo + _SEEK_TRAILER if (lo is not None and first) else None
    else:
        start = hi + _LAST_TRAILER if (hi is not None and first) else None
    want = 1
    keys: list[bytes] = []
    values: list[bytes] = []
    nblocks = 0
    for bkeys, bvalues in reader.block_runs(start, not ascending, hi if ascending else lo):
        if not bkeys:
            continue
        if ascending:
            if hi is not None and bkeys[0][:-8] > hi:
                break
            keys.extend(bkeys)
            values.extend(bvalues)
        else:
            if lo is not None and bkeys[-1][:-8] < lo:
                break
            keys[:0] = bkeys
            values[:0] = bvalues
        nblocks += 1
        if nblocks >= want:
            yield keys, values
            keys, values, nblocks = [], [], 0
            if want < MAX_BLOCKS_PER_CHUNK:
                want *= 2
    if keys:
        yield keys, values


def _level_chunks(view: ReadView, files: Sequence[Any], ascending: bool,
                  lo: bytes | None, hi: bytes | None
                  ) -> _TypingIterator[tuple[list[bytes], list[bytes]]]:
    """Chunks of a sorted, non-overlapping level: its files one after the other."""
    order = list(files) if ascending else list(reversed(files))
    for i, f in enumerate(order):
        yield from _table_chunks(view.get_table(f.number), ascending, lo, hi, first=(i == 0))


class _Src:
    __slots__ = ("gen", "keys", "vals", "pos", "end")

    def __init__(self, gen: Any) -> None:
        self.gen = gen
        self.keys: list[bytes] = []
        self.vals: list[bytes] = []
        self.pos = 0
        self.end = 0


class _Scan:
    """One direction of travel over a view; ``next_window()`` returns the next
    ``(internal keys, values)`` in travel order (merge output: one entry per
    user key, trimmed to the bounds), ``([], [])`` once exhausted."""

    def __init__(self, view: ReadView, ascending: bool, lo: bytes | None, lo_incl: bool,
                 hi: bytes | None, hi_incl: bool) -> None:
        self.view = view
        self.ascending = ascending
        self.lo, self.lo_incl, self.hi, self.hi_incl = lo, lo_incl, hi, hi_incl
        self.done = lo is not None and hi is not None and (
            lo > hi or (lo == hi and not (lo_incl and hi_incl)))
        self.srcs: list[_Src] = []
        self.wedge = lo if ascending else hi   # where the next window starts
        self.cap = _WINDOW_CAP_FIRST           # entries per source in the next window (0: no cap)
        if self.done:
            return
        for mem in view.memtables:
            if mem.num_entries:
                self.srcs.append(_Src(_mem_chunks(mem, ascending, lo, hi)))
        v = view.version
        for level in range(len(v.levels)):
            files = v.overlapping(level, lo, hi)
            if not files:
                continue
            if level == 0:
                for f in files:
                    self.srcs.append(_Src(_table_chunks(view.get_table(f.number),
                                                        ascending, lo, hi)))
            else:                      # a sorted level: files already in key order
                self.srcs.append(_Src(_level_chunks(view, files, ascending, lo, hi)))
        self.tombs = view.tombstones()

    # -- helpers ---------------------------------------------------------------
    def _tomb_run(self, wlo: bytes | None, whi: bytes | None) -> tuple[list[bytes], list[bytes]] | None:
        """Range tombstones overlapping user keys [wlo, whi] as a sorted kind-2 run,
        starts clipped to wlo (clipping keeps coverage of the window unchanged)."""
        if not self.tombs:
            return None
        pairs = []
        for start, end, seq in self.tombs:
            if whi is not None and start > whi:
                break
            if wlo is not None and end <= wlo:
                continue
            if wlo is not None and start < wlo:
                start = wlo
            pairs.append((start + _TRAILER.pack((seq << 8) | KIND_RANGE_TOMBSTONE), end))
        if not pairs:
            return None
        pairs.sort(key=lambda p: internal_sort_key(p[0]))
        return [p[0] for p in pairs], [p[1] for p in pairs]

    def _trim(self, okeys: list[bytes], vals: list[bytes]) -> tuple[list[bytes], list[bytes]]:
        """Cut merge output (internal keys, unique user keys) to the bounds."""
        lo, hi = self.lo, self.hi
        i, j = 0, len(okeys)
        if lo is not None and j and okeys[0][:-8] <= lo:
            i = (bisect_left(okeys, lo, key=_UK) if self.lo_incl
                 else bisect_right(okeys, lo, key=_UK))
        if hi is not None and j and okeys[-1][:-8] >= hi:
            j = (bisect_right(okeys, hi, key=_UK) if self.hi_incl
                 else bisect_left(okeys, hi, key=_UK))
        if i or j != len(okeys):
            return okeys[i:j], vals[i:j]
        return okeys, vals

    # -- the windows -----------------------------------------------------------
    def next_window(self) -> tuple[list[bytes], list[bytes]]:
        merge = _native.merge_trusted       # runs built here: lists of bytes
        MERGE_READ = _native.MERGE_READ
        seq = self.view.read_seq
        while not self.done:
            if self.view.closed:
                raise ClosedError("iterator is closed")
            runs: list[tuple[list[bytes], list[bytes]]] = []
            if self.ascending:
                bound = self._fill_forward()
                cap = self.cap
                if cap:
                    # a seek reads a few entries: cut the first windows short
                    # (any bound <= the chunks' smallest last key is valid; a
                    # source's key > its first key keeps the window non-empty)
                    self.cap = cap * 4 if cap < _WINDOW_CAP_MAX else 0
                    for s in self.srcs:
                        p = s.pos + cap
                        if p < len(s.keys):
                            k = s.keys[p][:-8]
                            if (bound is None or k < bound) and k > s.keys[s.pos][:-8]:
                                bound = k
                if bound is None:
                    self.done = True
                for s in self.srcs:
                    cut = (len(s.keys) if bound is None
                           else bisect_left(s.keys, bound, s.pos, key=_UK))
                    if cut > s.pos:
                        runs.append((s.keys[s.pos:cut], s.vals[s.pos:cut]))
                        s.pos = cut
                wlo, whi = self.wedge, bound
                self.wedge = bound
                if self.hi is not None and bound is not None and bound > self.hi:
                    self.done = True
            else:
                bound = self._fill_backward()
                cap = self.cap
                if cap:
                    self.cap = cap * 4 if cap < _WINDOW_CAP_MAX else 0
                    for s in self.srcs:
                        p = s.end - 1 - cap
                        if p >= 0:
                            k = s.keys[p][:-8]
                            if (bound is None or k > bound) and k < s.keys[s.end - 1][:-8]:
                                bound = k
                if bound is None:
                    self.done = True
                for s in self.srcs:
                    cut = 0 if bound is None else bisect_right(s.keys, bound, 0, s.end, key=_UK)
                    if cut < s.end:
                        runs.append((s.keys[cut:s.end], s.vals[cut:s.end]))
                        s.end = cut
                wlo, whi = bound, self.wedge
                self.wedge = bound
                if self.lo is not None and bound is not None and bound < self.lo:
                    self.done = True
            if not runs:
                continue
            tr = self._tomb_run(wlo, whi)
            if tr is not None:
                runs.append(tr)
            okeys, ovals = merge(runs, seq, (), MERGE_READ)
            if not okeys:
                continue
            okeys, vals = self._trim(okeys, ovals)
            if not okeys:
                continue
            if not self.ascending:
                okeys = okeys[::-1]
                vals = vals[::-1]
            return okeys, vals
        self.srcs = []
        return [], []

    def _fill_forward(self) -> bytes | None:
        """Load chunks so each source's remainder spans >= 2 user keys (or its
        source is exhausted); return the window bound (None: take all)."""
        bound = None
        live = []
        wedge = self.wedge
        for s in self.srcs:
            while s.gen is not None and (s.pos >= len(s.keys)
                                         or s.keys[s.pos][:-8] == s.keys[-1][:-8]):
                chunk = next(s.gen, None)
                if chunk is None:
                    s.gen = None
                    break
                if s.pos >= len(s.keys):
                    s.keys, s.vals = chunk
                else:
                    p = s.pos
                    s.keys = s.keys[p:] + chunk[0]
                    s.vals = s.vals[p:] + chunk[1]
                s.pos = 0
                # a seek's first chunk starts at a block boundary: entries
                # below the wedge are never needed (left out of the merge)
                if wedge is not None and s.keys and s.keys[0][:-8] < wedge:
                    s.pos = bisect_left(s.keys, wedge, 0, key=_UK)
            if s.pos < len(s.keys):
                live.append(s)
                if s.gen is not None:
                    last = s.keys[-1][:-8]
                    if bound is None or last < bound:
                        bound = last
        self.srcs = live
        return bound

    def _fill_backward(self) -> bytes | None:
        bound = None
        live = []
        wedge = self.wedge
        for s in self.srcs:
            while s.gen is not None and (s.end <= 0
                                         or s.keys[0][:-8] == s.keys[s.end - 1][:-8]):
                chunk = next(s.gen, None)
                if chunk is None:
                    s.gen = None
                    break
                if s.end <= 0:
                    s.keys, s.vals = chunk
                else:
                    e = s.end
                    s.keys = chunk[0] + s.keys[:e]
                    s.vals = chunk[1] + s.vals[:e]
                s.end = len(s.keys)
                if wedge is not None and s.keys and s.keys[-1][:-8] > wedge:
                    s.end = bisect_right(s.keys, wedge, 0, key=_UK)
            if s.end > 0:
                live.append(s)
                if s.gen is not None:
                    first = s.keys[0][:-8]
                    if bound is None or first > bound:
                        bound = first
        self.srcs = live
        return bound


_EMPTY_SCAN = object()   # marker: nothing lies in this direction


# ---------------------------------------------------------------------------
# the user cursors


class _Owner:
    """What a cursor needs from its DB: ``_closed`` and ``_forget(cursor)``."""
    _closed: bool

    def _forget(self, cursor: Any) -> None: ...


class _CursorLifecycle:
    """The close/invalidate/context-manager/finaliser protocol shared by
    ``Iterator`` and ``RawIterator``.  Requires: the subclass has the slots
    ``_closed``, ``_view`` (a ReadView) and ``_owner`` (an ``_Owner``) and
    implements ``_drop_buffered()``, which empties its buffered entries.
    Every method is O(1) apart from releasing the view."""

    __slots__ = ()
    _closed: bool
    _view: ReadView
    _owner: Any

    def _drop_buffered(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release the iterator's resources; later calls raise ClosedError."""
        if not self._closed:
            self._closed = True
            self._drop_buffered()
            self._view.close()
            self._owner._forget(self)

    def _invalidate(self) -> None:
        """Called by DB.close(): drop buffered items so the next call raises."""
        self._closed = True
        self._drop_buffered()
        self._view.close()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if not self._closed:
                self._view.close()
        except Exception:   # interpreter shutdown: nothing left to release
            pass


class Iterator(_CursorLifecycle):
    """plyvel-style iterator (see the module docstring for the cursor model).

    Created by ``DB.iterator()``; yields ``(key, value)`` tuples, keys, values
    or ``None`` depending on include_key/include_value.  Holds its read view
    (and so its Version's files) until ``close()`` or garbage collection.
    """

    __slots__ = ("_buf", "_bv", "_keys", "_i", "_n", "_tail", "_head", "_view", "_owner",
                 "_lo", "_lo_incl", "_hi", "_hi_incl", "_reverse", "_ik", "_iv", "_strip",
                 "_prefix", "_closed", "_li", "__weakref__")

    def __init__(self, owner: Any, view: ReadView, lo: bytes | None, lo_incl: bool,
                 hi: bytes | None, hi_incl: bool, *, reverse: bool = False,
                 include_key: bool = True, include_value: bool = True,
                 db_prefix: bytes = b"") -> None:
        self._owner = owner
        self._prefix = db_prefix
        self._strip = len(db_prefix)
        self._view = view
        self._lo, self._lo_incl, self._hi, self._hi_incl = lo, lo_incl, hi, hi_incl
        self._reverse = bool(reverse)
        self._ik = bool(include_key)
        self._iv = bool(include_value)
        self._closed = False
        self._buf: list[Any] = []
        self._bv: list[bytes] | None = None   # values, when items are (key, value) pairs
        self._keys: list[bytes] = []
        self._i = 0
        self._n = 0
        self._tail: Any = None
        self._head: Any = None
        self._li: Any = None        # list iterator a ``for`` loop is consuming (``__iter__``)
        if self._reverse:
            self.seek_to_stop()
        else:
            self.seek_to_start()

    # -- fast path ---------------------------------------------------------------
    def __iter__(self) -> Any:
        """An iterator equivalent to calling ``next(self)`` repeatedly, at C
        speed per item: ``itertools.chain`` over list iterators of the
        buffered windows (``_windows``).  The cursor stays exact: whatever
        the chain consumed is synced back into the cursor (``_detach``) by
        the next cursor operation, which also exhausts the chain's list
        iterator, so the chain then resumes from the cursor's position."""
        return _chain_from(self._windows())

    def _windows(self) -> Any:
        """Generator of list iterators over the buffer from the cursor's
        position, loading windows as ``__next__`` does (see ``__iter__``)."""
        while True:
            self._detach()
            i, n = self._i, self._n
            if i < n:
                li = iter(self._buf)
                if i:
                    li.__setstate__(i)
                self._li = li
                bv = self._bv
                if bv is None:
                    yield li
                else:
                    # (key, value) pairs made one at a time by zip, not held in
                    # a list: a window of tuples alive at once would wake the
                    # cyclic GC every few hundred items
                    vi = iter(bv)
                    if i:
                        vi.__setstate__(i)
                    yield zip(li, vi)
                continue
            try:
                self._next_slow()       # loads the next window, consumes item 0
            except StopIteration:
                return
            self._i = 0                 # hand item 0 to the list iterator instead

    def _detach(self) -> None:
        """Sync the cursor with the list iterator a ``for`` loop consumed
        (position = items consumed) and exhaust that iterator.  O(1)."""
        li = self._li
        if li is not None:
            self._li = None
            self._i = self._n - _length_hint(li)
            li.__setstate__(1 << 62)

    def __next__(self) -> Any:
        if self._li is not None:
            self._detach()
        i = self._i
        if i < self._n:
            self._i = i + 1
            bv = self._bv
            return self._buf[i] if bv is None else (self._buf[i], bv[i])
        return self._next_slow()

    def prev(self) -> Any:
        """Move one step back and return that item (StopIteration at the start)."""
        if self._li is not None:
            self._detach()
        i = self._i
        if i > 0 and not self._closed:
            self._i = i - 1
            bv = self._bv
            return self._buf[i - 1] if bv is None else (self._buf[i - 1], bv[i - 1])
        return self._prev_slow()

    # -- items -------------------------------------------------------------------
    def _fill(self, okeys: list[bytes], vals: list[bytes]) -> None:
        """Buffer the items of merge output ``okeys`` (internal keys):
        ``_buf`` keys, values or ``None``s -- or, for (key, value) items, the
        keys, with the values in ``_bv`` (the pairs are made on demand)."""
        p = self._strip
        self._bv = None
        if self._ik:
            keys = map(itemgetter(slice(p, -8)), okeys) if p else map(_UK, okeys)
            self._buf = list(keys)
            if self._iv:
                self._bv = vals if type(vals) is list else list(vals)
        elif self._iv:
            self._buf = vals if type(vals) is list else list(vals)
        else:
            self._buf = [None] * len(okeys)

    def _item(self, i: int) -> Any:
        bv = self._bv
        return self._buf[i] if bv is None else (self._buf[i], bv[i])

    def _check(self) -> None:
        if self._closed:
            raise ClosedError("iterator is closed")
        if self._owner._closed:
            raise ClosedError("DB is closed")

    def _spec_scan(self, spec: Any) -> Any:
        if spec is None or spec is _EMPTY_SCAN or isinstance(spec, _Scan):
            return spec
        ascending, lo, lo_incl, hi, hi_incl = spec
        return self._view.scan(ascending, lo, lo_incl, hi, hi_incl)

    def _after(self, key: bytes, forward_in_keys: bool) -> tuple:
        """Scan spec continuing strictly beyond ``key`` in key direction."""
        if forward_in_keys:
            return (True, key, False, self._hi, self._hi_incl)
        return (False, self._lo, self._lo_incl, key, False)

    def _next_slow(self) -> Any:
        self._check()
        tail = self._tail
        if tail is None:   # continue after the buffer's last item
            tail = self._after(self._keys[-1][:-8], not self._reverse)
        tail = self._spec_scan(tail)
        self._tail = tail
        if tail is _EMPTY_SCAN:
            raise StopIteration
        okeys, vals = tail.next_window()
        if not okeys:
            self._tail = _EMPTY_SCAN
            self._i = self._n
            raise StopIteration
        self._keys = okeys
        self._fill(okeys, vals)
        self._n = len(okeys)
        self._i = 1
        self._head = None
        return self._item(0)

    def _prev_slow(self) -> Any:
        self._check()
        head = self._head
        if head is None:
            head = self._after(self._keys[0][:-8], self._reverse)
        head = self._spec_scan(head)
        self._head = head
        if head is _EMPTY_SCAN:
            raise StopIteration
        okeys, vals = head.next_window()
        if not okeys:
            self._head = _EMPTY_SCAN
            self._i = 0
            raise StopIteration
        okeys = okeys[::-1]
        vals = vals[::-1]
        self._keys = okeys
        self._fill(okeys, vals)
        self._n = len(okeys)
        self._i = self._n - 1
        self._tail = None
        return self._item(self._n - 1)

    def _reset(self, tail: Any, head: Any) -> None:
        if self._li is not None:
            self._detach()
        self._buf = []
        self._bv = None
        self._keys = []
        self._i = self._n = 0
        self._tail = tail
        self._head = head

    # -- positioning ---------------------------------------------------------------
    def seek_to_start(self) -> None:
        """Put the cursor before the first item of the range."""
        self._check()
        asc = (True, self._lo, self._lo_incl, self._hi, self._hi_incl)
        if self._reverse:
            self._reset(_EMPTY_SCAN, asc)
        else:
            self._reset(asc, _EMPTY_SCAN)

    def seek_to_stop(self) -> None:
        """Put the cursor after the last item of the range."""
        self._check()
        desc = (False, self._lo, self._lo_incl, self._hi, self._hi_incl)
        if self._reverse:
            self._reset(desc, _EMPTY_SCAN)
        else:
            self._reset(_EMPTY_SCAN, desc)

    def seek(self, target: Any) -> None:
        """Put the cursor before the first item >= ``target`` (clamped to the range)."""
        self._check()
        target = _as_key(target, "target")
        if self._prefix:
            target = self._prefix + target
        lo, lo_incl, hi, hi_incl = self._lo, self._lo_incl, self._hi, self._hi_incl
        if lo is None or target > lo:
            up = (True, target, True, hi, hi_incl)
        else:
            up = (True, lo, lo_incl, hi, hi_incl)
        if hi is None or target <= hi:
            down = (False, lo, lo_incl, target, False)
        else:
            down = (False, lo, lo_incl, hi, hi_incl)
        if self._reverse:
            self._reset(down, up)
        else:
            self._reset(up, down)

    # -- lifecycle (close, _invalidate, __exit__, __del__: _CursorLifecycle) ----
    def _drop_buffered(self) -> None:
        self._reset(_EMPTY_SCAN, _EMPTY_SCAN)

    def __enter__(self) -> "Iterator":
        return self


class RawIterator(_CursorLifecycle):
    """A LevelDB-style positioned cursor: ``valid()``, ``key()``, ``value()``,
    ``item()``, ``next()``, ``prev()``, ``seek(k)``, ``seek_for_prev(k)``,
    ``seek_to_first()``, ``seek_to_last()``, ``close()``.

    Starts invalid (call a seek method first).  ``key()``/``value()``/``next()``/
    ``prev()`` on an invalid cursor raise ``IteratorInvalidError``.
    """

    __slots__ = ("_view", "_owner", "_keys", "_vals", "_i", "_fwd", "_back",
                 "_closed", "_strip", "_lo", "__weakref__")

    def __init__(self, owner: Any, view: ReadView, *, strip: int = 0,
                 lo: bytes | None = None) -> None:
        self._owner = owner
        self._view = view
        self._strip = strip
        self._lo = lo if strip else None   # PrefixedDB: the prefix
        self._closed = False
        self._keys: list[bytes] = []
        self._vals: list[bytes] = []
        self._i = -1
        self._fwd: Any = None
        self._back: Any = None

    def _check(self) -> None:
        if self._closed:
            raise ClosedError("iterator is closed")
        if self._owner._closed:
            raise ClosedError("DB is closed")

    def _bounds(self) -> tuple[bytes | None, bytes | None]:
        if self._lo is None:
            return None, None
        return self._lo, bytes_increment(self._lo)

    def _load(self, scan: Any, ascending: bool) -> bool:
        okeys, vals = scan.next_window()
        if not okeys:
            self._keys, self._vals, self._i = [], [], -1
            return False
        if not ascending:
            okeys = okeys[::-1]
            vals = vals[::-1]
        self._keys, self._vals = list(map(_UK, okeys)), list(vals)
        return True

    def valid(self) -> bool:
        """True when positioned on an item."""
        self._check()
        return 0 <= self._i < len(self._keys)

    def seek_to_first(self) -> None:
        self._check()
        lo, hi = self._bounds()
        self._fwd = self._view.scan(True, lo, True, hi, False)
        self._back = None
        if self._load(self._fwd, True):
            self._i = 0

    def seek_to_last(self) -> None:
        self._check()
        lo, hi = self._bounds()
        self._back = self._view.scan(False, lo, True, hi, False)
        self._fwd = None
        if self._load(self._back, False):
            self._i = len(self._keys) - 1

    def seek(self, target: Any) -> None:
        """Position at the first key >= target (invalid if none)."""
        self._check()
        target = _as_key(target, "target")
        lo, hi = self._bounds()
        if lo is not None:
            target = lo + target
        self._fwd = self._view.scan(True, target, True, hi, False)
        self._back = None
        if self._load(self._fwd, True):
            self._i = 0

    def seek_for_prev(self, target: Any) -> None:
        """Position at the last key <= target (invalid if none)."""
        self._check()
        target = _as_key(target, "target")
        lo, hi = self._bounds()
        if lo is not None:
            target = lo + target
        self._back = self._view.scan(False, lo, True, target, True)
        self._fwd = None
        if self._load(self._back, False):
            self._i = len(self._keys) - 1

    def next(self) -> None:
        self._check()
        if not (0 <= self._i < len(self._keys)):
            raise IteratorInvalidError("raw iterator is not valid")
        if self._i + 1 < len(self._keys):
            self._i += 1
            return
        lo, hi = self._bounds()
        scan = self._fwd
        if scan is None:
            scan = self._view.scan(True, self._keys[-1], False, hi, False)
        self._fwd, self._back = scan, None
        if self._load(scan, True):
            self._i = 0

    def prev(self) -> None:
        self._check()
        if not (0 <= self._i < len(self._keys)):
            raise IteratorInvalidError("raw iterator is not valid")
        if self._i > 0:
            self._i -= 1
            return
        lo, hi = self._bounds()
        scan = self._back
        if scan is None:
            scan = self._view.scan(False, lo, True, self._keys[0], False)
        self._back, self._fwd = scan, None
        if self._load(scan, False):
            self._i = len(self._keys) - 1

    def key(self) -> bytes:
        self._check()
        if not (0 <= self._i < len(self._keys)):
            raise IteratorInvalidError("raw iterator is not valid")
        return self._keys[self._i][self._strip:]

    def value(self) -> bytes:
        self._check()
        if not (0 <= self._i < len(self._keys)):
            raise IteratorInvalidError("raw iterator is not valid")
        return self._vals[self._i]

    def item(self) -> tuple[bytes, bytes]:
        return self.key(), self.value()

    # close, _invalidate, __exit__, __del__: _CursorLifecycle
    def _drop_buffered(self) -> None:
        self._keys, self._vals, self._i = [], [], -1

    def __enter__(self) -> "RawIterator":
        return self
