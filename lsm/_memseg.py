"""Memtable segments: a large write batch kept whole, hash-indexed.

A write batch inserted entry by entry into the memtable's dict costs two
Python objects and a dict insert per entry -- about half a microsecond of
GIL-held work, most of a batched write's cost.  ``MemTable.add_segment``
instead keeps a batch of many records as one ``Segment``: its records in
batch (= sequence) order in flat buffers plus a hash index of its user keys,
with no Python object per entry and nothing sorted on the write path (a
flush sorts the whole memtable once, natively)::

    keys   user keys back to back, in sequence order
    klens  array('Q'): key lengths;   koffs  array('Q'), n + 1 key offsets
    ents   entries back to back: u64le(seq << 8 | kind) || value (a bytes-like
           buffer: ``bytes``, or the native build's buffer, whose slices are bytes)
    elens  array('Q'): entry lengths; eoffs  array('Q'), n + 1 entry offsets
    table  array('Q') of cap slots (cap a power of two >= 2n): 0 empty, else
           (XXH64(key) >> 32) << 32 | (i + 1); linear probing from slot
           XXH64(key) & (cap - 1), entries inserted in index order

In memory only; nothing here is on disk.

Functions (C in native/memtab.c, GIL released; the twins below are the
reference, and ``LSM_PURE=1`` selects them):

``segment_build(seq, kinds, packed)``
    a batch -> one Segment.  O(n).
``segments_concat(segments)``
    adjacent segments -> one (the memtable bounds how many it holds).  O(N).
``segments_view(segments)`` / ``segments_get(view, key, read_seq)``
    the newest entry of ``key`` with sequence <= ``read_seq`` over segments
    given oldest first, whose sequence ranges ascend (batches are applied in
    sequence order).  The view (native pointer arrays) is built once per
    segment list.  O(s) expected.
``batch_encode_packed(seq, kinds, packed)``
    the WAL payload of the same batch (``lsm.batch`` encoding, byte for
    byte ``WriteBatch.encode``), from the same packed columns.  O(bytes).

Segments are immutable values: the memtable swaps its tuple of segments as a
unit, so a reader holding the old tuple is unharmed.
"""

from __future__ import annotations

import os
import struct
import warnings
from array import array
from bisect import bisect_left
from itertools import accumulate
from typing import Any, Optional, Sequence

from blockdev.errors import ArgumentTypeError, InvalidArgumentError
from lsm import _native
from lsm._twins import check_packed
from lsm.dbformat import MAX_SEQUENCE

__all__ = ["Segment", "segment_build", "segments_concat", "segments_view", "segments_get",
           "batch_encode_packed", "batch_encode_packed_view", "SEGMENT_FUNCTIONS", "SEGMENT_C_FUNCTIONS", "implementation"]

SEGMENT_FUNCTIONS = ("segment_build", "segments_concat", "segments_view", "segments_get",
                     "batch_encode_packed", "batch_encode_packed_view")
SEGMENT_C_FUNCTIONS = ("lsm_segment_entries", "lsm_segment_index", "lsm_segments_get",
                       "lsm_batch_encode")

_U64 = struct.Struct("<Q")
_ERR_INVALID = -92          # LSM_ERR_INVALID (lsm_core.h)


class Segment:
    """One batch (or adjacent batches) of memtable entries (module docstring).

    ``n`` entries, in sequence order; ``min_seq``/``max_seq`` their sequence
    range; ``key_bytes``/``value_bytes`` the user key and value bytes (the
    size accounting of ``MemTable``); ``tombstones`` the kind-0 entries.
    """

    __slots__ = ("keys", "klens", "koffs", "ents", "elens", "eoffs", "table", "n",
                 "min_seq", "max_seq", "tombstones", "_ukeys", "_sorted")

    def __init__(self, keys: bytes, klens: array, koffs: array, ents: bytes, elens: array,
                 eoffs: array, table: array, min_seq: int, max_seq: int,
                 tombstones: int) -> None:
        self.keys = keys
        self.klens = klens
        self.koffs = koffs
        self.ents = ents
        self.elens = elens
        self.eoffs = eoffs
        self.table = table
        self.n = len(klens)
        self.min_seq = min_seq
        self.max_seq = max_seq
        self.tombstones = tombstones
        self._ukeys: Optional[list[bytes]] = None
        self._sorted: Optional[tuple[list[int], list[bytes]]] = None

    @property
    def key_bytes(self) -> int:
        return len(self.keys)

    @property
    def value_bytes(self) -> int:
        return len(self.ents) - 8 * self.n

    def user_keys(self) -> list[bytes]:
        """Every entry's user key, in sequence order (cached; do not mutate).  O(n) once."""
        uks = self._ukeys
        if uks is None:
            keys, offs = self.keys, self.koffs
            uks = [keys[a:b] for a, b in zip(offs, offs[1:])]
            self._ukeys = uks
        return uks

    def _order(self) -> tuple[list[int], list[bytes]]:
        """Entry indices in internal order (user key ascending, sequence
        descending) and their user keys.  Cached; O(n log n) once."""
        srt = self._sorted
        if srt is None:
            uks = self.user_keys()
            order = sorted(range(self.n), key=lambda i: (uks[i], -i))
            srt = (order, [uks[i] for i in order])
            self._sorted = srt
        return srt

    def items(self, start: bytes | None, stop: bytes | None
              ) -> tuple[list[bytes], list[bytes]]:
        """Internal keys and values of the entries with user key in
        ``[start, stop)`` (None: unbounded), in internal order.
        O(log n + entries returned) after the first call's sort."""
        order, suks = self._order()
        lo = 0 if start is None else bisect_left(suks, start)
        hi = self.n if stop is None else bisect_left(suks, stop)
        if hi <= lo:
            return [], []
        ents, eo = self.ents, self.eoffs
        idx = order[lo:hi]
        ikeys = [k + ents[eo[i]:eo[i] + 8] for k, i in zip(suks[lo:hi], idx)]
        values = [ents[eo[i] + 8:eo[i + 1]] for i in idx]
        return ikeys, values

    def _check(self) -> None:
        """Assert the invariants: offsets, sequence order, the hash index.  O(n)."""
        from lsm._twins import checksum
        n = self.n
        assert n >= 1 and len(self.elens) == n
        assert list(self.koffs) == list(accumulate(self.klens, initial=0))
        assert list(self.eoffs) == list(accumulate(self.elens, initial=0))
        assert self.koffs[-1] == len(self.keys) and self.eoffs[-1] == len(self.ents)
        cap = len(self.table)
        assert cap >= 2 * n and cap & (cap - 1) == 0
        assert sum(1 for v in self.table if v) == n
        ents, eo = self.ents, self.eoffs
        prev = -1
        tombs = 0
        for i, key in enumerate(self.user_keys()):
            assert self.elens[i] >= 8
            t = _U64.unpack_from(ents, eo[i])[0]
            seq, kind = t >> 8, t & 0xFF
            assert kind in (0, 1) and self.min_seq <= seq <= self.max_seq
            assert kind == 1 or self.elens[i] == 8
            assert seq > prev, "sequence order"
            prev = seq
            tombs += kind == 0
            h = checksum(key)
            slot = h & (cap - 1)
            while self.table[slot] != ((h >> 32) << 32) | (i + 1):
                assert self.table[slot], f"entry {i} missing from the hash index"
                slot = (slot + 1) & (cap - 1)
        assert tombs == self.tombstones


# ------------------------------------------------------------------- twins

def _check_build_args(seq: Any, kinds: Any, packed: Any) -> tuple:
    """Validate ``segment_build``'s arguments; return the packed run."""
    if type(seq) is not int:
        raise ArgumentTypeError(f"seq must be an int, not {type(seq).__name__}")
    if not isinstance(kinds, bytes):
        raise ArgumentTypeError(f"kinds must be bytes, not {type(kinds).__name__}")
    kbuf, klens, vbuf, vlens = check_packed(packed)
    n = len(kinds)
    if len(klens) != n or len(vlens) != n:
        raise InvalidArgumentError(f"kinds, keys and values differ in length "
                                   f"({n}, {len(klens)}, {len(vlens)})")
    if n == 0:
        raise InvalidArgumentError("a segment needs at least one record")
    if seq < 0 or seq + n - 1 > MAX_SEQUENCE:
        raise InvalidArgumentError(f"seq {seq} out of range for {n} records")
    if sum(klens) != len(kbuf) or sum(vlens) != len(vbuf):
        raise InvalidArgumentError("lengths do not match the packed buffers")
    for i, k in enumerate(kinds):
        if k > 1:
            raise InvalidArgumentError(f"record {i}: kind {k} is not 0 (tombstone) or 1 (value)")
        if k == 0 and vlens[i]:
            raise InvalidArgumentError(f"record {i}: a tombstone has no value")
    return kbuf, klens, vbuf, vlens


def _table_cap(n: int) -> int:
    """Slots of a segment's hash index: the power of two >= 2n (at least 2)."""
    return 1 << max(1, (2 * n - 1).bit_length())


def _index_twin(keys: bytes, klens: array, elens: array) -> tuple[array, array, array]:
    """``(koffs, eoffs, table)`` of a segment (module docstring).  O(n)."""
    from lsm._twins import checksum
    n = len(klens)
    koffs = array("Q", accumulate(klens, initial=0))
    eoffs = array("Q", accumulate(elens, initial=0))
    cap = _table_cap(n)
    mask = cap - 1
    table = array("Q", bytes(8 * cap))
    for i in range(n):
        h = checksum(keys[koffs[i]:koffs[i + 1]])
        slot = h & mask
        while table[slot]:
            slot = (slot + 1) & mask
        table[slot] = ((h >> 32) << 32) | (i + 1)
    return koffs, eoffs, table


def _segment_build_twin(seq: int, kinds: bytes, packed: tuple) -> Segment:
    """A batch of records ``kinds[i]`` (0 tombstone, 1 value) with keys and
    values in ``packed`` (``lsm._twins.pack``) at sequences ``seq, seq+1,
    ...`` as one Segment.  Requires: ``n >= 1``; tombstones' values empty.
    O(n)."""
    kbuf, klens, vbuf, vlens = _check_build_args(seq, kinds, packed)
    n = len(kinds)
    pack = _U64.pack
    voff = list(accumulate(vlens, initial=0))
    ents = b"".join([pack(((seq + i) << 8) | kinds[i]) + vbuf[voff[i]:voff[i + 1]]
                     for i in range(n)])
    elens = array("Q", [8 + v for v in vlens])
    koffs, eoffs, table = _index_twin(kbuf, klens, elens)
    return Segment(kbuf, array("Q", klens), koffs, ents, elens, eoffs, table, seq,
                   seq + n - 1, n - sum(kinds))


def _segments_check(segments: Any) -> tuple:
    segs = tuple(segments)
    if any(type(s) is not Segment for s in segs):
        raise ArgumentTypeError("segments must be Segment objects")
    return segs


def _segments_view_twin(segments: Sequence[Segment]) -> tuple:
    """The lookup view of ``segments`` (oldest first).  O(s)."""
    return _segments_check(segments)


def _segments_get_twin(view: tuple, key: bytes, read_seq: int
                       ) -> tuple[int, int, bytes] | None:
    """Newest ``(seq, kind, value)`` of user key ``key`` with seq <=
    ``read_seq`` over the view's segments (newest segment first); None if
    none.  O(s) expected."""
    from lsm._twins import checksum
    if type(key) is not bytes:
        raise ArgumentTypeError(f"key must be bytes, not {type(key).__name__}")
    h = checksum(key)
    tag = (h >> 32) << 32
    for seg in reversed(view):
        table, keys, ko, ents, eo = seg.table, seg.keys, seg.koffs, seg.ents, seg.eoffs
        mask = len(table) - 1
        slot = h & mask
        best = None
        while table[slot]:
            v = table[slot]
            slot = (slot + 1) & mask
            if v & 0xFFFFFFFF00000000 != tag:
                continue
            i = (v & 0xFFFFFFFF) - 1
            if keys[ko[i]:ko[i + 1]] != key:
                continue
            t = _U64.unpack_from(ents, eo[i])[0]
            if t >> 8 <= read_seq and (best is None or t > best[0]):
                best = (t, i)
        if best is not None:
            t, i = best
            return t >> 8, t & 0xFF, ents[eo[i] + 8:eo[i + 1]]
    return None


def _concat_parts(segments: Any) -> tuple:
    segs = _segments_check(segments)
    if not segs:
        raise InvalidArgumentError("nothing to concatenate")
    for a, b in zip(segs, segs[1:]):
        if a.max_seq >= b.min_seq:
            raise InvalidArgumentError("segments must be adjacent, oldest first")
    keys = b"".join([x.keys for x in segs])
    ents = b"".join([x.ents for x in segs])
    klens = array("Q")
    elens = array("Q")
    for x in segs:
        klens += x.klens
        elens += x.elens
    return segs, keys, klens, ents, elens


def _segments_concat_twin(segments: Sequence[Segment]) -> Segment:
    """``segments`` (oldest first, sequence ranges ascending) as one Segment.  O(N)."""
    segs, keys, klens, ents, elens = _concat_parts(segments)
    koffs, eoffs, table = _index_twin(keys, klens, elens)
    return Segment(keys, klens, koffs, ents, elens, eoffs, table, segs[0].min_seq,
                   segs[-1].max_seq, sum(x.tombstones for x in segs))


def _batch_encode_packed_twin(seq: int, kinds: bytes, packed: tuple) -> bytes:
    """The WAL payload of the batch ``segment_build`` takes (same arguments,
    same validation): ``lsm._twins.batch_encode`` of its records.  O(bytes)."""
    from lsm import _twins
    kbuf, klens, vbuf, vlens = _check_build_args(seq, kinds, packed)
    keys = _twins.unpack_items(kbuf, klens)
    values = _twins.unpack_items(vbuf, vlens)
    return _twins.batch_encode(seq, list(zip(kinds, keys, values)))


# ---------------------------------------------------------- C bindings

class _View:
    """Native pointer arrays over a tuple of segments (kept alive here)."""

    __slots__ = ("segs", "keep", "keys", "koffs", "ents", "eoffs", "tables", "caps", "n")

    def __init__(self, ffi: Any, segs: tuple) -> None:
        from_buffer = ffi.from_buffer
        self.segs = segs
        self.n = len(segs)
        kb = [from_buffer(s.keys) for s in segs]
        eb = [from_buffer(s.ents) for s in segs]
        ko = [from_buffer("uint64_t[]", s.koffs) for s in segs]
        eo = [from_buffer("uint64_t[]", s.eoffs) for s in segs]
        tb = [from_buffer("uint64_t[]", s.table) for s in segs]
        self.keep = (kb, eb, ko, eo, tb)
        self.keys = ffi.new("char *[]", kb or 1)
        self.ents = ffi.new("char *[]", eb or 1)
        self.koffs = ffi.new("uint64_t *[]", ko or 1)
        self.eoffs = ffi.new("uint64_t *[]", eo or 1)
        self.tables = ffi.new("uint64_t *[]", tb or 1)
        self.caps = ffi.new("uint64_t[]", [len(s.table) for s in segs] or 1)


def _make_c(api: Any) -> dict:
    ffi, lib = api.ffi, api.lib
    _native.require_functions(lib, SEGMENT_C_FUNCTIONS)
    c_entries = lib.lsm_segment_entries
    c_index = lib.lsm_segment_index
    c_get = lib.lsm_segments_get
    c_batch_encode = lib.lsm_batch_encode
    from_buffer = ffi.from_buffer
    alloc = ffi.new_allocator(should_clear_after_alloc=False)
    unpack = ffi.unpack
    out3 = ffi.new("uint64_t[3]")
    zero = array("Q", [0])

    def index(keys: bytes, klens: array, ents: bytes, elens: array
              ) -> tuple[array, array, array]:
        n = len(klens)
        cap = _table_cap(n)
        koffs = zero * (n + 1)
        eoffs = zero * (n + 1)
        table = zero * cap
        rc = c_index(n, keys, len(keys), from_buffer("uint64_t[]", klens), len(ents),
                     from_buffer("uint64_t[]", elens), from_buffer("uint64_t[]", koffs),
                     from_buffer("uint64_t[]", eoffs), from_buffer("uint64_t[]", table), cap)
        if rc < 0:
            raise RuntimeError(f"lsm_segment_index returned {rc}")   # a bug, not bad input
        return koffs, eoffs, table

    def fast_ok(seq: Any, kinds: Any, packed: Any) -> bool:
        if not (type(seq) is int and type(kinds) is bytes and type(packed) is tuple
                and len(packed) == 4):
            return False
        kbuf, klens, vbuf, vlens = packed
        n = len(kinds)
        return (type(kbuf) is bytes and type(vbuf) is bytes and type(klens) is array
                and type(vlens) is array and klens.typecode == "Q" and vlens.typecode == "Q"
                and len(klens) == n and len(vlens) == n and n > 0 and 0 <= seq
                and seq + n - 1 <= MAX_SEQUENCE)

    def segment_build(seq: int, kinds: bytes, packed: tuple) -> Segment:
        """See ``_segment_build_twin``."""
        if not fast_ok(seq, kinds, packed):
            _check_build_args(seq, kinds, packed)
        kbuf, klens, vbuf, vlens = packed
        n = len(kinds)
        size = len(vbuf) + 8 * n
        ents = alloc("char[]", size)             # not cleared: C writes every byte
        elens = zero * n
        rc = c_entries(seq, n, kinds, vbuf, len(vbuf), from_buffer("uint64_t[]", vlens),
                       ents, from_buffer("uint64_t[]", elens))
        if rc < 0:
            _check_build_args(seq, kinds, packed)      # raises the reference error
            raise RuntimeError(f"lsm_segment_entries returned {rc} on arguments the "
                               "twin accepts")         # a bug, not bad input
        # the entries stay in the C buffer (a cffi buffer: slices are bytes,
        # len/join/struct/from_buffer work) -- no copy into a bytes object
        ents_b = ffi.buffer(ents, size)
        try:
            koffs, eoffs, table = index(kbuf, klens, ents_b, elens)
        except RuntimeError:
            _check_build_args(seq, kinds, packed)      # key lengths: the reference error
            raise
        return Segment(kbuf, array("Q", klens), koffs, ents_b, elens, eoffs, table, seq,
                       seq + n - 1, n - kinds.count(1))

    def segments_concat(segments: Sequence[Segment]) -> Segment:
        """See ``_segments_concat_twin``."""
        segs, keys, klens, ents, elens = _concat_parts(segments)
        koffs, eoffs, table = index(keys, klens, ents, elens)
        return Segment(keys, klens, koffs, ents, elens, eoffs, table, segs[0].min_seq,
                       segs[-1].max_seq, sum(x.tombstones for x in segs))

    def segments_view(segments: Sequence[Segment]) -> _View:
        """See ``_segments_view_twin``."""
        return _View(ffi, _segments_check(segments))

    def segments_get(view: _View, key: bytes, read_seq: int) -> tuple[int, int, bytes] | None:
        """See ``_segments_get_twin``."""
        if type(key) is not bytes:
            raise ArgumentTypeError(f"key must be bytes, not {type(key).__name__}")
        if type(view) is not _View:
            raise ArgumentTypeError("view must come from segments_view")
        if not view.n or not c_get(view.n, view.keys, view.koffs, view.ents, view.eoffs,
                                   view.tables, view.caps, key, len(key), read_seq, out3):
            return None
        seg = view.segs[out3[0]]
        i = out3[1]
        t = out3[2]
        eo = seg.eoffs
        return t >> 8, t & 0xFF, seg.ents[eo[i] + 8:eo[i + 1]]

    def encode(seq: int, kinds: bytes, packed: tuple) -> tuple[Any, int]:
        if not (fast_ok(seq, kinds, packed) and b"\x02" not in kinds
                and (b"\x00" not in kinds or _tombstones_empty(kinds, packed[3]))
                and sum(packed[1]) == len(packed[0]) and sum(packed[3]) == len(packed[2])):
            _check_build_args(seq, kinds, packed)
        kbuf, klens, vbuf, vlens = packed
        n = len(kinds)
        cap = 12 + 11 * n + len(kbuf) + len(vbuf)
        out = alloc("char[]", cap)               # not cleared: C writes the rc bytes
        rc = c_batch_encode(seq, n, kinds, kbuf, len(kbuf), from_buffer("uint64_t[]", klens),
                            vbuf, len(vbuf), from_buffer("uint64_t[]", vlens), out, cap)
        if rc < 0:
            _check_build_args(seq, kinds, packed)      # raises the reference error
            raise RuntimeError(f"lsm_batch_encode returned {rc} on arguments the "
                               "twin accepts")         # a bug, not bad input
        return out, rc

    def batch_encode_packed(seq: int, kinds: bytes, packed: tuple) -> bytes:
        """See ``_batch_encode_packed_twin``."""
        out, rc = encode(seq, kinds, packed)
        return unpack(out, rc)

    def batch_encode_packed_view(seq: int, kinds: bytes, packed: tuple) -> memoryview:
        """``batch_encode_packed`` as a read-only view of the native output
        buffer (no copy into a bytes object; the DB writes it to the WAL)."""
        out, rc = encode(seq, kinds, packed)
        return memoryview(ffi.buffer(out, rc)).toreadonly()

    return {"segment_build": segment_build, "segments_concat": segments_concat,
            "segments_view": segments_view, "segments_get": segments_get,
            "batch_encode_packed": batch_encode_packed,
            "batch_encode_packed_view": batch_encode_packed_view}


def _tombstones_empty(kinds: bytes, vlens: array) -> bool:
    return all(vlens[i] == 0 for i, k in enumerate(kinds) if k == 0)


def c_functions() -> Optional[dict]:
    """The C-backed functions (ignoring ``LSM_PURE``), or None when the
    extension is missing or lacks them."""
    api = _native.c_api()
    if api is None:
        return None
    try:
        return _make_c(api)
    except ImportError as exc:
        if _native.implementation == "native" and os.environ.get("LSM_REQUIRE_NATIVE") == "1":
            raise
        if _native.implementation == "native":
            warnings.warn(f"superdisk-lsm: {exc}; memtable segments use the twins",
                          RuntimeWarning, stacklevel=2)
        return None


def _batch_encode_packed_view_twin(seq: int, kinds: bytes, packed: tuple) -> memoryview:
    """``batch_encode_packed`` as a read-only memoryview.  O(bytes)."""
    return memoryview(_batch_encode_packed_twin(seq, kinds, packed))


TWINS = {"segment_build": _segment_build_twin, "segments_concat": _segments_concat_twin,
         "segments_view": _segments_view_twin, "segments_get": _segments_get_twin,
         "batch_encode_packed": _batch_encode_packed_twin,
         "batch_encode_packed_view": _batch_encode_packed_view_twin}
_c = c_functions() if _native.implementation == "native" else None
_impl = _c if _c is not None else TWINS
implementation: str = "native" if _c is not None else "python"

segment_build = _impl["segment_build"]
segments_concat = _impl["segments_concat"]
segments_view = _impl["segments_view"]
segments_get = _impl["segments_get"]
batch_encode_packed = _impl["batch_encode_packed"]
batch_encode_packed_view = _impl["batch_encode_packed_view"]
