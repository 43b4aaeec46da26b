"""The log: an append-only file of checksummed records (WAL and MANIFEST).

Design.  A log file is a sequence of 32 KiB *blocks* (the last one may be
short).  A record (an opaque ``bytes`` payload: a write batch in a WAL, a
version edit in a MANIFEST) is cut into one or more *fragments*, each with a
7-byte header; a fragment never crosses a block boundary, so a reader that
loses its place can always resynchronise at the next block start.

Byte layout (do not change: on-disk; docs/format.md "Write-ahead log")::

    file      = block* ; every block is BLOCK_SIZE bytes except possibly the last
    block     = fragment* trailer?
    fragment  = checksum:u32 LE | length:u16 LE | type:u8 | payload[length]
    trailer   = 0x00 * (1..6)     ; when fewer than HEADER_SIZE bytes remain in a block

    checksum  = XXH64(payload, seed=type) & 0xFFFFFFFF
                (lsm._native.checksum; the seed binds the type to the payload,
                 so a type byte flipped into another valid type is detected)
    type      = FULL (1) | FIRST (2) | MIDDLE (3) | LAST (4);  0 is never
                written: a zero header means zero-filled (unwritten) space

A record is either one FULL fragment or FIRST MIDDLE* LAST.  An empty record
is one FULL fragment with length 0.

Reader classification (LogReader):

* *Torn tail* (silent end of iteration): a header cut short by end of file,
  a fragment whose payload runs past end of file, or a damaged fragment (any
  check below fails) from inside which the file is all zeros up to its end;
  any partially assembled record is dropped.  These are the states an
  interrupted append leaves: a prefix of the appended bytes, possibly followed
  by zero-filled (allocated but unwritten) space.  The price: a bit flip in
  the *last* fragment of a log whose payload ends in zero bytes is taken for
  a torn tail too (that record is dropped silently, as RocksDB's
  tolerate-corrupted-tail mode does).
* *Corruption* (everything else: a checksum mismatch, an unknown type, a
  length that crosses a block boundary, a MIDDLE/LAST without a FIRST, a
  FIRST/FULL while a record is open, zero-filled space followed by data)
  with non-zero bytes after the damaged fragment:
  ``paranoid=True`` raises ``CorruptionError(msg, name, offset)``; otherwise
  the reporter is called with ``(bytes_dropped, reason)`` and reading resumes
  at the next block, skipping fragments of the damaged record.
"""

from __future__ import annotations

import struct
from typing import Callable, Iterator

from blockdev.errors import ArgumentTypeError, ClosedError, CorruptionError, StorageIOError

from lsm import _native as N

_checksum = N.checksum

__all__ = [
    "BLOCK_SIZE", "HEADER_SIZE", "FULL", "FIRST", "MIDDLE", "LAST", "ZERO",
    "LogWriter", "LogReader", "fragment_checksum",
]

BLOCK_SIZE = 32768   # do not change: on-disk
HEADER_SIZE = 7      # do not change: on-disk (u32 checksum + u16 length + u8 type)
ZERO = 0             # do not change: on-disk (never written; zero-filled space)
FULL = 1             # do not change: on-disk
FIRST = 2            # do not change: on-disk
MIDDLE = 3           # do not change: on-disk
LAST = 4             # do not change: on-disk

_HEADER = struct.Struct("<IHB")
_MAX_FRAGMENT = BLOCK_SIZE - HEADER_SIZE
_ZERO_HEADER = bytes(HEADER_SIZE)


def fragment_checksum(payload: bytes | memoryview, ftype: int) -> int:
    """The 32-bit checksum stored in a fragment header.  O(len(payload))."""
    return _checksum(payload, ftype) & 0xFFFFFFFF


class LogWriter:
    """Appends records to a log file.

    Each ``add_record`` issues exactly one ``file.append`` (all fragments and
    any block trailer in one buffer), so a crash tears at most the record being
    written.  Not thread-safe: the caller (the DB's group-commit leader, or the
    VersionSet under its lock) serialises calls.

    Requires: ``file`` is a ``WritableFile``; if it already holds data, that
    data is a log written by this class (the writer continues its block
    layout from ``file.size``).
    """

    def __init__(self, file: object, name: str = "") -> None:
        if not hasattr(file, "append") or not hasattr(file, "sync"):
            raise ArgumentTypeError("file must be a WritableFile")
        if not isinstance(name, str):
            raise ArgumentTypeError("name must be a str")
        self._file = file
        self.name = name
        self.size: int = int(getattr(file, "size", 0))
        self._closed = False
        self._failed: BaseException | None = None

    def add_record(self, payload: bytes | bytearray | memoryview) -> int:
        """Append one record; return the offset of its first fragment header.

        O(len(payload)).  An I/O error is raised and poisons the writer (the
        file may now end in a torn record; later calls raise StorageIOError).
        """
        if type(payload) is bytes and not self._closed and self._failed is None:
            # fast path: the whole record fits in the current block as one FULL fragment
            offset = self.size
            n = len(payload)
            if n + HEADER_SIZE <= BLOCK_SIZE - offset % BLOCK_SIZE:
                try:
                    self._file.append(_HEADER.pack(_checksum(payload, FULL) & 0xFFFFFFFF, n, FULL)
                                      + payload)
                except BaseException as exc:
                    self._failed = exc
                    raise
                self.size = offset + HEADER_SIZE + n
                return offset
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise ArgumentTypeError("payload must be bytes-like")
        if self._closed:
            raise ClosedError(f"log writer {self.name!r} is closed")
        if self._failed is not None:
            raise StorageIOError(f"log writer failed earlier: {self._failed}", self.name)
        data = memoryview(payload).cast("B") if not isinstance(payload, bytes) else payload
        view = memoryview(data)
        out: list[bytes] = []
        offset = self.size
        n = len(data)
        pos = 0
        start = -1
        pack = _HEADER.pack
        while True:
            leftover = BLOCK_SIZE - offset % BLOCK_SIZE
            if leftover < HEADER_SIZE:
                out.append(_ZERO_HEADER[:leftover])
                offset += leftover
                leftover = BLOCK_SIZE
            if start < 0:
                start = offset
            avail = leftover - HEADER_SIZE
            frag_len = n - pos if n - pos <= avail else avail
            end = pos + frag_len == n
            if pos == 0:
                ftype = FULL if end else FIRST
            else:
                ftype = LAST if end else MIDDLE
            frag = view[pos:pos + frag_len]      # no copy: the file takes the parts
            out.append(pack(_checksum(frag, ftype) & 0xFFFFFFFF, frag_len, ftype))
            out.append(frag)
            offset += HEADER_SIZE + frag_len
            pos += frag_len
            if end:
                break
        try:
            append_parts = getattr(self._file, "append_parts", None)
            if append_parts is not None:
                append_parts(out)             # one write of all the parts, no join
            else:
                self._file.append(b"".join(out))
        except BaseException as exc:
            self._failed = exc
            raise
        self.size = offset
        return start

    def flush(self) -> None:
        """Make every record added so far survive the death of this process
        (``file.flush``; a no-op check on ``PosixFS``, two device writes on
        ``BlockFS``).  An I/O error is raised and poisons the writer."""
        if self._closed:
            raise ClosedError(f"log writer {self.name!r} is closed")
        if self._failed is not None:
            raise StorageIOError(f"log writer failed earlier: {self._failed}", self.name)
        try:
            self._file.flush()
        except BaseException as exc:
            self._failed = exc
            raise

    def sync(self) -> None:
        """Make every record added so far durable (``file.sync``)."""
        if self._closed:
            raise ClosedError(f"log writer {self.name!r} is closed")
        self._file.sync()

    def close(self) -> None:
        """Close the file (does not sync).  Idempotent."""
        if not self._closed:
            self._closed = True
            self._file.close()


class LogReader:
    """Iterates over the complete records of a log file, in order.

    ``paranoid``: raise ``CorruptionError`` on corruption before the tail
    instead of reporting it and skipping to the next block.  ``reporter``
    (non-paranoid mode) is called as ``reporter(bytes_dropped, reason)`` for
    each damaged region skipped.  After (or during) iteration:
    ``last_record_offset`` is the offset of the last record returned (-1 if
    none), ``end_offset`` the offset just past it (0 if none),
    ``dropped_bytes`` the total skipped because of corruption, and
    ``torn_tail`` tells whether the log ended in a torn tail.

    Reads the file one block (32 KiB) at a time: O(file size) time, O(largest
    record) memory.
    """

    def __init__(self, file: object, name: str, *, paranoid: bool = False,
                 reporter: Callable[[int, str], None] | None = None) -> None:
        if not hasattr(file, "read"):
            raise ArgumentTypeError("file must be a RandomAccessFile")
        if not isinstance(name, str):
            raise ArgumentTypeError("name must be a str")
        if reporter is not None and not callable(reporter):
            raise ArgumentTypeError("reporter must be callable")
        self._file = file
        self.name = name
        self.paranoid = bool(paranoid)
        self._reporter = reporter
        self.last_record_offset = -1
        self.end_offset = 0
        self.dropped_bytes = 0
        self.torn_tail = False
        self._zero_start: int | None = None

    # -- helpers -----------------------------------------------------------
    def _zero_suffix_start(self, size: int) -> int:
        """Offset where the file's all-zero suffix begins (``size`` if the last
        byte is non-zero).  Reads backwards; O(length of the zero suffix)."""
        if self._zero_start is None:
            end = size
            while end > 0:
                start = max(0, end - BLOCK_SIZE)
                chunk = self._file.read(start, end - start).rstrip(b"\0")
                if chunk:
                    end = start + len(chunk)
                    break
                end = start
            self._zero_start = end
        return self._zero_start

    def _is_torn(self, a: int, frag_end: int, size: int) -> bool:
        """A damaged fragment at ``a`` (declared to end at ``frag_end``) is a
        torn tail when the file is all zeros from some point inside the
        fragment to its end: the prefix-then-zeros state of an interrupted
        append.  Records before it are intact; nothing after it exists."""
        return self._zero_suffix_start(size) < max(frag_end, a + HEADER_SIZE)

    def _corrupt(self, offset: int, reason: str, dropped: int) -> None:
        if self.paranoid:
            raise CorruptionError(f"log: {reason}", self.name, offset)
        self.dropped_bytes += dropped
        if self._reporter is not None:
            self._reporter(dropped, f"{reason} at offset {offset}")

    def __iter__(self) -> Iterator[bytes]:
        """Each iteration reads the log from its start (and resets the
        statistics attributes)."""
        self.last_record_offset = -1
        self.end_offset = 0
        self.dropped_bytes = 0
        self.torn_tail = False
        self._zero_start = None
        return self._records()

    def _records(self) -> Iterator[bytes]:
        size = int(self._file.size)
        read = self._file.read
        unpack = _HEADER.unpack_from
        parts: list[bytes] = []
        rec_start = -1            # offset of the open record's FIRST fragment
        rec_bytes = 0             # bytes of the open record seen so far (headers included)
        resync = False            # skipping MIDDLE/LAST left over from a damaged record
        block_start = 0
        while block_start < size:
            block = read(block_start, min(BLOCK_SIZE, size - block_start))
            blen = len(block)
            if blen == 0:
                break
            pos = 0
            while True:
                if BLOCK_SIZE - pos < HEADER_SIZE:
                    break                           # block trailer
                a = block_start + pos
                if blen - pos < HEADER_SIZE:
                    # only in the file's last (short) block: end of file, or a
                    # header cut short by it (a torn tail)
                    if pos < blen or rec_start >= 0:
                        self.torn_tail = True
                    return
                crc, length, ftype = unpack(block, pos)
                end = pos + HEADER_SIZE + length
                if ftype < FULL or ftype > LAST:
                    if self._is_torn(a, block_start + end, size):
                        self.torn_tail = True
                        return
                    reason = ("zero-filled space before the end of the log"
                              if ftype == ZERO and length == 0 and crc == 0
                              else f"bad fragment type {ftype}")
                    self._corrupt(a, reason, rec_bytes + blen - pos)
                    parts, rec_start, rec_bytes, resync = [], -1, 0, True
                    break
                if end > blen:
                    if block_start + end > size or self._is_torn(a, block_start + end, size):
                        self.torn_tail = True       # runs past end of file: torn tail
                        return
                    self._corrupt(a, f"fragment length {length} crosses a block boundary",
                                  rec_bytes + blen - pos)
                    parts, rec_start, rec_bytes, resync = [], -1, 0, True
                    break
                payload = block[pos + HEADER_SIZE:end]
                if _checksum(payload, ftype) & 0xFFFFFFFF != crc:
                    if self._is_torn(a, block_start + end, size):
                        self.torn_tail = True
                        return
                    self._corrupt(a, "fragment checksum mismatch", rec_bytes + blen - pos)
                    parts, rec_start, rec_bytes, resync = [], -1, 0, True
                    break
                pos = end
                if ftype == FULL or ftype == FIRST:
                    resync = False
                    if rec_start >= 0:
                        self._corrupt(rec_start, "record without its last fragment", rec_bytes)
                        parts, rec_bytes = [], 0
                    if ftype == FULL:
                        rec_start = -1
                        self.last_record_offset = a
                        self.end_offset = block_start + end
                        yield payload
                        continue
                    rec_start = a
                    rec_bytes = HEADER_SIZE + length
                    parts = [payload]
                    continue
                # MIDDLE or LAST
                if rec_start < 0:
                    if resync:
                        self.dropped_bytes += HEADER_SIZE + length
                        if self._reporter is not None:
                            self._reporter(HEADER_SIZE + length,
                                           f"fragment of a damaged record at offset {a}")
                        if ftype == LAST:
                            resync = False
                        continue
                    self._corrupt(a, "fragment without the start of its record",
                                  HEADER_SIZE + length)
                    continue
                parts.append(payload)
                rec_bytes += HEADER_SIZE + length
                if ftype == LAST:
                    record = parts[0] if len(parts) == 1 else b"".join(parts)
                    self.last_record_offset = rec_start
                    self.end_offset = block_start + end
                    parts, rec_start, rec_bytes = [], -1, 0
                    yield record
            if blen < BLOCK_SIZE:
                break
            block_start += BLOCK_SIZE
        if rec_start >= 0:
            self.torn_tail = True       # record whose last fragment never arrived
