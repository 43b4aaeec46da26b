"""Pure-Python twins of the native core (``native/``): the reference semantics.

Every function here has a C-backed counterpart in ``lsm/_native.py`` (thin
wrappers over the cffi module ``lsm._lsm_c``, built from ``native/``) that
must return the same bytes and raise the same error (type, message and
offset) on every input, malformed input included.
``tests/test_native_equivalence.py`` and ``tests/test_native_records.py``
check it.  When the two disagree, this file is the specification.  The
``check_*`` validators are shared: the C-backed wrappers call them for any
argument shape their own fast checks do not accept, so the error messages
live only here.

Formats (do not change: on-disk)
--------------------------------

Checksum: XXH64 (Yann Collet's published algorithm), bit-identical to
``xxhash.xxh64_intdigest(data, seed)``.

Varint: LEB128, 7 bits a byte, least significant group first, high bit =
"more bytes follow".  A varint32 has at most 5 bytes and a value < 2**32; a
varint64 at most 10 bytes and a value < 2**64.  Non-canonical encodings
(e.g. ``80 00``) decode.  Errors, at the offset of the varint's first byte:
truncated, too long (the last permitted byte still has its high bit), value
overflows.

Data block::

    entry*  restart_offset[num_restarts] (u32 LE each)  num_restarts (u32 LE)
    entry = varint32 shared | varint32 unshared | varint32 value_len
            | key_delta[unshared] | value[value_len]

Every ``restart_interval``-th entry (the first included) is a restart point
with ``shared = 0``; ``restart_offset[j]`` is the byte offset of the j-th
restart entry.  An empty block is one restart at offset 0 and no entries:
``00000000 01000000``.  ``data_end = len(block) - 4 - 4 * num_restarts``.

Block validation (decoder and seek check in exactly this order; the offset of
each error is given in brackets):

1. ``len(block) < 4``                                   [0]
2. ``num_restarts == 0``                                [len - 4]
3. ``4 * num_restarts > len(block) - 4``                [len - 4]
4. ``restart[0] != 0``; for j >= 1 ``restart[j] <= restart[j-1]`` or
   ``restart[j] >= data_end``                           [offset of that u32]
5. per entry at ``p``: the three varints (varint errors, [their first byte],
   bounded by ``data_end``); an entry at a restart offset with
   ``shared != 0`` [p]; ``shared > len(previous key)`` [p];
   ``p' = end of value > data_end`` [p]; the next restart offset lies
   strictly inside this entry (``< p'``) [offset of that restart's u32].

``block_seek`` binary-searches the restart points (the key of each probed
restart entry is decoded with checks: varints, ``shared != 0``, overrun), then
scans entries linearly from the chosen restart with the checks of step 5.
It validates only what it reads, so a block that ``block_decode`` rejects may
still answer a seek.  Its ``index`` is ``lo * interval + steps``, where
``lo`` is the chosen restart, ``interval`` the number of entries between
restart 0 and restart 1 (counted, with checks, only when ``lo > 0``) and
``steps`` the entries scanned: for every block ``block_encode`` builds, the
ordinal of the entry.

Bloom filter::

    bits[nbytes] || k (1 byte)
    nbytes = max(ceil(n * bits_per_key / 8), 8)      nbits = 8 * nbytes
    k      = clamp((bits_per_key * 693147 + 500000) // 1000000, 1, 30)
             (round(bits_per_key * ln 2) in exact integer arithmetic)

Probes of ``key``: ``h = XXH64(key, seed=0)``, ``delta = rotr64(h, 17)``; for
i in 0..k-1: set/test bit ``pos = h mod nbits`` (byte ``pos >> 3``, bit
``pos & 7``, LSB first), then ``h = (h + delta) mod 2**64``.  A filter shorter
than 2 bytes is corrupt [0]; a filter whose last byte (k) is > 30 answers
"may contain" (reserved for future encodings).

The k-way merge: see ``merge`` and docs/architecture.md.

Log records (``log_encode_record``) and write batches (``batch_encode``,
``batch_encode_single``) follow the formats of lsm/wal.py and lsm/batch.py,
byte for byte (the tests compare with ``LogWriter`` and ``WriteBatch``).

Error codes: the C core returns a negative code and an offset; ``ERRORS``
maps each code to the message both implementations use.
"""

from __future__ import annotations

import struct
from bisect import bisect_left
from collections import abc as _abc
from typing import Any, Optional, Sequence

from blockdev.errors import ArgumentTypeError, CorruptionError, InvalidArgumentError

__all__ = [
    "checksum", "encode_varint", "decode_varint32", "decode_varint64",
    "block_encode", "block_decode", "block_seek",
    "block_get", "bloom_build", "bloom_may_contain", "merge",
    "log_encode_record", "batch_encode_single", "batch_encode", "user_keys",
    "CMP_BYTEWISE", "CMP_INTERNAL", "MERGE_READ", "MERGE_COMPACT",
    "ERRORS", "MAX_SEQUENCE", "LOG_BLOCK_SIZE", "LOG_HEADER_SIZE",
]

CMP_BYTEWISE = 0   # plain bytewise key order
CMP_INTERNAL = 1   # internal-key order (lsm/dbformat.py)
MERGE_READ = 0
MERGE_COMPACT = 1
MAX_SEQUENCE = (1 << 56) - 1
MAX_BITS_PER_KEY = 1000
MAX_RESTART_INTERVAL = 1 << 30
LOG_BLOCK_SIZE = 32768  # do not change: on-disk (lsm/wal.py BLOCK_SIZE)
LOG_HEADER_SIZE = 7     # do not change: on-disk (lsm/wal.py HEADER_SIZE)

_M64 = 0xFFFFFFFFFFFFFFFF
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

# --------------------------------------------------------------------------
# Error codes (must match native/lsm_core.h).  do not change: the C core
# returns these numbers.
ERR_VARINT32_TRUNCATED = -1
ERR_VARINT32_TOO_LONG = -2
ERR_VARINT32_OVERFLOW = -3
ERR_VARINT64_TRUNCATED = -4
ERR_VARINT64_TOO_LONG = -5
ERR_VARINT64_OVERFLOW = -6
ERR_BLOCK_TOO_SHORT = -10
ERR_BLOCK_NO_RESTARTS = -11
ERR_BLOCK_RESTARTS_OVERRUN = -12
ERR_BLOCK_BAD_RESTART = -13
ERR_BLOCK_RESTART_SHARED = -14
ERR_BLOCK_SHARED_TOO_LONG = -15
ERR_BLOCK_ENTRY_OVERRUN = -16
ERR_BLOCK_RESTART_MISALIGNED = -17
ERR_BLOCK_SHORT_INTERNAL_KEY = -18
ERR_BLOOM_TOO_SHORT = -20
ERR_MERGE_SHORT_KEY = -30
ERR_MERGE_BAD_KIND = -31
ERR_MERGE_UNSORTED = -32
ERR_NO_MEMORY = -90
ERR_TOO_LARGE = -91
ERR_INVALID = -92  # C only: an argument the twin's validator rejects
ERR_NEED_VALUES = -93  # C only: lsm_merge called without values met a range tombstone

TOO_LARGE_MESSAGE = "input too large (a block may not exceed 4 GiB)"

ERRORS: dict[int, str] = {
    ERR_VARINT32_TRUNCATED: "truncated varint32",
    ERR_VARINT32_TOO_LONG: "varint32 longer than 5 bytes",
    ERR_VARINT32_OVERFLOW: "varint32 value exceeds 32 bits",
    ERR_VARINT64_TRUNCATED: "truncated varint64",
    ERR_VARINT64_TOO_LONG: "varint64 longer than 10 bytes",
    ERR_VARINT64_OVERFLOW: "varint64 value exceeds 64 bits",
    ERR_BLOCK_TOO_SHORT: "block shorter than its restart count",
    ERR_BLOCK_NO_RESTARTS: "block has no restart points",
    ERR_BLOCK_RESTARTS_OVERRUN: "block restart array larger than the block",
    ERR_BLOCK_BAD_RESTART: "block restart offset out of order or out of range",
    ERR_BLOCK_RESTART_SHARED: "block restart entry has a shared prefix",
    ERR_BLOCK_SHARED_TOO_LONG: "block entry shares more than the previous key",
    ERR_BLOCK_ENTRY_OVERRUN: "block entry runs past the block data",
    ERR_BLOCK_RESTART_MISALIGNED: "block restart offset inside an entry",
    ERR_BLOCK_SHORT_INTERNAL_KEY: "block holds an internal key shorter than 8 bytes",
    ERR_BLOOM_TOO_SHORT: "bloom filter shorter than 2 bytes",
    ERR_MERGE_SHORT_KEY: "internal key shorter than 8 bytes",
    ERR_MERGE_BAD_KIND: "internal key of unknown kind",
    ERR_MERGE_UNSORTED: "keys out of internal order",
}


def corruption(code: int, offset: int, run: Optional[int] = None) -> CorruptionError:
    """The CorruptionError for error ``code`` at ``offset`` (both impls use it).

    For merge errors ``run`` is the run index and ``offset`` the entry index
    inside that run.
    """
    msg = ERRORS[code]
    if run is not None:
        msg = f"merge run {run}: {msg}"
    return CorruptionError(msg, None, offset)


# --------------------------------------------------------------------------
# Argument validation (shared with lsm/_native.py so both raise the same).

def check_buffer(obj: Any, name: str) -> bytes:
    """Return ``obj`` as ``bytes`` (bytes, bytearray, contiguous or not memoryview)."""
    if isinstance(obj, bytes):
        return obj
    if isinstance(obj, (bytearray, memoryview)):
        return bytes(obj)
    raise ArgumentTypeError(f"{name} must be bytes-like, not {type(obj).__name__}")


def check_int(obj: Any, name: str, lo: int, hi: int) -> int:
    """Validate an int (not bool) in ``[lo, hi]``."""
    if not isinstance(obj, int) or isinstance(obj, bool):
        raise ArgumentTypeError(f"{name} must be an int, not {type(obj).__name__}")
    if obj < lo or obj > hi:
        raise InvalidArgumentError(f"{name} must be in [{lo}, {hi}], got {obj}")
    return obj


def check_bytes_arg(obj: Any, name: str) -> bytes:
    """Validate a ``bytes`` argument (subclasses allowed, no other buffers)."""
    if not isinstance(obj, bytes):
        raise ArgumentTypeError(f"{name} must be bytes, not {type(obj).__name__}")
    return obj


def check_seek_args(block: Any, target: Any, cmp: Any) -> bytes:
    """Validate ``block_seek``'s arguments in order; return ``block`` as bytes."""
    block = check_buffer(block, "block")
    check_bytes_arg(target, "target")
    check_int(cmp, "cmp", CMP_BYTEWISE, CMP_INTERNAL)
    if cmp == CMP_INTERNAL and len(target) < 8:
        raise InvalidArgumentError("an internal-key target must be at least 8 bytes")
    return block


def check_block_get_args(block: Any, user_key: Any, read_seq: Any) -> bytes:
    """Validate ``block_get``'s arguments in order; return ``block`` as bytes."""
    block = check_buffer(block, "block")
    check_bytes_arg(user_key, "user_key")
    check_int(read_seq, "read_seq", 0, MAX_SEQUENCE)
    return block


def check_bloom_build_args(keys: Any, bits_per_key: Any) -> None:
    """Validate ``bloom_build``'s arguments in order."""
    check_bytes_list(keys, "keys")
    check_int(bits_per_key, "bits_per_key", 1, MAX_BITS_PER_KEY)


def check_log_args(payload: Any, block_offset: Any) -> bytes:
    """Validate ``log_encode_record``'s arguments; return ``payload`` as bytes."""
    payload = check_buffer(payload, "payload")
    check_int(block_offset, "block_offset", 0, LOG_BLOCK_SIZE - 1)
    return payload


def check_batch_single_args(sequence: Any, kind: Any, key: Any, value: Any) -> None:
    """Validate ``batch_encode_single``'s arguments, in this order."""
    check_int(sequence, "sequence", 0, MAX_SEQUENCE)
    check_int(kind, "kind", 0, 2)
    check_bytes_arg(key, "key")
    check_bytes_arg(value, "value")
    if len(key) > 0xFFFFFFFF:
        raise InvalidArgumentError("key is longer than 2**32-1 bytes")
    if len(value) > 0xFFFFFFFF:
        raise InvalidArgumentError("value is longer than 2**32-1 bytes")
    if kind == 0 and value:
        raise InvalidArgumentError("a tombstone (kind 0) has no value")
    if kind == 2 and not key < value:
        raise InvalidArgumentError("a range tombstone (kind 2) needs start < end")


def check_batch_args(sequence: Any, items: Any) -> None:
    """Validate ``batch_encode``'s arguments: ``sequence``, ``items`` a list
    or tuple, each item a ``(kind, key, value)`` tuple checked like
    ``batch_encode_single``'s arguments (messages prefixed ``items[i]: ``),
    then the sequence range."""
    check_int(sequence, "sequence", 0, MAX_SEQUENCE)
    if not isinstance(items, (list, tuple)):
        raise ArgumentTypeError(f"items must be a list of (kind, key, value), not {type(items).__name__}")
    for i, item in enumerate(items):
        if not isinstance(item, tuple) or len(item) != 3:
            raise ArgumentTypeError(f"items[{i}] must be a (kind, key, value) tuple")
        try:
            check_batch_single_args(sequence, *item)
        except (ArgumentTypeError, InvalidArgumentError) as exc:
            raise type(exc)(f"items[{i}]: {exc}") from None
    if items and sequence + len(items) - 1 > MAX_SEQUENCE:
        raise InvalidArgumentError(f"sequence {sequence} out of range for {len(items)} records")


def check_bytes_list(seq: Any, name: str) -> None:
    """Validate a list or tuple whose items are all ``bytes``.  O(n)."""
    if not isinstance(seq, (list, tuple)):
        raise ArgumentTypeError(f"{name} must be a list of bytes, not {type(seq).__name__}")
    for t in set(map(type, seq)):
        if t is not bytes and not issubclass(t, bytes):
            for i, x in enumerate(seq):
                if not isinstance(x, bytes):
                    raise ArgumentTypeError(
                        f"{name}[{i}] must be bytes, not {type(x).__name__}")


def check_merge_args(runs: Any, read_seq: Any, snapshots: Any, mode: Any,
                     bottom: Any) -> tuple[list, list[int]]:
    """Validate the arguments of ``merge``; return (runs as a list of
    (keys, values) pairs, snapshots as a list)."""
    if not isinstance(runs, (list, tuple)):
        raise ArgumentTypeError(f"runs must be a list of (keys, values), not {type(runs).__name__}")
    out = []
    for r, run in enumerate(runs):
        if not isinstance(run, (list, tuple)) or len(run) != 2:
            raise ArgumentTypeError(f"runs[{r}] must be a (keys, values) pair")
        keys, values = run
        check_bytes_list(keys, f"runs[{r}] keys")
        check_bytes_list(values, f"runs[{r}] values")
        if len(keys) != len(values):
            raise InvalidArgumentError(
                f"runs[{r}] has {len(keys)} keys but {len(values)} values")
        out.append((keys, values))
    check_int(read_seq, "read_seq", 0, MAX_SEQUENCE)
    if not isinstance(snapshots, _abc.Sequence) or isinstance(snapshots, (str, bytes, bytearray)):
        raise ArgumentTypeError(f"snapshots must be a sequence of ints, not {type(snapshots).__name__}")
    snaps = list(snapshots)
    prev = -1
    for s in snaps:
        check_int(s, "snapshot", 0, MAX_SEQUENCE)
        if s < prev:
            raise InvalidArgumentError("snapshots must be in ascending order")
        prev = s
    check_int(mode, "mode", MERGE_READ, MERGE_COMPACT)
    if not isinstance(bottom, bool):
        raise ArgumentTypeError(f"bottom must be a bool, not {type(bottom).__name__}")
    return out, snaps


# --------------------------------------------------------------------------
# XXH64

_P1 = 0x9E3779B185EBCA87
_P2 = 0xC2B2AE3D27D4EB4F
_P3 = 0x165667B19E3779F9
_P4 = 0x85EBCA77C2B2AE63
_P5 = 0x27D4EB2F165667C5
_STRIPE = struct.Struct("<4Q")


def _xxh64(data: bytes, seed: int) -> int:
    """XXH64 of ``data`` (bytes).  O(len(data)).  Requires 0 <= seed < 2**64."""
    n = len(data)
    M = _M64
    P1, P2 = _P1, _P2
    p = 0
    if n >= 32:
        v1 = (seed + P1 + P2) & M
        v2 = (seed + P2) & M
        v3 = seed
        v4 = (seed - P1) & M
        end = n - (n & 31)
        for a, b, c, d in _STRIPE.iter_unpack(memoryview(data)[:end]):
            v1 = (v1 + a * P2) & M
            v1 = (((v1 << 31) | (v1 >> 33)) * P1) & M
            v2 = (v2 + b * P2) & M
            v2 = (((v2 << 31) | (v2 >> 33)) * P1) & M
            v3 = (v3 + c * P2) & M
            v3 = (((v3 << 31) | (v3 >> 33)) * P1) & M
            v4 = (v4 + d * P2) & M
            v4 = (((v4 << 31) | (v4 >> 33)) * P1) & M
        p = end
        h = (((v1 << 1) | (v1 >> 63)) + ((v2 << 7) | (v2 >> 57))
             + ((v3 << 12) | (v3 >> 52)) + ((v4 << 18) | (v4 >> 46))) & M
        for v in (v1, v2, v3, v4):
            v = (v * P2) & M
            v = (((v << 31) | (v >> 33)) * P1) & M
            h = ((h ^ v) * P1 + _P4) & M
    else:
        h = (seed + _P5) & M
    h = (h + n) & M
    while p + 8 <= n:
        (k,) = _U64.unpack_from(data, p)
        k = (k * P2) & M
        k = (((k << 31) | (k >> 33)) * P1) & M
        h ^= k
        h = ((((h << 27) | (h >> 37)) & M) * P1 + _P4) & M
        p += 8
    if p + 4 <= n:
        (k,) = _U32.unpack_from(data, p)
        h ^= (k * P1) & M
        h = ((((h << 23) | (h >> 41)) & M) * P2 + _P3) & M
        p += 4
    while p < n:
        h ^= (data[p] * _P5) & M
        h = ((((h << 11) | (h >> 53)) & M) * P1) & M
        p += 1
    h ^= h >> 33
    h = (h * P2) & M
    h ^= h >> 29
    h = (h * _P3) & M
    h ^= h >> 32
    return h


def checksum(data: bytes, seed: int = 0) -> int:
    """XXH64 of ``data`` with ``seed``; equals ``xxhash.xxh64_intdigest``.

    Requires: ``data`` bytes-like; ``0 <= seed < 2**64``.  O(len(data)).
    """
    data = check_buffer(data, "data")
    check_int(seed, "seed", 0, _M64)
    return _xxh64(data, seed)


# --------------------------------------------------------------------------
# Varints

def encode_varint(value: int) -> bytes:
    """LEB128 encoding of ``value``.  Requires ``0 <= value < 2**64``.  O(1)."""
    check_int(value, "value", 0, _M64)
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _decode_varint(buf: bytes, p: int, limit: int, last_shift: int, last_max: int,
                   errors: tuple[int, int, int]) -> tuple[int, int]:
    """Decode a varint at ``p`` not reading at or past ``limit``.

    ``last_shift`` is the shift of the last byte the width allows and
    ``last_max`` the largest value that byte may hold; ``errors`` are the
    (truncated, too long, overflow) error codes.  O(bytes read).
    """
    start = p
    result = 0
    shift = 0
    while True:
        if p >= limit:
            raise corruption(errors[0], start)
        b = buf[p]
        p += 1
        if shift == last_shift:
            if b & 0x80:
                raise corruption(errors[1], start)
            if b > last_max:
                raise corruption(errors[2], start)
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, p
        shift += 7


_V32_ERRORS = (ERR_VARINT32_TRUNCATED, ERR_VARINT32_TOO_LONG, ERR_VARINT32_OVERFLOW)
_V64_ERRORS = (ERR_VARINT64_TRUNCATED, ERR_VARINT64_TOO_LONG, ERR_VARINT64_OVERFLOW)


def _dv32(buf: bytes, p: int, limit: int) -> tuple[int, int]:
    """Decode a varint32 (at most 5 bytes, < 2**32) at ``p`` before ``limit``."""
    return _decode_varint(buf, p, limit, 28, 0x0F, _V32_ERRORS)


def _dv64(buf: bytes, p: int, limit: int) -> tuple[int, int]:
    """Decode a varint64 (at most 10 bytes, < 2**64) at ``p`` before ``limit``."""
    return _decode_varint(buf, p, limit, 63, 0x01, _V64_ERRORS)


def decode_varint32(buf: bytes, offset: int = 0) -> tuple[int, int]:
    """Decode a varint32 at ``offset``; return ``(value, next_offset)``.

    Requires: ``0 <= offset <= len(buf)``.  Truncated / longer than 5 bytes /
    value >= 2**32 -> ``CorruptionError`` at ``offset``.  O(1).
    """
    buf = check_buffer(buf, "buf")
    check_int(offset, "offset", 0, len(buf))
    return _dv32(buf, offset, len(buf))


def decode_varint64(buf: bytes, offset: int = 0) -> tuple[int, int]:
    """Decode a varint64 at ``offset``; return ``(value, next_offset)``.

    Requires: ``0 <= offset <= len(buf)``.  Errors as ``decode_varint32``
    with 10 bytes and 2**64.  O(1).
    """
    buf = check_buffer(buf, "buf")
    check_int(offset, "offset", 0, len(buf))
    return _dv64(buf, offset, len(buf))


# --------------------------------------------------------------------------
# Data blocks

def check_block_encode_args(keys: Any, values: Any, restart_interval: Any) -> None:
    """Validate ``block_encode``'s arguments (shared by both impls)."""
    check_bytes_list(keys, "keys")
    check_bytes_list(values, "values")
    if len(keys) != len(values):
        raise InvalidArgumentError(f"{len(keys)} keys but {len(values)} values")
    check_int(restart_interval, "restart_interval", 1, MAX_RESTART_INTERVAL)
    for name, seq in (("key", keys), ("value", values)):
        if seq and max(map(len, seq)) > 0xFFFFFFFF:
            raise InvalidArgumentError(f"a {name} is longer than 2**32-1 bytes")


def block_encode(keys: Sequence[bytes], values: Sequence[bytes], restart_interval: int) -> bytes:
    """Encode a data block of ``keys[i] -> values[i]`` in the order given.

    Requires: equal-length lists of bytes; ``restart_interval >= 1``.  The
    order of keys is not checked (seek needs them sorted).  O(total bytes).
    """
    check_block_encode_args(keys, values, restart_interval)
    out = bytearray()
    restarts = []
    prev = b""
    enc = _encode_small
    for i, key in enumerate(keys):
        value = values[i]
        if i % restart_interval == 0:
            restarts.append(len(out))
            shared = 0
        else:
            limit = min(len(prev), len(key))
            shared = 0
            while shared < limit and prev[shared] == key[shared]:
                shared += 1
        unshared = len(key) - shared
        vlen = len(value)
        if shared < 128 and unshared < 128 and vlen < 128:
            out += bytes((shared, unshared, vlen))
        else:
            out += enc(shared)
            out += enc(unshared)
            out += enc(vlen)
        out += key[shared:] if shared else key
        out += value
        prev = key
    if not restarts:
        restarts.append(0)
    if restarts[-1] > 0xFFFFFFFF:
        raise InvalidArgumentError(TOO_LARGE_MESSAGE)
    out += struct.pack(f"<{len(restarts)}I", *restarts)
    out += _U32.pack(len(restarts))
    return bytes(out)


def _encode_small(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _parse_trailer(block: bytes) -> tuple[int, tuple[int, ...]]:
    """Steps 1-4 of block validation; return ``(data_end, restarts)``."""
    n = len(block)
    if n < 4:
        raise corruption(ERR_BLOCK_TOO_SHORT, 0)
    (nr,) = _U32.unpack_from(block, n - 4)
    if nr == 0:
        raise corruption(ERR_BLOCK_NO_RESTARTS, n - 4)
    if nr > (n - 4) // 4:
        raise corruption(ERR_BLOCK_RESTARTS_OVERRUN, n - 4)
    data_end = n - 4 - 4 * nr
    restarts = struct.unpack_from(f"<{nr}I", block, data_end)
    if restarts[0] != 0:
        raise corruption(ERR_BLOCK_BAD_RESTART, data_end)
    prev = 0
    for j in range(1, nr):
        r = restarts[j]
        if r <= prev or r >= data_end:
            raise corruption(ERR_BLOCK_BAD_RESTART, data_end + 4 * j)
        prev = r
    return data_end, restarts


def block_decode(block: bytes) -> tuple[list[bytes], list[bytes]]:
    """Decode a whole data block into ``(keys, values)`` (full keys).

    Corrupt block -> ``CorruptionError`` with the offset inside the block
    (validation rules in the module docstring).  O(len(block) + total key
    bytes).
    """
    block = check_buffer(block, "block")
    data_end, restarts = _parse_trailer(block)
    nr = len(restarts)
    keys: list[bytes] = []
    values: list[bytes] = []
    kappend = keys.append
    vappend = values.append
    dv = _dv32
    prev = b""
    p = 0
    rj = 0
    next_restart = restarts[0]
    big = len(block) + 1
    while p < data_end:
        start = p
        if p < data_end and block[p] < 0x80:
            shared = block[p]
            p += 1
        else:
            shared, p = dv(block, p, data_end)
        if p < data_end and block[p] < 0x80:
            unshared = block[p]
            p += 1
        else:
            unshared, p = dv(block, p, data_end)
        if p < data_end and block[p] < 0x80:
            vlen = block[p]
            p += 1
        else:
            vlen, p = dv(block, p, data_end)
        if start == next_restart:
            if shared:
                raise corruption(ERR_BLOCK_RESTART_SHARED, start)
            rj += 1
            next_restart = restarts[rj] if rj < nr else big
        if shared > len(prev):
            raise corruption(ERR_BLOCK_SHARED_TOO_LONG, start)
        kend = p + unshared
        vend = kend + vlen
        if vend > data_end:
            raise corruption(ERR_BLOCK_ENTRY_OVERRUN, start)
        if next_restart < vend:
            raise corruption(ERR_BLOCK_RESTART_MISALIGNED, data_end + 4 * rj)
        prev = prev[:shared] + block[p:kend] if shared else block[p:kend]
        kappend(prev)
        vappend(block[kend:vend])
        p = vend
    return keys, values


def _entry(block: bytes, p: int, data_end: int) -> tuple[int, int, int, int]:
    """Decode the three varints at ``p``: (shared, unshared, vlen, p_after)."""
    if p + 3 <= data_end:
        a, b, c = block[p], block[p + 1], block[p + 2]
        if a < 0x80 and b < 0x80 and c < 0x80:
            return a, b, c, p + 3
    shared, p = _dv32(block, p, data_end)
    unshared, p = _dv32(block, p, data_end)
    vlen, p = _dv32(block, p, data_end)
    return shared, unshared, vlen, p


def _less(key: bytes, target: bytes, cmp: int, offset: int) -> bool:
    """``key < target`` under ``cmp``; a short internal key is corrupt."""
    if cmp == CMP_BYTEWISE:
        return key < target
    if len(key) < 8:
        raise corruption(ERR_BLOCK_SHORT_INTERNAL_KEY, offset)
    uk, ut = key[:-8], target[:-8]
    if uk != ut:
        return uk < ut
    return _U64.unpack_from(key, len(key) - 8)[0] > _U64.unpack_from(target, len(target) - 8)[0]


def block_seek(block: bytes, target: bytes, cmp: int) -> Optional[tuple[int, bytes, bytes]]:
    """First entry whose key >= ``target`` under ``cmp``: ``(index, key, value)``
    or None when every key < target.

    Requires: keys of the block sorted under ``cmp``; with ``CMP_INTERNAL``
    ``len(target) >= 8``.  Binary search over the restart points, then a
    linear scan: O(log(restarts) + restart_interval) entries decoded.
    """
    block = check_seek_args(block, target, cmp)
    return _seek(block, target, cmp)


def _seek(block: bytes, target: bytes, cmp: int,
          want_index: bool = True) -> Optional[tuple[int, bytes, bytes]]:
    """``block_seek`` on validated arguments.  Without ``want_index`` the
    entries of the first restart interval are not counted (nor checked unless
    the scan reads them) and the index returned is meaningless."""
    data_end, restarts = _parse_trailer(block)
    nr = len(restarts)
    if data_end == 0:
        return None
    lo, hi = 0, nr - 1
    while lo < hi:
        mid = (lo + hi + 1) >> 1
        p = restarts[mid]
        shared, unshared, vlen, q = _entry(block, p, data_end)
        if shared:
            raise corruption(ERR_BLOCK_RESTART_SHARED, p)
        if q + unshared + vlen > data_end:
            raise corruption(ERR_BLOCK_ENTRY_OVERRUN, p)
        if _less(block[q:q + unshared], target, cmp, p):
            lo = mid
        else:
            hi = mid - 1
    base = 0
    if lo > 0 and want_index:
        count = 0
        for _ in _scan(block, 0, 0, restarts, data_end, restarts[1]):
            count += 1
        base = lo * count
    for i, (p, key, value) in enumerate(_scan(block, restarts[lo], lo, restarts, data_end, data_end)):
        if not _less(key, target, cmp, p):
            return base + i, key, value
    return None


def block_get(block: bytes, user_key: bytes, read_seq: int) -> Optional[tuple[int, int, bytes]]:
    """Point lookup in a data block of internal keys: the first entry at or
    after the lookup key ``user_key + pack("<Q", read_seq << 8 | 0xFF)``
    (internal order), as ``(seq, kind, value)`` if its user key is
    ``user_key``, else None (also None when every key sorts before the lookup
    key: a caller that must tell the two apart calls ``block_seek``).

    Requires: a bytes-like block, bytes ``user_key``, ``0 <= read_seq <=
    2**56-1``.  Errors as ``block_seek(block, lookup_key, CMP_INTERNAL)``,
    except that the entries before restart 1 are checked only when the
    scan reads them (no index is computed).  O(log(restarts) +
    restart_interval).
    """
    block = check_block_get_args(block, user_key, read_seq)
    r = _seek(block, user_key + _U64.pack((read_seq << 8) | 0xFF), CMP_INTERNAL, False)
    if r is None:
        return None
    key = r[1]
    if key[:-8] != user_key:
        return None
    (t,) = _U64.unpack_from(key, len(key) - 8)
    return t >> 8, t & 0xFF, r[2]


def _scan(block: bytes, p: int, rj: int, restarts: tuple[int, ...], data_end: int, stop: int):
    """Yield ``(offset, key, value)`` of the entries from ``p`` (a restart
    offset, ``restarts[rj]``) until offset ``stop``, with the step-5 checks."""
    nr = len(restarts)
    next_restart = restarts[rj]
    big = len(block) + 1
    prev = b""
    while p < stop:
        start = p
        shared, unshared, vlen, p = _entry(block, p, data_end)
        if start == next_restart:
            if shared:
                raise corruption(ERR_BLOCK_RESTART_SHARED, start)
            rj += 1
            next_restart = restarts[rj] if rj < nr else big
        if shared > len(prev):
            raise corruption(ERR_BLOCK_SHARED_TOO_LONG, start)
        kend = p + unshared
        vend = kend + vlen
        if vend > data_end:
            raise corruption(ERR_BLOCK_ENTRY_OVERRUN, start)
        if next_restart < vend:
            raise corruption(ERR_BLOCK_RESTART_MISALIGNED, data_end + 4 * rj)
        prev = prev[:shared] + block[p:kend]
        yield start, prev, block[kend:vend]
        p = vend


# --------------------------------------------------------------------------
# Bloom filter

def bloom_size(n: int, bits_per_key: int) -> tuple[int, int]:
    """``(nbytes, k)`` of a filter over ``n`` keys (format in module doc)."""
    nbytes = max((n * bits_per_key + 7) // 8, 8)
    k = (bits_per_key * 693147 + 500000) // 1000000
    return nbytes, min(max(k, 1), 30)


def bloom_build(keys: Sequence[bytes], bits_per_key: int) -> bytes:
    """Build a bloom filter over ``keys`` (user keys; duplicates allowed).

    Requires: a list of bytes; ``1 <= bits_per_key <= 1000``.
    O(len(keys) * k + total key bytes).
    """
    check_bloom_build_args(keys, bits_per_key)
    return _bloom_from_hashes([_xxh64(key, 0) for key in keys], bits_per_key)


def _bloom_from_hashes(hashes: Sequence[int], bits_per_key: int) -> bytes:
    """The filter whose keys have the XXH64 ``hashes`` (format in the module
    doc).  Requires: ``bits_per_key`` validated.  O(len(hashes) * k)."""
    nbytes, k = bloom_size(len(hashes), bits_per_key)
    nbits = nbytes * 8
    bits = bytearray(nbytes + 1)
    M = _M64
    rk = range(k)
    for h in hashes:
        delta = (h >> 17) | ((h << 47) & M)
        for _ in rk:
            pos = h % nbits
            bits[pos >> 3] |= 1 << (pos & 7)
            h = (h + delta) & M
    bits[nbytes] = k
    return bytes(bits)


def bloom_may_contain(filter_block: bytes, key: bytes) -> bool:
    """False only when ``key`` was certainly not added to ``filter_block``.

    Requires: bytes-like filter_block, bytes key.  A filter shorter than 2 bytes
    -> ``CorruptionError`` at 0.  O(k + len(key)).
    """
    filter_block = check_buffer(filter_block, "filter")
    check_bytes_arg(key, "key")
    n = len(filter_block)
    if n < 2:
        raise corruption(ERR_BLOOM_TOO_SHORT, 0)
    k = filter_block[n - 1]
    if k > 30:
        return True
    nbits = (n - 1) * 8
    M = _M64
    h = _xxh64(key, 0)
    delta = (h >> 17) | ((h << 47) & M)
    for _ in range(k):
        pos = h % nbits
        if not filter_block[pos >> 3] & (1 << (pos & 7)):
            return False
        h = (h + delta) & M
    return True


# --------------------------------------------------------------------------
# Internal keys

def user_keys(keys: Sequence[bytes]) -> list[bytes]:
    """The user keys of internal ``keys`` (each without its 8-byte trailer).

    Requires: a list or tuple of bytes.  A key shorter than 8 bytes ->
    ``CorruptionError("internal key shorter than 8 bytes", offset=its
    index)``.  O(total key bytes).
    """
    check_bytes_list(keys, "keys")
    out = [k[:-8] for k in keys]
    if out and min(map(len, keys)) < 8:
        for i, k in enumerate(keys):
            if len(k) < 8:
                raise corruption(ERR_MERGE_SHORT_KEY, i)
    return out


# --------------------------------------------------------------------------
# The k-way merge

def merge(runs: Sequence[tuple[Sequence[bytes], Sequence[bytes]]], read_seq: int,
          snapshots: Sequence[int] = (), mode: int = MERGE_READ,
          bottom: bool = False) -> tuple[list[bytes], list[bytes]]:
    """Merge sorted runs of internal entries; return ``(keys, values)``.

    Semantics (docs/architecture.md, "The k-way merge"): the runs are merged
    in internal order, ties between identical internal keys broken by run
    index, then position.  ``MERGE_READ`` yields, per user key, the newest
    point entry with seq <= read_seq if it is a VALUE not covered by a range
    tombstone with seq <= read_seq.  ``MERGE_COMPACT`` keeps, per user key
    and snapshot stripe, the newest point entry unless a range tombstone of
    the same stripe covers it, every range tombstone, and with ``bottom``
    drops point tombstones with no older kept entry and stripe-0 range
    tombstones.

    Requires: each run a pair of equal-length lists of bytes; ``snapshots``
    ascending.  A key shorter than 8 bytes, a kind > 2, or a run out of
    internal order -> ``CorruptionError(offset = entry index in the run)``,
    checked run by run, entry by entry, in that order per entry.
    O(N log N) for N entries (Timsort merges presorted runs in ~N log k),
    plus O(active range tombstones) per user key.
    """
    runs, chosen = _merge_chosen(runs, read_seq, snapshots, mode, bottom)
    out_keys = [runs[r][0][i] for r, i in chosen]
    out_values = [runs[r][1][i] for r, i in chosen]
    return out_keys, out_values


def _merge_chosen(runs: Any, read_seq: int, snapshots: Sequence[int], mode: int,
                  bottom: bool) -> tuple[Any, list[tuple[int, int]]]:
    """``merge``'s work: the checked runs and the chosen ``(run, index)``
    pairs in merged order."""
    runs, snaps = check_merge_args(runs, read_seq, snapshots, mode, bottom)
    entries: list[tuple[bytes, int, int, int]] = []
    add = entries.append
    unpack = _U64.unpack_from
    for r, (keys, _values) in enumerate(runs):
        pu = None
        pt = 0
        for i, key in enumerate(keys):
            n = len(key)
            if n < 8:
                raise corruption(ERR_MERGE_SHORT_KEY, i, r)
            (t,) = unpack(key, n - 8)
            if (t & 0xFF) > 2:
                raise corruption(ERR_MERGE_BAD_KIND, i, r)
            u = key[:-8]
            if pu is not None and (u < pu or (u == pu and t > pt)):
                raise corruption(ERR_MERGE_UNSORTED, i, r)
            pu = u
            pt = t
            add((u, -t, r, i))
    if len(runs) > 1:
        entries.sort()
    chosen: list[tuple[int, int]] = []
    take = chosen.append
    active: list[tuple[bytes, int, int]] = []   # (end, seq, stripe)
    n = len(entries)
    j = 0
    compact = mode == MERGE_COMPACT
    while j < n:
        u = entries[j][0]
        k = j + 1
        while k < n and entries[k][0] == u:
            k += 1
        if active:
            active = [a for a in active if a[0] > u]
        if not compact:
            # MERGE_READ
            if k == j + 1 and not active and (-entries[j][1] & 0xFF) != 2:
                _, nt, r, i = entries[j]
                t = -nt
                if (t & 0xFF) == 1 and (t >> 8) <= read_seq:
                    take((r, i))
                j = k
                continue
            pick = None
            pseq = 0
            for e in entries[j:k]:
                t = -e[1]
                kind = t & 0xFF
                seq = t >> 8
                if kind == 2:
                    if seq <= read_seq:
                        end = runs[e[2]][1][e[3]]
                        if end > u:
                            active.append((end, seq, 0))
                elif pick is None and seq <= read_seq:
                    pick = e if kind == 1 else False
                    pseq = seq
            if pick:
                for a in active:
                    if a[1] > pseq:
                        break
                else:
                    take((pick[2], pick[3]))
            j = k
            continue
        # MERGE_COMPACT
        group = entries[j:k]
        keep = [True] * (k - j)
        for gi, e in enumerate(group):
            t = -e[1]
            if t & 0xFF == 2:
                end = runs[e[2]][1][e[3]]
                st = bisect_left(snaps, t >> 8)
                if end > u:
                    active.append((end, t >> 8, st))
                if bottom and st == 0:
                    keep[gi] = False
        last_stripe = -1
        for gi, e in enumerate(group):
            t = -e[1]
            if t & 0xFF == 2:
                continue
            seq = t >> 8
            st = bisect_left(snaps, seq)
            if st == last_stripe:
                keep[gi] = False
                continue
            last_stripe = st
            for a in active:
                if a[2] == st and a[1] > seq:
                    keep[gi] = False
                    break
        if bottom:
            older_kept = False
            for gi in range(len(group) - 1, -1, -1):
                t = -group[gi][1]
                kind = t & 0xFF
                if kind == 2 or not keep[gi]:
                    continue
                if kind == 0 and not older_kept:
                    keep[gi] = False
                else:
                    older_kept = True
        for gi, e in enumerate(group):
            if keep[gi]:
                take((e[2], e[3]))
        j = k
    return runs, chosen


# --------------------------------------------------------------------------
# WAL records and single-record write batches

_LOG_HEADER = struct.Struct("<IHB")
_LOG_ZEROS = bytes(LOG_HEADER_SIZE)
_BATCH_HEADER = struct.Struct("<QI")


def log_encode_record(payload: bytes, block_offset: int) -> bytes:
    """The bytes ``lsm.wal.LogWriter.add_record(payload)`` appends when the
    log's size modulo 32 KiB is ``block_offset``: zero padding when fewer than
    7 bytes are left in the block, then FULL or FIRST MIDDLE* LAST fragments,
    each ``checksum u32 LE | length u16 LE | type u8 | payload``, checksum =
    low 32 bits of XXH64(fragment payload, seed=type).

    Requires: bytes-like payload; ``0 <= block_offset < 32768``.
    O(len(payload)).
    """
    payload = check_log_args(payload, block_offset)
    out: list[bytes] = []
    n = len(payload)
    pos = 0
    off = block_offset
    while True:
        leftover = LOG_BLOCK_SIZE - off
        if leftover < LOG_HEADER_SIZE:
            out.append(_LOG_ZEROS[:leftover])
            off = 0
            leftover = LOG_BLOCK_SIZE
        frag_len = min(n - pos, leftover - LOG_HEADER_SIZE)
        end = pos + frag_len == n
        ftype = (1 if end else 2) if pos == 0 else (4 if end else 3)
        frag = payload[pos:pos + frag_len]
        out.append(_LOG_HEADER.pack(_xxh64(frag, ftype) & 0xFFFFFFFF, frag_len, ftype))
        out.append(frag)
        off += LOG_HEADER_SIZE + frag_len
        pos += frag_len
        if end:
            return b"".join(out)


def batch_encode_single(sequence: int, kind: int, key: bytes, value: bytes) -> bytes:
    """The encoding of a write batch holding one record (lsm/batch.py
    layout): ``sequence u64 LE | count=1 u32 LE | kind u8 | varint32 klen |
    key [| varint32 vlen | value]`` (the value part for kinds 1 and 2 only).

    Requires: ``0 <= sequence <= 2**56-1``; ``kind`` 0 (tombstone, ``value``
    must be ``b""``), 1 (value) or 2 (range tombstone ``[key, value)``, ``key
    < value``); bytes key and value shorter than 2**32.  O(len(key) +
    len(value)).
    """
    check_batch_single_args(sequence, kind, key, value)
    parts = [_BATCH_HEADER.pack(sequence, 1), bytes((kind,)), _encode_small(len(key)), key]
    if kind:
        parts.append(_encode_small(len(value)))
        parts.append(value)
    return b"".join(parts)


def batch_encode(sequence: int, items: Sequence[tuple[int, bytes, bytes]]) -> bytes:
    """The encoding of a write batch of ``items`` (``(kind, key, value)``,
    records at ``sequence, sequence+1, ...``): ``sequence u64 LE | count u32
    LE`` then each record as in ``batch_encode_single``; byte for byte
    ``WriteBatch.encode``.

    Requires: ``0 <= sequence`` and ``sequence + len(items) - 1 <= 2**56-1``;
    each item valid for ``batch_encode_single``.  O(total bytes).
    """
    check_batch_args(sequence, items)
    parts = [_BATCH_HEADER.pack(sequence, len(items))]
    add = parts.append
    for kind, key, value in items:
        add(bytes((kind,)))
        add(_encode_small(len(key)))
        add(key)
        if kind:
            add(_encode_small(len(value)))
            add(value)
    return b"".join(parts)


# --------------------------------------------------------------------------
# Write path (native/table.c): flush and compaction over packed runs.
#
# A *packed run* is ``(keys, key_lens, values, value_lens)``: the keys and
# the values each concatenated into one ``bytes``, their lengths in
# ``array('Q')``s.  Passing runs this way costs no Python object per entry.

from array import array as _array  # noqa: E402
from itertools import accumulate as _accumulate  # noqa: E402

Packed = tuple  # (bytes, array('Q'), bytes, array('Q'))


def pack(keys: Sequence[bytes], values: Sequence[bytes]) -> Packed:
    """The packed run of ``keys`` / ``values`` (lists of bytes, same length).
    O(total bytes) in C-level builtins."""
    if len(keys) != len(values):
        raise InvalidArgumentError(f"keys and values differ in length ({len(keys)} != "
                                   f"{len(values)})")
    return (b"".join(keys), _array("Q", map(len, keys)),
            b"".join(values), _array("Q", map(len, values)))


def unpack_items(buf: bytes, lens: Sequence[int]) -> list[bytes]:
    """Split ``buf`` into the items of lengths ``lens``.  O(len(buf))."""
    offs = list(_accumulate(lens, initial=0))
    if offs[-1] > len(buf):
        raise InvalidArgumentError(TOO_LARGE_MESSAGE)
    return [buf[a:b] for a, b in zip(offs, offs[1:])]


def check_packed(packed: Any, name: str = "packed", views: bool = False) -> Packed:
    """Validate a packed run's shape; return it with bytes buffers (with
    ``views``, contiguous byte memoryviews are returned as they are: the C
    wrappers pass them to C without a copy)."""
    if not isinstance(packed, tuple) or len(packed) != 4:
        raise ArgumentTypeError(f"{name} must be a (keys, key_lens, values, value_lens) tuple")
    kbuf, klens, vbuf, vlens = packed
    if not (views and type(kbuf) is memoryview and kbuf.contiguous and kbuf.itemsize == 1):
        kbuf = check_buffer(kbuf, f"{name} keys")
    if not (views and type(vbuf) is memoryview and vbuf.contiguous and vbuf.itemsize == 1):
        vbuf = check_buffer(vbuf, f"{name} values")
    for lens, what in ((klens, "key_lens"), (vlens, "value_lens")):
        if not isinstance(lens, _array) or lens.typecode != "Q":
            raise ArgumentTypeError(f"{name} {what} must be an array('Q')")
    if len(klens) != len(vlens):
        raise InvalidArgumentError(f"{name}: key_lens and value_lens differ in length")
    return kbuf, klens, vbuf, vlens


def unpack_corruption(code: int, block: int, offset: int) -> CorruptionError:
    """The CorruptionError of ``blocks_unpack`` for block number ``block``
    (``block_index`` attribute) at ``offset`` inside that block."""
    exc = CorruptionError(f"data block {block}: {ERRORS[code]}", None, offset)
    exc.block_index = block  # type: ignore[attr-defined]
    return exc


def first_block_key(data: bytes) -> bytes:
    """The key of the first entry of the data block at the start of
    ``data`` (whole: a block's first entry shares no prefix).  O(key)."""
    head = bytes(data[:15])     # three varint32s at most (data may be a large view)
    shared, p = decode_varint32(head, 0)
    unshared, p = decode_varint32(head, p)
    _, p = decode_varint32(head, p)
    if shared:
        raise corruption(ERR_BLOCK_RESTART_SHARED, 0)
    return bytes(data[p:p + unshared])


def check_unpack_args(runs: Any, lo: Any, hi: Any) -> None:
    if not isinstance(runs, (list, tuple)):
        raise ArgumentTypeError("runs must be a list of lists of blocks")
    for r in runs:
        if not isinstance(r, (list, tuple)):
            raise ArgumentTypeError(f"run must be a list of bytes, not {type(r).__name__}")
        if not {*map(type, r)} <= {bytes, memoryview}:
            check_bytes_list(r, "run")          # raises, or accepts bytes subclasses
    for b, what in ((lo, "lo"), (hi, "hi")):
        if b is not None and not isinstance(b, bytes):
            raise ArgumentTypeError(f"{what} must be bytes or None, not {type(b).__name__}")


def blocks_unpack(runs: Sequence[Sequence[bytes]], lo: Optional[bytes] = None,
                  hi: Optional[bytes] = None) -> tuple[Packed, Any]:
    """Decode the data blocks of every run (a run: a list of block contents
    in order, ``bytes`` or byte ``memoryview``s) and keep the entries whose user key ``u`` has ``lo <= u`` (lo
    not None) and ``u < hi`` (hi not None).  Returns the packed entries of
    all runs back to back and ``run_starts`` (``array('Q')``, the first
    entry of each run, then the total): input for ``merge_indices``.  (The
    C implementation's packed keys and values are memoryviews over its
    output buffers, not bytes: equal contents, no copy.)

    A block is checked as ``block_decode`` checks it, then for a key shorter
    than 8 bytes (the first one, at its entry's offset); errors are
    ``unpack_corruption(code, block number counted over all runs, offset)``.
    O(total block bytes + kept key bytes).
    """
    check_unpack_args(runs, lo, hi)
    keys: list[bytes] = []
    values: list[bytes] = []
    starts = _array("Q")
    b = 0
    for run in runs:
        starts.append(len(keys))
        for block in run:
            if type(block) is memoryview:
                block = block.tobytes()
            try:
                bkeys, bvals = block_decode(block)
            except CorruptionError as exc:
                raise _recode(exc, b) from None
            short = next((i for i, k in enumerate(bkeys) if len(k) < 8), None)
            if short is not None:
                p = 0
                data_end, _ = _parse_trailer(block)
                for _i in range(short):
                    _s, _u, _v, q = _entry(block, p, data_end)
                    p = q + _u + _v
                raise unpack_corruption(ERR_BLOCK_SHORT_INTERNAL_KEY, b, p)
            for k, v in zip(bkeys, bvals):
                u = k[:-8]
                if (lo is None or u >= lo) and (hi is None or u < hi):
                    keys.append(k)
                    values.append(v)
            b += 1
    starts.append(len(keys))
    return pack(keys, values), starts


def check_unpack_flat_args(bufs: Any, block_lens: Any, run_blocks: Any, lo: Any,
                           hi: Any) -> list[Any]:
    """Validate ``blocks_unpack_flat``'s arguments; return ``bufs`` as a list
    (its items bytes, bytearray or contiguous byte memoryviews, not copied)."""
    if not isinstance(bufs, (list, tuple)):
        raise ArgumentTypeError(f"bufs must be a list of bytes-like, not {type(bufs).__name__}")
    for b in bufs:
        if isinstance(b, memoryview):
            if not (b.contiguous and b.itemsize == 1):
                raise ArgumentTypeError("bufs items must be contiguous byte buffers")
        elif not isinstance(b, (bytes, bytearray)):
            raise ArgumentTypeError(f"bufs items must be bytes-like, not {type(b).__name__}")
    for arr, what in ((block_lens, "block_lens"), (run_blocks, "run_blocks")):
        if not isinstance(arr, _array) or arr.typecode != "Q":
            raise ArgumentTypeError(f"{what} must be an array('Q')")
    if len(run_blocks) != len(bufs):
        raise InvalidArgumentError(f"{len(bufs)} buffers but {len(run_blocks)} runs")
    if sum(run_blocks) != len(block_lens):
        raise InvalidArgumentError(f"run_blocks add up to {sum(run_blocks)} blocks, but "
                                   f"block_lens has {len(block_lens)}")
    b = 0
    for r, (buf, count) in enumerate(zip(bufs, run_blocks)):
        if sum(block_lens[b:b + count]) != len(buf):
            raise InvalidArgumentError(f"run {r}: its block lengths add up to "
                                       f"{sum(block_lens[b:b + count])} bytes, but its "
                                       f"buffer has {len(buf)}")
        b += count
    for k, what in ((lo, "lo"), (hi, "hi")):
        if k is not None and not isinstance(k, bytes):
            raise ArgumentTypeError(f"{what} must be bytes or None, not {type(k).__name__}")
    return list(bufs)


def blocks_unpack_flat(bufs: Any, block_lens: Any, run_blocks: Any, lo: Optional[bytes] = None,
                       hi: Optional[bytes] = None) -> tuple[Packed, Any]:
    """``blocks_unpack`` with each run's blocks given flat: ``bufs[r]`` holds
    run ``r``'s ``run_blocks[r]`` blocks back to back, and ``block_lens``
    the length of every block (over all runs, in order).  Same result and
    errors (block numbers count over all runs); the C implementation joins
    the runs in reused scratch memory and returns its packed keys and
    values as memoryviews over its own output (no copy).
    O(total block bytes)."""
    bufs = check_unpack_flat_args(bufs, block_lens, run_blocks, lo, hi)
    runs: list[list[memoryview]] = []
    b = 0
    for buf, count in zip(bufs, run_blocks):
        view = memoryview(buf).cast("B")
        run = []
        pos = 0
        for _ in range(count):
            run.append(view[pos:pos + block_lens[b]])
            pos += block_lens[b]
            b += 1
        runs.append(run)
    return blocks_unpack(runs, lo, hi)


def _recode(exc: CorruptionError, block: int) -> CorruptionError:
    """``exc`` (a block_decode error) as ``unpack_corruption`` for ``block``."""
    msg = str(exc.args[0])
    for code, text in sorted(ERRORS.items(), key=lambda ct: -len(ct[1])):
        if msg.startswith(text):
            return unpack_corruption(code, block, exc.offset)
    raise exc


def sort_entries(packed: Packed) -> Any:
    """The internal order of a memtable's entries: ``packed`` holds user keys
    and entries ``u64le(trailer) || value``; returns ``array('Q')`` of the
    entry indices sorted by user key ascending, then trailer descending
    (stable).  An entry shorter than 8 bytes -> ``CorruptionError`` (offset
    = its index).  O(n log n)."""
    kbuf, klens, vbuf, vlens = check_packed(packed)
    keys = unpack_items(kbuf, klens)
    entries = unpack_items(vbuf, vlens)
    for i, e in enumerate(entries):
        if len(e) < 8:
            raise corruption(ERR_MERGE_SHORT_KEY, i)
    unpack = _U64.unpack_from
    trailers = [unpack(e, 0)[0] for e in entries]
    return _array("Q", sorted(range(len(keys)), key=lambda i: (keys[i], -trailers[i])))


class TableChunk:
    """What ``table_blocks`` produced: ``data`` (block contents back to
    back), ``block_ends`` / ``last_positions`` / ``last_keys`` (per block:
    end offset in data, order position and internal key of its last entry),
    ``hashes`` (``array('Q')``, XXH64 of each new user key), ``next_pos``,
    ``stop`` (0 all taken, 1 byte limit, 2 grandparent cut) and the
    statistics of the entries taken."""

    __slots__ = ("data", "block_ends", "last_positions", "last_keys", "hashes", "next_pos",
                 "stop", "key_bytes", "value_bytes", "tombstones", "min_seq", "max_seq",
                 "first_key", "entries")

    def __init__(self, data: bytes, block_ends: list[int], last_positions: list[int],
                 last_keys: list[bytes], hashes: Any, info: Sequence[int],
                 first_key: bytes, entries: int) -> None:
        self.first_key = first_key      # internal key of the first entry taken (b"": none)
        self.entries = entries          # entries taken
        self.data = data
        self.block_ends = block_ends
        self.last_positions = last_positions
        self.last_keys = last_keys
        self.hashes = hashes
        (self.next_pos, self.stop, self.key_bytes, self.value_bytes, self.tombstones,
         self.min_seq, self.max_seq) = info

    def astuple(self) -> tuple:
        return (self.data, list(self.block_ends), list(self.last_positions),
                list(self.last_keys), list(self.hashes), self.next_pos, self.stop,
                self.key_bytes, self.value_bytes, self.tombstones, self.min_seq, self.max_seq,
                self.first_key, self.entries)


class Grandparents:
    """The grandparent files of a compaction for ``table_blocks``' cut rule:
    their largest user keys (packed) and sizes, the byte limit, and the
    mutable state ``[index, bytes, seen]`` carried from call to call."""

    __slots__ = ("keys", "key_lens", "sizes", "limit", "state")

    def __init__(self, user_keys: Sequence[bytes], sizes: Sequence[int], limit: int) -> None:
        if len(user_keys) != len(sizes):
            raise InvalidArgumentError("grandparent keys and sizes differ in length")
        check_bytes_list(list(user_keys), "grandparent keys")
        self.keys = b"".join(user_keys)
        self.key_lens = _array("Q", map(len, user_keys))
        self.sizes = _array("Q", sizes)
        self.limit = check_int(limit, "limit", 0, _M64)
        self.state = [0, 0, 0]


def check_table_blocks_args(packed: Any, layout: Any, order: Any, pos: Any, n_order: Any,
                            block_size: Any, restart_interval: Any, limit: Any,
                            prev_key: Any, gps: Any, views: bool = False) -> Packed:
    packed = check_packed(packed, views=views)
    check_int(layout, "layout", 0, 1)
    if order is not None and (not isinstance(order, _array) or order.typecode != "Q"):
        raise ArgumentTypeError("order must be an array('Q') or None")
    check_int(n_order, "n_order", 0, len(order) if order is not None else _M64)
    check_int(pos, "pos", 0, n_order)
    check_int(block_size, "block_size", 1, 0xFFFFFFFF)
    check_int(restart_interval, "restart_interval", 1, MAX_RESTART_INTERVAL)
    check_int(limit, "limit", 0, _M64)
    if prev_key is not None:
        if not isinstance(prev_key, bytes):
            raise ArgumentTypeError("prev_key must be bytes or None")
        if len(prev_key) < 8:
            raise InvalidArgumentError("prev_key must be an internal key (>= 8 bytes)")
    if gps is not None and not isinstance(gps, Grandparents):
        raise ArgumentTypeError("gps must be a Grandparents or None")
    return packed


def table_blocks(packed: Packed, layout: int, order: Any, pos: int, n_order: int,
                 block_size: int, restart_interval: int, limit: int,
                 prev_key: Optional[bytes], gps: Optional[Grandparents]) -> TableChunk:
    """Encode entries into data blocks as ``TableBuilder.add`` cuts them.

    Entry g is key g / value g of ``packed`` (layout 0: internal key and
    value; layout 1: user key and ``u64le(trailer) || value``), taken in the
    order ``order[pos:n_order]`` (``order`` None: ``range(pos, n_order)``).
    Block cut: an estimate starting at 8 grows by key + value length + 3 +
    4 // restart_interval per entry; the block closes after the entry that
    brings it to ``block_size``, and when the call ends.  ``prev_key``: the
    internal key the table already ends with.  Before an entry that starts
    a new user key: the grandparent rule (``gps``; its state is updated)
    stops the call (stop 2) when the table is not empty; then the call stops
    (stop 1) if the entries it took hold ``>= limit`` key + value bytes.

    Errors, checked per entry in this order (CorruptionError, offset = order
    position): an index >= the number of entries (InvalidArgumentError), an
    entry shorter than 8 bytes, a key or value of 2**32 bytes or more
    (InvalidArgumentError), a kind > 1, an entry not strictly after the
    previous one in internal order.  O(bytes taken).
    """
    kbuf, klens, vbuf, vlens = check_table_blocks_args(
        packed, layout, order, pos, n_order, block_size, restart_interval, limit, prev_key, gps)
    keys = unpack_items(kbuf, klens)
    values = unpack_items(vbuf, vlens)
    if gps is not None:
        gkeys = unpack_items(gps.keys, gps.key_lens)
        gp_index, gp_bytes, gp_seen = gps.state
    else:
        gkeys = []
        gp_index = gp_bytes = gp_seen = 0
    n = len(keys)
    per_entry = 3 + 4 // restart_interval
    started = prev_key is not None
    prev_uk = prev_key[:-8] if prev_key is not None else None
    prev_t = _U64.unpack_from(prev_key, len(prev_key) - 8)[0] if prev_key is not None else 0
    blocks_out: list[bytes] = []
    data_len = 0
    block_ends: list[int] = []
    last_positions: list[int] = []
    last_keys: list[bytes] = []
    hashes = _array("Q")
    bk: list[bytes] = []
    bv: list[bytes] = []
    estimate = 8
    taken = kbytes = vbytes = tombs = 0
    min_seq, max_seq = _M64, 0
    stop = 0
    i = pos
    first_key = b""

    def close_block(last_pos: int) -> None:
        nonlocal data_len, estimate
        blk = block_encode(bk, bv, restart_interval)
        blocks_out.append(blk)
        data_len += len(blk)
        block_ends.append(data_len)
        last_positions.append(last_pos)
        last_keys.append(bk[-1])
        bk.clear()
        bv.clear()
        estimate = 8

    while i < n_order:
        g = order[i] if order is not None else i
        if g >= n:
            raise InvalidArgumentError(f"table_blocks: entry index {g} at position {i} "
                                       f"is out of range")
        if layout == 0:
            ikey, value = keys[g], values[g]
            if len(ikey) < 8:
                raise corruption(ERR_MERGE_SHORT_KEY, i)
        else:
            entry = values[g]
            if len(entry) < 8:
                raise corruption(ERR_MERGE_SHORT_KEY, i)
            ikey, value = keys[g] + entry[:8], entry[8:]
        uk = ikey[:-8]
        t = _U64.unpack_from(ikey, len(ikey) - 8)[0]
        if (t & 0xFF) > 1:
            raise corruption(ERR_MERGE_BAD_KIND, i)
        if len(ikey) > 0xFFFFFFFF or len(value) > 0xFFFFFFFF:
            raise InvalidArgumentError(TOO_LARGE_MESSAGE)
        new_user = True
        if prev_uk is not None:
            if uk < prev_uk or (uk == prev_uk and t >= prev_t):
                raise corruption(ERR_MERGE_UNSORTED, i)
            new_user = uk != prev_uk
        if new_user:
            cut = False
            if gkeys:
                while gp_index < len(gkeys) and gkeys[gp_index] < uk:
                    if gp_seen:
                        gp_bytes += gps.sizes[gp_index]  # type: ignore[union-attr]
                    gp_index += 1
                gp_seen = 1
                if gp_bytes > gps.limit:  # type: ignore[union-attr]
                    gp_bytes = 0
                    cut = True
            if cut and started:
                stop = 2
                break
            if taken and kbytes + vbytes >= limit:
                stop = 1
                break
            hashes.append(_xxh64(uk, 0))
        if not taken:
            first_key = ikey
        bk.append(ikey)
        bv.append(value)
        prev_uk, prev_t = uk, t
        started = True
        kbytes += len(ikey)
        vbytes += len(value)
        if not t & 1:
            tombs += 1
        seq = t >> 8
        min_seq = min(min_seq, seq)
        max_seq = max(max_seq, seq)
        taken += 1
        estimate += len(ikey) + len(value) + per_entry
        if estimate >= block_size:
            close_block(i)
        i += 1
    if bk:
        close_block(pos + taken - 1)
    if gps is not None:
        gps.state = [gp_index, gp_bytes, gp_seen]
    return TableChunk(b"".join(blocks_out), block_ends, last_positions, last_keys, hashes,
                      (pos + taken, stop, kbytes, vbytes, tombs, min_seq, max_seq),
                      first_key, taken)


def bloom_build_hashes(hashes: Any, bits_per_key: int) -> bytes:
    """The bloom filter (``bloom_build``'s format) of the keys whose XXH64
    hashes are ``hashes`` (``array('Q')``).  O(len(hashes) * k)."""
    if not isinstance(hashes, _array) or hashes.typecode != "Q":
        raise ArgumentTypeError("hashes must be an array('Q')")
    check_int(bits_per_key, "bits_per_key", 1, 1000)
    return _bloom_from_hashes(hashes, bits_per_key)


def merge_indices(packed: Packed, run_starts: Any, read_seq: int, snapshots: Sequence[int] = (),
                  mode: int = MERGE_READ, bottom: bool = False) -> Any:
    """``merge`` over a packed run split into runs at ``run_starts`` (an
    ``array('Q')``: first entry of each run, then the total); returns the
    chosen entries' indices into ``packed`` (``array('Q')``), in merged
    order.  Same semantics and errors as ``merge``.  O(N log k)."""
    kbuf, klens, vbuf, vlens = check_packed(packed)
    if not isinstance(run_starts, _array) or run_starts.typecode != "Q" or not run_starts:
        raise ArgumentTypeError("run_starts must be a non-empty array('Q')")
    if run_starts[0] != 0 or run_starts[-1] != len(klens) or any(
            a > b for a, b in zip(run_starts, run_starts[1:])):
        raise InvalidArgumentError("run_starts must ascend from 0 to the number of entries")
    keys = unpack_items(kbuf, klens)
    values = unpack_items(vbuf, vlens)
    runs = [(keys[a:b], values[a:b]) for a, b in zip(run_starts, run_starts[1:])]
    _, chosen = _merge_chosen(runs, read_seq, snapshots, mode, bottom)
    return _array("Q", (run_starts[r] + i for r, i in chosen))


# ===================================================================== read path
# (reader.py / iterators.py; C: native/read.c)
#
# Probe blob (in memory only, never on disk; built by ``probe_blob_encode``
# from a table's index and filter and its file extent), little endian:
#
#   u32 nblocks | u32 filter_len | u32 lo_len | u32 hi_len | u32 flags |
#   u32 keys_len | filter[filter_len] | lo[lo_len] | hi[hi_len] |
#   u64 trailer[nblocks] | u32 key_end[nblocks] | keys[keys_len]
#
# ``lo``/``hi``: the smallest and largest user key of the table's extent;
# flags bit 0: the extent ends just before ``hi`` (its largest key is a
# range-tombstone sentinel); filter_len 0: no bloom filter; index key i
# (the user key of data block i's last internal key) is
# ``keys[key_end[i-1]:key_end[i]]`` (key_end[-1] = 0), ``trailer[i]`` that
# key's trailer.  Errors (``tables_probe``): the header of a table is checked
# when the probe first reads that table -- shorter than 24 bytes, section
# lengths not adding up to the blob's length, filter_len 1 or flags > 1 ->
# ERR_PROBE_HEADER at offset 0; a key_end is checked when its key is read
# -- ``key_end[i-1] > key_end[i]`` or ``key_end[i] > keys_len`` ->
# ERR_PROBE_KEY_END at the offset of ``key_end[i]`` in the blob.  The error
# is ``CorruptionError("tables_probe table T: ...", None, offset)``.

ERR_PROBE_HEADER = -40
ERR_PROBE_KEY_END = -41
PROBE_HEADER_SIZE = 24          # in memory only
_PROBE_HDR = struct.Struct("<6I")
PROBE_ERRORS: dict[int, str] = {
    ERR_PROBE_HEADER: "malformed probe blob header",
    ERR_PROBE_KEY_END: "probe blob key_end out of order or out of range",
}


def probe_corruption(code: int, table: int, offset: int) -> CorruptionError:
    """The CorruptionError of ``tables_probe`` for ``code`` in blob ``table``
    at ``offset`` (both implementations use it)."""
    return CorruptionError(f"tables_probe table {table}: {PROBE_ERRORS[code]}", None, offset)


def probe_blob_encode(filter_block: Optional[bytes], lo: bytes, hi: bytes, hi_exclusive: bool,
                      index_user_keys: Sequence[bytes], trailers: Sequence[int]) -> bytes:
    """The probe blob of one table (layout above).  O(index size + filter).

    Requires: ``index_user_keys`` ascending with ``trailers`` (each < 2**64)
    of the same length; ``filter_block`` None or at least 2 bytes."""
    n = len(index_user_keys)
    if len(trailers) != n:
        raise InvalidArgumentError("index_user_keys and trailers differ in length")
    filt = b"" if filter_block is None else bytes(filter_block)
    if len(filt) == 1:
        raise InvalidArgumentError("a filter block has at least 2 bytes")
    keys = b"".join(index_user_keys)
    ends = []
    e = 0
    for k in index_user_keys:
        e += len(k)
        ends.append(e)
    return b"".join((
        _PROBE_HDR.pack(n, len(filt), len(lo), len(hi), 1 if hi_exclusive else 0, len(keys)),
        filt, lo, hi, struct.pack(f"<{n}Q", *trailers), struct.pack(f"<{n}I", *ends), keys))


def check_tables_probe_args(tables: Any, groups: Any, user_key: Any, read_seq: Any
                            ) -> tuple[list[bytes], list[tuple[int, int]]]:
    """Validate ``tables_probe``'s arguments in order; return the tables as
    bytes and the groups as ``(kind, count)`` int pairs."""
    if not isinstance(tables, (list, tuple)):
        raise ArgumentTypeError(f"tables must be a list of bytes, not {type(tables).__name__}")
    tabs = [check_buffer(t, f"tables[{i}]") for i, t in enumerate(tables)]
    if not isinstance(groups, (list, tuple)):
        raise ArgumentTypeError(f"groups must be a list of (kind, count), not "
                                f"{type(groups).__name__}")
    out = []
    total = 0
    for i, g in enumerate(groups):
        if not isinstance(g, (list, tuple)) or len(g) != 2:
            raise ArgumentTypeError(f"groups[{i}] must be a (kind, count) pair")
        kind = check_int(g[0], f"groups[{i}] kind", 0, 1)
        count = check_int(g[1], f"groups[{i}] count", 0, 0xFFFFFFFF)
        total += count
        out.append((kind, count))
    if total != len(tabs):
        raise InvalidArgumentError(f"groups count {total} tables, tables has {len(tabs)}")
    check_bytes_arg(user_key, "user_key")
    check_int(read_seq, "read_seq", 0, MAX_SEQUENCE)
    return tabs, out


class _ProbeTable:
    """One parsed probe blob (header checked; key_ends checked on read)."""

    __slots__ = ("b", "t", "n", "flen", "lo", "hi", "excl", "tr", "ends", "keys", "klen")

    def __init__(self, b: bytes, t: int) -> None:
        if len(b) < PROBE_HEADER_SIZE:
            raise probe_corruption(ERR_PROBE_HEADER, t, 0)
        n, flen, lolen, hilen, flags, klen = _PROBE_HDR.unpack_from(b, 0)
        if (PROBE_HEADER_SIZE + flen + lolen + hilen + 12 * n + klen != len(b)
                or flen == 1 or flags > 1):
            raise probe_corruption(ERR_PROBE_HEADER, t, 0)
        self.b, self.t, self.n, self.flen, self.klen = b, t, n, flen, klen
        p = PROBE_HEADER_SIZE + flen
        self.lo = b[p:p + lolen]
        p += lolen
        self.hi = b[p:p + hilen]
        self.excl = bool(flags & 1)
        self.tr = p + hilen
        self.ends = self.tr + 8 * n
        self.keys = self.ends + 4 * n

    def ends_before(self, key: bytes) -> bool:
        return self.hi < key or (self.hi == key and self.excl)

    def key(self, i: int) -> bytes:
        b = self.b
        start = _U32.unpack_from(b, self.ends + 4 * (i - 1))[0] if i else 0
        end = _U32.unpack_from(b, self.ends + 4 * i)[0]
        if start > end or end > self.klen:
            raise probe_corruption(ERR_PROBE_KEY_END, self.t, self.ends + 4 * i)
        return b[self.keys + start:self.keys + end]

    def probe(self, key: bytes, lt: int) -> Optional[int]:
        """The block index the index search lands on, or None (filtered
        out, or every block ends before the lookup key)."""
        if self.flen and not bloom_may_contain(
                self.b[PROBE_HEADER_SIZE:PROBE_HEADER_SIZE + self.flen], key):
            return None
        lo, hi = 0, self.n
        while lo < hi:
            mid = (lo + hi) // 2
            if self.key(mid) < key:
                lo = mid + 1
            else:
                hi = mid
        while lo < self.n:
            if self.key(lo) != key or _U64.unpack_from(self.b, self.tr + 8 * lo)[0] <= lt:
                break
            lo += 1
        return lo if lo < self.n else None


def tables_probe(tables: Sequence[bytes], groups: Sequence[tuple[int, int]], user_key: bytes,
                 read_seq: int) -> list[tuple[int, int]]:
    """The candidate ``(table, block)`` pairs of a point lookup, in search
    order: ``groups`` cut ``tables`` (probe blobs, layout above) into runs of
    ``count`` tables; kind 0 probes every table of its run in order (level
    0, newest first), kind 1 is a sorted disjoint run (the first table whose
    extent does not end before ``user_key``, by binary search, if its ``lo``
    <= ``user_key``).  A table whose extent holds ``user_key`` and whose bloom
    filter does not rule it out yields the first data block whose last key
    >= the lookup key ``(user_key, read_seq)`` (the index's user keys
    bisected, then blocks ending in ``user_key`` with a trailer above
    ``read_seq << 8 | 0xFF`` skipped), if any.

    Requires: bytes-like tables, ``(kind, count)`` int pairs with counts
    summing to ``len(tables)``, bytes ``user_key``, ``0 <= read_seq <=
    2**56-1``.  Errors: see the layout above.  O(tables x (log files + k +
    log blocks)).
    """
    tabs, grps = check_tables_probe_args(tables, groups, user_key, read_seq)
    lt = (read_seq << 8) | 0xFF
    out: list[tuple[int, int]] = []
    base = 0
    for kind, count in grps:
        if kind == 0:
            for j in range(count):
                p = _ProbeTable(tabs[base + j], base + j)
                if p.lo > user_key or p.ends_before(user_key):
                    continue
                blk = p.probe(user_key, lt)
                if blk is not None:
                    out.append((base + j, blk))
        else:
            lo, hi = 0, count
            while lo < hi:
                mid = (lo + hi) // 2
                if _ProbeTable(tabs[base + mid], base + mid).ends_before(user_key):
                    lo = mid + 1
                else:
                    hi = mid
            if lo < count:
                p = _ProbeTable(tabs[base + lo], base + lo)
                if p.lo <= user_key:
                    blk = p.probe(user_key, lt)
                    if blk is not None:
                        out.append((base + lo, blk))
        base += count
    return out


def check_blocks_decode_args(data: Any, ends: Any) -> tuple[bytes, Any]:
    """Validate ``blocks_decode``'s arguments; ``data`` as bytes."""
    data = check_buffer(data, "data")
    if not isinstance(ends, _array) or ends.typecode != "Q":
        raise ArgumentTypeError("ends must be an array('Q')")
    if any(b < a for a, b in zip(ends, ends[1:])) or (ends and ends[-1] > len(data)):
        raise InvalidArgumentError("ends must ascend within the data")
    return data, ends


def blocks_decode(data: bytes, ends: Any) -> tuple[list[bytes], list[bytes], Any]:
    """Decode the data blocks given back to back in ``data`` (block i is
    ``data[ends[i-1]:ends[i]]``, ``ends[-1]`` taken as 0) as
    ``block_decode`` does: ``(keys, values, counts)`` with the entries of
    every block in order and ``counts`` (``array('Q')``) the entries of each
    block.  A corrupt block -> ``CorruptionError`` whose offset is the
    position in ``data``.  O(len(data) + total key bytes)."""
    data, ends = check_blocks_decode_args(data, ends)
    keys: list[bytes] = []
    values: list[bytes] = []
    counts = _array("Q")
    start = 0
    for end in ends:
        try:
            k, v = block_decode(data[start:end])
        except CorruptionError as exc:
            msg = str(exc)
            suffix = f" at offset {exc.offset}"
            if msg.endswith(suffix):
                msg = msg[:-len(suffix)]
            raise CorruptionError(msg, None, start + (exc.offset or 0)) from None
        keys += k
        values += v
        counts.append(len(k))
        start = end
    return keys, values, counts


# ===================================================================== LZ4 and physical blocks
# (the SSTable block seal/open of lsm/sstable/format.py in bulk; C: native/lz4.c)
#
# LZ4 block format (Yann Collet's; no frame, no size prefix) -- a sequence
# of ``token | literal_len_ext* | literals | offset:u16 LE | match_len_ext*``;
# token = literal length (high nibble) and match length - 4 (low nibble),
# a nibble of 15 continuing in extension bytes (each added; 255 = more
# follow).  A match copies ``match_len`` bytes from ``offset`` (1..65535)
# bytes back in the output (it may overlap its own output).  The block ends
# with a sequence that has literals only.
#
# The compressor (``lz4_compress``; native/lz4.c is its exact replica, so
# the two produce identical bytes) is a greedy single-pass matcher:
#
# * hash table of LZ4_HASH_SIZE = 4096 entries (the last position seen for
#   each hash; every entry starts as position 0, and the search starts at
#   p = 1), hash of the u32 LE word at p:
#   ``((word * 2654435761) mod 2**32) >> 20``;
# * inputs shorter than 13 bytes are all literals; otherwise a match may
#   start at p <= n - 12 and must end at or before n - 5 (the format's
#   end rules: the last 5 bytes are literals, no match starts in the last
#   12 bytes);
# * at p: look up the candidate, store p; a candidate is used when it lies
#   at most 65535 bytes back and its 4 bytes equal those at p.  Otherwise
#   advance by ``1 + (misses >> 6)`` (``misses`` counts the failed lookups
#   since the last match: skip acceleration over incompressible data);
# * a match is extended forward (longest common run, up to n - 5) and
#   backward (while the bytes before both sides agree, not before the start
#   of the pending literals nor before position 0), emitted, and then
#   position ``end - 2`` is stored in the table and the search resumes at
#   the match end with ``misses = 0``.
#
# Output never exceeds ``lz4_bound(n) = n + n // 255 + 16``.
#
# The decoder (``lz4_decompress``) accepts a block only if it produces
# exactly ``size`` bytes and follows the end rules as the reference LZ4
# decoder enforces them (a stream ``lz4.block.compress`` writes always
# does).  Checks, per sequence, in this order, with the error offset in the
# input (``t`` = offset of the sequence's token):
#
#   token or length byte missing                     ERR_LZ4_TRUNCATED [t]
#   literals run past the input                      ERR_LZ4_LITERALS_OVERRUN [t]
#   literals run past ``size``                       ERR_LZ4_OUTPUT_OVERRUN [t]
#   input ends after the literals: output < size     ERR_LZ4_SIZE_MISMATCH [len]
#     (== size: success)
#   a match would start in the last 12 bytes of the output (op + 12 > size)
#   or fewer than 8 input bytes follow the literals  ERR_LZ4_END_LIMIT [t]
#   offset 0 or more than the output so far          ERR_LZ4_BAD_OFFSET [offset field]
#   match length byte missing                        ERR_LZ4_TRUNCATED [t]
#   the match ends in the last 5 bytes of ``size``   ERR_LZ4_MATCH_END [t]
#
# Before all these: ``size == 0`` with input other than ``b""`` (then
# ERR_LZ4_TRUNCATED [0]) or ``b"\x00"`` is ERR_LZ4_EMPTY [0] (the reference
# decoder's rule for an empty output; otherwise it ignores the match
# nibble of the last token, and so does this decoder).
#
# A physical block (lsm/sstable/format.py) is ``contents | type:u8 |
# checksum:u32 LE`` with checksum = XXH64(contents || type) & 0xFFFFFFFF;
# type 1 contents are ``u32 LE uncompressed length || lz4 block``.
# ``blocks_seal`` writes what ``make_physical_block`` writes with this
# module's compressor; ``blocks_open`` checks what ``unwrap_physical_block``
# checks, in the same order, with the same messages (a decompression
# failure names this decoder's reason instead of the lz4 package's).

ERR_LZ4_TRUNCATED = -50
ERR_LZ4_LITERALS_OVERRUN = -51
ERR_LZ4_OUTPUT_OVERRUN = -52
ERR_LZ4_SIZE_MISMATCH = -53
ERR_LZ4_END_LIMIT = -54
ERR_LZ4_BAD_OFFSET = -55
ERR_LZ4_MATCH_END = -56
ERR_LZ4_EMPTY = -57
ERR_PBLOCK_TRUNCATED = -60
ERR_PBLOCK_CHECKSUM = -61
ERR_PBLOCK_UNKNOWN_TYPE = -62
ERR_PBLOCK_LZ4_SHORT = -63
ERR_PBLOCK_LZ4_SIZE = -64

LZ4_ERRORS: dict[int, str] = {
    ERR_LZ4_TRUNCATED: "lz4: input ends inside a sequence",
    ERR_LZ4_LITERALS_OVERRUN: "lz4: literals run past the end of the input",
    ERR_LZ4_OUTPUT_OVERRUN: "lz4: literals run past the expected size",
    ERR_LZ4_SIZE_MISMATCH: "lz4: output shorter than the expected size",
    ERR_LZ4_END_LIMIT: "lz4: sequence continues too close to the end of the block",
    ERR_LZ4_BAD_OFFSET: "lz4: match offset 0 or before the start of the output",
    ERR_LZ4_MATCH_END: "lz4: match ends in the last 5 bytes of the expected size",
    ERR_LZ4_EMPTY: "lz4: a block of 0 bytes must be the single byte 00",
}
ERRORS.update(LZ4_ERRORS)

LZ4_HASH_LOG = 12            # the compressor's parameters (C and twin must agree)
LZ4_HASH_SIZE = 1 << LZ4_HASH_LOG
LZ4_HASH_PRIME = 2654435761
LZ4_MIN_MATCH = 4            # do not change: LZ4 block format
LZ4_MFLIMIT = 12             # do not change: LZ4 block format (no match starts in the last 12)
LZ4_LAST_LITERALS = 5        # do not change: LZ4 block format (the last 5 bytes are literals)
LZ4_MAX_OFFSET = 65535       # do not change: LZ4 block format
LZ4_SKIP_SHIFT = 6
LZ4_MAX_INPUT = 0x7E000000   # the largest input (and expected size) accepted
PBLOCK_TRAILER = 5           # do not change: on-disk (lsm/sstable/format.py BLOCK_TRAILER_SIZE)
_HASH_SHIFT = 32 - LZ4_HASH_LOG


def lz4_bound(n: int) -> int:
    """The largest output ``lz4_compress`` can produce for ``n`` bytes."""
    return n + n // 255 + 16


def _lz4_ext(out: bytearray, v: int) -> None:
    """Append the extension bytes of a length nibble of 15 (``v`` = length - 15)."""
    q, r = divmod(v, 255)
    if q:
        out += b"\xff" * q
    out.append(r)


def _lz4_common(src: bytes, a: int, b: int, limit: int) -> int:
    """Length of the common run of ``src[a:]`` and ``src[b:]``, at most
    ``limit`` (slice comparisons: chunks doubling from 8, then a binary
    search inside the first chunk that differs).  O(result + log)."""
    m = 0
    k = 8
    while m < limit:
        c = k if k < limit - m else limit - m
        if src[a + m:a + m + c] == src[b + m:b + m + c]:
            m += c
            if k < 4096:
                k <<= 1
            continue
        lo, hi = 0, c        # prefix lo agrees, prefix hi does not
        while hi - lo > 1:
            mid = (lo + hi) >> 1
            if src[a + m:a + m + mid] == src[b + m:b + m + mid]:
                lo = mid
            else:
                hi = mid
        return m + lo
    return m


def _lz4_compress(src: bytes) -> bytes:
    """The compressor (algorithm above).  O(n)."""
    n = len(src)
    out = bytearray()
    anchor = 0
    if n >= LZ4_MFLIMIT + 1:
        table = [0] * LZ4_HASH_SIZE
        unpack = _U32.unpack_from
        limit = n - LZ4_MFLIMIT          # last position a match may start at
        mlimit = n - LZ4_LAST_LITERALS   # a match ends at or before this
        p = 1
        misses = 0
        while p <= limit:
            seq = unpack(src, p)[0]
            h = ((seq * LZ4_HASH_PRIME) & 0xFFFFFFFF) >> _HASH_SHIFT
            ref = table[h]
            table[h] = p
            if p - ref > LZ4_MAX_OFFSET or unpack(src, ref)[0] != seq:
                p += 1 + (misses >> LZ4_SKIP_SHIFT)
                misses += 1
                continue
            end = p + 4 + _lz4_common(src, ref + 4, p + 4, mlimit - p - 4)
            s = p
            r = ref
            while s > anchor and r > 0 and src[s - 1] == src[r - 1]:
                s -= 1
                r -= 1
            lit = s - anchor
            ml = end - s - LZ4_MIN_MATCH
            off = p - ref
            out.append(((15 if lit >= 15 else lit) << 4) | (15 if ml >= 15 else ml))
            if lit >= 15:
                _lz4_ext(out, lit - 15)
            out += src[anchor:s]
            out.append(off & 0xFF)
            out.append(off >> 8)
            if ml >= 15:
                _lz4_ext(out, ml - 15)
            anchor = p = end
            misses = 0
            q = p - 2
            table[((unpack(src, q)[0] * LZ4_HASH_PRIME) & 0xFFFFFFFF) >> _HASH_SHIFT] = q
    lit = n - anchor
    out.append((15 if lit >= 15 else lit) << 4)
    if lit >= 15:
        _lz4_ext(out, lit - 15)
    out += src[anchor:]
    return bytes(out)


def _lz4_read_ext(src: Any, ip: int, n: int, length: int) -> tuple[int, int]:
    """A literal or match length whose token nibble is 15: add the 255-run
    bytes at ``ip``.  ``(length, next ip)``, or ``(-1, -1)`` when the input
    ends inside the run.  O(run)."""
    while True:
        if ip >= n:
            return -1, -1
        b = src[ip]
        ip += 1
        length += b
        if b != 255:
            return length, ip


def _lz4_decompress(src: Any, size: int) -> tuple[int, Any]:
    """Decode an LZ4 block that must produce ``size`` bytes (checks above).
    ``src``: bytes or a memoryview.  Returns ``(0, output bytearray)`` or
    ``(error code, input offset)``.  O(n + size)."""
    n = len(src)
    if size == 0 and n > 0 and (n != 1 or src[0] != 0):
        return ERR_LZ4_EMPTY, 0
    out = bytearray()
    op = 0
    ip = 0
    while True:
        t = ip
        if ip >= n:
            return ERR_LZ4_TRUNCATED, t
        token = src[ip]
        ip += 1
        lit = token >> 4
        if lit == 15:
            lit, ip = _lz4_read_ext(src, ip, n, lit)
            if ip < 0:
                return ERR_LZ4_TRUNCATED, t
        if lit > n - ip:
            return ERR_LZ4_LITERALS_OVERRUN, t
        if lit > size - op:
            return ERR_LZ4_OUTPUT_OVERRUN, t
        if lit:
            out += src[ip:ip + lit]
            ip += lit
            op += lit
        if ip == n:
            if op != size:
                return ERR_LZ4_SIZE_MISMATCH, n
            return 0, out
        if op + LZ4_MFLIMIT > size or n - ip < 8:
            return ERR_LZ4_END_LIMIT, t
        off = src[ip] | (src[ip + 1] << 8)
        if off == 0 or off > op:
            return ERR_LZ4_BAD_OFFSET, ip
        ip += 2
        ml = token & 15
        if ml == 15:
            ml, ip = _lz4_read_ext(src, ip, n, ml)
            if ip < 0:
                return ERR_LZ4_TRUNCATED, t
        ml += LZ4_MIN_MATCH
        if op + ml + LZ4_LAST_LITERALS > size:
            return ERR_LZ4_MATCH_END, t
        start = op - off
        if off >= ml:
            out += out[start:start + ml]
        else:
            pattern = out[start:]
            out += (pattern * (ml // off + 1))[:ml]
        op += ml


def check_lz4_compress_args(data: Any) -> bytes:
    """Validate ``lz4_compress``'s argument; return it as bytes."""
    data = check_buffer(data, "data")
    if len(data) > LZ4_MAX_INPUT:
        raise InvalidArgumentError(f"data must be at most {LZ4_MAX_INPUT} bytes, got {len(data)}")
    return data


def lz4_compress(data: bytes) -> bytes:
    """``data`` as one LZ4 block (raw: no size prefix; the algorithm above),
    decodable by ``lz4.block.decompress(data, uncompressed_size=len)``.

    Requires: ``data`` bytes-like, at most LZ4_MAX_INPUT bytes.  The output
    is at most ``lz4_bound(len(data))`` bytes.  O(n)."""
    return _lz4_compress(check_lz4_compress_args(data))


def check_lz4_decompress_args(data: Any, size: Any) -> bytes:
    """Validate ``lz4_decompress``'s arguments in order; return ``data`` as bytes."""
    data = check_buffer(data, "data")
    check_int(size, "size", 0, LZ4_MAX_INPUT)
    return data


def lz4_decompress(data: bytes, size: int) -> bytes:
    """Decode the raw LZ4 block ``data`` into exactly ``size`` bytes.

    Requires: ``data`` bytes-like, ``0 <= size <= LZ4_MAX_INPUT``.  A block
    that breaks the checks above raises ``CorruptionError(LZ4_ERRORS[code],
    None, input offset)``.  O(len(data) + size)."""
    data = check_lz4_decompress_args(data, size)
    rc, res = _lz4_decompress(data, size)
    if rc:
        raise corruption(rc, res)
    return bytes(res)


PBLOCK_ERRORS: dict[int, str] = {
    ERR_PBLOCK_TRUNCATED: "sstable: block of {size} bytes is truncated",
    ERR_PBLOCK_CHECKSUM: "sstable: block checksum mismatch",
    ERR_PBLOCK_UNKNOWN_TYPE: "sstable: unknown compression type {detail}",
    ERR_PBLOCK_LZ4_SHORT: "sstable: lz4 block too short",
    ERR_PBLOCK_LZ4_SIZE: "sstable: lz4 block declares an impossible size",
}


def pblock_corruption(code: int, block: int, detail: int, size: int, name: Optional[str],
                      offset: int) -> CorruptionError:
    """The CorruptionError of ``blocks_open`` (both implementations use it):
    block number ``block`` (``block_index`` attribute), of handle size
    ``size``, at file offset ``offset``; ``detail`` is the compression type
    (ERR_PBLOCK_UNKNOWN_TYPE) or, for an LZ4 code, the error offset inside
    the block's stored contents (4 + the decoder's input offset)."""
    if code in LZ4_ERRORS:
        msg = f"sstable: lz4 decompression failed ({LZ4_ERRORS[code]} at byte {detail})"
    else:
        msg = PBLOCK_ERRORS[code].format(size=size, detail=detail)
    exc = CorruptionError(msg, name, offset)
    exc.block_index = block  # type: ignore[attr-defined]
    return exc


def _check_q_array(obj: Any, name: str) -> Any:
    if not isinstance(obj, _array) or obj.typecode != "Q":
        raise ArgumentTypeError(f"{name} must be an array('Q'), not {type(obj).__name__}")
    return obj


def check_blocks_seal_args(data: Any, ends: Any, compress: Any) -> bytes:
    """Validate ``blocks_seal``'s arguments in order; return ``data`` as bytes."""
    data = check_buffer(data, "data")
    _check_q_array(ends, "ends")
    if not isinstance(compress, bool):
        raise ArgumentTypeError(f"compress must be a bool, not {type(compress).__name__}")
    prev = 0
    for e in ends:
        if e < prev:
            raise InvalidArgumentError("ends must not descend")
        if compress and e - prev > LZ4_MAX_INPUT:
            raise InvalidArgumentError(f"a block to compress must be at most {LZ4_MAX_INPUT} bytes")
        prev = e
    if prev != len(data):
        raise InvalidArgumentError(f"ends must finish at len(data) = {len(data)}, not {prev}")
    return data


def blocks_seal_bound(data_len: int, nblocks: int) -> int:
    """Room ``lsm_blocks_seal`` needs for ``nblocks`` blocks of ``data_len``
    bytes in all (the C binding's output buffer size)."""
    return data_len + data_len // 255 + 5 * nblocks + 32


def blocks_seal(data: bytes, ends: Any, compress: bool) -> tuple[bytes, Any]:
    """Seal ``nblocks = len(ends)`` data blocks into physical blocks: block
    i's contents are ``data[ends[i-1]:ends[i]]`` (``ends[-1]`` taken as 0).
    Each is emitted as ``make_physical_block(contents, compress)`` emits it
    (lsm/sstable/format.py), with this module's LZ4 compressor: when
    ``compress`` and the contents have at least 64 bytes, ``packed =
    u32le(len) || lz4_compress(contents)`` is stored (type 1) if
    ``len(packed) <= len - len // 8``, else the contents (type 0); then the
    type byte and ``u32le(XXH64(stored || type) & 0xFFFFFFFF)``.

    Returns the physical blocks back to back and ``array('Q')`` of the
    stored sizes (the handle sizes, without the 5-byte trailers).

    Requires: ``data`` bytes-like; ``ends`` an ``array('Q')``, not
    descending, ending at ``len(data)`` (empty for no blocks); ``compress`` a
    bool.  O(len(data)).
    """
    data = check_blocks_seal_args(data, ends, compress)
    out: list[bytes] = []
    sizes = _array("Q")
    pack32 = _U32.pack
    start = 0
    for end in ends:
        contents = data[start:end]
        n = end - start
        start = end
        body = b""
        if compress and n >= 64:
            packed = pack32(n) + _lz4_compress(contents)
            if len(packed) <= n - (n >> 3):
                body = packed + b"\x01"
        if not body:
            body = contents + b"\x00"
        out.append(body)
        out.append(pack32(_xxh64(body, 0) & 0xFFFFFFFF))
        sizes.append(len(body) - 1)
    return b"".join(out), sizes


def check_blocks_open_args(buf: Any, offsets: Any, sizes: Any, verify: Any, name: Any,
                           base_offset: Any) -> bytes:
    """Validate ``blocks_open``'s arguments in order; return ``buf`` as bytes."""
    buf = check_buffer(buf, "buf")
    _check_q_array(offsets, "offsets")
    _check_q_array(sizes, "sizes")
    if len(offsets) != len(sizes):
        raise InvalidArgumentError(
            f"offsets has {len(offsets)} items but sizes has {len(sizes)}")
    if not isinstance(verify, bool):
        raise ArgumentTypeError(f"verify must be a bool, not {type(verify).__name__}")
    if not isinstance(name, str):
        raise ArgumentTypeError(f"name must be a str, not {type(name).__name__}")
    check_int(base_offset, "base_offset", 0, _M64)
    return buf


def blocks_open(buf: bytes, offsets: Any, sizes: Any, verify: bool, name: str,
                base_offset: int) -> tuple[bytes, Any]:
    """Check and decompress physical blocks read together: block i is
    ``buf[offsets[i] : offsets[i] + sizes[i] + 5]`` (contents and trailer;
    ``sizes[i]`` is the handle size).  Each block goes through the checks
    of ``unwrap_physical_block`` in its order: truncated (the slice is
    short), checksum mismatch (when ``verify``), then by type: 0 stored,
    1 LZ4 (shorter than 4 bytes; declared size > 255 * size + 64; the
    decoder's checks), other: unknown compression type.

    Returns the contents of all blocks back to back and ``ends``
    (``array('Q')``: block i is ``contents[ends[i-1]:ends[i]]``).  The first
    failing block raises ``pblock_corruption(code, i, detail, sizes[i],
    name, base_offset + offsets[i])``: the message of
    ``unwrap_physical_block``, file ``name``, offset the block's file offset.

    Requires: ``buf`` bytes-like; ``offsets`` / ``sizes`` ``array('Q')`` of
    the same length; ``verify`` a bool; ``name`` a str; ``0 <= base_offset
    < 2**64``.  O(bytes read + bytes produced).
    """
    buf = check_blocks_open_args(buf, offsets, sizes, verify, name, base_offset)
    view = memoryview(buf)
    blen = len(buf)
    parts: list[Any] = []
    ends = _array("Q")
    total = 0
    for i, (off, size) in enumerate(zip(offsets, sizes)):
        if off > blen or size + PBLOCK_TRAILER > blen - off:
            raise pblock_corruption(ERR_PBLOCK_TRUNCATED, i, 0, size, name, base_offset + off)
        if verify and (_xxh64(buf[off:off + size + 1], 0) & 0xFFFFFFFF
                       != _U32.unpack_from(buf, off + size + 1)[0]):
            raise pblock_corruption(ERR_PBLOCK_CHECKSUM, i, 0, size, name, base_offset + off)
        ctype = buf[off + size]
        if ctype == 0:
            parts.append(view[off:off + size])
            total += size
        elif ctype == 1:
            if size < 4:
                raise pblock_corruption(ERR_PBLOCK_LZ4_SHORT, i, 0, size, name, base_offset + off)
            declared = _U32.unpack_from(buf, off)[0]
            if declared > 255 * size + 64:
                raise pblock_corruption(ERR_PBLOCK_LZ4_SIZE, i, 0, size, name, base_offset + off)
            rc, res = _lz4_decompress(view[off + 4:off + size], declared)
            if rc:
                raise pblock_corruption(rc, i, 4 + res, size, name, base_offset + off)
            parts.append(res)
            total += declared
        else:
            raise pblock_corruption(ERR_PBLOCK_UNKNOWN_TYPE, i, ctype, size, name,
                                    base_offset + off)
        ends.append(total)
    return b"".join(parts), ends
