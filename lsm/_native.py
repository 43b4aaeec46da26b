"""Selection of the native core: the cffi extension or the pure-Python twins.

Decided once, at import:

* ``LSM_PURE=1``            -> the twins (``lsm/_twins.py``);
* else ``from lsm import _lsm_c`` (built from ``native/`` by ``pip install``
  through ``cffi_modules``, out-of-line API mode; native/build.py);
* if that fails (or the module is a stale build lacking a C function):
  ``LSM_REQUIRE_NATIVE=1`` -> ``ImportError``; otherwise one
  ``RuntimeWarning`` and the twins.

``implementation`` is ``"native"`` or ``"python"``.  This module exports the
same functions (``FUNCTIONS``) and constants as ``lsm._twins`` with the same
parameters and identical behaviour, errors included.

The C-backed functions are thin Python wrappers over ``lib.lsm_*`` (the
leaf functions of ``native/lsm_core.h``).  Each one

1. checks the common argument shapes inline (exact ``bytes``, exact ``int``
   in range, a list/tuple whose items are all ``bytes``) and hands anything
   else to the twins' validator (``check_buffer``, ``check_int``,
   ``check_seek_args``, ``check_merge_args``, ...), which raises the
   reference error or returns the normalised arguments -- so a bad argument
   raises the very error the twin raises;
2. passes ``bytes`` straight to ``const char *`` parameters (cffi points the
   C function at the object's own storage: no copy), and lists of items as
   one ``b"".join`` buffer plus an ``array('Q')`` of lengths given through
   ``ffi.from_buffer``;
3. calls one C function.  cffi's API mode releases the GIL around every
   call; meanwhile the C code sees only immutable ``bytes`` and buffers this
   call owns (lists are flattened, i.e. snapshotted, before the call);
4. turns a negative C code into the twin's exception
   (``_twins.corruption(code, offset)``: same class, message and offset) and
   builds the result from the C outputs.

Small output parameters and scratch buffers are not allocated per call
(``ffi.new`` costs ~100 ns): they come from pools (plain lists; ``pop`` and
``append`` are atomic under the GIL), so a buffer belongs to exactly one call
at a time -- safe across threads, and across a re-entrant call made by a
finalizer on the same thread, which a ``threading.local`` buffer would not
be.  A call that raises drops its buffer (the next call allocates a new
one); buffers larger than ``_POOL_MAX_BYTES`` are never pooled.

``c_api()`` returns the C-backed namespace whatever ``LSM_PURE`` says (None
when the extension is not built): the equivalence tests compare it with the
twins.
"""

from __future__ import annotations

import importlib
import mmap
import os
import sys
import threading
import warnings
from array import array
from operator import itemgetter
from struct import unpack as _unpack_struct
from types import SimpleNamespace
from typing import Any, Optional, Sequence

from lsm import _twins
from lsm._twins import (
    CMP_BYTEWISE,
    CMP_INTERNAL,
    MERGE_COMPACT,
    MERGE_READ,
    MAX_SEQUENCE,
    check_batch_args,
    check_batch_single_args,
    check_block_encode_args,
    check_block_get_args,
    check_bloom_build_args,
    check_buffer,
    check_bytes_arg,
    check_bytes_list,
    check_int,
    check_log_args,
    check_merge_args,
    check_seek_args,
    corruption,
)

FUNCTIONS = (
    "checksum", "encode_varint", "decode_varint32", "decode_varint64",
    "block_encode", "block_decode", "block_seek", "block_get",
    "bloom_build", "bloom_may_contain", "merge",
    "log_encode_record", "batch_encode_single", "batch_encode", "user_keys",
    "blocks_unpack", "blocks_unpack_flat", "sort_entries", "table_blocks",
    "bloom_build_hashes", "merge_indices",
)

# The C functions the wrappers call (a module lacking one is a stale build).
C_FUNCTIONS = (
    "lsm_xxh64", "lsm_encode_varint", "lsm_decode_varint32", "lsm_decode_varint64",
    "lsm_block_encode", "lsm_block_decode", "lsm_block_seek", "lsm_block_get",
    "lsm_bloom_build", "lsm_bloom_may_contain", "lsm_merge", "lsm_log_encode",
    "lsm_batch_encode_single", "lsm_batch_encode", "lsm_user_keys_format",
    "lsm_blocks_unpack", "lsm_sort_entries", "lsm_table_blocks", "lsm_bloom_build_hashes",
)

__all__ = [
    "implementation", "c_api", *FUNCTIONS,
    "CMP_BYTEWISE", "CMP_INTERNAL", "MERGE_READ", "MERGE_COMPACT",
]

_M64 = (1 << 64) - 1
_U32_MAX = 0xFFFFFFFF
_MAX_RI = _twins.MAX_RESTART_INTERVAL
_MAX_BPK = _twins.MAX_BITS_PER_KEY
_LOG_BLOCK = _twins.LOG_BLOCK_SIZE
_BYTES = {bytes}
_INTS = {int}
_SEQS = (list, tuple)
_POOL_MAX_BYTES = 1 << 20   # larger scratch buffers are allocated per call
_JOIN_POOL_MAX_BYTES = 16 << 20   # blocks_unpack_flat: largest join scratch kept
# Large native outputs handed back as views (no copy under the GIL) come
# from one process-wide pool of anonymous memory maps (_VIEW_POOL): a buffer
# is reused once no view of it is alive, so its pages are faulted in once,
# not per call, and the pool's idle maps go back to the system when a DB
# closes (freed malloc memory of a multi-threaded process tends to stay
# resident).  At most _VIEW_POOL_MAX_BYTES are pooled; beyond that a buffer
# is a map of its own, unmapped when its last view dies.
_VIEW_POOL_MIN_BYTES = 64 << 10
_VIEW_POOL_MAX_BYTES = 40 << 20


class _ViewPool:
    """Reusable anonymous-map output buffers (see above).  ``take(n)``: a
    ``char[]`` cdata of at least ``n`` bytes no live view refers to;
    ``view(ptr, k)``: its first ``k`` bytes as a memoryview that keeps it
    busy until the view dies.  Thread-safe.  O(pooled buffers) per take."""

    def __init__(self, ffi: Any) -> None:
        self._ffi = ffi
        self._bufs: list[tuple[Any, Any]] = []      # (cdata, map), pooled
        self._total = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> Any:
        getrefcount = sys.getrefcount
        with self._lock:
            best = None
            for entry in self._bufs:
                ptr = entry[0]
                # 3 references: the pool's tuple, ``ptr`` and the argument
                if len(ptr) >= n and getrefcount(ptr) == 3 and (
                        best is None or len(ptr) < len(best)):
                    best = ptr
            if best is not None:
                return best
            # a quarter of headroom, so the next similar request fits
            size = -(-max(n + n // 4, _VIEW_POOL_MIN_BYTES) // _VIEW_POOL_MIN_BYTES) \
                * _VIEW_POOL_MIN_BYTES
            mm = mmap.mmap(-1, size)
            ptr = self._ffi.from_buffer("char[]", mm)
            if self._total + size <= _VIEW_POOL_MAX_BYTES:
                self._bufs.append((ptr, mm))
                self._total += size
            return ptr

    def view(self, ptr: Any, k: int) -> memoryview:
        return memoryview(self._ffi.buffer(ptr, k))

    def trim(self) -> None:
        """Drop the idle buffers (their maps are unmapped)."""
        with self._lock:
            keep = []
            for entry in self._bufs:
                ptr = entry[0]
                if sys.getrefcount(ptr) > 3:     # as in take: a view holds it
                    keep.append(entry)
            self._total = sum(len(e[0]) for e in keep)
            self._bufs = keep

    def _check(self) -> None:
        assert self._total == sum(len(e[0]) for e in self._bufs) <= _VIEW_POOL_MAX_BYTES


_VIEW_POOL: Optional[_ViewPool] = None


def _view_pool(ffi: Any) -> _ViewPool:
    global _VIEW_POOL
    if _VIEW_POOL is None:
        _VIEW_POOL = _ViewPool(ffi)
    return _VIEW_POOL


def trim_buffers() -> None:
    """Return the idle pooled output buffers to the system (DB.close)."""
    if _VIEW_POOL is not None:
        _VIEW_POOL.trim()
_SCRATCH_MIN = 4096

_c_namespace: Optional[SimpleNamespace] = None
_c_import_error: Optional[BaseException] = None
_c_tried = False


def _error(rc: int, offset: int, run: Optional[int] = None) -> Exception:
    """The twins' exception for a negative C return code."""
    if rc == _twins.ERR_NO_MEMORY:
        return MemoryError("native core: out of memory")
    if rc == _twins.ERR_TOO_LARGE:
        return _twins.InvalidArgumentError(_twins.TOO_LARGE_MESSAGE)
    if rc in _twins.ERRORS:
        return corruption(rc, offset, run)
    return RuntimeError(f"native core returned unknown code {rc}")  # a bug, not bad input


def require_functions(lib: Any, names: Sequence[str], rebuild: str = "python native/build.py"
                      ) -> None:
    """ImportError naming what is missing when the cffi ``lib`` lacks one of
    ``names`` (a stale build)."""
    missing = [name for name in names if not hasattr(lib, name)]
    if missing:
        raise ImportError(f"lsm._lsm_c is a stale build (no {', '.join(missing)}); "
                          f"rebuild it: {rebuild}")


def _make_c_api(mod: Any) -> SimpleNamespace:
    """Build the C-backed functions over the cffi module ``mod`` (its
    ``ffi`` and ``lib``).  Raises ImportError for a stale build."""
    ffi = getattr(mod, "ffi", None)
    lib = getattr(mod, "lib", None)
    if ffi is None or lib is None:
        raise ImportError("lsm._lsm_c is a stale build (not the cffi module of native/build.py); "
                          "rebuild it: pip install -e .")
    require_functions(lib, C_FUNCTIONS, "pip install -e .")

    alloc = ffi.new_allocator(should_clear_after_alloc=False)
    from_buffer = ffi.from_buffer
    cunpack = ffi.unpack
    cbuffer = ffi.buffer
    NULL = ffi.NULL

    c_xxh64 = lib.lsm_xxh64
    c_encode_varint = lib.lsm_encode_varint
    c_decode_varint32 = lib.lsm_decode_varint32
    c_decode_varint64 = lib.lsm_decode_varint64
    c_block_encode = lib.lsm_block_encode
    c_block_decode = lib.lsm_block_decode
    c_block_seek = lib.lsm_block_seek
    c_block_get = lib.lsm_block_get
    c_bloom_build = lib.lsm_bloom_build
    c_bloom_may_contain = lib.lsm_bloom_may_contain
    c_merge = lib.lsm_merge
    c_log_encode = lib.lsm_log_encode
    c_batch_encode_single = lib.lsm_batch_encode_single
    c_batch_encode = lib.lsm_batch_encode
    c_user_keys_format = lib.lsm_user_keys_format

    # Pools (see the module docstring): size_t[8] / uint64_t[8] out-params,
    # and char[] scratch buffers of at least _SCRATCH_MIN bytes.
    sizes: list = []
    u64s: list = []
    bufs: list = []

    def take_sizes() -> Any:
        return sizes.pop() if sizes else alloc("size_t[8]")

    def new_buf(n: int) -> Any:
        """A new char[] of at least ``n`` bytes (a power of two)."""
        size = _SCRATCH_MIN
        while size < n:
            size *= 2
        return alloc("char[]", size)

    def take_buf(n: int) -> Any:
        """A char[] of at least ``n`` bytes, from the pool if it has one.
        (The hot wrappers inline this.)"""
        if bufs:
            buf = bufs.pop()
            if len(buf) >= n:
                return buf
        return new_buf(n)

    def give_buf(buf: Any) -> None:
        if len(buf) <= _POOL_MAX_BYTES:
            bufs.append(buf)

    def u64_array(values: Any) -> Any:
        return from_buffer("uint64_t[]", values)

    # ------------------------------------------------- checksum, varints

    def checksum(data: bytes, seed: int = 0) -> int:
        if type(seed) is not int or seed < 0 or seed > _M64:
            check_int(seed, "seed", 0, _M64)
        if type(data) is not bytes:
            if type(data) is memoryview and data.c_contiguous and data.itemsize == 1:
                # a slice of a larger buffer (a WAL fragment): no copy
                return c_xxh64(from_buffer(data), len(data), seed) if len(data) else \
                    c_xxh64(b"", 0, seed)
            data = check_buffer(data, "data")
        return c_xxh64(data, len(data), seed)

    small = [bytes((i,)) for i in range(0x80)]

    def encode_varint(value: int) -> bytes:
        # Values below 2**14 (1 or 2 bytes) are built here without a C call:
        # the cffi round trip (~370 ns) costs more than the twin (~280 ns).
        if type(value) is int and 0 <= value < 0x4000:
            if value < 0x80:
                return small[value]
            return bytes(((value & 0x7F) | 0x80, value >> 7))
        check_int(value, "value", 0, _M64)
        buf = bufs.pop() if bufs else new_buf(10)
        out = cunpack(buf, c_encode_varint(value, buf))
        bufs.append(buf)
        return out

    def decode_varint32(buf: bytes, offset: int = 0) -> tuple[int, int]:
        if type(buf) is not bytes:
            buf = check_buffer(buf, "buf")
        if type(offset) is not int or offset < 0 or offset > len(buf):
            check_int(offset, "offset", 0, len(buf))
        r = c_decode_varint32(buf, len(buf), offset)
        if r < 0:
            raise _error(r, offset)
        return r >> 3, offset + (r & 7)

    def decode_varint64(buf: bytes, offset: int = 0) -> tuple[int, int]:
        if type(buf) is not bytes:
            buf = check_buffer(buf, "buf")
        if type(offset) is not int or offset < 0 or offset > len(buf):
            check_int(offset, "offset", 0, len(buf))
        res = u64s.pop() if u64s else alloc("uint64_t[8]")
        rc = c_decode_varint64(buf, len(buf), offset, res)
        if rc < 0:
            raise _error(rc, offset)
        out = res[0], res[1]
        u64s.append(res)
        return out

    # --------------------------------------------------------- blocks

    def block_encode(keys: Sequence[bytes], values: Sequence[bytes],
                     restart_interval: int) -> bytes:
        if not (type(keys) in _SEQS and type(values) in _SEQS and len(keys) == len(values)
                and type(restart_interval) is int and 1 <= restart_interval <= _MAX_RI
                and (not keys or {*map(type, keys)} == _BYTES)
                and (not values or {*map(type, values)} == _BYTES)):
            check_block_encode_args(keys, values, restart_interval)
        keys = tuple(keys)      # one snapshot: the join and the lengths agree
        values = tuple(values)
        n = len(keys)
        if n != len(values):
            raise RuntimeError("block_encode: lists changed during the call")
        kbuf = b"".join(keys)
        vbuf = b"".join(values)
        klens = array("Q", map(len, keys))
        vlens = array("Q", map(len, values))
        nrestarts = (n + restart_interval - 1) // restart_interval if n else 1
        cap = 15 * n + len(kbuf) + len(vbuf) + 4 * nrestarts + 4   # lsm_block_encode_bound
        out = take_buf(cap)
        res = take_sizes()
        rc = c_block_encode(kbuf, len(kbuf), u64_array(klens), vbuf, len(vbuf),
                            u64_array(vlens), n, restart_interval, out, cap, res)
        if rc < 0:
            if rc == _twins.ERR_TOO_LARGE:
                check_block_encode_args(keys, values, restart_interval)  # a length >= 2**32
            raise _error(rc, 0)
        block = cunpack(out, res[0])
        give_buf(out)
        sizes.append(res)
        return block

    def block_decode(block: bytes) -> tuple[list[bytes], list[bytes]]:
        if type(block) is not bytes:
            block = check_buffer(block, "block")
        n = len(block)
        info = sizes.pop() if sizes else alloc("size_t[8]")
        out = bufs.pop() if bufs else new_buf(2 * n)
        if len(out) < 2 * n:
            out = new_buf(2 * n)
        fmt = bufs.pop() if bufs else new_buf(3 * n + 64)
        if len(fmt) < 3 * n + 64:
            fmt = new_buf(3 * n + 64)
        info[0] = len(out)
        info[1] = len(fmt)
        rc = c_block_decode(block, n, info, out, fmt)
        if rc == _twins.ERR_TOO_LARGE:
            # the keys expand beyond the guess: measure (and validate), then
            # decode into buffers of the exact sizes
            rc = c_block_decode(block, n, info, ffi.NULL, ffi.NULL)
            if rc < 0:
                raise _error(rc, info[2])
            give_buf(out)
            give_buf(fmt)
            out = take_buf(info[1] + info[3])
            fmt = take_buf(info[4] + 44)
            info[0] = len(out)
            info[1] = len(fmt)
            rc = c_block_decode(block, n, info, out, fmt)
        if rc < 0:
            raise _error(rc, info[2])
        if info[0] == 0:
            keys: list[bytes] = []
            values: list[bytes] = []
        else:
            # one C-level call cuts key0 value0 key1 value1 ... into bytes
            items = _unpack_struct(cunpack(fmt, info[4]), cbuffer(out, info[1] + info[3]))
            keys = list(items[0::2])
            values = list(items[1::2])
        give_buf(out)
        give_buf(fmt)
        sizes.append(info)
        return keys, values

    def block_seek(block: bytes, target: bytes, cmp: int) -> Optional[tuple[int, bytes, bytes]]:
        if (type(block) is not bytes or type(target) is not bytes or type(cmp) is not int
                or not (cmp == 0 or (cmp == 1 and len(target) >= 8))):
            block = check_seek_args(block, target, cmp)
        n = len(block)
        keybuf = bufs.pop() if bufs else new_buf(n)
        if len(keybuf) < n:
            keybuf = new_buf(n)
        info = sizes.pop() if sizes else alloc("size_t[8]")
        rc = c_block_seek(block, n, target, len(target), cmp, keybuf, info)
        if rc < 0:
            raise _error(rc, info[4])
        if rc == 0:
            res = None
        else:
            res = info[0], cunpack(keybuf, info[1]), block[info[2]:info[3]]
        if len(keybuf) <= _POOL_MAX_BYTES:
            bufs.append(keybuf)
        sizes.append(info)
        return res

    def block_get(block: bytes, user_key: bytes, read_seq: int) -> Optional[tuple[int, int, bytes]]:
        if (type(block) is not bytes or type(user_key) is not bytes or type(read_seq) is not int
                or read_seq < 0 or read_seq > MAX_SEQUENCE):
            block = check_block_get_args(block, user_key, read_seq)
        n = len(block)
        need = n + len(user_key) + 8
        scratch = bufs.pop() if bufs else new_buf(need)
        if len(scratch) < need:
            scratch = new_buf(need)
        info = u64s.pop() if u64s else alloc("uint64_t[8]")
        rc = c_block_get(block, n, user_key, len(user_key), read_seq, scratch, info)
        if rc < 0:
            raise _error(rc, info[3])
        if rc == 0:
            res = None
        else:
            t = info[0]
            res = t >> 8, t & 0xFF, block[info[1]:info[2]]
        if len(scratch) <= _POOL_MAX_BYTES:
            bufs.append(scratch)
        u64s.append(info)
        return res

    # ---------------------------------------------------------- bloom

    def bloom_build(keys: Sequence[bytes], bits_per_key: int) -> bytes:
        if not (type(keys) in _SEQS and (not keys or {*map(type, keys)} == _BYTES)
                and type(bits_per_key) is int and 1 <= bits_per_key <= _MAX_BPK):
            check_bloom_build_args(keys, bits_per_key)
        keys = tuple(keys)
        kbuf = b"".join(keys)
        klens = array("Q", map(len, keys))
        nbytes = _twins.bloom_size(len(keys), bits_per_key)[0]
        out = take_buf(nbytes + 1)
        rc = c_bloom_build(kbuf, len(kbuf), u64_array(klens), len(keys), bits_per_key, out)
        if rc < 0:
            raise _error(rc, 0)
        f = cunpack(out, nbytes + 1)
        give_buf(out)
        return f

    def bloom_may_contain(filter_block: bytes, key: bytes) -> bool:
        if type(filter_block) is not bytes:
            filter_block = check_buffer(filter_block, "filter")
        if type(key) is not bytes:
            check_bytes_arg(key, "key")
        rc = c_bloom_may_contain(filter_block, len(filter_block), key, len(key))
        if rc < 0:
            raise _error(rc, 0)
        return rc == 1

    # ------------------------------------------------- internal keys

    def user_keys(keys: Sequence[bytes]) -> list[bytes]:
        if not (type(keys) in _SEQS and (not keys or {*map(type, keys)} == _BYTES)):
            check_bytes_list(keys, "keys")
        keys = tuple(keys)
        n = len(keys)
        if n == 0:
            return []
        kbuf = b"".join(keys)
        klens = array("Q", map(len, keys))
        fmt = take_buf(25 * n + 1)
        err = take_sizes()
        rc = c_user_keys_format(u64_array(klens), n, fmt, err)
        if rc < 0:
            raise _error(rc, err[0])
        # one C-level call cuts the user keys out of the concatenation
        out = list(_unpack_struct(cunpack(fmt, rc), kbuf))
        give_buf(fmt)
        sizes.append(err)
        return out

    # ---------------------------------------------------------- merge

    def merge(runs: Sequence[tuple[Sequence[bytes], Sequence[bytes]]], read_seq: int,
              snapshots: Sequence[int] = (), mode: int = MERGE_READ,
              bottom: bool = False) -> tuple[list[bytes], list[bytes]]:
        snaps = snapshots
        if not _merge_args_ok(runs, read_seq, snapshots, mode, bottom):
            runs, snaps = check_merge_args(runs, read_seq, snapshots, mode, bottom)
        return merge_trusted(runs, read_seq, snaps, mode, bottom)

    def merge_trusted(runs: Sequence[tuple[Sequence[bytes], Sequence[bytes]]], read_seq: int,
                      snaps: Sequence[int] = (), mode: int = MERGE_READ,
                      bottom: bool = False) -> tuple[list[bytes], list[bytes]]:
        """``merge`` without the argument checks, for the engine's own calls
        with arguments of the exact shape ``merge`` accepts unchanged.
        Requires: runs a list of (list of bytes, list of bytes) of equal
        lengths; read_seq and the sorted snapshots ints in [0, 2**56-1]; mode
        MERGE_READ or MERGE_COMPACT; bottom a bool."""
        # one snapshot of every run: the buffers, lengths and objects agree
        all_keys: list = []
        all_vals: list = []
        starts = array("Q", [0])
        for run_keys, run_vals in runs:
            all_keys += run_keys
            all_vals += run_vals
            if len(all_keys) != len(all_vals):
                raise RuntimeError("merge: runs changed during the call")
            starts.append(len(all_keys))
        total = len(all_keys)
        if total == 0:
            return [], []
        kbuf = b"".join(all_keys)
        klens = u64_array(array("Q", map(len, all_keys)))
        c_starts = u64_array(starts)
        c_snaps = u64_array(array("Q", snaps or (0,)))
        out = alloc("uint64_t[]", total)
        err = take_sizes()
        flag = 1 if bottom else 0
        # only range tombstones need their values: try without them first
        rc = c_merge(len(starts) - 1, c_starts, kbuf, len(kbuf), klens, NULL, 0, NULL,
                     read_seq, c_snaps, len(snaps), mode, flag, out, err)
        if rc == _twins.ERR_NEED_VALUES:
            vbuf = b"".join(all_vals)
            rc = c_merge(len(starts) - 1, c_starts, kbuf, len(kbuf), klens,
                         vbuf, len(vbuf), u64_array(array("Q", map(len, all_vals))),
                         read_seq, c_snaps, len(snaps), mode, flag, out, err)
        if rc < 0:
            raise _error(rc, err[1], err[0])
        sizes.append(err)
        if rc == 0:
            return [], []
        if rc == 1:
            return [all_keys[out[0]]], [all_vals[out[0]]]
        pick = itemgetter(*cunpack(out, rc))
        return list(pick(all_keys)), list(pick(all_vals))

    # --------------------------------------------- WAL record, batches

    def log_encode_record(payload: bytes, block_offset: int) -> bytes:
        if (type(payload) is not bytes or type(block_offset) is not int
                or block_offset < 0 or block_offset >= _LOG_BLOCK):
            payload = check_log_args(payload, block_offset)
        n = len(payload)
        out = take_buf(n + 13 * (n // (_LOG_BLOCK - 7) + 2))   # lsm_log_encode_bound
        rec = cunpack(out, c_log_encode(payload, n, block_offset, out))
        give_buf(out)
        return rec

    def batch_encode_single(sequence: int, kind: int, key: bytes, value: bytes) -> bytes:
        if not (type(sequence) is int and 0 <= sequence <= MAX_SEQUENCE
                and type(kind) is int and type(key) is bytes and type(value) is bytes
                and (kind == 1 or (kind == 0 and not value) or (kind == 2 and key < value))
                and len(key) <= _U32_MAX and len(value) <= _U32_MAX):
            check_batch_single_args(sequence, kind, key, value)
        out = take_buf(23 + len(key) + len(value))
        rec = cunpack(out, c_batch_encode_single(sequence, kind, key, len(key), value,
                                                 len(value), out))
        give_buf(out)
        return rec

    def batch_encode(sequence: int, items: Sequence[tuple[int, bytes, bytes]]) -> bytes:
        n = len(items) if type(items) in _SEQS else 0
        if not (type(sequence) is int and type(items) in _SEQS and 0 <= sequence
                and sequence + max(n - 1, 0) <= MAX_SEQUENCE):
            check_batch_args(sequence, items)
        items = tuple(items)
        n = len(items)
        if n == 0:
            kinds = keys = vals = ()
        elif {*map(type, items)} == {tuple} and {*map(len, items)} == {3}:
            kinds, keys, vals = zip(*items)
            if not ({*map(type, kinds)} == _INTS and {*map(type, keys)} == _BYTES
                    and {*map(type, vals)} == _BYTES and min(kinds) >= 0 and max(kinds) <= 2):
                check_batch_args(sequence, items)   # raises, or accepts subclasses
        else:
            check_batch_args(sequence, items)
            kinds, keys, vals = zip(*items)
        kbuf = b"".join(keys)
        vbuf = b"".join(vals)
        klens = array("Q", map(len, keys))
        vlens = array("Q", map(len, vals))
        cap = 12 + 11 * n + len(kbuf) + len(vbuf)
        out = take_buf(cap)
        rc = c_batch_encode(sequence, n, bytes(kinds), kbuf, len(kbuf), u64_array(klens),
                            vbuf, len(vbuf), u64_array(vlens), out, cap)
        if rc < 0:
            if rc == _twins.ERR_INVALID:
                check_batch_args(sequence, items)   # raises the reference error
            raise _error(rc, 0)
        batch = cunpack(out, rc)
        give_buf(out)
        return batch

    return SimpleNamespace(
        checksum=checksum, encode_varint=encode_varint,
        decode_varint32=decode_varint32, decode_varint64=decode_varint64,
        block_encode=block_encode, block_decode=block_decode, block_seek=block_seek,
        block_get=block_get, bloom_build=bloom_build, bloom_may_contain=bloom_may_contain,
        merge=merge, merge_trusted=merge_trusted, log_encode_record=log_encode_record,
        batch_encode_single=batch_encode_single, batch_encode=batch_encode,
        user_keys=user_keys,
        CMP_BYTEWISE=CMP_BYTEWISE, CMP_INTERNAL=CMP_INTERNAL,
        MERGE_READ=MERGE_READ, MERGE_COMPACT=MERGE_COMPACT,
        implementation="native", module=mod, ffi=ffi, lib=lib,
    )


def _merge_args_ok(runs: Any, read_seq: Any, snapshots: Any, mode: Any, bottom: Any) -> bool:
    """The common valid shape of merge's arguments (exact types): True means
    ``check_merge_args`` would accept them unchanged.  O(entries)."""
    if type(runs) not in _SEQS or type(read_seq) is not int or not 0 <= read_seq <= MAX_SEQUENCE:
        return False
    if type(mode) is not int or not (mode == 0 or mode == 1) or type(bottom) is not bool:
        return False
    if type(snapshots) not in _SEQS:
        return False
    if snapshots:
        if {*map(type, snapshots)} != _INTS or snapshots[0] < 0 or snapshots[-1] > MAX_SEQUENCE:
            return False
        if any(a > b for a, b in zip(snapshots, snapshots[1:])):
            return False
    for run in runs:
        if type(run) not in _SEQS or len(run) != 2:
            return False
        keys, values = run
        if type(keys) not in _SEQS or type(values) not in _SEQS or len(keys) != len(values):
            return False
        if keys and ({*map(type, keys)} != _BYTES or {*map(type, values)} != _BYTES):
            return False
    return True


# --------------------------------------------------------------------------
# Write path (native/table.c): flush and compaction over packed runs.

pack = _twins.pack
unpack_items = _twins.unpack_items
TableChunk = _twins.TableChunk
Grandparents = _twins.Grandparents


def _add_write_api(ns: SimpleNamespace) -> SimpleNamespace:
    """Add the C-backed write-path functions (``blocks_unpack``,
    ``sort_entries``, ``table_blocks``, ``bloom_build_hashes``,
    ``merge_indices``) to the namespace ``ns`` of ``_make_c_api``."""
    ffi, lib = ns.ffi, ns.lib
    alloc = ffi.new_allocator(should_clear_after_alloc=False)
    from_buffer = ffi.from_buffer
    memmove = ffi.memmove
    vpool = _view_pool(ffi)
    NULL = ffi.NULL
    c_unpack = lib.lsm_blocks_unpack
    c_sort = lib.lsm_sort_entries
    c_table_blocks = lib.lsm_table_blocks
    c_bloom_hashes = lib.lsm_bloom_build_hashes
    c_merge = lib.lsm_merge
    check_packed = _twins.check_packed

    def u64(values: Any) -> Any:
        return from_buffer("uint64_t[]", values) if len(values) else NULL

    def cbuf(b: Any) -> Any:
        """``b`` for a ``const char *`` parameter: bytes as they are, a
        memoryview through ``from_buffer`` (no copy)."""
        return b if type(b) is bytes else from_buffer(b)

    def blocks_unpack(runs: Sequence[Sequence[bytes]], lo: Optional[bytes] = None,
                      hi: Optional[bytes] = None) -> tuple:
        _twins.check_unpack_args(runs, lo, hi)
        blocks = [b for run in runs for b in run]
        buf = b"".join(blocks)
        return _unpack(buf, len(buf), array("Q", map(len, blocks)),
                       array("Q", map(len, runs)), lo, hi)

    joins: list = []      # scratch for joining the runs (reused: no page faults)

    def blocks_unpack_flat(bufs: Any, block_lens: Any, run_blocks: Any,
                           lo: Optional[bytes] = None, hi: Optional[bytes] = None) -> tuple:
        bufs = _twins.check_unpack_flat_args(bufs, block_lens, run_blocks, lo, hi)
        if len(bufs) == 1:
            return _unpack(cbuf(bufs[0]), len(bufs[0]), block_lens, run_blocks, lo, hi)
        total = sum(map(len, bufs))
        scratch = joins.pop() if joins else None
        if scratch is None or len(scratch) < total:
            scratch = alloc("char[]", max(total, 1 << 20))
        try:
            off = 0
            for b in bufs:
                n = len(b)
                if n:
                    memmove(scratch + off, b, n)
                    off += n
            return _unpack(scratch, total, block_lens, run_blocks, lo, hi)
        finally:
            if len(scratch) <= _JOIN_POOL_MAX_BYTES and len(joins) < 2:
                joins.append(scratch)

    def _unpack(src: Any, nbytes: int, blens: Any, nblocks: Any, lo: Optional[bytes],
                hi: Optional[bytes]) -> tuple:
        """The two-pass C unpack of ``nbytes`` of blocks at ``src`` (bytes
        or a cdata pointer).  Requires: arguments validated."""
        bounds = (0 if lo is None else 1) | (0 if hi is None else 2)
        info = alloc("uint64_t[5]")
        nruns = len(nblocks)
        args = (src, nbytes, u64(blens), len(blens), nruns, u64(nblocks),
                lo if lo is not None else NULL, len(lo) if lo is not None else 0,
                hi if hi is not None else NULL, len(hi) if hi is not None else 0, bounds)
        rc = c_unpack(*args, NULL, NULL, NULL, NULL, NULL, info)
        if rc == 0:
            n, kb, vb = info[0], info[1], info[2]
            kout = vpool.take(kb + 1)      # not cleared: C writes every byte used
            vout = vpool.take(vb + 1)
            klens = array("Q", bytes(8 * n))
            vlens = array("Q", bytes(8 * n))
            starts = array("Q", bytes(8 * (nruns + 1)))
            rc = c_unpack(*args, kout, u64(klens), vout, u64(vlens), u64(starts), info)
        if rc < 0:
            if rc in (_twins.ERR_NO_MEMORY, _twins.ERR_TOO_LARGE):
                raise _error(rc, 0)
            raise _twins.unpack_corruption(rc, int(info[3]), int(info[4]))
        # views over the native outputs: no copy (and no page faults for a
        # fresh copy) while the GIL is held
        return (vpool.view(kout, kb), klens, vpool.view(vout, vb), vlens), starts

    def sort_entries(packed: Any) -> Any:
        kbuf, klens, vbuf, vlens = check_packed(packed)
        n = len(klens)
        order = array("Q", bytes(8 * n))
        err = alloc("size_t[1]")
        rc = c_sort(kbuf, len(kbuf), u64(klens), vbuf, len(vbuf), u64(vlens), n,
                    u64(order), err)
        if rc < 0:
            raise _error(rc, err[0])
        return order

    def table_blocks(packed: Any, layout: int, order: Any, pos: int, n_order: int,
                     block_size: int, restart_interval: int, limit: int,
                     prev_key: Optional[bytes], gps: Optional[Any]) -> Any:
        kbuf, klens, vbuf, vlens = _twins.check_table_blocks_args(
            packed, layout, order, pos, n_order, block_size, restart_interval, limit,
            prev_key, gps, views=True)
        m = n_order - pos
        cap = len(kbuf) + len(vbuf) + 32 * m + 16
        out = vpool.take(cap)
        blocks = array("Q", bytes(24 * m))
        last = alloc("char[]", len(kbuf) + 8 * m + 1)
        hashes = array("Q", bytes(8 * m))
        info = alloc("uint64_t[12]")
        if gps is not None:
            state = array("Q", gps.state)
            gargs = (gps.keys, len(gps.keys), u64(gps.key_lens), u64(gps.sizes),
                     len(gps.key_lens), gps.limit, u64(state))
        else:
            state = array("Q", [0, 0, 0])
            gargs = (NULL, 0, NULL, NULL, 0, 0, u64(state))
        rc = c_table_blocks(cbuf(kbuf), len(kbuf), u64(klens), cbuf(vbuf), len(vbuf),
                            u64(vlens),
                            len(klens), layout, u64(order) if order is not None else NULL,
                            pos, n_order, block_size, restart_interval, limit,
                            prev_key if prev_key is not None else NULL,
                            len(prev_key) if prev_key is not None else 0,
                            1 if prev_key is not None else 0, *gargs,
                            out, cap, u64(blocks), last, u64(hashes), info)
        if rc < 0:
            if rc == _twins.ERR_INVALID:
                i = int(info[9])
                g = order[i] if order is not None else i
                raise _twins.InvalidArgumentError(
                    f"table_blocks: entry index {g} at position {i} is out of range")
            raise _error(rc, int(info[9]))
        if gps is not None:
            gps.state = list(state)
        nb = int(info[1])
        ends = blocks[0:3 * nb:3].tolist()
        positions = blocks[1:3 * nb:3].tolist()
        lkbuf = ffi.unpack(last, int(info[11]))
        lk: list[bytes] = []
        o = 0
        for ln in blocks[2:3 * nb:3]:
            lk.append(lkbuf[o:o + ln])
            o += ln
        del hashes[int(info[2]):]
        taken = int(info[0]) - pos
        # a view over the output: no copy under the GIL
        data = vpool.view(out, int(info[10]))
        # the first entry of a block shares nothing: its key is whole at the
        # start of the data (three varint32 lengths, then the key)
        first = _twins.first_block_key(data) if taken else b""
        return TableChunk(data, ends, positions, lk, hashes,
                          (int(info[0]), int(info[8]), int(info[3]), int(info[4]),
                           int(info[5]), int(info[6]), int(info[7])), first, taken)

    def bloom_build_hashes(hashes: Any, bits_per_key: int) -> bytes:
        if not isinstance(hashes, array) or hashes.typecode != "Q":
            raise _twins.ArgumentTypeError("hashes must be an array('Q')")
        check_int(bits_per_key, "bits_per_key", 1, _MAX_BPK)
        nbytes = max((len(hashes) * bits_per_key + 7) // 8, 8)
        out = alloc("char[]", nbytes + 1)
        c_bloom_hashes(u64(hashes), len(hashes), bits_per_key, out)
        return ffi.unpack(out, nbytes + 1)

    def merge_indices(packed: Any, run_starts: Any, read_seq: int, snapshots: Sequence[int] = (),
                      mode: int = MERGE_READ, bottom: bool = False) -> Any:
        kbuf, klens, vbuf, vlens = check_packed(packed, views=True)
        if not isinstance(run_starts, array) or run_starts.typecode != "Q" or not run_starts:
            raise _twins.ArgumentTypeError("run_starts must be a non-empty array('Q')")
        if run_starts[0] != 0 or run_starts[-1] != len(klens) or any(
                a > b for a, b in zip(run_starts, run_starts[1:])):
            raise _twins.InvalidArgumentError(
                "run_starts must ascend from 0 to the number of entries")
        snaps = snapshots
        if not _merge_scalars_ok(read_seq, snaps, mode, bottom):
            # the twin's validator raises the reference error (on the
            # caller's object: a str or set must be rejected, not listed)
            _, snaps = check_merge_args([], read_seq, snapshots, mode, bottom)
        total = len(klens)
        if total == 0:
            return array("Q")
        out = array("Q", bytes(8 * total))
        err = alloc("size_t[2]")
        rc = c_merge(len(run_starts) - 1, u64(run_starts), cbuf(kbuf), len(kbuf), u64(klens),
                     cbuf(vbuf), len(vbuf), u64(vlens), read_seq, u64(array("Q", snaps or [0])),
                     len(snaps), mode, 1 if bottom else 0, u64(out), err)
        if rc < 0:
            raise _error(rc, err[1], err[0])
        del out[rc:]
        return out

    ns.blocks_unpack = blocks_unpack
    ns.blocks_unpack_flat = blocks_unpack_flat
    ns.sort_entries = sort_entries
    ns.table_blocks = table_blocks
    ns.bloom_build_hashes = bloom_build_hashes
    ns.merge_indices = merge_indices
    return ns


def _merge_scalars_ok(read_seq: Any, snaps: Any, mode: Any, bottom: Any) -> bool:
    """merge_indices' scalar arguments have the common valid shape."""
    if type(snaps) not in _SEQS:
        return False
    if type(read_seq) is not int or not 0 <= read_seq <= MAX_SEQUENCE:
        return False
    if type(mode) is not int or mode not in (0, 1) or type(bottom) is not bool:
        return False
    if snaps and ({*map(type, snaps)} != _INTS or snaps[0] < 0 or snaps[-1] > MAX_SEQUENCE
                  or any(a > b for a, b in zip(snaps, snaps[1:]))):
        return False
    return True


def c_api() -> Optional[SimpleNamespace]:
    """The C-backed functions (ignoring ``LSM_PURE``), or None when the
    extension ``lsm._lsm_c`` is not built.  Loaded once."""
    global _c_namespace, _c_import_error, _c_tried
    if not _c_tried:
        _c_tried = True
        try:
            _c_namespace = _add_write_api(_make_c_api(importlib.import_module("lsm._lsm_c")))
        except ImportError as exc:
            _c_import_error = exc
    return _c_namespace


def _select() -> Any:
    if os.environ.get("LSM_PURE") == "1":
        return _twins
    api = c_api()
    if api is not None:
        return api
    if os.environ.get("LSM_REQUIRE_NATIVE") == "1":
        raise ImportError(
            "LSM_REQUIRE_NATIVE=1 but the C extension lsm._lsm_c is not built "
            f"({_c_import_error}); reinstall with a C compiler: pip install -e .")
    warnings.warn(
        "superdisk-lsm: the C extension lsm._lsm_c is not built "
        f"({_c_import_error}); running on the slower pure-Python twins. "
        "Set LSM_PURE=1 to silence this warning.", RuntimeWarning, stacklevel=3)
    return _twins


_impl = _select()
implementation: str = "native" if _impl is not _twins else "python"

checksum = _impl.checksum
encode_varint = _impl.encode_varint
decode_varint32 = _impl.decode_varint32
decode_varint64 = _impl.decode_varint64
block_encode = _impl.block_encode
block_decode = _impl.block_decode
block_seek = _impl.block_seek
bloom_build = _impl.bloom_build
bloom_may_contain = _impl.bloom_may_contain
merge = _impl.merge
block_get = _impl.block_get
log_encode_record = _impl.log_encode_record
batch_encode_single = _impl.batch_encode_single
batch_encode = _impl.batch_encode
user_keys = _impl.user_keys


# the engine's own merge calls (iterators): the C merge without the argument
# checks; the twin checks as always
merge_trusted = getattr(_impl, "merge_trusted", _impl.merge)

blocks_unpack = _impl.blocks_unpack
blocks_unpack_flat = _impl.blocks_unpack_flat
sort_entries = _impl.sort_entries
table_blocks = _impl.table_blocks
bloom_build_hashes = _impl.bloom_build_hashes
merge_indices = _impl.merge_indices


# ===================================================================== read path
# (reader.py / iterators.py; C: native/read.c).  Kept apart from FUNCTIONS /
# C_FUNCTIONS (whose lists the selection tests pin): READ_FUNCTIONS are
# exported here like the others, READ_C_FUNCTIONS are checked the same way
# (a build lacking one makes c_api() fall back as for a stale build).

READ_FUNCTIONS = ("tables_probe", "blocks_decode")
# the probe blob encoder is plain Python in both implementations
probe_blob_encode = _twins.probe_blob_encode
READ_C_FUNCTIONS = ("lsm_tables_probe", "lsm_blocks_decode")
__all__ += list(READ_FUNCTIONS)


def _make_read_api(api: Any) -> None:
    """Add the C-backed read-path functions to namespace ``api``.  Raises
    ImportError for a build lacking one of READ_C_FUNCTIONS."""
    ffi, lib = api.ffi, api.lib
    require_functions(lib, READ_C_FUNCTIONS)
    c_tables_probe = lib.lsm_tables_probe
    from_buffer = ffi.from_buffer
    new = ffi.new

    def tables_probe(tables: Sequence[bytes], groups: Sequence[tuple[int, int]],
                     user_key: bytes, read_seq: int) -> list[tuple[int, int]]:
        """See ``lsm._twins.tables_probe``."""
        if (type(tables) not in _SEQS or type(groups) not in _SEQS
                or (tables and {*map(type, tables)} != _BYTES)
                or type(user_key) is not bytes or type(read_seq) is not int
                or not 0 <= read_seq <= MAX_SEQUENCE
                or any(type(g) is not tuple or len(g) != 2 or type(g[0]) is not int
                       or type(g[1]) is not int or not 0 <= g[0] <= 1
                       or not 0 <= g[1] <= _U32_MAX for g in groups)
                or sum(g[1] for g in groups) != len(tables)):
            tables, groups = _twins.check_tables_probe_args(tables, groups, user_key, read_seq)
        n = len(tables)
        ptrs = new("char *[]", max(n, 1))
        keep = [from_buffer(t) for t in tables]     # alive until the call returns
        for i, p in enumerate(keep):
            ptrs[i] = p
        lens = array("Q", map(len, tables)) or array("Q", [0])
        grp = array("I", [x for g in groups for x in g]) or array("I", [0, 0])
        out = new("uint32_t[]", 2 * max(n, 1))
        err = new("size_t[2]")
        rc = c_tables_probe(ptrs, from_buffer("uint64_t[]", lens), n,
                            from_buffer("uint32_t[]", grp), len(groups), user_key,
                            len(user_key), read_seq, out, n, err)
        del keep
        if rc < 0:
            if rc in _twins.PROBE_ERRORS:
                raise _twins.probe_corruption(rc, err[0], err[1])
            raise _error(rc, 0)
        return [(out[2 * i], out[2 * i + 1]) for i in range(rc)]

    api.tables_probe = tables_probe

    c_blocks_decode = lib.lsm_blocks_decode
    cunpack = ffi.unpack
    cbuffer = ffi.buffer

    def blocks_decode(data: bytes, ends: Any) -> tuple[list[bytes], list[bytes], Any]:
        """See ``lsm._twins.blocks_decode``."""
        if type(data) is not bytes or type(ends) is not array or ends.typecode != "Q":
            data, ends = _twins.check_blocks_decode_args(data, ends)
        nb = len(ends)
        counts = array("Q", bytes(8 * nb))
        info = new("size_t[8]")
        n = len(data)
        out = new("char[]", 2 * n + 64)
        fmt = new("char[]", 2 * n + 64)
        info[0] = len(out)
        info[1] = len(fmt)
        c_counts = from_buffer("uint64_t[]", counts) if nb else ffi.NULL
        c_ends = from_buffer("uint64_t[]", ends) if nb else ffi.NULL
        rc = c_blocks_decode(data, n, c_ends, nb, info, out, fmt, c_counts)
        if rc == _twins.ERR_TOO_LARGE:
            # the keys expand beyond the guess: measure (and validate), then
            # decode into buffers of the exact sizes
            rc = c_blocks_decode(data, n, c_ends, nb, info, ffi.NULL, ffi.NULL, c_counts)
            if rc == 0:
                out = new("char[]", info[1] + info[3] + 1)
                fmt = new("char[]", info[4] + 1)
                info[0] = len(out)
                info[1] = len(fmt)
                rc = c_blocks_decode(data, n, c_ends, nb, info, out, fmt, c_counts)
        if rc == _twins.ERR_INVALID:
            _twins.check_blocks_decode_args(data, ends)     # raises the reference error
        if rc < 0:
            raise _error(rc, info[2])
        if info[0] == 0:
            return [], [], counts
        items = _unpack_struct(cunpack(fmt, info[4]), cbuffer(out, info[1] + info[3]))
        return list(items[0::2]), list(items[1::2]), counts

    api.blocks_decode = blocks_decode


def _registry_impl(marker: str, make: Any, what: str) -> Any:
    """The implementation of a registry kept apart from FUNCTIONS (read path,
    LZ4): the C namespace extended by ``make`` -- or, when the twins are
    selected or the build lacks one of the registry's C functions, the twins
    (a stale build: one warning, ``ImportError`` under
    ``LSM_REQUIRE_NATIVE=1``).  The C namespace (``c_api()``) is extended in
    any case, so both implementations stay comparable."""
    api = c_api()          # extended even under LSM_PURE=1 (the equivalence tests use it)
    if api is None:
        return _twins
    if not hasattr(api, marker):
        try:
            make(api)
        except ImportError as exc:
            if _impl is _twins:
                return _twins
            if os.environ.get("LSM_REQUIRE_NATIVE") == "1":
                raise
            warnings.warn(f"superdisk-lsm: {exc}; {what} use the twins",
                          RuntimeWarning, stacklevel=3)
            return _twins
    return _twins if _impl is _twins else api


_read_impl: Any = _registry_impl("tables_probe", _make_read_api, "the read path's functions")
tables_probe = _read_impl.tables_probe
blocks_decode = _read_impl.blocks_decode


# ===================================================================== LZ4 and physical blocks
# (lsm/sstable/format.py's block seal/open in bulk; C: native/lz4.c).  Kept
# apart from FUNCTIONS / C_FUNCTIONS like the read path: LZ4_FUNCTIONS are
# exported here, LZ4_C_FUNCTIONS are checked the same way (a build lacking
# one leaves these functions on the twins, with one warning).

LZ4_FUNCTIONS = ("lz4_compress", "lz4_decompress", "blocks_seal", "blocks_open")
LZ4_C_FUNCTIONS = ("lsm_lz4_compress", "lsm_lz4_decompress", "lsm_blocks_seal",
                   "lsm_blocks_open")
lz4_bound = _twins.lz4_bound
blocks_seal_bound = _twins.blocks_seal_bound
__all__ += list(LZ4_FUNCTIONS)

_LZ4_MAX = _twins.LZ4_MAX_INPUT
# blocks_seal / blocks_open outputs above these sizes are returned as views
# into _VIEW_POOL buffers (a copy into fresh bytes, and its page faults, would
# be paid while holding the GIL); smaller ones -- blocks_open's below a
# compaction's chunk, i.e. a scan's readahead -- go through the scratch pool
# and are copied out
_VIEW_MIN_BYTES = 512 << 10
_OPEN_VIEW_MIN_BYTES = 2 << 20
_LZ4_POOL_MAX_BYTES = 4 << 20   # scratch buffers up to this size are kept ...
_LZ4_POOL_LEN = 4               # ... at most this many of them
_PBLOCK_CODES = frozenset(_twins.PBLOCK_ERRORS) | frozenset(_twins.LZ4_ERRORS)


def _plain_buffer(obj: Any) -> bool:
    """``obj`` can go to C as is: bytes, bytearray, or a 1-D contiguous
    memoryview of single bytes."""
    t = type(obj)
    if t is bytes or t is bytearray:
        return True
    return t is memoryview and obj.ndim == 1 and obj.itemsize == 1 and obj.c_contiguous


def _make_lz4_api(api: Any) -> None:
    """Add the C-backed LZ4 / physical-block functions to namespace ``api``.
    Raises ImportError for a build lacking one of LZ4_C_FUNCTIONS.

    Scratch outputs come from a pool of char[] buffers (powers of two, at
    least 4 KiB; up to _LZ4_POOL_LEN buffers of at most _LZ4_POOL_MAX_BYTES
    are kept), so a call allocates only the ``bytes`` it returns."""
    ffi, lib = api.ffi, api.lib
    require_functions(lib, LZ4_C_FUNCTIONS)
    c_compress = lib.lsm_lz4_compress
    c_decompress = lib.lsm_lz4_decompress
    c_seal = lib.lsm_blocks_seal
    c_open = lib.lsm_blocks_open
    alloc = ffi.new_allocator(should_clear_after_alloc=False)
    from_buffer = ffi.from_buffer
    vpool = _view_pool(ffi)
    cunpack = ffi.unpack
    NULL = ffi.NULL
    pool: list = []
    errs: list = []
    ERR_INVALID = _twins.ERR_INVALID

    def take(n: int) -> Any:
        """A char[] of at least ``n`` bytes (pooled when one is big enough)."""
        if pool:
            buf = pool.pop()
            if len(buf) >= n:
                return buf
            give(buf)
        size = _SCRATCH_MIN
        while size < n:
            size *= 2
        return alloc("char[]", size)

    def give(buf: Any) -> None:
        if len(buf) <= _LZ4_POOL_MAX_BYTES and len(pool) < _LZ4_POOL_LEN:
            pool.append(buf)

    def u64(values: Any) -> Any:
        return from_buffer("uint64_t[]", values) if len(values) else NULL

    def lz4_compress(data: bytes) -> bytes:
        """See ``lsm._twins.lz4_compress``."""
        if type(data) is not bytes or len(data) > _LZ4_MAX:
            if not _plain_buffer(data) or len(data) > _LZ4_MAX:
                data = _twins.check_lz4_compress_args(data)
        n = len(data)
        cap = n + n // 255 + 16
        out = pool.pop() if pool else None      # take(), inlined (hot)
        if out is None or len(out) < cap:
            if out is not None:
                give(out)
            out = take(cap)
        rc = c_compress(data if type(data) is bytes else from_buffer(data), n, out, cap)
        if rc < 0:
            raise _error(rc, 0)
        res = cunpack(out, rc)
        if len(pool) < _LZ4_POOL_LEN and len(out) <= _LZ4_POOL_MAX_BYTES:
            pool.append(out)
        return res

    def lz4_decompress(data: bytes, size: int) -> bytes:
        """See ``lsm._twins.lz4_decompress``."""
        if (type(data) is not bytes or type(size) is not int or not 0 <= size <= _LZ4_MAX):
            if not _plain_buffer(data) or type(size) is not int or not 0 <= size <= _LZ4_MAX:
                data = _twins.check_lz4_decompress_args(data, size)
        out = pool.pop() if pool else None
        if out is None or len(out) < size:
            if out is not None:
                give(out)
            out = take(size)
        err = errs.pop() if errs else alloc("size_t[2]")
        rc = c_decompress(data if type(data) is bytes else from_buffer(data), len(data),
                          out, size, err)
        if rc < 0:
            raise _error(rc, err[0])
        res = cunpack(out, size)
        if len(pool) < _LZ4_POOL_LEN and len(out) <= _LZ4_POOL_MAX_BYTES:
            pool.append(out)
        errs.append(err)
        return res

    def blocks_seal(data: bytes, ends: Any, compress: bool) -> tuple[bytes, Any]:
        """See ``lsm._twins.blocks_seal``."""
        if not (_plain_buffer(data) and type(ends) is array and ends.typecode == "Q"
                and type(compress) is bool):
            data = _twins.check_blocks_seal_args(data, ends, compress)
        n = len(ends)
        cap = len(data) + len(data) // 255 + 5 * n + 32    # blocks_seal_bound
        big = cap > _VIEW_MIN_BYTES
        out = vpool.take(cap) if big else take(cap)
        sizes = array("Q", bytes(8 * n))
        rc = c_seal(from_buffer(data) if type(data) is not bytes else data, len(data),
                    u64(ends), n, 1 if compress else 0, out, cap, u64(sizes))
        if rc < 0:
            if rc == ERR_INVALID:
                _twins.check_blocks_seal_args(data, ends, compress)   # raises
            raise _error(rc, 0)
        if big:     # a view over the output: no copy under the GIL
            return vpool.view(out, rc), sizes
        res = cunpack(out, rc)
        give(out)
        return res, sizes

    def blocks_open(buf: bytes, offsets: Any, sizes: Any, verify: bool, name: str,
                    base_offset: int) -> tuple[bytes, Any]:
        """See ``lsm._twins.blocks_open``."""
        if not (_plain_buffer(buf) and type(offsets) is array and offsets.typecode == "Q"
                and type(sizes) is array and sizes.typecode == "Q"
                and len(offsets) == len(sizes) and type(verify) is bool and type(name) is str
                and type(base_offset) is int and 0 <= base_offset <= _M64):
            buf = _twins.check_blocks_open_args(buf, offsets, sizes, verify, name, base_offset)
        n = len(sizes)
        cbuf = from_buffer(buf) if type(buf) is not bytes else buf
        ends = array("Q", bytes(8 * n))
        err = errs.pop() if errs else alloc("size_t[2]")
        # first guess: 3x the stored bytes (damaged sizes: at most 4x buf).
        # Large outputs are views into the view pool (no copy under the
        # GIL); small ones use the scratch pool and are copied out.
        guess = min(3 * sum(sizes), 4 * len(buf)) + 256
        big = guess > _OPEN_VIEW_MIN_BYTES      # a compaction's chunk, not a scan's readahead
        out = vpool.take(guess) if big else take(guess)
        cap = len(out)
        rc = c_open(cbuf, len(buf), u64(offsets), u64(sizes), n, 1 if verify else 0,
                    out, cap, u64(ends), err)
        if rc > cap:
            if not big:
                give(out)
            out = vpool.take(rc) if big else take(rc)
            cap = len(out)
            rc = c_open(cbuf, len(buf), u64(offsets), u64(sizes), n, 1 if verify else 0,
                        out, cap, u64(ends), err)
        if rc < 0:
            if rc in _PBLOCK_CODES:
                i = err[0]
                raise _twins.pblock_corruption(rc, i, err[1], sizes[i], name,
                                               base_offset + offsets[i])
            raise _error(rc, 0)
        if rc > cap:    # the buffers changed under the call (another thread)
            raise RuntimeError("blocks_open: the input changed during the call")
        errs.append(err)
        if big:
            return vpool.view(out, rc), ends
        res = cunpack(out, rc)
        give(out)
        return res, ends

    api.lz4_compress = lz4_compress
    api.lz4_decompress = lz4_decompress
    api.blocks_seal = blocks_seal
    api.blocks_open = blocks_open


_lz4_impl: Any = _registry_impl("lz4_compress", _make_lz4_api, "LZ4 and physical blocks")
lz4_compress = _lz4_impl.lz4_compress
lz4_decompress = _lz4_impl.lz4_decompress
blocks_seal = _lz4_impl.blocks_seal
blocks_open = _lz4_impl.blocks_open
