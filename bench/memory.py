"""Process memory figures for lsm-bench: resident set now, peak, and resets.

Design
------
Memory is read from the kernel, never from ``tracemalloc`` (which slows every
allocation and only sees Python objects, not the C core's buffers):

* ``VmRSS`` (resident now) and ``VmHWM`` (peak resident, "high water mark")
  from ``/proc/self/status``, in KiB;
* where ``/proc`` is missing, ``resource.getrusage(RUSAGE_SELF).ru_maxrss``
  stands in for the peak and the current figure is unknown (``None``).

The peak can be reset on Linux by writing ``5`` to ``/proc/self/clear_refs``
(the kernel then sets ``VmHWM`` to the current ``VmRSS``).  ``PeakTracker``
uses that to give each workload its own peak while keeping the run's peak:
``mark()`` reads the peak since the last mark, folds it into the run maximum
and resets.  When resetting is not possible every later reading is the peak
since process start, and ``PeakTracker.resettable`` says so (the report then
gives only the run peak).

A peak means something per engine only when the engine ran alone in its
process: in-process peers inherit each other's arenas (CPython rarely hands
freed memory back to the OS).  ``bench.isolate`` runs each engine in a fresh
interpreter and takes the baseline right after the imports.
"""

from __future__ import annotations

import os
import resource
import sys
from dataclasses import dataclass
from typing import Optional

__all__ = ["MemoryReading", "read_memory", "reset_peak", "PeakTracker", "KiB_PER_MiB"]

KiB_PER_MiB = 1024


@dataclass(frozen=True)
class MemoryReading:
    """Resident memory of this process at one instant, in KiB (None: unknown)."""

    rss_kib: Optional[int]
    peak_kib: Optional[int]

    def _check(self) -> None:
        for v in (self.rss_kib, self.peak_kib):
            assert v is None or v >= 0


def _maxrss_kib() -> Optional[int]:
    try:
        v = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (OSError, ValueError):
        return None
    return v // 1024 if sys.platform == "darwin" else v  # macOS reports bytes


def read_memory() -> MemoryReading:
    """The current and peak resident set of this process.  O(1) (one small read)."""
    rss = peak = None
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    peak = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    if peak is None:
        peak = _maxrss_kib()
    r = MemoryReading(rss, peak)
    r._check()
    return r


def reset_peak() -> bool:
    """Reset this process's peak RSS to its current RSS; False when the OS
    does not allow it (not Linux, or ``clear_refs`` not writable)."""
    try:
        with open(f"/proc/{os.getpid()}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class PeakTracker:
    """Peaks per phase and for the whole run, relative to a baseline.

    Requires: created right after the imports the measured code needs and
    before it allocates (the baseline is the RSS at creation).
    """

    def __init__(self) -> None:
        self.resettable = reset_peak()
        start = read_memory()
        self.baseline_kib: Optional[int] = start.rss_kib if start.rss_kib is not None else start.peak_kib
        self.run_peak_kib: Optional[int] = start.peak_kib
        self._check()

    def _check(self) -> None:
        assert self.baseline_kib is None or self.baseline_kib >= 0
        assert self.run_peak_kib is None or self.baseline_kib is None or self.run_peak_kib >= 0

    def mark(self) -> MemoryReading:
        """The reading since the previous mark (its peak is that phase's peak
        when ``resettable``); folds it into the run peak, then resets.  O(1)."""
        r = read_memory()
        if r.peak_kib is not None:
            self.run_peak_kib = max(self.run_peak_kib or 0, r.peak_kib)
        if self.resettable:
            self.resettable = reset_peak()
        return r

    def over_baseline_mib(self, kib: Optional[int]) -> Optional[float]:
        """``kib`` minus the baseline, in MiB (None when either is unknown)."""
        if kib is None or self.baseline_kib is None:
            return None
        return (kib - self.baseline_kib) / KiB_PER_MiB

    def summary(self) -> dict:
        """The run's figures (MiB): baseline, peak, peak over baseline, now."""
        r = self.mark()
        mib = KiB_PER_MiB
        return {"baseline_rss_mib": None if self.baseline_kib is None else self.baseline_kib / mib,
                "peak_rss_total_mib": None if self.run_peak_kib is None else self.run_peak_kib / mib,
                "peak_rss_mib": self.over_baseline_mib(self.run_peak_kib),
                "final_rss_mib": self.over_baseline_mib(r.rss_kib),
                "peak_resettable": self.resettable}
