"""MemTable: the in-memory write buffer, readable while it is written.

Design (chosen for Python speed; every operation is a handful of C-level
dict/list operations):

* ``_table``: dict ``user_key -> versions``.  ``versions`` is one *entry*
  while the key has a single version (the common case) and becomes a list
  of entries, oldest first, on the second write.  An entry is one ``bytes``:
  ``u64le(seq << 8 | kind) || value`` -- the internal key's trailer followed
  by the value -- so a flush builds an internal key with one concatenation
  (``user_key + entry[:8]``), and an entry is no container for the cyclic
  garbage collector (a tuple per write made the collector's young
  generation fill every ~700 writes: ~25% of a put's time in a fill).
  ``get`` is one dict lookup plus a short backwards scan: O(1) expected.
* Order is kept lazily: a new user key is appended to ``_pending``; a reader
  that needs order (``run``) sorts the pending keys and merges them into
  ``_sorted`` (Timsort merges the two sorted runs in linear time), under a
  small lock that only readers take.  The merged list is a fresh object
  published by one assignment, so a reader holding the old list is unharmed.
  Insert is O(1) amortised; the first ordered read after m inserts costs
  O(n + m log m).
* Segments: a large write batch (``add_segment``, from ``DB.write``) skips
  the dict and is kept whole as a ``lsm._memseg.Segment`` -- its records in
  flat buffers with a hash index of their keys, built in C with no Python
  object per entry and nothing sorted.  ``_seg`` is ``(segments oldest
  first, lookup view or None until a get needs it)``, swapped as one
  value; the newest
  ``SEGMENT_FANOUT`` segments are concatenated into one whenever the oldest
  of them holds no more entries than the others together, so a memtable
  holds O(log n) segments and an entry is copied O(log n) times (in C).
  ``get`` consults the dict and then the segments (one C call over all of
  them) and returns the newer answer; ordered reads merge the segments'
  entries (sorted once per segment, on first use) into the dict's run.
* Range tombstones ``(start, end, seq)`` live in a separate list; ``get``
  ignores them (the caller consults ``range_tombstones`` /
  ``covering_tombstone_seq``), ``run`` interleaves them as kind-2 entries.
* ``run`` builds internal keys on demand.  A full run is cached (tagged with
  the entry count it was built at, so any later insert invalidates it); a
  frozen memtable therefore builds its run once and serves every ranged
  ``run`` by slicing.

Thread safety: one writer at a time (the DB serialises writers) and any
number of concurrent readers, relying on the atomicity of single list/dict
operations under the GIL.  The writer inserts an entry into ``_table`` before
announcing its key in ``_pending`` and bumps ``num_entries`` last, so a
reader sees either the whole entry or nothing of it at the point where it
looks; entries newer than a reader's sequence are filtered by the reader.

Size accounting (``approximate_size``): per entry ``len(key) + len(value) +
ENTRY_OVERHEAD`` -- close to the entry's encoded size in a table, which is
what ``write_buffer_size`` bounds.
"""

from __future__ import annotations

import struct
import threading
from array import array
from bisect import bisect_left
from itertools import chain
from operator import add as _add, itemgetter, or_ as _or
from typing import Any

from blockdev.errors import ArgumentTypeError, InvalidArgumentError
from lsm import _memseg
from lsm.dbformat import (
    KIND_RANGE_TOMBSTONE,
    KIND_TOMBSTONE,
    KIND_VALUE,
    MAX_SEQUENCE,
    internal_sort_key,
)

__all__ = ["MemTable", "ENTRY_OVERHEAD", "SEGMENT_FANOUT"]

ENTRY_OVERHEAD = 12       # 8-byte trailer + ~4 bytes of lengths per entry
SEGMENT_FANOUT = 16       # the newest segments concatenated at a time (module doc)
_PACK = struct.Struct("<Q").pack
_TRAILER = struct.Struct("<Q").unpack_from       # entry -> (seq << 8 | kind,)
_KIND = itemgetter(0)                              # batch item (kind, key, value)
_KEY = itemgetter(1)
_VALUE = itemgetter(2)
_HEAD = itemgetter(slice(None, 8))                 # entry -> trailer bytes
_TAIL = itemgetter(slice(8, None))                 # entry -> value
_Versions = Any           # bytes (one entry) | list[bytes] (entries, oldest first)
_FIRST = itemgetter(0)
_SECOND = itemgetter(1)
_chain_from = chain.from_iterable


def _pair_sort_key(pair: tuple[bytes, bytes]) -> tuple[bytes, int]:
    return internal_sort_key(pair[0])


def _bisect_internal(ikeys: list[bytes], target: tuple[bytes, int]) -> int:
    """First index whose internal key sorts >= target (an internal_sort_key).  O(log n)."""
    lo, hi = 0, len(ikeys)
    while lo < hi:
        mid = (lo + hi) // 2
        if internal_sort_key(ikeys[mid]) < target:
            lo = mid + 1
        else:
            hi = mid
    return lo


class MemTable:
    """Sorted write buffer of point entries and range tombstones (see module doc)."""

    __slots__ = ("_table", "_pending", "_sorted", "_lock", "_tombs", "_size", "_count",
                 "_first_seq", "_last_seq", "_frozen", "_cache", "_seg", "_seg_keys",
                 "_seg_run", "__weakref__")

    def __init__(self) -> None:
        self._table: dict[bytes, _Versions] = {}
        self._pending: list[bytes] = []
        self._sorted: list[bytes] = []
        self._lock = threading.Lock()
        self._tombs: list[tuple[bytes, bytes, int]] = []
        self._size = 0
        self._count = 0
        self._first_seq = 0
        self._last_seq = 0
        self._frozen = False
        self._cache: tuple[int, list[bytes], list[int], list[bytes], list[bytes]] | None = None
        self._seg: tuple[tuple[_memseg.Segment, ...], Any] | None = None
        self._seg_keys: tuple[Any, Any, list[bytes]] | None = None
        self._seg_run: tuple[int, list[bytes], list[bytes]] | None = None

    # -- writing (one writer at a time) ----------------------------------

    def add(self, seq: int, kind: int, key: bytes, value: bytes) -> None:
        """Insert one entry.  O(1) amortised.

        Requires: 0 <= seq <= 2**56-1, unique per user key; kind 0 (value
        b""), 1 or 2 (key = start, value = exclusive end, start < end);
        ``bytes`` key and value; the memtable not frozen.
        """
        if type(seq) is not int:
            raise ArgumentTypeError(f"seq must be an int, not {type(seq).__name__}")
        if not 0 <= seq <= MAX_SEQUENCE:
            raise InvalidArgumentError(f"seq out of range: {seq}")
        if type(key) is not bytes:
            raise ArgumentTypeError(f"key must be bytes, not {type(key).__name__}")
        if type(value) is not bytes:
            raise ArgumentTypeError(f"value must be bytes, not {type(value).__name__}")
        if kind == KIND_RANGE_TOMBSTONE:
            if not key < value:
                raise InvalidArgumentError("range tombstone needs start < end")
        elif kind != KIND_VALUE and kind != KIND_TOMBSTONE:
            raise InvalidArgumentError(f"unknown kind {kind!r}")
        if self._frozen:
            raise InvalidArgumentError("memtable is frozen")
        self._insert(seq, kind, key, value)

    def add_batch(self, seq: int, items: list[tuple[int, bytes, bytes]]) -> int:
        """Insert ``items`` (``WriteBatch.items()``, already validated) at
        ``seq, seq+1, ...``; return the next unused sequence.  O(len(items)).

        Requires: items as produced by ``WriteBatch``; sequences unused.
        """
        if self._frozen:
            raise InvalidArgumentError("memtable is frozen")
        if not items:
            return seq
        if type(seq) is not int or seq < 0 or seq + len(items) - 1 > MAX_SEQUENCE:
            raise InvalidArgumentError(f"seq out of range: {seq!r}")
        table = self._table
        pending = self._pending
        first = seq
        n = len(items)
        kinds = list(map(_KIND, items))
        if KIND_RANGE_TOMBSTONE not in kinds:
            # bulk path: every key new to the table and distinct in the batch
            # (checked with C-level set operations) -> one dict update
            keys = list(map(_KEY, items))
            if table.keys().isdisjoint(keys):
                values = list(map(_VALUE, items))
                base = seq << 8
                entries = list(map(_add, map(_PACK, map(_or, range(base, base + (n << 8), 256),
                                                        kinds)), values))
                before = len(table)
                table.update(zip(keys, entries))
                if len(table) - before == n:
                    pending.extend(keys)
                    self._size += (sum(map(len, keys)) + sum(map(len, values))
                                   + n * ENTRY_OVERHEAD)
                    if self._first_seq == 0 or first < self._first_seq:
                        self._first_seq = first
                    if seq + n - 1 > self._last_seq:
                        self._last_seq = seq + n - 1
                    self._count += n
                    return seq + n
                # a key repeats inside the batch: every key was new, so
                # removing them restores the table; the loop below applies
                # the versions one by one (readers filter by sequence)
                for key in keys:
                    table.pop(key, None)
        get = table.get
        pack = _PACK
        unpack = _TRAILER
        size = 0
        for kind, key, value in items:
            if kind != KIND_RANGE_TOMBSTONE:
                trailer = (seq << 8) | kind
                entry = pack(trailer) + value
                old = get(key)
                if old is None:
                    table[key] = entry
                    pending.append(key)
                elif type(old) is bytes and unpack(old)[0] < trailer:
                    table[key] = [old, entry]
                elif type(old) is list and unpack(old[-1])[0] < trailer:
                    old.append(entry)
                else:
                    self._insert_out_of_order(key, old, entry)
            else:
                self._tombs.append((key, value, seq))
            size += len(key) + len(value) + ENTRY_OVERHEAD
            seq += 1
        self._size += size
        if self._first_seq == 0 or first < self._first_seq:
            self._first_seq = first
        if seq - 1 > self._last_seq:
            self._last_seq = seq - 1
        self._count += len(items)
        return seq

    def add_segment(self, seq: int, kinds: bytes, packed: tuple) -> int:
        """Insert a batch of puts and deletes as one segment: ``kinds`` one
        byte per record (1 value, 0 tombstone with an empty value), keys and
        values as a packed run (``lsm._native.pack``), sequences ``seq,
        seq+1, ...``; return the next unused sequence.  O(n) in C, plus
        O(log n) amortised copies per entry when segments are concatenated.

        Requires: sequences above every sequence in the memtable; validated
        records (``WriteBatch``); the memtable not frozen.
        """
        if self._frozen:
            raise InvalidArgumentError("memtable is frozen")
        if type(seq) is not int or seq <= self._last_seq:
            raise InvalidArgumentError(f"segment sequence {seq!r} is not above the memtable's "
                                       f"last sequence {self._last_seq}")
        seg = _memseg.segment_build(seq, kinds, packed)
        old = self._seg
        segs = [*old[0], seg] if old is not None else [seg]
        k = SEGMENT_FANOUT
        while len(segs) >= k and segs[-k].n <= sum(x.n for x in segs[-k + 1:]):
            segs[-k:] = [_memseg.segments_concat(segs[-k:])]
        self._seg = (tuple(segs), None)      # the lookup view is built by the first get
        n = seg.n
        self._size += seg.key_bytes + seg.value_bytes + n * ENTRY_OVERHEAD
        if self._first_seq == 0:
            self._first_seq = seq
        self._last_seq = seq + n - 1
        self._count += n
        return seq + n

    def _insert(self, seq: int, kind: int, key: bytes, value: bytes) -> None:
        if kind != KIND_RANGE_TOMBSTONE:
            table = self._table
            trailer = (seq << 8) | kind     # kind < 256: trailer order = sequence order
            entry = _PACK(trailer) + value
            old = table.get(key)
            if old is None:
                table[key] = entry
                self._pending.append(key)
            elif type(old) is bytes and _TRAILER(old)[0] < trailer:
                table[key] = [old, entry]
            elif type(old) is list and _TRAILER(old[-1])[0] < trailer:
                old.append(entry)
            else:
                self._insert_out_of_order(key, old, entry)
        else:
            self._tombs.append((key, value, seq))
        self._size += len(key) + len(value) + ENTRY_OVERHEAD
        if self._first_seq == 0 or seq < self._first_seq:
            self._first_seq = seq
        if seq > self._last_seq:
            self._last_seq = seq
        self._count += 1

    def _insert_out_of_order(self, key: bytes, old: _Versions, entry: bytes) -> None:
        """Slow path: a version older than the newest one (copy-on-write)."""
        versions = [old] if type(old) is bytes else list(old)
        seqs = [_TRAILER(e)[0] >> 8 for e in versions]
        seq = _TRAILER(entry)[0] >> 8
        i = bisect_left(seqs, seq)
        if i < len(seqs) and seqs[i] == seq:
            raise InvalidArgumentError(f"sequence {seq} already used for this key")
        versions.insert(i, entry)
        self._table[key] = versions

    def freeze(self) -> None:
        """Make the memtable immutable (it is about to be flushed)."""
        self._frozen = True

    @property
    def frozen(self) -> bool:
        return self._frozen

    # -- reading (any thread) --------------------------------------------

    def get(self, user_key: bytes, read_seq: int) -> tuple[int, int, bytes] | None:
        """Newest point entry of ``user_key`` with seq <= read_seq, as
        ``(seq, kind, value)``; None if none.  Range tombstones are ignored.
        O(1) expected (+ versions newer than read_seq), plus O(s log n) in C
        over s segments."""
        seg = self._seg
        found = self._dict_get(user_key, read_seq)
        if seg is None:
            return found
        view = seg[1]
        if view is None:
            # first get since the last add_segment: build the view once (a
            # racing reader may build it too: same value, last one kept)
            view = _memseg.segments_view(seg[0])
            if self._seg is seg:
                self._seg = (seg[0], view)
        other = _memseg.segments_get(view, user_key, read_seq)
        if other is None or (found is not None and found[0] > other[0]):
            return found
        return other

    def _dict_get(self, user_key: bytes, read_seq: int) -> tuple[int, int, bytes] | None:
        try:
            v = self._table.get(user_key)
        except TypeError:
            v = None
        if v is None:
            if not isinstance(user_key, bytes):
                raise ArgumentTypeError(
                    f"user_key must be bytes, not {type(user_key).__name__}")
            return None
        if type(v) is bytes:
            t = _TRAILER(v)[0]
            return (t >> 8, t & 0xFF, v[8:]) if t >> 8 <= read_seq else None
        for e in reversed(v):
            t = _TRAILER(e)[0]
            if t >> 8 <= read_seq:
                return t >> 8, t & 0xFF, e[8:]
        return None

    def range_tombstones(self) -> list[tuple[bytes, bytes, int]]:
        """A copy of the range tombstones ``(start, end, seq)``.  O(t)."""
        return list(self._tombs)

    def covering_tombstone_seq(self, user_key: bytes, read_seq: int) -> int:
        """Highest seq <= read_seq of a range tombstone covering ``user_key``;
        0 if none.  O(t)."""
        best = 0
        for start, end, seq in self._tombs:
            if start <= user_key < end and best < seq <= read_seq:
                best = seq
        return best

    def _sorted_keys(self) -> list[bytes]:
        """Every distinct user key, sorted (a list replaced, never mutated)."""
        keys = self._dict_sorted_keys()
        seg = self._seg
        if seg is None:
            return keys
        cached = self._seg_keys
        if cached is not None and cached[0] is keys and cached[1] is seg:
            return cached[2]
        union = set(keys)
        for x in seg[0]:
            union.update(x.user_keys())
        merged = sorted(union)
        self._seg_keys = (keys, seg, merged)
        return merged

    def _dict_sorted_keys(self) -> list[bytes]:
        with self._lock:
            pending = self._pending
            n = len(pending)
            if n:
                chunk = pending[:n]
                del pending[:n]
                merged = self._sorted + chunk
                merged.sort()
                self._sorted = merged
            return self._sorted

    def _build(self, keys: list[bytes]) -> tuple[list[int], list[bytes], list[bytes]]:
        """Internal keys and values of ``keys`` (sorted user keys), newest first
        per key; plus the run offset of each user key.  O(entries).

        When every key has one version (fill workloads) the lists are built
        by ``map`` over the version tuples, with no per-entry Python loop."""
        table = self._table
        vers = list(map(table.__getitem__, keys))
        if set(map(type, vers)) <= {bytes}:
            return (list(range(len(keys) + 1)), list(map(_add, keys, map(_HEAD, vers))),
                    list(map(_TAIL, vers)))
        ikeys: list[bytes] = []
        values: list[bytes] = []
        offsets: list[int] = []
        add_k = ikeys.append
        add_v = values.append
        add_o = offsets.append
        for k, v in zip(keys, vers):
            add_o(len(ikeys))
            if type(v) is bytes:
                add_k(k + v[:8])
                add_v(v[8:])
            else:
                for e in reversed(v):
                    add_k(k + e[:8])
                    add_v(e[8:])
        add_o(len(ikeys))
        return offsets, ikeys, values

    def packed_entries(self) -> tuple[bytes, array, bytes, array]:
        """Every point entry as a packed run in *insertion* order of the user
        keys: ``(user keys, their lengths, entries, their lengths)`` where an
        entry is ``u64le(seq << 8 | kind) || value`` (a key with several
        versions contributes one entry per version).  Input of
        ``lsm._native.sort_entries`` / ``table_blocks`` (layout 1): a flush
        with no Python object per entry.  O(entries) in C-level builtins
        when every key has one version.

        Segment entries follow the dict's, segment by segment.

        Requires: the memtable frozen (nothing changes under the copy)."""
        if not self._frozen:
            raise InvalidArgumentError("packed_entries needs a frozen memtable")
        table = self._table
        ukeys = list(table)
        vers = list(table.values())
        if set(map(type, vers)) <= {bytes}:
            packed = (b"".join(ukeys), array("Q", map(len, ukeys)),
                      b"".join(vers), array("Q", map(len, vers)))
        else:
            keys: list[bytes] = []
            entries: list[bytes] = []
            for k, v in zip(ukeys, vers):
                if type(v) is bytes:
                    keys.append(k)
                    entries.append(v)
                else:
                    keys.extend([k] * len(v))
                    entries.extend(v)
            packed = (b"".join(keys), array("Q", map(len, keys)),
                      b"".join(entries), array("Q", map(len, entries)))
        seg = self._seg
        if seg is None:
            return packed
        kparts, klens, eparts, elens = [packed[0]], packed[1], [packed[2]], packed[3]
        for x in seg[0]:
            kparts.append(x.keys)
            eparts.append(x.ents)
            klens += x.klens
            elens += x.elens
        return b"".join(kparts), klens, b"".join(eparts), elens

    def point_run(self) -> tuple[list[bytes], list[bytes]]:
        """Every point entry (no range tombstones) as sorted internal
        ``(keys, values)`` lists -- what a flush writes to the data blocks
        (the tombstones come from ``range_tombstones()``).  The lists are the
        cached full run: callers must not mutate them.  O(entries) the first
        time after a write, O(1) afterwards.

        Requires: the memtable frozen (so the cache stays valid)."""
        if not self._frozen:
            raise InvalidArgumentError("point_run needs a frozen memtable")
        count = self._count
        cache = self._cache
        if cache is None or cache[0] != count:
            keys = self._dict_sorted_keys()
            offsets, ikeys, values = self._build(keys)
            cache = (count, keys, offsets, ikeys, values)
            self._cache = cache
        if self._seg is not None:
            return self._with_segments(cache[3], cache[4], None, None)
        return cache[3], cache[4]

    def run(self, start: bytes | None = None, stop: bytes | None = None
            ) -> tuple[list[bytes], list[bytes]]:
        """A consistent copy of the entries with user key in ``[start, stop)``
        as sorted internal ``(keys, values)``, every range tombstone that
        overlaps the range included (unclipped) as a kind-2 entry.  Input for
        ``lsm._native.merge``.  O(entries in range) (+ O(n + m log m) after m
        new keys; a frozen or unchanged memtable slices a cached full run).
        """
        if start is not None and not isinstance(start, bytes):
            raise ArgumentTypeError(f"start must be bytes or None, not {type(start).__name__}")
        if stop is not None and not isinstance(stop, bytes):
            raise ArgumentTypeError(f"stop must be bytes or None, not {type(stop).__name__}")
        count = self._count
        cache = self._cache
        if cache is None or cache[0] != count:
            keys = self._dict_sorted_keys()
            if self._frozen or (start is None and stop is None):
                offsets, ikeys, values = self._build(keys)
                cache = (count, keys, offsets, ikeys, values)
                self._cache = cache
            else:
                lo = 0 if start is None else bisect_left(keys, start)
                hi = len(keys) if stop is None else bisect_left(keys, stop)
                if hi < lo:
                    hi = lo
                _, ikeys, values = self._build(keys[lo:hi])
                return self._with_tombstones(*self._with_segments(ikeys, values, start, stop),
                                             start, stop)
        _, keys, offsets, ikeys, values = cache
        if start is None and stop is None:
            ikeys, values = list(ikeys), list(values)
        else:
            lo = 0 if start is None else bisect_left(keys, start)
            hi = len(keys) if stop is None else bisect_left(keys, stop)
            if hi < lo:
                hi = lo
            a, b = offsets[lo], offsets[hi]
            ikeys, values = ikeys[a:b], values[a:b]
        return self._with_tombstones(*self._with_segments(ikeys, values, start, stop),
                                     start, stop)

    def _with_segments(self, ikeys: list[bytes], values: list[bytes],
                       start: bytes | None, stop: bytes | None
                       ) -> tuple[list[bytes], list[bytes]]:
        """The dict's entries in ``[start, stop)`` (``ikeys``/``values``)
        merged with the segments' entries in that range, internal order.
        O(m log m) for m entries when there are segments (a frozen
        memtable's full run is built once); O(1) otherwise."""
        seg = self._seg
        if seg is None:
            return ikeys, values
        full = start is None and stop is None
        count = self._count
        if full and self._frozen:
            cached = self._seg_run
            if cached is not None and cached[0] == count:
                return list(cached[1]), list(cached[2])
        keys_parts = [ikeys]
        value_parts = [values]
        for x in seg[0]:
            k, v = x.items(start, stop)
            keys_parts.append(k)
            value_parts.append(v)
        pairs = sorted(zip(_chain_from(keys_parts), _chain_from(value_parts)),
                       key=_pair_sort_key)
        ikeys = list(map(_FIRST, pairs))
        values = list(map(_SECOND, pairs))
        if full and self._frozen:
            self._seg_run = (count, ikeys, values)
            return list(ikeys), list(values)
        return ikeys, values

    def _with_tombstones(self, ikeys: list[bytes], values: list[bytes],
                         start: bytes | None, stop: bytes | None
                         ) -> tuple[list[bytes], list[bytes]]:
        tombs = [t for t in list(self._tombs)
                 if (stop is None or t[0] < stop) and (start is None or t[1] > start)]
        if not tombs:
            return ikeys, values
        pack = _PACK
        extra = sorted(((s + pack((seq << 8) | KIND_RANGE_TOMBSTONE), e) for s, e, seq in tombs),
                       key=lambda kv: internal_sort_key(kv[0]))
        if len(extra) <= 32:
            for k, v in extra:
                i = _bisect_internal(ikeys, internal_sort_key(k))
                ikeys.insert(i, k)
                values.insert(i, v)
            return ikeys, values
        pairs = sorted(list(zip(ikeys, values)) + extra, key=lambda kv: internal_sort_key(kv[0]))
        return [k for k, _ in pairs], [v for _, v in pairs]

    # -- accounting ------------------------------------------------------

    @property
    def approximate_size(self) -> int:
        """Sum over entries of key + value + ENTRY_OVERHEAD bytes.  O(1)."""
        return self._size

    @property
    def num_entries(self) -> int:
        """Entries added (point entries and range tombstones).  O(1)."""
        return self._count

    @property
    def first_seq(self) -> int:
        """Smallest sequence added; 0 while empty."""
        return self._first_seq

    @property
    def last_seq(self) -> int:
        """Largest sequence added; 0 while empty."""
        return self._last_seq

    def __len__(self) -> int:
        return self._count

    def _check(self) -> None:
        """Assert the invariants (O(n log n)); call with no concurrent writer."""
        keys = self._dict_sorted_keys()
        assert all(keys[i] < keys[i + 1] for i in range(len(keys) - 1)), "sorted keys"
        assert set(keys) == set(self._table), "every key indexed exactly once"
        size = count = 0
        seqs: list[int] = []
        seg = self._seg
        if seg is not None:
            segs = seg[0]
            assert segs and all(type(x) is _memseg.Segment for x in segs)
            for i, x in enumerate(segs):
                x._check()
                assert i == 0 or segs[i - 1].max_seq < x.min_seq, "segments in sequence order"
                size += x.key_bytes + x.value_bytes + x.n * ENTRY_OVERHEAD
                count += x.n
                for j in range(x.n):
                    seqs.append(_TRAILER(x.ents, x.eoffs[j])[0] >> 8)
            union = set(keys)
            for x in segs:
                union.update(x.user_keys())
            assert self._sorted_keys() == sorted(union), "sorted keys include the segments'"
        for k, v in self._table.items():
            versions = [v] if type(v) is bytes else v
            assert type(v) is bytes or len(v) >= 2
            decoded = []
            for e in versions:
                assert type(e) is bytes and len(e) >= 8
                t = _TRAILER(e)[0]
                decoded.append((t >> 8, t & 0xFF, e[8:]))
            versions = decoded
            for i, (seq, kind, value) in enumerate(versions):
                assert kind in (KIND_VALUE, KIND_TOMBSTONE)
                assert kind == KIND_VALUE or value == b""
                assert i == 0 or versions[i - 1][0] < seq, "versions oldest first"
                size += len(k) + len(value) + ENTRY_OVERHEAD
                count += 1
                seqs.append(seq)
        for s, e, seq in self._tombs:
            assert s < e
            size += len(s) + len(e) + ENTRY_OVERHEAD
            count += 1
            seqs.append(seq)
        assert size == self._size and count == self._count
        assert self._first_seq == (min(seqs) if seqs else 0)
        assert self._last_seq == (max(seqs) if seqs else 0)
