"""A latency histogram with log-linear buckets (HdrHistogram-style).

Design
------
Values are non-negative integers (nanoseconds in lsm-bench).  Values below
``2 * SUB`` (``SUB = 32``) get one exact bucket each; above that, every
power-of-two range ``[2**e, 2**(e+1))`` is cut into ``SUB`` equal buckets,
so a bucket is at most ``1/SUB`` (~3%) of its value wide and a reported
percentile is within ~3% of the true one.  Bucket index of ``v``:

* ``v < 64``: ``v``
* else: ``shift = v.bit_length() - 6`` (so ``v >> shift`` is in ``[32, 64)``),
  ``index = shift * 32 + (v >> shift)``.

Values at or above ``MAX_VALUE`` (2**42 ns, ~73 minutes) land in the last
bucket; min, max, count and sum are kept exactly.  Bulk recording of a whole
array of samples (``add_many``) uses numpy when it is available and falls
back to a plain loop, so the timed loops of the benchmark only append raw
samples and pay no bucketing cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

from blockdev.errors import ArgumentTypeError, InvalidArgumentError

try:  # numpy is optional: it only speeds up add_many
    import numpy as _np
except ImportError:  # pragma: no cover - numpy ships with matplotlib here
    _np = None

__all__ = ["Histogram", "SUB", "MAX_VALUE", "bucket_index", "bucket_bounds"]

SUB = 32                      # buckets per power of two above 2*SUB
_SUB_BITS = 5                 # log2(SUB)
MAX_VALUE = 1 << 42           # larger values share the last bucket
NUM_BUCKETS = ((MAX_VALUE.bit_length() - 1 - _SUB_BITS) * SUB) + 2 * SUB


def bucket_index(value: int) -> int:
    """Index of the bucket holding ``value``.  O(1).

    Requires: ``value >= 0``.
    """
    if value < 2 * SUB:
        return value
    if value >= MAX_VALUE:
        return NUM_BUCKETS - 1
    shift = value.bit_length() - (_SUB_BITS + 1)
    return shift * SUB + (value >> shift)


def bucket_bounds(index: int) -> tuple[int, int]:
    """``[low, high)`` of the values bucket ``index`` holds.  O(1)."""
    if index < 2 * SUB:
        return index, index + 1
    shift = index // SUB - 1
    mantissa = index % SUB + SUB
    low = mantissa << shift
    return low, low + (1 << shift)


@dataclass(frozen=True)
class Summary:
    """A histogram reduced to the figures lsm-bench reports (nanoseconds)."""

    count: int
    mean: float
    min: int
    max: int
    p50: float
    p99: float
    p999: float


class Histogram:
    """Counts of values per log-linear bucket, plus exact count/sum/min/max.

    ``add`` is O(1); ``percentile`` and ``cdf`` are O(number of buckets).
    Not thread-safe: give each thread its own and ``merge`` them.
    """

    __slots__ = ("_counts", "count", "total", "min", "max")

    def __init__(self) -> None:
        self._counts = [0] * NUM_BUCKETS
        self.count = 0
        self.total = 0
        self.min = 0
        self.max = 0

    # -- recording ----------------------------------------------------------
    def add(self, value: int) -> None:
        """Record one value.  Requires: a non-negative int."""
        if not isinstance(value, int) or isinstance(value, bool):
            raise ArgumentTypeError(f"value must be an int, got {type(value).__name__}")
        if value < 0:
            raise InvalidArgumentError(f"value must be >= 0, got {value}")
        self._counts[bucket_index(value)] += 1
        if self.count == 0 or value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        self.count += 1
        self.total += value

    def add_many(self, values: Sequence[int] | Iterable[int]) -> None:
        """Record every value of ``values`` (e.g. an ``array('q')``).

        O(n); vectorised with numpy when available.  Requires: all >= 0.
        """
        if _np is not None:
            arr = _np.asarray(values, dtype=_np.int64)
            if arr.size == 0:
                return
            if int(arr.min()) < 0:
                raise InvalidArgumentError("values must be >= 0")
            clipped = _np.minimum(arr, MAX_VALUE)
            # frexp gives v = m * 2**e with 0.5 <= m < 1, so e == bit_length(v)
            # exactly for 0 < v < 2**53.
            _, exp = _np.frexp(clipped.astype(_np.float64))
            shift = _np.maximum(exp.astype(_np.int64) - (_SUB_BITS + 1), 0)
            idx = _np.where(clipped < 2 * SUB, clipped, shift * SUB + (clipped >> shift))
            idx = _np.minimum(idx, NUM_BUCKETS - 1)
            binned = _np.bincount(idx, minlength=NUM_BUCKETS)
            counts = self._counts
            for i in _np.nonzero(binned)[0].tolist():
                counts[i] += int(binned[i])
            lo, hi = int(arr.min()), int(arr.max())
            if self.count == 0 or lo < self.min:
                self.min = lo
            if hi > self.max:
                self.max = hi
            self.count += int(arr.size)
            self.total += int(arr.sum())
            return
        for v in values:  # pragma: no cover - only without numpy
            self.add(int(v))

    def merge(self, other: "Histogram") -> None:
        """Add every value recorded in ``other``.  O(buckets)."""
        if not isinstance(other, Histogram):
            raise ArgumentTypeError(f"other must be a Histogram, got {type(other).__name__}")
        if other.count == 0:
            return
        for i, c in enumerate(other._counts):
            if c:
                self._counts[i] += c
        if self.count == 0 or other.min < self.min:
            self.min = other.min
        if other.max > self.max:
            self.max = other.max
        self.count += other.count
        self.total += other.total

    # -- queries ------------------------------------------------------------
    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def percentile(self, p: float) -> float:
        """The value below which ``p`` percent of the recorded values lie,
        interpolated linearly inside its bucket and clamped to [min, max].
        0.0 when empty.  Requires: ``0 <= p <= 100``."""
        if not isinstance(p, (int, float)) or isinstance(p, bool):
            raise ArgumentTypeError(f"p must be a number, got {type(p).__name__}")
        if not 0 <= p <= 100:
            raise InvalidArgumentError(f"p must be in [0, 100], got {p}")
        if self.count == 0:
            return 0.0
        threshold = self.count * p / 100.0
        cumulative = 0
        for i, c in enumerate(self._counts):
            if not c:
                continue
            if cumulative + c >= threshold:
                low, high = bucket_bounds(i)
                frac = (threshold - cumulative) / c
                value = low + (high - low) * frac
                return float(min(max(value, self.min), self.max))
            cumulative += c
        return float(self.max)

    def summary(self) -> Summary:
        return Summary(self.count, self.mean, self.min, self.max,
                       self.percentile(50), self.percentile(99), self.percentile(99.9))

    def cdf(self) -> list[tuple[float, float]]:
        """``(upper bound of bucket, fraction of values <= it)`` for every
        non-empty bucket, ascending — the points of the latency CDF."""
        out: list[tuple[float, float]] = []
        if self.count == 0:
            return out
        cumulative = 0
        for i, c in enumerate(self._counts):
            if c:
                cumulative += c
                out.append((float(min(bucket_bounds(i)[1], self.max)), cumulative / self.count))
        return out

    def nonzero_buckets(self) -> list[tuple[int, int]]:
        """``(bucket index, count)`` of every non-empty bucket (for JSON)."""
        return [(i, c) for i, c in enumerate(self._counts) if c]

    def _check(self) -> None:
        """Assert the invariants: counts add up, min <= mean <= max."""
        assert sum(self._counts) == self.count, "bucket counts must add up to count"
        if self.count:
            assert self.min <= self.max
            assert self.min <= self.mean + 1e-9 and self.mean <= self.max + 1e-9
            assert self._counts[bucket_index(min(self.min, MAX_VALUE))] > 0
        else:
            assert self.total == 0
        assert not math.isnan(self.mean)
