"""GetPlan: the table side of ``DB.get`` as one native call per lookup.

Design.  A ``GetPlan`` is built once per ``Version`` (lazily, by the first
get that sees the Version) and shared by every get on it.  It holds the
open ``TableReader`` of every file of the Version, in search order (level 0
newest first, then each deeper level in key order), each table's probe blob
(``TableReader.probe_blob``: pinned index keys and trailers, bloom filter,
file extent; layout in the read-path section of ``lsm/_twins.py``), and the
cffi pointer array over those blobs plus the group array (level 0: probe
every file; deeper levels: one file by binary search).

``get(user_key, read_seq)`` makes one ``lsm_tables_probe`` call (extents,
bloom filters and index searches of every candidate table, in C) and then,
for the candidates in search order, ``TableReader.lookup_block`` (one cache
probe and one ``lsm_block_get``) until one holds the key: a get that finds
its key in the first candidate costs two native calls, where the per-table
path costs one bloom call per candidate table plus the lookup.

A plan is usable (``ok``) only with the native core, when every table's
index is pinned, no table holds range tombstones (their coverage is checked
per table by the DB's general path) and the Version has at most
``max_tables`` tables (the plan keeps every reader open, so it must stay
within the table cache's bound).  Otherwise ``ok`` is False and the DB uses
its per-table path.  A plan is immutable after construction and safe to
share between threads (pointer arrays are read-only for C; per-call output
buffers come from a pool, one call at a time).
"""

from __future__ import annotations

from array import array
from typing import Any, Callable

from blockdev.errors import CorruptionError, Error
from lsm import _native as N
from lsm._twins import PROBE_ERRORS as _PROBE_ERRORS, probe_corruption as _probe_corruption
from lsm.version import is_sentinel

__all__ = ["GetPlan"]

_API = N.c_api() if N.implementation == "native" else None
_c_probe = getattr(_API.lib, "lsm_tables_probe", None) if _API is not None else None
_unpack = _API.ffi.unpack if _API is not None else None


class GetPlan:
    """The probe plan of one Version (see the module docstring).

    Requires: ``table_get(number)`` returns the open reader of a file of
    ``version`` (the DB's table cache)."""

    __slots__ = ("version", "ok", "readers", "indexes", "blobs", "groups", "ntabs",
                 "_ptrs", "_keep", "_lens", "_cgroups", "_pool")

    def __init__(self, version: Any, table_get: Callable[[int], Any], max_tables: int) -> None:
        self.version = version
        self.ok = False
        self.readers: list = []
        self.indexes: list = []
        self.blobs: list[bytes] = []
        self.groups: list[tuple[int, int]] = []
        self.ntabs = 0
        self._pool: list = []
        if _c_probe is None:
            return
        files = [f for level in version.levels for f in level]
        if not files or len(files) > max_tables:
            return
        try:
            for lv, level in enumerate(version.levels):
                if not level:
                    continue
                self.groups.append((0 if lv == 0 else 1, len(level)))
                for f in level:
                    t = table_get(f.number)
                    if t.range_tombstones:
                        return
                    blob = t.probe_blob(f.smallest[:-8], f.largest[:-8], is_sentinel(f.largest))
                    if blob is None:
                        return
                    self.readers.append(t)
                    self.indexes.append(t._index())
                    self.blobs.append(blob)
        except Error:
            return      # e.g. a damaged table: the per-table path reports it when read
        ffi = _API.ffi
        n = self.ntabs = len(self.blobs)
        self._keep = [ffi.from_buffer(b) for b in self.blobs]
        self._ptrs = ffi.new("char *[]", n)
        for i, p in enumerate(self._keep):
            self._ptrs[i] = p
        self._lens = ffi.new("uint64_t[]", [len(b) for b in self.blobs])
        self._cgroups = ffi.new("uint32_t[]", [x for g in self.groups for x in g])
        self.ok = True

    def get(self, user_key: bytes, read_seq: int) -> tuple[int, int, bytes] | None:
        """``(seq, kind, value)`` of the newest point entry of ``user_key``
        with seq <= ``read_seq`` in the Version's tables (range tombstones
        aside: a usable plan has none), or None.  O(tables x (log files +
        k + log blocks)) in C, plus one block lookup per candidate.

        Requires: ``ok``; ``user_key`` bytes; ``read_seq`` in 0 ..
        MAX_SEQUENCE."""
        pool = self._pool
        try:
            bufs = pool.pop()
        except IndexError:
            bufs = (_API.ffi.new("uint32_t[]", 2 * self.ntabs), _API.ffi.new("size_t[2]"))
        out = bufs[0]
        rc = _c_probe(self._ptrs, self._lens, self.ntabs, self._cgroups, len(self.groups),
                      user_key, len(user_key), read_seq, out, self.ntabs, bufs[1])
        if rc == 1:
            t, b = out[0], out[1]
            pool.append(bufs)
            return self.readers[t].lookup_block(self.indexes[t], b, user_key, read_seq)
        if rc <= 0:
            err = bufs[1]
            t, off = err[0], err[1]
            pool.append(bufs)
            if rc == 0:
                return None
            self._raise(rc, t, off)
        cands = _unpack(out, 2 * rc)    # a copy: the buffer goes back to the pool now
        pool.append(bufs)
        readers, indexes = self.readers, self.indexes
        for j in range(0, 2 * rc, 2):
            t = cands[j]
            r = readers[t].lookup_block(indexes[t], cands[j + 1], user_key, read_seq)
            if r is not None:
                return r
        return None

    def _raise(self, rc: int, t: int, off: int) -> None:
        """Report a failed probe (only a bug or damaged memory can make a
        blob built by ``TableReader.probe_blob`` malformed): the error names
        the table's file and the offset in its blob."""
        if rc in _PROBE_ERRORS:
            exc = _probe_corruption(rc, t, off)
            raise CorruptionError(f"sstable: bad in-memory index ({exc})",
                                  self.readers[t].name, off)
        raise RuntimeError(f"native core returned code {rc} for a well-formed probe")

    def _check(self) -> None:
        """Assert invariants: one reader, index and blob per table; the
        groups cover the tables."""
        assert len(self.readers) == len(self.indexes) == len(self.blobs)
        if self.ok:
            assert sum(c for _, c in self.groups) == self.ntabs == len(self.blobs)
