"""WriteBatch: an ordered group of writes applied atomically; the WAL payload.

A batch collects ``put`` / ``delete`` / ``delete_range`` records in memory in
two parallel lists, keys and values (``WriteBatch`` docstring); ``items()``
gives them as ``(kind, key, value)`` (kinds of lsm/dbformat.py) and
``columns()`` as ``(kinds, keys, values)`` for the bulk path.  ``encode(seq)``
turns it into one WAL record; the records take consecutive sequence numbers
``seq, seq+1, ...`` in batch order, so a later record of the same key wins.

Encoding (do not change: on-disk; every WAL record payload is one)::

    batch   = sequence u64 LE | count u32 LE | record{count}
    record  = kind u8 | varint32 klen | key[klen]
              [| varint32 vlen | value[vlen]]   (only for VALUE = 1 and
                                                 RANGE_TOMBSTONE = 2)
    kind    = 0 TOMBSTONE (delete key) | 1 VALUE (put key value)
              | 2 RANGE_TOMBSTONE (key = start, value = exclusive end)

Varints are LEB128 (lsm._native.encode_varint).  ``decode`` accepts exactly
this grammar: a short header, a count that does not match the records, an
unknown kind, a length running past the end, trailing bytes, or a sequence
range past 2**56-1 raise ``CorruptionError(msg, file, offset)``.

Costs: ``put``/``delete``/``delete_range`` O(1) amortised plus the key and
value copies for non-``bytes`` buffers; ``items``, ``byte_size`` O(records);
``encode`` and ``decode`` O(bytes).
"""

from __future__ import annotations

import struct
from typing import Any

from blockdev.errors import ArgumentTypeError, CorruptionError, InvalidArgumentError
from lsm import _native
from lsm.dbformat import KIND_RANGE_TOMBSTONE, KIND_TOMBSTONE, KIND_VALUE, MAX_SEQUENCE

__all__ = ["WriteBatch", "HEADER_SIZE", "check_bytes"]

HEADER_SIZE = 12                      # do not change: on-disk
_HEADER = struct.Struct("<QI")        # do not change: on-disk (sequence, count)
_SMALL = [bytes((i,)) for i in range(128)]
_KIND_LEN = [[bytes((kind, n)) for n in range(128)] for kind in range(3)]
_DEFAULT_MAX_KEY = 65536
_DEFAULT_MAX_VALUE = 64 << 20


def check_bytes(obj: Any, name: str) -> bytes:
    """``obj`` as ``bytes`` if it is bytes-like, else ArgumentTypeError naming ``name``.

    O(1) for ``bytes``; a copy for bytearray / memoryview.
    """
    if type(obj) is bytes:
        return obj
    if isinstance(obj, (bytearray, memoryview)) or (
            isinstance(obj, bytes)):
        return bytes(obj)
    raise ArgumentTypeError(f"{name} must be bytes-like, not {type(obj).__name__}")


def _varint(n: int) -> bytes:
    return _SMALL[n] if n < 128 else _native.encode_varint(n)


def _varint_len(n: int) -> int:
    size = 1
    while n >= 128:
        n >>= 7
        size += 1
    return size


class _RangeEnd:
    """The value slot of a ``delete_range`` record: its exclusive end key
    (a ``bytes`` there would read as a put)."""

    __slots__ = ("stop",)

    def __init__(self, stop: bytes) -> None:
        self.stop = stop


_RECORD_KIND = {bytes: KIND_VALUE, type(None): KIND_TOMBSTONE, _RangeEnd: KIND_RANGE_TOMBSTONE}


class WriteBatch:
    """An ordered list of writes, applied atomically.  Not thread-safe.

    Records are kept in two parallel lists (no tuple per record -- ``put`` is
    the hot call of a batched load): ``_keys``, and ``_vals`` holding the
    value (``bytes``) of a put, ``None`` for a delete and a ``_RangeEnd``
    for a delete_range.  ``_mixed`` is set once a record is not a put.
    """

    __slots__ = ("_keys", "_vals", "_mixed", "max_key_size", "max_value_size")

    def __init__(self, *, max_key_size: int = _DEFAULT_MAX_KEY,
                 max_value_size: int = _DEFAULT_MAX_VALUE) -> None:
        """Requires: ``max_key_size >= 1``, ``max_value_size >= 0``."""
        if max_key_size != _DEFAULT_MAX_KEY or max_value_size != _DEFAULT_MAX_VALUE:
            for name, value, lo in (("max_key_size", max_key_size, 1),
                                    ("max_value_size", max_value_size, 0)):
                if type(value) is not int:
                    raise ArgumentTypeError(f"{name} must be an int, not {type(value).__name__}")
                if value < lo:
                    raise InvalidArgumentError(f"{name} must be >= {lo}, got {value}")
        self._keys: list[bytes] = []
        self._vals: list[Any] = []
        self._mixed = False
        self.max_key_size = max_key_size
        self.max_value_size = max_value_size

    # -- building --------------------------------------------------------

    def _key(self, key: Any, name: str = "key") -> bytes:
        if type(key) is not bytes:
            key = check_bytes(key, name)
        if len(key) > self.max_key_size:
            raise InvalidArgumentError(
                f"{name} is {len(key)} bytes, more than max_key_size {self.max_key_size}")
        return key

    def put(self, key: bytes, value: bytes) -> None:
        """Record ``key -> value``.  Requires: bytes-like key and value within
        the limits.  O(1) amortised."""
        if (type(key) is not bytes or type(value) is not bytes
                or len(key) > self.max_key_size or len(value) > self.max_value_size):
            key = self._key(key)
            value = check_bytes(value, "value")
            if len(value) > self.max_value_size:
                raise InvalidArgumentError(f"value is {len(value)} bytes, more than "
                                           f"max_value_size {self.max_value_size}")
        self._keys.append(key)
        self._vals.append(value)

    def delete(self, key: bytes) -> None:
        """Record a deletion of ``key``.  Requires: bytes-like key within the limit."""
        key = self._key(key)
        self._keys.append(key)
        self._vals.append(None)
        self._mixed = True

    def delete_range(self, start: bytes, stop: bytes) -> None:
        """Record a deletion of every key in ``[start, stop)``.

        Requires: ``start <= stop`` (InvalidArgumentError otherwise); an empty
        range (``start == stop``) deletes nothing and records nothing.
        """
        start = self._key(start, "start")
        stop = self._key(stop, "stop")
        if start > stop:
            raise InvalidArgumentError("delete_range: start must be <= stop")
        if start == stop:
            return
        self._keys.append(start)
        self._vals.append(_RangeEnd(stop))
        self._mixed = True

    def append(self, other: "WriteBatch") -> None:
        """Append every record of ``other`` (group commit).  O(len(other))."""
        if not isinstance(other, WriteBatch):
            raise ArgumentTypeError(f"other must be a WriteBatch, not {type(other).__name__}")
        self._keys.extend(other._keys)
        self._vals.extend(other._vals)
        self._mixed = self._mixed or other._mixed

    def clear(self) -> None:
        """Forget every record."""
        self._keys = []
        self._vals = []
        self._mixed = False

    # -- inspection ------------------------------------------------------

    @property
    def count(self) -> int:
        """Number of records."""
        return len(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def byte_size(self) -> int:
        """Exact length of ``encode(...)``.  O(records)."""
        size = HEADER_SIZE
        for kind, key, value in self.items():
            size += 1 + _varint_len(len(key)) + len(key)
            if kind != KIND_TOMBSTONE:
                size += _varint_len(len(value)) + len(value)
        return size

    def items(self) -> list[tuple[int, bytes, bytes]]:
        """The records as ``(kind, key, value)``, in order (a new list).  O(records)."""
        keys, vals = self._keys, self._vals
        if not self._mixed:
            return list(zip([KIND_VALUE] * len(keys), keys, vals))
        out = []
        for key, value in zip(keys, vals):
            if type(value) is bytes:
                out.append((KIND_VALUE, key, value))
            elif value is None:
                out.append((KIND_TOMBSTONE, key, b""))
            else:
                out.append((KIND_RANGE_TOMBSTONE, key, value.stop))
        return out

    def columns(self) -> tuple[bytes, list[bytes], list[bytes]] | None:
        """``(kinds, keys, values)`` when no record is a delete_range (kinds
        one byte per record, a delete's value b""); None otherwise.  The key
        list is the live one: do not mutate.  O(1) for puts only, else
        O(records)."""
        keys, vals = self._keys, self._vals
        if not self._mixed:
            return b"\x01" * len(keys), keys, vals
        kinds = bytes(map(_RECORD_KIND.__getitem__, map(type, vals)))
        if KIND_RANGE_TOMBSTONE in kinds:
            return None
        return kinds, keys, [b"" if v is None else v for v in vals]

    def _check(self) -> None:
        """Assert the invariants: parallel lists, record types, limits."""
        assert len(self._keys) == len(self._vals)
        for key, value in zip(self._keys, self._vals):
            assert type(key) is bytes and len(key) <= self.max_key_size
            assert type(value) in _RECORD_KIND
            assert self._mixed or type(value) is bytes
            if type(value) is bytes:
                assert len(value) <= self.max_value_size
            elif type(value) is _RangeEnd:
                assert type(value.stop) is bytes and key < value.stop

    # -- encoding --------------------------------------------------------

    def encode(self, sequence: int) -> bytes:
        """The WAL payload with the records at ``sequence, sequence+1, ...``.  O(bytes).

        Requires: ``0 <= sequence`` and ``sequence + count - 1 <= 2**56-1``.
        """
        if type(sequence) is not int:
            raise ArgumentTypeError(f"sequence must be an int, not {type(sequence).__name__}")
        items = self.items()
        if sequence < 0 or sequence + max(len(items) - 1, 0) > MAX_SEQUENCE:
            raise InvalidArgumentError(f"sequence {sequence} out of range for {len(items)} records")
        parts = [_HEADER.pack(sequence, len(items))]
        add = parts.append
        kind_len = _KIND_LEN
        for kind, key, value in items:
            klen = len(key)
            if klen < 128:
                add(kind_len[kind][klen])
            else:
                add(_SMALL[kind])
                add(_native.encode_varint(klen))
            add(key)
            if kind:
                vlen = len(value)
                add(_SMALL[vlen] if vlen < 128 else _native.encode_varint(vlen))
                add(value)
        return b"".join(parts)

    @staticmethod
    def decode(data: bytes, file: str | None = None, offset: int | None = None
               ) -> tuple[int, list[tuple[int, bytes, bytes]]]:
        """Parse a payload into ``(first sequence, [(kind, key, value)])``.  O(bytes).

        ``file``/``offset`` locate ``data`` for error messages: a
        CorruptionError names ``file`` and ``offset + position in data``.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ArgumentTypeError(f"data must be bytes-like, not {type(data).__name__}")
        data = bytes(data)
        base = 0 if offset is None else offset
        n = len(data)
        if n < HEADER_SIZE:
            raise CorruptionError(f"write batch too short ({n} bytes)", file, base)
        sequence, count = _HEADER.unpack_from(data, 0)
        if count and sequence + count - 1 > MAX_SEQUENCE:
            raise CorruptionError(f"write batch sequence {sequence} + {count} records overflows",
                                  file, base)
        items: list[tuple[int, bytes, bytes]] = []
        add = items.append
        p = HEADER_SIZE

        def varint(pos: int) -> tuple[int, int]:
            try:
                return _native.decode_varint32(data, pos)
            except CorruptionError as exc:
                raise CorruptionError("write batch: bad length varint", file,
                                      base + (exc.offset if exc.offset is not None else pos)
                                      ) from None

        for _ in range(count):
            if p >= n:
                raise CorruptionError(
                    f"write batch ends after {len(items)} of {count} records", file, base + p)
            rec = p
            kind = data[p]
            if kind > KIND_RANGE_TOMBSTONE:
                raise CorruptionError(f"write batch: unknown record kind {kind}", file, base + p)
            p += 1
            if p < n and data[p] < 128:
                klen = data[p]
                p += 1
            else:
                klen, p = varint(p)
            if p + klen > n:
                raise CorruptionError("write batch: key runs past the end", file, base + rec)
            key = data[p:p + klen]
            p += klen
            if kind == KIND_TOMBSTONE:
                add((kind, key, b""))
                continue
            if p < n and data[p] < 128:
                vlen = data[p]
                p += 1
            else:
                vlen, p = varint(p)
            if p + vlen > n:
                raise CorruptionError("write batch: value runs past the end", file, base + rec)
            add((kind, key, data[p:p + vlen]))
            p += vlen
        if p != n:
            raise CorruptionError(f"write batch: {n - p} trailing bytes after {count} records",
                                  file, base + p)
        return sequence, items

    @classmethod
    def from_items(cls, items: list[tuple[int, bytes, bytes]]) -> "WriteBatch":
        """A batch holding ``items`` (as returned by ``decode``).  O(len(items))."""
        wb = cls(max_key_size=1 << 30, max_value_size=1 << 31)
        for kind, key, value in items:
            if kind == KIND_VALUE:
                wb.put(key, value)
            elif kind == KIND_TOMBSTONE:
                wb.delete(key)
            elif kind == KIND_RANGE_TOMBSTONE:
                wb.delete_range(key, value)
            else:
                raise InvalidArgumentError(f"unknown record kind {kind}")
        return wb

    def __repr__(self) -> str:
        return f"WriteBatch(count={len(self._items)}, byte_size={self._size})"
