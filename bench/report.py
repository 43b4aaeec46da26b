"""Reporting: the text tables, the JSON document and the PNG plot.

Design
------
* ``format_header`` / ``format_row``: one line per (engine, workload), printed
  as each finishes: ops/s, MB/s, µs/op, p50/p99/p99.9 (µs), then the derived
  figures (lsm: write/read/space amplification, block cache hit rate, stall
  time; every engine on a directory: write amplification measured from the
  process's write() bytes; on a device: device reads per get per leg) and
  notes.  Missing figures print as ``n/a``.
* ``format_comparison``: per workload, each engine's ops/s and p99 and its
  ratio to lsm (the targets of the engine issue are stated relative to the
  peers).
* ``format_memory``: per engine, baseline / peak / peak-over-baseline RSS
  (``bench.memory``); ``format_intervals``: the ops/s series of
  ``--report-interval`` and the first/last slowdown against the 2x target.
* ``to_json``: every figure, the histogram buckets, the machine, the
  options, the versions (``JSON_FIELDS`` lists the top-level keys; the
  schema is versioned by ``SCHEMA``).
* ``plot``: matplotlib (Agg backend, no display) — ops/s per engine per
  workload as grouped bars (log scale) and the latency CDF of the read
  workloads.
"""

from __future__ import annotations

import datetime
import json
import math
from typing import Any, Iterable, Optional

from bench.histogram import bucket_bounds
from bench.workloads import READ_WORKLOADS, PhaseResult

__all__ = ["format_header", "format_row", "format_comparison", "format_memory",
           "format_intervals", "to_json", "write_json", "plot", "JSON_FIELDS", "RESULT_FIELDS",
           "MEMORY_FIELDS", "INTERVAL_FIELDS", "SLOWDOWN_TARGET", "SCHEMA", "version"]

SCHEMA = 1
JSON_FIELDS = ("tool", "schema", "version", "started", "seconds", "machine", "options",
               "engines", "skipped", "failed", "lsm_stat_keys", "memory", "results", "scenarios")
MEMORY_FIELDS = ("baseline_rss_mib", "peak_rss_total_mib", "peak_rss_mib", "final_rss_mib",
                 "peak_resettable", "isolated")
INTERVAL_FIELDS = ("index", "first_op", "ops", "seconds", "ops_per_sec", "rss_mib")
SLOWDOWN_TARGET = 2.0   # engine issue: no more than 2x slower from the first to the last interval
RESULT_FIELDS = ("workload", "engine", "ops", "seconds", "bytes", "ops_per_sec", "mb_per_sec",
                 "micros_per_op", "latency_us", "histogram", "extra", "notes")


def version() -> str:
    """The installed superdisk-lsm version, or the pyproject one in a checkout."""
    try:
        from importlib.metadata import version as v
        return v("superdisk-lsm")
    except Exception:
        import os
        import re
        here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pyproject.toml")
        try:
            with open(here) as f:
                m = re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.M)
            return m.group(1) + "+checkout" if m else "unknown"
        except OSError:
            return "unknown"


def _num(v: Optional[float], fmt: str = "{:.2f}") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return fmt.format(v)


def format_header() -> str:
    return (f"{'engine':<13} {'workload':<17} {'ops/s':>11} {'MB/s':>8} {'us/op':>9} "
            f"{'p50us':>8} {'p99us':>8} {'p99.9us':>9}  figures")


def _figures(r: PhaseResult) -> str:
    x = r.extra
    parts = []
    if r.engine == "lsm":
        parts.append(f"w-amp {_num(x.get('write_amp'))}")
        parts.append(f"r-amp {_num(x.get('read_amp'))}")
        parts.append(f"s-amp {_num(x.get('space_amp'))}")
        hr = x.get("cache_hit_rate")
        parts.append(f"cache-hit {_num(None if hr is None else hr * 100, '{:.1f}%')}")
        parts.append(f"stall {_num(x.get('stall_s'), '{:.2f}s')}")
    if "io_write_amp" in x:
        parts.append(f"io-w-amp {_num(x.get('io_write_amp'))}")
    if "io_space_amp" in x:
        parts.append(f"io-s-amp {_num(x.get('io_space_amp'))}")
    if "device_write_amp" in x:
        parts.append(f"dev-w-amp {_num(x.get('device_write_amp'))}")
    if "leg_reads_per_get" in x:
        legs = ", ".join(f"{leg} {v:.2f}" for leg, v in x["leg_reads_per_get"].items())
        parts.append(f"dev-reads/get [{legs}]")
    if x.get("superdisk_state"):
        parts.append(f"superdisk {x['superdisk_state']}")
    if "peak_rss_mib" in x:
        where = "" if x.get("rss_isolated") else " in-process"
        parts.append(f"peak-rss {_num(x.get('peak_rss_mib'), '{:.1f}')} MiB{where}")
    if x.get("interval_slowdown") is not None:
        parts.append(f"slowdown {x['interval_slowdown']:.2f}x")
    return "; ".join(parts)


def format_row(r: PhaseResult) -> str:
    """One table row (plus an indented notes line when there are notes)."""
    s = r.hist.summary()
    line = (f"{r.engine:<13} {r.workload:<17} {r.ops_per_sec:>11,.0f} {r.mb_per_sec:>8.1f} "
            f"{r.micros_per_op:>9.3f} {s.p50 / 1e3:>8.2f} {s.p99 / 1e3:>8.2f} {s.p999 / 1e3:>9.2f}  "
            f"{_figures(r)}")
    if r.notes:
        line += "\n" + " " * 14 + "; ".join(str(n) for n in r.notes)
    return line


def format_comparison(results: Iterable[PhaseResult]) -> str:
    """Per workload: ops/s and p99 of every engine, and the ratio to lsm."""
    by_wl: dict[str, list[PhaseResult]] = {}
    for r in results:
        by_wl.setdefault(r.workload, []).append(r)
    lines = [f"{'workload':<17} {'engine':<10} {'ops/s':>11} {'p99us':>9} {'vs lsm':>8}"]
    for wl, rs in by_wl.items():
        base = next((r.ops_per_sec for r in rs if r.engine == "lsm"), None)
        for r in sorted(rs, key=lambda r: -r.ops_per_sec):
            ratio = "" if not base or r.engine == "lsm" or not r.ops_per_sec else \
                f"{base / r.ops_per_sec:.2f}x"
            lines.append(f"{wl:<17} {r.engine:<10} {r.ops_per_sec:>11,.0f} "
                         f"{r.hist.percentile(99) / 1e3:>9.2f} {ratio:>8}")
    lines.append("(vs lsm = lsm ops/s divided by the engine's; > 1 means lsm is faster)")
    return "\n".join(lines)


def format_memory(memory: dict) -> str:
    """Per engine: resident memory at its baseline (library imported, no DB),
    its run peak, the peak above the baseline (``peak_rss_mib``) and its
    ratio to plyvel's (the engine issue reports memory beside plyvel's)."""
    lines = [f"{'engine':<10} {'baseline MiB':>12} {'peak MiB':>9} {'peak_rss_mib':>12} "
             f"{'end MiB':>8} {'vs plyvel':>9}  measured"]
    ref = memory.get("plyvel", {}).get("peak_rss_mib")
    for name, m in memory.items():
        mine = m.get("peak_rss_mib")
        ratio = f"{mine / ref:.2f}x" if ref and mine is not None and name != "plyvel" else ""
        how = ("own process (--isolate)" if m.get("isolated")
               else "in-process: includes earlier engines' leftovers; use --isolate")
        lines.append(f"{name:<10} {_num(m.get('baseline_rss_mib'), '{:.1f}'):>12} "
                     f"{_num(m.get('peak_rss_total_mib'), '{:.1f}'):>9} "
                     f"{_num(m.get('peak_rss_mib'), '{:.1f}'):>12} "
                     f"{_num(m.get('final_rss_mib'), '{:.1f}'):>8} {ratio:>9}  {how}")
    lines.append("(peak_rss_mib = peak RSS minus the baseline; end = RSS above the baseline "
                 "after the DB was closed; vs plyvel = peak_rss_mib / plyvel's)")
    return "\n".join(lines)


def format_intervals(results: Iterable[PhaseResult]) -> str:
    """The ops/s series of every result that has one (``--report-interval``),
    with the first/last slowdown checked against ``SLOWDOWN_TARGET`` for the
    fill workloads.  Empty string when no result has a series."""
    blocks = []
    for r in results:
        series = r.extra.get("intervals")
        if not series:
            continue
        every = r.extra.get("interval_ops")
        lines = [f"{r.engine}:{r.workload} per {every:,} ops",
                 f"  {'interval':>8} {'ops':>22} {'ops/s':>11} {'RSS MiB':>8}"]
        for iv in series:
            span = f"{iv['first_op']:,}-{iv['first_op'] + iv['ops'] - 1:,}"
            lines.append(f"  {iv['index']:>8} {span:>22} {_num(iv['ops_per_sec'], '{:,.0f}'):>11} "
                         f"{_num(iv['rss_mib'], '{:.1f}'):>8}")
        sd = r.extra.get("interval_slowdown")
        if sd is None:
            lines.append("  first/last slowdown: n/a (fewer than two full intervals)")
        else:
            verdict = ""
            if r.workload.startswith("fill") or r.workload == "overwrite":
                verdict = (f" (target <= {SLOWDOWN_TARGET:g}x: "
                           f"{'met' if sd <= SLOWDOWN_TARGET else 'NOT met'})")
            lines.append(f"  first/last slowdown: {sd:.2f}x{verdict}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def result_dict(r: PhaseResult) -> dict:
    s = r.hist.summary()
    return {
        "workload": r.workload, "engine": r.engine, "ops": r.ops, "seconds": r.seconds,
        "bytes": r.bytes, "ops_per_sec": r.ops_per_sec, "mb_per_sec": r.mb_per_sec,
        "micros_per_op": r.micros_per_op,
        "latency_us": {"count": s.count, "mean": s.mean / 1e3, "min": s.min / 1e3,
                       "max": s.max / 1e3, "p50": s.p50 / 1e3, "p99": s.p99 / 1e3,
                       "p999": s.p999 / 1e3},
        "histogram": {"unit": "ns", "buckets": [[*bucket_bounds(i), c]
                                                for i, c in r.hist.nonzero_buckets()]},
        "extra": _jsonable(r.extra), "notes": [str(n) for n in r.notes],
    }


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return repr(v)


def to_json(suite: Any, scenarios: Optional[dict] = None) -> dict:
    """The JSON document of a ``SuiteResult`` (see ``JSON_FIELDS``)."""
    return {
        "tool": "lsm-bench", "schema": SCHEMA, "version": version(),
        "started": datetime.datetime.fromtimestamp(suite.started, datetime.timezone.utc).isoformat(),
        "seconds": suite.seconds, "machine": _jsonable(suite.env),
        "options": _jsonable(suite.config.as_dict()),
        "engines": {n: {"version": v} for n, v in suite.versions.items()},
        "skipped": dict(suite.skipped), "failed": dict(getattr(suite, "failed", {})),
        "lsm_stat_keys": dict(suite.stat_keys),
        "memory": _jsonable(getattr(suite, "memory", {})),
        "results": [result_dict(r) for r in suite.results],
        "scenarios": _jsonable(scenarios or {}),
    }


def write_json(path: str, doc: dict) -> None:
    with open(path, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=False)
        f.write("\n")


def plot(results: list, path: str, title: str = "lsm-bench") -> None:
    """Write a PNG: ops/s bars per workload × engine on top, and below one
    latency-CDF panel per read workload (one line per engine)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = list(dict.fromkeys(r.workload for r in results))
    engines = list(dict.fromkeys(r.engine for r in results))
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    color = {e: palette[i % len(palette)] for i, e in enumerate(engines)}
    read_wls = [w for w in workloads if w in READ_WORKLOADS
                and any(r.workload == w and r.hist.count for r in results)]
    ncols = max(1, len(read_wls))
    fig = plt.figure(figsize=(max(10, 3.6 * ncols), 9 if read_wls else 5))
    grid = fig.add_gridspec(2 if read_wls else 1, ncols)
    ax = fig.add_subplot(grid[0, :])
    width = 0.8 / max(1, len(engines))
    for i, eng in enumerate(engines):
        xs, ys = [], []
        for j, wl in enumerate(workloads):
            r = next((r for r in results if r.engine == eng and r.workload == wl), None)
            if r is not None and r.ops_per_sec > 0:
                xs.append(j + (i - (len(engines) - 1) / 2) * width)
                ys.append(r.ops_per_sec)
        ax.bar(xs, ys, width=width, label=eng, color=color[eng])
    ax.set_xticks(range(len(workloads)))
    ax.set_xticklabels(workloads, rotation=20, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("ops/s (log scale)")
    ax.set_title("throughput per workload and engine")
    ax.legend(fontsize=8)
    ax.grid(axis="y", which="both", alpha=0.3)
    for c, wl in enumerate(read_wls):
        ax2 = fig.add_subplot(grid[1, c])
        for r in results:
            if r.workload != wl or not r.hist.count:
                continue
            pts = r.hist.cdf()
            ax2.step([p[0] / 1e3 for p in pts], [p[1] for p in pts], where="post",
                     label=r.engine, color=color[r.engine])
        ax2.set_xscale("log")
        ax2.set_xlabel("latency (µs, log)")
        if c == 0:
            ax2.set_ylabel("fraction of ops ≤ x")
        ax2.set_title(f"{wl} latency CDF", fontsize=10)
        ax2.legend(fontsize=7)
        ax2.grid(alpha=0.3, which="both")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
