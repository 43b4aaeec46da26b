"""``DBStateMachine``: a hypothesis rule-based state machine that drives a
``lsm.DB`` and a dict model side by side and fails at the first difference.

Rules: put, delete, delete_range, write batches (with ``transaction=`` and an
exception raised inside; and bulk batches of puts and deletes large enough
for the memtable to keep them as one segment), get, every argument of ``iterator()`` (compared as
a list, and walked with next/prev/seek/seek_to_start/seek_to_stop), raw
iterator walks, snapshots (taken, read, released), ``flush``,
``compact_range``, reopen.  Options are small by default so flushes and
compactions happen every few writes.

Use it against your own options or target::

    from lsm.testing import DBStateMachine

    class MyMachine(DBStateMachine):
        options = dict(DBStateMachine.options, compaction_style="tiered")

        def make_target(self):          # default: a fresh temporary directory
            return blockdev.MemoryDevice(16 << 20)

    TestMyMachine = MyMachine.TestCase

``make_target`` is called once per example; the target is reopened (same
object) by the reopen rule.  Requires: hypothesis.
"""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import lsm
from lsm.db import SEGMENT_MIN_RECORDS
from lsm.testing.model import Model, ModelCursor, ModelRawCursor, model_iterate

__all__ = ["DBStateMachine", "KEYS", "keys", "values"]

#: A small key space so that writes collide, ranges matter and prefixes share.
KEYS = [b"", b"\x00", b"a", b"a\x00", b"aa", b"ab", b"abc", b"b", b"ba", b"bb", b"c",
        b"ca", b"d", b"e\xff", b"f", b"\xff", b"\xff\xff"]
keys = st.sampled_from(KEYS)
values = st.binary(min_size=0, max_size=200) | st.binary(min_size=300, max_size=700)
opt_keys = st.none() | keys
writes = st.one_of(
    st.tuples(st.just("put"), keys, values),
    st.tuples(st.just("delete"), keys),
    st.tuples(st.just("delete_range"), keys, keys).map(
        lambda t: (t[0], min(t[1], t[2]), max(t[1], t[2]))),
)
point_writes = st.one_of(
    st.tuples(st.just("put"), keys, st.binary(max_size=40)),
    st.tuples(st.just("delete"), keys),
)
iter_args = st.fixed_dictionaries({}, optional={
    "start": opt_keys, "stop": opt_keys, "include_start": st.booleans(),
    "include_stop": st.booleans(), "reverse": st.booleans(),
    "include_key": st.booleans(), "include_value": st.booleans(),
}) | st.fixed_dictionaries({"prefix": keys}, optional={
    "reverse": st.booleans(), "include_key": st.booleans(), "include_value": st.booleans()})
moves = st.lists(st.one_of(st.sampled_from(["next", "prev", "seek_to_start", "seek_to_stop"]),
                           st.tuples(st.just("seek"), keys)), max_size=12)
raw_moves = st.lists(st.one_of(
    st.sampled_from(["next", "prev", "seek_to_first", "seek_to_last"]),
    st.tuples(st.sampled_from(["seek", "seek_for_prev"]), keys)), max_size=12)


def _call(obj: Any, move: Any) -> Any:
    if isinstance(move, tuple):
        return getattr(obj, move[0])(move[1])
    if move == "next":
        return obj.next() if not hasattr(obj, "__next__") else next(obj)
    return getattr(obj, move)()


class DBStateMachine(RuleBasedStateMachine):
    """See the module docstring.  Override ``options`` and/or ``make_target``."""

    options: dict = dict(write_buffer_size=4096, target_file_size_base=2048,
                         max_bytes_for_level_base=8192, level0_file_num_compaction_trigger=2,
                         level0_slowdown_writes_trigger=8, level0_stop_writes_trigger=12,
                         block_size=256, block_cache_size=1 << 16, max_open_files=20)

    def __init__(self) -> None:
        super().__init__()
        self._tmpdir: str | None = None
        self.target = self.make_target()
        self.db = lsm.DB(self.target, create_if_missing=True, **self.options)
        self.model = Model()
        self.snapshots: list[tuple[Any, list[tuple[bytes, bytes]]]] = []

    def make_target(self) -> Any:
        """A fresh, empty target (default: a temporary directory)."""
        self._tmpdir = tempfile.mkdtemp(prefix="lsm-machine-")
        return self._tmpdir + "/db"

    def teardown(self) -> None:
        for snap, _ in self.snapshots:
            snap.close()
        self.db.close()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    # -- writes ------------------------------------------------------------------
    @rule(key=keys, value=values, sync=st.booleans())
    def put(self, key: bytes, value: bytes, sync: bool) -> None:
        self.db.put(key, value, sync=sync)
        self.model.put(key, value)

    @rule(key=keys)
    def delete(self, key: bytes) -> None:
        self.db.delete(key)
        self.model.delete(key)

    @rule(a=keys, b=keys)
    def delete_range(self, a: bytes, b: bytes) -> None:
        a, b = min(a, b), max(a, b)
        self.db.delete_range(a, b)
        self.model.delete_range(a, b)

    @rule(ops=st.lists(writes, max_size=8), transaction=st.booleans(), fail=st.booleans())
    def batch(self, ops: list, transaction: bool, fail: bool) -> None:
        class Boom(Exception):
            pass
        try:
            with self.db.write_batch(transaction=transaction) as wb:
                for op in ops:
                    getattr(wb, op[0])(*op[1:])
                if fail:
                    raise Boom()
        except Boom:
            pass
        if not (fail and transaction):
            self.model.apply(ops)

    @rule(ops=st.lists(point_writes, min_size=SEGMENT_MIN_RECORDS,
                       max_size=SEGMENT_MIN_RECORDS + 8))
    def bulk_batch(self, ops: list) -> None:
        with self.db.write_batch() as wb:
            for op in ops:
                getattr(wb, op[0])(*op[1:])
        self.model.apply(ops)

    # -- reads ---------------------------------------------------------------------
    @rule(key=keys)
    def get(self, key: bytes) -> None:
        assert self.db.get(key) == self.model.get(key), key
        assert (key in self.db) == (key in self.model)

    @rule(args=iter_args)
    def iterate(self, args: dict) -> None:
        expect = model_iterate(self.model.sorted_items(), **args)
        with self.db.iterator(**args) as it:
            got = list(it)
        assert got == expect, (args, got, expect)

    @rule(args=iter_args, walk=moves)
    def cursor(self, args: dict, walk: list) -> None:
        m = ModelCursor(self.model.sorted_items(), **args)
        with self.db.iterator(**args) as it:
            for move in walk:
                want: Any
                try:
                    want = ("ok", _call(m, move))
                except StopIteration:
                    want = ("stop",)
                try:
                    got = ("ok", _call(it, move))
                except StopIteration:
                    got = ("stop",)
                assert got == want, (args, walk, move, got, want)

    @rule(walk=raw_moves)
    def raw(self, walk: list) -> None:
        m = ModelRawCursor(self.model.sorted_items())
        with self.db.raw_iterator() as it:
            for move in walk:
                if move in ("next", "prev") and not m.valid():
                    try:
                        _call(it, move)
                    except lsm.IteratorInvalidError:
                        continue
                    raise AssertionError(f"{move} on an invalid raw iterator did not raise")
                _call(m, move)
                _call(it, move)
                assert it.valid() == m.valid(), (walk, move)
                if m.valid():
                    assert (it.key(), it.value()) == (m.key(), m.value()), (walk, move)

    # -- snapshots -------------------------------------------------------------------
    @precondition(lambda self: len(self.snapshots) < 4)
    @rule()
    def take_snapshot(self) -> None:
        self.snapshots.append((self.db.snapshot(), self.model.sorted_items()))

    @precondition(lambda self: self.snapshots)
    @rule(i=st.integers(0, 3), key=keys, args=iter_args)
    def read_snapshot(self, i: int, key: bytes, args: dict) -> None:
        snap, items = self.snapshots[i % len(self.snapshots)]
        assert snap.get(key) == dict(items).get(key)
        with snap.iterator(**args) as it:
            assert list(it) == model_iterate(items, **args)
        with self.db.iterator(snapshot=snap, **args) as it:
            assert list(it) == model_iterate(items, **args)

    @precondition(lambda self: self.snapshots)
    @rule(i=st.integers(0, 3))
    def release_snapshot(self, i: int) -> None:
        snap, _ = self.snapshots.pop(i % len(self.snapshots))
        snap.close()

    # -- maintenance -----------------------------------------------------------------
    @rule()
    def flush(self) -> None:
        self.db.flush()

    @rule(a=opt_keys, b=opt_keys)
    def compact_range(self, a: bytes | None, b: bytes | None) -> None:
        if a is not None and b is not None and a > b:
            a, b = b, a
        self.db.compact_range(a, b)

    @rule()
    def reopen(self) -> None:
        for snap, _ in self.snapshots:
            snap.close()
        self.snapshots = []
        self.db.close()
        self.db = lsm.DB(self.target, **self.options)

    @invariant()
    def healthy(self) -> None:
        assert self.db.stats()["background_error"] is None
        self.db._check()
