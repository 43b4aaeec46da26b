"""Shared helpers of the native-core tests: the two implementations, an
outcome recorder for equivalence checks, and hypothesis strategies for
internal-key runs and blocks."""

from __future__ import annotations

import struct
from typing import Any, Callable

import pytest
from hypothesis import strategies as st

from lsm import _native, _twins
from lsm.dbformat import internal_sort_key, pack_internal_key

C = _native.c_api()
T = _twins

needs_c = pytest.mark.skipif(C is None, reason="the C extension lsm._lsm_c is not built")

IMPLS = [pytest.param(T, id="python")] + [
    pytest.param(C if C is not None else T, id="native", marks=needs_c)]


def outcome(fn: Callable[..., Any], *args: Any) -> tuple:
    """What ``fn(*args)`` did: ("ok", result) or ("err", type, message, offset)."""
    try:
        return ("ok", fn(*args))
    except Exception as exc:  # noqa: BLE001 - the type is part of the outcome
        return ("err", type(exc), str(exc), getattr(exc, "offset", None))


def assert_same(name: str, *args: Any) -> tuple:
    """Call ``name`` on both implementations and require identical outcomes."""
    a = outcome(getattr(T, name), *args)
    b = outcome(getattr(C, name), *args)
    assert a == b, f"{name}: python {a!r} != native {b!r}"
    return a


# ---- strategies -----------------------------------------------------------

small_keys = st.binary(min_size=0, max_size=12)
values = st.binary(min_size=0, max_size=20)
USER_KEYS = [b"", b"a", b"ab", b"b", b"ba", b"c", b"d", b"e\x00", b"e", b"zz"]


@st.composite
def sorted_unique_keys(draw: Any, max_size: int = 60) -> list[bytes]:
    keys = draw(st.lists(st.binary(max_size=10), max_size=max_size, unique=True))
    return sorted(keys)


@st.composite
def internal_entries(draw: Any, max_size: int = 40, unique_seq: bool = True) -> list[tuple[bytes, int, int, bytes]]:
    """A list of (user_key, seq, kind, value); kind 2 values are end keys."""
    n = draw(st.integers(0, max_size))
    if unique_seq:
        seqs = draw(st.lists(st.integers(0, 200), min_size=n, max_size=n, unique=True))
    else:
        seqs = draw(st.lists(st.integers(0, 30), min_size=n, max_size=n))
    out = []
    for s in seqs:
        uk = draw(st.sampled_from(USER_KEYS))
        kind = draw(st.sampled_from([0, 1, 1, 1, 2]))
        v = draw(st.sampled_from(USER_KEYS)) if kind == 2 else draw(st.binary(max_size=6))
        out.append((uk, s, kind, v))
    return out


def to_run(entries: list[tuple[bytes, int, int, bytes]]) -> tuple[list[bytes], list[bytes]]:
    """Sort entries in internal order into a run (keys, values)."""
    items = sorted(((pack_internal_key(u, s, k), v) for u, s, k, v in entries),
                   key=lambda kv: internal_sort_key(kv[0]))
    return [k for k, _ in items], [v for _, v in items]


@st.composite
def merge_runs(draw: Any, unique_seq: bool = True) -> list[tuple[list[bytes], list[bytes]]]:
    """1..4 sorted runs; with unique_seq no two entries share a sequence."""
    entries = draw(internal_entries(max_size=50, unique_seq=unique_seq))
    nruns = draw(st.integers(1, 4))
    parts: list[list] = [[] for _ in range(nruns)]
    for e in entries:
        parts[draw(st.integers(0, nruns - 1))].append(e)
    return [to_run(p) for p in parts]


@st.composite
def snapshot_lists(draw: Any) -> list[int]:
    return sorted(draw(st.lists(st.integers(0, 210), max_size=4)))


def trailer(key: bytes) -> tuple[int, int]:
    """(seq, kind) of an internal key."""
    (t,) = struct.unpack_from("<Q", key, len(key) - 8)
    return t >> 8, t & 0xFF
