"""Reference models for testing code that uses ``lsm``: a dict model of the
DB, of its iterators and raw iterators, and the crash-consistency check.

``Model`` is a plain dict with the DB's write operations (put, delete,
delete_range, batches).  ``model_iterate`` and ``ModelCursor`` /
``ModelRawCursor`` give, for a sorted list of items, exactly what
``DB.iterator`` / ``DB.raw_iterator`` must return (the semantics are spelled
out in lsm/iterators.py).  ``verify_prefix_of_history`` checks the crash
guarantee: a recovered DB holds the result of a prefix of the write history
(no holes, no half batch) that includes every acknowledged ``sync`` write.

Complexity: model writes O(1) (``delete_range`` O(n)); ``model_iterate``
O(n); ``verify_prefix_of_history`` O(total operations + keys touched).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Any, Iterable, Mapping, Sequence

from lsm.iterators import IteratorInvalidError, bytes_increment

__all__ = ["Model", "Op", "model_iterate", "ModelCursor", "ModelRawCursor",
           "verify_prefix_of_history", "apply_op"]

#: A write: ("put", key, value) | ("delete", key) | ("delete_range", start, stop)
Op = tuple


def apply_op(d: dict, op: Op) -> list[bytes]:
    """Apply one write to dict ``d``; return the keys it changed."""
    kind = op[0]
    if kind == "put":
        d[op[1]] = op[2]
        return [op[1]]
    if kind == "delete":
        d.pop(op[1], None)
        return [op[1]]
    if kind == "delete_range":
        gone = [k for k in d if op[1] <= k < op[2]]
        for k in gone:
            del d[k]
        return gone
    raise ValueError(f"unknown op {kind!r}")


class Model(dict):
    """A dict that understands the DB's writes."""

    def put(self, key: bytes, value: bytes) -> None:
        self[key] = value

    def delete(self, key: bytes) -> None:
        self.pop(key, None)

    def delete_range(self, start: bytes, stop: bytes) -> None:
        apply_op(self, ("delete_range", start, stop))

    def apply(self, ops: Iterable[Op]) -> None:
        for op in ops:
            apply_op(self, op)

    def sorted_items(self) -> list[tuple[bytes, bytes]]:
        return sorted(self.items())


def _bounds(start: bytes | None, stop: bytes | None, include_start: bool, include_stop: bool,
            prefix: bytes | None) -> tuple[bytes | None, bool, bytes | None, bool]:
    if prefix is not None:
        return prefix, True, bytes_increment(prefix), False
    return start, include_start, stop, include_stop


def _select(items: Sequence[tuple[bytes, bytes]], lo: bytes | None, lo_incl: bool,
            hi: bytes | None, hi_incl: bool) -> list[tuple[bytes, bytes]]:
    out = []
    for k, v in items:
        if lo is not None and (k < lo or (k == lo and not lo_incl)):
            continue
        if hi is not None and (k > hi or (k == hi and not hi_incl)):
            continue
        out.append((k, v))
    return out


def _shape(k: bytes, v: bytes, include_key: bool, include_value: bool) -> Any:
    if include_key and include_value:
        return (k, v)
    if include_key:
        return k
    if include_value:
        return v
    return None


def model_iterate(items: Sequence[tuple[bytes, bytes]], start: bytes | None = None,
                  stop: bytes | None = None, include_start: bool = True,
                  include_stop: bool = False, prefix: bytes | None = None,
                  reverse: bool = False, include_key: bool = True,
                  include_value: bool = True) -> list[Any]:
    """What ``list(db.iterator(...))`` must return for sorted ``items``."""
    sel = _select(items, *_bounds(start, stop, include_start, include_stop, prefix))
    if reverse:
        sel.reverse()
    return [_shape(k, v, include_key, include_value) for k, v in sel]


class ModelCursor:
    """The model of a plyvel-style ``Iterator``: a gap position in the range."""

    def __init__(self, items: Sequence[tuple[bytes, bytes]], start: bytes | None = None,
                 stop: bytes | None = None, include_start: bool = True,
                 include_stop: bool = False, prefix: bytes | None = None,
                 reverse: bool = False, include_key: bool = True,
                 include_value: bool = True) -> None:
        self.sel = _select(items, *_bounds(start, stop, include_start, include_stop, prefix))
        self.keys = [k for k, _ in self.sel]
        self.reverse = reverse
        self.ik, self.iv = include_key, include_value
        self.pos = len(self.sel) if reverse else 0

    def _fwd(self) -> Any:
        if self.pos >= len(self.sel):
            raise StopIteration
        k, v = self.sel[self.pos]
        self.pos += 1
        return _shape(k, v, self.ik, self.iv)

    def _back(self) -> Any:
        if self.pos <= 0:
            raise StopIteration
        self.pos -= 1
        k, v = self.sel[self.pos]
        return _shape(k, v, self.ik, self.iv)

    def next(self) -> Any:
        return self._back() if self.reverse else self._fwd()

    def prev(self) -> Any:
        return self._fwd() if self.reverse else self._back()

    def seek_to_start(self) -> None:
        self.pos = 0

    def seek_to_stop(self) -> None:
        self.pos = len(self.sel)

    def seek(self, target: bytes) -> None:
        self.pos = bisect_left(self.keys, target)


class ModelRawCursor:
    """The model of a ``RawIterator`` over sorted ``items``."""

    def __init__(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        self.items = list(items)
        self.keys = [k for k, _ in self.items]
        self.pos = -1

    def valid(self) -> bool:
        return 0 <= self.pos < len(self.items)

    def _need(self) -> None:
        if not self.valid():
            raise IteratorInvalidError("invalid")

    def seek_to_first(self) -> None:
        self.pos = 0 if self.items else -1

    def seek_to_last(self) -> None:
        self.pos = len(self.items) - 1

    def seek(self, target: bytes) -> None:
        i = bisect_left(self.keys, target)
        self.pos = i if i < len(self.items) else -1

    def seek_for_prev(self, target: bytes) -> None:
        self.pos = bisect_right(self.keys, target) - 1

    def next(self) -> None:
        self._need()
        self.pos += 1
        if self.pos >= len(self.items):
            self.pos = -1

    def prev(self) -> None:
        self._need()
        self.pos -= 1

    def key(self) -> bytes:
        self._need()
        return self.items[self.pos][0]

    def value(self) -> bytes:
        self._need()
        return self.items[self.pos][1]


def verify_prefix_of_history(recovered: Mapping[bytes, bytes],
                             history: Sequence[Sequence[Op]],
                             must_include: int = 0,
                             initial: Mapping[bytes, bytes] | None = None) -> int:
    """Check that ``recovered`` equals ``initial`` + the first k batches of
    ``history`` for some k >= ``must_include`` (batches are atomic: no half
    batch, no hole).  Returns the largest such k; raises AssertionError
    naming the first difference otherwise.

    ``must_include``: number of leading batches that were acknowledged
    durable (e.g. index of the last ``sync=True`` write + 1).
    """
    model: dict[bytes, bytes] = dict(initial or {})
    rec = dict(recovered)
    bad = {k for k in set(model) | set(rec) if model.get(k) != rec.get(k)}
    best = 0 if not bad else -1
    for i, batch in enumerate(history):
        for op in batch:
            touched = apply_op(model, op)
            if op[0] == "delete_range":
                touched = touched + [k for k in rec if op[1] <= k < op[2]]
            for k in touched:
                if model.get(k) != rec.get(k):
                    bad.add(k)
                else:
                    bad.discard(k)
        if not bad:
            best = i + 1
    if best < 0 or best < must_include:
        # describe the first difference from the state at must_include
        model = dict(initial or {})
        for batch in history[:must_include]:
            for op in batch:
                apply_op(model, op)
        diff = sorted(k for k in set(model) | set(rec) if model.get(k) != rec.get(k))
        k = diff[0] if diff else None
        raise AssertionError(
            f"recovered state is not a prefix of the history that includes the first "
            f"{must_include} acknowledged batches (best prefix: {best}); first difference "
            f"at key {k!r}: expected {model.get(k) if k is not None else None!r}, "
            f"got {rec.get(k) if k is not None else None!r}")
    return best
