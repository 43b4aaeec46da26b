"""The table's bloom filter block: one filter over the distinct user keys of
all point entries of the table (a whole-table filter).

Layout (do not change: on-disk; built by ``lsm._native.bloom_build``)::

    bits[nbytes] || k:u8
    nbytes = max(ceil(n * bits_per_key / 8), 8), k = clamp(round(bits_per_key * ln 2), 1, 30)

Probe sequence: docs/format.md and lsm/_twins.py.  A filter answers "may
contain" for every key added, and for other keys with a false-positive rate
of about 1% at 10 bits per key.  The filter block is checksummed like every
block, so a damaged filter is reported as corruption when the table opens.
"""

from __future__ import annotations

from array import array

from blockdev.errors import ArgumentTypeError, InvalidArgumentError
from lsm import _native as N

__all__ = ["FilterBuilder", "filter_may_contain"]


class FilterBuilder:
    """Collects user keys (consecutive duplicates skipped) and builds the
    filter.  ``add`` O(1); ``finish`` O(n) (one native call).

    Requires: ``bits_per_key >= 1``.
    """

    __slots__ = ("bits_per_key", "keys", "hashes", "_last")

    def __init__(self, bits_per_key: int) -> None:
        if not isinstance(bits_per_key, int) or isinstance(bits_per_key, bool):
            raise ArgumentTypeError("bits_per_key must be an int")
        if not 1 <= bits_per_key <= 1000:
            raise InvalidArgumentError(f"bits_per_key must be in 1..1000, got {bits_per_key}")
        self.bits_per_key = bits_per_key
        self.keys: list[bytes] = []
        # XXH64 of further distinct user keys, from the native block builder
        # (lsm._native.table_blocks): the filter covers keys and hashes
        self.hashes = array("Q")
        self._last: bytes | None = None

    def add(self, user_key: bytes) -> None:
        if user_key != self._last:
            self.keys.append(user_key)
            self._last = user_key

    def add_hashes(self, hashes: array, last_user_key: bytes) -> None:
        """Add keys by their XXH64 hashes (distinct, and distinct from the
        keys added so far); ``last_user_key`` is the last of them.  O(n)."""
        self.hashes.extend(hashes)
        self._last = last_user_key

    def finish(self) -> bytes:
        """The filter block.  O(n) (one native call)."""
        if not self.hashes:
            return N.bloom_build(self.keys, self.bits_per_key)
        hashes = array("Q", map(N.checksum, self.keys))
        hashes.extend(self.hashes)
        return N.bloom_build_hashes(hashes, self.bits_per_key)


def filter_may_contain(filter_block: bytes | None, user_key: bytes) -> bool:
    """False only if ``user_key`` was certainly not added (None: no filter)."""
    if filter_block is None:
        return True
    return N.bloom_may_contain(filter_block, user_key)
