"""EmulatedDevice: a latency / IOPS / bandwidth model wrapped around a device.

Design.  Every I/O goes through three stages:

1. **Queue slot.**  A semaphore of ``queue_depth`` slots: up to that many
   I/Os are in service at once; more wait for a slot (the device queue).
2. **Admission.**  Two rate limiters in GCRA form ("virtual scheduling"): an
   IOPS limiter (cost 1 per I/O) and a bandwidth limiter (cost = bytes).  Each
   keeps a theoretical arrival time ``tat``; an I/O arriving at ``now`` is
   admitted at ``max(now, tat - burst)`` and pushes ``tat`` forward by
   ``cost / rate``.  The admission time is computed under a short lock, the
   wait happens outside it, so concurrent I/Os queue in FIFO order behind the
   caps without holding each other's locks.
3. **Service.**  A latency is drawn from the model (a log-normal around the
   median, plus an occasional uniform tail), the inner operation runs, and the
   caller is released at ``admission + latency``.

Waiting is precise: ``time.sleep`` until ``spin_ns`` (200 µs) before the
deadline, then a spin on ``time.perf_counter_ns`` in which each iteration
calls ``os.sched_yield()`` so the GIL is released and other threads run.  A
100 µs model therefore measures close to 100 µs (Python overhead of a few µs
aside), not the 1 ms granularity of coarse sleeps.

Jitter is deterministic under ``seed``: one ``random.Random`` per device,
drawn under a lock (the sequence of draws is fixed; which thread gets which
draw depends on scheduling).

Counters and a log-linear latency histogram (``LatencyHistogram``: 16
linear sub-buckets per power of two of nanoseconds, so a percentile is within
~6% of the truth) are kept per device and per operation kind.
"""

from __future__ import annotations

import math
import os
import random
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional

from blockdev.device import BlockDevice
from blockdev.errors import ArgumentTypeError, InvalidArgumentError

__all__ = ["LatencyModel", "LatencyHistogram", "EmulatedDevice", "NETWORK_DISK", "LOCAL_SSD",
           "precise_wait_until"]

_SPIN_NS = 200_000
# sched_yield releases the GIL and, unlike time.sleep(0), is not rounded up
# to the kernel's 50 µs timer slack.
_yield = getattr(os, "sched_yield", lambda: time.sleep(0))


def precise_wait_until(deadline_ns: int, spin_ns: int = _SPIN_NS) -> None:
    """Block until ``time.perf_counter_ns() >= deadline_ns``: sleep the bulk,
    spin the last ``spin_ns`` (yielding the GIL on every iteration)."""
    remaining = deadline_ns - time.perf_counter_ns()
    if remaining > spin_ns:
        time.sleep((remaining - spin_ns) / 1e9)
    while time.perf_counter_ns() < deadline_ns:
        _yield()


@dataclass(frozen=True)
class LatencyModel:
    """Service-time and rate model of a device.

    Latencies are medians in microseconds; each I/O draws
    ``median * exp(jitter * N(0,1))`` and, with probability
    ``tail_probability``, adds ``U(0, tail_us)``.  ``iops`` and
    ``bandwidth_mib_s`` cap the admission rate (``None``: uncapped);
    ``burst`` is how many I/Os (or ``burst`` × 1 MiB of bytes) may be admitted
    back to back before the caps bite.  ``queue_depth`` bounds concurrent
    I/Os in service.
    """

    name: str
    read_us: float
    write_us: float
    flush_us: float
    jitter: float = 0.0
    tail_probability: float = 0.0
    tail_us: float = 0.0
    iops: Optional[float] = None
    bandwidth_mib_s: Optional[float] = None
    queue_depth: int = 32
    burst: int = 16
    discard_us: float = 0.0

    def __post_init__(self) -> None:
        self._check()

    def _check(self) -> None:
        if not isinstance(self.name, str):
            raise ArgumentTypeError(f"name must be a str, got {type(self.name).__name__}")
        for f in ("read_us", "write_us", "flush_us", "jitter", "tail_probability", "tail_us", "discard_us"):
            v = getattr(self, f)
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise ArgumentTypeError(f"{f} must be a number, got {type(v).__name__}")
            if v < 0 or math.isnan(v):
                raise InvalidArgumentError(f"{f} must be >= 0, got {v}")
        if self.tail_probability > 1:
            raise InvalidArgumentError(f"tail_probability must be <= 1, got {self.tail_probability}")
        for f in ("iops", "bandwidth_mib_s"):
            v = getattr(self, f)
            if v is not None:
                if not isinstance(v, (int, float)) or isinstance(v, bool):
                    raise ArgumentTypeError(f"{f} must be a number or None, got {type(v).__name__}")
                if v <= 0:
                    raise InvalidArgumentError(f"{f} must be > 0, got {v}")
        for f in ("queue_depth", "burst"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool):
                raise ArgumentTypeError(f"{f} must be an int, got {type(v).__name__}")
            if v < 1:
                raise InvalidArgumentError(f"{f} must be >= 1, got {v}")

    def with_(self, **changes: object) -> "LatencyModel":
        """A copy with some fields changed (validated)."""
        return replace(self, **changes)  # type: ignore[arg-type]


#: A cloud network SSD disk (GCP pd-ssd class, ~500 GiB: 30 IOPS/GiB and
#: 0.48 MiB/s per GiB): ~1.2 ms median, jittery, a tail to a few ms.
NETWORK_DISK = LatencyModel(
    name="network-disk", read_us=1200.0, write_us=1200.0, flush_us=600.0,
    jitter=0.2, tail_probability=0.01, tail_us=3000.0,
    iops=15000.0, bandwidth_mib_s=240.0, queue_depth=32, burst=32, discard_us=200.0)

#: A local NVMe SSD: ~0.1 ms, ~100k IOPS.
LOCAL_SSD = LatencyModel(
    name="local-ssd", read_us=100.0, write_us=60.0, flush_us=40.0,
    jitter=0.1, tail_probability=0.001, tail_us=400.0,
    iops=100000.0, bandwidth_mib_s=2000.0, queue_depth=128, burst=64, discard_us=20.0)


class LatencyHistogram:
    """Log-linear histogram of durations in nanoseconds.

    Bucket of value ``v``: values below 16 have their own bucket; otherwise
    with ``e = bit_length(v) - 5`` the bucket is ``16 + 16*e + (v >> e) - 16``
    (16 linear sub-buckets per power of two).  record is O(1); percentile
    is O(number of buckets).  Thread-safe."""

    SUB = 16

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Dict[int, int] = {}
        self.count = 0
        self.total_ns = 0
        self.min_ns: Optional[int] = None
        self.max_ns = 0

    @classmethod
    def _bucket(cls, v: int) -> int:
        if v < cls.SUB:
            return v
        e = v.bit_length() - 5
        return cls.SUB + cls.SUB * e + (v >> e) - cls.SUB

    @classmethod
    def _bucket_low(cls, b: int) -> int:
        if b < cls.SUB:
            return b
        e, r = divmod(b - cls.SUB, cls.SUB)
        return (r + cls.SUB) << e

    @classmethod
    def _bucket_high(cls, b: int) -> int:
        if b < cls.SUB:
            return b
        e, r = divmod(b - cls.SUB, cls.SUB)
        return ((r + cls.SUB + 1) << e) - 1

    def record(self, ns: int) -> None:
        """Add one observation (negative values count as 0)."""
        ns = max(0, int(ns))
        b = self._bucket(ns)
        with self._lock:
            self._counts[b] = self._counts.get(b, 0) + 1
            self.count += 1
            self.total_ns += ns
            self.max_ns = max(self.max_ns, ns)
            self.min_ns = ns if self.min_ns is None else min(self.min_ns, ns)

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0..100) in ns, interpolated inside its bucket; 0 if empty."""
        if not isinstance(q, (int, float)) or isinstance(q, bool):
            raise ArgumentTypeError(f"q must be a number, got {type(q).__name__}")
        if not 0 <= q <= 100:
            raise InvalidArgumentError(f"q must be in [0, 100], got {q}")
        with self._lock:
            if self.count == 0:
                return 0.0
            rank = q / 100.0 * self.count
            seen = 0
            for b in sorted(self._counts):
                c = self._counts[b]
                if seen + c >= rank:
                    lo, hi = self._bucket_low(b), self._bucket_high(b)
                    frac = (rank - seen) / c if c else 0.0
                    v = lo + (hi - lo) * frac
                    return float(min(max(v, self.min_ns or 0), self.max_ns))
                seen += c
            return float(self.max_ns)

    @property
    def mean_ns(self) -> float:
        return self.total_ns / self.count if self.count else 0.0

    def summary(self) -> Dict[str, float]:
        """count, mean, p50, p99, p99.9, max in microseconds."""
        return {
            "count": self.count,
            "mean_us": self.mean_ns / 1e3,
            "p50_us": self.percentile(50) / 1e3,
            "p99_us": self.percentile(99) / 1e3,
            "p99.9_us": self.percentile(99.9) / 1e3,
            "max_us": self.max_ns / 1e3,
        }

    def _check(self) -> None:
        assert sum(self._counts.values()) == self.count
        assert all(c > 0 for c in self._counts.values())


@dataclass
class _RateLimiter:
    """GCRA limiter: ``rate`` units per second, ``burst`` units of tolerance."""

    rate: float
    burst: float
    tat_ns: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def admit(self, now_ns: int, cost: float) -> int:
        """Reserve capacity for ``cost`` units; returns the admission time (ns)."""
        interval = int(cost / self.rate * 1e9)
        tolerance = int(self.burst / self.rate * 1e9)
        with self.lock:
            tat = max(self.tat_ns, now_ns)
            start = max(now_ns, tat - tolerance)
            self.tat_ns = tat + interval
            return start


class EmulatedDevice(BlockDevice):
    """Wraps ``inner`` with the latency and rate model ``model``.

    Requires: ``inner`` open; the wrapper owns it and closes it on
    ``close()``.  ``seed`` makes the jitter sequence reproducible."""

    def __init__(self, inner: BlockDevice, model: LatencyModel, seed: Optional[int] = None,
                 name: Optional[str] = None) -> None:
        if not isinstance(inner, BlockDevice):
            raise ArgumentTypeError(f"inner must be a BlockDevice, got {type(inner).__name__}")
        if not isinstance(model, LatencyModel):
            raise ArgumentTypeError(f"model must be a LatencyModel, got {type(model).__name__}")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise ArgumentTypeError(f"seed must be an int or None, got {type(seed).__name__}")
        super().__init__(inner.size, inner.block_size)
        self.inner = inner
        self.model = model
        self.name = name if name is not None else f"{model.name}({inner.name})"
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(model.queue_depth)
        self._iops = _RateLimiter(model.iops, model.burst) if model.iops else None
        mib = 1 << 20
        self._bw = (_RateLimiter(model.bandwidth_mib_s * mib, model.burst * mib)
                    if model.bandwidth_mib_s else None)
        self._stats_lock = threading.Lock()
        self.counters: Dict[str, int] = {
            "reads": 0, "writes": 0, "flushes": 0, "discards": 0,
            "bytes_read": 0, "bytes_written": 0, "queue_waits": 0, "throttled": 0,
            "in_flight": 0, "max_in_flight": 0,
        }
        self.histograms: Dict[str, LatencyHistogram] = {
            k: LatencyHistogram() for k in ("read", "write", "flush", "discard")}

    # -- model ------------------------------------------------------------------
    def sample_latency_ns(self, kind: str) -> int:
        """Draw one service time for ``kind`` ('read'|'write'|'flush'|'discard')."""
        m = self.model
        median = {"read": m.read_us, "write": m.write_us, "flush": m.flush_us,
                  "discard": m.discard_us}[kind]
        with self._rng_lock:
            z = self._rng.gauss(0.0, 1.0) if m.jitter else 0.0
            tail = (self._rng.random() * m.tail_us
                    if m.tail_probability and self._rng.random() < m.tail_probability else 0.0)
        return int((median * math.exp(m.jitter * z) + tail) * 1000)

    def _io(self, kind: str, nbytes: int, fn, *args):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter_ns()
        if not self._slots.acquire(blocking=False):
            with self._stats_lock:
                self.counters["queue_waits"] += 1
            self._slots.acquire()
        try:
            with self._stats_lock:
                self.counters["in_flight"] += 1
                self.counters["max_in_flight"] = max(self.counters["max_in_flight"], self.counters["in_flight"])
            now = time.perf_counter_ns()
            start = now
            if kind != "flush":
                if self._iops is not None:
                    start = max(start, self._iops.admit(now, 1))
                if self._bw is not None and nbytes:
                    start = max(start, self._bw.admit(now, nbytes))
            if start > now:
                with self._stats_lock:
                    self.counters["throttled"] += 1
            deadline = start + self.sample_latency_ns(kind)
            result = fn(*args)
            precise_wait_until(deadline)
        finally:
            with self._stats_lock:
                self.counters["in_flight"] -= 1
            self._slots.release()
        self.histograms[kind].record(time.perf_counter_ns() - t0)
        return result

    # -- hooks ------------------------------------------------------------------
    def _read(self, offset: int, length: int) -> bytes:
        data = self._io("read", length, self.inner.read, offset, length)
        with self._stats_lock:
            self.counters["reads"] += 1
            self.counters["bytes_read"] += length
        return data

    def _write(self, offset: int, data: bytes) -> None:
        self._io("write", len(data), self.inner.write, offset, data)
        with self._stats_lock:
            self.counters["writes"] += 1
            self.counters["bytes_written"] += len(data)

    def _flush(self) -> None:
        self._io("flush", 0, self.inner.flush)
        with self._stats_lock:
            self.counters["flushes"] += 1

    def _discard(self, offset: int, length: int) -> None:
        self._io("discard", 0, self.inner.discard, offset, length)
        with self._stats_lock:
            self.counters["discards"] += 1

    def _close(self) -> None:
        self.inner.close()

    # -- reporting ----------------------------------------------------------------
    def stats(self) -> Dict[str, object]:
        """Counters, the configured model and measured latency summaries."""
        with self._stats_lock:
            counters = dict(self.counters)
        return {
            "name": self.name,
            "model": {"name": self.model.name, "read_us": self.model.read_us,
                      "write_us": self.model.write_us, "flush_us": self.model.flush_us,
                      "iops": self.model.iops, "bandwidth_mib_s": self.model.bandwidth_mib_s,
                      "queue_depth": self.model.queue_depth},
            "counters": counters,
            "latency": {k: h.summary() for k, h in self.histograms.items() if h.count},
        }

    def reset_stats(self) -> None:
        """Zero the counters and histograms."""
        with self._stats_lock:
            for k in self.counters:
                if k != "in_flight":
                    self.counters[k] = 0
            self.histograms = {k: LatencyHistogram() for k in ("read", "write", "flush", "discard")}


def _measure_model(model: LatencyModel, n: int = 200, seed: int = 0) -> List[int]:
    """Measured single-thread read latencies (ns) of ``model`` over a memory device (for benchmarks)."""
    from blockdev.device import MemoryDevice
    dev = EmulatedDevice(MemoryDevice(1 << 20), model, seed=seed)
    out = []
    for i in range(n):
        t = time.perf_counter_ns()
        dev.read((i % 256) * 4096, 4096)
        out.append(time.perf_counter_ns() - t)
    dev.close()
    return out
