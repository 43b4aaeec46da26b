"""The superdisk scenarios of lsm-bench.

Design
------
``--scenario superdisk``: the same lsm workload on three devices built by
``bench.devices`` — an emulated network disk, an emulated local SSD, and a
SuperDisk over one of each.  Per device: ``fillsync`` (durable puts: their
latency is the durable leg's write + flush), an untimed bulk load and flush,
a reopen (so the engine's caches are cold), then ``readrandom`` (every get
that misses the block cache reads the device).  It prints the figures per
device and checks the superdisk targets of issue 6:

* reads (p50 and mean) within 1.25x of local,
* reads at least 5x better than network,
* sync writes within 1.15x of network.

``--scenario cache-loss``: a SuperDisk whose cache leg is wrapped in a
``FaultyDevice``.  After a load and a reopen, readrandom runs for
``duration`` seconds, recorded in windows of ``window`` seconds (a
``Histogram`` and the per-leg device reads of each window).  At 25% of the
run the cache device is lost (``FaultyDevice.lose``): the superdisk must keep
serving from the durable leg.  At 45% a blank cache comes back
(``revive(wipe=True)``, the ephemeral SSD after a VM restart), is added to
the array (``SuperDisk.fail_cache`` if it was not ejected yet, then
``add_cache``) and the background rebuild runs; reads go on
throughout, and the windows show latency rising to network level and coming
back as the rebuild cursor passes.  Every get is checked (a wrong or missing
value fails the run).  ``--plot`` draws p50/p99 latency and device reads per
leg over time with the events marked.

Sizes: scenarios default to 20,000 keys and 2,000 reads (a network-disk read
costs ~1.2 ms) and to no block cache, so the reads reach the device; the
options of the command line override them.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
import threading
import time
from typing import Any, Optional, TextIO

from bench import report
from bench.devices import device_support, make_target
from bench.engines import EngineOptions, LsmEngine
from bench.histogram import Histogram
from bench.metrics import env_info
from bench.runner import BenchConfig, SuiteResult
from bench.workloads import RunConfig, bulk_load, run_workload
from blockdev.errors import Error, InvalidArgumentError

__all__ = ["run_scenario", "superdisk_scenario", "cache_loss_scenario", "SCENARIO_NUM",
           "SCENARIO_READS"]

SCENARIO_NUM = 20_000
SCENARIO_READS = 2_000
TARGET_READ_VS_LOCAL = 1.25
TARGET_READ_VS_NETWORK = 5.0
TARGET_SYNC_VS_NETWORK = 1.15


def _scenario_config(cfg: BenchConfig, args: argparse.Namespace) -> BenchConfig:
    """Scenario defaults unless the user gave the option explicitly."""
    argv_flags = set(getattr(args, "_explicit", ()))
    spec = cfg.run.spec
    if "--num" not in argv_flags:
        spec = dataclasses.replace(spec, num=SCENARIO_NUM)
    reads = cfg.run.reads if "--reads" in argv_flags else min(SCENARIO_READS, spec.num)
    run = dataclasses.replace(cfg.run, spec=spec, reads=reads)
    eopts = cfg.engine_options
    if "--cache-size" not in argv_flags:
        eopts = dataclasses.replace(eopts, block_cache_size=0)
    return dataclasses.replace(cfg, run=run, engine_options=eopts, engines=("lsm",),
                               device="superdisk")


def _require(kind: str) -> None:
    ok, why = device_support(kind)
    if not ok:
        raise InvalidArgumentError(f"the scenario needs a {kind} device: {why}")
    avail, info = LsmEngine.available()
    if not avail:
        raise InvalidArgumentError(f"the scenario needs lsm: {info}")


def _reads_per_get(before: dict, after: dict, gets: int) -> dict:
    out = {}
    for leg, c in after.items():
        out[leg] = (c.get("reads", 0) - before.get(leg, {}).get("reads", 0)) / gets if gets else 0.0
    return out


def superdisk_scenario(cfg: BenchConfig, out: TextIO, err: TextIO) -> tuple[SuiteResult, dict]:
    """Run the three-device comparison; returns (results, scenario figures)."""
    for kind in ("local", "network", "superdisk"):
        _require(kind)
    suite = SuiteResult(config=cfg, env=env_info(), started=time.time())
    suite.versions["lsm"] = LsmEngine.available()[1]
    spec = cfg.run.spec
    base = tempfile.mkdtemp(prefix="lsm-bench-sd-") if cfg.db_dir is None else cfg.db_dir
    os.makedirs(base, exist_ok=True)
    figures: dict = {"devices": {}}
    t0 = time.perf_counter()
    try:
        for kind in ("network", "local", "superdisk"):
            label = f"lsm@{kind}"
            out.write(f"-- {label}: fillsync, load {spec.num:,} keys, reopen, readrandom "
                      f"{cfg.run.num_reads:,}\n")
            out.flush()
            tgt = make_target(kind, base, label, cfg.size, seed=spec.seed)
            eng = LsmEngine(cfg.engine_options)
            try:
                eng.open(tgt.target)
                legs0 = tgt.leg_counters()
                sync_res = run_workload("fillsync", eng, cfg.run)
                legs1 = tgt.leg_counters()
                bulk_load(eng, spec, cfg.run.progress)
                eng.flush()
                eng.reopen()
                before = tgt.leg_counters()
                read_res = run_workload("readrandom", eng, cfg.run)
                after = tgt.leg_counters()
                status = tgt.superdisk_status()
            finally:
                eng.close()
                tgt.close()
            for r in (sync_res, read_res):
                r.engine = label
                suite.results.append(r)
                out.write(report.format_row(r) + "\n")
            per_get = _reads_per_get(before, after, read_res.ops)
            per_sync = {leg: {k: (c.get(k, 0) - legs0.get(leg, {}).get(k, 0)) / max(1, sync_res.ops)
                              for k in ("writes", "flushes")}
                        for leg, c in legs1.items()}
            out.write("   device I/Os per sync put: " + ", ".join(
                f"{leg} {v['writes']:.1f} writes + {v['flushes']:.1f} flushes"
                for leg, v in per_sync.items()) + "\n")
            sync_res.extra["leg_ios_per_sync_put"] = per_sync
            out.write(f"   device reads per get: "
                      + ", ".join(f"{leg} {v:.2f}" for leg, v in per_get.items()) + "\n")
            read_res.extra["leg_reads_per_get"] = per_get
            figures["devices"][kind] = {
                "sync_put_p50_us": sync_res.hist.percentile(50) / 1e3,
                "sync_put_mean_us": sync_res.hist.mean / 1e3,
                "sync_put_p99_us": sync_res.hist.percentile(99) / 1e3,
                "read_p50_us": read_res.hist.percentile(50) / 1e3,
                "read_mean_us": read_res.hist.mean / 1e3,
                "read_p99_us": read_res.hist.percentile(99) / 1e3,
                "read_ops_per_sec": read_res.ops_per_sec,
                "reads_per_get": per_get,
                "ios_per_sync_put": per_sync,
                "superdisk_status": status,
            }
    finally:
        if cfg.db_dir is None:
            shutil.rmtree(base, ignore_errors=True)
    suite.seconds = time.perf_counter() - t0
    d = figures["devices"]
    checks = {
        "read_p50_vs_local": (d["superdisk"]["read_p50_us"] / d["local"]["read_p50_us"],
                              f"<= {TARGET_READ_VS_LOCAL}"),
        "read_mean_vs_local": (d["superdisk"]["read_mean_us"] / d["local"]["read_mean_us"],
                               f"<= {TARGET_READ_VS_LOCAL}"),
        "network_read_p50_vs_superdisk": (d["network"]["read_p50_us"] / d["superdisk"]["read_p50_us"],
                                          f">= {TARGET_READ_VS_NETWORK}"),
        "sync_put_p50_vs_network": (d["superdisk"]["sync_put_p50_us"] / d["network"]["sync_put_p50_us"],
                                    f"<= {TARGET_SYNC_VS_NETWORK}"),
    }
    figures["checks"] = {}
    out.write("\nsuperdisk targets (issue 6):\n")
    for name, (ratio, goal) in checks.items():
        op, limit = goal.split()
        ok = ratio <= float(limit) if op == "<=" else ratio >= float(limit)
        figures["checks"][name] = {"ratio": ratio, "target": goal, "met": ok}
        out.write(f"  {name:<32} {ratio:7.2f}x  target {goal:<7} {'met' if ok else 'NOT MET'}\n")
    return suite, figures


def cache_loss_scenario(cfg: BenchConfig, out: TextIO, err: TextIO, duration: float = 12.0,
                        window: float = 0.25) -> tuple[SuiteResult, dict]:
    """Lose the superdisk cache in the middle of readrandom (module docstring)."""
    _require("superdisk")
    if duration <= 0 or window <= 0 or window > duration:
        raise InvalidArgumentError("need 0 < window <= duration")
    suite = SuiteResult(config=cfg, env=env_info(), started=time.time())
    suite.versions["lsm"] = LsmEngine.available()[1]
    spec = cfg.run.spec
    base = tempfile.mkdtemp(prefix="lsm-bench-cl-") if cfg.db_dir is None else cfg.db_dir
    os.makedirs(base, exist_ok=True)
    tgt = make_target("superdisk", base, "lsm@superdisk-cache-loss", cfg.size,
                      faulty_cache=True, seed=spec.seed)
    eng = LsmEngine(cfg.engine_options)
    windows: list[dict] = []
    events: list[tuple[float, str]] = []
    errors: list[str] = []
    total = Histogram()
    try:
        eng.open(tgt.target)
        out.write(f"-- cache-loss: load {spec.num:,} keys, reopen, readrandom for {duration:.0f}s; "
                  f"lose the cache at {0.25 * duration:.1f}s, blank cache + rebuild at "
                  f"{0.45 * duration:.1f}s\n")
        bulk_load(eng, spec, cfg.run.progress)
        eng.flush()
        eng.reopen()
        get = eng.get_fn()
        rnd = spec.rng("cache-loss")
        num = spec.num
        expected_values = _expected_values(spec)
        start = time.perf_counter()
        lost = revived = False
        operator: Optional[threading.Thread] = None
        w_end = start + window
        hist = Histogram()
        legs0 = tgt.leg_counters()
        lat: list = []
        ops = 0
        bad = 0
        pc = time.perf_counter_ns
        while True:
            i = int(rnd.random() * num)
            k = spec.key(i)
            t0 = pc()
            v = get(k)
            t1 = pc()
            lat.append(t1 - t0)
            ops += 1
            if v != expected_values(i):
                bad += 1
            now = time.perf_counter()
            if now >= w_end:
                hist.add_many(lat)
                total.merge(hist)
                legs1 = tgt.leg_counters()
                st = _status(tgt)
                windows.append({"t": w_end - start - window / 2, "ops": ops,
                                "p50_us": hist.percentile(50) / 1e3,
                                "p99_us": hist.percentile(99) / 1e3,
                                "mean_us": hist.mean / 1e3,
                                "reads": {leg: c.get("reads", 0) - legs0.get(leg, {}).get("reads", 0)
                                          for leg, c in legs1.items()},
                                "state": st.get("state"),
                                "rebuild": (_rebuild_progress(st)
                                            if st.get("state") == "rebuilding" else None)})
                legs0, lat, ops, hist = legs1, [], 0, Histogram()
                w_end += window
                elapsed = now - start
                if not lost and elapsed >= 0.25 * duration:
                    tgt.lose_cache()
                    lost = True
                    events.append((elapsed, "cache lost"))
                if lost and not revived and elapsed >= 0.45 * duration:
                    # The operator works on its own thread: reads go on meanwhile.
                    operator = threading.Thread(target=_replace_cache, args=(tgt, errors),
                                                name="bench-operator", daemon=True)
                    operator.start()
                    revived = True
                    events.append((elapsed, "blank cache added, rebuild started"))
                if elapsed >= duration:
                    break
        if operator is not None:
            operator.join()
        final = _status(tgt)
        if bad:
            errors.append(f"{bad} gets returned a wrong value")
    finally:
        eng.close()
        tgt.close()
        if cfg.db_dir is None:
            shutil.rmtree(base, ignore_errors=True)
    for t, what in events:
        out.write(f"   t={t:5.1f}s  {what}\n")
    out.write(f"{'t(s)':>6} {'ops':>7} {'p50us':>9} {'p99us':>9} {'cache rd':>9} {'durable rd':>10}  state\n")
    for w in windows:
        out.write(f"{w['t']:6.2f} {w['ops']:7d} {w['p50_us']:9.1f} {w['p99_us']:9.1f} "
                  f"{w['reads'].get('cache', 0):9d} {w['reads'].get('durable', 0):10d}  "
                  f"{w['state']} {w['rebuild'] or ''}\n")
    out.write(f"final superdisk state: {final.get('state')}\n")
    for e in errors:
        out.write(f"ERROR: {e}\n")
    from bench.workloads import PhaseResult
    res = PhaseResult("readrandom-cache-loss", "lsm@superdisk", ops=total.count,
                      seconds=total.total / 1e9, bytes=total.count * (spec.key_size + spec.value_size),
                      hist=total)
    res.notes.extend(f"t={t:.1f}s {w}" for t, w in events)
    res.notes.extend(f"check_failed: {e}" for e in errors)
    suite.results.append(res)
    suite.seconds = time.perf_counter() - start if windows else 0.0
    return suite, {"windows": windows, "events": [{"t": t, "event": w} for t, w in events],
                   "final_status": final, "errors": errors}


def _expected_values(spec: Any):
    """value_of(i): the value bulk_load wrote for key i (the pool is cycled in
    key order, so it is a pure function of i)."""
    from bench.data import ValueSource
    pool = ValueSource(spec)._pool
    size = spec.value_size
    per_pool = (len(pool) - size) // size + 1 if size else 1

    def value_of(i: int) -> bytes:
        pos = (i % per_pool) * size
        return pool[pos:pos + size]
    return value_of


def _status(tgt: Any) -> dict:
    try:
        st = tgt.superdisk_status()
        return st if isinstance(st, dict) else {}
    except Error as exc:
        return {"state": f"status failed: {exc}"}


def _rebuild_progress(st: dict) -> Optional[str]:
    for key in ("rebuild", "rebuild_progress", "progress"):
        v = st.get(key)
        if isinstance(v, dict):
            frac = v.get("fraction", v.get("progress", v.get("percent")))
            if isinstance(frac, (int, float)):
                return f"rebuild {frac * 100 if frac <= 1 else frac:.0f}%"
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            return f"rebuild {v * 100 if v <= 1 else v:.0f}%"
    cur, size = st.get("rebuild_cursor"), st.get("size")
    if isinstance(cur, int) and isinstance(size, int) and size:
        return f"rebuild {100 * cur / size:.0f}%"
    return None


def _replace_cache(tgt: Any, errors: list) -> None:
    """The operator's answer to a lost ephemeral SSD: the device comes back
    blank (``revive(wipe=True)``); if the superdisk has not ejected the old
    cache yet it is failed by hand (``fail_cache``, like ``mdadm --fail``),
    then the blank device is added (``add_cache``, like ``mdadm --add``) and the
    background rebuild started (``rebuild(wait=False)``)."""
    sd = tgt.superdisk
    tgt.faulty_cache.revive(wipe=True)
    try:
        if _status(tgt).get("state") != "degraded":
            sd.fail_cache("cache device lost (lsm-bench cache-loss scenario)")
        sd.add_cache(tgt.faulty_cache)
        sd.rebuild(wait=False)
    except Error as exc:
        errors.append(f"cache replacement failed: {type(exc).__name__}: {exc}")


def plot_cache_loss(figures: dict, path: str) -> None:
    """Latency (p50, p99) and device reads per leg over time, events marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ws = figures["windows"]
    ts = [w["t"] for w in ws]
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    a1.plot(ts, [w["p50_us"] for w in ws], label="p50")
    a1.plot(ts, [w["p99_us"] for w in ws], label="p99")
    a1.set_yscale("log")
    a1.set_ylabel("get latency (µs, log)")
    a1.set_title("readrandom on a superdisk: cache lost, blank cache rebuilt")
    legs = sorted({leg for w in ws for leg in w["reads"]})
    for leg in legs:
        a2.plot(ts, [w["reads"].get(leg, 0) for w in ws], label=f"{leg} reads")
    a2.set_ylabel("device reads per window")
    a2.set_xlabel("time (s)")
    for ax in (a1, a2):
        for e in figures["events"]:
            ax.axvline(e["t"], color="red", linestyle="--", alpha=0.6)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    for e in figures["events"]:
        a1.annotate(e["event"], (e["t"], a1.get_ylim()[1]), fontsize=7, rotation=90,
                    va="top", ha="right")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


def run_scenario(name: str, cfg: BenchConfig, args: argparse.Namespace,
                 out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """CLI entry: run scenario ``name``, print, write --json / --plot; exit status."""
    scfg = _scenario_config(cfg, args)
    try:
        if name == "superdisk":
            suite, figures = superdisk_scenario(scfg, out, err)
        elif name == "cache-loss":
            suite, figures = cache_loss_scenario(scfg, out, err,
                                                 duration=float(getattr(args, "duration", 12.0)))
        else:
            raise InvalidArgumentError(f"unknown scenario {name!r}")
    except Error as exc:
        err.write(f"lsm-bench: error: {exc}\n")
        return 1
    if args.json:
        report.write_json(args.json, report.to_json(suite, scenarios={name: figures}))
        out.write(f"wrote {args.json}\n")
    if args.plot:
        if name == "cache-loss":
            plot_cache_loss(figures, args.plot)
        else:
            report.plot(suite.results, args.plot, title="lsm on network, local and superdisk")
        out.write(f"wrote {args.plot}\n")
    failed = any(str(n).startswith("check_failed") for r in suite.results for n in r.notes)
    return 1 if failed else 0
