"""Internal keys: how a user key, a sequence number and a kind become one key.

Layout (do not change: on-disk; used in WAL batches, SSTables and MANIFEST)::

    internal_key = user_key || trailer
    trailer      = uint64 little-endian of (sequence << 8) | kind

``sequence`` is 56 bits (0 .. 2**56-1).  ``kind`` is one byte:

    KIND_TOMBSTONE       = 0   point deletion
    KIND_VALUE           = 1   a put
    KIND_RANGE_TOMBSTONE = 2   range deletion: the key is the start user key,
                               the value is the exclusive end user key

Order of internal keys (the "internal comparator"): user key ascending
(bytewise), then trailer **descending**, so the newest version of a key comes
first.  At an equal sequence a higher kind sorts first.  Bytewise comparison
of the encoded keys does *not* give this order: compare with
``compare_internal`` or sort with ``internal_sort_key``.

A lookup for ``user_key`` as of sequence ``s`` seeks to
``lookup_key(user_key, s)`` = ``user_key || trailer(s, KIND_SEEK)``, which
sorts before every version of ``user_key`` with sequence <= s.
"""

from __future__ import annotations

import struct

__all__ = [
    "KIND_TOMBSTONE", "KIND_VALUE", "KIND_RANGE_TOMBSTONE", "KIND_SEEK",
    "MAX_SEQUENCE", "TRAILER_SIZE",
    "pack_internal_key", "unpack_internal_key", "user_key_of", "lookup_key",
    "compare_internal", "internal_sort_key",
]

KIND_TOMBSTONE = 0        # do not change: on-disk
KIND_VALUE = 1            # do not change: on-disk
KIND_RANGE_TOMBSTONE = 2  # do not change: on-disk
KIND_SEEK = 0xFF          # highest kind: a seek key sorts before all kinds at its sequence
MAX_SEQUENCE = (1 << 56) - 1
TRAILER_SIZE = 8          # do not change: on-disk

_TRAILER = struct.Struct("<Q")


def pack_internal_key(user_key: bytes, sequence: int, kind: int) -> bytes:
    """Return ``user_key || le64(sequence << 8 | kind)``.  O(len(user_key)).

    Requires: 0 <= sequence <= MAX_SEQUENCE, 0 <= kind <= 255.
    """
    return user_key + _TRAILER.pack((sequence << 8) | kind)


def unpack_internal_key(ikey: bytes) -> tuple[bytes, int, int]:
    """Split an internal key into ``(user_key, sequence, kind)``.

    Requires: ``len(ikey) >= 8`` (callers validating untrusted input check
    first and raise ``CorruptionError``).
    """
    (trailer,) = _TRAILER.unpack_from(ikey, len(ikey) - 8)
    return ikey[:-8], trailer >> 8, trailer & 0xFF


def user_key_of(ikey: bytes) -> bytes:
    """The user-key part of an internal key.  O(len)."""
    return ikey[:-8]


def lookup_key(user_key: bytes, sequence: int) -> bytes:
    """The smallest internal key for ``user_key`` visible at ``sequence``."""
    return user_key + _TRAILER.pack((sequence << 8) | KIND_SEEK)


def compare_internal(a: bytes, b: bytes) -> int:
    """Three-way compare of two internal keys in internal order."""
    ua, ub = a[:-8], b[:-8]
    if ua != ub:
        return -1 if ua < ub else 1
    (ta,) = _TRAILER.unpack_from(a, len(a) - 8)
    (tb,) = _TRAILER.unpack_from(b, len(b) - 8)
    if ta == tb:
        return 0
    return -1 if ta > tb else 1


def internal_sort_key(ikey: bytes) -> tuple[bytes, int]:
    """A Python sort key that orders internal keys in internal order."""
    (t,) = _TRAILER.unpack_from(ikey, len(ikey) - 8)
    return ikey[:-8], -t
