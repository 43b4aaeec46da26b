"""The SuperDisk write-intent bitmap: one bit per region of the data area.

A set bit says "the two legs may differ in this region, or its checksums may
not match its data on disk".  The SuperDisk sets a region's bit, and makes
that durable on the durable leg (bitmap block write + flush), **before** it
issues the first write into the region; it clears the bit lazily, once the
region has been idle for ``clear_delay`` seconds, every write into it has
been covered by a completed flush of both legs, and the cache holds a valid
copy of the whole region.  While the cache is degraded (missing, failed, or
not yet rebuilt over the region) the bit stays set, so a returning cache
syncs exactly the regions it missed, and after an unclean shutdown only the
set regions are re-checksummed and resynced.

On-disk encoding (do not change: on-disk).  The bitmap occupies
``bitmap_blocks`` consecutive blocks of ``block_size`` bytes.  Each block
holds ``payload = block_size - 8`` bytes of bits followed by an 8-byte
little-endian trailer ``xxh64(payload, seed=BITMAP_SEED + block_index)``.
Region ``r`` lives in block ``r // (payload * 8)``, byte ``(r % (payload*8))
// 8`` of the payload, bit ``r % 8`` (least significant bit first).  A block
whose trailer does not match is treated as all ones (every region it covers
dirty): a lost bitmap costs a resync, never a missed one.

This module holds the in-memory state and the encoding; the SuperDisk does
the I/O and the locking around persistence.
"""

from __future__ import annotations

import struct
import threading
from typing import Dict, Iterable, List, Optional, Set

import xxhash

from blockdev.errors import InvalidArgumentError

__all__ = ["WriteIntentBitmap", "BITMAP_SEED", "bitmap_blocks_for"]

#: Seed base of bitmap block trailers (do not change: on-disk).  "BITMAP\0\0" as LE u64.
BITMAP_SEED = 0x0000_5041_4D54_4942


def bitmap_blocks_for(nregions: int, block_size: int) -> int:
    """Blocks needed to hold ``nregions`` bits (at least one).  O(1)."""
    per_block = (block_size - 8) * 8
    return max(1, -(-nregions // per_block))


class WriteIntentBitmap:
    """In-memory write-intent bitmap with in-flight and idle tracking.

    ``bits`` is the bit state as it should be on disk; ``durable`` marks the
    bits known to be set on disk (flushed).  Thread-safe: every method takes
    the internal lock.
    """

    def __init__(self, nregions: int, region_blocks: int, block_size: int) -> None:
        if nregions < 0 or region_blocks < 1 or block_size < 64:
            raise InvalidArgumentError(
                f"bad bitmap geometry: nregions={nregions} region_blocks={region_blocks} block_size={block_size}")
        self.nregions = nregions
        self.region_blocks = region_blocks
        self.block_size = block_size
        self.payload = block_size - 8
        self.per_block = self.payload * 8
        self.nblocks = bitmap_blocks_for(nregions, block_size)
        self._bits = bytearray(self.nblocks * self.payload)
        self._durable = bytearray(self.nblocks * self.payload)
        self._inflight: Dict[int, int] = {}
        self._last_seq: Dict[int, int] = {}
        self._last_time: Dict[int, float] = {}
        self._lock = threading.Lock()

    # -- geometry --------------------------------------------------------------
    def regions_for(self, first_block: int, nblocks: int) -> range:
        """Regions touched by data blocks ``[first_block, first_block+nblocks)``.  O(1)."""
        if nblocks <= 0:
            return range(0)
        rb = self.region_blocks
        return range(first_block // rb, (first_block + nblocks - 1) // rb + 1)

    def block_of(self, region: int) -> int:
        """The bitmap block holding ``region``'s bit.  O(1)."""
        return region // self.per_block

    # -- bit queries -------------------------------------------------------------
    def _get(self, buf: bytearray, r: int) -> bool:
        return bool(buf[r >> 3] >> (r & 7) & 1)

    @staticmethod
    def _set(buf: bytearray, r: int, value: bool) -> None:
        if value:
            buf[r >> 3] |= 1 << (r & 7)
        else:
            buf[r >> 3] &= ~(1 << (r & 7)) & 0xFF

    def is_dirty(self, region: int) -> bool:
        """O(1)."""
        with self._lock:
            return self._get(self._bits, region)

    def dirty_regions(self) -> List[int]:
        """Sorted list of set regions.  O(nregions / 8)."""
        with self._lock:
            out = []
            for i, byte in enumerate(self._bits):
                if byte:
                    for bit in range(8):
                        if byte >> bit & 1:
                            r = i * 8 + bit
                            if r < self.nregions:
                                out.append(r)
            return out

    def count_dirty(self) -> int:
        """O(nregions / 8)."""
        return len(self.dirty_regions())

    # -- write tracking ------------------------------------------------------------
    def begin_write(self, regions: Iterable[int]) -> List[int]:
        """Note writes starting in ``regions`` (in flight until ``end_write``)
        and set their bits.  Returns the bitmap blocks that must be persisted
        (write + flush) before the data write is issued.  O(len(regions))."""
        need: Set[int] = set()
        with self._lock:
            for r in regions:
                self._inflight[r] = self._inflight.get(r, 0) + 1
                self._set(self._bits, r, True)
                if not self._get(self._durable, r):
                    need.add(r // self.per_block)
        return sorted(need)

    def end_write(self, regions: Iterable[int], seq: int, now: float) -> None:
        """Note writes ending in ``regions``; ``seq`` is the write sequence
        number the next flush must cover before the bits may clear."""
        with self._lock:
            for r in regions:
                n = self._inflight.get(r, 0) - 1
                if n <= 0:
                    self._inflight.pop(r, None)
                else:
                    self._inflight[r] = n
                self._last_seq[r] = max(self._last_seq.get(r, 0), seq)
                self._last_time[r] = now

    def touch(self, region: int, seq: int, now: float) -> None:
        """Record a resync copy into ``region`` (delays clearing like a write)."""
        with self._lock:
            self._last_seq[region] = max(self._last_seq.get(region, 0), seq)
            self._last_time[region] = now

    def mark_all_dirty(self, regions: Iterable[int]) -> Set[int]:
        """Set bits (e.g. while recovering); returns bitmap blocks to persist."""
        need: Set[int] = set()
        with self._lock:
            for r in regions:
                self._set(self._bits, r, True)
                if not self._get(self._durable, r):
                    need.add(r // self.per_block)
        return need

    def pending_blocks(self, regions: Iterable[int]) -> List[int]:
        """Bitmap blocks holding a bit of ``regions`` that is set in memory but
        not yet known durable.  O(len(regions))."""
        with self._lock:
            return sorted({r // self.per_block for r in regions
                           if self._get(self._bits, r) and not self._get(self._durable, r)})

    def persisted(self, index: int, data: bytes) -> None:
        """Bitmap block ``index`` was written with ``data`` (from
        ``encode_block``) and flushed: its set bits are now durable."""
        with self._lock:
            lo = index * self.payload
            for i in range(self.payload):
                self._durable[lo + i] |= data[i] & self._bits[lo + i]

    def clearable(self, flushed_seq: int, now: float, delay: float,
                  in_sync: "callable[[int], bool]") -> List[int]:  # type: ignore[valid-type]
        """Set regions that may be cleared: no write in flight, every write
        covered by the flush that saw ``flushed_seq``, idle for ``delay``
        seconds, and ``in_sync(region)`` true.  O(dirty regions)."""
        out = []
        for r in self.dirty_regions():
            with self._lock:
                if self._inflight.get(r):
                    continue
                if self._last_seq.get(r, 0) > flushed_seq:
                    continue
                if now - self._last_time.get(r, float("-inf")) < delay:
                    continue
            if in_sync(r):
                out.append(r)
        return out

    def clear(self, regions: Iterable[int]) -> List[int]:
        """Clear bits (if still idle); returns the bitmap blocks to write
        (no flush needed: a set bit that survives a crash is harmless)."""
        blocks: Set[int] = set()
        with self._lock:
            for r in regions:
                if self._inflight.get(r):
                    continue
                self._set(self._bits, r, False)
                self._set(self._durable, r, False)
                self._last_seq.pop(r, None)
                self._last_time.pop(r, None)
                blocks.add(r // self.per_block)
        return sorted(blocks)

    # -- encoding ----------------------------------------------------------------
    def encode_block(self, index: int) -> bytes:
        """On-disk bytes of bitmap block ``index``.  O(block_size)."""
        with self._lock:
            payload = bytes(self._bits[index * self.payload:(index + 1) * self.payload])
        return payload + struct.pack("<Q", xxhash.xxh64_intdigest(payload, seed=BITMAP_SEED + index))

    def load_block(self, index: int, data: bytes) -> bool:
        """Install on-disk block ``index``; returns False (and marks every
        region of the block dirty) when its trailer does not match."""
        if len(data) != self.block_size:
            raise InvalidArgumentError(f"bitmap block must be {self.block_size} bytes, got {len(data)}")
        payload = data[:self.payload]
        (stored,) = struct.unpack_from("<Q", data, self.payload)
        ok = stored == xxhash.xxh64_intdigest(payload, seed=BITMAP_SEED + index)
        with self._lock:
            lo, hi = index * self.payload, (index + 1) * self.payload
            if ok:
                self._bits[lo:hi] = payload
            else:
                self._bits[lo:hi] = b"\xff" * self.payload
            self._durable[lo:hi] = self._bits[lo:hi] if ok else bytes(self.payload)
            # bits past nregions are never set
            self._mask_tail()
        return ok

    def _mask_tail(self) -> None:
        for r in range(self.nregions, min(len(self._bits) * 8, (self.nregions + 8) // 8 * 8)):
            self._set(self._bits, r, False)
            self._set(self._durable, r, False)
        first_unused_byte = (self.nregions + 7) // 8
        if first_unused_byte < len(self._bits):
            self._bits[first_unused_byte:] = bytes(len(self._bits) - first_unused_byte)
            self._durable[first_unused_byte:] = bytes(len(self._durable) - first_unused_byte)

    def _check(self) -> None:
        """Invariants: durable bits are a subset of bits; nothing past nregions."""
        with self._lock:
            for a, b in zip(self._durable, self._bits):
                assert a & ~b & 0xFF == 0, "a durable bit is set that is clear in memory"
            for r in range(self.nregions, len(self._bits) * 8):
                assert not self._get(self._bits, r)
            assert all(v > 0 for v in self._inflight.values())
