"""The block device protocol every device in ``blockdev`` implements.

Durability contract (what a caller may rely on after a crash or power loss):

* ``write(offset, data)`` returns once the device has accepted the data.  The
  data is then visible to ``read`` but is **not durable**: after a crash any
  subset of the writes issued since the last completed ``flush()`` may be
  missing, and a write that was in flight may be torn at block granularity
  (some of its blocks new, some old).
* ``flush()`` returns only when every write that returned before the call is
  durable (the ``fdatasync`` / FUA barrier).  Writes are never reordered
  across a completed flush.
* ``discard(offset, length)`` tells the device the range holds no data anyone
  needs.  Afterwards a read of the range returns either the old bytes or
  zeros; callers must not depend on either.  Discard is a hint and may be a
  no-op.
* I/O is block aligned: ``offset`` and ``length`` are multiples of
  ``block_size`` and lie within ``[0, size)``; anything else raises
  ``InvalidArgumentError``.
* Failures raise ``StorageIOError`` (``NoSpaceError``, ``DurableLegError`` for
  specific causes) and corrupt data detected by a device with checksums
  raises ``CorruptionError``; errors are never swallowed.
* After ``close()`` every call raises ``ClosedError``.  Devices are safe to
  use from several threads at once.
"""

from __future__ import annotations

import abc
import threading

from blockdev.errors import ArgumentTypeError, ClosedError, InvalidArgumentError

__all__ = ["BlockDevice", "MemoryDevice"]


class BlockDevice(abc.ABC):
    """Abstract block device.  Subclasses implement the ``_read``/``_write``/...
    hooks; the public methods validate arguments first."""

    name: str = "device"

    def __init__(self, size: int, block_size: int) -> None:
        if block_size <= 0 or block_size & (block_size - 1):
            raise InvalidArgumentError(f"block_size must be a power of two, got {block_size}")
        if size < 0 or size % block_size:
            raise InvalidArgumentError(f"size must be a multiple of block_size {block_size}, got {size}")
        self._size = size
        self._block_size = block_size
        self._closed = False

    # -- properties -------------------------------------------------------
    @property
    def size(self) -> int:
        """Capacity in bytes (a multiple of ``block_size``)."""
        return self._size

    @property
    def block_size(self) -> int:
        """The I/O unit in bytes (a power of two)."""
        return self._block_size

    @property
    def closed(self) -> bool:
        return self._closed

    # -- validation -------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"{self.name} is closed")

    def _check_range(self, offset: int, length: int) -> None:
        if not isinstance(offset, int) or isinstance(offset, bool):
            raise ArgumentTypeError(f"offset must be an int, got {type(offset).__name__}")
        if not isinstance(length, int) or isinstance(length, bool):
            raise ArgumentTypeError(f"length must be an int, got {type(length).__name__}")
        bs = self._block_size
        if offset < 0 or length < 0:
            raise InvalidArgumentError(f"offset and length must be >= 0, got {offset}, {length}")
        if offset % bs or length % bs:
            raise InvalidArgumentError(
                f"I/O must be aligned to block_size {bs}: offset={offset} length={length}")
        if offset + length > self._size:
            raise InvalidArgumentError(
                f"I/O past the end of {self.name}: offset={offset} length={length} size={self._size}")

    # -- public API ---------------------------------------------------------
    def read(self, offset: int, length: int) -> bytes:
        """Read ``length`` bytes at ``offset``.  Requires: aligned, in range."""
        self._check_open()
        self._check_range(offset, length)
        if length == 0:
            return b""
        return self._read(offset, length)

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Write ``data`` at ``offset`` (not durable until ``flush``)."""
        self._check_open()
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ArgumentTypeError(f"data must be bytes-like, got {type(data).__name__}")
        self._check_range(offset, len(data))
        if len(data) == 0:
            return
        self._write(offset, bytes(data))

    def flush(self) -> None:
        """Make every completed write durable."""
        self._check_open()
        self._flush()

    def discard(self, offset: int, length: int) -> None:
        """Hint that ``[offset, offset+length)`` is unused."""
        self._check_open()
        self._check_range(offset, length)
        if length:
            self._discard(offset, length)

    def close(self) -> None:
        """Release the device; idempotent."""
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> "BlockDevice":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} size={self._size} block_size={self._block_size}>"

    # -- hooks ------------------------------------------------------------
    @abc.abstractmethod
    def _read(self, offset: int, length: int) -> bytes: ...

    @abc.abstractmethod
    def _write(self, offset: int, data: bytes) -> None: ...

    @abc.abstractmethod
    def _flush(self) -> None: ...

    def _discard(self, offset: int, length: int) -> None:
        """Default: discard is a no-op hint."""

    def _close(self) -> None:
        """Default: nothing to release."""


class MemoryDevice(BlockDevice):
    """A device held in RAM; everything written is durable at once.

    Meant for tests and for wrapping in ``FaultyDevice``/``EmulatedDevice``.
    Discarded ranges read back as zeros.
    """

    def __init__(self, size: int, block_size: int = 4096, name: str = "mem") -> None:
        super().__init__(size, block_size)
        self.name = name
        self._buf = bytearray(size)
        self._lock = threading.Lock()

    def _read(self, offset: int, length: int) -> bytes:
        with self._lock:
            return bytes(self._buf[offset:offset + length])

    def _write(self, offset: int, data: bytes) -> None:
        with self._lock:
            self._buf[offset:offset + len(data)] = data

    def _flush(self) -> None:
        return None

    def _discard(self, offset: int, length: int) -> None:
        with self._lock:
            self._buf[offset:offset + length] = bytes(length)
