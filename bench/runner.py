"""Runs a benchmark suite: every engine through the chosen workloads.

Design
------
Engines run one after another (never at the same time, so they do not
compete for the two cores); each goes through the workloads in the order
given, db_bench style, with an ``EngineSession`` keeping its DB between
workloads (see ``bench.workloads`` for which workload needs a fresh or a
filled DB).  Around every workload the runner takes a ``StatSnapshot``
(engine stats, process I/O, device-leg counters) and derives the figures of
``bench.metrics``; results stream to ``out`` as they complete, and the whole
``SuiteResult`` goes to the report (table, JSON, plot).

Memory (``bench.memory``): around every workload a ``PeakTracker`` reads
the process's peak and current RSS; each result gets ``peak_rss_mib`` (the
peak during the workload, bulk load excluded, above the engine's baseline)
and ``rss_growth_mib`` (resident after minus before: memory the workload
left behind), and ``SuiteResult.memory`` holds each engine's run peak.  The
baseline is the RSS after the engine's library was imported and before its
DB was opened.  With ``isolate`` each engine runs in a fresh interpreter
(``bench.isolate``), so its figures are its own; without it the engines
share this process and a later engine's figures include what earlier ones
left allocated (the report marks them ``in-process``).

Storage: without ``--db`` every DB lives in a temporary directory removed at
the end; with ``--db DIR`` the DBs are kept in ``DIR/<engine>`` (a DIR
lsm-bench did not create must not hold those subdirectories already; a DIR
it created carries a ``.lsm-bench`` marker and is reused, older DBs wiped).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Optional, TextIO

from bench import metrics
from bench.memory import KiB_PER_MiB, PeakTracker
from bench.devices import Target, device_support, make_target
from bench.engines import EngineOptions, engine_class
from bench.workloads import WORKLOADS, WRITE_WORKLOADS, PhaseResult, RunConfig, bulk_load, run_workload
from blockdev.errors import ArgumentTypeError, Error, InvalidArgumentError

__all__ = ["BenchConfig", "SuiteResult", "EngineSession", "run_suite", "run_engine", "MARKER"]

MARKER = ".lsm-bench"
MiB = 1 << 20


@dataclass(frozen=True)
class BenchConfig:
    """Everything one suite run needs."""

    run: RunConfig
    engines: tuple = ("lsm", "plyvel", "rocksdict", "lmdb", "sqlite3")
    benchmarks: tuple = ("fillseq", "fillrandom", "readrandom", "readseq", "fillbatch")
    device: str = "posix"
    db_dir: Optional[str] = None
    engine_options: EngineOptions = field(default_factory=EngineOptions)
    device_size: Optional[int] = None      # None: from num, key and value size
    isolate: bool = False                  # each engine in a fresh interpreter

    def __post_init__(self) -> None:
        if not isinstance(self.run, RunConfig):
            raise ArgumentTypeError("run must be a RunConfig")
        if not isinstance(self.isolate, bool):
            raise ArgumentTypeError("isolate must be a bool")
        for b in self.benchmarks:
            if b not in WORKLOADS:
                raise InvalidArgumentError(f"unknown benchmark {b!r}; choose from {', '.join(WORKLOADS)}")
        for e in self.engines:
            engine_class(e)
        if not self.engines:
            raise InvalidArgumentError("engines must not be empty")
        if not self.benchmarks:
            raise InvalidArgumentError("benchmarks must not be empty")

    @property
    def size(self) -> int:
        """Device size: room for the data several times over (compaction, WAL)."""
        if self.device_size is not None:
            return self.device_size
        s = self.run.spec
        need = 6 * s.num * (s.key_size + s.value_size + 24) + 64 * MiB
        return -(-need // MiB) * MiB

    def as_dict(self) -> dict:
        s = self.run.spec
        return {"num": s.num, "reads": self.run.num_reads, "key_size": s.key_size,
                "value_size": s.value_size, "compressibility": s.compressibility, "seed": s.seed,
                "threads": self.run.threads, "batch_size": self.run.batch_size,
                "seek_nexts": self.run.seek_nexts, "engines": list(self.engines),
                "benchmarks": list(self.benchmarks), "device": self.device,
                "device_size": self.size if self.device != "posix" else None,
                "db": self.db_dir, "engine_options": self.engine_options.as_dict(),
                "report_interval": self.run.report_interval, "isolate": self.isolate}


@dataclass
class SuiteResult:
    config: BenchConfig
    results: list = field(default_factory=list)           # PhaseResult
    skipped: dict = field(default_factory=dict)           # engine -> reason
    failed: dict = field(default_factory=dict)            # engine -> "workload: error"
    versions: dict = field(default_factory=dict)          # engine -> version string
    stat_keys: dict = field(default_factory=dict)         # figure -> lsm stat key used
    memory: dict = field(default_factory=dict)            # engine -> run memory figures
    notes: list = field(default_factory=list)
    env: dict = field(default_factory=dict)
    started: float = 0.0
    seconds: float = 0.0


class EngineSession:
    """One engine's DB across the workloads of a run."""

    def __init__(self, engine: Any, cfg: BenchConfig, base_dir: str, out: TextIO) -> None:
        self.engine = engine
        self.cfg = cfg
        self.base_dir = base_dir
        self.out = out
        self.state = "none"
        self.target: Optional[Target] = None
        self.generation = 0

    def _label(self) -> str:
        return self.engine.name

    def fresh(self) -> None:
        """Close any open DB and open a new empty one."""
        self.close()
        self.generation += 1
        label = self._label()
        path = os.path.join(self.base_dir, label)
        if os.path.exists(path):
            shutil.rmtree(path)
        self.target = make_target(self.cfg.device, self.base_dir, label, self.cfg.size,
                                  seed=self.cfg.run.spec.seed)
        self.engine.open(self.target.target)
        self.state = "fresh"

    def prepare(self, needs: str) -> Optional[str]:
        """Bring the DB to the ``needs`` state; returns a note for the report."""
        if needs == "fresh":
            self.fresh()
            return None
        if needs == "filled" and self.state != "filled":
            self.fresh()
            secs = bulk_load(self.engine, self.cfg.run.spec, self.cfg.run.progress)
            self.state = "filled"
            return f"loaded {self.cfg.run.spec.num} keys untimed first ({secs:.1f}s)"
        return None

    def close(self) -> None:
        if self.state != "none":
            self.engine.close()
        if self.target is not None:
            self.target.close()
            self.target = None
        self.state = "none"


def _prepare_base(db_dir: Optional[str]) -> tuple[str, bool]:
    """(directory the DBs go in, whether to delete it at the end)."""
    if db_dir is None:
        return tempfile.mkdtemp(prefix="lsm-bench-"), True
    db_dir = os.path.abspath(db_dir)
    if os.path.exists(db_dir):
        if not os.path.isdir(db_dir):
            raise InvalidArgumentError(f"--db {db_dir} exists and is not a directory")
        if os.listdir(db_dir) and not os.path.exists(os.path.join(db_dir, MARKER)):
            raise InvalidArgumentError(
                f"--db {db_dir} is not empty and was not created by lsm-bench; "
                "choose an empty or new directory")
    os.makedirs(db_dir, exist_ok=True)
    with open(os.path.join(db_dir, MARKER), "w") as f:
        f.write("directory of lsm-bench databases; lsm-bench may wipe its subdirectories\n")
    return db_dir, False


def _live_user_bytes(cfg: BenchConfig, state: str) -> Optional[int]:
    s = cfg.run.spec
    return s.num * (s.key_size + s.value_size) if state == "filled" else None


def _measure(session: EngineSession, name: str, result: PhaseResult,
             before: metrics.StatSnapshot, after: metrics.StatSnapshot,
             suite: SuiteResult) -> None:
    """Fill ``result.extra`` with the derived figures of one workload."""
    cfg = session.cfg
    eng = session.engine
    spec = cfg.run.spec
    written = result.bytes if name in WRITE_WORKLOADS else 0
    if name == "readwhilewriting":
        written = result.extra.get("writer_ops", 0) * (spec.key_size + spec.value_size)
    live = _live_user_bytes(cfg, session.state)
    gets = result.ops if name in ("readrandom", "readmissing", "readwhilewriting") else 0
    io = metrics.io_delta(before, after)
    if cfg.device == "posix":
        result.extra["io_wchar"] = io["wchar"]
        result.extra["io_rchar"] = io["rchar"]
        if written and io["wchar"] is not None:
            result.extra["io_write_amp"] = io["wchar"] / written
        du = eng.disk_usage()
        result.extra["disk_bytes"] = du
        if du is not None and live:
            result.extra["io_space_amp"] = du / live
    legs = metrics.leg_delta(before, after)
    if legs:
        result.extra["legs"] = legs
        if gets:
            result.extra["leg_reads_per_get"] = {leg: c["reads"] / gets for leg, c in legs.items()}
        dev_written = sum(c["bytes_written"] for leg, c in legs.items() if leg != "cache")
        if written:
            result.extra["device_write_amp"] = dev_written / written
    if session.target is not None and session.target.superdisk is not None:
        try:
            st = session.target.superdisk_status()
            result.extra["superdisk_state"] = st.get("state") if isinstance(st, dict) else None
        except Exception as exc:  # surfaced in the report, the run goes on
            result.notes.append(f"superdisk status failed: {exc}")
    if eng.name == "lsm":
        fig, used = metrics.derive_lsm_figures(before, after, gets=gets, user_bytes=written,
                                               live_user_bytes=live or 0)
        result.extra.update(fig)
        suite.stat_keys.update(used)
        if "_stats_error" in after.flat:
            result.notes.append(f"db.stats() failed: {after.flat['_stats_error']}")


def _memory_figures(tracker: PeakTracker, before_kib: Optional[int], result: PhaseResult,
                    isolated: bool) -> None:
    """Put the workload's memory figures in ``result.extra`` (MiB)."""
    after = tracker.mark()
    result.extra["peak_rss_mib"] = (tracker.over_baseline_mib(after.peak_kib)
                                    if tracker.resettable else None)
    result.extra["rss_growth_mib"] = (None if after.rss_kib is None or before_kib is None
                                      else (after.rss_kib - before_kib) / KiB_PER_MiB)
    result.extra["rss_isolated"] = isolated


def run_engine(name: str, cfg: BenchConfig, base: str, suite: SuiteResult,
               out: TextIO, err: TextIO, on_result: Any = None, isolated: bool = False) -> None:
    """Run engine ``name`` (installed, able to use ``cfg.device``) through
    ``cfg.benchmarks`` in this process, adding its results, failure and
    memory figures to ``suite``.  ``isolated``: this process runs nothing else."""
    cls = engine_class(name)
    tracker = PeakTracker()    # baseline: the library is imported, no DB open yet
    engine = cls(cfg.engine_options)
    session = EngineSession(engine, cfg, base, out)
    wl = "open"
    try:
        for wl in cfg.benchmarks:
            _fn, needs, leaves = WORKLOADS[wl]
            note = session.prepare(needs)
            before = metrics.snapshot(engine, session.target)
            mem_before = tracker.mark().rss_kib
            result = run_workload(wl, engine, cfg.run)
            _memory_figures(tracker, mem_before, result, isolated)
            session.state = leaves
            after = metrics.snapshot(engine, session.target)
            if note:
                result.notes.insert(0, note)
            _measure(session, wl, result, before, after, suite)
            suite.results.append(result)
            if on_result is not None:
                on_result(result)
    except Error as exc:
        # An engine failing must not hide the others' figures: report
        # it (exit status 1) and go on with the next engine.
        suite.failed[name] = f"{wl}: {type(exc).__name__}: {exc}"
        err.write(f"lsm-bench: {name} failed in {wl}: {type(exc).__name__}: {exc}\n")
    finally:
        try:
            session.close()
        except Error as exc:
            suite.failed.setdefault(name, f"close: {type(exc).__name__}: {exc}")
            err.write(f"lsm-bench: closing {name} failed: {exc}\n")
        mem = tracker.summary()
        mem["isolated"] = isolated
        suite.memory[name] = mem


def run_suite(cfg: BenchConfig, out: TextIO = sys.stdout, err: TextIO = sys.stderr,
              on_result: Any = None) -> SuiteResult:
    """Run every available engine through ``cfg.benchmarks``; returns the results.

    ``on_result(result)`` is called after each workload (the CLI prints a row).
    Engines that are not installed, or cannot use ``cfg.device``, are skipped
    with a note on ``err``.
    """
    if not isinstance(cfg, BenchConfig):
        raise ArgumentTypeError("cfg must be a BenchConfig")
    suite = SuiteResult(config=cfg, env=metrics.env_info(), started=time.time())
    ok, why = device_support(cfg.device)
    if not ok:
        raise InvalidArgumentError(f"--device {cfg.device} is not available: {why}")
    base, cleanup = _prepare_base(cfg.db_dir)
    t_start = time.perf_counter()
    try:
        for name in cfg.engines:
            cls = engine_class(name)
            avail, info = cls.available()
            if not avail:
                suite.skipped[name] = info
                err.write(f"lsm-bench: skipping {name}: {info}\n")
                continue
            if cfg.device != "posix" and not cls.supports_devices:
                reason = f"{name} cannot run on a raw block device (--device {cfg.device})"
                suite.skipped[name] = reason
                err.write(f"lsm-bench: skipping {name}: {reason}\n")
                continue
            suite.versions[name] = info
            if cfg.isolate:
                from bench.isolate import run_engine_isolated
                run_engine_isolated(name, cfg, base, suite, err, on_result)
            else:
                run_engine(name, cfg, base, suite, out, err, on_result)
    finally:
        if cleanup:
            shutil.rmtree(base, ignore_errors=False)
    suite.seconds = time.perf_counter() - t_start
    return suite
