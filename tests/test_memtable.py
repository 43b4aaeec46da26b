"""MemTable against a model; concurrent reader during writes; argument checks."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blockdev.errors import ArgumentTypeError, InvalidArgumentError
from lsm import _native
from lsm.batch import WriteBatch
from lsm.dbformat import (KIND_RANGE_TOMBSTONE, KIND_TOMBSTONE, KIND_VALUE,
                          internal_sort_key, pack_internal_key)
from lsm.memtable import ENTRY_OVERHEAD, MemTable

small_keys = st.binary(min_size=0, max_size=3)
entry = st.one_of(
    st.tuples(st.just(KIND_VALUE), small_keys, st.binary(max_size=5)),
    st.tuples(st.just(KIND_TOMBSTONE), small_keys, st.just(b"")),
    st.tuples(st.just(KIND_RANGE_TOMBSTONE), small_keys, small_keys),
)


def model_run(entries: list[tuple[int, int, bytes, bytes]], start: bytes | None,
              stop: bytes | None) -> list[tuple[bytes, bytes]]:
    out = []
    for seq, kind, key, value in entries:
        if kind == KIND_RANGE_TOMBSTONE:
            if (stop is None or key < stop) and (start is None or value > start):
                out.append((pack_internal_key(key, seq, kind), value))
        elif (start is None or key >= start) and (stop is None or key < stop):
            out.append((pack_internal_key(key, seq, kind), value))
    out.sort(key=lambda kv: internal_sort_key(kv[0]))
    return out


@settings(max_examples=120, deadline=None)
@given(st.lists(entry, max_size=60), st.lists(st.tuples(small_keys, small_keys), max_size=4),
       st.booleans(), st.data())
def test_matches_model(ops: list, ranges: list, shuffle: bool, data: st.DataObject) -> None:
    mt = MemTable()
    entries = []
    seqs = list(range(1, len(ops) + 1))
    if shuffle:   # out-of-order sequences (e.g. replay of concurrently committed groups)
        seqs = data.draw(st.permutations(seqs))
    for seq, (kind, key, value) in zip(seqs, ops):
        if kind == KIND_RANGE_TOMBSTONE and not key < value:
            continue
        mt.add(seq, kind, key, value)
        entries.append((seq, kind, key, value))
        if data.draw(st.booleans()):
            mt._check()
    mt._check()
    assert mt.num_entries == len(entries)
    assert mt.approximate_size == sum(len(k) + len(v) + ENTRY_OVERHEAD for _, _, k, v in entries)
    if entries:
        assert mt.first_seq == min(e[0] for e in entries)
        assert mt.last_seq == max(e[0] for e in entries)
    # get at every read_seq
    keys = {e[2] for e in entries} | {b"zz"}
    for read_seq in range(0, len(ops) + 2):
        for key in keys:
            versions = [(s, k, v) for s, k, kk, v in entries
                        if kk == key and k != KIND_RANGE_TOMBSTONE and s <= read_seq]
            expect = max(versions) if versions else None
            assert mt.get(key, read_seq) == expect
            cover = [s for s, k, a, b in entries
                     if k == KIND_RANGE_TOMBSTONE and a <= key < b and s <= read_seq]
            assert mt.covering_tombstone_seq(key, read_seq) == max(cover, default=0)
    assert sorted(mt.range_tombstones()) == sorted(
        (k, v, s) for s, kind, k, v in entries if kind == KIND_RANGE_TOMBSTONE)
    for start, stop in [(None, None)] + ranges + [(None, b"\x01"), (b"\x01", None)]:
        ikeys, values = mt.run(start, stop)
        assert list(zip(ikeys, values)) == model_run(entries, start, stop)
    mt.freeze()
    for start, stop in [(None, None)] + ranges:
        ikeys, values = mt.run(start, stop)
        assert list(zip(ikeys, values)) == model_run(entries, start, stop)
    with pytest.raises(InvalidArgumentError):
        mt.add(10_000, KIND_VALUE, b"k", b"v")


def test_run_feeds_merge_read() -> None:
    mt = MemTable()
    mt.add(1, KIND_VALUE, b"a", b"1")
    mt.add(2, KIND_VALUE, b"b", b"2")
    mt.add(3, KIND_RANGE_TOMBSTONE, b"a", b"b")
    mt.add(4, KIND_VALUE, b"a", b"3")
    mt.add(5, KIND_TOMBSTONE, b"b", b"")
    for read_seq, expect in [(1, [b"a"]), (2, [b"a", b"b"]), (3, [b"b"]), (4, [b"a", b"b"]),
                             (5, [b"a"])]:
        keys, _ = _native.merge([mt.run()], read_seq)
        assert [k[:-8] for k in keys] == expect


def test_add_batch_equals_add() -> None:
    wb = WriteBatch()
    wb.put(b"x", b"1")
    wb.delete(b"y")
    wb.delete_range(b"a", b"c")
    wb.put(b"x", b"2")
    a, b = MemTable(), MemTable()
    assert a.add_batch(10, wb.items()) == 14
    for i, (kind, key, value) in enumerate(wb.items()):
        b.add(10 + i, kind, key, value)
    a._check()
    assert a.run() == b.run()
    assert a.get(b"x", 12) == (10, KIND_VALUE, b"1")
    assert a.get(b"x", 13) == (13, KIND_VALUE, b"2")
    assert a.add_batch(20, []) == 20


def test_argument_checks() -> None:
    mt = MemTable()
    with pytest.raises(ArgumentTypeError, match="key"):
        mt.add(1, KIND_VALUE, "k", b"v")  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError, match="value"):
        mt.add(1, KIND_VALUE, b"k", None)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        mt.add(1, 7, b"k", b"v")
    with pytest.raises(InvalidArgumentError):
        mt.add(-1, KIND_VALUE, b"k", b"v")
    with pytest.raises(InvalidArgumentError):
        mt.add(1, KIND_RANGE_TOMBSTONE, b"b", b"a")
    with pytest.raises(ArgumentTypeError):
        mt.get("k", 5)  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError):
        mt.run(start="a")  # type: ignore[arg-type]
    mt.add(3, KIND_VALUE, b"k", b"v")
    mt.add(5, KIND_VALUE, b"k", b"w")
    with pytest.raises(InvalidArgumentError):
        mt.add(3, KIND_VALUE, b"k", b"again")   # sequence reuse for the same key
    mt._check()


def test_concurrent_reader_sees_consistent_runs() -> None:
    mt = MemTable()
    published = [0]
    stop = threading.Event()
    errors: list[str] = []
    n = 4000

    def writer() -> None:
        for seq in range(1, n + 1):
            key = b"%05d" % ((seq * 7919) % 1500)
            mt.add(seq, KIND_VALUE if seq % 5 else KIND_TOMBSTONE, key,
                   b"v%d" % seq if seq % 5 else b"")
            published[0] = seq
        stop.set()

    def reader() -> None:
        while not stop.is_set() or published[0] < n:
            seen = published[0]
            keys, values = mt.run()
            sk = [internal_sort_key(k) for k in keys]
            if sk != sorted(sk) or len(set(keys)) != len(keys):
                errors.append("unsorted run")
                return
            have = {k for k in keys}
            for seq in range(max(1, seen - 50), seen + 1):   # every published entry present
                key = b"%05d" % ((seq * 7919) % 1500)
                kind = KIND_VALUE if seq % 5 else KIND_TOMBSTONE
                if pack_internal_key(key, seq, kind) not in have:
                    errors.append(f"missing published seq {seq}")
                    return
                got = mt.get(key, seen)
                if got is None or got[0] < seq:
                    errors.append(f"get missed seq {seq}")
                    return
            if stop.is_set():
                break

    threads = [threading.Thread(target=writer), threading.Thread(target=reader),
               threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    mt._check()
    assert mt.num_entries == n


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.tuples(st.booleans(), st.sampled_from([b"a", b"b", b"c", b"d", b"e"]),
                                   st.binary(max_size=4)), max_size=6), max_size=6))
def test_add_batch_bulk_path_equals_add(batches: list) -> None:
    """Batches of puts and deletes (the bulk dict-update path when every key
    is new and distinct, the per-item loop otherwise -- keys repeated inside
    a batch or already present) give the same memtable as per-item adds."""
    a, b = MemTable(), MemTable()
    seq = 1
    for ops in batches:
        wb = WriteBatch()
        for is_put, key, value in ops:
            if is_put:
                wb.put(key, value)
            else:
                wb.delete(key)
        nxt = a.add_batch(seq, wb.items())
        for i, (kind, key, value) in enumerate(wb.items()):
            b.add(seq + i, kind, key, value)
        assert nxt == seq + len(wb.items())
        seq = nxt
        a._check()
    assert a.run() == b.run()
    assert a.approximate_size == b.approximate_size
    assert a.num_entries == b.num_entries
    for key in (b"a", b"b", b"c", b"d", b"e", b"z"):
        for s in range(seq + 1):
            assert a.get(key, s) == b.get(key, s)
