"""Deterministic benchmark data: keys, key orders and compressible values.

Design
------
Every engine in one lsm-bench run sees exactly the same bytes in the same
order, and two runs with the same ``--seed`` generate the same data.

* Key ``i`` (``0 <= i < num``) is the decimal of ``i`` zero-padded to
  ``key_size`` bytes (db_bench's layout), so sorted key order is index order.
  Keys for missing-key reads use the index range ``[num, 2*num)``, which no
  fill writes.
* Orders are permutations / samples of indices drawn from a
  ``random.Random`` seeded from ``(seed, purpose)``, so each workload has its
  own reproducible stream and adding a workload does not shift the others.
* Values are slices of a 1 MiB pool built like db_bench's
  ``RandomGenerator``: each ``value_size`` piece holds
  ``round(value_size * compressibility)`` random bytes repeated to fill it, so a
  compressor shrinks a value to about ``compressibility`` of its size
  (1.0 = incompressible random bytes).
* Keys and values are produced in chunks (``CHUNK`` operations) outside the
  timed loops, so generation costs no engine time and memory stays bounded
  at one chunk whatever ``--num`` is.
"""

from __future__ import annotations

import random
from array import array
from dataclasses import dataclass
from typing import Iterator

from blockdev.errors import ArgumentTypeError, InvalidArgumentError

__all__ = ["DataSpec", "Order", "ValueSource", "CHUNK", "key_of"]

CHUNK = 16384            # operations generated (then timed) per chunk
_POOL_SIZE = 1 << 20     # bytes of value pool


def key_of(index: int, key_size: int) -> bytes:
    """Key number ``index`` as ``key_size`` zero-padded decimal digits.  O(key_size)."""
    return b"%0*d" % (key_size, index)


@dataclass(frozen=True)
class DataSpec:
    """What to generate: ``num`` keys of ``key_size`` bytes, ``value_size``-byte
    values compressing to about ``compressibility`` of their size, from ``seed``."""

    num: int
    key_size: int = 16
    value_size: int = 100
    compressibility: float = 0.5
    seed: int = 301

    def __post_init__(self) -> None:
        for name in ("num", "key_size", "value_size", "seed"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise ArgumentTypeError(f"{name} must be an int, got {type(v).__name__}")
        if not isinstance(self.compressibility, (int, float)) or isinstance(self.compressibility, bool):
            raise ArgumentTypeError("compressibility must be a number")
        if self.num < 1:
            raise InvalidArgumentError(f"num must be >= 1, got {self.num}")
        if self.value_size < 0:
            raise InvalidArgumentError(f"value_size must be >= 0, got {self.value_size}")
        if not 0.0 < self.compressibility <= 1.0:
            raise InvalidArgumentError(
                f"compressibility must be in (0, 1], got {self.compressibility}")
        digits = len(str(2 * self.num - 1))
        if self.key_size < digits:
            raise InvalidArgumentError(
                f"key_size {self.key_size} is too small for {self.num} keys "
                f"(needs {digits} digits; keys up to 2*num for missing reads)")
        self._check()

    def _check(self) -> None:
        assert self.num >= 1 and self.key_size >= 1 and 0 < self.compressibility <= 1

    # -- keys -------------------------------------------------------------
    def key(self, index: int) -> bytes:
        return key_of(index, self.key_size)

    def missing_key(self, index: int) -> bytes:
        """A key no fill writes (index ``num + index % num``)."""
        return key_of(self.num + index % self.num, self.key_size)

    def rng(self, purpose: str) -> random.Random:
        """A generator seeded from (seed, purpose): independent reproducible streams."""
        return random.Random(f"{self.seed}:{purpose}")

    def order(self, kind: str, count: int | None = None, purpose: str = "") -> "Order":
        """Indices for a workload: ``seq`` (0..count-1), ``perm`` (a random
        permutation of 0..num-1, truncated to count) or ``uniform`` (count
        independent uniform draws from 0..num-1)."""
        n = self.num if count is None else count
        if kind not in ("seq", "perm", "uniform"):
            raise InvalidArgumentError(f"unknown order kind {kind!r}")
        return Order(self, kind, n, purpose or kind)

    # -- values -----------------------------------------------------------
    def value_pool(self) -> bytes:
        """The 1 MiB (or larger, for big values) pool values are cut from."""
        rnd = self.rng("values")
        size = max(_POOL_SIZE, 2 * self.value_size)
        piece = max(self.value_size, 100)
        raw_len = max(1, int(round(piece * self.compressibility)))
        out = bytearray()
        while len(out) < size:
            raw = rnd.randbytes(raw_len)
            reps = -(-piece // raw_len)
            out += (raw * reps)[:piece]
        return bytes(out[:size])


class Order:
    """A reproducible sequence of key indices, produced chunk by chunk."""

    def __init__(self, spec: DataSpec, kind: str, count: int, purpose: str) -> None:
        self.spec = spec
        self.kind = kind
        self.count = count
        self.purpose = purpose

    def chunks(self, size: int = CHUNK) -> Iterator[list[int]]:
        """Yield the indices in lists of at most ``size``.  Memory O(num) for
        ``perm`` (the permutation, an ``array`` of 4 bytes per key), O(size)
        otherwise."""
        n = self.count
        if self.kind == "seq":
            for start in range(0, n, size):
                yield list(range(start, min(n, start + size)))
        elif self.kind == "perm":
            # 4 bytes per key (8 beyond 2**32 keys) instead of a list's ~36:
            # a 10M-key fill must not measure the harness's permutation as
            # the engine's memory.  Same shuffle, so the same order as a list.
            num = self.spec.num
            perm = array("I" if num <= 0xFFFFFFFF else "q", range(num))
            self.spec.rng(self.purpose).shuffle(perm)
            if n > len(perm):  # more operations than keys: repeat the permutation
                reps = -(-n // len(perm))
                perm = perm * reps
            for start in range(0, n, size):
                yield perm[start:min(n, start + size)].tolist()
        else:
            rnd = self.spec.rng(self.purpose)
            num = self.spec.num
            for start in range(0, n, size):
                m = min(n, start + size) - start
                yield [int(rnd.random() * num) for _ in range(m)]


class ValueSource:
    """Cycles through the value pool: value ``j`` starts ``value_size`` bytes
    after value ``j-1`` (wrapping), like db_bench."""

    def __init__(self, spec: DataSpec) -> None:
        self._pool = spec.value_pool()
        self._size = spec.value_size
        self._pos = 0

    def take(self, count: int) -> list[bytes]:
        """The next ``count`` values.  O(count * value_size)."""
        pool, size = self._pool, self._size
        out = []
        pos = self._pos
        limit = len(pool) - size
        for _ in range(count):
            if pos > limit:
                pos = 0
            out.append(pool[pos:pos + size])
            pos += size
        self._pos = pos
        return out
