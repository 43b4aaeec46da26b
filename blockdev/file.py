"""FileDevice: a block device over a regular file or a raw block device.

Design: every I/O is one positional system call (``os.pread`` / ``os.pwrite``,
looped until complete), so the device needs no lock and threads overlap their
I/O freely (the calls release the GIL).  ``flush()`` is ``fdatasync`` (falling
back to ``fsync`` where the platform lacks it).  ``discard`` punches a hole in
a regular file (``fallocate(PUNCH_HOLE|KEEP_SIZE)``) or issues ``BLKDISCARD``
on a block device; where neither is supported the hint is a no-op, as the
device protocol allows.

``direct_io=True`` opens with ``O_DIRECT`` (bypassing the page cache).  The
kernel then needs buffers aligned to the logical sector size; an anonymous
``mmap`` is page aligned, so each I/O goes through a reusable aligned bounce
buffer (one per thread).

The device stores no metadata of its own: byte ``i`` of the device is byte
``i`` of the file.  ``size`` is the file size (rounded down to the block
size) unless given; ``create=True`` creates a missing file and grows it to
``size`` (sparse).

Exclusive access: by default the device takes an exclusive, non-blocking
``flock(LOCK_EX | LOCK_NB)`` on its file descriptor right after opening, so a
second FileDevice over the same file -- in another process or in this one
(flock locks belong to the open file description, so a second ``open`` in
the same process conflicts too) -- fails at once with ``LockError`` naming
the path instead of silently interleaving writes with the first.  A raw
block device is also opened with ``O_EXCL`` (Linux: the open fails with
``EBUSY`` while the device is mounted or held by another exclusive opener).
The lock is released when the device is closed or the process dies.

Opt-outs (both explicit):

* ``read_only=True`` opens ``O_RDONLY`` (writes, flushes and discards raise
  ``ReadOnlyError``) and takes a *shared* lock: many read-only openers may
  coexist, none while a writer holds the device.
* ``lock=False`` takes no lock at all.  Only for read-only inspection of a
  device that a live process holds (``SuperDisk.inspect``); never combine it
  with writes to a device someone else has open.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import mmap
import os
import stat
import struct
import threading
from typing import Optional, Union

from blockdev.device import BlockDevice
from blockdev.errors import (
    ArgumentTypeError,
    InvalidArgumentError,
    LockError,
    NoSpaceError,
    NotFoundError,
    ReadOnlyError,
    StorageIOError,
)

__all__ = ["FileDevice"]

_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
_BLKDISCARD = 0x1277          # _IO(0x12, 119)
_BLKGETSIZE64 = 0x80081272    # _IOR(0x12, 114, size_t)

_libc: Optional[ctypes.CDLL] = None
_libc_lock = threading.Lock()


def _get_libc() -> Optional[ctypes.CDLL]:
    global _libc
    with _libc_lock:
        if _libc is None:
            name = ctypes.util.find_library("c")
            if name is None:
                return None
            try:
                _libc = ctypes.CDLL(name, use_errno=True)
            except OSError:
                return None
        return _libc


def _io_error(exc: OSError, what: str, file: str, offset: Optional[int]) -> StorageIOError:
    if exc.errno == errno.ENOSPC:
        return NoSpaceError(f"{what} failed: no space left ({exc.strerror})", file, offset)
    return StorageIOError(f"{what} failed: {exc.strerror or exc}", file, offset)


class FileDevice(BlockDevice):
    """A block device stored in a file or a raw block device node.

    Requires: ``path`` names a regular file or a block device; when
    ``create`` is false it must exist.  ``size`` (bytes, a multiple of
    ``block_size``) defaults to the current size rounded down to the block
    size; it must not exceed the size of an existing block device.
    ``lock`` (default True): hold an exclusive ``flock`` (shared when
    ``read_only``) for the device's lifetime; raises ``LockError`` naming the
    path when another holder conflicts.  ``read_only``: open ``O_RDONLY``;
    writes raise ``ReadOnlyError`` (requires ``create=False``).
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"], size: Optional[int] = None,
                 create: bool = False, block_size: int = 4096, direct_io: bool = False, *,
                 lock: bool = True, read_only: bool = False) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise ArgumentTypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool)):
            raise ArgumentTypeError(f"size must be an int or None, got {type(size).__name__}")
        if not isinstance(block_size, int) or isinstance(block_size, bool):
            raise ArgumentTypeError(f"block_size must be an int, got {type(block_size).__name__}")
        if not isinstance(create, bool):
            raise ArgumentTypeError(f"create must be a bool, got {type(create).__name__}")
        if not isinstance(direct_io, bool):
            raise ArgumentTypeError(f"direct_io must be a bool, got {type(direct_io).__name__}")
        if not isinstance(lock, bool):
            raise ArgumentTypeError(f"lock must be a bool, got {type(lock).__name__}")
        if not isinstance(read_only, bool):
            raise ArgumentTypeError(f"read_only must be a bool, got {type(read_only).__name__}")
        if read_only and create:
            raise InvalidArgumentError("read_only and create are mutually exclusive")
        if block_size <= 0 or block_size & (block_size - 1):
            raise InvalidArgumentError(f"block_size must be a power of two, got {block_size}")
        if size is not None and (size < 0 or size % block_size):
            raise InvalidArgumentError(f"size must be a non-negative multiple of block_size {block_size}, got {size}")
        path_str = os.fspath(path)
        flags = (os.O_RDONLY if read_only else os.O_RDWR) | getattr(os, "O_CLOEXEC", 0)
        if direct_io:
            if not hasattr(os, "O_DIRECT"):
                raise InvalidArgumentError("direct_io is not supported on this platform")
            flags |= os.O_DIRECT
        exists = os.path.exists(path_str)
        if not exists and not create:
            raise NotFoundError(f"device file does not exist: {path_str}")
        if not exists and size is None:
            raise InvalidArgumentError(f"size is required to create {path_str}")
        if create:
            flags |= os.O_CREAT
        if lock and not read_only and exists:
            try:
                if stat.S_ISBLK(os.stat(path_str).st_mode):
                    flags |= os.O_EXCL      # no O_CREAT here: Linux's exclusive block-device open
            except OSError:
                pass                        # open() below reports the problem
        try:
            fd = os.open(path_str, flags, 0o644)
        except OSError as exc:
            if exc.errno == errno.EINVAL and direct_io:
                raise StorageIOError(f"O_DIRECT is not supported by the file system of {path_str}", path_str) from exc
            if exc.errno == errno.ENOENT:
                raise NotFoundError(f"device file does not exist: {path_str}") from exc
            if exc.errno == errno.EBUSY and flags & os.O_EXCL:
                raise LockError(f"block device {path_str} is in use (mounted or opened exclusively "
                                "by another process)") from exc
            raise _io_error(exc, "open", path_str, None) from exc
        try:
            if lock:
                self._lock_fd(fd, path_str, shared=read_only)
            st = os.fstat(fd)
            self._is_blockdev = stat.S_ISBLK(st.st_mode)
            if not self._is_blockdev and not stat.S_ISREG(st.st_mode):
                raise InvalidArgumentError(f"{path_str} is neither a regular file nor a block device")
            current = self._device_bytes(fd) if self._is_blockdev else st.st_size
            if size is None:
                size = current - current % block_size
            elif size > current:
                if self._is_blockdev:
                    raise InvalidArgumentError(
                        f"size {size} exceeds the capacity {current} of block device {path_str}")
                if not create:
                    raise InvalidArgumentError(
                        f"size {size} exceeds the file size {current} of {path_str} (pass create=True to grow it)")
                try:
                    os.ftruncate(fd, size)
                except OSError as exc:
                    raise _io_error(exc, "ftruncate", path_str, None) from exc
        except BaseException:
            os.close(fd)
            raise
        super().__init__(size, block_size)
        self.name = path_str
        self.path = path_str
        self.direct_io = direct_io
        self.read_only = read_only
        self.locked = lock
        self._fd = fd
        self._local = threading.local()

    @staticmethod
    def _lock_fd(fd: int, path: str, shared: bool) -> None:
        """Take a non-blocking flock on ``fd``; LockError naming ``path`` when held elsewhere."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - non-POSIX platforms have no flock
            return
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LockError(
                    f"device {path} is locked by another process or open device "
                    f"(two writers would corrupt it; close the other user first)") from exc
            if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                return  # the file system cannot lock: nothing to enforce
            raise _io_error(exc, "flock", path, None) from exc

    @staticmethod
    def _device_bytes(fd: int) -> int:
        try:
            import fcntl
            buf = fcntl.ioctl(fd, _BLKGETSIZE64, b"\0" * 8)
            return struct.unpack("Q", buf)[0]
        except OSError:
            end = os.lseek(fd, 0, os.SEEK_END)
            return end

    # -- aligned bounce buffer for O_DIRECT ---------------------------------
    def _bounce(self, length: int) -> mmap.mmap:
        buf = getattr(self._local, "buf", None)
        if buf is None or len(buf) < length:
            if buf is not None:
                buf.close()
            size = max(length, mmap.PAGESIZE)
            size = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE
            buf = mmap.mmap(-1, size)
            self._local.buf = buf
        return buf

    # -- hooks --------------------------------------------------------------
    def _read(self, offset: int, length: int) -> bytes:
        try:
            if self.direct_io:
                buf = self._bounce(length)
                view = memoryview(buf)[:length]
                done = 0
                while done < length:
                    n = os.preadv(self._fd, [view[done:]], offset + done)
                    if n == 0:
                        break
                    done += n
                data = bytes(view[:done])
                view.release()
            else:
                parts = []
                done = 0
                while done < length:
                    chunk = os.pread(self._fd, length - done, offset + done)
                    if not chunk:
                        break
                    parts.append(chunk)
                    done += len(chunk)
                data = parts[0] if len(parts) == 1 else b"".join(parts)
        except OSError as exc:
            raise _io_error(exc, "read", self.name, offset) from exc
        if len(data) < length:  # a regular file shorter than size: the tail reads as zeros
            data += bytes(length - len(data))
        return data

    def _check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyError(f"device {self.name} was opened read-only")

    def _write(self, offset: int, data: bytes) -> None:
        self._check_writable()
        length = len(data)
        try:
            if self.direct_io:
                buf = self._bounce(length)
                buf[:length] = data
                view = memoryview(buf)[:length]
                done = 0
                while done < length:
                    done += os.pwritev(self._fd, [view[done:]], offset + done)
                view.release()
            else:
                view = memoryview(data)
                done = 0
                while done < length:
                    done += os.pwrite(self._fd, view[done:], offset + done)
        except OSError as exc:
            raise _io_error(exc, "write", self.name, offset) from exc

    def _flush(self) -> None:
        if self.read_only:
            return  # nothing was written: nothing to make durable
        try:
            if hasattr(os, "fdatasync"):
                os.fdatasync(self._fd)
            else:  # pragma: no cover - macOS
                os.fsync(self._fd)
        except OSError as exc:
            raise _io_error(exc, "fdatasync", self.name, None) from exc

    def _discard(self, offset: int, length: int) -> None:
        self._check_writable()
        if self._is_blockdev:
            try:
                import fcntl
                fcntl.ioctl(self._fd, _BLKDISCARD, struct.pack("QQ", offset, length))
            except OSError as exc:
                if exc.errno in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL):
                    return  # the hint is not supported: a no-op is allowed
                raise _io_error(exc, "discard", self.name, offset) from exc
            return
        libc = _get_libc()
        fallocate = getattr(libc, "fallocate", None) if libc is not None else None
        if fallocate is None:
            return
        fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
        fallocate.restype = ctypes.c_int
        rc = fallocate(self._fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length)
        if rc != 0:
            err = ctypes.get_errno()
            if err in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                return
            raise StorageIOError(f"discard failed: {os.strerror(err)}", self.name, offset)

    def _close(self) -> None:
        try:
            os.close(self._fd)
        except OSError as exc:
            raise _io_error(exc, "close", self.name, None) from exc
