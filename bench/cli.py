"""``lsm-bench``: db_bench-style benchmarks of lsm against its peers.

Design
------
``main(argv)`` parses the arguments (argparse; a bad argument exits with
status 2 and a message naming it), builds a ``BenchConfig``, runs the suite
(``bench.runner``) or a scenario (``bench.scenarios``), prints one row per
finished (engine, workload) and then a comparison per workload, and writes
``--json`` / ``--plot`` when asked.  Without arguments it runs the default
suite (``DEFAULT_*``): 100,000 entries through fillseq, fillrandom,
readrandom, readseq and fillbatch on every installed engine, about a minute
on a 2-core machine.

After the comparison it prints each engine's memory (baseline, peak and
peak over baseline RSS; ``--isolate`` runs each engine in its own
interpreter so the figures are its own) and, with ``--report-interval N``,
the ops/s series of every workload in intervals of N operations.

Exit status: 0 on success, 1 when a workload failed a correctness check
(e.g. readrandom did not find every key) or raised, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence, TextIO

from bench import report
from bench.data import DataSpec
from bench.devices import DEVICE_KINDS
from bench.engines import ENGINES, EngineOptions
from bench.progress import progress_wanted
from bench.runner import BenchConfig, run_suite
from bench.workloads import WORKLOADS, RunConfig
from blockdev.errors import Error

__all__ = ["main", "build_parser", "DEFAULT_BENCHMARKS", "DEFAULT_NUM"]

DEFAULT_NUM = 100_000
DEFAULT_BENCHMARKS = "fillseq,fillrandom,readrandom,readseq,fillbatch"
DEFAULT_ENGINES = ",".join(ENGINES)
SCENARIOS = ("superdisk", "cache-loss")
MiB = 1 << 20


def _positive_int(text: str) -> int:
    try:
        v = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _nonneg_int(text: str) -> int:
    try:
        v = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 < v <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {v}")
    return v


def _csv(choices: Sequence[str], what: str):
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"no {what} given")
        bad = [t for t in items if t not in choices]
        if bad:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(bad)}; choose from {', '.join(choices)}")
        return list(dict.fromkeys(items))
    return parse


def _lsm_option(text: str) -> tuple[str, object]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    low = raw.lower()
    value: object
    if low in ("none", "null"):
        value = None
    elif low in ("true", "false"):
        value = low == "true"
    else:
        try:
            value = int(raw.replace("_", ""))
        except ValueError:
            try:
                value = float(raw)
            except ValueError:
                value = raw
    return key, value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lsm-bench",
        description="db_bench-style benchmarks of superdisk-lsm against plyvel (LevelDB), "
                    "rocksdict (RocksDB), lmdb and sqlite3, on a directory or an emulated "
                    "block device.  With no arguments: a one-minute default suite.")
    g = p.add_argument_group("data")
    g.add_argument("--num", type=_positive_int, default=DEFAULT_NUM,
                   help=f"number of keys (default {DEFAULT_NUM:,})")
    g.add_argument("--reads", type=_positive_int, default=None,
                   help="operations of the read workloads (default: --num)")
    g.add_argument("--key-size", type=_positive_int, default=16, help="key bytes (default 16)")
    g.add_argument("--value-size", type=_nonneg_int, default=100, help="value bytes (default 100)")
    g.add_argument("--compressibility", type=_fraction, default=0.5,
                   help="compressed/raw size of the values, in (0, 1] (default 0.5)")
    g.add_argument("--seed", type=_nonneg_int, default=301, help="data seed (default 301)")
    g = p.add_argument_group("workloads")
    g.add_argument("--benchmarks", type=_csv(list(WORKLOADS), "benchmark"),
                   default=DEFAULT_BENCHMARKS.split(","),
                   help=f"comma-separated, run in order (default {DEFAULT_BENCHMARKS}); "
                        f"available: {', '.join(WORKLOADS)}")
    g.add_argument("--engines", type=_csv(list(ENGINES), "engine"), default=list(ENGINES),
                   help=f"comma-separated (default {DEFAULT_ENGINES}); missing ones are skipped")
    g.add_argument("--threads", type=_positive_int, default=1,
                   help="threads per workload; readers in readwhilewriting (default 1)")
    g.add_argument("--batch-size", type=_positive_int, default=1000,
                   help="entries per batch in fillbatch (default 1000)")
    g.add_argument("--seek-nexts", type=_positive_int, default=10,
                   help="entries read after each seek in seekrandom (default 10)")
    g.add_argument("--report-interval", type=_positive_int, default=None, metavar="N",
                   help="record ops/s and RSS every N operations of each workload "
                        "(needs --threads 1) and print the series with the first/last "
                        "interval slowdown")
    g.add_argument("--isolate", dest="isolate", action="store_true", default=False,
                   help="run each engine in a fresh interpreter so its peak memory "
                        "(peak_rss_mib) is its own (default: all engines in this process)")
    g.add_argument("--no-isolate", dest="isolate", action="store_false")
    g = p.add_argument_group("storage")
    g.add_argument("--device", choices=DEVICE_KINDS, default="posix",
                   help="posix: a directory; local / network: an emulated local SSD / network "
                        "disk; superdisk: a SuperDisk over both (lsm only)")
    g.add_argument("--device-size", type=_positive_int, default=None, metavar="MIB",
                   help="device size in MiB (default: from --num)")
    g.add_argument("--db", default=None, metavar="DIR",
                   help="keep the databases in DIR (default: a temporary directory, removed)")
    g = p.add_argument_group("engine options (applied to every engine that has them)")
    g.add_argument("--cache-size", type=_nonneg_int, default=8 * MiB,
                   help="block cache bytes (default 8 MiB)")
    g.add_argument("--write-buffer-size", type=_positive_int, default=4 * MiB,
                   help="memtable bytes (default 4 MiB)")
    g.add_argument("--bloom-bits", type=_nonneg_int, default=10, help="bloom bits per key (default 10)")
    g.add_argument("--block-size", type=_positive_int, default=4096, help="table block bytes")
    g.add_argument("--compression", choices=("lz4", "none"), default="lz4")
    g.add_argument("--lsm-option", type=_lsm_option, action="append", default=[],
                   metavar="KEY=VALUE", help="extra lsm.DB option (repeatable)")
    g = p.add_argument_group("output")
    g.add_argument("--json", default=None, metavar="FILE", help="write every figure as JSON")
    g.add_argument("--plot", default=None, metavar="FILE.png", help="write a PNG plot")
    g.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="progress bars on stderr (default: when stderr is a terminal)")
    g.add_argument("--no-progress", dest="progress", action="store_false")
    g = p.add_argument_group("scenarios")
    g.add_argument("--scenario", choices=SCENARIOS, default=None,
                   help="superdisk: the same workload on network, local and superdisk devices; "
                        "cache-loss: lose the superdisk cache in the middle of readrandom "
                        "(scenarios default to --num 20000 --reads 2000 --cache-size 0)")
    g.add_argument("--duration", type=_positive_int, default=12,
                   help="seconds of readrandom in the cache-loss scenario (default 12)")
    return p


def _config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> BenchConfig:
    try:
        spec = DataSpec(num=args.num, key_size=args.key_size, value_size=args.value_size,
                        compressibility=args.compressibility, seed=args.seed)
        run = RunConfig(spec=spec, reads=args.reads, threads=args.threads,
                        batch_size=args.batch_size, seek_nexts=args.seek_nexts,
                        progress=progress_wanted(args.progress),
                        report_interval=args.report_interval)
        eopts = EngineOptions(block_cache_size=args.cache_size,
                              write_buffer_size=args.write_buffer_size,
                              bloom_bits_per_key=args.bloom_bits, block_size=args.block_size,
                              compression=None if args.compression == "none" else "lz4",
                              lsm_options=dict(args.lsm_option))
        return BenchConfig(run=run, engines=tuple(args.engines), benchmarks=tuple(args.benchmarks),
                           device=args.device, db_dir=args.db, engine_options=eopts,
                           isolate=args.isolate,
                           device_size=None if args.device_size is None else args.device_size * MiB)
    except Error as exc:
        parser.error(str(exc))
        raise  # unreachable: parser.error exits


def main(argv: Optional[Sequence[str]] = None, out: TextIO = None, err: TextIO = None) -> int:
    """Run lsm-bench with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args._explicit = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
    cfg = _config(args, parser)
    if args.scenario is not None:
        from bench import scenarios
        return scenarios.run_scenario(args.scenario, cfg, args, out=out, err=err)

    s = cfg.run.spec
    out.write(f"lsm-bench {report.version()}: {s.num:,} keys of {s.key_size} B, values of "
              f"{s.value_size} B (compressibility {s.compressibility}), seed {s.seed}, "
              f"device {cfg.device}, threads {cfg.run.threads}\n")
    out.write(f"engines: {', '.join(cfg.engines)}; benchmarks: {', '.join(cfg.benchmarks)}\n\n")
    out.write(report.format_header() + "\n")
    out.flush()

    def on_result(r) -> None:
        out.write(report.format_row(r) + "\n")
        out.flush()

    try:
        suite = run_suite(cfg, out=out, err=err, on_result=on_result)
    except Error as exc:
        err.write(f"lsm-bench: error: {exc}\n")
        return 1
    if not suite.results:
        err.write("lsm-bench: no engine could run\n")
        return 1
    out.write("\n" + report.format_comparison(suite.results) + "\n")
    if suite.memory:
        out.write("\n" + report.format_memory(suite.memory) + "\n")
    series = report.format_intervals(suite.results)
    if series:
        out.write("\n" + series + "\n")
    for n, why in suite.skipped.items():
        out.write(f"skipped {n}: {why}\n")
    for n, why in suite.failed.items():
        out.write(f"FAILED {n}: {why}\n")
    impl = suite.env.get("lsm_implementation")
    out.write(f"done in {suite.seconds:.1f}s (lsm implementation: {impl}; "
              f"{suite.env.get('cpu_count')} CPUs; Python {suite.env.get('python')})\n")
    if args.json:
        report.write_json(args.json, report.to_json(suite))
        out.write(f"wrote {args.json}\n")
    if args.plot:
        report.plot(suite.results, args.plot,
                    title=f"lsm-bench: {s.num:,} keys, {cfg.device} ({impl})")
        out.write(f"wrote {args.plot}\n")
    failed = [r for r in suite.results if any(str(n).startswith("check_failed") for n in r.notes)]
    if failed:
        err.write("lsm-bench: correctness check failed in: "
                  + ", ".join(f"{r.engine}:{r.workload}" for r in failed) + "\n")
        return 1
    return 1 if suite.failed else 0


if __name__ == "__main__":
    sys.exit(main())
