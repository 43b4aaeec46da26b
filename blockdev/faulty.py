"""FaultyDevice: a wrapper that injects the faults real disks have.

Faults (each can be armed and disarmed at any time, from any thread):

* **read errors** on chosen blocks (``add_read_error``): a read touching the
  block raises ``StorageIOError``.  A *transient* error (the default) models a
  pending sector: a later write of the block remaps it and clears the error;
  a *sticky* error survives writes (the sector can't be repaired).
* **write errors** on chosen blocks (``add_write_error``) or on every write
  (``fail_writes``), and failing flushes (``fail_flushes``).
* **silent corruption** (``flip_bits``): bits flipped in the stored bytes;
  reads succeed and return the wrong bytes.
* **crash** (``crash``): power loss.  Writes not covered by a completed
  ``flush()`` are dropped — all of them (``mode='all'``) or a random subset
  (``mode='random'``) with the last write torn at block granularity.  The
  device then refuses I/O (``StorageIOError``) until ``restart()``, the way a
  machine that lost power does not answer its old handles.
* **whole-device loss** (``lose``): every call raises ``StorageIOError``
  until ``revive(wipe=...)``; ``wipe=True`` brings it back blank, the way an
  ephemeral local SSD returns after host maintenance.

Crash emulation keeps, for the writes since the last completed flush, the
bytes each block held at that flush (``_saved``) and the ordered list of
writes (offset, data).  ``crash`` restores the saved bytes and replays the
kept writes; memory use is proportional to the unflushed data.  The inner
device must itself be durable at once (``MemoryDevice``, or a ``FileDevice``
when process crashes, not power loss, are what is being tested).
"""

from __future__ import annotations

import random
import threading
from typing import Dict, Iterable, List, Optional, Set, Tuple

from blockdev.device import BlockDevice
from blockdev.errors import ArgumentTypeError, InvalidArgumentError, StorageIOError

__all__ = ["FaultyDevice"]


class FaultyDevice(BlockDevice):
    """Wraps ``inner`` and injects faults.  Requires: ``inner`` is open; the
    wrapper takes ownership and closes it on ``close()``."""

    def __init__(self, inner: BlockDevice, name: Optional[str] = None) -> None:
        if not isinstance(inner, BlockDevice):
            raise ArgumentTypeError(f"inner must be a BlockDevice, got {type(inner).__name__}")
        super().__init__(inner.size, inner.block_size)
        self.inner = inner
        self.name = name if name is not None else f"faulty({inner.name})"
        self._lock = threading.RLock()
        self._read_errors: Dict[int, bool] = {}   # block -> sticky
        self._write_errors: Set[int] = set()
        self._fail_all_writes = False
        self._fail_flushes = False
        self._lost = False
        self._crashed = False
        self._saved: Dict[int, bytes] = {}        # block -> bytes at the last completed flush
        self._log: List[Tuple[int, bytes]] = []   # writes since the last completed flush, in order
        self.counters: Dict[str, int] = {
            "reads": 0, "writes": 0, "flushes": 0, "discards": 0,
            "read_errors": 0, "write_errors": 0, "flush_errors": 0,
            "bits_flipped": 0, "crashes": 0, "writes_dropped": 0,
        }

    # -- fault controls -------------------------------------------------------
    def _check_block(self, block: int) -> None:
        if not isinstance(block, int) or isinstance(block, bool):
            raise ArgumentTypeError(f"block must be an int, got {type(block).__name__}")
        if not 0 <= block < self.size // self.block_size:
            raise InvalidArgumentError(f"block {block} outside device of {self.size // self.block_size} blocks")

    def add_read_error(self, block: int, sticky: bool = False) -> None:
        """Make reads of ``block`` fail.  ``sticky``: a write does not clear it."""
        self._check_block(block)
        with self._lock:
            self._read_errors[block] = bool(sticky)

    def add_write_error(self, block: int) -> None:
        """Make writes touching ``block`` fail (the block is left unchanged)."""
        self._check_block(block)
        with self._lock:
            self._write_errors.add(block)

    def fail_writes(self, enabled: bool = True) -> None:
        """Make every write fail (``enabled=False`` disarms)."""
        with self._lock:
            self._fail_all_writes = bool(enabled)

    def fail_flushes(self, enabled: bool = True) -> None:
        """Make every flush fail (``enabled=False`` disarms)."""
        with self._lock:
            self._fail_flushes = bool(enabled)

    def clear_faults(self) -> None:
        """Disarm every read/write/flush error (not loss, not crash)."""
        with self._lock:
            self._read_errors.clear()
            self._write_errors.clear()
            self._fail_all_writes = False
            self._fail_flushes = False

    def flip_bits(self, block: int, count: int = 1, seed: Optional[int] = None) -> List[int]:
        """Silently flip ``count`` distinct bits of ``block`` in the stored bytes.

        Returns the flipped bit positions (within the block).  O(block_size)."""
        self._check_block(block)
        if not isinstance(count, int) or isinstance(count, bool):
            raise ArgumentTypeError(f"count must be an int, got {type(count).__name__}")
        bits = self.block_size * 8
        if not 1 <= count <= bits:
            raise InvalidArgumentError(f"count must be in [1, {bits}], got {count}")
        rng = random.Random(seed)
        positions = sorted(rng.sample(range(bits), count))
        with self._lock:
            off = block * self.block_size
            data = bytearray(self.inner.read(off, self.block_size))
            for p in positions:
                data[p // 8] ^= 1 << (p % 8)
            self.inner.write(off, bytes(data))
            if block in self._saved:  # the medium is damaged, whatever a crash restores
                saved = bytearray(self._saved[block])
                for p in positions:
                    saved[p // 8] ^= 1 << (p % 8)
                self._saved[block] = bytes(saved)
            self.counters["bits_flipped"] += count
        return positions

    def lose(self) -> None:
        """Whole-device loss: every call raises StorageIOError until revive()."""
        with self._lock:
            self._lost = True

    def revive(self, wipe: bool = False) -> None:
        """Bring a lost device back; ``wipe=True`` returns it zeroed (blank)."""
        with self._lock:
            self._lost = False
            if wipe:
                if self.size:
                    self.inner.write(0, bytes(self.size))
                self._saved.clear()
                self._log.clear()
                self._read_errors.clear()
                self._write_errors.clear()

    @property
    def lost(self) -> bool:
        return self._lost

    @property
    def crashed(self) -> bool:
        return self._crashed

    @property
    def unflushed_writes(self) -> int:
        """Number of writes a crash could drop."""
        with self._lock:
            return len(self._log)

    def crash(self, mode: str = "all", seed: Optional[int] = None) -> int:
        """Power loss: drop writes not covered by a completed flush.

        ``mode='all'`` drops every such write; ``mode='random'`` keeps a random
        subset (each write kept with probability 1/2) and tears the last kept
        write at block granularity.  The device refuses I/O until
        ``restart()``.  Returns the number of writes dropped (a torn write
        counts as dropped).  O(unflushed bytes)."""
        if mode not in ("all", "random"):
            raise InvalidArgumentError(f"mode must be 'all' or 'random', got {mode!r}")
        rng = random.Random(seed)
        with self._lock:
            bs = self.block_size
            for block, old in self._saved.items():
                self.inner.write(block * bs, old)
            dropped = len(self._log)
            if mode == "random" and self._log:
                kept = [w for w in self._log if rng.random() < 0.5]
                dropped = len(self._log) - len(kept)
                for i, (off, data) in enumerate(kept):
                    if i == len(kept) - 1 and len(data) > bs:
                        nblocks = len(data) // bs
                        keep_blocks = sorted(rng.sample(range(nblocks), rng.randrange(nblocks)))
                        for b in keep_blocks:
                            self.inner.write(off + b * bs, data[b * bs:(b + 1) * bs])
                        dropped += 1
                    else:
                        self.inner.write(off, data)
            self._saved.clear()
            self._log.clear()
            self._crashed = True
            self.counters["crashes"] += 1
            self.counters["writes_dropped"] += dropped
            return dropped

    def restart(self) -> None:
        """Power back on after ``crash()``: I/O is accepted again."""
        with self._lock:
            self._crashed = False

    # -- helpers ----------------------------------------------------------------
    def _check_alive(self, what: str, offset: Optional[int]) -> None:
        if self._lost:
            raise StorageIOError(f"{what} failed: device lost", self.name, offset)
        if self._crashed:
            raise StorageIOError(f"{what} failed: device powered off (crashed)", self.name, offset)

    def _blocks(self, offset: int, length: int) -> Iterable[int]:
        bs = self.block_size
        return range(offset // bs, (offset + length) // bs)

    # -- hooks ----------------------------------------------------------------
    def _read(self, offset: int, length: int) -> bytes:
        with self._lock:
            self._check_alive("read", offset)
            self.counters["reads"] += 1
            for b in self._blocks(offset, length):
                if b in self._read_errors:
                    self.counters["read_errors"] += 1
                    raise StorageIOError("read failed: injected media error", self.name, b * self.block_size)
        return self.inner.read(offset, length)

    def _write(self, offset: int, data: bytes) -> None:
        bs = self.block_size
        with self._lock:
            self._check_alive("write", offset)
            self.counters["writes"] += 1
            blocks = self._blocks(offset, len(data))
            if self._fail_all_writes or any(b in self._write_errors for b in blocks):
                self.counters["write_errors"] += 1
                raise StorageIOError("write failed: injected write error", self.name, offset)
            missing = [b for b in blocks if b not in self._saved]
            if missing:
                lo, hi = missing[0], missing[-1] + 1
                old = self.inner.read(lo * bs, (hi - lo) * bs)
                for b in missing:
                    self._saved[b] = old[(b - lo) * bs:(b - lo + 1) * bs]
            self._log.append((offset, data))
            self.inner.write(offset, data)
            for b in blocks:
                if self._read_errors.get(b) is False:  # a write remaps a pending sector
                    del self._read_errors[b]

    def _flush(self) -> None:
        with self._lock:
            self._check_alive("flush", None)
            self.counters["flushes"] += 1
            if self._fail_flushes:
                self.counters["flush_errors"] += 1
                raise StorageIOError("flush failed: injected flush error", self.name, None)
            self.inner.flush()
            self._saved.clear()
            self._log.clear()

    def _discard(self, offset: int, length: int) -> None:
        with self._lock:
            self._check_alive("discard", offset)
            self.counters["discards"] += 1
            # A discard is a hint; we pass it on (the inner may zero the range),
            # and treat it like a write for crash purposes.
            bs = self.block_size
            blocks = self._blocks(offset, length)
            missing = [b for b in blocks if b not in self._saved]
            if missing:
                lo, hi = missing[0], missing[-1] + 1
                old = self.inner.read(lo * bs, (hi - lo) * bs)
                for b in missing:
                    self._saved[b] = old[(b - lo) * bs:(b - lo + 1) * bs]
            self.inner.discard(offset, length)
            self._log.append((offset, self.inner.read(offset, length)))

    def _close(self) -> None:
        self.inner.close()
