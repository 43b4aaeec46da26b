"""Selection of the native core: the cffi extension or the pure-Python twins.

Decided once, at import:

* ``LSM_PURE=1``            -> the twins (``lsm/_twins.py``);
* else ``from lsm import _lsm_c`` (built from ``native/`` by ``pip install``);
* if that fails: ``LSM_REQUIRE_NATIVE=1`` -> ``ImportError``; otherwise one
  ``RuntimeWarning`` and the twins.

``implementation`` is ``"native"`` or ``"python"``.  This module exports the
same functions and constants as ``lsm._twins`` with identical signatures and
identical behaviour, errors included: the C wrappers validate arguments with
the twins' own validators, and C error codes become the twins'
``CorruptionError`` (same message, same offset) through ``_twins.corruption``.

The C wrappers flatten Python lists into plain buffers (``b"".join`` plus an
``array('Q')`` of lengths), call one leaf C function (cffi's API mode releases
the GIL around every call; the buffers are immutable ``bytes`` or private
arrays, so no other thread can change them meanwhile), and rebuild Python
objects from the offsets/indices the C function returns.

``c_api()`` returns the C-backed namespace whatever ``LSM_PURE`` says (None
when the extension is not built): the equivalence tests compare it with the
twins.
"""

from __future__ import annotations

import importlib
import os
import warnings
from struct import unpack as unpack_struct
from array import array
from itertools import accumulate, chain
from types import SimpleNamespace
from typing import Any, Optional, Sequence

from blockdev.errors import ArgumentTypeError, InvalidArgumentError
from lsm import _twins
from lsm._twins import (
    CMP_BYTEWISE,
    CMP_INTERNAL,
    MERGE_COMPACT,
    MERGE_READ,
    check_block_encode_args,
    check_buffer,
    check_bytes_list,
    check_int,
    check_merge_args,
    corruption,
)

__all__ = [
    "implementation", "c_api",
    "checksum", "encode_varint", "decode_varint32", "decode_varint64",
    "block_encode", "block_decode", "block_seek",
    "bloom_build", "bloom_may_contain", "merge",
    "CMP_BYTEWISE", "CMP_INTERNAL", "MERGE_READ", "MERGE_COMPACT",
]

_M64 = (1 << 64) - 1
_c_namespace: Optional[SimpleNamespace] = None
_c_import_error: Optional[BaseException] = None
_c_tried = False


def _raise_code(rc: int, offset: int, run: Optional[int] = None) -> None:
    """Turn a negative C return code into the twins' exception."""
    if rc == _twins.ERR_NO_MEMORY:
        raise MemoryError("native core: out of memory")
    if rc == _twins.ERR_TOO_LARGE:
        raise InvalidArgumentError(_twins.TOO_LARGE_MESSAGE)
    if rc in _twins.ERRORS:
        raise corruption(rc, offset, run)
    raise RuntimeError(f"native core returned unknown code {rc}")  # a bug, not bad input


def _make_c_api(ffi: Any, lib: Any) -> SimpleNamespace:
    """Build the C-backed functions over ``ffi``/``lib`` of ``lsm._lsm_c``."""
    new = ffi.new
    unpack = ffi.unpack
    from_buffer = ffi.from_buffer
    NULL = ffi.NULL

    def checksum(data: bytes, seed: int = 0) -> int:
        if type(data) is not bytes:
            data = check_buffer(data, "data")
        if type(seed) is not int or seed < 0 or seed > _M64:
            check_int(seed, "seed", 0, _M64)
        return lib.lsm_xxh64(data, len(data), seed)

    small = [bytes((i,)) for i in range(0x80)]

    def encode_varint(value: int) -> bytes:
        if type(value) is int and 0 <= value < 0x80:
            return small[value]
        check_int(value, "value", 0, _M64)
        out = new("char[10]")
        n = lib.lsm_encode_varint(value, out)
        return ffi.buffer(out, n)[:]

    def decode_varint32(buf: bytes, offset: int = 0) -> tuple[int, int]:
        if type(buf) is not bytes:
            buf = check_buffer(buf, "buf")
        if type(offset) is not int or offset < 0 or offset > len(buf):
            check_int(offset, "offset", 0, len(buf))
        r = lib.lsm_decode_varint32(buf, len(buf), offset)
        if r < 0:
            _raise_code(r, offset)
        return r >> 3, offset + (r & 7)

    def decode_varint64(buf: bytes, offset: int = 0) -> tuple[int, int]:
        if type(buf) is not bytes:
            buf = check_buffer(buf, "buf")
        if type(offset) is not int or offset < 0 or offset > len(buf):
            check_int(offset, "offset", 0, len(buf))
        res = new("uint64_t[2]")
        rc = lib.lsm_decode_varint64(buf, len(buf), offset, res)
        if rc < 0:
            _raise_code(rc, offset)
        return res[0], res[1]

    def block_encode(keys: Sequence[bytes], values: Sequence[bytes], restart_interval: int) -> bytes:
        check_block_encode_args(keys, values, restart_interval)
        kbuf = b"".join(keys)
        vbuf = b"".join(values)
        klens = array("Q", map(len, keys))
        vlens = array("Q", map(len, values))
        n = len(keys)
        cap = lib.lsm_block_encode_bound(n, len(kbuf), len(vbuf), restart_interval)
        out = new("char[]", cap)
        out_len = new("size_t *")
        rc = lib.lsm_block_encode(kbuf, len(kbuf), from_buffer("uint64_t[]", klens),
                                  vbuf, len(vbuf), from_buffer("uint64_t[]", vlens),
                                  n, restart_interval, out, cap, out_len)
        if rc < 0:
            _raise_code(rc, 0)
        return ffi.buffer(out, out_len[0])[:]

    def block_decode(block: bytes) -> tuple[list[bytes], list[bytes]]:
        if type(block) is not bytes:
            block = check_buffer(block, "block")
        n = len(block)
        info = new("size_t[5]")  # count, key_bytes, err_off, value_bytes, fmt_len
        rc = lib.lsm_block_decode(block, n, info, NULL, NULL)
        if rc < 0:
            _raise_code(rc, info[2])
        if info[0] == 0:
            return [], []
        size = info[1] + info[3]
        fmt_len = info[4]
        out = new("char[]", size or 1)
        fmt = new("char[]", fmt_len + 44)
        info[0] = size
        info[1] = fmt_len + 44
        rc = lib.lsm_block_decode(block, n, info, out, fmt)
        if rc < 0:  # cannot happen: the first pass validated the same bytes
            _raise_code(rc, info[2])
        # one C-level call splits key0 value0 key1 value1 ... into bytes
        items = unpack_struct(ffi.buffer(fmt, fmt_len)[:], ffi.buffer(out, size))
        return list(items[0::2]), list(items[1::2])

    def block_seek(block: bytes, target: bytes, cmp: int) -> Optional[tuple[int, bytes, bytes]]:
        if type(block) is not bytes:
            block = check_buffer(block, "block")
        if not isinstance(target, bytes):
            raise ArgumentTypeError(f"target must be bytes, not {type(target).__name__}")
        check_int(cmp, "cmp", CMP_BYTEWISE, CMP_INTERNAL)
        if cmp == CMP_INTERNAL and len(target) < 8:
            raise InvalidArgumentError("an internal-key target must be at least 8 bytes")
        n = len(block)
        keybuf = new("char[]", n or 1)
        info = new("size_t[5]")  # index, key_len, vstart, vend, err_off
        rc = lib.lsm_block_seek(block, n, target, len(target), cmp, keybuf, info)
        if rc < 0:
            _raise_code(rc, info[4])
        if rc == 0:
            return None
        return info[0], ffi.buffer(keybuf, info[1])[:], block[info[2]:info[3]]

    def bloom_build(keys: Sequence[bytes], bits_per_key: int) -> bytes:
        check_bytes_list(keys, "keys")
        check_int(bits_per_key, "bits_per_key", 1, _twins.MAX_BITS_PER_KEY)
        kbuf = b"".join(keys)
        klens = array("Q", map(len, keys))
        nbytes = lib.lsm_bloom_nbytes(len(keys), bits_per_key)
        out = new("char[]", nbytes + 1)
        rc = lib.lsm_bloom_build(kbuf, len(kbuf), from_buffer("uint64_t[]", klens), len(keys),
                                 bits_per_key, out)
        if rc < 0:
            _raise_code(rc, 0)
        return ffi.buffer(out, nbytes + 1)[:]

    def bloom_may_contain(filter: bytes, key: bytes) -> bool:
        if type(filter) is not bytes:
            filter = check_buffer(filter, "filter")
        if not isinstance(key, bytes):
            raise ArgumentTypeError(f"key must be bytes, not {type(key).__name__}")
        rc = lib.lsm_bloom_may_contain(filter, len(filter), key, len(key))
        if rc < 0:
            _raise_code(rc, 0)
        return rc == 1

    def merge(runs: Sequence[tuple[Sequence[bytes], Sequence[bytes]]], read_seq: int,
              snapshots: Sequence[int] = (), mode: int = MERGE_READ,
              bottom: bool = False) -> tuple[list[bytes], list[bytes]]:
        runs, snaps = check_merge_args(runs, read_seq, snapshots, mode, bottom)
        all_keys = list(chain.from_iterable([r[0] for r in runs]))
        all_vals = list(chain.from_iterable([r[1] for r in runs]))
        total = len(all_keys)
        if total == 0:
            return [], []
        kbuf = b"".join(all_keys)
        vbuf = b"".join(all_vals)
        klens = array("Q", map(len, all_keys))
        vlens = array("Q", map(len, all_vals))
        starts = array("Q", accumulate([len(r[0]) for r in runs], initial=0))
        snap_arr = array("Q", snaps or [0])
        out = new("uint64_t[]", total)
        err = new("size_t[2]")
        rc = lib.lsm_merge(len(runs), from_buffer("uint64_t[]", starts),
                           kbuf, len(kbuf), from_buffer("uint64_t[]", klens),
                           vbuf, len(vbuf), from_buffer("uint64_t[]", vlens),
                           read_seq, from_buffer("uint64_t[]", snap_arr), len(snaps),
                           mode, 1 if bottom else 0, out, err)
        if rc < 0:
            _raise_code(rc, err[1], err[0])
        idx = unpack(out, rc)
        return list(map(all_keys.__getitem__, idx)), list(map(all_vals.__getitem__, idx))

    return SimpleNamespace(
        checksum=checksum, encode_varint=encode_varint,
        decode_varint32=decode_varint32, decode_varint64=decode_varint64,
        block_encode=block_encode, block_decode=block_decode, block_seek=block_seek,
        bloom_build=bloom_build, bloom_may_contain=bloom_may_contain, merge=merge,
        CMP_BYTEWISE=CMP_BYTEWISE, CMP_INTERNAL=CMP_INTERNAL,
        MERGE_READ=MERGE_READ, MERGE_COMPACT=MERGE_COMPACT,
        implementation="native", ffi=ffi, lib=lib,
    )


def c_api() -> Optional[SimpleNamespace]:
    """The C-backed functions (ignoring ``LSM_PURE``), or None when the
    extension ``lsm._lsm_c`` is not built.  Loaded once."""
    global _c_namespace, _c_import_error, _c_tried
    if not _c_tried:
        _c_tried = True
        try:
            _lsm_c = importlib.import_module("lsm._lsm_c")
        except ImportError as exc:
            _c_import_error = exc
        else:
            _c_namespace = _make_c_api(_lsm_c.ffi, _lsm_c.lib)
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
