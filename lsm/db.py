"""The DB: write path, read path, recovery, background work, file lifecycle.

State
-----
The whole LSM shape is one immutable value, ``_State(mem, mem_log, imms,
version)``: the mutable memtable and the number of the log it is written to,
the immutable memtables waiting for a flush (newest first, each with its log
number), and the ``Version`` (the SSTables per level).  It is replaced as a
unit (one attribute assignment) under ``_mutex``; readers take
``self._state`` without any lock and never wait for a flush or compaction.

Write path (group commit)
-------------------------
Writers serialise on ``_wlock``.  A writer that finds ``_wlock`` free writes
alone: encode the records (lsm/batch.py layout) as one WAL record, append,
``sync`` if asked, insert into the memtable, then publish the new last
sequence (readers use it as their read sequence, so a batch becomes visible
all at once).  A writer that finds ``_wlock`` busy queues itself; whoever next
holds ``_wlock`` takes the whole queue and commits it as *one* WAL record with
*one* sync (if any member asked for sync), so concurrent writers share the
append and the fsync.

Room for a write: when the memtable reaches ``write_buffer_size`` it becomes
immutable, a new log file is started and the flush thread is woken.  Stalls
(thresholds documented in docs/architecture.md, time in ``stats()``):

* more than ``max_write_buffer_number - 1`` immutable memtables -> writers
  wait for the flush (stop);
* ``level0_slowdown_writes_trigger`` L0 files -> each write sleeps 1 ms once
  (slowdown), giving compaction CPU;
* ``level0_stop_writes_trigger`` L0 files -> writers wait for compaction.

Read path
---------
``get``: the memtables newest first, then ``Version.files_for_get`` (L0
newest first, then one file per level) through the TableCache (bloom, index,
block seek in C).  Range tombstones: the highest covering tombstone sequence
among the sources searched so far hides an older point entry; per user key a
newer source always holds newer sequences, so the search stops at the first
source that has a point entry or a covering tombstone.  Iterators:
lsm/iterators.py.

Background work
---------------
One flush thread (oldest immutable memtable -> L0 table -> MANIFEST edit ->
state swap -> old logs deleted) and one compaction thread (pick, run in the C
merge with the live snapshot sequences, apply).  ``compact_range`` runs in the
caller under the same compaction lock.  Any exception in background work is
stored; the DB becomes read-only (writes raise ReadOnlyError chained to it)
and reads go on, as RocksDB does.

File lifecycle
--------------
A table file is deleted only when it is in no live Version: the current one,
one pinned by an open iterator (refcounted), or an output being written.
Logs are deleted once every memtable they hold has been flushed (their number
is below the MANIFEST's log number).  Recovery replays every log at or above
the MANIFEST's log number, flushes the result to L0, and starts a new log.
"""

from __future__ import annotations

import os
import struct
import threading
import time
import weakref
from array import array
from collections import Counter
from itertools import repeat
from typing import Any, Callable, Iterable

from blockdev.device import BlockDevice
from blockdev.errors import (
    ArgumentTypeError,
    ClosedError,
    CorruptionError,
    Error,
    InvalidArgumentError,
    NotFoundError,
    ReadOnlyError,
    UnsupportedFormatError,
)
from blockdev.fs import FileSystem, PosixFS
from lsm import _memseg, _native, filenames
from lsm.batch import WriteBatch, check_bytes
from lsm.cache import BlockCache, TableCache
from lsm.dbformat import (
    KIND_RANGE_TOMBSTONE,
    KIND_TOMBSTONE,
    KIND_VALUE,
    MAX_SEQUENCE,
    lookup_key,
)
from lsm.iterators import (
    Iterator,
    RawIterator,
    ReadView,
    bytes_increment,
    resolve_bounds,
)
from lsm.memtable import MemTable
from lsm.sstable.reader import bloom_probe as _bloom_probe
from lsm.sstable.probe import GetPlan
from lsm.options import Options
from lsm.wal import LogReader, LogWriter

__all__ = ["DB", "Snapshot", "PrefixedDB", "BoundWriteBatch", "destroy_db", "repair_db"]

_HDR = struct.Struct("<QI")          # batch header: sequence, count (lsm/batch.py layout)
_PUT1 = struct.Struct("<QIBB")       # header + kind + 1-byte key length of a one-put batch
_SMALL = [bytes((i,)) for i in range(128)]
# A write batch of at least this many records (puts and deletes only) goes to
# the memtable as one segment (lsm/_memseg.py) instead of record by record.
SEGMENT_MIN_RECORDS = 64
_KIND_LEN = [[bytes((kind, n)) for n in range(128)] for kind in range(3)]
_SLOWDOWN_SLEEP = 0.001
_TABLES = object()   # _get_once marks answers that came from tables (to be validated)              # seconds a write sleeps at the L0 slowdown trigger


def _varint(n: int) -> bytes:
    if n < 128:
        return _SMALL[n]
    out = bytearray()
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _create_log(fs: FileSystem, name: str) -> Any:
    """A new write-ahead log file: memory-mapped appends where the file
    system offers them (``PosixFS.create_mapped``), else ``create``."""
    mapped = getattr(fs, "create_mapped", None)
    return mapped(name) if mapped is not None else fs.create(name)


def encode_records(seq: int, items: list[tuple[int, bytes, bytes]]) -> bytes:
    """WAL payload for ``items`` at ``seq, seq+1, ...`` -- byte for byte what
    ``lsm.batch.WriteBatch.encode`` produces (tests check it).  O(bytes)."""
    parts = [_HDR.pack(seq, len(items))]
    add = parts.append
    kind_len = _KIND_LEN
    small = _SMALL
    for kind, key, value in items:
        klen = len(key)
        if klen < 128:
            add(kind_len[kind][klen])
        else:
            add(small[kind])
            add(_varint(klen))
        add(key)
        if kind:
            vlen = len(value)
            add(small[vlen] if vlen < 128 else _varint(vlen))
            add(value)
    return b"".join(parts)


def _as_bool(value: Any, name: str) -> bool:
    if value is True or value is False:
        return value
    if isinstance(value, int):
        return bool(value)
    raise ArgumentTypeError(f"{name} must be a bool, got {type(value).__name__}")


def _damage_after_tail(fs: FileSystem, name: str) -> int | None:
    """If log ``name`` (WAL or MANIFEST format) ends in what its reader takes
    for a torn tail, but a complete, checksum-valid fragment follows that
    point, the "tail" is really damage (a crash only tears the last append):
    return the offset where reading stopped; else None.

    Helper kept here (not in lsm/wal.py, which treats any record running past
    EOF as torn): the DB needs it to refuse a damaged MANIFEST instead of
    silently opening an older state.  O(file) only when a torn tail is seen.
    """
    from lsm.wal import FULL, HEADER_SIZE, LAST, fragment_checksum
    f = fs.open(name)
    try:
        reader = LogReader(f, name, paranoid=False, reporter=lambda n, r: None)
        for _ in reader:
            pass
        if not reader.torn_tail:
            return None
        start = reader.end_offset
        size = f.size
        rest = f.read(start, size - start)
    finally:
        f.close()
    hdr = struct.Struct("<IHB")
    for p in range(1, len(rest) - HEADER_SIZE + 1):
        crc, length, ftype = hdr.unpack_from(rest, p)
        if FULL <= ftype <= LAST and length and p + HEADER_SIZE + length <= len(rest):
            payload = rest[p + HEADER_SIZE:p + HEADER_SIZE + length]
            if fragment_checksum(payload, ftype) == crc:
                return start
    return None


def _weak_method(obj: Any, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` bound to ``obj`` without a strong reference (no DB <-> cache cycle,
    so an unclosed DB is freed by reference counting)."""
    ref = weakref.ref(obj)

    def call(*args: Any) -> Any:
        target = ref()
        if target is None:
            raise ClosedError("DB is gone")
        return fn(target, *args)
    return call


class _State:
    """The LSM shape as one immutable value (see the module docstring)."""

    __slots__ = ("mem", "mem_log", "imms", "version", "l0")

    def __init__(self, mem: MemTable, mem_log: int, imms: tuple, version: Any) -> None:
        self.mem = mem
        self.mem_log = mem_log
        self.imms = imms            # ((MemTable, log_number), ...) newest first
        self.version = version
        self.l0 = len(version.levels[0]) if version.levels else 0

    def memtables(self) -> list[MemTable]:
        return [self.mem] + [m for m, _ in self.imms]

    def _check(self) -> None:
        assert all(m.frozen for m, _ in self.imms)
        logs = [self.mem_log] + [n for _, n in self.imms]
        assert logs == sorted(logs, reverse=True), "newer memtables use newer logs"


class _Writer:
    __slots__ = ("items", "sync", "done", "error")

    def __init__(self, items: list[tuple[int, bytes, bytes]], sync: bool) -> None:
        self.items = items
        self.sync = sync
        self.done = False
        self.error: BaseException | None = None


def _device_blank(device: BlockDevice, probe: int = 64 << 10) -> bool:
    """True if the first ``probe`` bytes of ``device`` are all zero."""
    n = min(device.size, max(probe // device.block_size, 1) * device.block_size)
    return not any(device.read(0, n)) if n else True


def _open_fs(target: Any, create: bool) -> tuple[FileSystem, bool, str]:
    """(file system, owned by the DB, display name) for a DB target."""
    if isinstance(target, FileSystem):
        return target, False, getattr(target, "name", repr(target))
    if isinstance(target, BlockDevice):
        from blockdev.blockfs import BlockFS
        try:
            fs = BlockFS(target, create=False)
        except UnsupportedFormatError:
            if not create:
                raise
            if not _device_blank(target):
                raise UnsupportedFormatError(
                    "the device holds data that is not a BlockFS of ours; refusing to "
                    "format it (create_if_missing only formats a blank device)",
                    getattr(target, "name", None)) from None
            fs = BlockFS(target, create=True)
        return fs, True, getattr(target, "name", fs.name)
    if isinstance(target, (str, os.PathLike)):
        path = os.fspath(target)
        if not isinstance(path, str):
            raise ArgumentTypeError("target path must be a str path")
        if not os.path.isdir(path) and not create:
            if os.path.exists(path):
                raise InvalidArgumentError(f"{path} exists and is not a directory")
            raise NotFoundError(f"DB {path} does not exist (create_if_missing is False)")
        return PosixFS(path, create=create), True, path
    raise ArgumentTypeError(
        f"target must be a path, a blockdev.BlockDevice or a FileSystem, got {type(target).__name__}")


class _IterationShortcuts:
    """``items``/``keys``/``values``/``iter()`` on top of ``iterator``
    (shared by DB, Snapshot and PrefixedDB); each takes ``iterator``'s
    keyword arguments.  O(1) until iterated."""

    __slots__ = ()

    def items(self, **kw: Any) -> Iterator:
        """``iterator(**kw)`` yielding (key, value) pairs."""
        return self.iterator(**kw)  # type: ignore[attr-defined]

    def keys(self, **kw: Any) -> Iterator:
        """``iterator(**kw)`` yielding keys."""
        return self.iterator(include_key=True, include_value=False, **kw)  # type: ignore[attr-defined]

    def values(self, **kw: Any) -> Iterator:
        """``iterator(**kw)`` yielding values."""
        return self.iterator(include_key=False, include_value=True, **kw)  # type: ignore[attr-defined]

    def __iter__(self) -> Iterator:
        return self.iterator()  # type: ignore[attr-defined]


class _DictProtocol(_IterationShortcuts):
    """``db[k]``, ``db[k] = v``, ``del db[k]`` and ``k in db`` on top of
    ``get``/``put``/``delete`` (shared by DB and PrefixedDB).  O(one get)."""

    __slots__ = ()

    def __getitem__(self, key: Any) -> bytes:
        value = self.get(key)  # type: ignore[attr-defined]
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: Any, value: Any) -> None:
        self.put(key, value)  # type: ignore[attr-defined]

    def __delitem__(self, key: Any) -> None:
        self.delete(key)  # type: ignore[attr-defined]

    def __contains__(self, key: Any) -> bool:
        return self.get(key) is not None  # type: ignore[attr-defined]


class DB(_DictProtocol):
    """An LSM-tree key-value store in a directory or on a block device.

    ``DB(target, create_if_missing=False, error_if_exists=False, **options)``;
    options are the fields of ``lsm.options.Options``.  Thread-safe.
    """

    # -- opening ------------------------------------------------------------------
    def __init__(self, target: Any, create_if_missing: bool = False,
                 error_if_exists: bool = False, **options: Any) -> None:
        self._closed = True
        create_if_missing = _as_bool(create_if_missing, "create_if_missing")
        error_if_exists = _as_bool(error_if_exists, "error_if_exists")
        self._options = opts = Options.from_kwargs(
            create_if_missing=create_if_missing, error_if_exists=error_if_exists, **options)
        self._fs, self._owns_fs, self.name = _open_fs(target, create_if_missing)
        self._target = target
        self._lock_handle = None
        self._max_key = opts.max_key_size
        self._max_value = opts.max_value_size
        self._wbs = opts.write_buffer_size
        self._slowdown = opts.level0_slowdown_writes_trigger
        self._stop = opts.level0_stop_writes_trigger
        self._wlock = threading.Lock()
        self._qlock = threading.Lock()
        self._queue: list[_Writer] = []
        self._mutex = threading.RLock()
        self._cv = threading.Condition(self._mutex)
        self._compaction_lock = threading.Lock()
        self._delete_lock = threading.Lock()
        self._bg_error: BaseException | None = None
        self._shutting_down = False
        self._compaction_wanted = False
        self._pending_outputs: set[int] = set()
        self._pins: dict[int, list] = {}
        self._snapshots: Counter[int] = Counter()
        self._cursors: "weakref.WeakSet[Any]" = weakref.WeakSet()
        self._snapshot_objs: "weakref.WeakSet[Snapshot]" = weakref.WeakSet()
        self._threads: list[threading.Thread] = []
        self._log: LogWriter | None = None
        self._seq = 0
        self._mem_bytes = 0
        self._wal_bytes = 0
        self._log_dirty = False
        # logs made by create_mapped (PosixFS) live in the page cache: a
        # sync=False write has left the process when its append returns, and
        # syncing a switched-away log can wait for the next sync write.  Other
        # file systems (BlockFS) get a WAL flush after each group.
        self._mapped_logs = getattr(self._fs, "create_mapped", None) is not None
        # logs of immutable memtables whose tails are not synced yet (PosixFS):
        # synced, in order, before the next sync write; closed once obsolete
        self._old_logs: list[tuple[int, LogWriter]] = []
        self._stats: Counter[str] = Counter()
        self._recovery_report: list[dict] = []
        self._block_cache = BlockCache(opts.block_cache_size) if opts.block_cache_size else None
        self._table_cache = TableCache(_weak_method(self, DB._open_table), opts.max_open_files)
        self._get_plan: GetPlan | None = None     # the table probe plan of the last Version read
        self._versions: Any = None
        try:
            self._lock_handle = self._fs.lock(filenames.LOCK)
            self._open(create_if_missing, error_if_exists)
        except BaseException:
            self._abandon()
            raise
        self._closed = False
        self._start_threads()

    def _abandon(self) -> None:
        """Release what a failed open acquired."""
        for closer in (getattr(self._versions, "close", None), self._table_cache.close,
                       getattr(self._log, "close", None),
                       getattr(self._lock_handle, "release", None)):
            if closer is not None:
                try:
                    closer()
                except Error:
                    pass
        if self._owns_fs:
            try:
                self._fs.close()
            except Error:
                pass

    def _open_table(self, number: int) -> Any:
        from lsm.sstable.reader import TableReader
        name = filenames.table_file_name(number)
        f = self._fs.open(name)
        try:
            return TableReader(f, name, block_cache=self._block_cache, cache_id=number,
                               verify_checksums=True)
        except BaseException:
            f.close()
            raise

    def _open(self, create: bool, error_if_exists: bool) -> None:
        from lsm.version import VersionEdit, VersionSet
        fs = self._fs
        self._versions = vs = VersionSet(fs, self._options)
        if not fs.exists(filenames.CURRENT):
            ours = [n for n in fs.list() if filenames.parse_file_name(n) is not None
                    and n not in (filenames.LOCK, filenames.INFO_LOG, filenames.INFO_LOG_OLD)]
            if ours:
                # never start a new DB over the remains of an old one: its tables
                # would look obsolete and be deleted
                raise NotFoundError(f"{self.name} has DB files ({', '.join(sorted(ours)[:3])}"
                                    f"{', ...' if len(ours) > 3 else ''}) but no CURRENT file; "
                                    "run lsm.repair_db on it")
            if not create:
                raise NotFoundError(f"{self.name} holds no DB (no CURRENT file) and "
                                    "create_if_missing is False")
            vs.create_new()
        else:
            if error_if_exists:
                raise InvalidArgumentError(f"DB {self.name} already exists (error_if_exists=True)")
            manifest = vs.read_current()
            if fs.exists(manifest):
                at = _damage_after_tail(fs, manifest)
                if at is not None:
                    raise CorruptionError("MANIFEST is damaged (a valid record follows an "
                                          "unreadable one; not a torn write; try repair_db)",
                                          manifest, at)
            vs.recover()
        self._seq = vs.last_sequence
        edit_files, max_seq = self._replay_logs(vs.log_number)
        self._seq = max(self._seq, max_seq)
        log_number = vs.new_file_number()
        self._log = LogWriter(_create_log(fs, filenames.log_file_name(log_number)),
                              filenames.log_file_name(log_number))
        self._log.sync()
        version = vs.log_and_apply(VersionEdit(
            log_number=log_number, last_sequence=self._seq,
            new_files=tuple((0, m) for m in edit_files)))
        self._state = _State(MemTable(), log_number, (), version)
        self._delete_obsolete(at_open=True)

    def _replay_logs(self, min_log: int) -> tuple[list[Any], int]:
        """Replay every log >= min_log into memtables flushed to new L0 tables."""
        fs = self._fs
        logs = []
        for name in fs.list():
            parsed = filenames.parse_file_name(name)
            if parsed is not None and parsed[0] == filenames.LOG_FILE and parsed[1] >= min_log:
                logs.append(parsed[1])
        logs.sort()
        self._versions_mark_used(logs)
        files: list[Any] = []
        max_seq = 0
        mem = MemTable()
        paranoid = self._options.paranoid_checks
        for number in logs:
            name = filenames.log_file_name(number)

            def report(dropped: int, reason: str, _name: str = name) -> None:
                self._recovery_report.append({"file": _name, "dropped_bytes": dropped,
                                              "reason": reason})
            at = _damage_after_tail(fs, name)
            if at is not None:
                if paranoid:
                    raise CorruptionError("log is damaged (a valid record follows an "
                                          "unreadable one)", name, at)
                report(fs.size(name) - at, "damaged record taken for a torn tail; "
                       "the records after it are lost")
            f = fs.open(name)
            try:
                reader = LogReader(f, name, paranoid=paranoid, reporter=report)
                for record in reader:
                    try:
                        seq, items = WriteBatch.decode(record, name, reader.last_record_offset)
                    except CorruptionError as exc:
                        if paranoid:
                            raise
                        report(len(record), f"bad write batch: {exc}")
                        continue
                    if not items:
                        continue
                    mem.add_batch(seq, items)
                    max_seq = max(max_seq, seq + len(items) - 1)
                    if mem.approximate_size >= self._wbs:
                        meta = self._write_level0(mem)
                        if meta is not None:
                            files.append(meta)
                        mem = MemTable()
            finally:
                f.close()
        if mem.num_entries:
            meta = self._write_level0(mem)
            if meta is not None:
                files.append(meta)
        self._stats["recovered_logs"] += len(logs)
        return files, max_seq

    def _versions_mark_used(self, numbers: Iterable[int]) -> None:
        """Make sure new file numbers exceed every existing one (a log newer than
        the MANIFEST's next_file_number survives a crash)."""
        vs = self._versions
        top = max(numbers, default=0)
        for name in self._fs.list():
            parsed = filenames.parse_file_name(name)
            if parsed is not None:
                top = max(top, parsed[1])
        mark = getattr(vs, "mark_file_number_used", None)
        if mark is not None:
            mark(top)
        else:   # fall back: burn numbers until past top
            while vs.next_file_number <= top:
                vs.new_file_number()

    def _write_level0(self, mem: MemTable) -> Any:
        """Write ``mem`` to a new table (kind-2 entries go to the tombstone block)."""
        from lsm.compaction import build_table_packed
        mem.freeze()
        # point entries packed, sorted and encoded natively (GIL released);
        # range tombstones go to their own block
        packed = mem.packed_entries()
        order = _native.sort_entries(packed)
        number = self._alloc_output()
        try:
            meta = build_table_packed(self._fs, number, packed, order, mem.range_tombstones(),
                                      self._options)
        except BaseException:
            with self._mutex:
                self._pending_outputs.discard(number)
            raise
        self._stats["flushes"] += 1
        if meta is not None:
            self._stats["flush_bytes"] += meta.size
        return meta

    def _alloc_output(self) -> int:
        with self._mutex:
            number = self._versions.new_file_number()
            self._pending_outputs.add(number)
            return number

    def _start_threads(self) -> None:
        ref = weakref.ref(self)
        jobs: tuple = ((_flush_main, "flush"), (_compaction_main, "compaction"))
        if self._options.max_background_jobs == 1:
            jobs = ((_background_main, "background"),)
        for target, name in jobs:
            t = threading.Thread(target=target, args=(ref,), name=f"lsm-{name}:{self.name}",
                                 daemon=True)
            self._threads.append(t)
            t.start()
        self._maybe_schedule_compaction()

    # -- argument helpers ----------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"DB {self.name} is closed")

    def _key(self, key: Any, name: str = "key") -> bytes:
        if type(key) is not bytes:
            key = check_bytes(key, name)
        if len(key) > self._max_key:
            raise InvalidArgumentError(
                f"{name} is {len(key)} bytes, more than max_key_size {self._max_key}")
        return key

    # -- writes --------------------------------------------------------------------
    def put(self, key: Any, value: Any, sync: bool = False) -> None:
        """Store ``value`` under ``key``.  ``sync=True``: durable against a machine
        crash when this returns; otherwise against a process crash."""
        if type(key) is not bytes:
            key = check_bytes(key, "key")
        if type(value) is not bytes:
            value = check_bytes(value, "value")
        klen = len(key)
        vlen = len(value)
        if klen > self._max_key:
            self._key(key)                # raises the key-size error
        if vlen > self._max_value:
            raise InvalidArgumentError(
                f"value is {vlen} bytes, more than max_value_size {self._max_value}")
        if sync is not False:
            sync = _as_bool(sync, "sync")
        # single-writer fast path (see _write for the general one): same steps,
        # fewer calls -- this is the hottest write path
        wlock = self._wlock
        if (self._closed or self._bg_error is not None or self._queue
                or self._mem_bytes >= self._wbs or self._state.l0 >= self._slowdown
                or not wlock.acquire(False)):
            self._write(((KIND_VALUE, key, value),), sync)
            return
        try:
            seq = self._seq + 1
            if klen < 128:
                payload = b"".join((_PUT1.pack(seq, 1, KIND_VALUE, klen), key,
                                    _SMALL[vlen] if vlen < 128 else _varint(vlen), value))
            else:
                payload = encode_records(seq, ((KIND_VALUE, key, value),))
            self._log_payload(payload, sync)
            # MemTable._insert: add() minus its argument checks, which put() has
            # done (bytes key and value, fresh sequence) -- half the cost of add()
            self._state.mem._insert(seq, KIND_VALUE, key, value)
            self._mem_bytes += klen + vlen + 12
            self._seq = seq
        finally:
            wlock.release()

    def delete(self, key: Any, sync: bool = False) -> None:
        """Delete ``key`` (no error if absent)."""
        key = self._key(key)
        if sync is not False:
            sync = _as_bool(sync, "sync")
        self._write(((KIND_TOMBSTONE, key, b""),), sync)

    def delete_range(self, start: Any, stop: Any, sync: bool = False) -> None:
        """Delete every key in ``[start, stop)`` with one range tombstone.
        Requires ``start <= stop`` (InvalidArgumentError); start == stop is a no-op."""
        start = self._key(start, "start")
        stop = self._key(stop, "stop")
        sync = _as_bool(sync, "sync")
        if start > stop:
            raise InvalidArgumentError("delete_range: start must be <= stop")
        self._check_open()
        if start == stop:
            return
        self._write(((KIND_RANGE_TOMBSTONE, start, stop),), sync)

    def write(self, batch: WriteBatch, sync: bool = False) -> None:
        """Apply ``batch`` atomically."""
        if not isinstance(batch, WriteBatch):
            raise ArgumentTypeError(f"batch must be an lsm.WriteBatch, got {type(batch).__name__}")
        sync = _as_bool(sync, "sync")
        self._check_open()
        n = len(batch)
        if not n:
            return
        bound = isinstance(batch, BoundWriteBatch) and batch._db is self
        if n >= SEGMENT_MIN_RECORDS:
            cols = batch.columns()
            if cols is not None:
                kinds, keys, values = cols
                if not bound:
                    self._check_column_limits(keys, values)
                if self._write_segment(kinds, keys, values, sync):
                    return
        items = batch.items()
        if not bound:
            self._check_batch_limits(items)
        self._write(items, sync)

    def _check_column_limits(self, keys: list[bytes], values: list[bytes]) -> None:
        """A batch built with other limits than this DB's: check its records.  O(n)."""
        if max(map(len, keys)) > self._max_key or max(map(len, values)) > self._max_value:
            self._check_batch_limits(list(zip(repeat(KIND_VALUE), keys, values)))

    def _write_segment(self, kinds: bytes, keys: list[bytes], values: list[bytes],
                       sync: bool) -> bool:
        """The bulk path of ``write``: log a batch of puts and deletes as one
        WAL record and add it to the memtable as one segment, both from the
        same packed columns (no Python object per record).  Returns False,
        having done nothing, when the writer lock is contended (the caller
        then joins a group commit) or the DB cannot take writes (the caller
        raises the error).  Requires: validated records."""
        wlock = self._wlock
        if (self._closed or self._bg_error is not None or self._queue
                or not wlock.acquire(False)):
            return False
        try:
            if self._queue:
                return False
            if self._mem_bytes >= self._wbs or self._state.l0 >= self._slowdown:
                self._make_room()
            seq = self._seq + 1
            packed = (b"".join(keys), array("Q", map(len, keys)),
                      b"".join(values), array("Q", map(len, values)))
            payload = _memseg.batch_encode_packed_view(seq, kinds, packed)
            self._log_payload(payload, sync)
            mem = self._state.mem
            mem.add_segment(seq, kinds, packed)
            self._mem_bytes = mem.approximate_size
            self._seq = seq + len(kinds) - 1
        finally:
            wlock.release()
        return True

    def _check_batch_limits(self, items: list) -> None:
        """A batch built with other limits than this DB's: check its records."""
        for kind, key, value in items:
            if len(key) > self._max_key:
                raise InvalidArgumentError(
                    f"key is {len(key)} bytes, more than max_key_size {self._max_key}")
            if kind == KIND_VALUE and len(value) > self._max_value:
                raise InvalidArgumentError(
                    f"value is {len(value)} bytes, more than max_value_size {self._max_value}")

    def write_batch(self, sync: bool = False, transaction: bool = False) -> "BoundWriteBatch":
        """A batch bound to this DB: ``with db.write_batch() as wb: ...`` writes
        it atomically on exit (with ``transaction=True``, not at all if the
        block raises)."""
        self._check_open()
        return BoundWriteBatch(self, _as_bool(sync, "sync"),
                               _as_bool(transaction, "transaction"))

    def _write(self, items: tuple, sync: bool) -> None:
        if self._closed:
            raise ClosedError(f"DB {self.name} is closed")
        if self._bg_error is not None:
            raise ReadOnlyError(f"DB {self.name} is read-only after a background error: "
                                f"{self._bg_error}") from self._bg_error
        wlock = self._wlock
        if wlock.acquire(False):
            try:
                if self._queue:
                    w = _Writer(items, sync)
                    with self._qlock:
                        self._queue.append(w)
                    self._commit_queue()
                    if w.error is not None:
                        raise w.error
                    return
                if self._mem_bytes >= self._wbs or self._state.l0 >= self._slowdown:
                    self._make_room()
                self._log_and_apply(items, sync)
            finally:
                wlock.release()
            return
        # contended: queue and let the lock holder (or ourselves) commit the group
        w = _Writer(items, sync)
        with self._qlock:
            self._queue.append(w)
        with wlock:
            if not w.done:
                self._commit_queue()
        if w.error is not None:
            raise w.error

    def _log_and_apply(self, items: list, sync: bool) -> None:
        """Append ``items`` to the WAL as one record (synced when ``sync``) and
        apply them to the memtable under consecutive sequence numbers.  A WAL
        failure puts the DB in read-only mode and is raised.

        Requires: ``_wlock`` held and room made (``_make_room``).
        """
        seq = self._seq + 1
        self._log_payload(encode_records(seq, items), sync)
        mem = self._state.mem
        mem.add_batch(seq, items)
        self._mem_bytes = mem.approximate_size
        self._seq = seq + len(items) - 1

    def _log_payload(self, payload: bytes, sync: bool) -> None:
        """Append one WAL record (synced when ``sync``).  A failure puts the
        DB in read-only mode and is raised.  Requires: ``_wlock`` held."""
        log = self._log
        try:
            log.add_record(payload)   # type: ignore[union-attr]
            if sync:
                if self._old_logs:
                    self._sync_old_logs()
                log.sync()            # type: ignore[union-attr]
                self._log_dirty = False
            else:
                if not self._mapped_logs:
                    log.flush()       # type: ignore[union-attr]  (out of the process)
                self._log_dirty = True
        except BaseException as exc:
            self._set_bg_error(exc)
            raise
        self._wal_bytes += len(payload)

    def _commit_queue(self) -> None:
        """Commit every queued writer as one WAL record.  Requires: _wlock held."""
        with self._qlock:
            group, self._queue = self._queue, []
        if not group:
            return
        try:
            if self._closed:
                raise ClosedError(f"DB {self.name} is closed")
            if self._bg_error is not None:
                raise ReadOnlyError(f"DB {self.name} is read-only after a background error: "
                                    f"{self._bg_error}") from self._bg_error
            if self._mem_bytes >= self._wbs or self._state.l0 >= self._slowdown:
                self._make_room()
            items: list = []
            sync = False
            for w in group:
                items.extend(w.items)
                sync = sync or w.sync
            self._log_and_apply(items, sync)
            self._stats["group_commits"] += 1
            self._stats["grouped_writes"] += len(group)
        except BaseException as exc:
            for w in group:
                w.error = exc
        finally:
            for w in group:
                w.done = True

    def _make_room(self, force: bool = False) -> None:
        """Stall or switch memtables as needed.  Requires: _wlock held."""
        slowed = False
        while True:
            if self._bg_error is not None:
                raise ReadOnlyError(f"DB {self.name} is read-only after a background error: "
                                    f"{self._bg_error}") from self._bg_error
            if self._shutting_down:
                raise ClosedError(f"DB {self.name} is closing")
            st = self._state
            if not slowed and self._slowdown <= st.l0 < self._stop:
                t0 = time.monotonic()
                time.sleep(_SLOWDOWN_SLEEP)
                self._stall(t0, "slowdown")
                slowed = True
                continue
            if st.l0 >= self._stop:
                t0 = time.monotonic()
                with self._mutex:
                    self._compaction_wanted = True
                    self._cv.notify_all()
                    while (self._state.l0 >= self._stop and self._bg_error is None
                           and not self._shutting_down):
                        self._cv.wait(0.1)
                self._stall(t0, "l0_stop")
                continue
            if not force and self._mem_bytes < self._wbs:
                return
            if force and st.mem.num_entries == 0:
                return
            if len(st.imms) >= self._options.max_write_buffer_number - 1:
                t0 = time.monotonic()
                with self._mutex:
                    self._cv.notify_all()
                    while (len(self._state.imms) >= self._options.max_write_buffer_number - 1
                           and self._bg_error is None and not self._shutting_down):
                        self._cv.wait(0.1)
                self._stall(t0, "memtable_stop")
                continue
            self._switch_memtable()
            return

    def _stall(self, t0: float, why: str) -> None:
        us = int((time.monotonic() - t0) * 1e6)
        self._stats["stall_micros"] += us
        self._stats[f"stall_micros_{why}"] += us
        self._stats[f"stall_count_{why}"] += 1

    def _switch_memtable(self) -> None:
        """New log + new memtable; the old one becomes immutable.  Requires: _wlock."""
        number = self._alloc_output()
        name = filenames.log_file_name(number)
        try:
            new_log = LogWriter(_create_log(self._fs, name), name)
        except BaseException as exc:
            self._set_bg_error(exc)
            raise
        old_log = self._log
        self._close_obsolete_old_logs()
        if old_log is not None and self._log_dirty:
            # a later sync write in the new log must not leave a hole: the old
            # log's unsynced tail must be durable first.  With mapped logs
            # (PosixFS) that waits for the next sync write (_sync_old_logs),
            # so a run of sync=False writes pays no fsync per memtable; other
            # file systems sync it now.
            if self._mapped_logs:
                self._old_logs.append((self._state.mem_log, old_log))
                old_log = None
            else:
                try:
                    old_log.sync()
                except BaseException as exc:
                    self._set_bg_error(exc)
                    raise
        self._log_dirty = False
        with self._mutex:
            self._pending_outputs.discard(number)
            st = self._state
            st.mem.freeze()
            self._state = _State(MemTable(), number, ((st.mem, st.mem_log),) + st.imms,
                                 st.version)
            self._log = new_log
            self._mem_bytes = 0
            self._cv.notify_all()
        if old_log is not None:
            old_log.close()

    def _sync_old_logs(self) -> None:
        """Sync, oldest first, then close every old log still holding a live
        memtable's records (``_old_logs``); close the obsolete ones.  Called
        before a sync write's own log sync.  Requires: ``_wlock`` held."""
        olds, self._old_logs = self._old_logs, []
        st = self._state
        live = {st.mem_log} | {n for _, n in st.imms}
        for i, (number, log) in enumerate(olds):
            try:
                if number in live:
                    log.sync()
                log.close()
            except BaseException:
                self._old_logs = olds[i:] + self._old_logs
                raise

    def _close_obsolete_old_logs(self) -> None:
        """Close the old logs whose memtables have been flushed (nothing to
        sync any more).  Requires: ``_wlock`` held."""
        if not self._old_logs:
            return
        st = self._state
        live = {st.mem_log} | {n for _, n in st.imms}
        keep = []
        for number, log in self._old_logs:
            if number in live:
                keep.append((number, log))
            else:
                log.close()
        self._old_logs = keep

    # -- background work -------------------------------------------------------------
    def _set_bg_error(self, exc: BaseException) -> None:
        with self._mutex:
            if self._bg_error is None:
                self._bg_error = exc
            self._cv.notify_all()

    def _flush_step(self) -> bool:
        """Flush the oldest immutable memtable.  Returns False when there is none."""
        from lsm.version import VersionEdit
        with self._mutex:
            st = self._state
            if not st.imms:
                return False
            mem, _log = st.imms[-1]
        meta = self._write_level0(mem)
        with self._mutex:
            st = self._state
            assert st.imms and st.imms[-1][0] is mem
            rest = st.imms[:-1]
            next_log = rest[-1][1] if rest else st.mem_log
            edit = VersionEdit(log_number=next_log, last_sequence=self._seq,
                               new_files=((0, meta),) if meta is not None else ())
            version = self._versions.log_and_apply(edit)
            if meta is not None:
                self._pending_outputs.discard(meta.number)
            self._state = _State(st.mem, st.mem_log, rest, version)
            self._compaction_wanted = True
            self._cv.notify_all()
        self._delete_obsolete()
        return True

    def _compaction_step(self, manual: Callable[[Any], Any] | None = None) -> bool:
        """Run one compaction: picked by score, or ``manual(version)``.
        Returns False if there was none to run."""
        from lsm.compaction import pick_compaction, run_compaction
        with self._compaction_lock:
            version = self._state.version
            if manual is None:
                c = pick_compaction(version, self._options, self._compact_pointers())
            else:
                c = manual(version)   # picked under the lock, from the current version
            if c is None:
                return False
            t0 = time.monotonic()
            edit, cstats = run_compaction(
                c, fs=self._fs, table_cache=self._table_cache, options=self._options,
                new_file_number=self._alloc_output, snapshots=self._snapshot_seqs())
            if c.trivial_move:
                self._stats["trivial_moves"] += 1
            else:
                self._stats["compactions"] += 1
                self._stats["compaction_bytes_read"] += cstats.bytes_read
                self._stats["compaction_bytes_written"] += cstats.bytes_written
            with self._mutex:
                version = self._versions.log_and_apply(edit)
                for _level, f in edit.new_files:
                    self._pending_outputs.discard(f.number)
                st = self._state
                self._state = _State(st.mem, st.mem_log, st.imms, version)
                self._cv.notify_all()
            self._stats["compaction_micros"] += int((time.monotonic() - t0) * 1e6)
        self._delete_obsolete()
        return True

    def _compact_pointers(self) -> dict[int, bytes]:
        cp = getattr(self._versions, "compact_pointers", None)
        if cp is None:
            return {}
        return dict(cp)

    def _snapshot_seqs(self) -> list[int]:
        with self._mutex:
            return sorted(self._snapshots)

    def _maybe_schedule_compaction(self) -> None:
        with self._mutex:
            self._compaction_wanted = True
            self._cv.notify_all()

    # -- file lifecycle ----------------------------------------------------------------
    def _pin(self, version: Any) -> Callable[[], None]:
        """Pin ``version``'s files; returns the release function.  Requires: _mutex."""
        key = id(version)
        entry = self._pins.get(key)
        if entry is None:
            self._pins[key] = [version, 1]
        else:
            entry[1] += 1
        released = [False]

        def release() -> None:
            if released[0]:
                return
            released[0] = True
            with self._mutex:
                e = self._pins.get(key)
                if e is None:
                    return
                e[1] -= 1
                if e[1] > 0:
                    return
                del self._pins[key]
                stale = e[0] is not self._state.version
            if stale and not self._closed:
                try:
                    # non-blocking: release may run from a finalizer in a thread
                    # that is inside _delete_obsolete already
                    self._delete_obsolete(blocking=False)
                except Error:
                    pass   # retried at the next flush/compaction
        return release

    def _live_files(self) -> set[int]:
        """Table numbers some live Version or a running job still needs.  Requires: _mutex."""
        live = set(self._pending_outputs)
        versions = [self._state.version] + [e[0] for e in self._pins.values()]
        for v in versions:
            for level in v.levels:
                for f in level:
                    live.add(f.number)
        return live

    def _delete_obsolete(self, at_open: bool = False, blocking: bool = True) -> None:
        """Delete the files no live state needs (see "File lifecycle" above).
        ``blocking=False``: give up at once if another deletion pass runs."""
        if not self._delete_lock.acquire(blocking):
            return
        try:
            self._delete_obsolete_locked(at_open)
        finally:
            self._delete_lock.release()

    def _delete_obsolete_locked(self, at_open: bool) -> None:
        # list first: a file created after the live set is computed must not
        # be in the listing (it would look dead)
        names = self._fs.list()
        with self._mutex:
            live = self._live_files()
            st = self._state
            live_logs = {st.mem_log} | {n for _, n in st.imms}
            min_log = self._versions.log_number
            manifest = getattr(self._versions, "manifest_number", None)
            # second guard against the listing race: files numbered at or past
            # the allocator's horizon were allocated after the live set was read
            horizon = self._versions.next_file_number
        for name in names:
            parsed = filenames.parse_file_name(name)
            if parsed is None:
                continue
            kind, number = parsed
            dead = False
            if number >= horizon:
                continue
            if kind == filenames.TABLE_FILE:
                dead = number not in live
                if dead:
                    self._table_cache.evict(number)
            elif kind == filenames.LOG_FILE:
                dead = number < min_log and number not in live_logs
            elif kind == filenames.MANIFEST_FILE:
                dead = manifest is not None and number < manifest
            elif kind == filenames.TEMP_FILE:
                dead = at_open   # CURRENT swaps in flight use them while running
            if dead:
                try:
                    self._fs.delete(name)
                except NotFoundError:
                    pass   # deleted concurrently: the goal is met
                self._stats["files_deleted"] += 1

    # -- reads ---------------------------------------------------------------------------
    def get(self, key: Any, default: Any = None) -> Any:
        """The value of ``key``, or ``default``."""
        if type(key) is not bytes:
            key = self._key(key)
        if self._closed:
            raise ClosedError(f"DB {self.name} is closed")
        return self._get(self._state, key, self._seq, default)

    def _get(self, st: _State, key: bytes, seq: int, default: Any) -> Any:
        """Look ``key`` up as of ``seq`` in ``st``.  Gets do not pin their
        Version (a lock per get would cost too much): a table lookup is valid
        if the Version was still current when it finished -- files of the
        current Version are never deleted -- otherwise it is redone on the
        new state."""
        while True:
            version = st.version
            try:
                value = self._get_once(st, key, seq, default)
            except Error:
                if self._state.version is version or self._closed:
                    raise
                st = self._state
                continue
            if type(value) is not tuple or value[0] is not _TABLES:
                return value                       # answered by a memtable
            if self._state.version is version:
                return value[1]
            st = self._state

    def _get_once(self, st: _State, key: bytes, seq: int, default: Any) -> Any:
        rt = 0
        mem = st.mem
        if mem._tombs:
            rt = mem.covering_tombstone_seq(key, seq)
        r = mem.get(key, seq)
        if r is not None:
            return r[2] if r[1] == KIND_VALUE and r[0] > rt else default
        if rt:
            return default
        for m, _ in st.imms:
            if m._tombs:
                rt = m.covering_tombstone_seq(key, seq)
            r = m.get(key, seq)
            if r is not None:
                return r[2] if r[1] == KIND_VALUE and r[0] > rt else default
            if rt:
                return default
        version = st.version
        plan = self._get_plan
        if plan is None or plan.version is not version:
            plan = self._get_plan = GetPlan(version, self._table_cache.get,
                                            self._table_cache.max_open)
        if plan.ok:         # every table probed in one native call (lsm/sstable/probe.py)
            r = plan.get(key, seq)
            if r is None:
                return (_TABLES, default)
            return (_TABLES, r[2] if r[1] == KIND_VALUE else default)
        tc_get = self._table_cache.get
        for f in version.tables_for_get(key):
            t = tc_get(f.number)
            tombs = t.range_tombstones
            if tombs:
                for start, end, tseq in tombs:
                    if start <= key < end and rt < tseq <= seq:
                        rt = tseq
            flt = t.filter              # pinned bloom filter: probed here, one call less
            if flt is None:
                r = t.lookup(key, seq)
            else:
                rc = _bloom_probe(flt, key)
                r = None if rc == 0 else t.lookup(key, seq, rc < 0)
            if r is not None:
                return (_TABLES, r[2] if r[1] == KIND_VALUE and r[0] > rt else default)
            if rt:
                return (_TABLES, default)
        return (_TABLES, default)

    def _view(self, lo: bytes | None, hi: bytes | None, hi_incl: bool,
              seq: int | None) -> ReadView:
        with self._mutex:
            self._check_open()
            st = self._state
            release = self._pin(st.version)
            read_seq = self._seq if seq is None else seq
        hi_mem = None if hi is None else (hi + b"\x00" if hi_incl else hi)
        return ReadView(st.memtables(), st.version, read_seq, self._table_cache.get,
                        lo=lo, hi=hi_mem, release=release)

    def iterator(self, start: Any = None, stop: Any = None, include_start: bool = True,
                 include_stop: bool = False, prefix: Any = None, reverse: bool = False,
                 include_key: bool = True, include_value: bool = True,
                 snapshot: "Snapshot | None" = None) -> Iterator:
        """A plyvel-style iterator (see lsm/iterators.py for the exact semantics)."""
        return self._iterator(b"", start, stop, include_start, include_stop, prefix, reverse,
                              include_key, include_value, snapshot)

    def _iterator(self, db_prefix: bytes, start: Any, stop: Any, include_start: Any,
                  include_stop: Any, prefix: Any, reverse: Any, include_key: Any,
                  include_value: Any, snapshot: Any) -> Iterator:
        self._check_open()
        lo, lo_incl, hi, hi_incl = resolve_bounds(start, stop, include_start, include_stop,
                                                  prefix)
        reverse = _as_bool(reverse, "reverse")
        include_key = _as_bool(include_key, "include_key")
        include_value = _as_bool(include_value, "include_value")
        seq = self._snapshot_seq(snapshot)
        if db_prefix:
            if prefix is not None:
                lo, hi = db_prefix + lo, bytes_increment(db_prefix + lo)  # type: ignore[operator]
            else:
                if lo is None:
                    lo, lo_incl = db_prefix, True
                else:
                    lo = db_prefix + lo
                if hi is None:
                    hi, hi_incl = bytes_increment(db_prefix), False
                else:
                    hi = db_prefix + hi
        view = self._view(lo, hi, hi_incl, seq)
        it = Iterator(self, view, lo, lo_incl, hi, hi_incl, reverse=reverse,
                      include_key=include_key, include_value=include_value,
                      db_prefix=db_prefix)
        self._cursors.add(it)
        return it

    def _snapshot_seq(self, snapshot: Any) -> int | None:
        if snapshot is None:
            return None
        if not isinstance(snapshot, Snapshot):
            raise ArgumentTypeError(
                f"snapshot must be an lsm.Snapshot, got {type(snapshot).__name__}")
        if snapshot._db is not self:
            raise InvalidArgumentError("snapshot belongs to another DB")
        if snapshot._closed:
            raise ClosedError("snapshot is closed")
        return snapshot._seq

    def raw_iterator(self, snapshot: "Snapshot | None" = None) -> RawIterator:
        """A positioned cursor (valid/key/value/next/prev/seek/seek_for_prev)."""
        return self._raw_iterator(b"", snapshot)

    def _raw_iterator(self, db_prefix: bytes, snapshot: Any) -> RawIterator:
        self._check_open()
        seq = self._snapshot_seq(snapshot)
        if db_prefix:
            view = self._view(db_prefix, bytes_increment(db_prefix), False, seq)
        else:
            view = self._view(None, None, False, seq)
        it = RawIterator(self, view, strip=len(db_prefix), lo=db_prefix or None)
        self._cursors.add(it)
        return it

    def _forget(self, cursor: Any) -> None:
        self._cursors.discard(cursor)

    def snapshot(self) -> "Snapshot":
        """A consistent read-only view as of now (close it when done)."""
        self._check_open()
        with self._mutex:
            seq = self._seq
            self._snapshots[seq] += 1
        snap = Snapshot(self, seq)
        self._snapshot_objs.add(snap)
        return snap

    def _release_snapshot(self, seq: int) -> None:
        with self._mutex:
            self._snapshots[seq] -= 1
            if self._snapshots[seq] <= 0:
                del self._snapshots[seq]

    def prefixed_db(self, prefix: Any) -> "PrefixedDB":
        """A view of the keys starting with ``prefix``, with the prefix stripped."""
        self._check_open()
        return PrefixedDB(self, check_bytes(prefix, "prefix"))

    # -- maintenance -----------------------------------------------------------------------
    def flush(self) -> None:
        """Write the memtable to an SSTable and wait until no memtable awaits a flush."""
        self._check_open()
        with self._wlock:
            self._check_writable()
            self._make_room(force=True)
        with self._mutex:
            while self._state.imms and self._bg_error is None and not self._closed:
                self._cv.notify_all()
                self._cv.wait(0.1)
        self._check_writable()

    def _check_writable(self) -> None:
        self._check_open()
        if self._bg_error is not None:
            raise ReadOnlyError(f"DB {self.name} is read-only after a background error: "
                                f"{self._bg_error}") from self._bg_error

    def compact_range(self, start: Any = None, stop: Any = None) -> None:
        """Flush, then compact every level's files overlapping [start, stop]
        (None = unbounded) down the tree."""
        from lsm.compaction import pick_range_compaction
        if start is not None:
            start = self._key(start, "start")
        if stop is not None:
            stop = self._key(stop, "stop")
        self.flush()
        levels = self._options.num_levels
        for level in range(levels - 1):
            def pick(version: Any, level: int = level) -> Any:
                return pick_range_compaction(version, self._options, level, start, stop)
            for _ in range(10000):   # bound: each pass moves part of the range down
                self._check_writable()
                try:
                    if not self._compaction_step(manual=pick):
                        break
                except BaseException as exc:
                    self._set_bg_error(exc)
                    raise
        self._maybe_schedule_compaction()

    def approximate_size(self, start: Any, stop: Any) -> int:
        """Approximate bytes the SSTables use for keys in [start, stop)."""
        start = self._key(start, "start")
        stop = self._key(stop, "stop")
        self._check_open()
        if start >= stop:
            return 0
        with self._mutex:
            version = self._state.version
            release = self._pin(version)
        a, b = lookup_key(start, MAX_SEQUENCE), lookup_key(stop, MAX_SEQUENCE)
        total = 0
        try:
            for level in range(len(version.levels)):
                for f in version.overlapping(level, start, stop):
                    t = self._table_cache.get(f.number)
                    total += max(0, t.approximate_offset(b) - t.approximate_offset(a))
        finally:
            release()
        return total

    def approximate_sizes(self, *ranges: tuple[Any, Any]) -> list[int]:
        """``approximate_size`` of each ``(start, stop)`` pair (plyvel's API)."""
        out = []
        for r in ranges:
            if not isinstance(r, (tuple, list)) or len(r) != 2:
                raise ArgumentTypeError("each range must be a (start, stop) pair")
            out.append(self.approximate_size(r[0], r[1]))
        return out

    def checkpoint(self, dest: Any) -> None:
        """Write a consistent, openable copy of the DB to ``dest`` (a new or
        empty directory -- tables hard-linked when possible -- or a blank
        block device, formatted with BlockFS)."""
        from lsm.version import VersionEdit, VersionSet
        self._check_open()
        if isinstance(dest, BlockDevice):
            from blockdev.blockfs import BlockFS
            if not _device_blank(dest):
                raise InvalidArgumentError(
                    f"checkpoint destination device {getattr(dest, 'name', dest)!r} is not "
                    "blank; refusing to format it")
            dfs: FileSystem = BlockFS.format(dest)
        elif isinstance(dest, (str, os.PathLike)):
            path = os.fspath(dest)
            if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
                raise InvalidArgumentError(f"checkpoint destination {path} exists and is not empty")
            dfs = PosixFS(path, create=True)
        else:
            raise ArgumentTypeError(
                f"dest must be a path or a blockdev.BlockDevice, got {type(dest).__name__}")
        try:
            # every Version is a consistent prefix of the history (flush edits add
            # whole memtables, compaction edits swap files atomically), so after a
            # flush the current one, pinned, is the checkpoint; no lock is held
            # across the flush (it may wait for compactions)
            self.flush()
            with self._mutex:
                version = self._state.version
                release = self._pin(version)
            try:
                last_seq = 0
                top = 0
                new_files = []
                for level, files in enumerate(version.levels):
                    for f in files:
                        name = filenames.table_file_name(f.number)
                        self._fs.link_or_copy(name, dfs, name)
                        new_files.append((level, f))
                        last_seq = max(last_seq, f.largest_seq)
                        top = max(top, f.number)
                vs = VersionSet(dfs, self._options)
                vs.create_new()
                self_mark = getattr(vs, "mark_file_number_used", None)
                if self_mark is not None:
                    self_mark(top)
                else:
                    while vs.next_file_number <= top:
                        vs.new_file_number()
                vs.log_and_apply(VersionEdit(last_sequence=last_seq, new_files=tuple(new_files)))
                vs.close()
                dfs.sync_dir()
            finally:
                release()
        finally:
            dfs.close()

    # -- introspection ---------------------------------------------------------------------
    def stats(self) -> dict:
        """Counters and shape: per level files and bytes, write amplification,
        compaction bytes, stall time, block cache hit rate, device status."""
        self._check_open()
        st = self._state
        s = self._stats
        levels = []
        for i, files in enumerate(st.version.levels):
            levels.append({"level": i, "files": len(files),
                           "bytes": sum(f.size for f in files)})
        written = s["flush_bytes"] + s["compaction_bytes_written"]
        bc = self._block_cache
        hits = bc.hits if bc is not None else 0
        misses = bc.misses if bc is not None else 0
        out: dict[str, Any] = {
            "levels": levels,
            "num_files": sum(l["files"] for l in levels),
            "total_bytes": sum(l["bytes"] for l in levels),
            "memtable_bytes": st.mem.approximate_size,
            "immutable_memtables": len(st.imms),
            "last_sequence": self._seq,
            "flushes": s["flushes"],
            "flush_bytes": s["flush_bytes"],
            "compactions": s["compactions"],
            "trivial_moves": s["trivial_moves"],
            "compaction_bytes_read": s["compaction_bytes_read"],
            "compaction_bytes_written": s["compaction_bytes_written"],
            "wal_bytes": self._wal_bytes,
            "write_amplification": (written / self._wal_bytes) if self._wal_bytes else 0.0,
            "stall_micros": s["stall_micros"],
            "stall_micros_slowdown": s["stall_micros_slowdown"],
            "stall_micros_l0_stop": s["stall_micros_l0_stop"],
            "stall_micros_memtable_stop": s["stall_micros_memtable_stop"],
            "stall_count_slowdown": s["stall_count_slowdown"],
            "stall_count_l0_stop": s["stall_count_l0_stop"],
            "stall_count_memtable_stop": s["stall_count_memtable_stop"],
            "group_commits": s["group_commits"],
            "grouped_writes": s["grouped_writes"],
            "block_cache": {
                "hits": hits, "misses": misses,
                "hit_rate": hits / (hits + misses) if hits + misses else 0.0,
                "usage": bc.usage if bc is not None else 0,
                "capacity": bc.capacity if bc is not None else 0,
            },
            "table_cache": {"hits": self._table_cache.hits, "misses": self._table_cache.misses},
            "live_snapshots": sum(self._snapshots.values()),
            "pinned_versions": len(self._pins),
            "background_error": None if self._bg_error is None else repr(self._bg_error),
            "recovery": list(self._recovery_report),
        }
        status = getattr(self._target, "status", None)
        if callable(status):
            try:
                out["device"] = status()
            except Error as exc:
                out["device"] = {"error": repr(exc)}
        return out

    def get_property(self, name: Any) -> str | None:
        """RocksDB-style properties: ``lsm.stats``, ``lsm.num-files-at-level<N>``,
        ``lsm.sstables``, ``lsm.num-immutable-mem-table``, ``lsm.cur-size-all-mem-tables``,
        ``lsm.total-sst-files-size``, ``lsm.last-sequence``, ``lsm.background-errors``,
        ``lsm.estimate-num-keys``.  ``leveldb.``/``rocksdb.`` prefixes are accepted.
        Unknown names return None."""
        if isinstance(name, (bytes, bytearray, memoryview)):
            name = bytes(name).decode("utf-8", "replace")
        if not isinstance(name, str):
            raise ArgumentTypeError(f"name must be a str or bytes, got {type(name).__name__}")
        self._check_open()
        for p in ("leveldb.", "rocksdb."):
            if name.startswith(p):
                name = "lsm." + name[len(p):]
        st = self._state
        v = st.version
        if name.startswith("lsm.num-files-at-level"):
            try:
                level = int(name[len("lsm.num-files-at-level"):])
            except ValueError:
                return None
            return str(len(v.levels[level])) if 0 <= level < len(v.levels) else None
        if name == "lsm.sstables":
            lines = []
            for i, files in enumerate(v.levels):
                lines.append(f"--- level {i} ---")
                for f in files:
                    lines.append(f" {f.number}:{f.size}[{f.smallest_seq} .. {f.largest_seq}]"
                                 f"[{f.smallest[:-8]!r} .. {f.largest[:-8]!r}]")
            return "\n".join(lines) + "\n"
        if name == "lsm.stats":
            s = self.stats()
            lines = ["Level  Files  Size(MB)"]
            for l in s["levels"]:
                lines.append(f"{l['level']:5d} {l['files']:6d} {l['bytes'] / 1048576:9.3f}")
            lines.append(f"write amplification: {s['write_amplification']:.2f}")
            lines.append(f"compaction bytes read/written: {s['compaction_bytes_read']}/"
                         f"{s['compaction_bytes_written']}")
            lines.append(f"stall micros: {s['stall_micros']}")
            lines.append(f"block cache hit rate: {s['block_cache']['hit_rate']:.3f}")
            return "\n".join(lines) + "\n"
        if name == "lsm.num-immutable-mem-table":
            return str(len(st.imms))
        if name == "lsm.cur-size-all-mem-tables":
            return str(sum(m.approximate_size for m in st.memtables()))
        if name == "lsm.total-sst-files-size":
            return str(sum(f.size for files in v.levels for f in files))
        if name == "lsm.last-sequence":
            return str(self._seq)
        if name == "lsm.background-errors":
            return "0" if self._bg_error is None else "1"
        if name == "lsm.estimate-num-keys":
            return str(sum(m.num_entries for m in st.memtables())
                       + sum(f.num_entries for files in v.levels for f in files))
        return None

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the DB.  Live iterators and snapshots raise ClosedError afterwards.
        Idempotent."""
        if self._closed:
            return
        with self._wlock:
            if self._closed:
                return
            self._closed = True
        with self._mutex:
            self._shutting_down = True
            self._cv.notify_all()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join()
        for c in list(self._cursors):
            c._invalidate()
        for s in list(self._snapshot_objs):
            s._closed = True
        err: BaseException | None = None
        olds, self._old_logs = self._old_logs, []
        for closer in ([log.close for _, log in olds] + [getattr(self._log, "close", None)]
                       + [self._versions.close,
                          self._table_cache.close, self._lock_handle.release]):
            try:
                if closer is not None:
                    closer()
            except BaseException as exc:
                err = err or exc
        if self._owns_fs:
            try:
                self._fs.close()
            except BaseException as exc:
                err = err or exc
        _native.trim_buffers()     # idle pooled output buffers back to the system
        if err is not None:
            raise err

    def __enter__(self) -> "DB":
        return self

    def __del__(self) -> None:
        # an unclosed DB releases its lock and files when collected (as plyvel's)
        try:
            if not getattr(self, "_closed", True):
                self.close()
        except Exception:
            pass

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<lsm.DB {self.name!r}{' closed' if self._closed else ''}>"

    def _check(self) -> None:
        """Assert invariants of the live state (for tests)."""
        st = self._state
        st._check()
        st.version._check()
        assert self._seq >= st.mem.last_seq


def _flush_main(ref: "weakref.ref[DB]") -> None:
    """Flush thread.  Holds the DB only weakly while idle, so an unclosed DB
    can be garbage-collected (its __del__ closes it)."""
    while True:
        db = ref()
        if db is None:
            return
        cv = db._cv
        with cv:
            if db._shutting_down:
                return
            idle = not db._state.imms or db._bg_error is not None
            if idle:
                del db
                cv.wait(0.5)
                continue
        try:
            db._flush_step()
        except BaseException as exc:
            db._set_bg_error(exc)
        del db


def _compaction_main(ref: "weakref.ref[DB]") -> None:
    """Compaction thread (same weak-reference discipline as _flush_main)."""
    while True:
        db = ref()
        if db is None:
            return
        cv = db._cv
        with cv:
            if db._shutting_down:
                return
            idle = not db._compaction_wanted or db._bg_error is not None
            if idle:
                del db
                cv.wait(0.5)
                continue
            db._compaction_wanted = False
        try:
            while not db._shutting_down and db._bg_error is None and db._compaction_step():
                pass
        except BaseException as exc:
            db._set_bg_error(exc)
        del db


def _background_main(ref: "weakref.ref[DB]") -> None:
    """The only background thread when ``max_background_jobs == 1``: flushes
    first (they unblock writers), then one compaction at a time."""
    while True:
        db = ref()
        if db is None:
            return
        cv = db._cv
        with cv:
            if db._shutting_down:
                return
            idle = db._bg_error is not None or (not db._state.imms
                                                and not db._compaction_wanted)
            if idle:
                del db
                cv.wait(0.5)
                continue
            if not db._state.imms:
                db._compaction_wanted = False
        try:
            if not db._flush_step():
                if db._compaction_step():
                    with cv:
                        db._compaction_wanted = True   # look again after this one
        except BaseException as exc:
            db._set_bg_error(exc)
        del db


class BoundWriteBatch(WriteBatch):
    """A WriteBatch bound to a DB (``DB.write_batch()``): ``write()`` applies it;
    as a context manager it is applied on exit (skipped when ``transaction``
    is set and the block raised)."""

    __slots__ = ("_db", "_sync", "_transaction")

    def __init__(self, db: DB, sync: bool = False, transaction: bool = False) -> None:
        super().__init__(max_key_size=db._max_key, max_value_size=db._max_value)
        self._db = db
        self._sync = sync
        self._transaction = transaction

    def write(self) -> None:
        """Apply the batch atomically, then clear it."""
        self._db.write(self, sync=self._sync)
        self.clear()

    def __enter__(self) -> "BoundWriteBatch":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None and self._transaction:
            self.clear()
            return
        self.write()


class _PrefixedBatch(BoundWriteBatch):
    __slots__ = ("_prefix",)

    def __init__(self, db: DB, prefix: bytes, sync: bool, transaction: bool) -> None:
        super().__init__(db, sync, transaction)
        self._prefix = prefix

    def put(self, key: bytes, value: bytes) -> None:
        super().put(self._prefix + check_bytes(key, "key"), value)

    def delete(self, key: bytes) -> None:
        super().delete(self._prefix + check_bytes(key, "key"))

    def delete_range(self, start: bytes, stop: bytes) -> None:
        super().delete_range(self._prefix + check_bytes(start, "start"),
                             self._prefix + check_bytes(stop, "stop"))


class Snapshot(_IterationShortcuts):
    """A read-only view of the DB as of ``DB.snapshot()``.  Close it (or use it as a
    context manager) so compaction may drop the versions it keeps alive."""

    def __init__(self, db: DB, seq: int, prefix: bytes = b"") -> None:
        self._db = db
        self._seq = seq
        self._prefix = prefix
        self._closed = False
        self._owner = True

    def _check(self) -> None:
        if self._closed:
            raise ClosedError("snapshot is closed")
        self._db._check_open()

    @property
    def sequence(self) -> int:
        return self._seq

    def get(self, key: Any, default: Any = None) -> Any:
        key = self._db._key(key)
        self._check()
        return self._db._get(self._db._state, self._prefix + key, self._seq, default)

    def __getitem__(self, key: Any) -> bytes:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: Any) -> bool:
        return self.get(key) is not None

    def iterator(self, start: Any = None, stop: Any = None, include_start: bool = True,
                 include_stop: bool = False, prefix: Any = None, reverse: bool = False,
                 include_key: bool = True, include_value: bool = True) -> Iterator:
        self._check()
        return self._db._iterator(self._prefix, start, stop, include_start, include_stop,
                                  prefix, reverse, include_key, include_value, self._root())

    def _root(self) -> "Snapshot":
        return self

    def raw_iterator(self) -> RawIterator:
        self._check()
        return self._db._raw_iterator(self._prefix, self)

    def close(self) -> None:
        """Release the snapshot (idempotent)."""
        if not self._closed:
            self._closed = True
            if self._owner and not self._db._closed:
                self._db._release_snapshot(self._seq)

    release = close

    def __enter__(self) -> "Snapshot":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


class PrefixedDB(_DictProtocol):
    """A view of the keys of ``db`` that start with ``prefix``; the prefix is
    added on writes and stripped from returned keys."""

    def __init__(self, db: DB, prefix: bytes) -> None:
        self.db = db
        self.prefix = prefix

    def _k(self, key: Any, name: str = "key") -> bytes:
        return self.prefix + check_bytes(key, name)

    def put(self, key: Any, value: Any, sync: bool = False) -> None:
        self.db.put(self._k(key), value, sync=sync)

    def get(self, key: Any, default: Any = None) -> Any:
        return self.db.get(self._k(key), default)

    def delete(self, key: Any, sync: bool = False) -> None:
        self.db.delete(self._k(key), sync=sync)

    def delete_range(self, start: Any, stop: Any, sync: bool = False) -> None:
        self.db.delete_range(self._k(start, "start"), self._k(stop, "stop"), sync=sync)

    def write_batch(self, sync: bool = False, transaction: bool = False) -> BoundWriteBatch:
        self.db._check_open()
        return _PrefixedBatch(self.db, self.prefix, _as_bool(sync, "sync"),
                              _as_bool(transaction, "transaction"))

    def iterator(self, start: Any = None, stop: Any = None, include_start: bool = True,
                 include_stop: bool = False, prefix: Any = None, reverse: bool = False,
                 include_key: bool = True, include_value: bool = True,
                 snapshot: Snapshot | None = None) -> Iterator:
        return self.db._iterator(self.prefix, start, stop, include_start, include_stop, prefix,
                                 reverse, include_key, include_value, snapshot)

    def raw_iterator(self, snapshot: Snapshot | None = None) -> RawIterator:
        return self.db._raw_iterator(self.prefix, snapshot)

    def snapshot(self) -> Snapshot:
        snap = self.db.snapshot()
        snap._prefix = self.prefix
        return snap

    def prefixed_db(self, prefix: Any) -> "PrefixedDB":
        return PrefixedDB(self.db, self.prefix + check_bytes(prefix, "prefix"))

    @property
    def closed(self) -> bool:
        return self.db.closed

    def __repr__(self) -> str:
        return f"<lsm.PrefixedDB {self.prefix!r} of {self.db!r}>"


# -- whole-DB operations -----------------------------------------------------------------


def destroy_db(target: Any) -> None:
    """Delete every file of the DB at ``target`` (a directory path or a block
    device).  Files that are not ours are left alone; a directory left empty
    is removed.  LockError if the DB is open."""
    if isinstance(target, (str, os.PathLike)):
        path = os.fspath(target)
        if not os.path.isdir(path):
            return
        fs: FileSystem = PosixFS(path)
    elif isinstance(target, BlockDevice):
        from blockdev.blockfs import BlockFS
        try:
            fs = BlockFS(target)
        except UnsupportedFormatError:
            return
    else:
        raise ArgumentTypeError(
            f"target must be a path or a blockdev.BlockDevice, got {type(target).__name__}")
    try:
        lock = fs.lock(filenames.LOCK)
        try:
            for name in fs.list():
                if filenames.parse_file_name(name) is not None and name != filenames.LOCK:
                    fs.delete(name)
        finally:
            lock.release()
        try:
            fs.delete(filenames.LOCK)
        except NotFoundError:
            pass
        fs.sync_dir()
    finally:
        fs.close()
    if isinstance(target, (str, os.PathLike)):
        try:
            os.rmdir(os.fspath(target))
        except OSError:
            pass   # not empty: foreign files stay


def repair_db(target: Any, **options: Any) -> dict:
    """Rebuild the DB at ``target`` from the tables and logs that survive.

    Every readable entry of every table (a damaged table contributes the
    entries before the damage; the damaged file is renamed ``<name>.corrupt``
    and kept) and every record of every log (damaged log regions are skipped)
    is merged -- newest version per key, deletions applied -- into new tables
    forming one sorted run at level 1, under a new MANIFEST.  Old tables and
    logs are deleted only after the new MANIFEST is durable, so an interrupted
    repair can simply be run again.  Returns a report dict.  The DB must not be
    open (LockError).  Holds every surviving entry in memory: O(DB size).
    """
    from lsm import _native
    from lsm.compaction import build_table
    from lsm.sstable.reader import TableReader
    from lsm.version import VersionEdit, VersionSet

    opts = Options.from_kwargs(**options)
    fs, owns, name = _open_fs(target, False)
    report: dict[str, Any] = {"db": name, "tables": 0, "corrupt_tables": [], "logs": 0,
                              "log_damage": [], "entries_in": 0, "entries_out": 0,
                              "tables_written": 0, "last_sequence": 0}
    try:
        lock = fs.lock(filenames.LOCK)
        try:
            names = fs.list()
            parsed = [(filenames.parse_file_name(n), n) for n in names]
            ours = [(p, n) for p, n in parsed if p is not None]
            top = max((p[1] for p, _ in ours), default=0)
            runs: list[tuple[list[bytes], list[bytes]]] = []
            max_seq = 0
            old_files: list[str] = []
            for (kind, number), fname in sorted(ours, key=lambda t: t[0][1]):
                if kind == filenames.TABLE_FILE:
                    keys: list[bytes] = []
                    values: list[bytes] = []
                    tombs: list[tuple[bytes, bytes, int]] = []
                    damage = None
                    f = fs.open(fname)
                    try:
                        reader = TableReader(f, fname, verify_checksums=True)
                        tombs = list(reader.range_tombstones)
                        for k, v in reader.entries():
                            keys.append(k)
                            values.append(v)
                    except (CorruptionError, UnsupportedFormatError) as exc:
                        damage = exc
                    finally:
                        f.close()
                    run = [(pk, pv) for pk, pv in zip(keys, values)]
                    for start, end, tseq in tombs:
                        run.append((start + struct.pack("<Q", (tseq << 8) | KIND_RANGE_TOMBSTONE),
                                    end))
                    from lsm.dbformat import internal_sort_key
                    run.sort(key=lambda kv: internal_sort_key(kv[0]))
                    if run:
                        runs.append(([k for k, _ in run], [v for _, v in run]))
                        max_seq = max(max_seq, max(
                            int.from_bytes(k[-8:], "little") >> 8 for k, _ in run))
                    report["tables"] += 1
                    report["entries_in"] += len(run)
                    if damage is not None:
                        report["corrupt_tables"].append({"file": fname, "error": str(damage),
                                                         "salvaged_entries": len(run)})
                        fs.rename(fname, fname + ".corrupt")
                    else:
                        old_files.append(fname)
                elif kind == filenames.LOG_FILE:
                    mem = MemTable()

                    def reporter(dropped: int, reason: str, _f: str = fname) -> None:
                        report["log_damage"].append({"file": _f, "dropped_bytes": dropped,
                                                     "reason": reason})
                    f = fs.open(fname)
                    try:
                        lr = LogReader(f, fname, paranoid=False, reporter=reporter)
                        for record in lr:
                            try:
                                seq, items = WriteBatch.decode(record, fname,
                                                               lr.last_record_offset)
                            except CorruptionError as exc:
                                reporter(len(record), str(exc))
                                continue
                            if items:
                                try:
                                    mem.add_batch(seq, items)
                                except InvalidArgumentError as exc:   # a replayed duplicate
                                    reporter(len(record), str(exc))
                                    continue
                                max_seq = max(max_seq, seq + len(items) - 1)
                    finally:
                        f.close()
                    keys, values = mem.run()
                    if keys:
                        runs.append((keys, values))
                    report["logs"] += 1
                    report["entries_in"] += len(keys)
                    old_files.append(fname)
                elif kind in (filenames.MANIFEST_FILE, filenames.TEMP_FILE):
                    old_files.append(fname)
            merged_keys, merged_values = _native.merge(runs, MAX_SEQUENCE, [],
                                                       _native.MERGE_COMPACT, True)
            counter = [top]

            def alloc() -> int:
                counter[0] += 1
                return counter[0]
            new_files = []
            target_size = opts.target_file_size_base
            i = 0
            n = len(merged_keys)
            while i < n:
                j, size = i, 0
                while j < n and size < target_size:
                    size += len(merged_keys[j]) + len(merged_values[j])
                    j += 1
                meta = build_table(fs, alloc(), zip(merged_keys[i:j], merged_values[i:j]), (),
                                   opts)
                if meta is not None:
                    new_files.append((1, meta))
                i = j
            report["entries_out"] = n
            report["tables_written"] = len(new_files)
            report["last_sequence"] = max_seq
            if fs.exists(filenames.CURRENT):
                fs.delete(filenames.CURRENT)
            vs = VersionSet(fs, opts)
            vs.create_new()
            vs.mark_file_number_used(counter[0])
            vs.log_and_apply(VersionEdit(last_sequence=max_seq, new_files=tuple(new_files)))
            keep = vs.manifest_name
            vs.close()
            for fname in old_files:
                if fname != keep and fs.exists(fname):
                    fs.delete(fname)
            fs.sync_dir()
        finally:
            lock.release()
    finally:
        if owns:
            fs.close()
    return report
