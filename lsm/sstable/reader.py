"""TableReader: point lookups and block scans over one SSTable.

Design.  Opening a table reads the footer, then the metaindex, properties,
index, filter and range-tombstone blocks (every one checksum-verified) and
keeps them in memory for the reader's lifetime: the raw index block (seeks
run ``lsm._native.block_seek`` on it), the data block offsets and sizes
decoded from it, the bloom filter and the range tombstones.  Data blocks are
read on demand through the shared ``BlockCache`` (key ``(cache_id,
block_offset)``; value a ``BlockReader`` holding the raw block and, once a
scan needed them, its decoded ``(keys, values)`` lists).

``get(user_key, read_seq)``: bloom filter on the user key -> index
bisection for ``lookup_key(user_key, read_seq)`` (the first data block whose
last key is >= it; Python ``bisect`` over the blocks' last user keys) -> one
``lsm_block_get`` on that block's raw bytes (binary search over the restart
points in C; returns the trailer and value of the entry found when its user
key matches -- internal order puts the newest version visible at
``read_seq`` first).  Two C calls and one cache probe; a block is never
decoded into lists for a get.  ``lookup`` is the same without argument
checks (and optionally without the bloom probe: the DB probes the pinned
``filter`` itself).  The bloom probe, the block checksum and
``lsm_block_get`` are called on the C entry points directly (exact ``bytes``
arguments, pooled scratch buffers); errors and anything unusual go through
the checked wrappers, which name the damage.

With ``cache_index_and_filter_blocks=True`` (and a block cache) the parsed
index and filter are not pinned by the reader but live in the block cache
under ``(cache_id, -1)``, charged like data blocks, and are re-read and
re-verified from the file after an eviction: memory for many open tables
stays within the cache's bound at the price of occasional re-reads.

``blocks(start, reverse)`` yields whole decoded data blocks lazily, one at a
time, so an iterator that stops early never touches later blocks;
``blocks_read`` counts data blocks delivered (from the cache or the file),
``blocks_loaded`` those read from the file.

Errors: damaged bytes -> ``CorruptionError(msg, name, offset)`` with the
offset of the damaged block (or footer); a table of a newer format ->
``UnsupportedFormatError``.  A reader is safe to share between threads
(all state is immutable after open; reads are positional).
"""

from __future__ import annotations

import struct
from array import array
from bisect import bisect_left, bisect_right
from typing import Callable, Iterator

import lz4.block

from blockdev.errors import (
    ArgumentTypeError,
    ClosedError,
    CorruptionError,
    InvalidArgumentError,
)
from lsm import _native as N
from lsm.cache import BlockCache
from lsm.dbformat import KIND_RANGE_TOMBSTONE, MAX_SEQUENCE, compare_internal
from lsm.sstable.block import BlockReader
from lsm.sstable.format import (
    BLOCK_TRAILER_SIZE,
    LZ4_COMPRESSION,
    FOOTER_SIZE,
    META_FILTER,
    META_PROPERTIES,
    META_RANGEDEL,
    TableProperties,
    decode_footer,
    decode_handle,
    decode_properties,
    unwrap_physical_block,
)

__all__ = ["TableReader", "TableProperties", "bloom_probe"]

# The native core's C entry points for the two per-get calls whose Python
# wrappers cost more than the C work (argument checks, pooled buffers): the
# bloom probe and the block checksum, called with exact ``bytes`` arguments
# only.  None under LSM_PURE=1 (the twins are used then).
_C_API = N.c_api() if N.implementation == "native" else None
_c_bloom = _C_API.lib.lsm_bloom_may_contain if _C_API is not None else None
_c_xxh64 = _C_API.lib.lsm_xxh64 if _C_API is not None else None
_lz4_decompress = lz4.block.decompress
# lsm_block_get called directly (its wrapper's checks and pooling cost more
# than the search): scratch buffers and info arrays are taken from these
# pools for one call each (list pop/append are atomic, so threads never
# share one while the call runs without the GIL)
_c_block_get = _C_API.lib.lsm_block_get if _C_API is not None else None
_new = _C_API.ffi.new if _C_API is not None else None
_SCRATCH: list = []
_INFOS: list = []
_SCRATCH_MIN = 16 << 10
_SCRATCH_KEEP = 1 << 20       # larger scratch buffers are not pooled


def bloom_probe(filt: bytes, user_key: bytes) -> int:
    """1 if ``user_key`` may be in bloom filter ``filt``, 0 if certainly not,
    negative for a damaged filter (``N.bloom_may_contain`` then names the
    error).  One C call with the native core.  Requires: both ``bytes``."""
    if _c_bloom is not None:
        return _c_bloom(filt, len(filt), user_key, len(user_key))
    return 1 if N.bloom_may_contain(filt, user_key) else 0
_U32_AT = struct.Struct("<I").unpack_from
_SEEK_TRAILER = struct.Struct("<Q").pack
_unpack_trailer = struct.Struct("<Q").unpack_from
_TAIL_READ = 64 * 1024
READAHEAD_MIN = 16 << 10      # first readahead of a block walk (bytes on disk), doubling
READAHEAD_MAX = 256 << 10     # to at most this (RocksDB's auto readahead tops out there too)
_CMP_INTERNAL = N.CMP_INTERNAL
_INDEX_CACHE_SLOT = -1        # block-cache key (cache_id, -1): index + filter of a table
_RAW_CHARGE = 120             # cache charge of a raw block beyond its bytes (as BlockReader's)


class _Index:
    """A table's parsed index and filter: the blocks' last internal keys,
    split into user keys and trailers for bisection (no native call and no
    allocation per seek), the data block offsets and sizes, the filter."""

    __slots__ = ("keys", "uks", "trailers", "offs", "sizes", "filter", "charge")

    def __init__(self, keys: list[bytes], offs: list[int], sizes: list[int],
                 filt: bytes | None) -> None:
        self.keys = keys
        self.uks = [k[:-8] for k in keys]
        self.trailers = [int.from_bytes(k[-8:], "little") for k in keys]
        self.offs = offs
        self.sizes = sizes
        self.filter = filt
        self.charge = (sum(map(len, keys)) * 2 + 200 * len(keys)
                       + (len(filt) if filt is not None else 0) + 256)

    def _check(self) -> None:
        assert len(self.keys) == len(self.uks) == len(self.trailers) == len(self.offs) \
            == len(self.sizes)


def _check_bytes(obj: object, what: str) -> bytes:
    if isinstance(obj, bytes):
        return bytes(obj) if type(obj) is not bytes else obj
    if isinstance(obj, (bytearray, memoryview)):
        return bytes(obj)
    raise ArgumentTypeError(f"{what} must be bytes-like, not {type(obj).__name__}")


class TableReader:
    """An open SSTable.  See the module docstring for the read paths.

    Requires: ``file`` is a ``RandomAccessFile`` over a complete table
    written by ``TableBuilder``; ``cache_id`` unique per table among the
    users of ``block_cache`` (the file number).
    """

    def __init__(self, file: object, name: str, *, block_cache: BlockCache | None = None,
                 cache_id: int = 0, verify_checksums: bool = True,
                 cache_index_and_filter_blocks: bool = False) -> None:
        if not hasattr(file, "read"):
            raise ArgumentTypeError("file must be a RandomAccessFile")
        if not isinstance(name, str):
            raise ArgumentTypeError("name must be a str")
        if block_cache is not None and not isinstance(block_cache, BlockCache):
            raise ArgumentTypeError("block_cache must be a BlockCache or None")
        if not isinstance(cache_id, int) or isinstance(cache_id, bool):
            raise ArgumentTypeError("cache_id must be an int")
        self._file = file
        self.name = name
        self._cache = block_cache
        self._cache_id = cache_id
        self._verify = bool(verify_checksums)
        # pinned (held by the reader) unless they are to live in the block cache
        self._cache_meta = bool(cache_index_and_filter_blocks) and block_cache is not None
        self._closed = False
        self.blocks_read = 0
        self.blocks_loaded = 0
        self.index_loads = 0        # index/filter re-reads (cache_index_and_filter_blocks)
        self._probe: tuple | None = None    # (extent, probe blob): probe_blob's cache
        try:
            self._open()
        except BaseException:
            self._closed = True
            file.close()  # type: ignore[attr-defined]
            raise

    # -- opening --------------------------------------------------------------
    def _open(self) -> None:
        name = self.name
        size = int(self._file.size)  # type: ignore[attr-defined]
        self.file_size = size
        if size < FOOTER_SIZE:
            raise CorruptionError(f"sstable: file of {size} bytes is too short for a table",
                                  name, 0)
        tail_start = max(0, size - _TAIL_READ)
        tail = self._file.read(tail_start, size - tail_start)  # type: ignore[attr-defined]
        if len(tail) != size - tail_start:
            raise CorruptionError("sstable: short read of the table tail", name, tail_start)
        footer_off = size - FOOTER_SIZE
        version, mi_handle, ix_handle = decode_footer(tail[footer_off - tail_start:],
                                                      name, footer_off)

        def meta_block(handle: tuple[int, int], what: str) -> tuple[bytes, int]:
            off, sz = handle
            if off + sz + BLOCK_TRAILER_SIZE > footer_off:
                raise CorruptionError(f"sstable: {what} handle out of range", name, footer_off)
            if off >= tail_start:
                buf = tail[off - tail_start:off - tail_start + sz + BLOCK_TRAILER_SIZE]
            else:
                buf = self._file.read(off, sz + BLOCK_TRAILER_SIZE)  # type: ignore[attr-defined]
            return unwrap_physical_block(buf, sz, name, off, True), off

        def decode(raw: bytes, off: int, what: str) -> tuple[list[bytes], list[bytes]]:
            try:
                return N.block_decode(raw)
            except CorruptionError as exc:
                raise CorruptionError(f"sstable: bad {what} block ({exc})", name, off) from None

        raw, off = meta_block(mi_handle, "metaindex")
        mnames, mvals = decode(raw, off, "metaindex")
        meta: dict[bytes, tuple[int, int]] = {}
        for mn, mv in zip(mnames, mvals):
            try:
                h_off, h_size, end = decode_handle(mv)
            except CorruptionError:
                end = -1
            if end != len(mv):
                raise CorruptionError(f"sstable: bad metaindex entry {mn!r}", name, off)
            meta[mn] = (h_off, h_size)
        if META_PROPERTIES not in meta:
            raise CorruptionError("sstable: no properties block", name, off)
        raw, off = meta_block(meta[META_PROPERTIES], "properties")
        pn, pv = decode(raw, off, "properties")
        self.properties: TableProperties = decode_properties(pn, pv, name, off, version)

        self._ix_handle = ix_handle
        self._filter_handle = meta.get(META_FILTER)
        self._footer_off = footer_off
        ix = self._load_index(meta_block)
        self._nblocks = len(ix.offs)
        if self._cache_meta:
            self._pinned: _Index | None = None
            self._cache.insert((self._cache_id, _INDEX_CACHE_SLOT), ix, ix.charge)  # type: ignore[union-attr]
        else:
            self._pinned = ix
        # the pinned bloom filter (None when absent or kept in the block cache):
        # the DB probes it itself before calling ``lookup`` (one call less)
        self.filter: bytes | None = None if self._pinned is None else self._pinned.filter
        self.range_tombstones: list[tuple[bytes, bytes, int]] = []
        if META_RANGEDEL in meta:
            raw, off = meta_block(meta[META_RANGEDEL], "range tombstone")
            rkeys, rvals = decode(raw, off, "range tombstone")
            for k, v in zip(rkeys, rvals):
                if len(k) < 8:
                    raise CorruptionError("sstable: bad range tombstone key", name, off)
                trailer = int.from_bytes(k[-8:], "little")
                if trailer & 0xFF != KIND_RANGE_TOMBSTONE:
                    raise CorruptionError("sstable: bad range tombstone kind", name, off)
                self.range_tombstones.append((k[:-8], v, trailer >> 8))
        if len(self.range_tombstones) != self.properties.num_range_tombstones:
            raise CorruptionError("sstable: range tombstone count disagrees with the properties",
                                  name, footer_off)

    def _load_index(self, meta_block: Callable[[tuple[int, int], str], tuple[bytes, int]] | None
                    = None) -> "_Index":
        """Read, verify and parse the index and filter blocks.  O(index + filter)."""
        name = self.name
        if meta_block is None:
            if self._closed:
                raise ClosedError(f"table {name} is closed")

            def meta_block(handle: tuple[int, int], what: str) -> tuple[bytes, int]:
                off, sz = handle
                buf = self._file.read(off, sz + BLOCK_TRAILER_SIZE)  # type: ignore[attr-defined]
                return unwrap_physical_block(buf, sz, name, off, True), off
        raw, ix_off = meta_block(self._ix_handle, "index")
        try:
            ikeys, ivals = N.block_decode(raw)
        except CorruptionError as exc:
            raise CorruptionError(f"sstable: bad index block ({exc})", name, ix_off) from None
        offs: list[int] = []
        sizes: list[int] = []
        expect = 0
        for k, v in zip(ikeys, ivals):
            try:
                b_off, b_size, end = decode_handle(v)
            except CorruptionError:
                end = -1
            if end != len(v) or b_off != expect or len(k) < 8:
                raise CorruptionError("sstable: bad index entry", name, ix_off)
            offs.append(b_off)
            sizes.append(b_size)
            expect = b_off + b_size + BLOCK_TRAILER_SIZE
        props = self.properties
        if expect != props.data_size or len(offs) != props.num_data_blocks:
            raise CorruptionError("sstable: index disagrees with the properties", name, ix_off)
        filt: bytes | None = None
        if self._filter_handle is not None:
            fraw, foff = meta_block(self._filter_handle, "filter")
            if len(fraw) < 2:
                raise CorruptionError("sstable: filter block too short", name, foff)
            filt = fraw
        return _Index(ikeys, offs, sizes, filt)

    def _index(self) -> "_Index":
        """The index: pinned, or from the block cache (re-read on a miss)."""
        ix = self._pinned
        if ix is not None:
            return ix
        cache = self._cache
        key = (self._cache_id, _INDEX_CACHE_SLOT)
        ix = cache.get(key)  # type: ignore[union-attr]
        if ix is None:
            ix = self._load_index()
            self.index_loads += 1
            cache.insert(key, ix, ix.charge)  # type: ignore[union-attr]
        return ix  # type: ignore[return-value]

    # -- data blocks ----------------------------------------------------------
    def _block(self, off: int, size: int) -> BlockReader:
        """The data block at ``off`` from the cache or the file.  O(block
        size) on a miss."""
        cache = self._cache
        if cache is not None:
            blk = cache.get((self._cache_id, off))
            if blk is not None:
                if type(blk) is bytes:      # cached by a get: raw bytes only
                    return BlockReader(blk, self.name, off)
                return blk  # type: ignore[return-value]
        return self._load_block(off, size)

    def _load_block(self, off: int, size: int, decode: bool = False) -> BlockReader:
        """Read, verify and decompress the data block at ``off`` (and decode
        it when ``decode``); cache it."""
        raw = self._read_raw(off, size)
        blk = BlockReader(raw, self.name, off)
        if decode:
            blk.decoded()
        cache = self._cache
        if cache is not None:
            cache.insert((self._cache_id, off), blk, blk.charge())
        return blk

    def _read_raw(self, off: int, size: int) -> bytes:
        """The contents of the data block at ``off`` (``size`` bytes on
        disk): read, checksum-verified (``verify_checksums``), decompressed.
        Not cached.  O(size)."""
        if self._closed:
            raise ClosedError(f"table {self.name} is closed")
        buf = self._file.read(off, size + BLOCK_TRAILER_SIZE)  # type: ignore[attr-defined]
        # fast path for the common block (lz4, verified, intact): the checksum
        # over buf[:size + 1] in C without slicing; anything else -- or any
        # doubt -- goes through unwrap_physical_block, which names the damage
        raw = None
        if (_c_xxh64 is not None and type(buf) is bytes and len(buf) == size + 5
                and buf[size] == LZ4_COMPRESSION and size >= 4 and self._verify
                and _c_xxh64(buf, size + 1, 0) & 0xFFFFFFFF == _U32_AT(buf, size + 1)[0]
                and _U32_AT(buf, 0)[0] <= 255 * size + 64):
            try:
                raw = _lz4_decompress(memoryview(buf)[:size])
            except Exception:       # reported (with its cause) by the slow path
                raw = None
        if raw is None:
            raw = unwrap_physical_block(buf, size, self.name, off, self._verify)
            if type(raw) is not bytes:      # e.g. a bytearray from the file layer
                raw = bytes(raw)
        self.blocks_loaded += 1
        return raw

    def _decoded(self, ix: "_Index", i: int, contents: bytes | None = None) -> BlockReader:
        """Data block ``i``, decoded (its ``keys``/``values`` set); from
        ``contents`` (already read, verified and decompressed) when given
        and the block is not cached."""
        off = ix.offs[i]
        cache = self._cache
        blk = None if cache is None else cache.get((self._cache_id, off))
        if blk is None and contents is not None:
            blk = BlockReader(contents, self.name, off)
            blk.decoded()
            if cache is not None:
                cache.insert((self._cache_id, off), blk, blk.charge())
        elif blk is None:
            blk = self._load_block(off, ix.sizes[i], True)
        elif type(blk) is bytes:        # cached by a get: raw bytes only
            blk = BlockReader(blk, self.name, off)
        self.blocks_read += 1
        if blk.keys is None:
            blk.decoded()
            if self._cache is not None:   # re-charge: the decoded lists now live in it
                self._cache.insert((self._cache_id, blk.offset), blk, blk.charge())
        return blk

    def _index_seek(self, target: bytes) -> int:
        """Index of the first data block whose last key >= internal key
        ``target``; ``num_data_blocks`` when there is none.  O(log blocks):
        a bisection over the blocks' last user keys, then a step past blocks
        ending in the same user key with a newer (larger) trailer."""
        ix = self._index()
        uk = target[:-8]
        t = int.from_bytes(target[-8:], "little")
        uks = ix.uks
        i = bisect_left(uks, uk)
        n = self._nblocks
        if i < n and uks[i] == uk:
            trailers = ix.trailers
            while i < n and uks[i] == uk and trailers[i] > t:
                i += 1
        return i

    def probe_blob(self, lo: bytes, hi: bytes, hi_exclusive: bool) -> bytes | None:
        """This table's probe blob (``lsm._twins`` read-path section: the
        pinned index's user keys and trailers, the bloom filter, and the
        extent ``[lo, hi]`` the Version gives the file) for
        ``lsm.sstable.probe``; built once (O(index + filter)) and kept.  None
        when the index is not pinned (``cache_index_and_filter_blocks``).

        Requires: ``lo``/``hi`` are the file's smallest/largest user keys."""
        ix = self._pinned
        if ix is None:
            return None
        extent = (lo, hi, bool(hi_exclusive))
        p = self._probe
        if p is None or p[0] != extent:
            p = self._probe = (extent, N.probe_blob_encode(ix.filter, lo, hi, hi_exclusive,
                                                           ix.uks, ix.trailers))
        return p[1]

    # -- public reads ---------------------------------------------------------
    def may_contain(self, user_key: bytes) -> bool:
        """Bloom filter test: False only if ``user_key`` is certainly absent."""
        if type(user_key) is not bytes:
            user_key = _check_bytes(user_key, "user_key")
        f = self._index().filter
        return True if f is None else N.bloom_may_contain(f, user_key)

    def get(self, user_key: bytes, read_seq: int) -> tuple[int, int, bytes] | None:
        """Newest point entry of ``user_key`` with seq <= ``read_seq`` as
        ``(seq, kind, value)``, or None.  Ignores range tombstones.
        O(log blocks + log restarts + restart_interval) plus one block read
        on a cache miss."""
        if type(user_key) is not bytes:
            user_key = _check_bytes(user_key, "user_key")
        if type(read_seq) is not int or not 0 <= read_seq <= MAX_SEQUENCE:
            if not isinstance(read_seq, int) or isinstance(read_seq, bool):
                raise ArgumentTypeError("read_seq must be an int")
            if not 0 <= read_seq <= MAX_SEQUENCE:
                raise InvalidArgumentError(f"read_seq must be in [0, {MAX_SEQUENCE}]")
        return self.lookup(user_key, read_seq, True)

    def lookup(self, user_key: bytes, read_seq: int, use_filter: bool = True
               ) -> tuple[int, int, bytes] | None:
        """``get`` without the argument checks, for the DB's hot path;
        ``use_filter=False`` skips the bloom probe (the caller probed
        ``self.filter`` already).

        Requires: ``user_key`` is ``bytes``, ``read_seq`` an int in
        0 .. MAX_SEQUENCE."""
        ix = self._pinned
        if ix is None:
            ix = self._index()
        f = ix.filter if use_filter else None
        if f is not None:
            if _c_bloom is not None:
                rc = _c_bloom(f, len(f), user_key, len(user_key))
                if rc == 0:
                    return None
                if rc < 0:          # a damaged filter: the wrapper raises the error
                    N.bloom_may_contain(f, user_key)
            elif not N.bloom_may_contain(f, user_key):
                return None
        # index: the first block whose last key >= lookup_key(user_key, read_seq)
        uks = ix.uks
        i = bisect_left(uks, user_key)
        if i == self._nblocks:
            return None
        if uks[i] == user_key:
            t = (read_seq << 8) | 0xFF
            trailers = ix.trailers
            n = self._nblocks
            while trailers[i] > t:
                i += 1
                if i == n or uks[i] != user_key:
                    break
            if i == n:
                return None
        return self.lookup_block(ix, i, user_key, read_seq)

    def lookup_block(self, ix: "_Index", i: int, user_key: bytes, read_seq: int
                     ) -> tuple[int, int, bytes] | None:
        """The point lookup of ``lookup`` in data block ``i`` (the block the
        index search chose: the first whose last key >= the lookup key):
        ``(seq, kind, value)`` of the newest entry of ``user_key`` with seq
        <= ``read_seq``, or None.  One cache probe (plus a block read on a
        miss) and one native call.

        Requires: ``ix`` is this table's index (``index()``), ``0 <= i <
        num_data_blocks``; ``user_key`` bytes, ``read_seq`` in 0 ..
        MAX_SEQUENCE."""
        off = ix.offs[i]
        cache = self._cache
        if cache is None:
            raw = self._read_raw(off, ix.sizes[i])
        else:
            ck = (self._cache_id, off)
            raw = cache.get(ck)
            if raw is None:
                # a get offers the block's raw bytes to the cache (admitted
                # on its second read within the doorkeeper window; no
                # BlockReader: a scan that meets them wraps, decodes and
                # re-charges them)
                raw = self._read_raw(off, ix.sizes[i])
                cache.offer(ck, raw, len(raw) + _RAW_CHARGE)
            elif type(raw) is not bytes:
                raw = raw.raw
        self.blocks_read += 1
        # one native call: binary search over the restarts, the trailer and
        # value of the entry found (no key copy, no decode of the block)
        if _c_block_get is not None:
            need = len(raw) + len(user_key) + 8
            try:                    # pop() alone is atomic: no check-then-pop race
                sc = _SCRATCH.pop()
            except IndexError:
                sc = None
            if sc is None or len(sc) < need:
                sc = _new("char[]", max(need, _SCRATCH_MIN))
            try:
                info = _INFOS.pop()
            except IndexError:
                info = _new("uint64_t[8]")
            rc = _c_block_get(raw, len(raw), user_key, len(user_key), read_seq, sc, info)
            if rc == 1:
                t = info[0]
                r = (t >> 8, t & 0xFF, raw[info[1]:info[2]])
            if len(sc) <= _SCRATCH_KEEP:
                _SCRATCH.append(sc)
            _INFOS.append(info)
            if rc == 1:
                return r
            if rc == 0 and N.block_seek(raw, user_key + _SEEK_TRAILER((read_seq << 8) | 0xFF),
                                        _CMP_INTERNAL) is not None:
                return None
            # an error or a block that ends early: the checked path reports it
        try:
            r = N.block_get(raw, user_key, read_seq)
        except CorruptionError as exc:
            raise CorruptionError(f"sstable: bad data block ({exc})", self.name,
                                  off) from None
        if r is None and N.block_seek(raw, user_key + _SEEK_TRAILER((read_seq << 8) | 0xFF),
                                      _CMP_INTERNAL) is None:
            # rare (absent key): tell "not here" from a block that ends
            # before its index key (only a damaged table does that)
            raise CorruptionError("sstable: data block ends before its index key",
                                  self.name, off)
        return r

    def blocks(self, start: bytes | None = None, reverse: bool = False
               ) -> Iterator[tuple[list[bytes], list[bytes]]]:
        """Decoded data blocks ``(internal keys, values)``, lazily.

        Forward: from the block that holds the first entry >= internal key
        ``start`` (the first block if None).  Reverse: from the block that may
        hold the last entry <= ``start`` (the last block if None) backwards;
        the first block yielded may hold only entries > ``start``.  Whole
        blocks: the caller trims.  The lists are shared: do not mutate.
        """
        return self._blocks(self._check_blocks_start(start), bool(reverse))

    def _check_blocks_start(self, start: bytes | None) -> bytes | None:
        """The argument checks of ``blocks``/``blocks_with_user_keys``:
        ``start`` as bytes (None stays None); raises ArgumentTypeError /
        InvalidArgumentError for a bad ``start`` and ClosedError on a closed
        table.  O(len(start))."""
        if start is not None:
            start = _check_bytes(start, "start")
            if len(start) < 8:
                raise InvalidArgumentError("start must be an internal key (>= 8 bytes)")
        if self._closed:
            raise ClosedError(f"table {self.name} is closed")
        return start

    def _first_block(self, start: bytes | None, reverse: bool) -> tuple[int, int]:
        """``(first block index, step)`` for a forward or reverse walk from
        internal key ``start`` (an end when None); see ``blocks``.
        O(log blocks)."""
        if not reverse:
            return (0 if start is None else self._index_seek(start)), 1
        n = self._nblocks
        return (n - 1 if start is None else min(self._index_seek(start), n - 1)), -1

    def _blocks(self, start: bytes | None, reverse: bool
                ) -> Iterator[tuple[list[bytes], list[bytes]]]:
        """Walk the data blocks from ``start`` with readahead: the first
        block is read alone (a short scan reads little); after it, blocks
        missing from the cache are read ``readahead`` bytes at a time --
        ``READAHEAD_MIN`` doubling to ``READAHEAD_MAX`` -- in one file read,
        verified and decompressed by one native ``blocks_open`` call, then
        decoded and cached one by one as the walk reaches them."""
        n = self._nblocks
        decoded = self._decoded
        index = self._index
        i, step = self._first_block(start, reverse)
        ahead: dict[int, bytes] = {}
        readahead = 0
        while 0 <= i < n:
            ix = index()
            contents = ahead.pop(i, None)
            if contents is None and readahead > 0 and not self._cached(ix, i):
                try:
                    ahead = self._read_ahead(ix, i, step, readahead)
                    contents = ahead.pop(i)
                    readahead = min(2 * readahead, READAHEAD_MAX)
                except CorruptionError:
                    # damage somewhere in the readahead: go on block by block,
                    # so the error surfaces only if the walk reaches it
                    ahead = {}
                    readahead = -1
            blk = decoded(ix, i, contents)
            yield blk.keys, blk.values  # type: ignore[misc]
            if readahead == 0:
                readahead = READAHEAD_MIN
            i += step

    def block_runs(self, start: bytes | None = None, reverse: bool = False,
                   bound: bytes | None = None) -> Iterator[tuple[list[bytes], list[bytes]]]:
        """As ``blocks`` (same start, direction and argument checks), but
        past the first block each item is a *run* of consecutive blocks --
        ``(keys, values)`` in ascending order, also when ``reverse`` -- read
        with readahead (``READAHEAD_MIN`` doubling to ``READAHEAD_MAX``),
        opened by one native ``blocks_open`` call and decoded by one native
        ``blocks_decode`` call.  Runs bypass the block cache: their blocks
        are read from the file even when cached (one read beats a split
        run) and not put in it (a scan does not evict the point reads'
        working set).  Damage inside a run makes the walk go
        on block by block, so CorruptionError surfaces only at the damaged
        block.  ``bound`` (a user key) keeps readahead inside a scan's range:
        forward, no block is read whose entries all have user keys above
        it; reverse, none whose entries are all below it.  The lists are
        shared: do not mutate."""
        if bound is not None:
            bound = _check_bytes(bound, "bound")
        return self._block_runs(self._check_blocks_start(start), bool(reverse), bound)

    def _block_runs(self, start: bytes | None, reverse: bool, bound: bytes | None
                    ) -> Iterator[tuple[list[bytes], list[bytes]]]:
        n = self._nblocks
        index = self._index
        decoded = self._decoded
        i, step = self._first_block(start, reverse)
        readahead = 0
        while 0 <= i < n:
            ix = index()
            if readahead <= 0:
                blk = decoded(ix, i)
                yield blk.keys, blk.values  # type: ignore[misc]
                i += step
                if readahead == 0:
                    readahead = READAHEAD_MIN
                continue
            try:
                got, keys, values = self._read_run(ix, i, step, readahead, bound)
            except CorruptionError:
                readahead = -1          # block by block from here
                continue
            yield keys, values
            i = (got[-1] + 1) if step > 0 else (got[0] - 1)
            readahead = min(2 * readahead, READAHEAD_MAX)

    def _read_run(self, ix: "_Index", i: int, step: int, budget: int, bound: bytes | None
                  ) -> tuple[list[int], list[bytes], list[bytes]]:
        """Blocks from ``i`` in direction ``step`` (about ``budget`` bytes on
        disk, stopping before a cached block or one beyond ``bound``) read,
        opened and decoded together: ``(block indices ascending, keys,
        values)``."""
        got, data, ends = self._read_group(ix, i, step, budget, bound, False)
        keys, values, _ = N.blocks_decode(data, ends)
        self.blocks_read += len(got)
        return got, keys, values

    def _cached(self, ix: "_Index", i: int) -> bool:
        cache = self._cache
        return cache is not None and cache.get((self._cache_id, ix.offs[i])) is not None

    def _read_ahead(self, ix: "_Index", i: int, step: int, budget: int) -> dict[int, bytes]:
        """Blocks ``i, i+step, ...`` (at least one; about ``budget`` bytes
        on disk, stopping at a block already cached) read with one file read
        and opened with one native call: ``{block index: contents}``."""
        got, data, ends = self._read_group(ix, i, step, budget)
        out = {}
        start = 0
        for k, e in zip(got, ends):
            out[k] = data[start:e]
            start = e
        return out

    def _read_group(self, ix: "_Index", i: int, step: int, budget: int,
                    bound: bytes | None = None, stop_at_cached: bool = True
                    ) -> tuple[list[int], bytes, array]:
        """The blocks of ``_read_ahead`` as ``(indices ascending, contents
        back to back, their end offsets)``; with ``bound``, stopping before
        a block wholly beyond it, and reading cached blocks too unless
        ``stop_at_cached`` (``block_runs``: re-reading a cached block from
        the file beats splitting the run)."""
        if self._closed:
            raise ClosedError(f"table {self.name} is closed")
        offs, sizes = ix.offs, ix.sizes
        n = self._nblocks
        got = [i]
        total = sizes[i] + BLOCK_TRAILER_SIZE
        j = i + step
        uks = ix.uks
        while 0 <= j < n and total + sizes[j] + BLOCK_TRAILER_SIZE <= budget \
                and not (stop_at_cached and self._cached(ix, j)) and (
                    bound is None or (uks[j - 1] <= bound if step > 0 else uks[j] >= bound)):
            got.append(j)
            total += sizes[j] + BLOCK_TRAILER_SIZE
            j += step
        got.sort()
        base = offs[got[0]]
        end = offs[got[-1]] + sizes[got[-1]] + BLOCK_TRAILER_SIZE
        buf = self._file.read(base, end - base)  # type: ignore[attr-defined]
        if len(buf) != end - base:
            raise CorruptionError(f"sstable: data blocks truncated ({len(buf)} of "
                                  f"{end - base} bytes)", self.name, base)
        data, ends = N.blocks_open(buf, array("Q", [offs[k] - base for k in got]),
                                   array("Q", [sizes[k] for k in got]), self._verify,
                                   self.name, base)
        self.blocks_loaded += len(got)
        return got, data, ends

    def blocks_with_user_keys(self, start: bytes | None = None, reverse: bool = False
                              ) -> Iterator[tuple[list[bytes], list[bytes], list[bytes]]]:
        """As ``blocks`` but yields ``(keys, values, user_keys)``; the user-key
        lists are built once per cached block (shared; do not mutate)."""
        return self._blocks_uk(self._check_blocks_start(start), bool(reverse))

    def _blocks_uk(self, start: bytes | None, reverse: bool
                   ) -> Iterator[tuple[list[bytes], list[bytes], list[bytes]]]:
        n = self._nblocks
        index = self._index
        i, step = self._first_block(start, reverse)
        decoded = self._decoded
        while 0 <= i < n:
            blk = decoded(index(), i)
            uks = blk.ukeys
            if uks is None:
                uks = blk.user_keys()
            yield blk.keys, blk.values, uks  # type: ignore[misc]
            i += step

    def entries(self, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Point entries ``(internal key, value)`` in internal order from the
        first one >= internal key ``start``.  O(1) per entry."""
        it = self.blocks(start)
        return self._entries(it, start)

    @staticmethod
    def _entries(it: Iterator[tuple[list[bytes], list[bytes]]], start: bytes | None
                 ) -> Iterator[tuple[bytes, bytes]]:
        first = True
        for keys, values in it:
            j = 0
            if first and start is not None:
                lo, hi = 0, len(keys)
                while lo < hi:               # first key >= start
                    mid = (lo + hi) // 2
                    if compare_internal(keys[mid], start) < 0:
                        lo = mid + 1
                    else:
                        hi = mid
                j = lo
            first = False
            if j:
                yield from zip(keys[j:], values[j:])
            else:
                yield from zip(keys, values)

    def verify(self) -> int:
        """Check the whole table: every data block read from the file (not the
        cache) with its checksum verified, decoded, its keys internal keys of
        kind 0/1 strictly increasing across the table, each block ending in
        its index key, and the entry count equal to the properties'.  Returns
        the number of entries.  CorruptionError(name, block offset) on the
        first problem.  O(table size); used by repair and the operator tools."""
        if self._closed:
            raise ClosedError(f"table {self.name} is closed")
        ix = self._index()
        name = self.name
        count = 0
        prev: tuple[bytes, int] | None = None
        for i in range(self._nblocks):
            off, size = ix.offs[i], ix.sizes[i]
            buf = self._file.read(off, size + BLOCK_TRAILER_SIZE)  # type: ignore[attr-defined]
            blk = BlockReader(unwrap_physical_block(buf, size, name, off, True), name, off)
            keys, _ = blk.decoded()
            if not keys or keys[-1] != ix.keys[i]:
                raise CorruptionError("sstable: block does not end in its index key", name, off)
            for k in keys:
                if len(k) < 8 or k[-8] > 1:
                    raise CorruptionError("sstable: bad internal key in a data block", name, off)
                sk = (k[:-8], -int.from_bytes(k[-8:], "little"))
                if prev is not None and sk <= prev:
                    raise CorruptionError("sstable: keys out of order", name, off)
                prev = sk
            count += len(keys)
        if count != self.properties.num_entries:
            raise CorruptionError("sstable: entry count disagrees with the properties",
                                  name, self.properties.data_size)
        return count

    def approximate_offset(self, ikey: bytes) -> int:
        """File offset where entries >= internal key ``ikey`` begin (the
        offset of the block holding the first of them; ``data_size`` if none).
        O(log blocks)."""
        ikey = _check_bytes(ikey, "ikey")
        if len(ikey) < 8:
            raise InvalidArgumentError("ikey must be an internal key (>= 8 bytes)")
        i = self._index_seek(ikey)
        return self._index().offs[i] if i < self._nblocks else self.properties.data_size

    @property
    def num_data_blocks(self) -> int:
        return self._nblocks

    def block_last_keys(self) -> list[bytes]:
        """The index keys: the last internal key of each data block (shared)."""
        return self._index().keys

    def block_sizes(self) -> tuple[list[bytes], list[int]]:
        """``(last user keys, stored sizes)`` of the data blocks, in order
        (shared lists: do not modify).  O(1) once the index is loaded."""
        ix = self._index()
        return ix.uks, ix.sizes

    def raw_block_chunks(self, chunk_bytes: int = 1 << 20, start: bytes | None = None,
                         stop: bytes | None = None
                         ) -> Iterator[tuple[bytes, array, list[bytes], list[int]]]:
        """The data blocks in order, a file read of about ``chunk_bytes`` at a
        time, as ``(data, ends, last user keys, offsets)``: ``data`` holds the
        chunk's blocks verified, decompressed and back to back (block ``i``
        is ``data[ends[i-1]:ends[i]]``), with each block's last user key and
        file offset.  Nothing goes to the block cache and no per-block
        object is made (a compaction reads each block once).  With
        ``start`` / ``stop`` (user keys) only the blocks that may hold a
        user key in ``[start, stop)`` are read: the first block whose last
        user key is >= ``start`` through the first whose last user key is
        >= ``stop`` (they still hold their keys outside the range; the
        caller filters).  O(data size read) native, O(chunks) Python;
        corrupt blocks raise CorruptionError(file, offset)."""
        ix = self._index()
        offs, sizes, uks = ix.offs, ix.sizes, ix.uks
        n = self._nblocks
        i = 0
        if start is not None:
            i = bisect_left(uks, _check_bytes(start, "start"))
        if stop is not None:
            n = min(n, bisect_left(uks, _check_bytes(stop, "stop")) + 1)
        while i < n:
            if self._closed:
                raise ClosedError(f"table {self.name} is closed")
            base = offs[i]
            limit = base + chunk_bytes
            j = bisect_right(offs, limit, i + 1, n)   # blocks starting within the budget
            while j > i + 1 and offs[j - 1] + sizes[j - 1] + BLOCK_TRAILER_SIZE > limit:
                j -= 1
            end = offs[j - 1] + sizes[j - 1] + BLOCK_TRAILER_SIZE
            buf = self._file.read(base, end - base)  # type: ignore[attr-defined]
            if len(buf) != end - base:
                raise CorruptionError(f"sstable: data blocks truncated ({len(buf)} of "
                                      f"{end - base} bytes)", self.name, base)
            # every block of the chunk checked and decompressed in one native call
            rel = array("Q", offs[i:j])
            if base:
                rel = array("Q", map(base.__rsub__, rel))
            data, ends = N.blocks_open(buf, rel, array("Q", sizes[i:j]), self._verify,
                                       self.name, base)
            self.blocks_loaded += j - i
            yield data, ends, uks[i:j], offs[i:j]
            i = j

    # -- lifecycle ------------------------------------------------------------
    def close(self) -> None:
        """Close the file.  Cached blocks of this table may still serve reads
        already in flight; new reads that need the file raise ClosedError.
        Idempotent."""
        if not self._closed:
            self._closed = True
            self._file.close()  # type: ignore[attr-defined]

    @property
    def closed(self) -> bool:
        return self._closed

    def __del__(self) -> None:
        try:
            if not getattr(self, "_closed", True):
                self._closed = True
                self._file.close()  # type: ignore[attr-defined]
        except Exception:   # interpreter shutdown or an already-broken file
            pass

    def _check(self) -> None:
        """Assert invariants: index keys strictly increasing in internal
        order; contiguous block handles covering the data section."""
        ix = self._index()
        ix._check()
        keys = ix.keys
        for a, b in zip(keys, keys[1:]):
            assert compare_internal(a, b) < 0
        expect = 0
        for off, size in zip(ix.offs, ix.sizes):
            assert off == expect
            expect = off + size + BLOCK_TRAILER_SIZE
        assert expect == self.properties.data_size

    def __repr__(self) -> str:
        return (f"TableReader({self.name!r}, entries={self.properties.num_entries}, "
                f"blocks={self._nblocks})")
