"""CrashFS: a crash-simulating wrapper around any ``FileSystem``, for tests.

``CrashFS(inner)`` forwards every call to ``inner`` and records, per file,
how many bytes were appended, how many a completed ``sync`` covers, and
whether the file's existence is durable (synced, renamed, created over an
existing file, or covered by a ``sync_dir``).  Renames, deletes and
replacing creates are durable when they return (the file-layer contract),
so no rename is ever pending.

``crash(mode="all" | "random", seed=None)`` then puts the inner file system
in a state the crash guarantee of ``blockdev.fs`` allows, as if the machine
had lost power:

* ``"all"``: every file is cut back to its synced length; files whose
  existence is not durable disappear.
* ``"random"``: each file keeps its synced bytes plus a random prefix of
  its unsynced ones (which may end inside an append: a torn last append);
  a file whose existence is not durable disappears or survives (with a
  random prefix) by coin flip.

How the state is produced depends on ``inner``: a ``PosixFS`` has its real
files truncated / unlinked; a ``BlockFS`` is abandoned without unmount and
mounted again (its journal is really replayed; CrashFS raises
``CorruptionError`` if a synced byte did not survive), then files are cut or
rewritten to the chosen lengths; any other file system is brought there
through its own API.  Every handle opened before the crash raises
``ClosedError`` afterwards and every lock taken through CrashFS is released
(the process died).  Files CrashFS never saw written are left alone.

``inject_error(op, name=None, error=StorageIOError, count=1)`` makes the
next ``count`` matching operations fail *before* they take effect.  ``op``
is one of ``OPS``; ``name`` is ``None`` (any file), a glob pattern or a
predicate on the file name.
"""

from __future__ import annotations

import fnmatch
import os
import random
import threading
from dataclasses import dataclass
from typing import Callable, Optional, Union

from blockdev.blockfs import BlockFS
from blockdev.errors import (
    ArgumentTypeError,
    ClosedError,
    CorruptionError,
    Error,
    InvalidArgumentError,
    NotFoundError,
    StorageIOError,
)
from blockdev.fs import (
    BytesLike,
    FileLock,
    FileSystem,
    PosixFS,
    RandomAccessFile,
    WritableFile,
    check_data,
    check_int,
    check_name,
)

__all__ = ["CrashFS", "CrashReport", "ErrorRule", "OPS"]

#: Operations ``inject_error`` can target.
OPS = frozenset({
    "create", "open", "exists", "size", "list", "rename", "delete", "lock",
    "link_or_copy", "sync_dir", "append", "flush", "sync", "read",
})

NameMatch = Union[None, str, Callable[[str], bool]]


class _Track:
    """What CrashFS knows of one file (mutable, internal)."""

    __slots__ = ("name", "length", "synced", "durable")

    def __init__(self, name: str, length: int, synced: int, durable: bool) -> None:
        self.name = name
        self.length = length
        self.synced = synced
        self.durable = durable

    def _check(self) -> None:
        assert 0 <= self.synced <= self.length, "synced beyond appended"


@dataclass(frozen=True)
class CrashReport:
    """What a ``crash`` did: files removed, and (name, length before,
    length after) for each file cut back."""

    mode: str
    seed: Optional[int]
    dropped: tuple[str, ...]
    truncated: tuple[tuple[str, int, int], ...]


class ErrorRule:
    """One injected failure rule (returned by ``inject_error``).
    ``remaining`` is None for "forever"; ``hits`` counts raised errors."""

    def __init__(self, op: str, match: NameMatch, error: Union[type, Error], count: Optional[int]) -> None:
        self.op = op
        self.match = match
        self.error = error
        self.remaining = count
        self.hits = 0

    def matches(self, op: str, name: str) -> bool:
        if op != self.op or self.remaining == 0:
            return False
        if self.match is None:
            return True
        if isinstance(self.match, str):
            return fnmatch.fnmatchcase(name, self.match)
        return bool(self.match(name))

    def make(self, op: str, name: str) -> BaseException:
        if isinstance(self.error, BaseException):
            return self.error
        message = f"injected {op} failure"
        if issubclass(self.error, (StorageIOError, CorruptionError)):
            return self.error(message, name or None)
        return self.error(f"{message}: {name}")


class _CrashWritable(WritableFile):
    def __init__(self, fs: "CrashFS", inner: WritableFile, track: _Track) -> None:
        self._fs = fs
        self._inner = inner
        self._track = track
        self._gen = fs._gen
        self.name = track.name

    @property
    def size(self) -> int:
        return self._inner.size

    def _check(self) -> None:
        if self._gen != self._fs._gen:
            raise ClosedError(f"file {self.name} was invalidated by a simulated crash")

    def append(self, data: BytesLike) -> None:
        check_data(data)
        self._check()
        self._fs._maybe_fail("append", self._track.name)
        self._inner.append(data)
        with self._fs._mu:
            self._track.length += len(memoryview(data).cast("B"))

    def flush(self) -> None:
        self._check()
        self._fs._maybe_fail("flush", self._track.name)
        self._inner.flush()

    def sync(self) -> None:
        self._check()
        self._fs._maybe_fail("sync", self._track.name)
        self._inner.sync()
        with self._fs._mu:
            self._track.synced = self._track.length
            self._track.durable = True

    def close(self) -> None:
        if self._gen == self._fs._gen:
            with self._fs._mu:
                self._fs._handles.discard(self)
            self._inner.close()


class _CrashReader(RandomAccessFile):
    def __init__(self, fs: "CrashFS", inner: RandomAccessFile, name: str) -> None:
        self._fs = fs
        self._inner = inner
        self._gen = fs._gen
        self.name = name

    def _check(self) -> None:
        if self._gen != self._fs._gen:
            raise ClosedError(f"file {self.name} was invalidated by a simulated crash")

    @property
    def size(self) -> int:
        self._check()
        return self._inner.size

    def read(self, offset: int, length: int) -> bytes:
        check_int(offset, "offset")
        check_int(length, "length")
        self._check()
        self._fs._maybe_fail("read", self.name)
        return self._inner.read(offset, length)

    def close(self) -> None:
        if self._gen == self._fs._gen:
            with self._fs._mu:
                self._fs._handles.discard(self)
            self._inner.close()


class _CrashLock(FileLock):
    def __init__(self, fs: "CrashFS", inner: FileLock, name: str) -> None:
        self._fs = fs
        self._inner = inner
        self._gen = fs._gen
        self.name = name

    def release(self) -> None:
        if self._gen == self._fs._gen:
            with self._fs._mu:
                self._fs._handles.discard(self)
            self._inner.release()


class CrashFS(FileSystem):
    """Wraps ``inner`` and simulates crashes (module docstring).

    ``reopen``: how to get a fresh inner file system after a crash, called
    with the old one (default: remount a ``BlockFS``'s device, keep any other
    file system object).  ``inner`` is the current inner file system.
    """

    def __init__(self, inner: FileSystem,
                 reopen: Optional[Callable[[FileSystem], FileSystem]] = None) -> None:
        if not isinstance(inner, FileSystem):
            raise ArgumentTypeError(f"inner must be a FileSystem, got {type(inner).__name__}")
        if reopen is not None and not callable(reopen):
            raise ArgumentTypeError("reopen must be callable")
        self.inner = inner
        self.name = f"crash:{inner.name}"
        self._reopen = reopen
        self._mu = threading.RLock()
        self._tracks: dict[str, _Track] = {}
        self._rules: list[ErrorRule] = []
        self._handles: set[object] = set()
        self._gen = 0
        self._closed = False

    # -- fault injection ----------------------------------------------------
    def inject_error(self, op: str, name: NameMatch = None,
                     error: Union[type, Error] = StorageIOError,
                     count: Optional[int] = 1) -> ErrorRule:
        """Make the next ``count`` (None: every) ``op`` calls on files
        matching ``name`` raise ``error`` before taking effect."""
        if not isinstance(op, str):
            raise ArgumentTypeError(f"op must be a str, got {type(op).__name__}")
        if op not in OPS:
            raise InvalidArgumentError(f"op must be one of {sorted(OPS)}, got {op!r}")
        if name is not None and not isinstance(name, str) and not callable(name):
            raise ArgumentTypeError("name must be None, a glob pattern or a predicate")
        if isinstance(error, type):
            if not issubclass(error, Error):
                raise ArgumentTypeError("error must be a subclass or an instance of blockdev.errors.Error")
        elif not isinstance(error, Error):
            raise ArgumentTypeError("error must be a subclass or an instance of blockdev.errors.Error")
        if count is not None:
            check_int(count, "count", 1)
        rule = ErrorRule(op, name, error, count)
        with self._mu:
            self._rules.append(rule)
        return rule

    def clear_errors(self) -> None:
        """Remove every injection rule."""
        with self._mu:
            self._rules.clear()

    def _maybe_fail(self, op: str, name: str) -> None:
        with self._mu:
            for rule in self._rules:
                if rule.matches(op, name):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                    rule.hits += 1
                    raise rule.make(op, name)

    # -- tracking -----------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"{self.name} is closed")

    def _track(self, name: str) -> Optional[_Track]:
        """The record of ``name``; a file CrashFS never saw is recorded as
        fully durable at its current size."""
        t = self._tracks.get(name)
        if t is None and self.inner.exists(name):
            size = self.inner.size(name)
            t = _Track(name, size, size, True)
            self._tracks[name] = t
        return t

    def synced_length(self, name: str) -> int:
        """Bytes of ``name`` a crash cannot take away."""
        check_name(name)
        with self._mu:
            t = self._track(name)
            if t is None:
                raise NotFoundError(f"no such file: {name} in {self.name}")
            return t.synced if t.durable else 0

    # -- FileSystem ---------------------------------------------------------
    @property
    def create_mapped(self) -> Optional[Callable[[str], WritableFile]]:
        """Present when the wrapped file system has it (the DB then treats
        this one as a PosixFS: it defers syncing old logs to the next sync
        write); files are created by ``create`` -- the crash model is the
        same for mapped and plain appends."""
        return self.create if getattr(self.inner, "create_mapped", None) is not None else None

    def create(self, name: str) -> WritableFile:
        check_name(name)
        self._check_open()
        self._maybe_fail("create", name)
        with self._mu:
            replaced = self._track(name) is not None
            inner = self.inner.create(name)
            t = _Track(name, 0, 0, replaced)  # a replacement is durable at once
            self._tracks[name] = t
            w = _CrashWritable(self, inner, t)
            self._handles.add(w)
            return w

    def open(self, name: str) -> RandomAccessFile:
        check_name(name)
        self._check_open()
        self._maybe_fail("open", name)
        with self._mu:
            inner = self.inner.open(name)
            self._track(name)
            r = _CrashReader(self, inner, name)
            self._handles.add(r)
            return r

    def exists(self, name: str) -> bool:
        check_name(name)
        self._check_open()
        self._maybe_fail("exists", name)
        return self.inner.exists(name)

    def size(self, name: str) -> int:
        check_name(name)
        self._check_open()
        self._maybe_fail("size", name)
        return self.inner.size(name)

    def list(self) -> list[str]:
        self._check_open()
        self._maybe_fail("list", "")
        return self.inner.list()

    def rename(self, src: str, dst: str) -> None:
        check_name(src, "src")
        check_name(dst, "dst")
        self._check_open()
        self._maybe_fail("rename", src)
        with self._mu:
            t = self._track(src)
            self.inner.rename(src, dst)
            if t is not None and src != dst:
                del self._tracks[src]
                t.name = dst
                self._tracks[dst] = t
            if t is not None:
                t.durable = True

    def delete(self, name: str) -> None:
        check_name(name)
        self._check_open()
        self._maybe_fail("delete", name)
        with self._mu:
            self.inner.delete(name)
            self._tracks.pop(name, None)

    def lock(self, name: str) -> FileLock:
        check_name(name)
        self._check_open()
        self._maybe_fail("lock", name)
        with self._mu:
            lk = _CrashLock(self, self.inner.lock(name), name)
            self._handles.add(lk)
            return lk

    def link_or_copy(self, name: str, dest: FileSystem, dest_name: str) -> None:
        check_name(name)
        check_name(dest_name, "dest_name")
        if not isinstance(dest, FileSystem):
            raise ArgumentTypeError(f"dest must be a FileSystem, got {type(dest).__name__}")
        self._check_open()
        self._maybe_fail("link_or_copy", name)
        if isinstance(dest, CrashFS):
            self.inner.link_or_copy(name, dest.inner, dest_name)
            with dest._mu:
                size = dest.inner.size(dest_name)
                dest._tracks[dest_name] = _Track(dest_name, size, size, True)
        else:
            self.inner.link_or_copy(name, dest, dest_name)

    def sync_dir(self) -> None:
        self._check_open()
        self._maybe_fail("sync_dir", "")
        with self._mu:
            self.inner.sync_dir()
            for t in self._tracks.values():
                t.durable = True

    def close(self) -> None:
        """Close the inner file system (a clean shutdown, not a crash)."""
        with self._mu:
            if not self._closed:
                self._closed = True
                self.inner.close()

    # -- the crash ----------------------------------------------------------
    def crash(self, mode: str = "all", seed: Optional[int] = None) -> CrashReport:
        """Simulate a power loss (module docstring) and return what it
        dropped.  Afterwards the CrashFS is usable with a fresh inner state;
        every earlier handle and lock is dead."""
        if not isinstance(mode, str):
            raise ArgumentTypeError(f"mode must be a str, got {type(mode).__name__}")
        if mode not in ("all", "random"):
            raise InvalidArgumentError(f"mode must be 'all' or 'random', got {mode!r}")
        if seed is not None:
            check_int(seed, "seed")
        self._check_open()
        rng = random.Random(seed)
        with self._mu:
            plan: dict[str, Optional[int]] = {}
            for name in sorted(self._tracks):
                t = self._tracks[name]
                t._check()
                if not t.durable:
                    keep: Optional[int] = None
                    if mode == "random" and rng.random() < 0.5:
                        keep = rng.randint(0, t.length)
                else:
                    keep = t.synced
                    if mode == "random" and t.length > t.synced:
                        keep = rng.randint(t.synced, t.length)
                plan[name] = keep
            # The process dies: its handles and locks go with it.
            handles, self._handles = self._handles, set()
            self._gen += 1
            if isinstance(self.inner, PosixFS):
                report = self._crash_posix(self.inner, plan, mode, seed)
            else:
                report = self._crash_generic(plan, mode, seed, handles)
            for h in handles:
                # PosixFS handles are plain descriptors; drop them quietly.
                inner_h = getattr(h, "_inner", None)
                if isinstance(self.inner, PosixFS) and inner_h is not None:
                    if isinstance(inner_h, FileLock):
                        inner_h.release()
                    else:
                        inner_h.close()
            if self._reopen is not None:
                self.inner = self._reopen(self.inner)
            self._tracks = {}
            for name, keep in plan.items():
                if keep is not None:
                    self._tracks[name] = _Track(name, keep, keep, True)
            return report

    def _crash_posix(self, inner: PosixFS, plan: dict[str, Optional[int]], mode: str,
                     seed: Optional[int]) -> CrashReport:
        dropped: list[str] = []
        cut: list[tuple[str, int, int]] = []
        for name, keep in plan.items():
            path = os.path.join(inner.root, name)
            if not os.path.exists(path):
                continue
            if keep is None:
                os.unlink(path)
                dropped.append(name)
                continue
            size = os.path.getsize(path)
            if size > keep:
                os.truncate(path, keep)
                cut.append((name, size, keep))
        inner.sync_dir()
        return CrashReport(mode, seed, tuple(dropped), tuple(cut))

    def _crash_generic(self, plan: dict[str, Optional[int]], mode: str, seed: Optional[int],
                       handles: set[object]) -> CrashReport:
        inner = self.inner
        # Unsynced bytes a random crash keeps must be saved before the crash
        # (a BlockFS remount forgets everything not journaled).
        extra: dict[str, bytes] = {}
        for name, keep in plan.items():
            t = self._tracks[name]
            base = t.synced if t.durable else 0
            if keep is not None and keep > base and inner.exists(name):
                with inner.open(name) as rf:
                    extra[name] = rf.read(base, keep - base)
        before = {name: (inner.size(name) if inner.exists(name) else None) for name in plan}
        if isinstance(inner, BlockFS):
            inner._abandon(power_loss=True)
            inner = BlockFS.mount(inner.device)
        else:
            for h in handles:
                inner_h = getattr(h, "_inner", None)
                if isinstance(inner_h, FileLock):
                    inner_h.release()
                elif inner_h is not None:
                    inner_h.close()
        self.inner = inner
        dropped: list[str] = []
        cut: list[tuple[str, int, int]] = []
        for name, keep in plan.items():
            t = self._tracks[name]
            base = t.synced if t.durable else 0
            exists = inner.exists(name)
            if t.durable and not exists:
                raise CorruptionError(
                    f"crash guarantee violated: durable file {name} is gone after the crash", inner.name)
            if keep is None:
                if exists:
                    inner.delete(name)
                if before[name] is not None:
                    dropped.append(name)
                continue
            size = inner.size(name) if exists else 0
            if t.durable and size < base:
                raise CorruptionError(
                    f"crash guarantee violated: {name} has {size} bytes after the crash, "
                    f"{base} were synced", inner.name)
            if before[name] is not None and before[name] != keep:
                cut.append((name, before[name], keep))
            if exists and size == keep and name not in extra:
                continue
            prefix = b""
            if base:
                with inner.open(name) as rf:
                    prefix = rf.read(0, base)
            w = inner.create(name)
            try:
                w.append(prefix + extra.get(name, b""))
                w.sync()
            finally:
                w.close()
        inner.sync_dir()
        return CrashReport(mode, seed, tuple(dropped), tuple(cut))
