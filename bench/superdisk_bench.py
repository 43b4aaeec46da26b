"""SuperDisk benchmark: 4 KiB random reads and sync writes on LOCAL_SSD,
NETWORK_DISK and SuperDisk(NETWORK_DISK, LOCAL_SSD), plus rebuild MiB/s.

Every device is an ``EmulatedDevice`` over RAM, so the figures measure the
latency models and the SuperDisk's own overhead (routing, checksums, the
parallel legs), not the host's disks.  Several threads issue I/O at once so
that queueing and the overlap of the two legs show.

Targets (issue 3): SuperDisk random reads within 1.25x of LOCAL_SSD and at
least 5x faster than NETWORK_DISK; sync writes within 1.15x of NETWORK_DISK.

Run: ``python -m bench.superdisk_bench [--size-mib 32] [--ops 4000] [--threads 4] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional

from blockdev.device import BlockDevice, MemoryDevice
from blockdev.emulated import LOCAL_SSD, NETWORK_DISK, EmulatedDevice, LatencyHistogram
from blockdev.errors import InvalidArgumentError
from blockdev.superdisk import Layout, SuperDisk

__all__ = ["run_superdisk_bench", "main"]

BS = 4096
MiB = 1 << 20


def _prefill(dev: BlockDevice, nbytes: int, seed: int) -> None:
    rng = random.Random(seed)
    chunk = 1 * MiB
    for off in range(0, nbytes, chunk):
        n = min(chunk, nbytes - off)
        dev.write(off, rng.randbytes(n))
    dev.flush()


def _run_threads(threads: int, ops: int, op: Callable[[random.Random], None], seed: int) -> Dict[str, float]:
    hist = LatencyHistogram()
    per = max(1, ops // threads)
    errors: List[BaseException] = []

    def worker(t: int) -> None:
        rng = random.Random(seed * 1000 + t)
        try:
            for _ in range(per):
                s = time.perf_counter_ns()
                op(rng)
                hist.record(time.perf_counter_ns() - s)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    ths = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    t0 = time.perf_counter()
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    s = hist.summary()
    return {"ops": hist.count, "ops_per_s": hist.count / elapsed, "mean_us": s["mean_us"],
            "p50_us": s["p50_us"], "p99_us": s["p99_us"], "p99.9_us": s["p99.9_us"]}


def _workloads(dev: BlockDevice, span: int, ops: int, threads: int, seed: int) -> Dict[str, Dict[str, float]]:
    nblocks = span // BS
    payload = os.urandom(BS)

    def rread(rng: random.Random) -> None:
        dev.read(rng.randrange(nblocks) * BS, BS)

    def swrite(rng: random.Random) -> None:
        dev.write(rng.randrange(nblocks) * BS, payload)
        dev.flush()

    return {"randread": _run_threads(threads, ops, rread, seed),
            "syncwrite": _run_threads(threads, max(threads, ops // 4), swrite, seed + 1)}


def run_superdisk_bench(size_mib: int = 32, ops: int = 4000, threads: int = 4, seed: int = 0,
                        region_mib: int = 4) -> Dict[str, Any]:
    """Run the three device configurations and the rebuild measurement.

    Returns a dict with per-config workload figures (ops/s, mean/p50/p99/p99.9
    in µs), the ratios the targets are stated in, the rebuild throughput in
    MiB/s and whether each target is met.  Requires: size_mib >= 4, ops >= threads >= 1."""
    for name, v in (("size_mib", size_mib), ("ops", ops), ("threads", threads), ("region_mib", region_mib)):
        if not isinstance(v, int) or isinstance(v, bool):
            raise InvalidArgumentError(f"{name} must be an int")
    if size_mib < 4 or threads < 1 or ops < threads or region_mib < 1:
        raise InvalidArgumentError("need size_mib >= 4, threads >= 1, ops >= threads, region_mib >= 1")
    size = size_mib * MiB
    results: Dict[str, Any] = {}

    for label, model in (("local-ssd", LOCAL_SSD), ("network-disk", NETWORK_DISK)):
        dev = EmulatedDevice(MemoryDevice(size), model, seed=seed)
        _prefill(dev, size, seed)
        dev.reset_stats()
        results[label] = _workloads(dev, size, ops, threads, seed)
        results[label]["device_latency"] = dev.stats()["latency"]
        dev.close()

    lay = Layout.for_size(size, BS, region_mib * MiB)
    net = EmulatedDevice(MemoryDevice(lay.leg_size, name="net"), NETWORK_DISK, seed=seed + 1)
    ssd = EmulatedDevice(MemoryDevice(lay.leg_size, name="ssd"), LOCAL_SSD, seed=seed + 2)
    sd = SuperDisk.open(durable=net, cache=None, create=True, size=size, region_size=region_mib * MiB,
                        background_rebuild=False, rebuild_rate=None, io_threads=max(16, 4 * threads))
    _prefill(sd, size, seed)          # data lands on durable only
    sd.add_cache(ssd)                 # blank cache: a full rebuild
    t0 = time.perf_counter()
    sd.rebuild(wait=True)
    rebuild_s = time.perf_counter() - t0
    assert sd.status()["state"] == "clean"
    results["superdisk"] = _workloads(sd, size, ops, threads, seed)
    results["superdisk"]["status"] = sd.status()["counters"]
    sd.close()
    net.close()
    ssd.close()

    loc, nw, sdk = results["local-ssd"], results["network-disk"], results["superdisk"]
    ratios = {
        "read_mean_superdisk_over_local": sdk["randread"]["mean_us"] / loc["randread"]["mean_us"],
        "read_speedup_superdisk_over_network": nw["randread"]["mean_us"] / sdk["randread"]["mean_us"],
        "syncwrite_mean_superdisk_over_network": sdk["syncwrite"]["mean_us"] / nw["syncwrite"]["mean_us"],
    }
    targets = {
        "reads within 1.25x of LOCAL_SSD": ratios["read_mean_superdisk_over_local"] <= 1.25,
        "reads >= 5x faster than NETWORK_DISK": ratios["read_speedup_superdisk_over_network"] >= 5.0,
        "sync writes within 1.15x of NETWORK_DISK": ratios["syncwrite_mean_superdisk_over_network"] <= 1.15,
    }
    return {
        "config": {"size_mib": size_mib, "ops": ops, "threads": threads, "seed": seed,
                   "region_mib": region_mib, "block_size": BS,
                   "models": {m.name: {"read_us": m.read_us, "write_us": m.write_us, "flush_us": m.flush_us,
                                       "iops": m.iops, "bandwidth_mib_s": m.bandwidth_mib_s}
                              for m in (LOCAL_SSD, NETWORK_DISK)},
                   "python": sys.version.split()[0], "cpus": os.cpu_count()},
        "results": results,
        "ratios": ratios,
        "rebuild": {"bytes": size, "seconds": rebuild_s, "mib_per_s": size / MiB / rebuild_s},
        "targets": targets,
    }


def _table(res: Dict[str, Any]) -> str:
    lines = [f"{'device':<14}{'workload':<11}{'ops/s':>10}{'mean us':>10}{'p50 us':>10}{'p99 us':>10}{'p99.9 us':>10}"]
    for dev in ("local-ssd", "network-disk", "superdisk"):
        for wl in ("randread", "syncwrite"):
            r = res["results"][dev][wl]
            lines.append(f"{dev:<14}{wl:<11}{r['ops_per_s']:>10.0f}{r['mean_us']:>10.0f}{r['p50_us']:>10.0f}"
                         f"{r['p99_us']:>10.0f}{r['p99.9_us']:>10.0f}")
    lines.append("")
    for k, v in res["ratios"].items():
        lines.append(f"{k:<42}{v:8.2f}")
    lines.append(f"{'rebuild MiB/s':<42}{res['rebuild']['mib_per_s']:8.1f}")
    for k, ok in res["targets"].items():
        lines.append(f"target: {k:<44}{'met' if ok else 'MISSED'}")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.superdisk_bench", description=__doc__.split("\n")[0])
    ap.add_argument("--size-mib", type=int, default=32)
    ap.add_argument("--ops", type=int, default=4000)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--region-mib", type=int, default=4)
    ap.add_argument("--json", action="store_true", help="print the result dict as JSON")
    args = ap.parse_args(argv)
    res = run_superdisk_bench(args.size_mib, args.ops, args.threads, args.seed, args.region_mib)
    print(json.dumps(res, indent=2, default=str) if args.json else _table(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
