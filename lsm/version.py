"""Versions: the shape of the LSM tree as one immutable value, and its log.

* ``FileMetaData`` describes one SSTable: number, size, key extents (internal
  keys, *including* the extents of its range tombstones), sequence range and
  entry counts.
* ``VersionEdit`` is a delta: scalar state (log number, next file number,
  last sequence, format version), compaction pointers, files deleted from and
  added to levels.  It is the MANIFEST record (byte layout below).
* ``Version`` is the whole tree: ``levels[0]`` holds overlapping files newest
  first (by largest sequence, then number); ``levels[1:]`` hold files sorted
  by smallest key and pairwise disjoint in internal-key order.  A Version is
  never modified: ``apply(edit)`` returns a new one, and readers holding the
  old one keep a consistent view.
* ``VersionSet`` owns the MANIFEST and CURRENT files and the current Version.

Range-tombstone extents.  A range tombstone ``[start, end)`` stored in a
file makes the file's extent reach ``end`` *exclusively*.  Its largest key
is then the *sentinel* ``end || ff ff ff ff ff ff ff ff`` (sequence 2**56-1,
kind 0xFF), which sorts before every real entry of user key ``end``.  So two
files of one level may share the boundary user key ``end`` (one ends at the
sentinel, the next starts at a real entry of ``end``) and still be disjoint
in internal order; ``files_for_get``/``overlapping`` treat a sentinel largest
key as exclusive.

VersionEdit encoding (do not change: on-disk; docs/format.md "MANIFEST and
CURRENT")::

    edit   = field*
    field  = tag varint32 | payload
    tag 1  format_version   varint32
    tag 2  log_number       varint64
    tag 3  next_file_number varint64
    tag 4  last_sequence    varint64
    tag 5  compact_pointer  varint32 level | varint32 n | internal key[n]
    tag 6  deleted_file     varint32 level | varint64 number
    tag 7  new_file         varint32 level | varint64 number | varint64 size
                            | varint32 n | smallest[n] | varint32 m | largest[m]
                            | varint64 smallest_seq | varint64 largest_seq
                            | varint64 num_entries | varint64 num_deletions

Tags 1-4 appear at most once per edit.  Fields are written in tag order
(compact pointers, deletions and additions in the order given).  An unknown
tag, a truncated field, a repeated scalar tag or an impossible value is a
``CorruptionError`` at the offset of the field.

MANIFEST: a log (lsm/wal.py format) of encoded edits.  Its first record is a
full snapshot (every scalar, every compaction pointer and every live file)
carrying ``format_version``; later records are deltas.  ``CURRENT`` holds
``"MANIFEST-%06d\\n"``; it is replaced by writing ``%06d.dbtmp``, syncing it
and renaming it over ``CURRENT`` (atomic and durable).  The file layer has no
append-to-existing-file operation, so every ``recover`` (DB open) writes a
fresh MANIFEST holding one snapshot and deletes the old one; while running, a
MANIFEST larger than ``manifest_rollover_bytes`` is likewise replaced by a
fresh snapshot at the next ``log_and_apply``.
"""

from __future__ import annotations

import dataclasses
import re
import struct
import threading
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Iterable

from blockdev.errors import (
    ArgumentTypeError,
    ClosedError,
    CorruptionError,
    Error,
    InvalidArgumentError,
    NotFoundError,
    UnsupportedFormatError,
)
from lsm import _native
from lsm import filenames as fn
from lsm.dbformat import MAX_SEQUENCE, TRAILER_SIZE, internal_sort_key
from lsm.options import Options

__all__ = [
    "FileMetaData", "VersionEdit", "Version", "VersionSet",
    "FORMAT_VERSION", "SENTINEL_TRAILER", "MANIFEST_ROLLOVER_BYTES",
    "is_sentinel", "sentinel_key", "compare_ikeys",
]

FORMAT_VERSION = 1                 # do not change: on-disk (bump for a new MANIFEST format)
TAG_FORMAT_VERSION = 1             # do not change: on-disk
TAG_LOG_NUMBER = 2                 # do not change: on-disk
TAG_NEXT_FILE_NUMBER = 3           # do not change: on-disk
TAG_LAST_SEQUENCE = 4              # do not change: on-disk
TAG_COMPACT_POINTER = 5            # do not change: on-disk
TAG_DELETED_FILE = 6               # do not change: on-disk
TAG_NEW_FILE = 7                   # do not change: on-disk
SENTINEL_TRAILER = b"\xff" * 8     # do not change: on-disk (exclusive end of an extent)
MANIFEST_ROLLOVER_BYTES = 4 << 20
MAX_LEVELS = 64
_U64_MAX = (1 << 64) - 1
_CURRENT_RE = re.compile(r"MANIFEST-([0-9]{6,20})\n\Z")
_TRAILER = struct.Struct("<Q")


def is_sentinel(ikey: bytes) -> bool:
    """True if ``ikey`` is an exclusive-end sentinel (trailer all ones)."""
    return ikey[-8:] == SENTINEL_TRAILER


def sentinel_key(user_key: bytes) -> bytes:
    """The largest-key sentinel of an extent ending (exclusively) at ``user_key``."""
    return user_key + SENTINEL_TRAILER


def compare_ikeys(a: bytes, b: bytes) -> int:
    """Three-way compare in internal order (sentinels sort first within their user key)."""
    ka, kb = internal_sort_key(a), internal_sort_key(b)
    return -1 if ka < kb else (1 if ka > kb else 0)


# ---------------------------------------------------------------------------
# FileMetaData


@dataclass(frozen=True)
class FileMetaData:
    """One SSTable.  ``smallest``/``largest`` are internal keys covering every
    point entry and range tombstone of the file (``largest`` may be a sentinel)."""

    number: int
    size: int
    smallest: bytes
    largest: bytes
    smallest_seq: int
    largest_seq: int
    num_entries: int
    num_deletions: int

    def __post_init__(self) -> None:
        for name in ("number", "size", "smallest_seq", "largest_seq", "num_entries",
                     "num_deletions"):
            value = getattr(self, name)
            if type(value) is not int:
                raise ArgumentTypeError(f"{name} must be an int, not {type(value).__name__}")
            if not 0 <= value <= _U64_MAX:
                raise InvalidArgumentError(f"{name} out of range: {value}")
        if self.number == 0:
            raise InvalidArgumentError("file number must be >= 1")
        for name in ("smallest", "largest"):
            value = getattr(self, name)
            if type(value) is not bytes:
                raise ArgumentTypeError(f"{name} must be bytes, not {type(value).__name__}")
            if len(value) < TRAILER_SIZE:
                raise InvalidArgumentError(f"{name} is not an internal key")
        if internal_sort_key(self.smallest) > internal_sort_key(self.largest):
            raise InvalidArgumentError(f"file {self.number}: smallest > largest")
        if self.smallest_seq > self.largest_seq:
            raise InvalidArgumentError(f"file {self.number}: smallest_seq > largest_seq")

    @property
    def smallest_user(self) -> bytes:
        return self.smallest[:-8]

    @property
    def largest_user(self) -> bytes:
        return self.largest[:-8]

    def contains(self, user_key: bytes) -> bool:
        """True if ``user_key`` lies inside the extent.  O(key length)."""
        if user_key < self.smallest[:-8]:
            return False
        lu = self.largest[:-8]
        return user_key < lu or (user_key == lu and not is_sentinel(self.largest))

    def overlaps(self, start: bytes | None, stop: bytes | None) -> bool:
        """True if the extent meets the user-key range ``[start, stop]`` (None = unbounded)."""
        if stop is not None and stop < self.smallest[:-8]:
            return False
        if start is None:
            return True
        lu = self.largest[:-8]
        return start < lu or (start == lu and not is_sentinel(self.largest))


# ---------------------------------------------------------------------------
# VersionEdit


def _put_varint(out: list[bytes], value: int) -> None:
    out.append(_native.encode_varint(value))


def _put_bytes(out: list[bytes], data: bytes) -> None:
    out.append(_native.encode_varint(len(data)))
    out.append(data)


@dataclass(frozen=True)
class VersionEdit:
    """A delta between Versions, and the MANIFEST record (module docstring)."""

    log_number: int | None = None
    next_file_number: int | None = None
    last_sequence: int | None = None
    compact_pointers: tuple[tuple[int, bytes], ...] = ()
    deleted_files: tuple[tuple[int, int], ...] = ()            # (level, number)
    new_files: tuple[tuple[int, FileMetaData], ...] = ()
    format_version: int | None = None

    def __post_init__(self) -> None:
        for name, hi in (("log_number", _U64_MAX), ("next_file_number", _U64_MAX),
                         ("last_sequence", MAX_SEQUENCE), ("format_version", 0xFFFFFFFF)):
            value = getattr(self, name)
            if value is None:
                continue
            if type(value) is not int:
                raise ArgumentTypeError(
                    f"{name} must be an int or None, not {type(value).__name__}")
            if not 0 <= value <= hi:
                raise InvalidArgumentError(f"{name} out of range: {value}")
        for name in ("compact_pointers", "deleted_files", "new_files"):
            if not isinstance(getattr(self, name), tuple):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        for level, key in self.compact_pointers:
            _check_level(level)
            if type(key) is not bytes or len(key) < TRAILER_SIZE:
                raise InvalidArgumentError("compact pointer must be an internal key")
        for level, number in self.deleted_files:
            _check_level(level)
            if type(number) is not int or not 0 < number <= _U64_MAX:
                raise InvalidArgumentError(f"bad deleted file number {number!r}")
        for level, meta in self.new_files:
            _check_level(level)
            if not isinstance(meta, FileMetaData):
                raise ArgumentTypeError("new_files entries must be (level, FileMetaData)")

    def encode(self) -> bytes:
        """The MANIFEST record.  O(size of the edit)."""
        out: list[bytes] = []
        if self.format_version is not None:
            _put_varint(out, TAG_FORMAT_VERSION)
            _put_varint(out, self.format_version)
        for tag, value in ((TAG_LOG_NUMBER, self.log_number),
                           (TAG_NEXT_FILE_NUMBER, self.next_file_number),
                           (TAG_LAST_SEQUENCE, self.last_sequence)):
            if value is not None:
                _put_varint(out, tag)
                _put_varint(out, value)
        for level, key in self.compact_pointers:
            _put_varint(out, TAG_COMPACT_POINTER)
            _put_varint(out, level)
            _put_bytes(out, key)
        for level, number in self.deleted_files:
            _put_varint(out, TAG_DELETED_FILE)
            _put_varint(out, level)
            _put_varint(out, number)
        for level, f in self.new_files:
            _put_varint(out, TAG_NEW_FILE)
            _put_varint(out, level)
            _put_varint(out, f.number)
            _put_varint(out, f.size)
            _put_bytes(out, f.smallest)
            _put_bytes(out, f.largest)
            for v in (f.smallest_seq, f.largest_seq, f.num_entries, f.num_deletions):
                _put_varint(out, v)
        return b"".join(out)

    @staticmethod
    def decode(data: bytes, file: str | None = None, offset: int | None = None
               ) -> "VersionEdit":
        """Parse a record; CorruptionError(msg, file, offset + position) if malformed."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ArgumentTypeError(f"data must be bytes-like, not {type(data).__name__}")
        data = bytes(data)
        base = offset or 0
        n = len(data)
        p = 0
        field_start = 0

        def bad(msg: str, at: int | None = None) -> CorruptionError:
            return CorruptionError(f"version edit: {msg}", file,
                                   base + (field_start if at is None else at))

        def v32() -> int:
            nonlocal p
            try:
                value, p = _native.decode_varint32(data, p)
            except CorruptionError as exc:
                raise bad("bad varint", exc.offset if exc.offset is not None else p) from None
            return value

        def v64() -> int:
            nonlocal p
            try:
                value, p = _native.decode_varint64(data, p)
            except CorruptionError as exc:
                raise bad("bad varint", exc.offset if exc.offset is not None else p) from None
            return value

        def blob() -> bytes:
            nonlocal p
            length = v32()
            if p + length > n:
                raise bad("key runs past the end of the record")
            value = data[p:p + length]
            p += length
            return value

        scalars: dict[int, int] = {}
        pointers: list[tuple[int, bytes]] = []
        deleted: list[tuple[int, int]] = []
        added: list[tuple[int, FileMetaData]] = []
        while p < n:
            field_start = p
            tag = v32()
            if tag in (TAG_FORMAT_VERSION, TAG_LOG_NUMBER, TAG_NEXT_FILE_NUMBER,
                       TAG_LAST_SEQUENCE):
                if tag in scalars:
                    raise bad(f"tag {tag} repeated")
                scalars[tag] = v32() if tag == TAG_FORMAT_VERSION else v64()
                if tag == TAG_LAST_SEQUENCE and scalars[tag] > MAX_SEQUENCE:
                    raise bad("last sequence out of range")
            elif tag == TAG_COMPACT_POINTER:
                level = v32()
                key = blob()
                if level >= MAX_LEVELS or len(key) < TRAILER_SIZE:
                    raise bad("bad compact pointer")
                pointers.append((level, key))
            elif tag == TAG_DELETED_FILE:
                level = v32()
                number = v64()
                if level >= MAX_LEVELS or number == 0:
                    raise bad("bad deleted file")
                deleted.append((level, number))
            elif tag == TAG_NEW_FILE:
                level = v32()
                number = v64()
                size = v64()
                smallest = blob()
                largest = blob()
                nums = (v64(), v64(), v64(), v64())
                if level >= MAX_LEVELS:
                    raise bad("bad level")
                try:
                    meta = FileMetaData(number, size, smallest, largest, *nums)
                except InvalidArgumentError as exc:
                    raise bad(f"bad new file: {exc}") from None
                added.append((level, meta))
            else:
                raise bad(f"unknown tag {tag}")
        return VersionEdit(
            log_number=scalars.get(TAG_LOG_NUMBER),
            next_file_number=scalars.get(TAG_NEXT_FILE_NUMBER),
            last_sequence=scalars.get(TAG_LAST_SEQUENCE),
            compact_pointers=tuple(pointers), deleted_files=tuple(deleted),
            new_files=tuple(added), format_version=scalars.get(TAG_FORMAT_VERSION))


def _check_level(level: object) -> None:
    if type(level) is not int:
        raise ArgumentTypeError(f"level must be an int, not {type(level).__name__}")
    if not 0 <= level < MAX_LEVELS:
        raise InvalidArgumentError(f"level out of range: {level}")


# ---------------------------------------------------------------------------
# Version


def _l0_order(f: FileMetaData) -> tuple[int, int]:
    return (-f.largest_seq, -f.number)


def _level_order(f: FileMetaData) -> tuple[bytes, int]:
    return internal_sort_key(f.smallest)


def _upper_bound(f: FileMetaData) -> tuple[bytes, int]:
    """Sort key of a file's upper extent: (largest user key, 0 if exclusive else 1)."""
    return (f.largest[:-8], 0 if is_sentinel(f.largest) else 1)


@dataclass(frozen=True)
class Version:
    """Immutable LSM shape: ``levels[0]`` newest first, ``levels[1:]`` sorted, disjoint."""

    levels: tuple[tuple[FileMetaData, ...], ...]
    _bounds: tuple[list[tuple[bytes, int]], ...] = field(
        init=False, repr=False, compare=False, default=())
    _lows: tuple[list[bytes], ...] = field(init=False, repr=False, compare=False, default=())
    # per level: does any file hold deletions (point or range)?  Lets an
    # iterator skip the range-tombstone collection of levels without any.
    _dels: tuple[bool, ...] = field(init=False, repr=False, compare=False, default=())
    # for tables_for_get: L0 as (low, bound, file) newest first, and each
    # non-empty deeper level as (upper user keys, upper-is-exclusive flags,
    # lower user keys, files) -- bytes bisection, no tuple compares
    _l0_get: tuple = field(init=False, repr=False, compare=False, default=())
    _deep_get: tuple = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        if not isinstance(self.levels, tuple) or not 1 <= len(self.levels) <= MAX_LEVELS:
            raise InvalidArgumentError("levels must be a tuple of 1..64 levels")
        object.__setattr__(self, "_bounds",
                           tuple([_upper_bound(f) for f in files] for files in self.levels))
        object.__setattr__(self, "_lows",
                           tuple([f.smallest[:-8] for f in files] for files in self.levels))
        object.__setattr__(self, "_dels",
                           tuple(any(f.num_deletions for f in files) for files in self.levels))
        if self.levels:
            object.__setattr__(self, "_l0_get", tuple(
                (lo, b, f) for lo, b, f in zip(self._lows[0], self._bounds[0], self.levels[0])))
            object.__setattr__(self, "_deep_get", tuple(
                ([b[0] for b in self._bounds[lv]], [b[1] == 0 for b in self._bounds[lv]],
                 self._lows[lv], self.levels[lv])
                for lv in range(1, len(self.levels)) if self.levels[lv]))

    @classmethod
    def empty(cls, num_levels: int) -> "Version":
        return cls(tuple(() for _ in range(num_levels)))

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    def files_for_get(self, user_key: bytes) -> list[tuple[int, FileMetaData]]:
        """Files that may hold ``user_key``, in search order (newest data first):
        every L0 file whose extent contains it (newest first), then at most one
        file per deeper level.  O(L0 + levels x log files)."""
        probe = (user_key, 1)
        levels = self.levels
        bounds = self._bounds
        lows = self._lows
        out = []
        if levels[0]:
            b0, l0 = bounds[0], lows[0]
            out = [(0, f) for i, f in enumerate(levels[0])
                   if l0[i] <= user_key and b0[i] >= probe]
        for level in range(1, len(levels)):
            files = levels[level]
            if not files:
                continue
            i = bisect_left(bounds[level], probe)
            if i < len(files) and lows[level][i] <= user_key:
                out.append((level, files[i]))
        return out

    def tables_for_get(self, user_key: bytes) -> list[FileMetaData]:
        """The files of ``files_for_get(user_key)`` without their levels (the
        point-lookup hot path).  O(L0 + levels x log files).

        Requires: ``user_key`` is bytes (not checked here)."""
        probe = (user_key, 1)
        out = [f for lo, b, f in self._l0_get if lo <= user_key and b >= probe]
        for highs, excl, lows, files in self._deep_get:
            i = bisect_left(highs, user_key)
            if i < len(files) and highs[i] == user_key and excl[i]:
                i += 1          # its extent stops just before user_key
            if i < len(files) and lows[i] <= user_key:
                out.append(files[i])
        return out

    def overlapping(self, level: int, start: bytes | None, stop: bytes | None
                    ) -> list[FileMetaData]:
        """Files of ``level`` whose extent meets user keys ``[start, stop]``
        (stop inclusive; None = unbounded), in level order.
        O(L0) for level 0, O(log n + k) deeper."""
        if type(level) is not int or not 0 <= level < len(self.levels):
            raise InvalidArgumentError(f"level out of range: {level!r}")
        files = self.levels[level]
        if level == 0:
            return [f for f in files if f.overlaps(start, stop)]
        i = 0 if start is None else bisect_left(self._bounds[level], (start, 1))
        out = []
        while i < len(files) and (stop is None or files[i].smallest[:-8] <= stop):
            out.append(files[i])
            i += 1
        return out

    def level_has_deletions(self, level: int) -> bool:
        """True if some file of ``level`` holds deletions or range tombstones.  O(1)."""
        return self._dels[level]

    def level_bytes(self, level: int) -> int:
        """Total file size of ``level``.  O(files in level)."""
        return sum(f.size for f in self.levels[level])

    def num_files(self, level: int) -> int:
        return len(self.levels[level])

    def all_files(self) -> Iterable[tuple[int, FileMetaData]]:
        for level, files in enumerate(self.levels):
            for f in files:
                yield level, f

    def apply(self, edit: VersionEdit) -> "Version":
        """The Version after ``edit``.  O(total files).

        Requires: every deleted file present at its level; no added number
        already present; deeper levels stay disjoint (InvalidArgumentError).
        """
        return self.apply_many([edit])

    def apply_many(self, edits: Iterable[VersionEdit]) -> "Version":
        """The Version after every edit in order.  O(total files + edit sizes)."""
        levels = [dict((f.number, f) for f in files) for files in self.levels]
        where = {f.number: lv for lv, files in enumerate(self.levels) for f in files}
        for edit in edits:
            for level, number in edit.deleted_files:
                if level >= len(levels) or levels[level].pop(number, None) is None:
                    raise InvalidArgumentError(
                        f"edit deletes file {number} that is not at level {level}")
                del where[number]
            for level, meta in edit.new_files:
                if level >= len(levels):
                    raise InvalidArgumentError(
                        f"file {meta.number} at level {level}, but num_levels is {len(levels)}")
                if meta.number in where:
                    raise InvalidArgumentError(f"file {meta.number} added twice")
                levels[level][meta.number] = meta
                where[meta.number] = level
        out = [tuple(sorted(levels[0].values(), key=_l0_order))]
        for lv in levels[1:]:
            out.append(tuple(sorted(lv.values(), key=_level_order)))
        version = Version(tuple(out))
        version._check_disjoint()
        return version

    def _check_disjoint(self) -> None:
        for level in range(1, len(self.levels)):
            files = self.levels[level]
            for a, b in zip(files, files[1:]):
                if not internal_sort_key(a.largest) < internal_sort_key(b.smallest):
                    raise InvalidArgumentError(
                        f"files {a.number} and {b.number} overlap at level {level}")

    def _check(self) -> None:
        """Assert the invariants: ordering, disjointness, unique numbers."""
        seen: set[int] = set()
        for files in self.levels:
            for f in files:
                assert f.number not in seen, f"file {f.number} twice"
                seen.add(f.number)
                assert internal_sort_key(f.smallest) <= internal_sort_key(f.largest)
        l0 = self.levels[0]
        assert list(l0) == sorted(l0, key=_l0_order), "L0 newest first"
        for level in range(1, len(self.levels)):
            files = self.levels[level]
            assert list(files) == sorted(files, key=_level_order)
            assert self._bounds[level] == [_upper_bound(f) for f in files]
        for level, files in enumerate(self.levels):
            assert self._lows[level] == [f.smallest[:-8] for f in files]
        self._check_disjoint()

    def describe(self) -> str:
        """One line per non-empty level: ``L<n>: <files> files <bytes> bytes``."""
        lines = [f"L{lv}: {len(files)} files {sum(f.size for f in files)} bytes"
                 for lv, files in enumerate(self.levels) if files]
        return "\n".join(lines) if lines else "(empty)"


# ---------------------------------------------------------------------------
# VersionSet


class VersionSet:
    """The current Version plus MANIFEST/CURRENT persistence (module docstring).

    Thread-safe: ``log_and_apply``, ``new_file_number`` and the writers of
    the scalar state serialise on one lock; ``current`` is swapped by one
    assignment, so readers just read it.
    """

    def __init__(self, fs: object, options: Options) -> None:
        if not isinstance(options, Options):
            raise ArgumentTypeError(f"options must be an Options, not {type(options).__name__}")
        for attr in ("create", "open", "rename", "exists", "delete"):
            if not hasattr(fs, attr):
                raise ArgumentTypeError("fs must be a blockdev FileSystem")
        self.fs = fs
        self.options = options
        self.current = Version.empty(options.num_levels)
        self.last_sequence = 0
        self.log_number = 0
        self.compact_pointers: dict[int, bytes] = {}
        self.manifest_number = 0
        self.manifest_rollover_bytes = MANIFEST_ROLLOVER_BYTES
        self._next_file = 2
        self._lock = threading.RLock()
        self._writer: object | None = None
        self._error: BaseException | None = None
        self._closed = False

    # -- numbers ---------------------------------------------------------

    @property
    def next_file_number(self) -> int:
        return self._next_file

    def new_file_number(self) -> int:
        """Allocate a file number (persisted with the next edit).  O(1)."""
        with self._lock:
            n = self._next_file
            self._next_file = n + 1
            return n

    def mark_file_number_used(self, number: int) -> None:
        """Make sure ``number`` is never handed out (e.g. a log found on disk)."""
        with self._lock:
            if number >= self._next_file:
                self._next_file = number + 1

    @property
    def manifest_name(self) -> str:
        return fn.manifest_file_name(self.manifest_number) if self.manifest_number else ""

    def live_file_numbers(self) -> set[int]:
        """Numbers of the tables in the current Version.  O(files)."""
        return {f.number for _, f in self.current.all_files()}

    # -- creating / recovering -------------------------------------------

    def _snapshot_edit(self, version: Version) -> VersionEdit:
        return VersionEdit(
            format_version=FORMAT_VERSION, log_number=self.log_number,
            next_file_number=self._next_file, last_sequence=self.last_sequence,
            compact_pointers=tuple(sorted(self.compact_pointers.items())),
            new_files=tuple(version.all_files()))

    def _write_new_manifest(self, version: Version) -> None:
        """Write a MANIFEST holding a snapshot of the state with ``version``,
        point CURRENT at it, close and delete the previous one."""
        from lsm.wal import LogWriter

        number = self.new_file_number()
        name = fn.manifest_file_name(number)
        file = self.fs.create(name)
        writer = LogWriter(file, name)
        try:
            writer.add_record(self._snapshot_edit(version).encode())
            writer.sync()
            self._set_current(number)
        except BaseException:
            try:
                writer.close()
                self.fs.delete(name)
            except Error:
                pass   # the first error is the one to report
            raise
        old_writer, old_number = self._writer, self.manifest_number
        self._writer = writer
        self.manifest_number = number
        if old_writer is not None:
            old_writer.close()
        if old_number and old_number != number:
            try:
                self.fs.delete(fn.manifest_file_name(old_number))
            except NotFoundError:
                pass

    def _set_current(self, number: int) -> None:
        tmp = fn.temp_file_name(number)
        f = self.fs.create(tmp)
        try:
            try:
                f.append(f"{fn.manifest_file_name(number)}\n".encode())
                f.sync()
            finally:
                f.close()
            self.fs.rename(tmp, fn.CURRENT)
        except BaseException:
            try:
                self.fs.delete(tmp)
            except Error:
                pass   # the first error is the one to report
            raise

    def create_new(self) -> None:
        """Initialise a new, empty database: MANIFEST + CURRENT.

        Requires: no CURRENT in the file system (InvalidArgumentError).
        """
        with self._lock:
            if self.fs.exists(fn.CURRENT):
                raise InvalidArgumentError("create_new: the database already exists (CURRENT)")
            self.current = Version.empty(self.options.num_levels)
            self.last_sequence = 0
            self.log_number = 0
            self.compact_pointers = {}
            self._next_file = 1
            self._write_new_manifest(self.current)

    def read_current(self) -> str:
        """The MANIFEST name CURRENT points at (CorruptionError if malformed)."""
        if not self.fs.exists(fn.CURRENT):
            raise NotFoundError(f"no database here (no {fn.CURRENT})")
        f = self.fs.open(fn.CURRENT)
        try:
            data = f.read(0, 4096)
        finally:
            f.close()
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            text = ""
        m = _CURRENT_RE.match(text)
        if m is None or int(m.group(1)) == 0 or fn.manifest_file_name(int(m.group(1))) != text[:-1]:
            raise CorruptionError("CURRENT does not name a MANIFEST", fn.CURRENT, 0)
        return text[:-1]

    def recover(self, *, read_only: bool = False) -> None:
        """Load the state from CURRENT + MANIFEST; then (unless ``read_only``)
        continue in a fresh MANIFEST.

        A torn MANIFEST tail is ignored; a damaged record before it raises
        CorruptionError(manifest, offset); a newer format raises
        UnsupportedFormatError; no CURRENT raises NotFoundError.
        """
        from lsm.wal import LogReader

        with self._lock:
            name = self.read_current()
            number = fn.parse_file_name(name)[1]  # type: ignore[index]
            if not self.fs.exists(name):
                raise CorruptionError("CURRENT names a missing MANIFEST", name, 0)
            f = self.fs.open(name)
            edits: list[VersionEdit] = []
            scalars: dict[str, int] = {}
            pointers: dict[int, bytes] = {}
            try:
                reader = LogReader(f, name, paranoid=True)
                for record in reader:
                    at = reader.last_record_offset
                    edit = VersionEdit.decode(record, name, at)
                    if not edits:
                        if edit.format_version is None:
                            raise CorruptionError("first MANIFEST record has no format version",
                                                  name, at)
                        if edit.format_version > FORMAT_VERSION:
                            raise UnsupportedFormatError(
                                f"MANIFEST format version {edit.format_version} is newer than "
                                f"{FORMAT_VERSION}", name)
                        if edit.format_version < 1:
                            raise CorruptionError("bad MANIFEST format version", name, at)
                    elif edit.format_version is not None:
                        raise CorruptionError("format version in a later MANIFEST record",
                                              name, at)
                    for key in ("log_number", "next_file_number", "last_sequence"):
                        value = getattr(edit, key)
                        if value is not None:
                            scalars[key] = value
                    pointers.update(edit.compact_pointers)
                    edits.append(edit)
            finally:
                f.close()
            if not edits:
                raise CorruptionError("MANIFEST holds no complete record", name, 0)
            for key in ("log_number", "next_file_number", "last_sequence"):
                if key not in scalars:
                    raise CorruptionError(f"MANIFEST lacks {key}", name, 0)
            max_level = max((lv for e in edits for lv, _ in e.new_files), default=0)
            if max_level >= self.options.num_levels:
                raise InvalidArgumentError(
                    f"the database has files at level {max_level}; num_levels "
                    f"{self.options.num_levels} is too small")
            try:
                version = Version.empty(self.options.num_levels).apply_many(edits)
            except InvalidArgumentError as exc:
                raise CorruptionError(f"MANIFEST edits are inconsistent: {exc}", name, 0) from None
            self.current = version
            self.log_number = scalars["log_number"]
            self.last_sequence = scalars["last_sequence"]
            self.compact_pointers = {lv: k for lv, k in pointers.items()
                                     if lv < self.options.num_levels}
            self.manifest_number = number
            top = max((f.number for _, f in version.all_files()), default=0)
            self._next_file = max(scalars["next_file_number"], top + 1, number + 1)
            if not read_only:
                self._write_new_manifest(version)

    # -- applying --------------------------------------------------------

    def log_and_apply(self, edit: VersionEdit) -> Version:
        """Persist ``edit`` (append + sync the MANIFEST) then install the new
        Version; return it.  The edit is completed with the set's
        next_file_number and last_sequence.  A failed MANIFEST write is raised
        and every later call re-raises it (the DB must reopen).
        """
        if not isinstance(edit, VersionEdit):
            raise ArgumentTypeError(f"edit must be a VersionEdit, not {type(edit).__name__}")
        with self._lock:
            if self._closed:
                raise ClosedError("version set is closed")
            if self._error is not None:
                raise self._error
            if self._writer is None:
                raise ClosedError("version set is not open for writing (read-only recover)")
            if edit.format_version is not None:
                raise InvalidArgumentError("format_version is set by the VersionSet only")
            log_number = self.log_number if edit.log_number is None else edit.log_number
            if log_number < self.log_number:
                raise InvalidArgumentError(
                    f"log_number may not go backwards ({log_number} < {self.log_number})")
            next_file = max(self._next_file, edit.next_file_number or 0)
            last_seq = max(self.last_sequence, edit.last_sequence or 0)
            edit = dataclasses.replace(edit, log_number=log_number, next_file_number=next_file,
                                       last_sequence=last_seq)
            version = self.current.apply(edit)
            old = (self.log_number, self._next_file, self.last_sequence,
                   dict(self.compact_pointers))
            self.log_number, self._next_file, self.last_sequence = (
                log_number, next_file, last_seq)
            self.compact_pointers.update(edit.compact_pointers)
            try:
                if self._writer.size >= self.manifest_rollover_bytes:  # type: ignore[attr-defined]
                    self._write_new_manifest(version)
                else:
                    self._writer.add_record(edit.encode())  # type: ignore[attr-defined]
                    self._writer.sync()  # type: ignore[attr-defined]
            except BaseException as exc:
                self.log_number, self._next_file, self.last_sequence, self.compact_pointers = old
                self._error = exc
                raise
            self.current = version
            return version

    def close(self) -> None:
        """Close the MANIFEST (every record was synced when written).  Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._writer is not None:
                self._writer.close()  # type: ignore[attr-defined]
                self._writer = None

    def _check(self) -> None:
        """Assert invariants of the set and its current Version."""
        self.current._check()
        assert self._next_file > max(self.live_file_numbers() | {self.manifest_number, 0})
        assert 0 <= self.last_sequence <= MAX_SEQUENCE
