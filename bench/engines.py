"""Engine adapters: one small interface over lsm and its peers.

Design
------
Every engine lsm-bench compares is wrapped in an ``Engine`` subclass with
the same operations: ``open(target)``, point ``put``/``get``/``delete``, a
durable (``sync``) put, an atomic multi-put ``write_batch``, a full forward or
reverse scan, a seek followed by a short scan, ``close`` and ``stats``.

The timed loops must not pay for the adapter, so the point operations are
handed out as plain callables (``put_fn()``, ``get_fn()``, ...) that are, where
the library allows, the library's own bound methods.  ``get_fn`` and friends
are called once per thread: an engine whose handles are per-thread (sqlite3)
returns a callable bound to that thread's connection.

Fairness (the same settings for everyone, as far as each library exposes
them; ``EngineOptions``): block cache size, write buffer size, bloom bits
per key, block size, compression (lz4 where available; LevelDB only has
snappy).  Durability is honest: a plain put is not fsynced by any engine
(it survives a process crash, not a power loss); ``sync_put`` is made
durable before it returns (fsync/fdatasync) by every engine:

* lsm: ``put(..., sync=True)``;
* plyvel: ``put(..., sync=True)``;
* rocksdict: ``WriteOptions.sync = True``;
* lmdb: the environment is opened with ``sync=False`` (commit does not
  fsync), and a sync put commits then calls ``env.sync(True)``;
* sqlite3: WAL mode with ``synchronous=NORMAL`` (commits are not fsynced),
  and a sync put runs with ``synchronous=FULL``.

Peers run on a plain directory only; ``lsm`` also opens a block device
(the engine puts its BlockFS inside it).
"""

from __future__ import annotations

import abc
import importlib
import os
import shutil
import sqlite3
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

from blockdev.errors import ArgumentTypeError, InvalidArgumentError

__all__ = [
    "EngineOptions", "Engine", "LsmEngine", "PlyvelEngine", "RocksdictEngine",
    "LmdbEngine", "Sqlite3Engine", "ENGINES", "engine_class", "available_engines",
]

MiB = 1 << 20


@dataclass(frozen=True)
class EngineOptions:
    """Settings applied to every engine that has an equivalent knob."""

    block_cache_size: int = 8 * MiB
    write_buffer_size: int = 4 * MiB
    bloom_bits_per_key: int = 10
    block_size: int = 4096
    compression: Optional[str] = "lz4"
    lmdb_map_size: int = 1 << 36
    lsm_options: dict = field(default_factory=dict)   # extra keyword options for lsm.DB

    def __post_init__(self) -> None:
        for name in ("block_cache_size", "write_buffer_size", "bloom_bits_per_key",
                     "block_size", "lmdb_map_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise ArgumentTypeError(f"{name} must be an int, got {type(v).__name__}")
            if v < 0:
                raise InvalidArgumentError(f"{name} must be >= 0, got {v}")
        if self.compression not in (None, "lz4"):
            raise InvalidArgumentError(f"compression must be 'lz4' or None, got {self.compression!r}")
        if not isinstance(self.lsm_options, dict):
            raise ArgumentTypeError("lsm_options must be a dict")

    def as_dict(self) -> dict:
        return {"block_cache_size": self.block_cache_size,
                "write_buffer_size": self.write_buffer_size,
                "bloom_bits_per_key": self.bloom_bits_per_key,
                "block_size": self.block_size,
                "compression": self.compression,
                "lmdb_map_size": self.lmdb_map_size,
                "lsm_options": dict(self.lsm_options)}


class Engine(abc.ABC):
    """One storage engine under test.  Open one DB at a time per instance."""

    name: str = "?"
    module: str = "?"
    supports_devices: bool = False

    def __init__(self, options: EngineOptions) -> None:
        if not isinstance(options, EngineOptions):
            raise ArgumentTypeError("options must be an EngineOptions")
        self.options = options
        self.path: Optional[str] = None

    # -- discovery ------------------------------------------------------------
    @classmethod
    def available(cls) -> tuple[bool, str]:
        """``(True, version)`` when the library imports, else ``(False, why)``."""
        try:
            mod = importlib.import_module(cls.module)
        except Exception as exc:  # ImportError, or a broken native build
            return False, f"{cls.module} is not importable ({type(exc).__name__}: {exc})"
        return True, cls._version_of(mod)

    @staticmethod
    def _version_of(mod: Any) -> str:
        return str(getattr(mod, "__version__", "unknown"))

    # -- lifecycle ------------------------------------------------------------
    @abc.abstractmethod
    def open(self, target: Any) -> None:
        """Create and open a new, empty DB at ``target`` (a directory path;
        a block device for engines with ``supports_devices``)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the DB (idempotent)."""

    def reopen(self) -> None:
        """Close and reopen the same DB (drops caches owned by the engine)."""
        raise NotImplementedError(f"{self.name} cannot reopen")

    # -- point operations (callables, fetched once per thread) -----------------
    @abc.abstractmethod
    def put_fn(self) -> Callable[[bytes, bytes], Any]: ...

    @abc.abstractmethod
    def sync_put_fn(self) -> Callable[[bytes, bytes], Any]: ...

    @abc.abstractmethod
    def get_fn(self) -> Callable[[bytes], Optional[bytes]]: ...

    @abc.abstractmethod
    def delete_fn(self) -> Callable[[bytes], Any]: ...

    @abc.abstractmethod
    def write_batch(self, pairs: list[tuple[bytes, bytes]]) -> None:
        """Write every pair atomically (one batch / transaction)."""

    @abc.abstractmethod
    def scan(self, reverse: bool = False) -> tuple[int, int]:
        """Read every entry in order; returns (entries, key+value bytes)."""

    @abc.abstractmethod
    def seek_scan(self, key: bytes, count: int) -> int:
        """Seek to the first key >= ``key`` and read up to ``count`` entries;
        returns how many were read."""

    def seek_scan_fn(self) -> Callable[[bytes, int], int]:
        return self.seek_scan

    def flush(self) -> None:
        """Push buffered writes to storage files where the engine can."""

    def stats(self) -> dict:
        """Engine-reported statistics (raw; may be empty)."""
        return {}

    def disk_usage(self) -> Optional[int]:
        """Bytes the DB occupies on disk, or None when it is not a directory."""
        if self.path is None or not os.path.isdir(self.path):
            return None
        total = 0
        for root, _dirs, files in os.walk(self.path):
            for f in files:
                try:
                    st = os.stat(os.path.join(root, f))
                except FileNotFoundError:
                    continue  # deleted by a background compaction meanwhile
                total += st.st_blocks * 512 if hasattr(st, "st_blocks") else st.st_size
        return total


# ---------------------------------------------------------------------------
class _DbHandleEngine(Engine):
    """An engine whose open DB is ``self.db`` with the library's own
    ``put``/``get``/``delete``/``close`` methods: the point callables are
    those bound methods (no adapter in the timed loops)."""

    def close(self) -> None:
        db = getattr(self, "db", None)
        if db is not None:
            db.close()
            self.db = None

    def put_fn(self) -> Callable[[bytes, bytes], Any]:
        return self.db.put

    def get_fn(self) -> Callable[[bytes], Optional[bytes]]:
        return self.db.get

    def delete_fn(self) -> Callable[[bytes], Any]:
        return self.db.delete


class _LevelDbApiEngine(_DbHandleEngine):
    """A ``_DbHandleEngine`` whose DB has the LevelDB-style Python API shared
    by ``lsm.DB`` and plyvel: ``put(k, v, sync=True)``, a ``write_batch()``
    context manager, and ``iterator(reverse=...)`` yielding ``(key, value)``."""

    def sync_put_fn(self) -> Callable[[bytes, bytes], Any]:
        put = self.db.put

        def sync_put(k: bytes, v: bytes) -> None:
            put(k, v, sync=True)
        return sync_put

    def write_batch(self, pairs: list[tuple[bytes, bytes]]) -> None:
        with self.db.write_batch() as wb:
            put = wb.put
            for k, v in pairs:
                put(k, v)

    def scan(self, reverse: bool = False) -> tuple[int, int]:
        n = b = 0
        for k, v in self.db.iterator(reverse=reverse):
            n += 1
            b += len(k) + len(v)
        return n, b


# ---------------------------------------------------------------------------
def _lsm_db_class() -> Any:
    """``lsm.DB`` (SPEC §2); while the package root does not export it yet,
    the class from ``lsm.db``.  None when neither exists."""
    import lsm
    cls = getattr(lsm, "DB", None)
    if cls is None:
        try:
            from lsm.db import DB as cls  # noqa: N811
        except ImportError:
            return None
    return cls


class LsmEngine(_LevelDbApiEngine):
    """superdisk-lsm itself (``lsm.DB`` per SPEC §2)."""

    name = "lsm"
    module = "lsm"
    supports_devices = True

    @classmethod
    def available(cls) -> tuple[bool, str]:
        ok, info = super().available()
        if not ok:
            return ok, info
        import lsm
        if _lsm_db_class() is None:
            return False, "lsm.DB does not exist yet in this checkout"
        return True, f"{info} ({getattr(lsm, 'implementation', '?')})"

    @staticmethod
    def _version_of(mod: Any) -> str:
        if getattr(mod, "__version__", None):
            return str(mod.__version__)
        try:
            from importlib.metadata import version
            return version("superdisk-lsm")
        except Exception:
            return "checkout"

    def _db_options(self) -> dict:
        o = self.options
        opts: dict = {"write_buffer_size": o.write_buffer_size,
                      "block_cache_size": o.block_cache_size,
                      "bloom_bits_per_key": o.bloom_bits_per_key,
                      "block_size": o.block_size,
                      "compression": o.compression}
        opts.update(o.lsm_options)
        return opts

    def open(self, target: Any) -> None:
        self._target = target
        self.path = target if isinstance(target, (str, os.PathLike)) else None
        self.db = _lsm_db_class()(target, create_if_missing=True, **self._db_options())

    def reopen(self) -> None:
        self.db.close()
        self.db = _lsm_db_class()(self._target, create_if_missing=False, **self._db_options())

    def seek_scan(self, key, count):
        n = 0
        it = self.db.iterator(start=key)
        try:
            for _ in it:
                n += 1
                if n >= count:
                    break
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
        return n

    def flush(self):
        self.db.flush()

    def stats(self) -> dict:
        out: dict = {}
        try:
            s = self.db.stats()
            if isinstance(s, dict):
                out.update(s)
        except Exception as exc:  # report, do not hide: the table prints n/a
            out["_stats_error"] = f"{type(exc).__name__}: {exc}"
        return out

    def property(self, name: str) -> Any:
        try:
            return self.db.get_property(name)
        except Exception:
            return None


# ---------------------------------------------------------------------------
class PlyvelEngine(_LevelDbApiEngine):
    """LevelDB through plyvel (LevelDB has snappy, not lz4)."""

    name = "plyvel"
    module = "plyvel"

    def _open(self, create: bool) -> None:
        import plyvel
        o = self.options
        self.db = plyvel.DB(self.path, create_if_missing=create, error_if_exists=create,
                            write_buffer_size=o.write_buffer_size,
                            lru_cache_size=o.block_cache_size,
                            block_size=o.block_size,
                            bloom_filter_bits=o.bloom_bits_per_key,
                            compression="snappy" if o.compression else None)

    def open(self, target):
        self.path = os.fspath(target)
        self._open(True)

    def reopen(self):
        self.db.close()
        self._open(False)

    def seek_scan(self, key, count):
        n = 0
        with self.db.iterator(start=key) as it:
            for _ in it:
                n += 1
                if n >= count:
                    break
        return n

    def stats(self):
        raw = self.db.get_property(b"leveldb.stats")
        return {"leveldb.stats": raw.decode() if raw else None}


# ---------------------------------------------------------------------------
class RocksdictEngine(_DbHandleEngine):
    """RocksDB through rocksdict's ``Rdict`` in raw (bytes) mode."""

    name = "rocksdict"
    module = "rocksdict"

    @staticmethod
    def _version_of(mod):
        try:
            from importlib.metadata import version
            return version("rocksdict")
        except Exception:
            return "unknown"

    def _make_options(self):
        import rocksdict as rd
        o = self.options
        opt = rd.Options(raw_mode=True)
        opt.create_if_missing(True)
        opt.set_write_buffer_size(o.write_buffer_size)
        opt.set_max_background_jobs(2)
        tbl = rd.BlockBasedOptions()
        tbl.set_block_cache(rd.Cache(o.block_cache_size))
        tbl.set_block_size(o.block_size)
        if o.bloom_bits_per_key:
            tbl.set_bloom_filter(o.bloom_bits_per_key, False)
        opt.set_block_based_table_factory(tbl)
        opt.set_compression_type(rd.DBCompressionType.lz4() if o.compression
                                 else rd.DBCompressionType.none())
        return opt

    def _open(self):
        import rocksdict as rd
        self.db = rd.Rdict(self.path, self._make_options())
        self._sync_opts = rd.WriteOptions()
        self._sync_opts.sync = True

    def open(self, target):
        self.path = os.fspath(target)
        self._open()

    def reopen(self):
        self.db.close()
        self._open()

    def sync_put_fn(self):
        put, wo = self.db.put, self._sync_opts

        def sync_put(k, v):
            put(k, v, wo)
        return sync_put

    def write_batch(self, pairs):
        import rocksdict as rd
        wb = rd.WriteBatch(raw_mode=True)
        put = wb.put
        for k, v in pairs:
            put(k, v)
        self.db.write(wb)

    def scan(self, reverse=False):
        n = b = 0
        for k, v in self.db.items(backwards=reverse):
            n += 1
            b += len(k) + len(v)
        return n, b

    def seek_scan(self, key, count):
        n = 0
        for _ in self.db.items(from_key=key):
            n += 1
            if n >= count:
                break
        return n

    def flush(self):
        self.db.flush()

    def stats(self):
        out = {}
        for prop in ("rocksdb.block-cache-usage", "rocksdb.total-sst-files-size",
                     "rocksdb.actual-delayed-write-rate"):
            try:
                out[prop] = self.db.property_int_value(prop)
            except Exception:
                out[prop] = None
        return out


# ---------------------------------------------------------------------------
class LmdbEngine(Engine):
    """LMDB through py-lmdb: a copy-on-write B+tree, one write txn per put."""

    name = "lmdb"
    module = "lmdb"

    def _open(self):
        import lmdb
        self.env = lmdb.open(self.path, map_size=self.options.lmdb_map_size,
                             writemap=False, sync=False, metasync=True,
                             readahead=False, max_readers=256, lock=True)

    def open(self, target):
        self.path = os.fspath(target)
        os.makedirs(self.path, exist_ok=True)
        self._open()

    def reopen(self):
        self.env.close()
        self._open()

    def close(self):
        env = getattr(self, "env", None)
        if env is not None:
            env.close()
            self.env = None

    def put_fn(self):
        begin = self.env.begin

        def put(k, v):
            with begin(write=True) as txn:
                txn.put(k, v)
        return put

    def sync_put_fn(self):
        begin, sync = self.env.begin, self.env.sync

        def sync_put(k, v):
            with begin(write=True) as txn:
                txn.put(k, v)
            sync(True)
        return sync_put

    def get_fn(self):
        begin = self.env.begin

        def get(k):
            with begin() as txn:
                return txn.get(k)
        return get

    def delete_fn(self):
        begin = self.env.begin

        def delete(k):
            with begin(write=True) as txn:
                txn.delete(k)
        return delete

    def write_batch(self, pairs):
        with self.env.begin(write=True) as txn:
            put = txn.put
            for k, v in pairs:
                put(k, v)

    def scan(self, reverse=False):
        n = b = 0
        with self.env.begin() as txn:
            cur = txn.cursor()
            it = cur.iterprev() if reverse else cur.iternext()
            if reverse:
                cur.last()
            for k, v in it:
                n += 1
                b += len(k) + len(v)
        return n, b

    def seek_scan(self, key, count):
        n = 0
        with self.env.begin() as txn:
            cur = txn.cursor()
            if cur.set_range(key):
                for _ in cur.iternext():
                    n += 1
                    if n >= count:
                        break
        return n

    def flush(self):
        self.env.sync(True)

    def stats(self):
        return dict(self.env.stat())


# ---------------------------------------------------------------------------
class Sqlite3Engine(Engine):
    """SQLite (stdlib sqlite3): WAL mode, ``kv(k BLOB PRIMARY KEY, v BLOB)
    WITHOUT ROWID``, autocommit per statement, one connection per thread."""

    name = "sqlite3"
    module = "sqlite3"

    @staticmethod
    def _version_of(mod):
        return mod.sqlite_version

    def open(self, target):
        self.path = os.fspath(target)
        os.makedirs(self.path, exist_ok=True)
        self._file = os.path.join(self.path, "bench.sqlite")
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        c = self._conn()
        c.execute("CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")

    def _conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            c = sqlite3.connect(self._file, isolation_level=None, check_same_thread=False,
                                timeout=60.0)
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA synchronous=NORMAL")
            c.execute(f"PRAGMA cache_size=-{max(1, self.options.block_cache_size // 1024)}")
            self._local.conn = c
            with self._lock:
                self._conns.append(c)
        return c

    def reopen(self):
        self.close()
        self._local = threading.local()
        self._conns = []
        self._conn()

    def close(self):
        conns = getattr(self, "_conns", [])
        for c in conns:
            c.close()
        self._conns = []
        self._local = threading.local()

    def put_fn(self):
        ex = self._conn().execute
        sql = "INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)"

        def put(k, v):
            ex(sql, (k, v))
        return put

    def sync_put_fn(self):
        c = self._conn()
        ex = c.execute
        sql = "INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)"

        def sync_put(k, v):
            ex("PRAGMA synchronous=FULL")
            try:
                ex(sql, (k, v))
            finally:
                ex("PRAGMA synchronous=NORMAL")
        return sync_put

    def get_fn(self):
        ex = self._conn().execute
        sql = "SELECT v FROM kv WHERE k = ?"

        def get(k):
            row = ex(sql, (k,)).fetchone()
            return None if row is None else row[0]
        return get

    def delete_fn(self):
        ex = self._conn().execute
        sql = "DELETE FROM kv WHERE k = ?"

        def delete(k):
            ex(sql, (k,))
        return delete

    def write_batch(self, pairs):
        c = self._conn()
        c.execute("BEGIN")
        try:
            c.executemany("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", pairs)
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")

    def scan(self, reverse=False):
        n = b = 0
        order = "DESC" if reverse else "ASC"
        for k, v in self._conn().execute(f"SELECT k, v FROM kv ORDER BY k {order}"):
            n += 1
            b += len(k) + len(v)
        return n, b

    def seek_scan(self, key, count):
        rows = self._conn().execute(
            "SELECT k, v FROM kv WHERE k >= ? ORDER BY k LIMIT ?", (key, count)).fetchall()
        return len(rows)

    def seek_scan_fn(self):
        ex = self._conn().execute
        sql = "SELECT k, v FROM kv WHERE k >= ? ORDER BY k LIMIT ?"

        def seek_scan(key, count):
            return len(ex(sql, (key, count)).fetchall())
        return seek_scan

    def flush(self):
        self._conn().execute("PRAGMA wal_checkpoint(PASSIVE)")

    def stats(self):
        c = self._conn()
        return {"page_count": c.execute("PRAGMA page_count").fetchone()[0],
                "page_size": c.execute("PRAGMA page_size").fetchone()[0]}


ENGINES: dict[str, type[Engine]] = {
    cls.name: cls for cls in (LsmEngine, PlyvelEngine, RocksdictEngine, LmdbEngine, Sqlite3Engine)
}


def engine_class(name: str) -> type[Engine]:
    """The adapter class called ``name``; InvalidArgumentError if unknown."""
    if not isinstance(name, str):
        raise ArgumentTypeError(f"name must be a str, got {type(name).__name__}")
    try:
        return ENGINES[name]
    except KeyError:
        raise InvalidArgumentError(
            f"unknown engine {name!r}; choose from {', '.join(ENGINES)}") from None


def available_engines(names: Iterable[str]) -> tuple[list[str], dict[str, str]]:
    """Split ``names`` into (available, {missing name: reason})."""
    ok: list[str] = []
    missing: dict[str, str] = {}
    for n in names:
        avail, info = engine_class(n).available()
        if avail:
            ok.append(n)
        else:
            missing[n] = info
    return ok, missing


def remove_db_dir(path: str) -> None:
    """Delete a benchmark DB directory (errors surface)."""
    if os.path.exists(path):
        shutil.rmtree(path)
