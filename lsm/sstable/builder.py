"""TableBuilder: writes one SSTable from point entries in internal order and
a set of range tombstones (format: lsm/sstable/format.py, docs/format.md).

Design.  Point entries fill a ``BlockBuilder``; when its size estimate
reaches ``block_size`` the block is encoded (native coder), compressed with
LZ4 when that saves at least 1/8, given its 5-byte trailer and appended to
an in-memory buffer that goes to the file in ~256 KiB appends.  The index
gets one entry per data block: the block's *last* internal key (no key
shortening, so "the first block whose index key >= target" is exactly the
block holding the first entry >= target) -> the block handle.  ``finish``
writes the filter, range-tombstone, index, properties and metaindex blocks
and the footer.  The caller syncs and closes the file.

``add_many`` is the bulk form of ``add`` used by flushes and compactions:
it checks a whole list of entries with C-level builtins (``map``,
``accumulate``, one native ``user_keys`` call), finds the block cuts by
bisecting the running size, and hands each block's slice to the native
encoder, so the Python work per entry is a few list operations instead of a
method call.  It cuts blocks exactly where the same sequence of ``add``
calls would (tests compare the bytes), and on any input ``add`` would
reject it falls back to ``add`` per entry, so errors are identical too.
"""

from __future__ import annotations

import struct
import sys
from array import array
from bisect import bisect_left
from itertools import accumulate
from operator import add as _add, itemgetter, lt as _lt

from lsm import _native as N
from blockdev.errors import ArgumentTypeError, ClosedError, InvalidArgumentError
from lsm.dbformat import KIND_RANGE_TOMBSTONE, MAX_SEQUENCE, internal_sort_key, pack_internal_key
from lsm.sstable.block import ENTRY_OVERHEAD, BlockBuilder
from lsm.sstable.filter import FilterBuilder
from lsm.sstable.format import (
    BLOCK_TRAILER_SIZE,
    FOOTER_SIZE,
    FORMAT_VERSION,
    META_FILTER,
    META_PROPERTIES,
    META_RANGEDEL,
    TableProperties,
    encode_footer,
    encode_handle,
    encode_properties,
    make_physical_block,
)

__all__ = ["TableBuilder"]

_FLUSH_BYTES = 256 * 1024
_unpack_trailer = struct.Struct("<Q").unpack_from
_INDEX_RESTART_INTERVAL = 1      # every index entry is a restart: pure binary search
_trailer_of = itemgetter(slice(-8, None))
_user_key_of = itemgetter(slice(None, -8))
_BIG_ENDIAN = sys.byteorder == "big"


def _as_bytes(obj: object, what: str) -> bytes:
    if isinstance(obj, bytes):
        return bytes(obj) if type(obj) is not bytes else obj
    if isinstance(obj, (bytearray, memoryview)):
        return bytes(obj)
    raise ArgumentTypeError(f"{what} must be bytes-like, not {type(obj).__name__}")


class TableBuilder:
    """Builds one table.  ``add`` is O(len(key) + len(value)) amortised;
    ``finish`` O(index + filter).  Not thread-safe (one builder, one thread).

    Requires: ``file`` is a new, empty ``WritableFile``; ``block_size >= 64``;
    ``block_restart_interval >= 1``; ``bloom_bits_per_key >= 0`` (0 = no
    filter); ``compression`` is "lz4" or None.
    """

    def __init__(self, file: object, *, name: str = "", block_size: int = 4096,
                 block_restart_interval: int = 16, bloom_bits_per_key: int = 10,
                 compression: str | None = "lz4") -> None:
        if not hasattr(file, "append"):
            raise ArgumentTypeError("file must be a WritableFile")
        if not isinstance(name, str):
            raise ArgumentTypeError("name must be a str")
        for arg, val, lo in (("block_size", block_size, 64),
                             ("block_restart_interval", block_restart_interval, 1),
                             ("bloom_bits_per_key", bloom_bits_per_key, 0)):
            if not isinstance(val, int) or isinstance(val, bool):
                raise ArgumentTypeError(f"{arg} must be an int, not {type(val).__name__}")
            if val < lo:
                raise InvalidArgumentError(f"{arg} must be >= {lo}, got {val}")
        if compression not in ("lz4", None):
            if not isinstance(compression, str):
                raise ArgumentTypeError("compression must be 'lz4' or None")
            raise InvalidArgumentError(f"compression must be 'lz4' or None, got {compression!r}")
        self._file = file
        self.name = name
        self.block_size = block_size
        self._compress = compression == "lz4"
        self._compression = compression
        self._block = BlockBuilder(block_restart_interval)
        self._kappend = self._block.keys.append
        self._vappend = self._block.values.append
        self._bsize = 8                       # size estimate of the pending block
        self._limit = block_size
        self._per_entry = ENTRY_OVERHEAD + 4 // block_restart_interval
        self._filter = FilterBuilder(bloom_bits_per_key) if bloom_bits_per_key > 0 else None
        self._fkeys: list[bytes] = self._filter.keys if self._filter is not None else []
        self._fkeys_append = self._fkeys.append
        self._buf: list[bytes] = []
        self._buf_len = 0
        if int(getattr(file, "size", 0)) != 0:
            raise InvalidArgumentError("file must be empty (a table starts at offset 0)")
        self._offset = 0            # bytes written + buffered
        self._base = 0
        self._index_keys: list[bytes] = []
        self._index_vals: list[bytes] = []
        self._index_bytes = 0
        self._range_tombstones: list[tuple[bytes, bytes, int]] = []
        self._last_uk: bytes | None = None
        self._last_trailer = 0
        self._finished = False
        self._flushed_entries = 0
        self._num_tombstones = 0
        self._raw_key_size = 0
        self._raw_value_size = 0
        self._smallest_seq = MAX_SEQUENCE + 1
        self._largest_seq = -1
        self._smallest_key = b""
        self._largest_key = b""

    # -- adding ---------------------------------------------------------------
    def add(self, ikey: bytes, value: bytes) -> None:
        """Add a point entry (kind TOMBSTONE or VALUE).

        Requires: internal keys strictly increasing in internal order
        (InvalidArgumentError otherwise, and for a short key or another kind).
        """
        if type(ikey) is not bytes:
            ikey = _as_bytes(ikey, "ikey")
        if type(value) is not bytes:
            value = _as_bytes(value, "value")
        if self._finished:
            raise ClosedError(f"table builder {self.name!r} already finished")
        n = len(ikey)
        if n < 8:
            raise InvalidArgumentError("ikey must be an internal key (>= 8 bytes)")
        uk = ikey[:-8]
        trailer = _unpack_trailer(ikey, n - 8)[0]
        if trailer & 0xFE:
            raise InvalidArgumentError(
                f"ikey kind {trailer & 0xFF} is not a point entry (use add_range_tombstone)")
        last = self._last_uk
        if uk != last:
            if last is not None and uk < last:
                raise InvalidArgumentError("keys must be strictly increasing in internal order")
            self._fkeys_append(uk)
            self._last_uk = uk
        elif trailer >= self._last_trailer:
            raise InvalidArgumentError("keys must be strictly increasing in internal order")
        self._last_trailer = trailer
        seq = trailer >> 8
        if seq < self._smallest_seq:
            self._smallest_seq = seq
        if seq > self._largest_seq:
            self._largest_seq = seq
        if not trailer & 1:
            self._num_tombstones += 1
        self._kappend(ikey)
        self._vappend(value)
        self._bsize += n + len(value) + self._per_entry
        if self._bsize >= self._limit:
            self._flush_block()

    def add_many(self, ikeys: list[bytes] | tuple[bytes, ...],
                 values: list[bytes] | tuple[bytes, ...]) -> None:
        """Add point entries: the same as ``add(ikeys[i], values[i])`` for
        every ``i`` in order (same blocks, same errors), block at a time.
        O(n + total bytes); the per-entry Python work is in C-level builtins.

        Requires: ``ikeys`` and ``values`` lists (or tuples) of equal length.
        """
        if not isinstance(ikeys, (list, tuple)):
            raise ArgumentTypeError(f"ikeys must be a list, not {type(ikeys).__name__}")
        if not isinstance(values, (list, tuple)):
            raise ArgumentTypeError(f"values must be a list, not {type(values).__name__}")
        n = len(ikeys)
        if n != len(values):
            raise InvalidArgumentError(
                f"ikeys and values differ in length ({n} != {len(values)})")
        if self._finished:
            raise ClosedError(f"table builder {self.name!r} already finished")
        if not n:
            return
        checked = self._check_many(ikeys, values)
        if checked is None:          # something ``add`` rejects: let it say what
            for k, v in zip(ikeys, values):
                self.add(k, v)
            return
        uks, trailers, kinds, strict = checked
        # -- statistics and filter keys (all checks passed: now mutate) --------
        lo_seq = min(trailers) >> 8      # trailer order = sequence order (kind < 256)
        hi_seq = max(trailers) >> 8
        if lo_seq < self._smallest_seq:
            self._smallest_seq = lo_seq
        if hi_seq > self._largest_seq:
            self._largest_seq = hi_seq
        self._num_tombstones += kinds.count(0)
        last = self._last_uk
        if strict:
            if uks[0] == last:          # continues the previous call's user key
                self._fkeys.extend(uks[1:])
            else:
                self._fkeys.extend(uks)
        else:
            fadd = self._fkeys_append
            for uk in uks:
                if uk != last:
                    fadd(uk)
                    last = uk
        self._last_uk = uks[-1]
        self._last_trailer = trailers[-1]
        # -- blocks: cut where the running size estimate reaches the limit -----
        acc = list(accumulate(map(self._per_entry.__add__,
                                  map(_add, map(len, ikeys), map(len, values))), initial=0))
        block = self._block
        bkeys, bvals = block.keys, block.values
        limit = self._limit
        pos = 0
        bsize = self._bsize
        while pos < n:
            j = bisect_left(acc, limit - bsize + acc[pos], pos + 1)
            if j > n:
                bkeys.extend(ikeys[pos:])
                bvals.extend(values[pos:])
                self._bsize = bsize + acc[n] - acc[pos]
                return
            bkeys.extend(ikeys[pos:j])
            bvals.extend(values[pos:j])
            self._flush_block()
            bsize = 8
            pos = j
        self._bsize = bsize

    def _check_many(self, ikeys: list[bytes] | tuple[bytes, ...],
                    values: list[bytes] | tuple[bytes, ...]
                    ) -> tuple[list[bytes], array, bytes, bool] | None:
        """``(user keys, trailers, kind bytes, user keys strictly ascending)``
        when every entry is one ``add`` accepts after the ones before it;
        None otherwise.  Mutates nothing.  O(n)."""
        if set(map(type, ikeys)) != {bytes} or set(map(type, values)) != {bytes}:
            return None
        if min(map(len, ikeys)) < 8:     # also makes every slice below exact
            return None
        tb = b"".join(map(_trailer_of, ikeys))
        kinds = tb[::8]
        if kinds.translate(None, b"\x00\x01"):
            return None
        trailers = array("Q")
        trailers.frombytes(tb)
        if _BIG_ENDIAN:
            trailers.byteswap()
        uks = list(map(_user_key_of, ikeys))
        last = self._last_uk
        if last is not None and (uks[0] < last
                                 or (uks[0] == last and trailers[0] >= self._last_trailer)):
            return None
        strict = all(map(_lt, uks, uks[1:]))
        if not strict:
            prev_uk, prev_t = uks[0], trailers[0]
            for i in range(1, len(uks)):
                uk, t = uks[i], trailers[i]
                if uk < prev_uk or (uk == prev_uk and t >= prev_t):
                    return None
                prev_uk, prev_t = uk, t
        return uks, trailers, kinds, strict

    def add_chunk(self, chunk: N.TableChunk) -> None:
        """Append the data blocks of ``chunk`` (``lsm._native.table_blocks``:
        entries already encoded, GIL released) as if each of its entries had
        been added with ``add``: index entries, filter keys (by hash) and
        statistics follow.  A pending block of ``add`` calls is closed first.
        O(blocks) Python work (plus compression).

        Requires: ``chunk`` made by ``table_blocks`` with ``prev_key`` = this
        table's last internal key (None for an empty table), so its entries
        continue the table in strictly increasing internal order.
        """
        if self._finished:
            raise ClosedError(f"table builder {self.name!r} already finished")
        if not chunk.entries:
            return
        if len(self._block):
            self._flush_block()
        if not self._flushed_entries:
            self._smallest_key = chunk.first_key
        ends = chunk.block_ends
        # every block compressed, checksummed and trailed in one native call
        phys, sizes = N.blocks_seal(chunk.data, ends if type(ends) is array else array("Q", ends),
                                    self._compress)
        ikeys, ivals = self._index_keys, self._index_vals
        off = self._offset
        added = 0
        for size, last in zip(sizes, chunk.last_keys):
            handle = encode_handle(off, size)
            ikeys.append(last)
            ivals.append(handle)
            added += len(last) + len(handle)
            off += size + BLOCK_TRAILER_SIZE
        self._buf.append(phys)
        self._buf_len += len(phys)
        self._offset = off
        if self._buf_len >= _FLUSH_BYTES:
            self._flush_buf()
        self._index_bytes += added + (ENTRY_OVERHEAD + 4) * len(ends)
        last = chunk.last_keys[-1]
        self._largest_key = last
        self._flushed_entries += chunk.entries
        self._raw_key_size += chunk.key_bytes
        self._raw_value_size += chunk.value_bytes
        self._num_tombstones += chunk.tombstones
        if chunk.min_seq < self._smallest_seq:
            self._smallest_seq = chunk.min_seq
        if chunk.max_seq > self._largest_seq:
            self._largest_seq = chunk.max_seq
        self._last_uk = last[:-8]
        self._last_trailer = _unpack_trailer(last, len(last) - 8)[0]
        if self._filter is not None:
            self._filter.add_hashes(chunk.hashes, self._last_uk)

    @property
    def last_key(self) -> bytes | None:
        """The internal key the table ends with so far (None when empty)."""
        if len(self._block):
            return self._block.keys[-1]
        return self._largest_key if self._flushed_entries else None

    @property
    def num_entries(self) -> int:
        """Point entries added so far."""
        return self._flushed_entries + len(self._block.keys)

    def add_range_tombstone(self, start: bytes, end: bytes, seq: int) -> None:
        """Record a range tombstone deleting user keys in ``[start, end)``
        written at sequence ``seq`` (any order of calls; stored sorted)."""
        start = _as_bytes(start, "start")
        end = _as_bytes(end, "end")
        if not isinstance(seq, int) or isinstance(seq, bool):
            raise ArgumentTypeError("seq must be an int")
        if not 0 <= seq <= MAX_SEQUENCE:
            raise InvalidArgumentError(f"seq must be in [0, {MAX_SEQUENCE}], got {seq}")
        if self._finished:
            raise ClosedError(f"table builder {self.name!r} already finished")
        self._range_tombstones.append((start, end, seq))
        if seq < self._smallest_seq:
            self._smallest_seq = seq
        if seq > self._largest_seq:
            self._largest_seq = seq

    # -- writing --------------------------------------------------------------
    def _emit(self, contents: bytes, compress: bool) -> tuple[int, int]:
        """Buffer one physical block; return its handle (offset, size)."""
        phys, size = make_physical_block(contents, compress)
        offset = self._offset
        self._buf.append(phys)
        self._buf_len += len(phys)
        self._offset += len(phys)
        if self._buf_len >= _FLUSH_BYTES:
            self._flush_buf()
        return offset, size

    def _flush_buf(self) -> None:
        if self._buf:
            buf = self._buf
            data = buf[0] if len(buf) == 1 else b"".join(buf)   # one chunk: no copy
            self._buf = []
            self._buf_len = 0
            self._file.append(data)

    def _flush_block(self) -> None:
        blk = self._block
        keys = blk.keys
        if not self._flushed_entries:
            self._smallest_key = keys[0]
        last_key = self._largest_key = keys[-1]
        self._flushed_entries += len(keys)
        self._raw_key_size += sum(map(len, keys))
        self._raw_value_size += sum(map(len, blk.values))
        raw = blk.finish()          # clears the lists in place (bound appends stay valid)
        self._bsize = 8
        off, size = self._emit(raw, self._compress)
        handle = encode_handle(off, size)
        self._index_keys.append(last_key)
        self._index_vals.append(handle)
        self._index_bytes += len(last_key) + len(handle) + ENTRY_OVERHEAD + 4

    @property
    def estimated_size(self) -> int:
        """Bytes the file would have if finished now (an estimate: pending
        block uncompressed, filter at its configured density)."""
        pending = self._bsize + BLOCK_TRAILER_SIZE if len(self._block) else 0
        filt = 0
        if self._filter is not None:
            nkeys = len(self._filter.keys) + len(self._filter.hashes)
            filt = max(8, (nkeys * self._filter.bits_per_key + 7) // 8) + 6
        rt = sum(len(s) + len(e) + 16 for s, e, _ in self._range_tombstones)
        return (self._offset - self._base + pending + self._index_bytes + filt + rt
                + 400 + FOOTER_SIZE)

    def finish(self) -> TableProperties:
        """Write the remaining data block, the meta blocks, the index, the
        metaindex and the footer.  Does not sync or close the file."""
        if self._finished:
            raise ClosedError(f"table builder {self.name!r} already finished")
        self._finished = True
        if len(self._block):
            self._flush_block()
        data_size = self._offset - self._base
        meta: dict[bytes, tuple[int, int]] = {}
        filter_size = 0
        if self._filter is not None:
            fb = self._filter.finish()
            filter_size = len(fb)
            meta[META_FILTER] = self._emit(fb, False)
        if self._range_tombstones:
            rts = sorted(((pack_internal_key(s, q, KIND_RANGE_TOMBSTONE), e)
                          for s, e, q in self._range_tombstones),
                         key=lambda kv: (internal_sort_key(kv[0]), kv[1]))
            raw = N.block_encode([k for k, _ in rts], [v for _, v in rts], 16)
            meta[META_RANGEDEL] = self._emit(raw, False)
        index_raw = N.block_encode(self._index_keys, self._index_vals, _INDEX_RESTART_INTERVAL)
        index_handle = self._emit(index_raw, False)
        empty_seq = self._largest_seq < 0
        props = TableProperties(
            num_entries=self._flushed_entries, num_tombstones=self._num_tombstones,
            num_range_tombstones=len(self._range_tombstones),
            raw_key_size=self._raw_key_size, raw_value_size=self._raw_value_size,
            data_size=data_size, index_size=len(index_raw), filter_size=filter_size,
            num_data_blocks=len(self._index_keys),
            smallest_seq=0 if empty_seq else self._smallest_seq,
            largest_seq=0 if empty_seq else self._largest_seq,
            smallest_key=self._smallest_key, largest_key=self._largest_key,
            format_version=FORMAT_VERSION, compression=self._compression)
        names, values = encode_properties(props)
        meta[META_PROPERTIES] = self._emit(N.block_encode(names, values, 1), False)
        mnames = sorted(meta)
        metaindex = N.block_encode(mnames, [encode_handle(*meta[n]) for n in mnames], 1)
        metaindex_handle = self._emit(metaindex, False)
        footer = encode_footer(metaindex_handle, index_handle)
        self._buf.append(footer)
        self._offset += len(footer)
        self._flush_buf()
        return props

    def _check(self) -> None:
        """Assert invariants: the pending block and the index are consistent,
        index keys strictly increase in internal order."""
        self._block._check()
        assert len(self._index_keys) == len(self._index_vals)
        for a, b in zip(self._index_keys, self._index_keys[1:]):
            assert internal_sort_key(a) < internal_sort_key(b)
        assert self._offset >= self._buf_len

    @property
    def file_size(self) -> int:
        """Bytes written and buffered so far (the final size after finish)."""
        return self._offset - self._base
