"""Tests of lsm-bench (bench/): histogram, data generation, every workload on
every installed engine at a tiny --num, the JSON document, the PNG plot, the
argument errors, devices and the superdisk scenarios (when their parts exist)."""

from __future__ import annotations

import array
import io
import json
import os
import random

import pytest

from bench import cli, report
from bench.data import DataSpec, ValueSource
from bench.devices import device_support
from bench.engines import ENGINES, EngineOptions, engine_class
from bench.histogram import Histogram, bucket_bounds, bucket_index
from bench.workloads import WORKLOADS
from blockdev.errors import ArgumentTypeError, InvalidArgumentError

ALL = ",".join(WORKLOADS)
TINY = 300
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _engine_param(name: str):
    ok, why = engine_class(name).available()
    return pytest.param(name, marks=pytest.mark.skipif(not ok, reason=f"{name}: {why}"))


ENGINE_PARAMS = [_engine_param(n) for n in ENGINES]


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = cli.main(argv, out=out, err=err)
    return rc, out.getvalue(), err.getvalue()


# -- histogram ---------------------------------------------------------------

def test_bucket_bounds_cover_values():
    for v in list(range(200)) + [random.Random(1).randrange(1 << 40) for _ in range(2000)]:
        lo, hi = bucket_bounds(bucket_index(v))
        assert lo <= v < hi
        assert hi - lo <= max(1, lo // 32)  # log-linear: at most ~3% wide


def test_histogram_percentiles_close_to_exact():
    rnd = random.Random(7)
    vals = [int(rnd.lognormvariate(9, 1.2)) for _ in range(20000)]
    h = Histogram()
    for v in vals:
        h.add(v)
    h._check()
    s = sorted(vals)
    for p in (50, 99, 99.9):
        exact = s[min(len(s) - 1, int(len(s) * p / 100))]
        assert abs(h.percentile(p) - exact) <= 0.04 * exact + 1
    assert h.min == s[0] and h.max == s[-1] and h.count == len(vals)


def test_histogram_add_many_equals_add_and_merge():
    rnd = random.Random(3)
    vals = [rnd.randrange(0, 10 ** 9) for _ in range(5000)] + [0, 1, 63, 64, 65]
    a, b = Histogram(), Histogram()
    for v in vals:
        a.add(v)
    b.add_many(array.array("q", vals))
    assert a.nonzero_buckets() == b.nonzero_buckets()
    assert (a.count, a.total, a.min, a.max) == (b.count, b.total, b.min, b.max)
    c = Histogram()
    c.merge(a)
    c.merge(b)
    c._check()
    assert c.count == 2 * len(vals) and c.percentile(50) == pytest.approx(a.percentile(50))
    cdf = c.cdf()
    assert cdf[-1][1] == pytest.approx(1.0)
    assert all(x1 <= x2 for (x1, _), (x2, _) in zip(cdf, cdf[1:]))


def test_histogram_errors_and_empty():
    h = Histogram()
    assert h.percentile(99) == 0.0 and h.cdf() == []
    with pytest.raises(InvalidArgumentError):
        h.add(-1)
    with pytest.raises(ArgumentTypeError):
        h.add(1.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        h.percentile(101)
    with pytest.raises(InvalidArgumentError):
        h.add_many([5, -1])


# -- data --------------------------------------------------------------------

def test_data_is_deterministic_and_sized():
    s = DataSpec(num=1000, key_size=16, value_size=100, compressibility=0.5, seed=9)
    o1 = [i for c in s.order("perm").chunks(100) for i in c]
    o2 = [i for c in DataSpec(num=1000, seed=9).order("perm").chunks(300) for i in c]
    assert o1 == o2 and sorted(o1) == list(range(1000))
    assert o1 != [i for c in DataSpec(num=1000, seed=10).order("perm").chunks() for i in c]
    assert s.key(42) == b"0000000000000042" and len(s.missing_key(5)) == 16
    vals = ValueSource(s).take(50)
    assert all(len(v) == 100 for v in vals)
    import zlib
    ratio = len(zlib.compress(b"".join(ValueSource(s).take(2000)))) / 200000
    assert 0.35 < ratio < 0.75  # about the requested compressibility
    with pytest.raises(InvalidArgumentError):
        DataSpec(num=10 ** 6, key_size=4)
    with pytest.raises(InvalidArgumentError):
        DataSpec(num=10, compressibility=0)


def test_engine_options_validate():
    with pytest.raises(InvalidArgumentError):
        EngineOptions(compression="zstd")
    with pytest.raises(ArgumentTypeError):
        EngineOptions(block_cache_size="big")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        engine_class("berkeleydb")


# -- every workload on every engine -------------------------------------------

@pytest.mark.parametrize("engine", ENGINE_PARAMS)
def test_every_workload_runs(engine, tmp_path):
    js = tmp_path / "out.json"
    rc, out, err = run(["--num", str(TINY), "--benchmarks", ALL, "--engines", engine,
                        "--json", str(js), "--no-progress"])
    assert rc == 0, out + err
    doc = json.loads(js.read_text())
    got = [(r["engine"], r["workload"]) for r in doc["results"]]
    assert got == [(engine, w) for w in WORKLOADS]
    for r in doc["results"]:
        assert r["ops"] > 0 and r["ops_per_sec"] > 0, r
        assert not any(n.startswith("check_failed") for n in r["notes"]), r
        assert r["latency_us"]["p50"] <= r["latency_us"]["p99"] <= r["latency_us"]["p999"]
        assert sum(b[2] for b in r["histogram"]["buckets"]) == r["latency_us"]["count"]
    by = {r["workload"]: r for r in doc["results"]}
    assert by["readrandom"]["extra"]["found"] == TINY
    assert by["readmissing"]["extra"]["found"] == 0
    assert by["readseq"]["ops"] == TINY and by["readreverse"]["ops"] == TINY
    assert by["fillsync"]["ops"] == max(1, TINY // 100)
    for wl in WORKLOADS:
        assert f"{engine:<13} {wl:<17}" in out


@pytest.mark.skipif(not engine_class("lsm").available()[0],
                    reason=f"lsm: {engine_class('lsm').available()[1]}")
def test_lsm_figures_are_reported(tmp_path):
    js = tmp_path / "lsm.json"
    rc, out, err = run(["--num", "2000", "--benchmarks", "fillrandom,readrandom",
                        "--engines", "lsm", "--json", str(js)])
    assert rc == 0, out + err
    doc = json.loads(js.read_text())
    for r in doc["results"]:
        for key in ("write_amp", "read_amp", "space_amp", "cache_hit_rate", "stall_s"):
            assert key in r["extra"]
    assert "w-amp" in out and "cache-hit" in out
    assert doc["machine"]["lsm_implementation"] in ("native", "python")


def test_threads_and_options(tmp_path):
    peers = [n for n in ("plyvel", "lmdb", "sqlite3") if engine_class(n).available()[0]]
    rc, out, err = run(["--num", "400", "--benchmarks", "fillrandom,readrandom,seekrandom,readwhilewriting",
                        "--engines", ",".join(peers), "--threads", "2", "--key-size", "20",
                        "--value-size", "50", "--compressibility", "1.0", "--seek-nexts", "3",
                        "--reads", "500"])
    assert rc == 0, out + err
    assert "2 reader(s)" in out and "(500 of 500 found)" in out


# -- JSON and plot -------------------------------------------------------------

def test_json_has_documented_fields_and_plot_is_png(tmp_path):
    js, png = tmp_path / "r.json", tmp_path / "r.png"
    rc, out, err = run(["--num", "500", "--benchmarks", "fillseq,readrandom,readseq",
                        "--engines", "sqlite3,lmdb",
                        "--json", str(js), "--plot", str(png), "--seed", "5"])
    assert rc == 0, out + err
    doc = json.loads(js.read_text())
    for f in report.JSON_FIELDS:
        assert f in doc, f
    assert doc["tool"] == "lsm-bench" and doc["schema"] == report.SCHEMA
    for f in ("platform", "cpu_count", "python", "lsm_implementation"):
        assert f in doc["machine"]
    assert doc["options"]["num"] == 500 and doc["options"]["seed"] == 5
    assert doc["options"]["engine_options"]["block_cache_size"] == 8 << 20
    for r in doc["results"]:
        for f in report.RESULT_FIELDS:
            assert f in r, f
        for p in ("p50", "p99", "p999"):
            assert r["latency_us"][p] > 0
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert os.path.getsize(png) > 10000


def test_missing_engine_is_skipped_with_note(monkeypatch, tmp_path):
    from bench.engines import PlyvelEngine
    monkeypatch.setattr(PlyvelEngine, "module", "plyvel_not_installed_here")
    rc, out, err = run(["--num", "200", "--benchmarks", "fillseq", "--engines", "plyvel,sqlite3"])
    assert rc == 0
    assert "skipping plyvel" in err and "skipped plyvel" in out
    assert "sqlite3       fillseq" in out


def test_db_dir_is_kept_and_foreign_dir_refused(tmp_path):
    d = tmp_path / "keep"
    rc, out, err = run(["--num", "200", "--benchmarks", "fillseq", "--engines", "sqlite3",
                        "--db", str(d)])
    assert rc == 0, err
    assert (d / "sqlite3" / "bench.sqlite").exists()
    rc, out, err = run(["--num", "200", "--benchmarks", "fillseq", "--engines", "sqlite3",
                        "--db", str(d)])
    assert rc == 0, err  # lsm-bench's own directory is reused
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    rc, out, err = run(["--num", "200", "--benchmarks", "fillseq", "--engines", "sqlite3",
                        "--db", str(foreign)])
    assert rc == 1 and "not empty" in err
    assert (foreign / "precious.txt").read_text() == "keep me"


# -- argument errors -------------------------------------------------------------

@pytest.mark.parametrize("argv, what", [
    (["--num", "0"], "--num"),
    (["--num", "ten"], "--num"),
    (["--benchmarks", "fillseq,bogus"], "bogus"),
    (["--engines", "lsm,berkeleydb"], "berkeleydb"),
    (["--compressibility", "1.5"], "--compressibility"),
    (["--device", "tape"], "--device"),
    (["--num", "100000", "--key-size", "3"], "key_size"),
    (["--lsm-option", "novalue"], "KEY=VALUE"),
    (["--threads", "-1"], "--threads"),
    (["--scenario", "meteor"], "--scenario"),
])
def test_argument_errors(argv, what, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    assert what in capsys.readouterr().err


# -- devices and scenarios ---------------------------------------------------------

_lsm_ok, _lsm_why = engine_class("lsm").available()


@pytest.mark.skipif(not _lsm_ok, reason=f"lsm: {_lsm_why}")
@pytest.mark.skipif(not device_support("local")[0], reason=str(device_support("local")[1]))
def test_lsm_on_emulated_local_device_and_peers_skipped():
    rc, out, err = run(["--num", "300", "--benchmarks", "fillrandom,readrandom",
                        "--engines", "lsm,sqlite3", "--device", "local"])
    assert rc == 0, out + err
    assert "skipping sqlite3" in err and "raw block device" in err
    assert "dev-reads/get" in out


@pytest.mark.skipif(not _lsm_ok, reason=f"lsm: {_lsm_why}")
@pytest.mark.skipif(not device_support("superdisk")[0], reason=str(device_support("superdisk")[1]))
def test_superdisk_scenario_runs(tmp_path):
    js = tmp_path / "sd.json"
    rc, out, err = run(["--scenario", "superdisk", "--num", "500", "--reads", "100",
                        "--json", str(js)])
    assert rc == 0, out + err
    doc = json.loads(js.read_text())
    sd = doc["scenarios"]["superdisk"]
    assert set(sd["devices"]) == {"network", "local", "superdisk"}
    assert set(sd["checks"]) >= {"read_p50_vs_local", "sync_put_p50_vs_network"}


@pytest.mark.skipif(not _lsm_ok, reason=f"lsm: {_lsm_why}")
@pytest.mark.skipif(not device_support("superdisk")[0], reason=str(device_support("superdisk")[1]))
def test_cache_loss_scenario_keeps_serving(tmp_path):
    js, png = tmp_path / "cl.json", tmp_path / "cl.png"
    rc, out, err = run(["--scenario", "cache-loss", "--num", "500", "--duration", "3",
                        "--json", str(js), "--plot", str(png)])
    assert rc == 0, out + err
    doc = json.loads(js.read_text())
    cl = doc["scenarios"]["cache-loss"]
    assert [e["event"] for e in cl["events"]][:1] == ["cache lost"]
    assert cl["errors"] == []
    degraded = [w for w in cl["windows"] if w["state"] == "degraded"]
    assert degraded, "the cache loss must show as a degraded array"
    # while degraded the gets were served, from the durable leg only
    assert sum(w["reads"]["durable"] for w in degraded) > 0
    assert all(w["reads"]["cache"] == 0 for w in degraded[1:])
    assert cl["final_status"]["state"] in ("clean", "rebuilding")
    assert png.read_bytes()[:8] == PNG_MAGIC


# -- reading the engine's stats defensively ------------------------------------------

def test_lsm_figures_derived_from_stats_deltas():
    from bench.metrics import StatSnapshot, derive_lsm_figures, flatten
    before = StatSnapshot(flat=flatten({"wal_bytes": 100, "flush_bytes": 0,
                                        "compaction_bytes_written": 0, "stall_micros": 5,
                                        "block_cache": {"hits": 10, "misses": 10},
                                        "total_bytes": 0}))
    after = StatSnapshot(flat=flatten({"wal_bytes": 1100, "flush_bytes": 1000,
                                       "compaction_bytes_written": 500, "stall_micros": 2_000_005,
                                       "block_cache": {"hits": 40, "misses": 20},
                                       "total_bytes": 3000, "write_amplification": 9.9}))
    fig, used = derive_lsm_figures(before, after, gets=5, user_bytes=1000, live_user_bytes=1500)
    assert fig["write_amp"] == pytest.approx(2.5)      # (1000 + 1000 + 500) / 1000
    assert fig["read_amp"] == pytest.approx(2.0)       # 10 misses / 5 gets
    assert fig["cache_hit_rate"] == pytest.approx(0.75)
    assert fig["stall_s"] == pytest.approx(2.0)
    assert fig["space_amp"] == pytest.approx(2.0)
    assert "block_cache_misses" in used["read_amp"]
    empty, _ = derive_lsm_figures(StatSnapshot(), StatSnapshot(), gets=5, user_bytes=10,
                                  live_user_bytes=10)
    assert all(v is None for v in empty.values())


def test_no_block_cache_gives_no_cache_based_read_amp():
    from bench.metrics import StatSnapshot, derive_lsm_figures, flatten
    snap = StatSnapshot(flat=flatten({"block_cache": {"hits": 0, "misses": 0, "capacity": 0}}))
    fig, _ = derive_lsm_figures(snap, snap, gets=100, user_bytes=0, live_user_bytes=100)
    assert fig["read_amp"] is None and fig["cache_hit_rate"] is None


def test_progress_bar_draws_only_when_enabled():
    from bench.progress import Progress, progress_wanted
    buf = io.StringIO()
    with Progress(100, "lsm:fillseq", True, stream=buf) as bar:
        bar.update(50)
        bar.update(50)
    text = buf.getvalue()
    assert "lsm:fillseq" in text and "100.0%" in text and text.endswith("\r")
    quiet = io.StringIO()
    with Progress(100, "x", False, stream=quiet) as bar:
        bar.update(100)
    assert quiet.getvalue() == ""
    assert progress_wanted(None, io.StringIO()) is False and progress_wanted(True) is True


# -- throughput intervals (--report-interval) -------------------------------------

def test_interval_recorder_cuts_exact_intervals():
    from bench.intervals import IntervalRecorder, slowdown
    rec = IntervalRecorder(4)
    rec.add([1000] * 3)
    rec.add([1000, 2000, 2000, 2000, 2000, 7])       # closes [0,4) and [4,8)
    rec.add_grouped([5000], 3)                         # one group of 3 ops, never split
    series = rec.finish()
    assert [iv["first_op"] for iv in series] == [0, 4, 8]
    assert [iv["ops"] for iv in series] == [4, 4, 4]
    assert series[0]["seconds"] == pytest.approx(4e-6)
    assert series[1]["seconds"] == pytest.approx(8e-6)
    assert series[2]["seconds"] == pytest.approx(5007e-9)     # 1 op of 7 ns + the group
    assert series[0]["ops_per_sec"] == pytest.approx(1e6)
    assert all(iv["rss_mib"] is None or iv["rss_mib"] > 0 for iv in series)
    assert slowdown(series, 4) == pytest.approx(series[0]["ops_per_sec"] / series[2]["ops_per_sec"])
    # a short last interval is not the "last million"
    short = [{"ops": 10, "ops_per_sec": 100.0}, {"ops": 10, "ops_per_sec": 50.0},
             {"ops": 2, "ops_per_sec": 1.0}]
    assert slowdown(short, 10) == pytest.approx(2.0)
    assert slowdown(short[:1], 10) is None
    with pytest.raises(InvalidArgumentError):
        IntervalRecorder(0)
    with pytest.raises(ArgumentTypeError):
        IntervalRecorder("10")  # type: ignore[arg-type]


def _interval_engine() -> str:
    for name in ("lsm", "sqlite3"):
        if engine_class(name).available()[0]:
            return name
    pytest.skip("neither lsm nor sqlite3 is available")


def test_report_interval_series_is_well_formed(tmp_path):
    engine = _interval_engine()
    js = tmp_path / "iv.json"
    num, every = 2500, 600
    rc, out, err = run(["--num", str(num), "--benchmarks", "fillrandom,fillbatch,readrandom",
                        "--batch-size", "100", "--engines", engine, "--report-interval", str(every),
                        "--json", str(js), "--no-progress"])
    assert rc == 0, out + err
    doc = json.loads(js.read_text())
    assert doc["options"]["report_interval"] == every
    for r in doc["results"]:
        x = r["extra"]
        series = x["intervals"]
        assert x["interval_ops"] == every
        assert [iv["index"] for iv in series] == list(range(len(series)))
        for iv in series:
            assert set(report.INTERVAL_FIELDS) <= set(iv)
            assert iv["ops"] > 0 and iv["seconds"] > 0 and iv["ops_per_sec"] > 0
        # contiguous, covering every operation exactly once
        assert [iv["first_op"] for iv in series] == \
            [sum(s["ops"] for s in series[:k]) for k in range(len(series))]
        assert sum(iv["ops"] for iv in series) == r["ops"] == num
        # the intervals are the workload's own timed loop, split
        assert sum(iv["seconds"] for iv in series) == pytest.approx(r["seconds"], rel=1e-6)
        if r["workload"] == "fillbatch":   # groups of 100 never split: 600-op intervals
            assert all(iv["ops"] % 100 == 0 for iv in series)
        else:
            assert [iv["ops"] for iv in series] == [600, 600, 600, 600, 100]
        first, last = series[0]["ops_per_sec"], series[3]["ops_per_sec"]  # 100-op tail skipped
        if r["workload"] != "fillbatch":
            assert x["interval_slowdown"] == pytest.approx(first / last)
    assert f"{engine}:fillrandom per 600 ops" in out
    assert "first/last slowdown" in out and "target <= 2x" in out


def test_report_interval_needs_one_thread():
    engine = _interval_engine()
    rc, out, err = run(["--num", "300", "--benchmarks", "fillrandom", "--engines", engine,
                        "--threads", "2", "--report-interval", "100"])
    assert rc == 0, out + err
    assert "no interval series: it needs --threads 1" in out
    with pytest.raises(SystemExit) as e:
        cli.main(["--report-interval", "0"])
    assert e.value.code == 2


# -- memory (peak_rss_mib, --isolate) ----------------------------------------------

@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_peak_tracker_sees_a_phase_peak_and_resets():
    from bench.memory import PeakTracker, read_memory
    tracker = PeakTracker()
    r = read_memory()
    assert r.rss_kib and r.peak_kib and r.peak_kib >= r.rss_kib
    tracker.mark()
    block = bytearray(64 << 20)          # touched (zeroed) pages: resident
    block[::4096] = b"x" * len(block[::4096])
    del block
    peak = tracker.over_baseline_mib(tracker.mark().peak_kib)
    assert peak is not None and peak >= 60
    if tracker.resettable:              # the next phase does not inherit that peak
        after = tracker.over_baseline_mib(tracker.mark().peak_kib)
        assert after < peak - 40
    s = tracker.summary()
    assert s["peak_rss_mib"] >= 60 and s["baseline_rss_mib"] > 0


def test_isolated_engines_report_their_own_peak_memory(tmp_path):
    engines = [n for n in ("lsm", "sqlite3", "plyvel") if engine_class(n).available()[0]][:2]
    if not engines:
        pytest.skip("no engine available")
    js = tmp_path / "mem.json"
    rc, out, err = run(["--num", "3000", "--benchmarks", "fillrandom,readrandom",
                        "--engines", ",".join(engines), "--isolate", "--json", str(js),
                        "--no-progress"])
    assert rc == 0, out + err
    doc = json.loads(js.read_text())
    assert doc["options"]["isolate"] is True
    assert set(doc["memory"]) == set(engines)
    for name, m in doc["memory"].items():
        assert set(report.MEMORY_FIELDS) <= set(m)
        assert m["isolated"] is True
        assert m["baseline_rss_mib"] > 0
        assert m["peak_rss_total_mib"] >= m["baseline_rss_mib"]
        assert m["peak_rss_mib"] == pytest.approx(m["peak_rss_total_mib"] - m["baseline_rss_mib"])
    assert [(r["engine"], r["workload"]) for r in doc["results"]] == \
        [(e, w) for e in engines for w in ("fillrandom", "readrandom")]
    for r in doc["results"]:
        assert r["extra"]["rss_isolated"] is True
        assert isinstance(r["extra"]["peak_rss_mib"], float)
        assert r["extra"]["peak_rss_mib"] <= doc["memory"][r["engine"]]["peak_rss_mib"] + 1e-9
        assert not any(n.startswith("check_failed") for n in r["notes"])
    assert "peak_rss_mib" in out and "own process (--isolate)" in out
    for e in engines:
        assert f"{e:<13} fillrandom" in out


def test_in_process_memory_is_marked():
    engine = _interval_engine()
    rc, out, err = run(["--num", "300", "--benchmarks", "fillseq", "--engines", engine])
    assert rc == 0, out + err
    assert "in-process: includes earlier engines' leftovers" in out
    assert "peak-rss" in out


def test_memory_table_compares_with_plyvel():
    mem = {"lsm": {"baseline_rss_mib": 38.0, "peak_rss_total_mib": 98.0, "peak_rss_mib": 60.0,
                   "final_rss_mib": 40.0, "isolated": True},
           "plyvel": {"baseline_rss_mib": 35.0, "peak_rss_total_mib": 75.0, "peak_rss_mib": 40.0,
                      "final_rss_mib": 10.0, "isolated": True}}
    text = report.format_memory(mem)
    lsm_line = next(line for line in text.splitlines() if line.startswith("lsm "))
    assert "60.0" in lsm_line and "1.50x" in lsm_line and "own process" in lsm_line
