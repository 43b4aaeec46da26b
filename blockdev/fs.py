"""The file layer: the interface every byte the engine stores goes through,
and ``PosixFS``, its implementation over a plain directory.

A ``FileSystem`` is a flat namespace of files (no directories).  Files are
written once, by appending, through a ``WritableFile``; they are read by
position through a ``RandomAccessFile``; small pointer files (``CURRENT``) are
replaced atomically with ``rename``.  Two implementations exist:

* ``PosixFS`` (this module): the files of one directory of the host file
  system, made durable with ``fsync`` of the file and of the directory.
* ``BlockFS`` (``blockdev.blockfs``): files inside a block device, with its
  own superblock, extent allocator and metadata journal.

``CrashFS`` (``blockdev.crashfs``) wraps either one for crash tests.

Crash guarantee (both implementations; tests hold them to it)
-------------------------------------------------------------
After a crash (power loss, ``SIGKILL``, a lost device cache):

* a file holds **at least every byte covered by a completed** ``sync()`` of
  one of its ``WritableFile`` handles, byte for byte;
* after the death of the *process* only (``SIGKILL``, an abort; the machine
  and the device keep running) it also holds every byte covered by a
  completed ``flush()``: the bytes had left the process (the OS page cache
  for ``PosixFS``, where every ``append`` already does that; for
  ``BlockFS`` its write-back buffer in host memory, or the device);
* it **may** also hold some of the bytes appended after the last sync: a
  prefix of them, possibly ending inside an append (a torn last append);
  never bytes that were not appended, and never a hole inside the synced
  prefix;
* a ``rename`` or ``delete`` that returned is durable;
* a file that was created but never synced (and not covered by a later
  ``sync_dir``) may be missing altogether; but ``create`` over an existing
  name replaces it durably before returning (the old bytes never come back:
  the file is then either empty or holds a prefix of the new appends).

One exception, opt-in: a file made by ``PosixFS.create_mapped`` (the DB's
write-ahead logs) appends through a memory map into space reserved ahead,
so after a crash it may also end in zero-filled space that was never
appended; ``lsm.wal``'s reader takes that for a torn tail.

``WritableFile.close`` does **not** sync.  ``FileSystem.close`` of a
``BlockFS`` persists every file's appended bytes (a clean unmount); a crash
is exactly "no close".

File names: ``str``, 1 to 255 UTF-8 bytes, no ``/`` and no NUL, not ``.`` or
``..``.  A bad name raises ``InvalidArgumentError``; a non-``str`` name
``ArgumentTypeError``.
"""

from __future__ import annotations

import abc
import contextlib
import errno
import fcntl
import mmap
import os
import threading
from typing import Union

from blockdev.errors import (
    ArgumentTypeError,
    ClosedError,
    InvalidArgumentError,
    LockError,
    NoSpaceError,
    NotFoundError,
    StorageIOError,
)

__all__ = [
    "FileSystem",
    "WritableFile",
    "RandomAccessFile",
    "FileLock",
    "PosixFS",
    "check_name",
    "check_data",
    "MAX_NAME_BYTES",
]

#: Longest file name, in UTF-8 bytes (the common host limit).
MAX_NAME_BYTES = 255

BytesLike = Union[bytes, bytearray, memoryview]

#: Chunk used when a file is copied between file systems.
_COPY_CHUNK = 1 << 20


def check_name(name: object, arg: str = "name") -> str:
    """Validate a file name (see the module docstring) and return it.

    Raises ``ArgumentTypeError`` for a non-``str`` and
    ``InvalidArgumentError`` for a bad value; both name ``arg``.
    """
    if not isinstance(name, str):
        raise ArgumentTypeError(f"{arg} must be a str, got {type(name).__name__}")
    if name in ("", ".", ".."):
        raise InvalidArgumentError(f"{arg} is not a valid file name: {name!r}")
    if "/" in name or "\0" in name:
        raise InvalidArgumentError(f"{arg} must not contain '/' or NUL: {name!r}")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgumentError(f"{arg} is not encodable as UTF-8: {name!r}") from None
    if len(encoded) > MAX_NAME_BYTES:
        raise InvalidArgumentError(
            f"{arg} is longer than {MAX_NAME_BYTES} UTF-8 bytes: {name[:40]!r}...")
    return name


def check_data(data: object, arg: str = "data") -> None:
    """Raise ``ArgumentTypeError`` unless ``data`` is bytes-like."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ArgumentTypeError(f"{arg} must be bytes-like, got {type(data).__name__}")


def check_int(value: object, arg: str, minimum: int = 0) -> int:
    """Validate an integer argument ``>= minimum`` and return it."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ArgumentTypeError(f"{arg} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise InvalidArgumentError(f"{arg} must be >= {minimum}, got {value}")
    return value


# ---------------------------------------------------------------------------
# The interface
# ---------------------------------------------------------------------------


class WritableFile(abc.ABC):
    """A file being written by appending.  Obtained from ``FileSystem.create``.

    Not meant to be shared between threads without external locking (the
    engine has one writer per file); readers of the same file through
    ``FileSystem.open`` see every appended byte.
    """

    name: str

    @property
    @abc.abstractmethod
    def size(self) -> int:
        """Bytes appended so far."""

    @abc.abstractmethod
    def append(self, data: BytesLike) -> None:
        """Append ``data`` at the end.  Not durable until ``sync``.

        Requires: the file is open.  Raises ``NoSpaceError`` when the
        storage is full (nothing of ``data`` is appended then, and the file
        stays usable), ``StorageIOError`` on an I/O failure.
        """

    @abc.abstractmethod
    def flush(self) -> None:
        """Hand every byte appended so far (and the file's size) to the
        storage below this process, so that they survive the death of the
        process but not necessarily a machine crash (the crash guarantee of
        ``blockdev.fs``).  ``PosixFS``: every ``append`` already reached the
        OS page cache.  ``BlockFS`` keeps a file's partial last block and
        its size in memory until ``flush`` or ``sync``: a flush stores them
        in its write-back buffer (host memory, no device I/O) or, without
        one, costs two device writes and no device flush.

        Requires: the file is open.  Raises ``StorageIOError`` on an I/O
        failure.
        """

    @abc.abstractmethod
    def sync(self) -> None:
        """Make every byte appended so far, the file's size and its
        existence durable (see the crash guarantee of ``blockdev.fs``).
        Implies ``flush``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the handle; does **not** sync.  Idempotent."""

    def __enter__(self) -> "WritableFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RandomAccessFile(abc.ABC):
    """A file opened for positional reads.  Safe to share between threads."""

    name: str

    @property
    @abc.abstractmethod
    def size(self) -> int:
        """The file's current size in bytes."""

    @abc.abstractmethod
    def read(self, offset: int, length: int) -> bytes:
        """Return up to ``length`` bytes at ``offset``; short only at EOF.

        Requires: ``offset >= 0``, ``length >= 0``.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release the handle.  Idempotent."""

    def __enter__(self) -> "RandomAccessFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FileLock(abc.ABC):
    """An exclusive lock taken with ``FileSystem.lock``."""

    name: str

    @abc.abstractmethod
    def release(self) -> None:
        """Release the lock.  Idempotent."""

    def __enter__(self) -> "FileLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class FileSystem(abc.ABC):
    """A flat namespace of append-only files.  See the module docstring for
    the crash guarantee every implementation gives.  Safe to share between
    threads.  After ``close`` every call raises ``ClosedError``."""

    name: str

    @abc.abstractmethod
    def create(self, name: str) -> WritableFile:
        """Create an empty file for appending.  A new name is durable after
        the file's first ``sync`` (or a ``sync_dir``); an existing file of
        that name is replaced (truncated) durably before this returns."""

    @abc.abstractmethod
    def open(self, name: str) -> RandomAccessFile:
        """Open a file for reading.  ``NotFoundError`` if absent."""

    @abc.abstractmethod
    def exists(self, name: str) -> bool:
        """True if the file exists."""

    @abc.abstractmethod
    def size(self, name: str) -> int:
        """Current size of a file.  ``NotFoundError`` if absent."""

    @abc.abstractmethod
    def list(self) -> list[str]:
        """Names of every file, sorted.  O(n log n) in the number of files."""

    @abc.abstractmethod
    def rename(self, src: str, dst: str) -> None:
        """Atomically rename ``src`` to ``dst``, replacing ``dst``; durable
        when it returns.  ``NotFoundError`` if ``src`` is absent."""

    @abc.abstractmethod
    def delete(self, name: str) -> None:
        """Delete a file; durable when it returns.  ``NotFoundError`` if
        absent.  Open handles keep reading the old bytes until closed."""

    @abc.abstractmethod
    def lock(self, name: str) -> FileLock:
        """Take the exclusive lock ``name`` (creating the file if absent).
        ``LockError`` naming the lock if it is held by another process or
        another handle."""

    @abc.abstractmethod
    def link_or_copy(self, name: str, dest: "FileSystem", dest_name: str) -> None:
        """Make ``dest_name`` in ``dest`` a durable copy of ``name`` (a hard
        link when both are directories of one host file system, a byte copy
        otherwise); an existing ``dest_name`` is replaced.

        Requires: ``name`` is no longer being appended to (a hard link shares
        later appends).
        """

    @abc.abstractmethod
    def sync_dir(self) -> None:
        """Make every create and delete so far durable."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the file system.  Idempotent."""

    def __enter__(self) -> "FileSystem":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def copy_file(src: FileSystem, name: str, dest: FileSystem, dest_name: str) -> None:
    """Copy ``name`` of ``src`` into ``dest_name`` of ``dest`` and sync it.
    O(size) bytes moved in 1 MiB chunks."""
    with src.open(name) as rf:
        total = rf.size
        wf = dest.create(dest_name)
        try:
            offset = 0
            while offset < total:
                chunk = rf.read(offset, min(_COPY_CHUNK, total - offset))
                if not chunk:
                    break
                wf.append(chunk)
                offset += len(chunk)
            wf.sync()
        finally:
            wf.close()
    dest.sync_dir()


# ---------------------------------------------------------------------------
# PosixFS
# ---------------------------------------------------------------------------


def _os_error(exc: OSError, what: str, path: str) -> Exception:
    """Map an ``OSError`` to the product's hierarchy."""
    if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        return NoSpaceError(f"{what} failed: no space left ({exc.strerror})", path)
    if exc.errno == errno.ENOENT:
        return NotFoundError(f"{what} failed: no such file: {path}")
    return StorageIOError(f"{what} failed: {exc.strerror or exc}", path)


class _PosixHandle(WritableFile):
    """What both PosixFS write handles share: the fd, the appended size, the lock."""

    def __init__(self, fs: "PosixFS", name: str, path: str, fd: int) -> None:
        self._fs = fs
        self.name = name
        self._path = path
        self._fd: int | None = fd
        self._size = 0
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return self._size

    def _check_open(self) -> int:
        if self._fd is None:
            raise ClosedError(f"file {self._path} is closed")
        return self._fd

    def _write_back(self) -> None:
        """What must reach the file before its ``fsync`` (nothing here).
        Requires: ``_lock`` held."""

    def flush(self) -> None:
        """Every append is already in the OS page cache (a ``pwrite``, or a
        store into a shared mapping of the file), which outlives the
        process: only the handle is checked."""
        with self._lock:
            self._check_open()

    def sync(self) -> None:
        with self._lock:
            fd = self._check_open()
            try:
                self._write_back()
                os.fsync(fd)
            except OSError as exc:
                raise _os_error(exc, "fsync", self._path) from exc
        self._fs._sync_dir_if_dirty()


class _PosixWritable(_PosixHandle):
    """An ``O_WRONLY|O_APPEND``-style handle; every append is one ``write``
    (no user-space buffering, so readers see appended bytes at once)."""

    def append(self, data: BytesLike) -> None:
        if type(data) is bytes:
            # fast path (the WAL's one append per write): one pwrite of the
            # caller's bytes, no view; a short write continues below
            with self._lock:
                fd = self._fd
                if fd is not None:
                    size = self._size
                    try:
                        done = os.pwrite(fd, data, size)
                    except OSError as exc:
                        raise _os_error(exc, "append", self._path) from exc
                    if done == len(data):
                        self._size = size + done
                        return
                    self._append_rest(fd, memoryview(data), done)
                    return
        check_data(data)
        with self._lock:
            fd = self._check_open()
            self._append_rest(fd, memoryview(data).cast("B"), 0)

    def _append_rest(self, fd: int, view: memoryview, done: int) -> None:
        """Write ``view[done:]`` at ``size + done``, then grow ``size``.
        Requires: ``_lock`` held; ``view`` a byte view."""
        total = len(view)
        try:
            while done < total:
                done += os.pwrite(fd, view[done:], self._size + done)
        except OSError as exc:
            if done:
                # Keep the file exactly at its previous size on failure;
                # the append error below is the one to report.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, self._size)
            raise _os_error(exc, "append", self._path) from exc
        self._size += total

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                fd, self._fd = self._fd, None
                try:
                    os.close(fd)
                except OSError as exc:
                    raise _os_error(exc, "close", self._path) from exc


_MAPPED_PWRITE_MIN = 32 << 10     # appends at least this large use pwrite


class _PosixMappedWritable(_PosixHandle):
    """A write-ahead log handle (``PosixFS.create_mapped``): appends are
    copies into a shared memory map of the file, so an append is no system
    call and never releases the GIL (the way RocksDB's ``allow_mmap_writes``
    avoids a ``write`` per record); an append of ``_MAPPED_PWRITE_MIN`` bytes
    or more (a large batch) is one ``pwrite`` into the same reserved space.

    The file grows by ``posix_fallocate`` in steps of ``_GROW_MIN`` doubling
    to ``_GROW_MAX`` (blocks are reserved up front, so a full disk is a
    ``NoSpaceError`` from ``append``, never a ``SIGBUS`` on a page fault).
    Appended bytes sit in the page cache at once, so they survive a process
    kill; ``sync`` is ``msync`` + ``fsync``.  ``close`` truncates the file to
    the appended size.  After a crash the file may end in zero-filled
    preallocated space beyond the appended bytes -- which ``lsm.wal``'s
    reader takes for a torn tail; the rest of the crash guarantee of this
    module holds.  Pages already written are dropped from the process's
    mapping as the log grows (``MADV_DONTNEED``: they stay in the page
    cache), so resident memory stays about one growth step."""

    _GROW_MIN = 1 << 20
    _GROW_MAX = 8 << 20

    def __init__(self, fs: "PosixFS", name: str, path: str, fd: int) -> None:
        super().__init__(fs, name, path, fd)
        self._cap = 0
        self._dropped = 0
        self._mm: mmap.mmap | None = None

    def append(self, data: BytesLike) -> None:
        if type(data) is not bytes:
            check_data(data)
            data = memoryview(data).cast("B")
        with self._lock:
            fd = self._fd
            if fd is None:
                raise ClosedError(f"file {self._path} is closed")
            size = self._size
            end = size + len(data)
            if end > self._cap:
                self._grow(fd, end)
            if end - size < _MAPPED_PWRITE_MIN:
                self._mm[size:end] = data    # type: ignore[index]
            else:
                # a large append (a batch): one pwrite, GIL released, into the
                # same page cache the map shows (no page faults under the GIL)
                done = 0
                view = memoryview(data)
                try:
                    while done < len(view):
                        done += os.pwrite(fd, view[done:], size + done)
                except OSError as exc:
                    raise _os_error(exc, "append", self._path) from exc
            self._size = end

    def append_parts(self, parts: list) -> None:
        """``append(b"".join(parts))`` without the join when the parts add
        up to a large append: one ``pwritev`` of them (a log record's
        fragments and headers).  Requires: bytes-like parts."""
        total = sum(map(len, parts))
        if total < _MAPPED_PWRITE_MIN or len(parts) > 512:     # 512: well under IOV_MAX
            self.append(b"".join(parts))
            return
        with self._lock:
            fd = self._fd
            if fd is None:
                raise ClosedError(f"file {self._path} is closed")
            size = self._size
            end = size + total
            if end > self._cap:
                self._grow(fd, end)
            try:
                done = os.pwritev(fd, parts, size)
                if done < total:            # short write: the rest from one buffer
                    whole = memoryview(b"".join(parts))
                    while done < total:
                        done += os.pwrite(fd, whole[done:], size + done)
            except OSError as exc:
                raise _os_error(exc, "append", self._path) from exc
            self._size = end

    def _grow(self, fd: int, need: int) -> None:
        """Reserve and map room for ``need`` bytes.  Requires: ``_lock`` held."""
        step = min(max(self._cap, self._GROW_MIN), self._GROW_MAX)
        cap = max(need, self._cap + step)
        cap = -(-cap // mmap.PAGESIZE) * mmap.PAGESIZE
        try:
            os.posix_fallocate(fd, self._cap, cap - self._cap)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self._cap)
            raise _os_error(exc, "append", self._path) from exc
        try:
            if self._mm is None:
                self._mm = mmap.mmap(fd, cap, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            else:
                self._mm.resize(cap)
        except OSError as exc:
            raise _os_error(exc, "mmap", self._path) from exc
        self._cap = cap
        # drop the written pages from this process's mapping (not from the
        # page cache, not from the file): resident memory stays bounded
        done = self._size // mmap.PAGESIZE * mmap.PAGESIZE
        if done > self._dropped and hasattr(mmap, "MADV_DONTNEED"):
            with contextlib.suppress(OSError):
                self._mm.madvise(mmap.MADV_DONTNEED, self._dropped, done - self._dropped)
            self._dropped = done

    def _write_back(self) -> None:
        if self._mm is not None:
            self._mm.flush()            # msync: the mapped pages first

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                fd, self._fd = self._fd, None
                mm, self._mm = self._mm, None
                try:
                    if mm is not None:
                        mm.close()
                    os.ftruncate(fd, self._size)
                except OSError as exc:
                    with contextlib.suppress(OSError):
                        os.close(fd)
                    raise _os_error(exc, "close", self._path) from exc
                try:
                    os.close(fd)
                except OSError as exc:
                    raise _os_error(exc, "close", self._path) from exc


class _PosixRandomAccess(RandomAccessFile):
    def __init__(self, name: str, path: str, fd: int) -> None:
        self.name = name
        self._path = path
        self._fd: int | None = fd

    def _check_open(self) -> int:
        fd = self._fd
        if fd is None:
            raise ClosedError(f"file {self._path} is closed")
        return fd

    @property
    def size(self) -> int:
        fd = self._check_open()
        try:
            return os.fstat(fd).st_size
        except OSError as exc:
            raise _os_error(exc, "fstat", self._path) from exc

    def read(self, offset: int, length: int) -> bytes:
        check_int(offset, "offset")
        check_int(length, "length")
        fd = self._check_open()
        try:
            data = os.pread(fd, length, offset)
            if len(data) < length and data:
                parts = [data]
                got = len(data)
                while got < length:
                    more = os.pread(fd, length - got, offset + got)
                    if not more:
                        break
                    parts.append(more)
                    got += len(more)
                data = b"".join(parts)
        except OSError as exc:
            raise _os_error(exc, "read", self._path) from exc
        return data

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


class _PosixLock(FileLock):
    def __init__(self, name: str, fd: int) -> None:
        self.name = name
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)


class PosixFS(FileSystem):
    """The files of one host directory.

    Durability: ``sync`` is ``fsync`` of the file; the directory is
    ``fsync``-ed on the first file sync after a create (so the new name is
    durable), by ``sync_dir``, and before ``rename``/``delete``/
    ``link_or_copy`` return.  Locks are ``flock`` locks on a file of the
    directory: they keep out other processes *and* a second handle of this
    process (``flock`` locks belong to an open file description).

    Requires: ``path`` is a directory (created with ``create=True``).
    """

    def __init__(self, path: str | os.PathLike[str], create: bool = False) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise ArgumentTypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        if not isinstance(create, bool):
            raise ArgumentTypeError(f"create must be a bool, got {type(create).__name__}")
        root = os.fspath(path)
        if not isinstance(root, str) or not root:
            raise InvalidArgumentError(f"path must be a non-empty str path, got {root!r}")
        if not os.path.isdir(root):
            if os.path.exists(root):
                raise InvalidArgumentError(f"{root} exists and is not a directory")
            if not create:
                raise NotFoundError(f"directory {root} does not exist (pass create=True)")
            try:
                os.makedirs(root, exist_ok=True)
            except OSError as exc:
                raise _os_error(exc, "mkdir", root) from exc
            parent = os.path.dirname(os.path.abspath(root))
            _fsync_dir(parent)
        self.root = root
        self.name = root
        self._closed = False
        self._dir_dirty = False
        self._lock = threading.Lock()

    # -- helpers ------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"file system {self.root} is closed")

    def _path(self, name: str, arg: str = "name") -> str:
        check_name(name, arg)
        return os.path.join(self.root, name)

    def _sync_dir_if_dirty(self) -> None:
        with self._lock:
            dirty = self._dir_dirty
        if dirty:
            self.sync_dir()

    # -- FileSystem -----------------------------------------------------------
    def create(self, name: str) -> WritableFile:
        path, fd = self._create_fd(name, os.O_WRONLY)
        return _PosixWritable(self, name, path, fd)

    def _create_fd(self, name: str, access: int) -> tuple[str, int]:
        """Create (or durably truncate) ``name``; its path and an fd opened with ``access``."""
        path = self._path(name)
        self._check_open()
        existed = os.path.lexists(path)
        try:
            fd = os.open(path, access | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise _os_error(exc, "create", path) from exc
        if existed:
            # Replacing a file: make the truncation durable now, so the old
            # bytes cannot come back after a crash.
            try:
                os.fsync(fd)
            except OSError as exc:
                os.close(fd)
                raise _os_error(exc, "fsync", path) from exc
        with self._lock:
            self._dir_dirty = True
        return path, fd

    def create_mapped(self, name: str) -> WritableFile:
        """``create`` for a write-ahead log: a handle that appends through a
        memory map (``_PosixMappedWritable``: no system call per append;
        after a crash the file may end in zero-filled preallocated space).
        Same errors and crash guarantee as ``create`` otherwise."""
        path, fd = self._create_fd(name, os.O_RDWR)     # a shared map needs read access
        return _PosixMappedWritable(self, name, path, fd)

    def open(self, name: str) -> RandomAccessFile:
        path = self._path(name)
        self._check_open()
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise _os_error(exc, "open", path) from exc
        return _PosixRandomAccess(name, path, fd)

    def exists(self, name: str) -> bool:
        path = self._path(name)
        self._check_open()
        return os.path.isfile(path)

    def size(self, name: str) -> int:
        path = self._path(name)
        self._check_open()
        try:
            return os.stat(path).st_size
        except OSError as exc:
            raise _os_error(exc, "stat", path) from exc

    def list(self) -> list[str]:
        self._check_open()
        try:
            with os.scandir(self.root) as it:
                names = [e.name for e in it if e.is_file(follow_symlinks=False)]
        except OSError as exc:
            raise _os_error(exc, "list", self.root) from exc
        return sorted(names)

    def rename(self, src: str, dst: str) -> None:
        src_path = self._path(src, "src")
        dst_path = self._path(dst, "dst")
        self._check_open()
        try:
            os.replace(src_path, dst_path)
        except OSError as exc:
            raise _os_error(exc, "rename", src_path) from exc
        self.sync_dir()

    def delete(self, name: str) -> None:
        path = self._path(name)
        self._check_open()
        try:
            os.unlink(path)
        except OSError as exc:
            raise _os_error(exc, "delete", path) from exc
        self.sync_dir()

    def lock(self, name: str) -> FileLock:
        path = self._path(name)
        self._check_open()
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise _os_error(exc, "lock", path) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LockError(f"lock {path} is held by another process or handle") from None
            raise _os_error(exc, "lock", path) from exc
        return _PosixLock(name, fd)

    def link_or_copy(self, name: str, dest: FileSystem, dest_name: str) -> None:
        src_path = self._path(name)
        check_name(dest_name, "dest_name")
        if not isinstance(dest, FileSystem):
            raise ArgumentTypeError(f"dest must be a FileSystem, got {type(dest).__name__}")
        self._check_open()
        if type(dest) is PosixFS:
            dest._check_open()
            dst_path = dest._path(dest_name, "dest_name")
            if os.path.abspath(dst_path) == os.path.abspath(src_path):
                return
            tmp = dst_path + ".link.tmp"
            try:
                if os.path.lexists(tmp):
                    os.unlink(tmp)
                os.link(src_path, tmp)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    raise NotFoundError(f"link_or_copy: no such file: {src_path}") from None
                # EXDEV, EPERM, ...: fall through to a byte copy.
            else:
                try:
                    os.replace(tmp, dst_path)
                except OSError as exc:
                    raise _os_error(exc, "link", dst_path) from exc
                dest.sync_dir()
                return
        copy_file(self, name, dest, dest_name)

    def sync_dir(self) -> None:
        self._check_open()
        with self._lock:
            self._dir_dirty = False
        try:
            _fsync_dir(self.root)
        except StorageIOError:
            with self._lock:
                self._dir_dirty = True
            raise

    def close(self) -> None:
        self._closed = True


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        raise _os_error(exc, "open directory", path) from exc
    try:
        os.fsync(fd)
    except OSError as exc:
        raise _os_error(exc, "fsync directory", path) from exc
    finally:
        os.close(fd)
