"""Run one engine's workloads in a fresh interpreter (``--isolate``).

Design
------
Peak memory is a per-process figure, so engines sharing a process cannot be
told apart: CPython keeps freed arenas, C libraries keep their caches, and
the second engine starts from the first one's high water mark.  With
``--isolate`` the runner starts, per engine, a child interpreter with
``multiprocessing``'s *spawn* method (a fresh ``python``, nothing inherited
but ``sys.path`` and the environment), which imports only lsm-bench and that
engine's library, takes its memory baseline (``bench.memory.PeakTracker``),
and runs ``bench.runner.run_engine`` on the same configuration and the same
base directory.  The child sends, over a one-way pipe, one
``("result", PhaseResult)`` message per finished workload (the parent
prints the row at once, as without isolation) and finally
``("done", failed, stat_keys, memory)``.

A child that dies without ``done`` (a crash in a native library, the OOM
killer) is reported as the engine's failure with its exit code; the other
engines go on.  Children run one after another, never at the same time.
"""

from __future__ import annotations

import multiprocessing
import sys
from typing import Any, TextIO

from blockdev.errors import ArgumentTypeError

__all__ = ["run_engine_isolated"]


def _child(name: str, cfg: Any, base: str, conn: Any) -> None:
    """Child process body: run ``name`` and stream its results to ``conn``."""
    from bench.engines import engine_class
    from bench.runner import SuiteResult, run_engine

    engine_class(name).available()      # import the library before the baseline
    suite = SuiteResult(config=cfg)

    def send(result: Any) -> None:
        conn.send(("result", result))

    try:
        run_engine(name, cfg, base, suite, sys.stdout, sys.stderr, send, isolated=True)
        conn.send(("done", dict(suite.failed), dict(suite.stat_keys), dict(suite.memory)))
    finally:
        conn.close()


def run_engine_isolated(name: str, cfg: Any, base: str, suite: Any, err: TextIO,
                        on_result: Any = None) -> None:
    """Run engine ``name`` through ``cfg.benchmarks`` in a spawned child and
    merge its results, failures and memory figures into ``suite``.

    Requires: ``name`` is installed and can use ``cfg.device``; ``base``
    exists.  Blocks until the child exits.
    """
    from bench.runner import BenchConfig
    if not isinstance(cfg, BenchConfig):
        raise ArgumentTypeError("cfg must be a BenchConfig")
    ctx = multiprocessing.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(name, cfg, base, send), name=f"lsm-bench-{name}")
    proc.start()
    send.close()                        # the child holds the only write end now
    done = False
    try:
        while True:
            try:
                msg = recv.recv()
            except EOFError:
                break
            if msg[0] == "result":
                suite.results.append(msg[1])
                if on_result is not None:
                    on_result(msg[1])
            elif msg[0] == "done":
                _tag, failed, stat_keys, memory = msg
                suite.failed.update(failed)
                suite.stat_keys.update(stat_keys)
                suite.memory.update(memory)
                done = True
    finally:
        recv.close()
        proc.join()
    if not done or proc.exitcode != 0:
        why = f"isolated child exited with code {proc.exitcode} before reporting"
        suite.failed.setdefault(name, why)
        err.write(f"lsm-bench: {name} failed: {why}\n")
