"""The db_bench-style workloads and the timed loops that run them.

Design
------
A workload is a named function ``(Phase) -> None`` plus what DB state it
needs before it runs and leaves behind (``WORKLOADS``):

==================  ==========  ==========  ==========================================
workload            needs       leaves      operations (``num`` = ``--num``)
==================  ==========  ==========  ==========================================
fillseq             fresh       filled      ``num`` puts, keys ascending
fillrandom          fresh       filled      ``num`` puts, a random permutation of keys
overwrite           filled      filled      ``num`` puts of uniformly drawn existing keys
fillbatch           fresh       filled      ``num`` puts in atomic batches of ``--batch-size``
fillsync            fresh       partial     ``max(1, num // 100)`` durable (sync) puts
readrandom          filled      filled      ``reads`` gets of uniformly drawn existing keys
readmissing         filled      filled      ``reads`` gets of keys never written
readseq             filled      filled      one forward scan of every entry
readreverse         filled      filled      one reverse scan of every entry
seekrandom          filled      filled      ``reads`` seeks, each reading ``--seek-nexts`` entries
deleterandom        filled      partial     ``num`` deletes, a random permutation of keys
readwhilewriting    filled      filled      ``reads`` gets on ``--threads`` reader threads
                                            while one writer overwrites random keys
==================  ==========  ==========  ==========================================

The session (``EngineSession``) tracks the DB state: a workload needing a
*fresh* DB gets a new empty one, a workload needing a *filled* DB after one
that left it partial (or at the start) gets an untimed bulk load first (and
the report says so).

Timing: keys and values are generated per chunk outside the timed loop.
Inside it, one ``perf_counter_ns`` call per operation closes the previous
operation's interval and opens the next, so every operation's latency lands
in a ``Histogram`` and ops/s is computed from the summed loop time of the
same intervals (one clock read per op of overhead, no double counting).
Scans record per-entry latency averaged over 256-entry steps (one clock read
per step), because a clock read costs about as much as a LevelDB ``next()``.
With ``--threads N > 1`` the operations are split among N threads and ops/s
is over the wall time of the parallel section.

With ``RunConfig.report_interval`` (``--report-interval N``, one thread)
the same per-operation latencies also feed a ``bench.intervals``
``IntervalRecorder``: ``extra["intervals"]`` holds ops/s and RSS per N
operations and ``extra["interval_slowdown"]`` the first/last ratio (fills,
reads, seeks, deletes and scans; fillbatch and scans by whole batch / step).

Correctness is checked as it goes: readrandom must find every key,
readmissing none, scans must see every entry; a mismatch is reported as a
``check_failed`` note in the result (and in the table), never silently.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from itertools import islice
from typing import Callable, Optional

from bench.data import CHUNK, DataSpec, ValueSource
from bench.engines import Engine
from bench.histogram import Histogram
from bench.intervals import IntervalRecorder, slowdown
from bench.progress import Progress
from blockdev.errors import ArgumentTypeError, InvalidArgumentError

__all__ = ["WORKLOADS", "WRITE_WORKLOADS", "READ_WORKLOADS", "RunConfig", "PhaseResult",
           "Phase", "run_workload"]

_pc = time.perf_counter_ns
_SCAN_STEP = 256


@dataclass(frozen=True)
class RunConfig:
    """Workload parameters shared by every engine of one run."""

    spec: DataSpec
    reads: Optional[int] = None       # None: num
    threads: int = 1
    batch_size: int = 1000
    seek_nexts: int = 10
    progress: bool = False
    report_interval: Optional[int] = None   # ops per throughput interval; None: no series

    def __post_init__(self) -> None:
        if not isinstance(self.spec, DataSpec):
            raise ArgumentTypeError("spec must be a DataSpec")
        for name in ("threads", "batch_size", "seek_nexts"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise ArgumentTypeError(f"{name} must be an int")
            if v < 1:
                raise InvalidArgumentError(f"{name} must be >= 1, got {v}")
        if self.reads is not None and (not isinstance(self.reads, int) or self.reads < 1):
            raise InvalidArgumentError(f"reads must be >= 1, got {self.reads}")
        if self.report_interval is not None:
            if not isinstance(self.report_interval, int) or isinstance(self.report_interval, bool):
                raise ArgumentTypeError("report_interval must be an int or None")
            if self.report_interval < 1:
                raise InvalidArgumentError(
                    f"report_interval must be >= 1, got {self.report_interval}")

    @property
    def num_reads(self) -> int:
        return self.spec.num if self.reads is None else self.reads


@dataclass
class PhaseResult:
    """The measured figures of one workload on one engine."""

    workload: str
    engine: str
    ops: int = 0
    seconds: float = 0.0
    bytes: int = 0
    hist: Histogram = field(default_factory=Histogram)
    extra: dict = field(default_factory=dict)     # amplification, io, writer figures...
    notes: list = field(default_factory=list)

    @property
    def ops_per_sec(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0

    @property
    def mb_per_sec(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds > 0 else 0.0

    @property
    def micros_per_op(self) -> float:
        return self.seconds * 1e6 / self.ops if self.ops else 0.0


class Phase:
    """One workload run on one opened engine: its inputs and its result."""

    def __init__(self, name: str, engine: Engine, cfg: RunConfig, result: PhaseResult) -> None:
        self.name = name
        self.engine = engine
        self.cfg = cfg
        self.spec = cfg.spec
        self.result = result
        # the interval series is over one thread's timed loop (--threads 1)
        self.recorder: Optional[IntervalRecorder] = (
            IntervalRecorder(cfg.report_interval)
            if cfg.report_interval is not None and cfg.threads == 1 else None)

    def progress(self, total: int) -> Progress:
        return Progress(total, f"{self.engine.name}:{self.name}", self.cfg.progress)


# ---------------------------------------------------------------------------
# timed loops

def _put_loop(put: Callable, keys: list, vals: list, lat: list) -> int:
    """Put every pair; append each latency to ``lat``; return loop ns."""
    app = lat.append
    pc = _pc
    start = t0 = pc()
    for k, v in zip(keys, vals):
        put(k, v)
        t1 = pc()
        app(t1 - t0)
        t0 = t1
    return t0 - start


def _get_loop(get: Callable, keys: list, lat: list) -> tuple[int, int, int]:
    """Get every key; return (loop ns, found, value bytes)."""
    app = lat.append
    pc = _pc
    found = nbytes = 0
    start = t0 = pc()
    for k in keys:
        v = get(k)
        t1 = pc()
        app(t1 - t0)
        t0 = t1
        if v is not None:
            found += 1
            nbytes += len(v)
    return t0 - start, found, nbytes


def _del_loop(delete: Callable, keys: list, lat: list) -> int:
    app = lat.append
    pc = _pc
    start = t0 = pc()
    for k in keys:
        delete(k)
        t1 = pc()
        app(t1 - t0)
        t0 = t1
    return t0 - start


def _seek_loop(seek: Callable, keys: list, n: int, lat: list) -> tuple[int, int]:
    app = lat.append
    pc = _pc
    got = 0
    start = t0 = pc()
    for k in keys:
        got += seek(k, n)
        t1 = pc()
        app(t1 - t0)
        t0 = t1
    return t0 - start, got


def _threads(n: int, target: Callable[[int], None]) -> float:
    """Run ``target(tid)`` on ``n`` threads; return the wall seconds.  The first
    exception of any thread is re-raised."""
    errors: list[BaseException] = []

    def wrap(tid: int) -> None:
        try:
            target(tid)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    ts = [threading.Thread(target=wrap, args=(t,), name=f"bench-{t}") for t in range(n)]
    start = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.perf_counter() - start
    if errors:
        raise errors[0]
    return wall


# ---------------------------------------------------------------------------
# workloads

def _timed_threads(ph: Phase, count: int,
                   body: Callable[[int, Callable[[int, list], None]], None]) -> None:
    """Run ``body(tid, record)`` for ``tid`` in ``range(ph.cfg.threads)``: on
    threads when there are several, inline when there is one.  The body calls
    ``record(ns, lat)`` after each timed chunk; that adds ``ns`` to the
    thread's loop time, the latencies ``lat`` to its histogram and to the
    phase recorder, and ``len(lat)`` operations to the progress bar (O(len(lat))
    per call, once per chunk, never per operation).  Afterwards the per-thread
    histograms are merged into the result, ``ops`` is ``count`` and
    ``seconds`` is the wall time (several threads) or the timed loop time
    (one thread)."""
    res = ph.result
    nthreads = ph.cfg.threads
    hists = [Histogram() for _ in range(nthreads)]
    loop_ns = [0] * nthreads
    bar = ph.progress(count)
    rec = ph.recorder

    def worker(tid: int) -> None:
        hist = hists[tid]

        def record(ns: int, lat: list) -> None:
            loop_ns[tid] += ns
            hist.add_many(lat)
            if rec is not None:
                rec.add(lat)
            bar.update(len(lat))
        body(tid, record)

    with bar:
        wall = _threads(nthreads, worker) if nthreads > 1 else (worker(0) or 0.0)
    for h in hists:
        res.hist.merge(h)
    res.ops = count
    res.seconds = wall if nthreads > 1 else loop_ns[0] / 1e9


def _fill(ph: Phase, order_kind: str, count: int, sync: bool = False, purpose: str = "") -> None:
    spec, res, eng = ph.spec, ph.result, ph.engine
    order = spec.order(order_kind, count, purpose or ph.name)
    key = spec.key
    nthreads = ph.cfg.threads
    chunk = min(CHUNK, max(1, -(-count // nthreads)))
    chunks = list(order.chunks(chunk)) if nthreads > 1 else None

    def body(tid: int, record: Callable[[int, list], None]) -> None:
        put = eng.sync_put_fn() if sync else eng.put_fn()
        values = ValueSource(spec)
        source = order.chunks(chunk) if chunks is None else chunks[tid::nthreads]
        for idxs in source:
            keys = [key(i) for i in idxs]
            vals = values.take(len(keys))
            lat: list = []
            record(_put_loop(put, keys, vals, lat), lat)

    _timed_threads(ph, count, body)
    res.bytes = count * (spec.key_size + spec.value_size)


def w_fillseq(ph: Phase) -> None:
    _fill(ph, "seq", ph.spec.num)


def w_fillrandom(ph: Phase) -> None:
    _fill(ph, "perm", ph.spec.num)


def w_overwrite(ph: Phase) -> None:
    _fill(ph, "uniform", ph.spec.num)


def w_fillsync(ph: Phase) -> None:
    _fill(ph, "perm", max(1, ph.spec.num // 100), sync=True)
    ph.result.notes.append(f"{ph.result.ops} sync puts (num/100)")


def w_fillbatch(ph: Phase) -> None:
    spec, res, eng = ph.spec, ph.result, ph.engine
    bs = ph.cfg.batch_size
    key = spec.key
    values = ValueSource(spec)
    lat: list = []
    total = 0
    write_batch = eng.write_batch
    with ph.progress(spec.num) as bar:
        for idxs in spec.order("seq").chunks(max(bs, (CHUNK // bs) * bs)):
            keys = [key(i) for i in idxs]
            vals = values.take(len(keys))
            batches = [list(zip(keys[s:s + bs], vals[s:s + bs])) for s in range(0, len(keys), bs)]
            app = lat.append
            first = len(lat)
            start = t0 = _pc()
            for b in batches:
                write_batch(b)
                t1 = _pc()
                app(t1 - t0)
                t0 = t1
            total += t0 - start
            if ph.recorder is not None:
                for b, ns in zip(batches, lat[first:]):
                    ph.recorder.add_grouped((ns,), len(b))
            bar.update(len(keys))
    res.hist.add_many(lat)
    res.ops = spec.num
    res.seconds = total / 1e9
    res.bytes = spec.num * (spec.key_size + spec.value_size)
    res.notes.append(f"batches of {bs}; latency is per batch")


def _reads(ph: Phase, missing: bool) -> None:
    spec, res, eng = ph.spec, ph.result, ph.engine
    count = ph.cfg.num_reads
    nthreads = ph.cfg.threads
    found = [0] * nthreads
    nbytes = [0] * nthreads
    mk = spec.missing_key if missing else spec.key

    def body(tid: int, record: Callable[[int, list], None]) -> None:
        get = eng.get_fn()
        share = count // nthreads + (1 if tid < count % nthreads else 0)
        order = spec.order("uniform", share, f"{ph.name}:{tid}")
        for idxs in order.chunks():
            keys = [mk(i) for i in idxs]
            lat: list = []
            ns, f, b = _get_loop(get, keys, lat)
            found[tid] += f
            nbytes[tid] += b
            record(ns, lat)

    _timed_threads(ph, count, body)
    nfound = sum(found)
    res.bytes = count * spec.key_size + sum(nbytes)
    res.extra["found"] = nfound
    res.notes.append(f"({nfound} of {count} found)")
    expected = 0 if missing else count
    if nfound != expected:
        res.notes.append(f"check_failed: expected {expected} found")


def w_readrandom(ph: Phase) -> None:
    _reads(ph, missing=False)


def w_readmissing(ph: Phase) -> None:
    _reads(ph, missing=True)


def _scan(ph: Phase, reverse: bool) -> None:
    spec, res, eng = ph.spec, ph.result, ph.engine
    lat: list = []
    n = nbytes = 0
    total = 0
    it = _iter_entries(eng, reverse)
    with ph.progress(spec.num) as bar:
        try:
            while True:
                t0 = _pc()
                got = 0
                for k, v in islice(it, _SCAN_STEP):
                    got += 1
                    nbytes += len(k) + len(v)
                t1 = _pc()
                if got == 0:
                    total += t1 - t0
                    break
                total += t1 - t0
                lat.append((t1 - t0) // got)
                if ph.recorder is not None:
                    ph.recorder.add_grouped((t1 - t0,), got)
                n += got
                bar.update(got)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
    res.hist.add_many(lat)
    res.ops = n
    res.seconds = total / 1e9
    res.bytes = nbytes
    res.notes.append("latency per entry, averaged over 256-entry steps")
    if n != spec.num:
        res.notes.append(f"check_failed: scanned {n} entries, expected {spec.num}")


def _iter_entries(eng: Engine, reverse: bool):
    """A Python iterator of (key, value) over the whole DB (for the scans)."""
    name = eng.name
    if name in ("lsm", "plyvel"):
        return eng.db.iterator(reverse=reverse)
    if name == "rocksdict":
        return iter(eng.db.items(backwards=reverse))
    if name == "lmdb":
        return _lmdb_iter(eng, reverse)
    if name == "sqlite3":
        order = "DESC" if reverse else "ASC"
        return iter(eng._conn().execute(f"SELECT k, v FROM kv ORDER BY k {order}"))
    return _generic_iter(eng, reverse)


def _lmdb_iter(eng: Engine, reverse: bool):
    with eng.env.begin() as txn:
        cur = txn.cursor()
        yield from (cur.iterprev() if reverse else cur.iternext())


def _generic_iter(eng: Engine, reverse: bool):  # pragma: no cover - every engine above has one
    raise InvalidArgumentError(f"no iterator for engine {eng.name}")


def w_readseq(ph: Phase) -> None:
    _scan(ph, reverse=False)


def w_readreverse(ph: Phase) -> None:
    _scan(ph, reverse=True)


def w_seekrandom(ph: Phase) -> None:
    spec, res, eng = ph.spec, ph.result, ph.engine
    count = ph.cfg.num_reads
    nexts = ph.cfg.seek_nexts
    nthreads = ph.cfg.threads
    got = [0] * nthreads

    def body(tid: int, record: Callable[[int, list], None]) -> None:
        seek = eng.seek_scan_fn()
        share = count // nthreads + (1 if tid < count % nthreads else 0)
        for idxs in spec.order("uniform", share, f"{ph.name}:{tid}").chunks():
            keys = [spec.key(i) for i in idxs]
            lat: list = []
            ns, g = _seek_loop(seek, keys, nexts, lat)
            got[tid] += g
            record(ns, lat)

    _timed_threads(ph, count, body)
    entries = sum(got)
    res.bytes = entries * (spec.key_size + spec.value_size)
    res.extra["entries_read"] = entries
    res.notes.append(f"seek + {nexts} entries each; {entries} entries read")
    if entries == 0:
        res.notes.append("check_failed: no entry read after any seek")


def w_deleterandom(ph: Phase) -> None:
    spec, res, eng = ph.spec, ph.result, ph.engine
    delete = eng.delete_fn()
    total = 0
    with ph.progress(spec.num) as bar:
        for idxs in spec.order("perm", purpose="deleterandom").chunks():
            keys = [spec.key(i) for i in idxs]
            lat: list = []
            total += _del_loop(delete, keys, lat)
            res.hist.add_many(lat)
            if ph.recorder is not None:
                ph.recorder.add(lat)
            bar.update(len(keys))
    res.ops = spec.num
    res.seconds = total / 1e9
    res.bytes = spec.num * spec.key_size


def w_readwhilewriting(ph: Phase) -> None:
    """Readers (``--threads``) do random gets; one writer overwrites random
    keys until every reader is done.  The figures are the readers'; the
    writer's ops/s and latency go to ``extra``."""
    spec, res, eng = ph.spec, ph.result, ph.engine
    count = ph.cfg.num_reads
    nreaders = ph.cfg.threads
    stop = threading.Event()
    hists = [Histogram() for _ in range(nreaders)]
    found = [0] * nreaders
    whist = Histogram()
    wstate = {"ops": 0, "ns": 0}
    errors: list[BaseException] = []
    bar = ph.progress(count)

    def writer() -> None:
        try:
            put = eng.put_fn()
            values = ValueSource(spec)
            rnd = spec.rng("readwhilewriting:writer")
            num = spec.num
            while not stop.is_set():
                keys = [spec.key(int(rnd.random() * num)) for _ in range(256)]
                vals = values.take(256)
                lat: list = []
                wstate["ns"] += _put_loop(put, keys, vals, lat)
                wstate["ops"] += len(keys)
                whist.add_many(lat)
        except BaseException as exc:  # surfaced after join
            errors.append(exc)

    def reader(tid: int) -> None:
        get = eng.get_fn()
        share = count // nreaders + (1 if tid < count % nreaders else 0)
        for idxs in spec.order("uniform", share, f"{ph.name}:{tid}").chunks(1024):
            keys = [spec.key(i) for i in idxs]
            lat: list = []
            _ns, f, _b = _get_loop(get, keys, lat)
            found[tid] += f
            hists[tid].add_many(lat)
            bar.update(len(keys))

    wt = threading.Thread(target=writer, name="bench-writer")
    wt.start()
    try:
        with bar:
            wall = _threads(nreaders, reader)
    finally:
        stop.set()
        wt.join()
    if errors:
        raise errors[0]
    for h in hists:
        res.hist.merge(h)
    res.ops = count
    res.seconds = wall
    res.bytes = count * (spec.key_size + spec.value_size)
    nfound = sum(found)
    res.extra["found"] = nfound
    res.extra["writer_ops"] = wstate["ops"]
    res.extra["writer_ops_per_sec"] = wstate["ops"] / wall if wall > 0 else 0.0
    res.extra["writer_p99_us"] = whist.percentile(99) / 1e3
    res.notes.append(f"{nreaders} reader(s); writer did {wstate['ops']} puts "
                     f"({res.extra['writer_ops_per_sec']:.0f}/s)")
    if nfound != count:
        res.notes.append(f"check_failed: expected {count} found, got {nfound}")


# name -> (function, needs, leaves)
WORKLOADS: dict[str, tuple[Callable[[Phase], None], str, str]] = {
    "fillseq": (w_fillseq, "fresh", "filled"),
    "fillrandom": (w_fillrandom, "fresh", "filled"),
    "overwrite": (w_overwrite, "filled", "filled"),
    "fillbatch": (w_fillbatch, "fresh", "filled"),
    "fillsync": (w_fillsync, "fresh", "partial"),
    "readrandom": (w_readrandom, "filled", "filled"),
    "readmissing": (w_readmissing, "filled", "filled"),
    "readseq": (w_readseq, "filled", "filled"),
    "readreverse": (w_readreverse, "filled", "filled"),
    "seekrandom": (w_seekrandom, "filled", "filled"),
    "deleterandom": (w_deleterandom, "filled", "partial"),
    "readwhilewriting": (w_readwhilewriting, "filled", "filled"),
}
WRITE_WORKLOADS = ("fillseq", "fillrandom", "overwrite", "fillbatch", "fillsync", "deleterandom")
READ_WORKLOADS = ("readrandom", "readmissing", "readseq", "readreverse", "seekrandom",
                  "readwhilewriting")


def bulk_load(engine: Engine, spec: DataSpec, progress: bool = False, batch: int = 1000) -> float:
    """Untimed load of every key (ascending, atomic batches); returns seconds."""
    values = ValueSource(spec)
    start = time.perf_counter()
    with Progress(spec.num, f"{engine.name}:load", progress) as bar:
        for idxs in spec.order("seq").chunks(CHUNK):
            keys = [spec.key(i) for i in idxs]
            vals = values.take(len(keys))
            for s in range(0, len(keys), batch):
                engine.write_batch(list(zip(keys[s:s + batch], vals[s:s + batch])))
            bar.update(len(keys))
    return time.perf_counter() - start


def run_workload(name: str, engine: Engine, cfg: RunConfig) -> PhaseResult:
    """Run workload ``name`` on the opened ``engine`` (state already prepared)."""
    if name not in WORKLOADS:
        raise InvalidArgumentError(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}")
    res = PhaseResult(name, engine.name)
    ph = Phase(name, engine, cfg, res)
    WORKLOADS[name][0](ph)
    res.hist._check()
    if cfg.report_interval is not None:
        if ph.recorder is None:
            res.notes.append("no interval series: it needs --threads 1")
        elif name == "readwhilewriting":
            res.notes.append("no interval series for readwhilewriting")
        else:
            series = ph.recorder.finish()
            res.extra["interval_ops"] = cfg.report_interval
            res.extra["intervals"] = series
            res.extra["interval_slowdown"] = slowdown(series, cfg.report_interval)
    return res
