"""``lsm-stress``: a db_crashtest-style stress test.

A writer *process* applies a deterministic write history (puts, deletes,
range deletes, batches; every few writes ``sync=True``) to a DB and reports
on stdout the index of each write it has finished (``ACK i``, ``SYNC i`` for
sync writes).  The parent kills it with SIGKILL at a random moment, reopens
the DB and verifies the crash guarantee with
``lsm.testing.verify_prefix_of_history``: the DB holds exactly the first k
writes for some k, with k past every reported write: the process died,
not the machine, so every acknowledged write -- ``sync=False`` ones
included -- had left the process (the OS page cache on a directory, the
device through BlockFS).  The next
writer continues the history from k.  Options are small so that flushes and
compactions run while the writer is killed.

    lsm-stress [--dir DIR] [--duration S] [--kills N] [--seed N] [--keys N]
               [--device posix|blockfs|superdisk] [--no-faults] [--quiet]

``--device blockfs`` keeps the DB inside a file-backed block device
(blockdev.FileDevice) through BlockFS; ``--device superdisk`` inside a
SuperDisk of two file legs, and between rounds the cache leg is lost or given
bad sectors (unless ``--no-faults``): the array must heal from the durable
leg without losing a verified write.  Exit status 0 when every round
verified, 1 on a violation (the message names the first differing key).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Sequence

__all__ = ["main", "history_op", "STRESS_OPTIONS"]

STRESS_OPTIONS = dict(write_buffer_size=16 << 10, target_file_size_base=8 << 10,
                      max_bytes_for_level_base=64 << 10, block_size=1024,
                      level0_file_num_compaction_trigger=2)
DEVICE_SIZE = 64 << 20


def history_op(seed: int, i: int, keys: int) -> tuple[list[tuple], bool]:
    """Write number ``i`` of the history of ``seed``: (ops of one batch, sync?)."""
    rnd = random.Random(seed * 1_000_003 + i)
    r = rnd.random()
    kn = rnd.randrange(keys)
    key = b"k%06d" % kn
    value = (b"%d:" % i) * rnd.randrange(1, 20)
    if r < 0.70:
        ops = [("put", key, value)]
    elif r < 0.82:
        ops = [("delete", key)]
    elif r < 0.86:
        ops = [("delete_range", key, b"k%06d" % (kn + rnd.randrange(1, 40)))]
    else:
        ops = []
        for _ in range(rnd.randrange(1, 8)):
            ops.append(("put", b"k%06d" % rnd.randrange(keys), b"b%d" % i))
    return ops, rnd.random() < 0.1


def _open(target: Any, device: str, create: bool) -> Any:
    import lsm
    if device == "superdisk":
        import blockdev
        durable = os.path.join(target, "durable.img")
        cache = os.path.join(target, "cache.img")
        sd = blockdev.SuperDisk.open(durable=durable, cache=cache,
                                     create=not os.path.exists(durable), size=DEVICE_SIZE)
        try:
            db = lsm.DB(sd, create_if_missing=create, **STRESS_OPTIONS)
        except BaseException:
            sd.close()
            raise
        return db, sd
    if device == "blockfs":
        import blockdev
        from blockdev.file import FileDevice
        path = os.path.join(target, "device.img")
        dev = FileDevice(path, size=DEVICE_SIZE, create=not os.path.exists(path))
        db = lsm.DB(dev, create_if_missing=create, **STRESS_OPTIONS)
        return db, dev
    return lsm.DB(target, create_if_missing=create, **STRESS_OPTIONS), None


def _child(args: argparse.Namespace) -> int:
    db, dev = _open(args.dir, args.device, True)
    out = sys.stdout
    i = args.start
    while True:
        ops, sync = history_op(args.seed, i, args.keys)
        if len(ops) == 1:
            op = ops[0]
            if op[0] == "put":
                db.put(op[1], op[2], sync=sync)
            elif op[0] == "delete":
                db.delete(op[1], sync=sync)
            else:
                db.delete_range(op[1], op[2], sync=sync)
        else:
            with db.write_batch(sync=sync) as wb:
                for op in ops:
                    wb.put(op[1], op[2])
        out.write(f"{'SYNC' if sync else 'ACK'} {i}\n")
        if sync or i % 50 == 0:
            out.flush()
        i += 1


def _inject_cache_faults(target: str, rnd: random.Random) -> str:
    """Between rounds, damage the SuperDisk's cache leg the way a cloud VM
    does: lose it entirely (ephemeral local SSD) or corrupt some sectors.
    The array must heal from the durable leg; every verified write stays."""
    cache = os.path.join(target, "cache.img")
    if not os.path.exists(cache):
        return "none"
    if rnd.random() < 0.3:
        os.remove(cache)
        return "cache lost"
    size = os.path.getsize(cache)
    with open(cache, "r+b") as f:
        for _ in range(8):
            f.seek(rnd.randrange(size // 2, size))   # data area, past the metadata
            f.write(os.urandom(16))
    return "8 bad sectors on cache"


def _read_state(target: str, device: str) -> dict:
    db, dev = _open(target, device, False)
    try:
        return dict(db.iterator())
    finally:
        db.close()
        if dev is not None:
            dev.close()


def run(workdir: str, duration: float, kills: int, seed: int, keys: int, device: str,
        quiet: bool = False, faults: bool = True) -> dict:
    """Run the stress loop; return a summary.  Raises AssertionError on a
    violation of the crash guarantee."""
    from lsm.testing import verify_prefix_of_history
    state: dict = {}
    start = 0
    rnd = random.Random(seed)
    deadline = time.monotonic() + duration
    rounds = 0
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    while rounds < kills or (kills == 0 and time.monotonic() < deadline):
        if kills and time.monotonic() > deadline and rounds:
            break
        cmd = [sys.executable, "-m", "lsm.tools.stress", "--child", "--dir", workdir,
               "--seed", str(seed), "--start", str(start), "--keys", str(keys),
               "--device", device]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                text=True)
        acked: list[int] = [start - 1]
        synced: list[int] = [start - 1]

        def reader() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                kind, _, n = line.partition(" ")
                try:
                    value = int(n)
                except ValueError:
                    continue
                acked[0] = max(acked[0], value)
                if kind == "SYNC":
                    synced[0] = max(synced[0], value)
        t = threading.Thread(target=reader, daemon=True)
        t.start()
        # wait until the writer is really writing, then a random extra time
        t0 = time.monotonic()
        while acked[0] < start and proc.poll() is None and time.monotonic() - t0 < 30:
            time.sleep(0.01)
        time.sleep(rnd.uniform(0.05, 0.6))
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            raise RuntimeError(f"writer exited early with status {proc.returncode}: {err}")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        t.join(5)
        last = acked[0]
        history = [history_op(seed, i, keys)[0] for i in range(start, last + 2000)]
        recovered = _read_state(workdir, device)
        # the process died, the OS and the devices did not: every reported
        # write must survive (sync or not; on a block device the WAL's
        # flush put it there before it was reported)
        k = verify_prefix_of_history(recovered, history, must_include=last - start + 1,
                                     initial=state)
        rounds += 1
        if not quiet:
            print(f"round {rounds}: writer reached {last}, last sync {synced[0]}, "
                  f"recovered prefix {start + k} ({len(recovered)} keys) ok", flush=True)
        state = recovered
        start = start + k
        if device == "superdisk" and faults:
            what = _inject_cache_faults(workdir, rnd)
            if not quiet:
                print(f"  injected: {what}", flush=True)
    return {"rounds": rounds, "writes": start, "keys": len(state)}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lsm-stress", description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", help="work directory (default: a temporary one, removed after)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds to run (default 20)")
    p.add_argument("--kills", type=int, default=0,
                   help="number of kill rounds (default: as many as fit in --duration)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--keys", type=int, default=2000, help="key space (default 2000)")
    p.add_argument("--device", choices=("posix", "blockfs", "superdisk"), default="posix")
    p.add_argument("--no-faults", action="store_true",
                   help="superdisk: do not inject cache loss / bad sectors between rounds")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return _child(args)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    tmp = None
    if args.dir is None:
        tmp = args.dir = tempfile.mkdtemp(prefix="lsm-stress-")
    os.makedirs(args.dir, exist_ok=True)
    try:
        summary = run(args.dir, args.duration, args.kills, seed, args.keys, args.device,
                      args.quiet, faults=not args.no_faults)
    except AssertionError as exc:
        print(f"lsm-stress: FAILED (seed {seed}): {exc}", file=sys.stderr)
        return 1
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"lsm-stress: ok (seed {seed}): {summary['rounds']} kills, {summary['writes']} writes, "
          f"{summary['keys']} live keys")
    return 0


if __name__ == "__main__":
    sys.exit(main())
