"""File-layer benchmark: BlockFS on a FileDevice vs PosixFS.

Run: ``python -m bench.fs_bench [--mib 64] [--repeat 7] [--dir DIR] [--json]``

Workloads (each on both file systems, median of ``--repeat`` runs):

* ``append``: ``--mib`` MiB written as 64 KiB appends with a ``sync`` after
  every 1 MiB (the shape of a table build or a WAL with group commit);
* ``seqread``: the file read front to back in 64 KiB reads;
* ``randread``: 4 KiB reads at uniformly random 4 KiB-aligned offsets.

Both file systems live in the same host directory (the BlockFS device is a
preallocated file there), so the host file system, its page cache and its
``fsync`` costs are shared; reads are served from the page cache on both
sides.  The ratio ``blockfs / posix`` of the append time is what the file
layer's target (within 1.3x) refers to.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import tempfile
import time
from typing import Callable

from blockdev import BlockFS, FileSystem, PosixFS
from blockdev.file import FileDevice

APPEND = 64 << 10
SYNC_EVERY = 1 << 20
RAND_READ = 4096


def _append(fs: FileSystem, name: str, total: int) -> float:
    chunk = os.urandom(APPEND)
    t0 = time.perf_counter()
    w = fs.create(name)
    since = 0
    written = 0
    while written < total:
        w.append(chunk)
        written += APPEND
        since += APPEND
        if since >= SYNC_EVERY:
            w.sync()
            since = 0
    w.sync()
    w.close()
    return time.perf_counter() - t0


def _seqread(fs: FileSystem, name: str, total: int) -> float:
    t0 = time.perf_counter()
    with fs.open(name) as r:
        off = 0
        while off < total:
            got = r.read(off, APPEND)
            if not got:
                break
            off += len(got)
    return time.perf_counter() - t0


def _randread(fs: FileSystem, name: str, total: int, count: int, seed: int) -> float:
    rng = random.Random(seed)
    offsets = [rng.randrange(total // RAND_READ) * RAND_READ for _ in range(count)]
    t0 = time.perf_counter()
    with fs.open(name) as r:
        for off in offsets:
            r.read(off, RAND_READ)
    return time.perf_counter() - t0


def run(mib: int, repeat: int, base: str) -> dict:
    total = mib << 20
    rand_count = max(1000, total // RAND_READ // 4)
    results: dict[str, dict[str, float]] = {}
    times: dict[str, dict[str, list[float]]]
    posix_dir = os.path.join(base, "posix")
    dev_path = os.path.join(base, "blockfs.img")
    makers: dict[str, Callable[[], tuple[FileSystem, Callable[[], None]]]] = {}

    def make_posix() -> tuple[FileSystem, Callable[[], None]]:
        fs = PosixFS(posix_dir, create=True)
        return fs, fs.close

    def make_blockfs() -> tuple[FileSystem, Callable[[], None]]:
        size = (2 * total + (64 << 20)) // 4096 * 4096
        new = not os.path.exists(dev_path)
        dev = FileDevice(dev_path, size=size, create=new)
        if new:
            # Preallocate, as a real deployment's device would be.
            with open(dev_path, "r+b") as f:
                os.posix_fallocate(f.fileno(), 0, size)
        fs = BlockFS(dev, create=True)

        def close() -> None:
            fs.close()
            dev.close()
        return fs, close

    makers["posix"] = make_posix
    makers["blockfs"] = make_blockfs
    times = {kind: {"append": [], "seqread": [], "randread": []} for kind in makers}
    # Alternate the two file systems so that machine noise hits both alike.
    for i in range(repeat):
        for kind, make in makers.items():
            fs, close = make()
            try:
                name = f"bench{i}.sst"
                times[kind]["append"].append(_append(fs, name, total))
                times[kind]["seqread"].append(_seqread(fs, name, total))
                times[kind]["randread"].append(_randread(fs, name, total, rand_count, seed=i))
                fs.delete(name)
            finally:
                close()
    for kind in makers:
        med = {k: statistics.median(v) for k, v in times[kind].items()}
        results[kind] = {
            "append_MBps": total / med["append"] / 1e6,
            "append_s": med["append"],
            "seqread_MBps": total / med["seqread"] / 1e6,
            "randread_ops": rand_count / med["randread"],
            "randread_MBps": rand_count * RAND_READ / med["randread"] / 1e6,
        }
    results["ratio"] = {
        "append_time_blockfs_over_posix": results["blockfs"]["append_s"] / results["posix"]["append_s"],
    }
    return {"mib": mib, "repeat": repeat, "append_bytes": APPEND, "sync_every": SYNC_EVERY,
            "results": results}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fs_bench", description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=64, help="MiB written per run (default 64)")
    ap.add_argument("--repeat", type=int, default=7, help="runs per workload; the median is reported")
    ap.add_argument("--dir", default=None, help="host directory to run in (default: a temp dir)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    if args.mib < 1 or args.repeat < 1:
        ap.error("--mib and --repeat must be >= 1")
    base = tempfile.mkdtemp(prefix="fs-bench-", dir=args.dir)
    try:
        out = run(args.mib, args.repeat, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    res = out["results"]
    print(f"file layer: {args.mib} MiB, 64 KiB appends, sync every 1 MiB, median of {args.repeat}")
    print(f"{'fs':<10}{'append MB/s':>14}{'seq read MB/s':>16}{'rand 4K read/s':>17}")
    for kind in ("posix", "blockfs"):
        r = res[kind]
        print(f"{kind:<10}{r['append_MBps']:>14.1f}{r['seqread_MBps']:>16.1f}{r['randread_ops']:>17.0f}")
    print(f"append time blockfs/posix: {res['ratio']['append_time_blockfs_over_posix']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
