"""Blocks: ``BlockBuilder`` collects sorted entries and encodes them with the
native block coder; ``BlockReader`` wraps one decoded (decompressed,
checksum-verified) block for seeks and scans.

Layout (do not change: on-disk; the native core's data block format, see
docs/architecture.md and docs/format.md)::

    entry*  restart_offset[num_restarts] (u32 LE each)  num_restarts (u32 LE)
    entry = varint32 shared | varint32 unshared | varint32 value_len
            | key_delta[unshared] | value[value_len]

A ``BlockReader`` keeps the raw block (``raw``: point lookups run
``lsm._native.block_seek`` on it, a binary search over the restart points in
C) and decodes it into ``(keys, values)`` lists at most once, on the first
scan (``decoded()``).  It is what the block cache stores.  The lists are
shared by every user of the cached block: callers must not mutate them.
"""

from __future__ import annotations

from blockdev.errors import ArgumentTypeError, CorruptionError, InvalidArgumentError
from lsm import _native as N

__all__ = ["BlockBuilder", "BlockReader", "ENTRY_OVERHEAD"]

ENTRY_OVERHEAD = 3          # estimate of the three varints of an entry
_ENTRY_MEMORY = 150         # Python object bytes per decoded entry (key, value and the
                            # user-key list ``get`` may build), for the cache charge


class BlockBuilder:
    """Accumulates entries for one block.

    ``add`` is O(1) amortised; ``finish`` is O(total bytes) (one native
    call).  ``size_estimate`` over-approximates the encoded size (it ignores
    prefix compression), so blocks come out at most ``block_size`` plus one
    entry.

    Requires: keys added in the order the block must hold them (the table
    builder checks internal order).
    """

    __slots__ = ("keys", "values", "size_estimate", "restart_interval")

    def __init__(self, restart_interval: int = 16) -> None:
        if not isinstance(restart_interval, int) or isinstance(restart_interval, bool):
            raise ArgumentTypeError("restart_interval must be an int")
        if restart_interval < 1:
            raise InvalidArgumentError(f"restart_interval must be >= 1, got {restart_interval}")
        self.restart_interval = restart_interval
        self.keys: list[bytes] = []
        self.values: list[bytes] = []
        self.size_estimate = 8

    def add(self, key: bytes, value: bytes) -> None:
        """Append one entry.  O(1)."""
        if type(key) is not bytes or type(value) is not bytes:
            raise ArgumentTypeError("key and value must be bytes")
        self.keys.append(key)
        self.values.append(value)
        self.size_estimate += len(key) + len(value) + ENTRY_OVERHEAD + (
            4 if len(self.keys) % self.restart_interval == 1 or self.restart_interval == 1 else 0)

    def __len__(self) -> int:
        return len(self.keys)

    def _check(self) -> None:
        """Assert invariants: parallel lists of bytes."""
        assert len(self.keys) == len(self.values)
        assert all(type(k) is bytes for k in self.keys)

    def finish(self) -> bytes:
        """Encode the entries and reset the builder.  O(total bytes)."""
        raw = N.block_encode(self.keys, self.values, self.restart_interval)
        self.keys.clear()           # in place: holders of bound ``append`` stay valid
        self.values.clear()
        self.size_estimate = 8
        return raw


class BlockReader:
    """One block's bytes plus its lazily decoded entries.

    ``seek`` is O(log restarts + restart_interval) in C; ``decoded`` is O(n)
    the first time and O(1) afterwards.  Errors are CorruptionError naming
    the file and the block's offset in it.
    """

    __slots__ = ("raw", "keys", "values", "ukeys", "name", "offset")

    def __init__(self, raw: bytes, name: str = "", offset: int = 0) -> None:
        self.raw = raw
        self.keys: list[bytes] | None = None
        self.values: list[bytes] | None = None
        self.ukeys: list[bytes] | None = None     # user keys of ``keys``, built on demand
        self.name = name
        self.offset = offset

    def seek(self, target: bytes, cmp: int = N.CMP_INTERNAL) -> tuple[int, bytes, bytes] | None:
        """First entry with key >= target: ``(index, key, value)`` or None.

        Requires: ``cmp`` is CMP_BYTEWISE or CMP_INTERNAL (an internal
        target has >= 8 bytes); argument errors come from the native core."""
        try:
            return N.block_seek(self.raw, target, cmp)
        except CorruptionError as exc:
            raise CorruptionError(f"sstable: bad block ({exc})", self.name, self.offset) from None

    def decoded(self) -> tuple[list[bytes], list[bytes]]:
        """All entries as ``(keys, values)`` lists (shared; do not mutate)."""
        keys = self.keys
        if keys is None:
            try:
                keys, values = N.block_decode(self.raw)
            except CorruptionError as exc:
                raise CorruptionError(f"sstable: bad block ({exc})",
                                      self.name, self.offset) from None
            self.values = values
            self.keys = keys
            return keys, values
        return keys, self.values  # type: ignore[return-value]

    def user_keys(self) -> list[bytes]:
        """The user keys of the decoded entries (built once).  O(n)."""
        uk = self.ukeys
        if uk is None:
            uk = self.ukeys = [k[:-8] for k in self.decoded()[0]]
        return uk

    def charge(self) -> int:
        """Approximate memory held (block cache charge), in bytes."""
        n = 0 if self.keys is None else len(self.raw) + _ENTRY_MEMORY * len(self.keys)
        return len(self.raw) + n + 120

    def __len__(self) -> int:
        return len(self.decoded()[0])
