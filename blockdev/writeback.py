"""The BlockFS write-back buffer: flushed, unsynced state in host memory.

Design.  ``WritableFile.flush`` promises that the bytes survive the death of
the process (not of the machine).  On a directory the OS page cache keeps
that promise for free.  BlockFS has no page cache: the partial last block of
a file and the journal record that makes its new size reachable live in the
process until ``sync``.  Writing both to the device on every flush costs two
device writes per flush, and on a network disk a write costs a millisecond.

The write-back buffer is a small file in host memory (``/dev/shm``, a tmpfs,
by default), one per BlockFS, named after the superblock's UUID.  A flush
stores there what the device lacks: the file's tail block images and the
*staged group* -- the journal records (queued CREATEs, and an EXTEND with a
data checksum per flushed file) and their COMMIT, exactly as a journal commit
would write them.  The host's memory outlives the process, not the machine:
the same guarantee as the page cache.  At the next mount on the same host,
before the journal is used, a staged group that continues the journal
exactly where replay ended (same UUID, same superblock sequence -- every
mount advances it by its own random amount -- same journal end) is
replayed after the journal in memory, its data checksums verified against
the device with the images laid over it; only if they pass are the images
written (each into a block of a file of the new table), and the mount's
journal compaction then makes the result durable.  A stale buffer
(anything was committed after it) is ignored.

Buffer file layout (little endian; two slots of ``SLOT_SIZE`` bytes; a
store writes the slot not holding the newest state, so a process killed in
the middle of a store leaves the previous state intact)::

    slot    = header payload (zero padded to SLOT_SIZE)
    header  = 0  u64 checksum   XXH64 (seed 0) of bytes [8, 64 + payload length)
              8  4s  magic      b"BFWB"
              12 u32 version    1
              16 u64 generation one more than the previous store
              24 16s uuid       the BlockFS superblock's UUID
              40 u64 sequence   superblock sequence (journal epoch)
              48 u64 jpos       journal end the group continues
              56 u32 length     payload length
              60 u32 images     number of block images
    payload = u32 records length, records (journal record bytes, ending in
              a COMMIT), then per image: u64 device offset of a block, u32
              length (at most the block size), the block's first bytes (the
              rest of the block is zero)

The newest slot (highest generation) that passes its checksum is the
buffer's state.  The file is created with mode 0600 (never through a
symbolic link; an existing file must be a regular file of this user, else
it is not used) and locked with ``flock`` for the life of the mount: a
second mount of a copy of the same device (same UUID) on the host gets no
buffer and writes flushes to the device instead.  (Two copies share the
file name: after a kill, mount the killed copy again before the other, or
give a copy its own UUID by formatting a new BlockFS and copying files.)
Stores use ``pwrite`` (a full tmpfs is an ``OSError``, not a ``SIGBUS`` as
a store into a mapping would be).
"""

from __future__ import annotations

import fcntl
import os
import stat
import struct
import weakref
from dataclasses import dataclass
from typing import Optional, Union

BytesLike = Union[bytes, bytearray, memoryview]

import xxhash

from blockdev.errors import InvalidArgumentError

__all__ = ["WriteBackBuffer", "Staged", "default_dir", "buffer_path", "ENV_DIR",
           "SLOT_SIZE", "MAGIC", "VERSION"]

MAGIC = b"BFWB"  # do not change: on-disk
VERSION = 1  # do not change: on-disk
SLOT_SIZE = 256 << 10  # do not change: on-disk (slot 1 starts here)
_HDR = struct.Struct("<Q4sIQ16sQQII")  # do not change: on-disk (64 bytes)
_IMG = struct.Struct("<QI")  # do not change: on-disk
_U32 = struct.Struct("<I")

#: Environment variable naming the buffer directory; empty: no buffer.
ENV_DIR = "BLOCKFS_WRITEBACK_DIR"


def default_dir() -> Optional[str]:
    """``$BLOCKFS_WRITEBACK_DIR`` if set (empty string: None), else
    ``/dev/shm`` when it is a writable directory, else None."""
    env = os.environ.get(ENV_DIR)
    if env is not None:
        return env or None
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


def buffer_path(directory: Union[str, "os.PathLike[str]"], uuid: bytes) -> str:
    """The buffer file of the BlockFS with superblock UUID ``uuid``."""
    return os.path.join(os.fspath(directory), f"blockfs-{uuid.hex()}.wb")


@dataclass(frozen=True)
class Staged:
    """A staged group as loaded from the buffer."""

    generation: int
    sequence: int
    jpos: int
    records: bytes
    images: tuple[tuple[int, bytes], ...]


class WriteBackBuffer:
    """One BlockFS's buffer file, opened and locked.  ``open`` returns None
    when the lock is held by another mount.  Not thread safe: BlockFS calls
    it under its own lock."""

    def __init__(self, path: str, fd: int, uuid: bytes) -> None:
        self.path = path
        self._fd: Optional[int] = fd
        self._finalizer = weakref.finalize(self, os.close, fd)  # dropped without close
        self._uuid = uuid
        self._generation = 0
        self._slot = 0  # the slot the next store writes

    @classmethod
    def open(cls, directory: Union[str, "os.PathLike[str]"], uuid: bytes) -> Optional["WriteBackBuffer"]:
        """Open (creating it, mode 0600) and lock the buffer of ``uuid`` in
        ``directory``.  None if another mount holds it.  Raises ``OSError``
        if the directory is unusable."""
        if len(uuid) != 16:
            raise InvalidArgumentError(f"uuid must be 16 bytes, got {len(uuid)}")
        path = buffer_path(directory, uuid)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
                os.close(fd)
                return None
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        self = cls(path, fd, uuid)
        newest = self._newest()
        if newest is not None:
            self._generation = newest[0].generation
            self._slot = 1 - newest[1]
        return self

    def _read_slot(self, slot: int) -> Optional[Staged]:
        assert self._fd is not None
        raw = os.pread(self._fd, SLOT_SIZE, slot * SLOT_SIZE)
        if len(raw) < _HDR.size:
            return None
        csum, magic, version, gen, uid, seq, jpos, length, nimg = _HDR.unpack_from(raw, 0)
        if magic != MAGIC or version != VERSION or _HDR.size + length > len(raw):
            return None
        if xxhash.xxh64_intdigest(memoryview(raw)[8:_HDR.size + length], 0) != csum:
            return None
        if uid != self._uuid:
            return None
        view = memoryview(raw)[_HDR.size:_HDR.size + length]
        try:
            (rlen,) = _U32.unpack_from(view, 0)
            pos = 4 + rlen
            if pos > length:
                return None
            records = bytes(view[4:pos])
            images = []
            for _ in range(nimg):
                off, n = _IMG.unpack_from(view, pos)
                pos += _IMG.size
                if pos + n > length:
                    return None
                images.append((off, bytes(view[pos:pos + n])))
                pos += n
        except struct.error:
            return None
        if pos != length:
            return None
        return Staged(gen, seq, jpos, records, tuple(images))

    def _newest(self) -> Optional[tuple[Staged, int]]:
        best: Optional[tuple[Staged, int]] = None
        for slot in (0, 1):
            st = self._read_slot(slot)
            if st is not None and (best is None or st.generation > best[0].generation):
                best = (st, slot)
        return best

    def load(self) -> Optional[Staged]:
        """The newest valid staged group, or None."""
        newest = self._newest()
        return newest[0] if newest is not None else None

    def store(self, sequence: int, jpos: int, records: BytesLike,
              images: list[tuple[int, BytesLike]]) -> bool:
        """Store a staged group (one ``pwrite``).  False, storing nothing,
        if it does not fit a slot.  ``OSError`` from the write is raised
        (the previous state stays in the other slot).  O(size)."""
        assert self._fd is not None
        size = _HDR.size + 4 + len(records) + sum(_IMG.size + len(d) for _, d in images)
        if size > SLOT_SIZE:
            return False
        buf = bytearray(size)
        pos = _HDR.size
        _U32.pack_into(buf, pos, len(records))
        pos += 4
        buf[pos:pos + len(records)] = records
        pos += len(records)
        for off, data in images:
            _IMG.pack_into(buf, pos, off, len(data))
            pos += _IMG.size
            buf[pos:pos + len(data)] = data
            pos += len(data)
        gen = self._generation + 1
        struct.pack_into("<4sIQ16sQQII", buf, 8, MAGIC, VERSION, gen, self._uuid, sequence, jpos,
                         size - _HDR.size, len(images))
        struct.pack_into("<Q", buf, 0, xxhash.xxh64_intdigest(memoryview(buf)[8:], 0))
        done = os.pwrite(self._fd, buf, self._slot * SLOT_SIZE)
        if done != size:
            raise OSError(f"short write to {self.path}: {done} of {size} bytes")
        self._generation = gen
        self._slot = 1 - self._slot
        return True

    def close(self, remove: bool = False) -> None:
        """Release the lock and the file; ``remove`` also deletes it (a
        clean unmount: nothing is staged).  Idempotent."""
        if self._fd is None:
            return
        self._fd = None
        try:
            if remove:
                os.unlink(self.path)
        finally:
            self._finalizer()  # closes the fd, once
