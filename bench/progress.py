"""A one-line progress bar on stderr for long benchmark phases.

Design: ``Progress(total, label, enabled)``; ``update(n)`` adds ``n`` done
operations and redraws at most every 0.2 s (a ``\\r``-rewritten line with a
bar, percent, ops done and an ETA); ``close()`` erases the line.  Enabled only
when asked (``--progress``) or when stderr is a TTY, so pipes and CI logs stay
clean.  Redraw cost is one ``time.monotonic()`` call per ``update``; callers
update once per chunk, not per operation.
"""

from __future__ import annotations

import sys
import time
from typing import Optional, TextIO

__all__ = ["Progress", "progress_wanted"]


def progress_wanted(flag: Optional[bool], stream: TextIO = sys.stderr) -> bool:
    """``flag`` if given, else whether ``stream`` is a terminal."""
    if flag is not None:
        return bool(flag)
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """Progress of ``total`` operations of phase ``label``."""

    WIDTH = 30
    INTERVAL = 0.2

    def __init__(self, total: int, label: str, enabled: bool, stream: TextIO = sys.stderr) -> None:
        self.total = max(0, int(total))
        self.label = label
        self.enabled = enabled
        self.stream = stream
        self.done = 0
        self._start = time.monotonic()
        self._last = 0.0
        self._drawn = False

    def update(self, n: int) -> None:
        """Record ``n`` more operations done.  O(1)."""
        self.done += n
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last >= self.INTERVAL or self.done >= self.total:
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        frac = min(1.0, self.done / self.total) if self.total else 1.0
        filled = int(frac * self.WIDTH)
        elapsed = now - self._start
        eta = (elapsed / frac - elapsed) if frac > 0 else 0.0
        line = (f"\r{self.label:<28.28} [{'#' * filled}{'.' * (self.WIDTH - filled)}] "
                f"{frac * 100:5.1f}% {self.done}/{self.total} eta {eta:5.1f}s")
        self.stream.write(line)
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        """Erase the bar (idempotent)."""
        if self._drawn:
            self.stream.write("\r" + " " * 100 + "\r")
            self.stream.flush()
            self._drawn = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
