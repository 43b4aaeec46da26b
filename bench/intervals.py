"""Throughput per interval of operations (``--report-interval N``).

Design
------
A long fill must keep its pace: the engine issue asks that a 10M-entry
fillrandom slow down no more than 2x from the first to the last million.
``IntervalRecorder`` cuts a workload's operation stream into consecutive
intervals of ``every`` operations and keeps, per interval, the operations,
the timed seconds (the sum of the per-operation latencies the workload
measured anyway, so the interval figures add up exactly to the workload's
ops/s and cost no extra clock read), the resulting ops/s and the process's
resident memory when the interval closed (``bench.memory``; shows whether
memory stays bounded as the DB grows).

Operations may arrive one latency per operation (``add``) or as one
latency covering several operations (``add_grouped``, fillbatch's batches);
a group is never split, it lands in the interval where it starts, so an
interval of a batched workload may hold up to ``batch_size - 1`` extra
operations (its ``ops`` field says exactly how many).

``slowdown()`` is first-interval ops/s over last-interval ops/s (> 1: the
end is slower).  The last interval counts only when it holds at least half
of ``every`` operations; otherwise the one before it is used, so a short
tail does not decide the figure.
"""

from __future__ import annotations

from typing import Optional, Sequence

from bench.memory import KiB_PER_MiB, read_memory
from blockdev.errors import ArgumentTypeError, InvalidArgumentError

__all__ = ["IntervalRecorder", "slowdown"]


class IntervalRecorder:
    """Per-interval ops/s of one workload.  Single-threaded use only."""

    def __init__(self, every: int) -> None:
        if not isinstance(every, int) or isinstance(every, bool):
            raise ArgumentTypeError("every must be an int")
        if every < 1:
            raise InvalidArgumentError(f"every must be >= 1, got {every}")
        self.every = every
        self.intervals: list[dict] = []
        self._ops = 0          # operations in the open interval
        self._ns = 0           # timed ns in the open interval
        self._start = 0        # index of the open interval's first operation

    def add(self, latencies_ns: Sequence[int]) -> None:
        """Record operations, one latency (ns) each, in order.  O(len)."""
        i, n = 0, len(latencies_ns)
        while i < n:
            room = self.every - self._ops
            take = min(room, n - i)
            self._ns += sum(latencies_ns[i:i + take])
            self._ops += take
            i += take
            if self._ops == self.every:
                self._close()

    def add_grouped(self, latencies_ns: Sequence[int], ops_each: int) -> None:
        """Record groups of ``ops_each`` operations, one latency per group.  O(len)."""
        if ops_each < 1:
            raise InvalidArgumentError(f"ops_each must be >= 1, got {ops_each}")
        for ns in latencies_ns:
            self._ns += ns
            self._ops += ops_each
            if self._ops >= self.every:
                self._close()

    def _close(self) -> None:
        mem = read_memory()
        secs = self._ns / 1e9
        self.intervals.append({
            "index": len(self.intervals), "first_op": self._start, "ops": self._ops,
            "seconds": secs, "ops_per_sec": self._ops / secs if secs > 0 else None,
            "rss_mib": None if mem.rss_kib is None else mem.rss_kib / KiB_PER_MiB})
        self._start += self._ops
        self._ops = 0
        self._ns = 0

    def finish(self) -> list[dict]:
        """Close the partial last interval (if any) and return the series."""
        if self._ops:
            self._close()
        self._check()
        return self.intervals

    def _check(self) -> None:
        start = 0
        for k, iv in enumerate(self.intervals):
            assert iv["index"] == k and iv["first_op"] == start and iv["ops"] > 0
            start += iv["ops"]


def slowdown(intervals: Sequence[dict], every: int) -> Optional[float]:
    """First-interval ops/s divided by last-interval ops/s (None with fewer
    than two usable intervals).  A last interval shorter than ``every / 2``
    operations is skipped for the one before it."""
    usable = list(intervals)
    if len(usable) >= 2 and usable[-1]["ops"] * 2 < every:
        usable = usable[:-1]
    if len(usable) < 2:
        return None
    first, last = usable[0]["ops_per_sec"], usable[-1]["ops_per_sec"]
    if not first or not last:
        return None
    return first / last
