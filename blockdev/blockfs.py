"""BlockFS: the engine's files inside any block device.

The engine needs a handful of file kinds (append-only tables, the WAL, the
MANIFEST, small pointer files replaced by ``rename``).  BlockFS stores them
on a ``blockdev.BlockDevice`` (a ``SuperDisk`` in production) with a layout
in the spirit of RocksDB's BlueFS: a superblock, an extent allocator and a
checksummed metadata journal.  docs/format.md ("BlockFS") describes every
byte; the summary:

Device layout (``B`` = the device's block size, at least 512)::

    block 0          superblock slot 0
    block 1          superblock slot 1
    area 0           journal area 0   (journal_blocks blocks)
    area 1           journal area 1   (journal_blocks blocks)
    data             file data, allocated in extents of whole blocks

Superblock (little endian, 104 bytes, zero padded to ``B``)::

    0  magic "SDKBLKFS"      8  u32 format version     12 u32 block size
    16 u64 device size       24 16-byte UUID           40 u64 sequence
    48 u32 active area       52 u32 reserved (0)       56 u64 area 0 offset
    64 u64 area 1 offset     72 u64 area length        80 u64 data offset
    88 u64 data blocks       96 u64 XXH64 of bytes [0, 96)

The two slots alternate: sequence ``s`` lives in slot ``s % 2``; mount takes
the valid slot with the highest sequence, so a torn superblock write leaves
the previous one in force.  The sequence is also the *epoch* of the active
journal area: every journal record carries it, and replay stops at the first
record whose epoch differs (stale records of an earlier use of the area).

Journal record (little endian; docs/format.md has every payload)::

    u64 checksum  XXH64 (seed 0) of everything after it (length .. payload)
    u32 length    payload length
    u8  type      1 CREATE, 2 EXTEND, 3 RENAME, 4 DELETE, 5 COMMIT
    u64 epoch
    payload       varints (LEB128), length-prefixed UTF-8 names, and in an
                  EXTEND an optional u64 XXH64 of the file bytes it adds

Records follow each other as a byte stream inside the area, in *commit
groups*: the records of one journal commit followed by a COMMIT record,
written with one device write and made durable by one flush.  Replay reads
records until the first one that does not fit, fails its checksum or has
another epoch, and applies complete groups only (a torn tail, or records
without their COMMIT, are ignored).  A record that passes its checksum but
makes no sense is ``CorruptionError``.

Durability protocol:

* ``append`` writes whole blocks to allocated extents; the partial last
  block is buffered in memory.  Space is allocated in growing chunks (64 KiB
  up to 1 MiB) so a growing file gets contiguous extents.
* ``WritableFile.sync``: write the partial block (zero padded), then commit
  a group holding an EXTEND record (new size, the extents covering it, and
  the XXH64 of the bytes appended since the previous EXTEND): **one** device
  flush makes the data and the record durable together.  Since the two may
  reach the media in either order, replay verifies the data checksums of the
  *last* group against the device and drops the group on a mismatch (its
  sync never returned).  Every earlier group is proven durable: the group
  after it was written only once its flush had completed.
* ``WritableFile.flush`` (the bytes must survive the death of the process,
  not of the machine).  With a write-back buffer (``blockdev.writeback``;
  default ``/dev/shm``): the *staged group* -- the queued records, an EXTEND
  with data checksum to the live size of every flushed file, a COMMIT --
  and the images of those files' partial last blocks are stored in a file
  of host memory, with no device I/O; the next mount on the host applies
  it if nothing was committed after it.  Without one: the partial block is
  written, then the same group as the *provisional group* at the journal
  end, without a flush and without moving the end, so the next flush or
  commit overwrites it (a commit includes every flushed file's EXTEND).
  It is always the last group, verified like one; it is written only if it
  fits in the rest of the end's journal block, whose write is atomic and
  is rewritten whole by every later write at the end (else the flush
  commits).
* ``create`` of a new name queues a CREATE record (durable with the next
  commit); ``create`` over an existing name, ``rename`` and ``delete``
  commit their record before they return.  Blocks are freed (and
  discarded) only after the record that frees them is durable, so a crash
  never leaves two files sharing blocks, and a group's data is never
  overwritten while it is the last group.  Freed blocks are discarded in
  batches (``BlockFS.trim``); blocks reused first are never discarded.
* When the active area is full the journal is compacted: a snapshot of the
  file table (CREATE + EXTEND per file, then COMMIT) is written to the
  other area under epoch ``s + 1``, the device flushed, then superblock
  ``s + 1`` written and flushed.  A crash at any step leaves either the old
  or the new superblock in force, each with an intact area.  Every mount
  compacts once, so a session never appends after records a crash left
  behind.

Requires of the device: writes are atomic per block (the device contract of
``blockdev.device``: torn only at block granularity), since the journal's
and each file's last partial block are rewritten in place.

The device is owned by one process; within the process one mounted BlockFS
per device object (a second mount raises ``LockError``).  ``lock()`` is an
in-process lock table: it keeps a second handle out, not another process
(the device is not shared between processes).
"""

from __future__ import annotations

import bisect
import enum
import os
import secrets
import struct
import threading
import uuid
import weakref
from dataclasses import dataclass, replace
from typing import Optional, Union

import xxhash

from blockdev.device import BlockDevice
from blockdev.errors import (
    ArgumentTypeError,
    ClosedError,
    CorruptionError,
    InvalidArgumentError,
    LockError,
    NoSpaceError,
    NotFoundError,
    StorageIOError,
    UnsupportedFormatError,
)
from blockdev.fs import (
    BytesLike,
    FileLock,
    FileSystem,
    RandomAccessFile,
    WritableFile,
    check_data,
    check_int,
    check_name,
    copy_file,
)
from blockdev.writeback import WriteBackBuffer, default_dir

__all__ = ["BlockFS", "Superblock", "FsckReport", "MAGIC", "FORMAT_VERSION", "BlockFSFormat"]


class BlockFSFormat(enum.IntEnum):
    """Named BlockFS format versions (superblock bytes 8-11, u32 LE).

    Each member is one released layout; never renumber or reuse a value
    (do not change: on-disk).  A new layout adds a member, documents it in
    docs/format.md ("BlockFS" / "Format versions") and moves
    ``FORMAT_VERSION``; a mount refuses 0 and anything above it.
    """

    #: initial: two superblock slots, two journal areas, commit groups with
    #: data checksums in EXTEND records.
    V1 = 1


MAGIC = b"SDKBLKFS"  # do not change: on-disk
FORMAT_VERSION = BlockFSFormat.V1  # the version written (do not change: on-disk)
_SB = struct.Struct("<8sIIQ16sQIIQQQQQ")  # do not change: on-disk (96 bytes)
_SB_CSUM = struct.Struct("<Q")  # do not change: on-disk (at offset 96)
SUPERBLOCK_SIZE = _SB.size + _SB_CSUM.size  # 104
_REC = struct.Struct("<QIBQ")  # do not change: on-disk: checksum, length, type, epoch
REC_HEADER_SIZE = _REC.size  # 21
_COMMIT_SIZE = _REC.size  # a COMMIT record has no payload

REC_CREATE = 1  # do not change: on-disk
REC_EXTEND = 2  # do not change: on-disk
REC_RENAME = 3  # do not change: on-disk
REC_DELETE = 4  # do not change: on-disk
REC_COMMIT = 5  # do not change: on-disk
EXTEND_HAS_CSUM = 1  # do not change: on-disk (EXTEND flags bit 0)

MIN_BLOCK_SIZE = 512
MIN_JOURNAL_BLOCKS = 2
MAX_JOURNAL_BYTES = 32 << 20
_CHUNK_MIN_BYTES = 64 << 10
_CHUNK_MAX_BYTES = 1 << 20
_DISCARD_BATCH_MAX = 256 << 20
_MOUNT_JUMP = 1 << 24  # a mount advances the sequence by 1 + 2k, k random below this

#: ``writeback_dir`` default: ``blockdev.writeback.default_dir()`` at mount.
AUTO = "auto"

_MOUNTS: "weakref.WeakKeyDictionary[BlockDevice, weakref.ref[BlockFS]]" = weakref.WeakKeyDictionary()
_MOUNTS_LOCK = threading.Lock()


def _xxh64(data: BytesLike) -> int:
    return xxhash.xxh64_intdigest(data, 0)


# ---------------------------------------------------------------------------
# Varints and record payloads
# ---------------------------------------------------------------------------


def _put_varint(out: bytearray, value: int) -> None:
    """Append ``value`` (0 <= value < 2**64) as LEB128."""
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _put_name(out: bytearray, name: str) -> None:
    raw = name.encode("utf-8")
    _put_varint(out, len(raw))
    out += raw


class _Reader:
    """Decoder of one record payload; errors are ``CorruptionError`` at the
    record's device offset."""

    __slots__ = ("buf", "pos", "end", "dev", "offset")

    def __init__(self, buf: memoryview, dev: str, offset: int) -> None:
        self.buf = buf
        self.pos = 0
        self.end = len(buf)
        self.dev = dev
        self.offset = offset

    def fail(self, what: str) -> CorruptionError:
        return CorruptionError(f"BlockFS journal record: {what}", self.dev, self.offset)

    def varint(self) -> int:
        result = 0
        shift = 0
        while True:
            if self.pos >= self.end:
                raise self.fail("truncated varint")
            if shift > 63:
                raise self.fail("overlong varint")
            b = self.buf[self.pos]
            self.pos += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def u64(self) -> int:
        if self.pos + 8 > self.end:
            raise self.fail("truncated u64")
        (value,) = struct.unpack_from("<Q", self.buf, self.pos)
        self.pos += 8
        return value

    def name(self) -> str:
        n = self.varint()
        if n == 0 or n > 255 or self.pos + n > self.end:
            raise self.fail(f"bad name length {n}")
        raw = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail("name is not UTF-8") from None

    def done(self) -> None:
        if self.pos != self.end:
            raise self.fail(f"{self.end - self.pos} trailing bytes")


def encode_record(rtype: int, epoch: int, payload: BytesLike) -> bytes:
    """One journal record: header + payload.  O(len(payload))."""
    body = bytearray(_REC.size)
    body += payload
    struct.pack_into("<IBQ", body, 8, len(payload), rtype, epoch)
    csum = _xxh64(memoryview(body)[8:])
    struct.pack_into("<Q", body, 0, csum)
    return bytes(body)


def _payload_create(ino: int, name: str) -> bytearray:
    out = bytearray()
    _put_varint(out, ino)
    _put_name(out, name)
    return out


def _payload_extend(ino: int, size: int, extents: list[tuple[int, int]],
                    data_csum: Optional[int] = None) -> bytearray:
    out = bytearray()
    _put_varint(out, ino)
    _put_varint(out, size)
    _put_varint(out, EXTEND_HAS_CSUM if data_csum is not None else 0)
    if data_csum is not None:
        out += struct.pack("<Q", data_csum)
    _put_varint(out, len(extents))
    for start, n in extents:
        _put_varint(out, start)
        _put_varint(out, n)
    return out


def _payload_rename(src: str, dst: str) -> bytearray:
    out = bytearray()
    _put_name(out, src)
    _put_name(out, dst)
    return out


def _payload_delete(name: str) -> bytearray:
    out = bytearray()
    _put_name(out, name)
    return out


# ---------------------------------------------------------------------------
# Superblock
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Superblock:
    """The decoded superblock.  Offsets and lengths are in bytes."""

    format_version: int
    block_size: int
    device_size: int
    uuid: bytes
    sequence: int
    active_area: int
    area0_offset: int
    area1_offset: int
    area_length: int
    data_offset: int
    data_blocks: int

    def encode(self) -> bytes:
        """The 104 superblock bytes, zero padded to ``block_size``."""
        head = _SB.pack(MAGIC, self.format_version, self.block_size, self.device_size,
                        self.uuid, self.sequence, self.active_area, 0, self.area0_offset,
                        self.area1_offset, self.area_length, self.data_offset, self.data_blocks)
        raw = head + _SB_CSUM.pack(_xxh64(head))
        return raw + bytes(self.block_size - len(raw))

    @property
    def active_offset(self) -> int:
        return self.area1_offset if self.active_area else self.area0_offset

    @property
    def inactive_offset(self) -> int:
        return self.area0_offset if self.active_area else self.area1_offset

    @property
    def data_end_block(self) -> int:
        return self.data_offset // self.block_size + self.data_blocks

    def validate(self, device: BlockDevice) -> None:
        """Raise unless the geometry is consistent and fits ``device``."""
        dev = device.name
        bs = self.block_size
        if bs != device.block_size:
            raise UnsupportedFormatError(
                f"BlockFS formatted with block size {bs}, device has {device.block_size}", dev)
        if self.active_area not in (0, 1):
            raise CorruptionError(f"superblock: bad active area {self.active_area}", dev, 0)
        fields = (self.area0_offset, self.area1_offset, self.area_length, self.data_offset)
        if any(v % bs for v in fields) or self.area_length <= 0:
            raise CorruptionError("superblock: misaligned layout", dev, 0)
        if (self.area0_offset != 2 * bs or self.area1_offset != self.area0_offset + self.area_length
                or self.data_offset != self.area1_offset + self.area_length):
            raise CorruptionError("superblock: inconsistent layout", dev, 0)
        if self.data_offset + self.data_blocks * bs != self.device_size:
            raise CorruptionError("superblock: data area does not match the device size", dev, 0)
        if self.device_size > device.size:
            raise CorruptionError(
                f"superblock: formatted for {self.device_size} bytes but the device holds "
                f"only {device.size}", dev, 0)


def _decode_superblock(raw: bytes, dev: str, slot: int) -> Optional[Superblock]:
    """Decode a slot.  None if the slot has no magic; ``CorruptionError``
    for a bad checksum; ``UnsupportedFormatError`` for a newer version."""
    if raw[:8] != MAGIC:
        return None
    version = struct.unpack_from("<I", raw, 8)[0]
    if version > FORMAT_VERSION or version == 0:
        raise UnsupportedFormatError(
            f"BlockFS format version {version} (this code reads up to "
            f"{FORMAT_VERSION.name} = {int(FORMAT_VERSION)})", dev)
    fields = _SB.unpack_from(raw, 0)
    (csum,) = _SB_CSUM.unpack_from(raw, _SB.size)
    if _xxh64(raw[:_SB.size]) != csum:
        raise CorruptionError(f"superblock slot {slot} fails its checksum", dev, slot * len(raw))
    (_, ver, bs, dsize, uid, seq, active, _res, a0, a1, alen, doff, dblocks) = fields
    return Superblock(ver, bs, dsize, uid, seq, active, a0, a1, alen, doff, dblocks)


# ---------------------------------------------------------------------------
# Extent allocator
# ---------------------------------------------------------------------------


class _Allocator:
    """Free space as coalesced extents of blocks ``[first, end)``.

    ``_starts`` is the sorted list of free-extent starts, ``_len`` maps a
    start to its length.  Invariant: extents are disjoint, non-adjacent
    (always coalesced) and inside ``[first, end)``.
    """

    def __init__(self, first: int, end: int) -> None:
        self.first = first
        self.end = end
        self._starts: list[int] = []
        self._len: dict[int, int] = {}
        self.free_blocks = 0

    def extents(self) -> list[tuple[int, int]]:
        """Free extents in block order.  O(n)."""
        return [(s, self._len[s]) for s in self._starts]

    def free(self, start: int, n: int) -> None:
        """Return ``[start, start+n)`` to the free space, coalescing with
        its neighbours.  O(n) list insert, O(log n) search.

        Requires: the range is allocated (not free) and inside the area.
        """
        if n <= 0:
            return
        if start < self.first or start + n > self.end:
            raise AssertionError(f"free of [{start}, {start + n}) outside [{self.first}, {self.end})")
        i = bisect.bisect_left(self._starts, start)
        if i < len(self._starts) and self._starts[i] < start + n:
            raise AssertionError(f"double free of block {self._starts[i]}")
        if i > 0:
            p = self._starts[i - 1]
            if p + self._len[p] > start:
                raise AssertionError(f"double free of block {start}")
        self.free_blocks += n
        # Merge with the following extent.
        if i < len(self._starts) and self._starts[i] == start + n:
            nxt = self._starts.pop(i)
            n += self._len.pop(nxt)
        # Merge with the preceding extent.
        if i > 0:
            p = self._starts[i - 1]
            if p + self._len[p] == start:
                self._len[p] += n
                return
        self._starts.insert(i, start)
        self._len[start] = n

    def _take(self, start: int, n: int) -> None:
        """Remove ``[start, start+n)`` from the free extent beginning at
        ``start``."""
        length = self._len.pop(start)
        i = bisect.bisect_left(self._starts, start)
        if length == n:
            self._starts.pop(i)
        else:
            self._starts[i] = start + n
            self._len[start + n] = length - n
        self.free_blocks -= n

    def remove(self, start: int, n: int) -> int:
        """Remove ``[start, start+n)`` from the set wherever it is present
        (splitting extents); return how many blocks were removed.
        O(log n + extents touched)."""
        end = start + n
        removed = 0
        i = max(0, bisect.bisect_right(self._starts, start) - 1)
        while i < len(self._starts) and self._starts[i] < end:
            s = self._starts[i]
            e = s + self._len[s]
            if e <= start:
                i += 1
                continue
            lo, hi = max(s, start), min(e, end)
            del self._len[s]
            self._starts.pop(i)
            if s < lo:
                self._starts.insert(i, s)
                self._len[s] = lo - s
                i += 1
            if hi < e:
                self._starts.insert(i, hi)
                self._len[hi] = e - hi
                i += 1
            removed += hi - lo
        self.free_blocks -= removed
        return removed

    def allocate(self, want: int, need: int, hint: Optional[int] = None,
                 prefer: Optional["_Allocator"] = None) -> list[tuple[int, int]]:
        """Allocate ``want`` blocks (or only ``need`` if ``want`` do not fit).

        Preference: continue at ``hint`` (the block after the file's last
        extent), then the first extent of ``prefer`` (a subset of the free
        space: recently freed blocks; blocks taken at ``hint`` leave it too,
        the caller removes the rest it gets) that holds the rest whole, then the
        first free extent that does, then the largest extents.  Raises
        ``NoSpaceError`` (nothing allocated) when fewer than ``need`` blocks
        are free.  O(n) in free extents.
        """
        if need > self.free_blocks:
            raise NoSpaceError(f"no space: {need} blocks needed, {self.free_blocks} free")
        total = want if want <= self.free_blocks else need
        out: list[tuple[int, int]] = []
        if hint is not None and hint in self._len:
            n = min(self._len[hint], total)
            self._take(hint, n)
            if prefer is not None:
                prefer.remove(hint, n)  # prefer stays a subset of the free space
            out.append((hint, n))
            total -= n
        if total and prefer is not None:
            for s, n in prefer.extents():
                if n >= total:
                    if self.remove(s, total) != total:
                        raise AssertionError(f"preferred blocks [{s}, {s + total}) are not free")
                    out.append((s, total))
                    total = 0
                    break
        if total:
            for s in self._starts:
                if self._len[s] >= total:
                    self._take(s, total)
                    out.append((s, total))
                    total = 0
                    break
        while total:
            s = max(self._starts, key=lambda k: self._len[k])
            n = min(self._len[s], total)
            self._take(s, n)
            out.append((s, n))
            total -= n
        return out

    def _check(self) -> None:
        """Assert the invariants (sorted, disjoint, coalesced, in range)."""
        total = 0
        prev_end = -1
        assert sorted(self._starts) == self._starts, "free list unsorted"
        assert set(self._starts) == set(self._len), "free index out of sync"
        for s in self._starts:
            n = self._len[s]
            assert n > 0, "empty free extent"
            assert s >= self.first and s + n <= self.end, "free extent out of range"
            assert s > prev_end, "free extents overlap or touch"
            prev_end = s + n
            total += n
        assert total == self.free_blocks, "free block count wrong"


# ---------------------------------------------------------------------------
# Inodes and replay
# ---------------------------------------------------------------------------


class _Inode:
    """One file.  ``size``/``extents`` are the live state; ``jsize`` and
    ``jblocks`` the part recorded in the journal (committed or queued)."""

    __slots__ = ("ino", "name", "size", "extents", "lbn", "nblocks", "jsize", "jblocks",
                 "tail", "tail_dirty", "refs", "writer", "unlinked", "hasher", "psize")

    def __init__(self, ino: int, name: str) -> None:
        self.ino = ino
        self.name = name
        self.size = 0
        self.extents: list[tuple[int, int]] = []  # (physical start block, blocks)
        self.lbn: list[int] = []  # logical block of each extent's start
        self.nblocks = 0
        self.jsize = 0
        self.jblocks = 0
        self.tail: Optional[bytearray] = None  # bytes of the partial last block, when known
        self.tail_dirty = False  # tail not yet written to the device
        self.refs = 0
        self.writer = False
        self.unlinked = False
        self.hasher: Optional["xxhash.xxh64"] = None  # XXH64 of bytes [jsize, size)
        self.psize = 0  # size the provisional group covers (while in BlockFS._prov)

    def add_extent(self, start: int, n: int) -> None:
        """Append an extent, merging with the last one when contiguous. O(1)."""
        if self.extents:
            s, m = self.extents[-1]
            if s + m == start:
                self.extents[-1] = (s, m + n)
                self.nblocks += n
                return
        self.extents.append((start, n))
        self.lbn.append(self.nblocks)
        self.nblocks += n

    def slice(self, first: int, end: int) -> list[tuple[int, int]]:
        """Physical runs of logical blocks ``[first, end)``.  O(log n + k)."""
        out: list[tuple[int, int]] = []
        if first >= end:
            return out
        i = bisect.bisect_right(self.lbn, first) - 1
        lb = first
        while lb < end:
            start, n = self.extents[i]
            off = lb - self.lbn[i]
            take = min(n - off, end - lb)
            out.append((start + off, take))
            lb += take
            i += 1
        return out

    def truncate_blocks(self, keep: int) -> list[tuple[int, int]]:
        """Drop every block at logical index >= ``keep``; return the
        removed physical runs."""
        removed = self.slice(keep, self.nblocks)
        if not removed:
            return removed
        while self.extents and self.lbn[-1] >= keep:
            self.extents.pop()
            self.lbn.pop()
        if self.extents:
            s, n = self.extents[-1]
            self.extents[-1] = (s, keep - self.lbn[-1])
        self.nblocks = keep
        return removed

    def _check(self, block_size: int) -> None:
        """Assert the inode's invariants."""
        assert sum(n for _, n in self.extents) == self.nblocks, "nblocks wrong"
        acc = 0
        for (_, n), lb in zip(self.extents, self.lbn):
            assert lb == acc and n > 0, "logical index wrong"
            acc += n
        assert self.size <= self.nblocks * block_size, "size beyond extents"
        assert self.jsize <= self.size and self.jblocks <= self.nblocks, "journaled beyond live"
        assert self.jsize <= self.jblocks * block_size, "journaled size beyond journaled extents"


def _blocks_for(size: int, bs: int) -> int:
    return -(-size // bs)


class _DataCheck:
    """An EXTEND's promise: file bytes ``[start, end)`` hash to ``csum``."""

    __slots__ = ("node", "start", "end", "csum", "offset")

    def __init__(self, node: _Inode, start: int, end: int, csum: int, offset: int) -> None:
        self.node = node
        self.start = start
        self.end = end
        self.csum = csum
        self.offset = offset


def _scan(buf: bytes, epoch: int) -> tuple[list[list[tuple[int, int, int]]], list[int]]:
    """Split a journal area into complete commit groups.  Returns the groups
    (each a list of (offset, end, type), the COMMIT record left out) and the
    end offset of each group.  Stops at the first record that does not fit,
    fails its checksum or has another epoch; records after the last COMMIT
    (a torn group) are left out.  O(bytes)."""
    view = memoryview(buf)
    groups: list[list[tuple[int, int, int]]] = []
    ends: list[int] = []
    cur: list[tuple[int, int, int]] = []
    pos = 0
    limit = len(buf)
    while pos + _REC.size <= limit:
        csum, length, rtype, rec_epoch = _REC.unpack_from(buf, pos)
        stop = pos + _REC.size + length
        if stop > limit or _xxh64(view[pos + 8:stop]) != csum or rec_epoch != epoch:
            break
        if rtype == REC_COMMIT:
            groups.append(cur)
            ends.append(stop)
            cur = []
        else:
            cur.append((pos, stop, rtype))
        pos = stop
    return groups, ends


def _apply(names: dict[str, int], inodes: dict[int, _Inode], rtype: int, r: _Reader,
           sb: Superblock) -> Optional[_DataCheck]:
    """Apply one record to a file table; an EXTEND with a data checksum
    returns the check to make.  Nonsense raises ``CorruptionError``."""
    bs = sb.block_size
    if rtype == REC_CREATE:
        ino = r.varint()
        name = r.name()
        r.done()
        if ino in inodes:
            raise r.fail(f"CREATE of inode {ino} that exists")
        old = names.get(name)
        if old is not None:
            del inodes[old]
        inodes[ino] = _Inode(ino, name)
        names[name] = ino
    elif rtype == REC_EXTEND:
        ino = r.varint()
        size = r.varint()
        flags = r.varint()
        if flags & ~EXTEND_HAS_CSUM:
            raise r.fail(f"unknown EXTEND flags {flags:#x}")
        data_csum = r.u64() if flags & EXTEND_HAS_CSUM else None
        count = r.varint()
        node = inodes.get(ino)
        if node is None:
            raise r.fail(f"EXTEND of unknown inode {ino}")
        first = sb.data_offset // bs
        end = sb.data_end_block
        for _ in range(count):
            start = r.varint()
            n = r.varint()
            if n == 0 or start < first or start + n > end:
                raise r.fail(f"extent [{start}, {start + n}) outside the data area")
            node.add_extent(start, n)
        r.done()
        if size < node.size or size > node.nblocks * bs:
            raise r.fail(f"EXTEND size {size} of inode {ino} impossible")
        old_size = node.size
        node.size = node.jsize = size
        node.jblocks = node.nblocks
        if data_csum is not None:
            return _DataCheck(node, old_size, size, data_csum, r.offset)
    elif rtype == REC_RENAME:
        src = r.name()
        dst = r.name()
        r.done()
        ino = names.pop(src, None)
        if ino is None:
            raise r.fail(f"RENAME of missing file {src!r}")
        old = names.get(dst)
        if old is not None and old != ino:
            del inodes[old]
        names[dst] = ino
        inodes[ino].name = dst
    elif rtype == REC_DELETE:
        name = r.name()
        r.done()
        ino = names.pop(name, None)
        if ino is None:
            raise r.fail(f"DELETE of missing file {name!r}")
        del inodes[ino]
    else:
        raise r.fail(f"unknown record type {rtype}")
    return None


def _data_ok(device: BlockDevice, check: _DataCheck) -> bool:
    """Read the bytes an EXTEND covers and compare their checksum."""
    bs = device.block_size
    node = check.node
    if check.end == check.start:
        return check.csum == _xxh64(b"")
    first = check.start // bs
    runs = node.slice(first, _blocks_for(check.end, bs))
    data = b"".join(device.read(s * bs, n * bs) for s, n in runs)
    skip = check.start - first * bs
    return _xxh64(memoryview(data)[skip:skip + check.end - check.start]) == check.csum


class _Overlay:
    """A read-only view of a device with some blocks replaced (the write-back
    buffer's images), for verifying a staged group before anything is
    written.  Provides what ``_replay`` reads: ``name``, ``block_size``,
    ``read``."""

    def __init__(self, device: BlockDevice, images: dict[int, bytes]) -> None:
        self.name = device.name
        self.block_size = device.block_size
        self._device = device
        self._images = images

    def read(self, offset: int, length: int) -> bytes:
        data = self._device.read(offset, length)
        hits = [(o, b) for o, b in self._images.items() if offset <= o < offset + length]
        if not hits:
            return data
        buf = bytearray(data)
        for o, block in hits:
            buf[o - offset:o - offset + len(block)] = block
        return bytes(buf)


def _copy_table(names: dict[str, int], inodes: dict[int, _Inode]
                ) -> tuple[dict[str, int], dict[int, _Inode]]:
    out: dict[int, _Inode] = {}
    for ino, node in inodes.items():
        c = _Inode(ino, node.name)
        c.size, c.jsize, c.jblocks, c.nblocks = node.size, node.jsize, node.jblocks, node.nblocks
        c.extents = list(node.extents)
        c.lbn = list(node.lbn)
        out[ino] = c
    return dict(names), out


def _replay(buf: bytes, epoch: int, sb: Superblock, device: BlockDevice, area_offset: int
            ) -> tuple[dict[str, int], dict[int, _Inode], int]:
    """Replay a journal area.  Returns (names, inodes, end of the replayed
    groups).  A torn tail stops replay.  The last commit group's data
    checksums are verified against the device: its single flush may not
    have completed, and then the group is dropped (every earlier group is
    proven durable by the group written after its flush).  A checksummed
    record that makes no sense raises ``CorruptionError``.
    O(bytes + records + data of the last group)."""
    dev = device.name
    names: dict[str, int] = {}
    inodes: dict[int, _Inode] = {}
    groups, ends = _scan(buf, epoch)
    view = memoryview(buf)

    def run(group: list[tuple[int, int, int]]) -> list[_DataCheck]:
        checks = []
        for pos, stop, rtype in group:
            r = _Reader(view[pos + _REC.size:stop], dev, area_offset + pos)
            c = _apply(names, inodes, rtype, r, sb)
            if c is not None:
                checks.append(c)
        return checks

    for group in groups[:-1]:
        run(group)
    if not groups:
        return names, inodes, 0
    saved = _copy_table(names, inodes)
    checks = run(groups[-1])
    if all(_data_ok(device, c) for c in checks):
        return names, inodes, ends[-1]
    names, inodes = saved
    return names, inodes, ends[-2] if len(ends) > 1 else 0


def _overlaps(runs: list[tuple[int, int, str]]) -> list[str]:
    """Describe every overlap among (start, n, owner) runs.  O(n log n)."""
    problems: list[str] = []
    runs = sorted(runs)
    prev_end = -1
    prev_owner = ""
    for start, n, owner in runs:
        if start < prev_end:
            problems.append(f"block {start} belongs to both {prev_owner} and {owner}")
        if start + n > prev_end:
            prev_end = start + n
            prev_owner = owner
    return problems


# ---------------------------------------------------------------------------
# Reports and handles
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FsckReport:
    """What ``BlockFS.check`` found (only returned when all is consistent)."""

    files: int
    data_blocks: int
    used_blocks: int
    reserved_blocks: int  # allocated beyond a file's size (preallocation)
    free_blocks: int
    free_extents: int
    journal_bytes: int
    journal_capacity: int


class _BlockHandle:
    """What an open BlockFS file handle (writer or reader) holds: the file
    system, the inode, the name it was opened under, and whether it is
    closed.  ``close`` is idempotent; the first one hands the inode back to
    the file system through ``_release_node`` unless the file system is
    already closed.  Requires: ``_release_node`` runs under ``fs._mu``."""

    def __init__(self, fs: "BlockFS", node: _Inode) -> None:
        self._fs = fs
        self._node = node
        self.name = node.name
        self._closed = False

    def _release_node(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        with self._fs._mu:
            if self._closed:
                return
            self._closed = True
            if not self._fs._closed:
                self._release_node()


class _BlockWritable(_BlockHandle, WritableFile):
    @property
    def size(self) -> int:
        return self._node.size

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"file {self._node.name} of {self._fs.name} is closed")
        self._fs._check_open()

    def append(self, data: BytesLike) -> None:
        check_data(data)
        with self._fs._mu:
            self._check_open()
            self._fs._append(self._node, data)

    def flush(self) -> None:
        with self._fs._mu:
            self._check_open()
            self._fs._flush_file(self._node)

    def sync(self) -> None:
        with self._fs._mu:
            self._check_open()
            self._fs._sync_file(self._node)

    def _release_node(self) -> None:
        self._fs._close_writer(self._node)


class _BlockRandomAccess(_BlockHandle, RandomAccessFile):
    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"file {self.name} of {self._fs.name} is closed")
        self._fs._check_open()

    @property
    def size(self) -> int:
        self._check_open()
        return self._node.size

    def read(self, offset: int, length: int) -> bytes:
        check_int(offset, "offset")
        check_int(length, "length")
        fs = self._fs
        bs = fs._bs
        with fs._mu:
            self._check_open()
            node = self._node
            size = node.size
            end = min(size, offset + length)
            if offset >= end:
                return b""
            first = offset // bs
            last = _blocks_for(end, bs)  # exclusive
            tail: Optional[bytes] = None
            if size % bs and node.tail is not None and last > size // bs:
                tail = bytes(node.tail)
                last -= 1
            runs = node.slice(first, last)
        dev = fs.device
        if len(runs) == 1 and tail is None:
            buf = dev.read(runs[0][0] * bs, runs[0][1] * bs)
        else:
            parts = [dev.read(start * bs, n * bs) for start, n in runs]
            if tail is not None:
                parts.append(tail)
            buf = b"".join(parts)
        skip = offset - first * bs
        want = end - offset
        if skip == 0 and len(buf) == want:
            return buf
        return buf[skip:skip + want]

    def _release_node(self) -> None:
        self._fs._unref(self._node)


class _BlockLock(FileLock):
    def __init__(self, fs: "BlockFS", name: str) -> None:
        self._fs = fs
        self.name = name
        self._held = True

    def release(self) -> None:
        with self._fs._mu:
            if self._held:
                self._held = False
                self._fs._locks.discard(self.name)


# ---------------------------------------------------------------------------
# BlockFS
# ---------------------------------------------------------------------------


class BlockFS(FileSystem):
    """Files inside a block device (see the module docstring).

    ``BlockFS(device, create=False)`` mounts the BlockFS on ``device``;
    with ``create=True`` a device holding no BlockFS is formatted first.
    ``BlockFS.format(device)`` always formats; ``BlockFS.mount(device)``
    never does.  Errors: ``UnsupportedFormatError`` naming the device when
    it holds no BlockFS or a newer format version; ``CorruptionError`` for
    a damaged superblock or journal; ``LockError`` if this device object is
    already mounted in this process.

    ``writeback_dir``: where flushes stage their state (module docstring,
    ``blockdev.writeback``): "auto" (the default: ``$BLOCKFS_WRITEBACK_DIR``,
    empty meaning none, else ``/dev/shm`` when writable), a directory, or
    None (flushes write to the device: two device writes each).

    Discard: freed blocks (deleted files, trimmed preallocation) are queued
    and discarded in batches: when the queue exceeds ``discard_batch`` bytes
    (default: half the data area, at most 256 MiB) and on ``trim()``.
    Allocation reuses queued blocks first, and a reused block is never
    discarded (a discard of a sparse image file would punch a hole that the
    next write must fill again).  The queue lives in memory only: blocks
    still queued at ``close`` or a crash are simply not discarded (discard
    is a hint).

    The caller keeps ownership of the device: ``close`` does not close it.
    Thread safe: one lock guards metadata and the write path; device reads
    happen outside it.
    """

    def __init__(self, device: BlockDevice, create: bool = False, *,
                 journal_blocks: Optional[int] = None, discard_batch: Optional[int] = None,
                 writeback_dir: Union[str, "os.PathLike[str]", None] = AUTO) -> None:
        if not isinstance(device, BlockDevice):
            raise ArgumentTypeError(f"device must be a blockdev.BlockDevice, got {type(device).__name__}")
        if not isinstance(create, bool):
            raise ArgumentTypeError(f"create must be a bool, got {type(create).__name__}")
        self._attach(device, "if_blank" if create else "never", journal_blocks, discard_batch,
                     writeback_dir)

    # -- construction -------------------------------------------------------
    @classmethod
    def format(cls, device: BlockDevice, *, journal_blocks: Optional[int] = None,
               discard_batch: Optional[int] = None,
               writeback_dir: Union[str, "os.PathLike[str]", None] = AUTO) -> "BlockFS":
        """Write an empty BlockFS over ``device`` (destroying its contents)
        and mount it.  ``journal_blocks`` sizes each journal area (default:
        1/64 of the device, at least 16 blocks, at most 32 MiB);
        ``discard_batch`` as for the constructor."""
        if not isinstance(device, BlockDevice):
            raise ArgumentTypeError(f"device must be a blockdev.BlockDevice, got {type(device).__name__}")
        self = cls.__new__(cls)
        self._attach(device, "always", journal_blocks, discard_batch, writeback_dir)
        return self

    def _attach(self, device: BlockDevice, format_mode: str,
                journal_blocks: Optional[int], discard_batch: Optional[int],
                writeback_dir: Union[str, "os.PathLike[str]", None]) -> None:
        """Validate the sizes, claim ``device`` for this process, format it
        (``format_mode``: "always", "if_blank" = no BlockFS magic yet, or
        "never") and mount it.  On failure the claim is released.

        Requires: ``device`` is a BlockDevice.
        """
        if journal_blocks is not None:
            check_int(journal_blocks, "journal_blocks", MIN_JOURNAL_BLOCKS)
        if discard_batch is not None:
            check_int(discard_batch, "discard_batch")
        self._wb_auto = writeback_dir == AUTO
        if writeback_dir == AUTO:
            writeback_dir = default_dir()
        elif writeback_dir is not None and not isinstance(writeback_dir, (str, os.PathLike)):
            raise ArgumentTypeError(
                f"writeback_dir must be a path, None or 'auto', got {type(writeback_dir).__name__}")
        self.device = device
        self.name = f"blockfs:{device.name}"
        self._mu = threading.RLock()
        self._closed = True
        self._discard_batch_arg = discard_batch
        self._wb_dir = writeback_dir
        self._wb: Optional[WriteBackBuffer] = None
        self._register()
        try:
            if format_mode == "always" or (format_mode == "if_blank" and not self._has_magic()):
                self._format(journal_blocks)
            self._mount()
        except BaseException:
            if self._wb is not None:
                self._wb.close()
            self._unregister()
            raise
        self._closed = False

    @classmethod
    def mount(cls, device: BlockDevice, *,
              writeback_dir: Union[str, "os.PathLike[str]", None] = AUTO) -> "BlockFS":
        """Mount the BlockFS on ``device``; never formats."""
        return cls(device, create=False, writeback_dir=writeback_dir)

    def _register(self) -> None:
        with _MOUNTS_LOCK:
            ref = _MOUNTS.get(self.device)
            other = ref() if ref is not None else None
            if other is not None and not other._closed:
                raise LockError(f"device {self.device.name} is already mounted by {other!r}")
            _MOUNTS[self.device] = weakref.ref(self)

    def _unregister(self) -> None:
        with _MOUNTS_LOCK:
            ref = _MOUNTS.get(self.device)
            if ref is not None and ref() is self:
                del _MOUNTS[self.device]

    def _has_magic(self) -> bool:
        bs = self.device.block_size
        if self.device.size < 2 * bs:
            return False
        raw = self.device.read(0, 2 * bs)
        return raw[:8] == MAGIC or raw[bs:bs + 8] == MAGIC

    def _format(self, journal_blocks: Optional[int]) -> None:
        dev = self.device
        bs = dev.block_size
        if bs < MIN_BLOCK_SIZE:
            raise InvalidArgumentError(f"BlockFS needs a block size >= {MIN_BLOCK_SIZE}, {dev.name} has {bs}")
        total = dev.size // bs
        if journal_blocks is None:
            journal_blocks = max(16, min(total // 64, MAX_JOURNAL_BYTES // bs))
        data_blocks = total - 2 - 2 * journal_blocks
        if data_blocks < 1:
            raise InvalidArgumentError(
                f"device {dev.name} ({dev.size} bytes) is too small for BlockFS with "
                f"{journal_blocks}-block journal areas")
        area_len = journal_blocks * bs
        sb = Superblock(int(FORMAT_VERSION), bs, dev.size, uuid.uuid4().bytes, 1, 0,
                        2 * bs, 2 * bs + area_len, area_len, 2 * bs + 2 * area_len, data_blocks)
        dev.write(0, bytes(bs))  # invalidate slot 0 (an older BlockFS's superblock)
        dev.write(sb.area0_offset, bytes(bs))
        dev.write(bs * (sb.sequence % 2), sb.encode())
        dev.flush()
        dev.discard(sb.data_offset, data_blocks * bs)

    def _mount(self) -> None:
        dev = self.device
        bs = dev.block_size
        if dev.size < 2 * bs or bs < MIN_BLOCK_SIZE:
            raise UnsupportedFormatError("no BlockFS superblock (device too small)", dev.name)
        raw = dev.read(0, 2 * bs)
        found: list[Superblock] = []
        errors: list[Exception] = []
        magic_seen = False
        for slot in (0, 1):
            try:
                sb = _decode_superblock(raw[slot * bs:(slot + 1) * bs], dev.name, slot)
            except CorruptionError as exc:
                magic_seen = True
                errors.append(exc)
                continue
            if sb is not None:
                magic_seen = True
                found.append(sb)
        if not magic_seen:
            raise UnsupportedFormatError("no BlockFS superblock (bad magic)", dev.name)
        if not found:
            raise errors[0]
        sb = max(found, key=lambda s: s.sequence)
        sb.validate(dev)
        self._sb = sb
        self._bs = bs
        area = dev.read(sb.active_offset, sb.area_length)
        names, inodes, end = _replay(area, sb.sequence, sb, dev, sb.active_offset)
        if self._wb_dir is not None:
            self._wb = self._open_writeback(sb)
            if self._wb is not None:
                staged = self._apply_staged(area, end)
                if staged is not None:
                    names, inodes = staged
        first = sb.data_offset // bs
        used = [(s, n, f"file {node.name!r}") for node in inodes.values() for s, n in node.extents]
        problems = _overlaps(used)
        if problems:
            raise CorruptionError("BlockFS journal: " + "; ".join(problems[:5]), dev.name, sb.active_offset)
        alloc = _Allocator(first, sb.data_end_block)
        cursor = first
        for s, n, _ in sorted(used):
            if s > cursor:
                alloc.free(cursor, s - cursor)
            cursor = max(cursor, s + n)
        if cursor < sb.data_end_block:
            alloc.free(cursor, sb.data_end_block - cursor)
        self._alloc = alloc
        self._to_discard = _Allocator(first, sb.data_end_block)  # freed, not yet discarded
        batch = self._discard_batch_arg
        self._discard_batch = batch if batch is not None else min(_DISCARD_BATCH_MAX,
                                                                   sb.data_blocks * bs // 2)
        self._names = names
        self._inodes = inodes
        self._orphans: dict[int, _Inode] = {}  # unlinked inodes with open handles
        self._next_ino = max(inodes, default=0) + 1
        self._locks: set[str] = set()
        self._pending = bytearray()
        self._pending_free: list[tuple[int, int]] = []
        self._defer_free = False
        self._jpos = 0
        self._jtail = b""
        self._prov: dict[int, _Inode] = {}  # files flushed beyond their journaled size
        self._commit_rec: tuple[int, bytes] = (-1, b"")  # (epoch, its COMMIT record)
        # Every mount gets its own epoch: a copy of the device mounted on
        # the same host can never take this mount's write-back buffer.
        self._compact(1 + 2 * secrets.randbelow(_MOUNT_JUMP))

    def _open_writeback(self, sb: Superblock) -> Optional[WriteBackBuffer]:
        """Open this file system's write-back buffer in ``_wb_dir``; None
        if another mount holds it.  An unusable directory raises
        ``StorageIOError`` naming it when it was given explicitly; the
        automatic default falls back to no buffer."""
        try:
            return WriteBackBuffer.open(self._wb_dir, sb.uuid)
        except OSError as exc:
            if self._wb_auto:
                return None
            raise StorageIOError(f"BlockFS write-back buffer in {self._wb_dir!s}: "
                                 f"{exc.strerror or exc}", os.fspath(self._wb_dir)) from exc

    def _apply_staged(self, area: bytes, end: int
                      ) -> Optional[tuple[dict[str, int], dict[int, _Inode]]]:
        """The file table with the write-back buffer's staged group applied,
        or None.  The group applies only if it continues the journal
        exactly at ``end`` (same UUID and sequence -- every mount has its
        own sequence -- and nothing committed after it), and only if its
        data checksums verify against the device with its block images laid
        over it; then, and only then, the images are written to the device
        (each must lie in a block of a file of the new table).  The journal
        area is not written: the mount's compaction journals the result
        (and flushes the images), so no record a crash left past ``end``
        can ever follow the group, and a crash before the compaction finds
        the buffer unchanged.  O(group + files x extents)."""
        assert self._wb is not None
        staged = self._wb.load()
        sb = self._sb
        if (staged is None or staged.sequence != sb.sequence or staged.jpos != end
                or end + len(staged.records) > sb.area_length):
            return None
        bs = self._bs
        dev = self.device
        first, stop = sb.data_offset, sb.data_offset + sb.data_blocks * bs
        images: dict[int, bytes] = {}
        for off, data in staged.images:
            if off % bs or len(data) > bs or not first <= off < stop:
                raise CorruptionError(f"write-back buffer {self._wb.path}: block image at "
                                      f"{off} ({len(data)} bytes) outside the data area",
                                      dev.name, off)
            images[off] = data + bytes(bs - len(data))
        stop_rec = end + len(staged.records)
        staged_area = area[:end] + staged.records + bytes(len(area) - stop_rec)
        names, inodes, new_end = _replay(staged_area, sb.sequence, sb, _Overlay(dev, images),
                                         sb.active_offset)
        if new_end != stop_rec:
            return None  # its data is not all there: the group is dropped
        owned = [(s * bs, (s + n) * bs) for node in inodes.values() for s, n in node.extents]
        for off in images:
            if not any(lo <= off < hi for lo, hi in owned):
                raise CorruptionError(f"write-back buffer {self._wb.path}: block image at "
                                      f"{off} belongs to no file", dev.name, off)
        for off, block in images.items():
            dev.write(off, block)
        return names, inodes

    # -- journal ------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"{self.name} is closed")

    def _make_room(self, need: int) -> bool:
        """Make room for ``need`` more journal bytes after the queued ones,
        compacting the journal if the area is full.  Returns True if it
        compacted (the file table, provisional sizes included, is then the
        snapshot and nothing is queued).  ``NoSpaceError`` if the file table
        alone leaves no room."""
        if self._jpos + len(self._pending) + need <= self._sb.area_length:
            return False
        self._compact()
        if self._jpos + need > self._sb.area_length:
            raise NoSpaceError(
                f"BlockFS metadata journal full ({self._jpos} of {self._sb.area_length} bytes "
                f"used by the file table)", self.device.name)
        return True

    def _log(self, rtype: int, payload: bytearray) -> None:
        """Queue a record (compacting first if the area is full).  The
        caller applies the record's effect only after this returns."""
        self._make_room(_REC.size + len(payload) + _COMMIT_SIZE)
        self._pending += encode_record(rtype, self._sb.sequence, payload)

    def _commit(self) -> None:
        """Write the queued records, the EXTEND of every provisionally
        flushed file and a COMMIT after the journal tail, then flush once
        (which also makes every data write before it durable).  The group
        overwrites the provisional group, if any: both start at the tail."""
        for node in list(self._prov.values()):
            self._write_tail(node)
            self._log_extend(node)  # may compact, which journals every provisional size
        self._prov.clear()
        if not self._pending:
            return
        bs = self._bs
        start_block = self._jpos // bs
        group = self._pending + self._commit_record()
        buf = self._jtail + group
        pad = -len(buf) % bs
        self.device.write(self._sb.active_offset + start_block * bs, buf + bytes(pad))
        self.device.flush()
        self._jpos += len(group)
        keep = len(buf) % bs
        self._jtail = bytes(buf[len(buf) - keep:]) if keep else b""
        self._pending = bytearray()
        self._release_pending()

    def _provisional_records(self) -> bytearray:
        """The queued records, an EXTEND (with data checksum) to the live
        size of every file in ``_prov``, and a COMMIT."""
        seq = self._sb.sequence
        recs = bytearray(self._pending)
        for node in self._prov.values():
            recs += encode_record(REC_EXTEND, seq, self._extend_payload(node))
        recs += self._commit_record()
        return recs

    def _extend_payload(self, node: _Inode) -> bytearray:
        """EXTEND payload taking ``node`` from its journaled to its live
        size: the extents in between and the checksum of the bytes."""
        exts = node.slice(node.jblocks, _blocks_for(node.size, self._bs))
        csum = node.hasher.intdigest() if node.hasher is not None else _xxh64(b"")
        return _payload_extend(node.ino, node.size, exts, csum)

    def _commit_record(self) -> bytes:
        """The COMMIT record of the active epoch (encoded once per epoch)."""
        seq = self._sb.sequence
        if self._commit_rec[0] != seq:
            self._commit_rec = (seq, encode_record(REC_COMMIT, seq, b""))
        return self._commit_rec[1]

    def _write_provisional(self) -> bool:
        """Write the *provisional group* -- the queued records, an EXTEND to
        the live size of every file in ``_prov`` (with the checksum of its
        bytes past the journaled size) and a COMMIT -- at the journal tail,
        without a device flush and without advancing the tail: the next
        provisional group or commit overwrites it.  It must fit in the rest
        of the tail's journal block, so that its single-block write is
        atomic and every later write at the tail rewrites that whole block
        (no stale provisional bytes survive after a later group).  Returns
        False, writing nothing, if it does not fit.

        Requires: the tail block of every file in ``_prov`` is written."""
        bs = self._bs
        recs = self._provisional_records()
        if len(recs) > bs - self._jpos % bs or self._jpos + len(recs) > self._sb.area_length:
            return False
        buf = self._jtail + recs
        self.device.write(self._sb.active_offset + self._jpos // bs * bs, buf + bytes(bs - len(buf)))
        return True

    def _snapshot(self, epoch: int) -> bytearray:
        """The journaled file table as CREATE + EXTEND records; a file in
        ``_prov`` enters with its live size (its bytes are on the device
        and the snapshot is flushed before it is used)."""
        out = bytearray()
        bs = self._bs
        for name, ino in sorted(self._names.items(), key=lambda kv: kv[1]):
            node = self._inodes[ino]
            out += encode_record(REC_CREATE, epoch, _payload_create(ino, name))
            if ino in self._prov:
                size, blocks = node.size, _blocks_for(node.size, bs)
            else:
                size, blocks = node.jsize, node.jblocks
            if blocks or size:
                exts = node.slice(0, blocks)
                out += encode_record(REC_EXTEND, epoch, _payload_extend(ino, size, exts))
        out += encode_record(REC_COMMIT, epoch, b"")
        return out

    def _compact(self, step: int = 1) -> None:
        """Write the file table to the other area and switch to it through
        the superblock ``sequence + step`` (``step`` odd, so it goes to the
        other slot).  Crash safe at every step (module docstring).
        Provisionally flushed files are journaled at their live size."""
        sb = self._sb
        bs = self._bs
        for node in self._prov.values():
            self._write_tail(node)
        new_sb = replace(sb, sequence=sb.sequence + step, active_area=1 - sb.active_area)
        snap = self._snapshot(new_sb.sequence)
        if len(snap) > sb.area_length:
            raise NoSpaceError(
                f"BlockFS metadata journal full: the file table needs {len(snap)} bytes, "
                f"an area holds {sb.area_length}", self.device.name)
        pad = -len(snap) % bs
        self.device.write(new_sb.active_offset, bytes(snap) + bytes(pad))
        self.device.flush()
        self.device.write(bs * (new_sb.sequence % 2), new_sb.encode())
        self.device.flush()
        self._sb = new_sb
        self._jpos = len(snap)
        keep = len(snap) % bs
        self._jtail = bytes(snap[len(snap) - keep:]) if keep else b""
        self._pending = bytearray()
        for node in self._prov.values():
            node.jsize = node.size
            node.jblocks = _blocks_for(node.size, bs)
            node.hasher = None
        self._prov.clear()
        self._release_pending()

    def _release_pending(self) -> None:
        frees, self._pending_free = self._pending_free, []
        self._free_now(frees)

    def _free_now(self, runs: list[tuple[int, int]]) -> None:
        """Free blocks now and queue their discard.  Discards are issued in
        batches (``trim``): freed blocks that a new file reuses before then
        are never discarded, which spares a device like a sparse image file
        from unmapping and remapping them."""
        for start, n in runs:
            self._alloc.free(start, n)
            self._to_discard.free(start, n)
        if self._to_discard.free_blocks * self._bs >= self._discard_batch:
            self._trim()

    def _trim(self) -> int:
        bs = self._bs
        runs = self._to_discard.extents()
        done = 0
        for start, n in runs:
            self.device.discard(start * bs, n * bs)
            self._to_discard.remove(start, n)
            done += n * bs
        return done

    def trim(self) -> int:
        """Issue the queued discards of freed blocks now (like ``fstrim``);
        returns the bytes discarded.  Also done whenever the queue exceeds
        ``discard_batch`` bytes."""
        with self._mu:
            self._check_open()
            return self._trim()

    def _release(self, runs: list[tuple[int, int]]) -> None:
        """Free blocks, waiting for the queued records (which may be what
        frees them) to become durable first."""
        if self._pending or self._defer_free:
            self._pending_free.extend(runs)
        else:
            self._free_now(runs)

    def _unlink(self, node: _Inode) -> None:
        """Drop an inode from the namespace (its record is already logged)."""
        node.unlinked = True
        del self._inodes[node.ino]
        self._prov.pop(node.ino, None)
        if node.refs:
            self._orphans[node.ino] = node
        else:
            self._release(node.slice(0, node.nblocks))
            node.truncate_blocks(0)

    def _unref(self, node: _Inode) -> None:
        node.refs -= 1
        if node.refs == 0 and node.unlinked:
            self._orphans.pop(node.ino, None)
            self._release(node.slice(0, node.nblocks))
            node.truncate_blocks(0)

    # -- write path -------------------------------------------------------
    def _write_blocks(self, node: _Inode, first_lbn: int, data: BytesLike) -> None:
        bs = self._bs
        runs = node.slice(first_lbn, first_lbn + len(data) // bs)
        if len(runs) == 1 and isinstance(data, bytes):
            self.device.write(runs[0][0] * bs, data)  # no copy of the caller's bytes
            return
        view = memoryview(data)
        pos = 0
        for start, n in runs:
            self.device.write(start * bs, view[pos:pos + n * bs])
            pos += n * bs

    def _append(self, node: _Inode, data: BytesLike) -> None:
        bs = self._bs
        view = memoryview(data).cast("B")
        length = len(view)
        if length == 0:
            return
        new_size = node.size + length
        need = _blocks_for(new_size, bs) - node.nblocks
        if need > 0:
            chunk = min(max(node.nblocks, _CHUNK_MIN_BYTES // bs), max(1, _CHUNK_MAX_BYTES // bs))
            hint = node.extents[-1][0] + node.extents[-1][1] if node.extents else None
            queue = self._to_discard if self._to_discard.free_blocks else None
            for start, n in self._alloc.allocate(max(need, chunk), need, hint, queue):
                if queue is not None:
                    queue.remove(start, n)  # rewritten soon: no discard needed
                node.add_extent(start, n)
        tail = node.tail if node.tail is not None else bytearray()
        buf: BytesLike = bytes(tail) + bytes(view) if tail else view
        full = len(buf) // bs * bs
        if not tail and full == length and isinstance(data, bytes):
            self._write_blocks(node, node.size // bs, data)  # aligned: write the caller's bytes
        elif full:
            self._write_blocks(node, node.size // bs, memoryview(buf)[:full])
        node.tail = bytearray(memoryview(buf)[full:])
        node.tail_dirty = bool(node.tail)
        if node.hasher is None:
            node.hasher = xxhash.xxh64()
        node.hasher.update(view)
        node.size = new_size

    def _write_tail(self, node: _Inode) -> None:
        if node.tail_dirty and node.tail:
            bs = self._bs
            block = bytes(node.tail) + bytes(bs - len(node.tail))
            self._write_blocks(node, node.size // bs, block)
        node.tail_dirty = False

    def _log_extend(self, node: _Inode) -> None:
        """Queue EXTEND for ``node``'s appended bytes (written to the device,
        not necessarily flushed: the record carries their checksum)."""
        if node.unlinked or (node.size == node.jsize and _blocks_for(node.size, self._bs) == node.jblocks):
            return
        blocks = _blocks_for(node.size, self._bs)
        payload = self._extend_payload(node)
        if self._make_room(_REC.size + len(payload) + _COMMIT_SIZE) and \
                node.size == node.jsize and blocks == node.jblocks:
            return  # the compaction's snapshot journaled it (a provisional file)
        self._pending += encode_record(REC_EXTEND, self._sb.sequence, payload)
        node.jsize = node.size
        node.jblocks = blocks
        node.hasher = None

    def _sync_file(self, node: _Inode) -> None:
        self._write_tail(node)
        self._log_extend(node)
        if self._pending or self._prov:
            self._commit()  # one flush: the data and the record
        else:
            self.device.flush()

    def _flush_file(self, node: _Inode) -> None:
        """Make ``node``'s appended bytes survive the death of this process
        (not a machine crash).  With a write-back buffer: store the staged
        group and the tail block images there (no device I/O); when they
        do not fit, commit (one flush).  Without one: write the tail
        blocks, then the provisional group (``_write_provisional``) -- two
        device writes, no flush; when it does not fit, commit.  The two
        paths never mix at one journal end: a provisional group on the
        device would make a later staged group look stale."""
        if node.unlinked or node.size == node.jsize or (node.ino in self._prov and node.psize == node.size):
            return
        self._prov[node.ino] = node
        if self._wb is not None:
            done = self._stage()
        else:
            for n in self._prov.values():
                self._write_tail(n)
            done = self._write_provisional()
        if not done:
            self._commit()
            return
        for n in self._prov.values():
            n.psize = n.size

    def _stage(self) -> bool:
        """Store the staged group of ``_prov`` in the write-back buffer.
        False if it does not fit the journal area or a buffer slot.  If the
        buffer cannot be written, commit (which journals everything staged
        before, so the buffer is no longer needed), drop the buffer for
        this mount (the device path takes over) and return True."""
        assert self._wb is not None
        bs = self._bs
        recs = self._provisional_records()
        if self._jpos + len(recs) > self._sb.area_length:
            return False
        images = []
        for n in self._prov.values():
            if n.tail_dirty and n.tail:
                lbn = n.size // bs
                phys = n.slice(lbn, lbn + 1)[0][0]
                images.append((phys * bs, n.tail))  # the block's bytes; the rest is zero
        try:
            if not self._wb.store(self._sb.sequence, self._jpos, recs, images):
                return False
        except OSError:
            wb, self._wb = self._wb, None
            self._commit()
            wb.close(remove=True)
        return True

    def _close_writer(self, node: _Inode) -> None:
        self._write_tail(node)
        node.writer = False
        keep = _blocks_for(node.size, self._bs)
        if node.nblocks > keep:
            self._release(node.truncate_blocks(keep))
        self._unref(node)

    # -- FileSystem ---------------------------------------------------------
    def _node(self, name: str) -> _Inode:
        ino = self._names.get(name)
        if ino is None:
            raise NotFoundError(f"no such file: {name} in {self.name}")
        return self._inodes[ino]

    def create(self, name: str) -> WritableFile:
        check_name(name)
        with self._mu:
            self._check_open()
            ino = self._next_ino
            self._log(REC_CREATE, _payload_create(ino, name))
            self._next_ino += 1
            old = self._names.get(name)
            if old is not None:
                self._unlink(self._inodes[old])
            node = _Inode(ino, name)
            node.tail = bytearray()
            node.refs = 1
            node.writer = True
            self._inodes[ino] = node
            self._names[name] = ino
            if old is not None:
                self._commit()  # a replacement is durable at once (blockdev.fs)
            return _BlockWritable(self, node)

    def open(self, name: str) -> RandomAccessFile:
        check_name(name)
        with self._mu:
            self._check_open()
            node = self._node(name)
            node.refs += 1
            return _BlockRandomAccess(self, node)

    def exists(self, name: str) -> bool:
        check_name(name)
        with self._mu:
            self._check_open()
            return name in self._names

    def size(self, name: str) -> int:
        check_name(name)
        with self._mu:
            self._check_open()
            return self._node(name).size

    def list(self) -> list[str]:
        with self._mu:
            self._check_open()
            return sorted(self._names)

    def rename(self, src: str, dst: str) -> None:
        check_name(src, "src")
        check_name(dst, "dst")
        with self._mu:
            self._check_open()
            node = self._node(src)
            if src == dst:
                self._commit()  # the file's existence is durable, as a rename's would be
                return
            self._log(REC_RENAME, _payload_rename(src, dst))
            old = self._names.get(dst)
            del self._names[src]
            if old is not None:
                self._unlink(self._inodes[old])
            self._names[dst] = node.ino
            node.name = dst
            self._commit()

    def delete(self, name: str) -> None:
        check_name(name)
        with self._mu:
            self._check_open()
            node = self._node(name)
            try:
                self._log(REC_DELETE, _payload_delete(name))
            except NoSpaceError:
                # The file table alone fills a journal area: drop the file
                # and write the (smaller) table instead of a record.
                del self._names[name]
                self._defer_free = True
                try:
                    self._unlink(node)
                finally:
                    self._defer_free = False
                self._compact()
                return
            del self._names[name]
            self._unlink(node)
            self._commit()

    def lock(self, name: str) -> FileLock:
        check_name(name)
        with self._mu:
            self._check_open()
            if name in self._locks:
                raise LockError(f"lock {name} of {self.name} is held by another handle")
            if name not in self._names:
                self.create(name).close()
                self._commit()
            self._locks.add(name)
            return _BlockLock(self, name)

    def link_or_copy(self, name: str, dest: FileSystem, dest_name: str) -> None:
        check_name(name)
        check_name(dest_name, "dest_name")
        if not isinstance(dest, FileSystem):
            raise ArgumentTypeError(f"dest must be a FileSystem, got {type(dest).__name__}")
        self._check_open()
        if dest is self and name == dest_name:
            self.size(name)  # NotFoundError if absent
            return
        copy_file(self, name, dest, dest_name)

    def sync_dir(self) -> None:
        with self._mu:
            self._check_open()
            self._commit()

    def close(self) -> None:
        """Clean unmount: persist every file's appended bytes and sizes
        (open writers included), then release the device (not closed)."""
        with self._mu:
            if self._closed:
                return
            try:
                live = [n for n in self._inodes.values() if n.size != n.jsize or n.tail_dirty]
                for node in live:
                    self._write_tail(node)
                for node in live:
                    self._log_extend(node)
                self._commit()
                if self._wb is not None:
                    self._wb.close(remove=True)  # nothing is staged any more
            finally:
                if self._wb is not None:
                    self._wb.close()
                self._closed = True
                self._unregister()

    def _abandon(self, power_loss: bool = False) -> None:
        """Drop this mount without writing anything, as a crash would (for
        crash tests: the device keeps whatever was written).  A process
        death leaves the write-back buffer for the next mount;
        ``power_loss=True`` deletes it (host memory is gone too)."""
        with self._mu:
            if self._wb is not None:
                self._wb.close(remove=power_loss)
            self._closed = True
            self._unregister()

    # -- inspection ---------------------------------------------------------
    @property
    def superblock(self) -> Superblock:
        """The superblock in force."""
        return self._sb

    def check(self) -> FsckReport:
        """fsck: commit queued records, then verify that no two files share
        a block, that the allocator's free space is exactly the complement
        of the blocks files hold, that sizes lie within extents, and that
        replaying the on-device journal yields the in-memory file table.

        Raises ``CorruptionError`` (naming the device) listing the problems.
        O(files * extents + journal bytes).
        """
        with self._mu:
            self._check_open()
            self._commit()
            sb = self._sb
            bs = self._bs
            problems: list[str] = []
            runs: list[tuple[int, int, str]] = []
            reserved = 0
            for node in list(self._inodes.values()) + list(self._orphans.values()):
                owner = f"file {node.name!r}" + (" (deleted)" if node.unlinked else "")
                try:
                    node._check(bs)
                except AssertionError as exc:
                    problems.append(f"{owner}: {exc}")
                for s, n in node.extents:
                    if s < sb.data_offset // bs or s + n > sb.data_end_block:
                        problems.append(f"{owner}: extent [{s}, {s + n}) outside the data area")
                    runs.append((s, n, owner))
                reserved += node.nblocks - _blocks_for(node.size, bs)
            for s, n in self._alloc.extents():
                runs.append((s, n, "the free list"))
            for s, n in self._pending_free:
                runs.append((s, n, "the pending-free list"))
            problems += _overlaps(runs)
            covered = sum(n for s, n, _ in runs)
            if not problems and covered != sb.data_blocks:
                problems.append(f"{sb.data_blocks - covered} data blocks are neither used nor free")
            try:
                self._alloc._check()
                self._to_discard._check()
            except AssertionError as exc:
                problems.append(f"allocator: {exc}")
            if not problems:
                free_set = _Allocator(self._alloc.first, self._alloc.end)
                for s0, n0 in self._alloc.extents():
                    free_set.free(s0, n0)
                for s0, n0 in self._to_discard.extents():
                    if free_set.remove(s0, n0) != n0:
                        problems.append(f"blocks [{s0}, {s0 + n0}) queued for discard but not free")
            for name, ino in self._names.items():
                if self._inodes.get(ino) is None or self._inodes[ino].name != name:
                    problems.append(f"name {name!r} points to a missing inode {ino}")
            if not problems:
                area = self.device.read(sb.active_offset, sb.area_length)
                try:
                    names, inodes, end = _replay(area, sb.sequence, sb, self.device, sb.active_offset)
                except CorruptionError as exc:
                    problems.append(f"journal replay: {exc}")
                else:
                    if end != self._jpos:
                        problems.append(f"journal replay ends at {end}, expected {self._jpos}")
                    if names != self._names:
                        problems.append("journal namespace differs from memory")
                    for ino, disk in inodes.items():
                        mem = self._inodes.get(ino)
                        if mem is None:
                            continue
                        if disk.size != mem.jsize or \
                                _merge(disk.extents) != _merge(mem.slice(0, mem.jblocks)):
                            problems.append(f"file {mem.name!r}: journal says size {disk.size} "
                                            f"extents {disk.extents}, memory {mem.jsize} "
                                            f"{mem.slice(0, mem.jblocks)}")
            if problems:
                raise CorruptionError("BlockFS check failed: " + "; ".join(problems[:10]),
                                      self.device.name)
            used = sum(node.nblocks for node in self._inodes.values()) + \
                sum(node.nblocks for node in self._orphans.values())
            return FsckReport(
                files=len(self._names), data_blocks=sb.data_blocks, used_blocks=used - reserved,
                reserved_blocks=reserved, free_blocks=self._alloc.free_blocks,
                free_extents=len(self._alloc.extents()), journal_bytes=self._jpos,
                journal_capacity=sb.area_length)

    def _check(self) -> None:
        """Assert the invariants (``check`` reports them as errors)."""
        try:
            self.check()
        except CorruptionError as exc:
            raise AssertionError(str(exc)) from exc


def _merge(runs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, n in runs:
        if out and out[-1][0] + out[-1][1] == s:
            out[-1] = (out[-1][0], out[-1][1] + n)
        else:
            out.append((s, n))
    return out

