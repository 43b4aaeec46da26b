"""Semantics of the native-core functions, checked on both implementations:
formats by example, block round trip, seek == bisect, bloom without false
negatives, the merge against a dict-based model (MERGE_READ) and against
snapshot visibility (MERGE_COMPACT)."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lsm
from lsm.dbformat import MAX_SEQUENCE, internal_sort_key, pack_internal_key, unpack_internal_key
from native_support import (
    IMPLS,
    internal_entries,
    merge_runs,
    snapshot_lists,
    sorted_unique_keys,
    to_run,
)

PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---- varints --------------------------------------------------------------

@pytest.mark.parametrize("impl", IMPLS)
def test_varint_examples(impl) -> None:  # type: ignore[no-untyped-def]
    assert impl.encode_varint(0) == b"\x00"
    assert impl.encode_varint(127) == b"\x7f"
    assert impl.encode_varint(300) == b"\xac\x02"
    assert impl.encode_varint(2**64 - 1) == b"\xff" * 9 + b"\x01"
    assert impl.decode_varint32(b"xx\xac\x02y", 2) == (300, 4)
    assert impl.decode_varint32(b"\xff\xff\xff\xff\x0f") == (2**32 - 1, 5)
    assert impl.decode_varint64(b"\xff" * 9 + b"\x01") == (2**64 - 1, 10)
    assert impl.decode_varint32(b"\x80\x00") == (0, 2)  # non-canonical decodes
    for buf, fn, msg in [(b"\xff\xff\xff\xff\x10", impl.decode_varint32, "exceeds 32"),
                         (b"\xff" * 5 + b"\x00", impl.decode_varint32, "longer than 5"),
                         (b"a\x80", impl.decode_varint32, "truncated"),
                         (b"\xff" * 9 + b"\x02", impl.decode_varint64, "exceeds 64"),
                         (b"\xff" * 10 + b"\x00", impl.decode_varint64, "longer than 10")]:
        start = 1 if buf.startswith(b"a") else 0
        with pytest.raises(lsm.CorruptionError, match=msg) as info:
            fn(buf, start)
        assert info.value.offset == start
    with pytest.raises(lsm.InvalidArgumentError, match="offset"):
        impl.decode_varint64(b"\x01", 2)
    with pytest.raises(lsm.InvalidArgumentError):
        impl.encode_varint(-1)


@PROPS
@given(st.integers(0, 2**64 - 1))
def test_varint_roundtrip(value: int) -> None:
    for impl in [p.values[0] for p in IMPLS]:
        enc = impl.encode_varint(value)
        assert impl.decode_varint64(enc) == (value, len(enc))
        assert len(enc) == max(1, (value.bit_length() + 6) // 7)
        if value < 2**32:
            assert impl.decode_varint32(enc) == (value, len(enc))


# ---- blocks ---------------------------------------------------------------

@pytest.mark.parametrize("impl", IMPLS)
def test_block_format_by_example(impl) -> None:  # type: ignore[no-untyped-def]
    empty = impl.block_encode([], [], 16)
    assert empty == bytes.fromhex("0000000001000000")
    assert impl.block_decode(empty) == ([], [])
    assert impl.block_seek(empty, b"a", 0) is None
    block = impl.block_encode([b"abc", b"abd", b"x"], [b"1", b"22", b""], 2)
    assert block == (b"\x00\x03\x01abc1" + b"\x02\x01\x02d22" + b"\x00\x01\x00x"
                     + bytes.fromhex("00000000") + bytes.fromhex("0d000000")
                     + bytes.fromhex("02000000"))
    assert impl.block_decode(memoryview(block)) == ([b"abc", b"abd", b"x"], [b"1", b"22", b""])


@PROPS
@given(st.lists(st.tuples(st.binary(max_size=10), st.binary(max_size=200)), max_size=50),
       st.integers(1, 20))
def test_block_roundtrip_any_order(pairs: list, interval: int) -> None:
    keys = [k for k, _ in pairs]
    vals = [v for _, v in pairs]
    for impl in [p.values[0] for p in IMPLS]:
        assert impl.block_decode(impl.block_encode(keys, vals, interval)) == (keys, vals)


@PROPS
@given(sorted_unique_keys(), st.integers(1, 17), st.lists(st.binary(max_size=10), max_size=8))
def test_seek_is_bisect(keys: list, interval: int, targets: list) -> None:
    vals = [b"v%d" % i for i in range(len(keys))]
    for impl in [p.values[0] for p in IMPLS]:
        block = impl.block_encode(keys, vals, interval)
        for t in targets + keys + [k + b"\x00" for k in keys[:5]]:
            i = bisect_left(keys, t)
            expect = None if i == len(keys) else (i, keys[i], vals[i])
            assert impl.block_seek(block, t, impl.CMP_BYTEWISE) == expect


@PROPS
@given(internal_entries(max_size=60), st.integers(1, 9),
       st.lists(st.tuples(st.sampled_from([b"", b"a", b"b", b"c", b"e", b"zz", b"zzz"]),
                          st.integers(0, 210)), max_size=8))
def test_seek_internal_is_bisect(entries: list, interval: int, targets: list) -> None:
    keys, vals = to_run(entries)
    sort_keys = [internal_sort_key(k) for k in keys]
    for impl in [p.values[0] for p in IMPLS]:
        block = impl.block_encode(keys, vals, interval)
        for uk, seq in targets:
            t = pack_internal_key(uk, seq, 0xFF)
            i = bisect_left(sort_keys, internal_sort_key(t))
            expect = None if i == len(keys) else (i, keys[i], vals[i])
            assert impl.block_seek(block, t, impl.CMP_INTERNAL) == expect


@pytest.mark.parametrize("impl", IMPLS)
def test_block_corruption_offsets(impl) -> None:  # type: ignore[no-untyped-def]
    block = bytearray(impl.block_encode([b"aa", b"ab", b"ac"], [b"1", b"2", b"3"], 2))
    # data: 3+2+1 bytes per entry: 0..6, 6..11, 11..17; restarts at 17 (0, 11)
    cases = [
        (b"", 0, "shorter"),
        (bytes(4), 0, "no restart"),
        (b"\x00\x00\x00\x00\x09\x00\x00\x00", 4, "larger than the block"),
    ]
    bad = bytearray(block)
    bad[21:25] = (5).to_bytes(4, "little")  # restart 1 -> 5, inside entry 0
    cases.append((bytes(bad), 21, "inside an entry"))
    bad = bytearray(block)
    bad[6] = 9  # entry 1 shares 9 > 2
    cases.append((bytes(bad), 6, "shares more"))
    bad = bytearray(block)
    bad[11] = 1  # restart entry 2 with shared = 1
    cases.append((bytes(bad), 11, "shared prefix"))
    bad = bytearray(block)
    bad[13] = 100  # entry 2 value length runs past the data
    cases.append((bytes(bad), 11, "runs past"))
    bad = bytearray(block)
    bad[17:21] = (3).to_bytes(4, "little")  # restart 0 must be 0
    cases.append((bytes(bad), 17, "out of order"))
    for data, offset, msg in cases:
        with pytest.raises(lsm.CorruptionError, match=msg) as info:
            impl.block_decode(data)
        assert info.value.offset == offset, msg
        assert info.value.file is None


# ---- bloom ----------------------------------------------------------------

@PROPS
@given(st.lists(st.binary(max_size=16), max_size=80), st.integers(1, 30))
def test_bloom_no_false_negatives(keys: list, bpk: int) -> None:
    for impl in [p.values[0] for p in IMPLS]:
        f = impl.bloom_build(keys, bpk)
        assert len(f) == max((len(keys) * bpk + 7) // 8, 8) + 1
        assert f[-1] == min(max(round(bpk * 0.6931471805599453), 1), 30)
        assert all(impl.bloom_may_contain(f, k) for k in keys)


@pytest.mark.parametrize("impl", IMPLS)
def test_bloom_false_positive_rate(impl) -> None:  # type: ignore[no-untyped-def]
    keys = [b"key-%d" % i for i in range(2000)]
    f = impl.bloom_build(keys, 10)
    fp = sum(impl.bloom_may_contain(f, b"other-%d" % i) for i in range(5000))
    assert fp < 5000 * 0.02  # ~0.8% expected for 10 bits per key
    empty = impl.bloom_build([], 10)
    assert empty == bytes(8) + bytes([7])
    assert not impl.bloom_may_contain(empty, b"x")
    assert impl.bloom_may_contain(bytes(8) + bytes([31]), b"x")  # reserved encoding
    with pytest.raises(lsm.CorruptionError) as info:
        impl.bloom_may_contain(b"\x05", b"x")
    assert info.value.offset == 0


# ---- merge ----------------------------------------------------------------

def read_model(runs: list, read_seq: int) -> tuple[list, list]:
    """MERGE_READ by brute force (requires unique sequence numbers)."""
    newest: dict[bytes, tuple] = {}
    tombs = []
    for keys, vals in runs:
        for k, v in zip(keys, vals):
            u, seq, kind = unpack_internal_key(k)
            if seq > read_seq:
                continue
            if kind == 2:
                tombs.append((u, v, seq))
            elif u not in newest or seq > newest[u][0]:
                newest[u] = (seq, kind, k, v)
    out_k, out_v = [], []
    for u in sorted(newest):
        seq, kind, k, v = newest[u]
        if kind == 1 and not any(s <= u < e and seq < t for s, e, t in tombs):
            out_k.append(k)
            out_v.append(v)
    return out_k, out_v


@PROPS
@given(merge_runs(), st.integers(0, 210))
def test_merge_read_matches_model(runs: list, read_seq: int) -> None:
    expect = read_model(runs, read_seq)
    for impl in [p.values[0] for p in IMPLS]:
        assert impl.merge(runs, read_seq) == expect
        assert impl.merge(runs, read_seq, (), impl.MERGE_READ, False) == expect


def _stripe(snaps: list, seq: int) -> int:
    return bisect_left(snaps, seq)


@PROPS
@given(merge_runs(), snapshot_lists(), st.booleans())
def test_merge_compact_preserves_every_snapshot(runs: list, snaps: list, bottom: bool) -> None:
    for impl in [p.values[0] for p in IMPLS]:
        keys, vals = impl.merge(runs, 0, snaps, impl.MERGE_COMPACT, bottom)
        # sorted, and a sub-multiset of the input
        sk = [internal_sort_key(k) for k in keys]
        assert sk == sorted(sk)
        have = Counter(zip(keys, vals))
        assert not have - Counter((k, v) for ks, vs in runs for k, v in zip(ks, vs))
        # every snapshot (and the newest state) reads the same before and after
        for s in list(snaps) + [MAX_SEQUENCE]:
            assert impl.merge([(keys, vals)], s) == impl.merge(runs, s), s
        # per user key and stripe at most one point entry; none shadowed by a
        # range tombstone of its own stripe
        seen = Counter()
        tombs = []
        for k, v in zip(keys, vals):
            u, seq, kind = unpack_internal_key(k)
            if kind == 2:
                tombs.append((u, v, seq, _stripe(snaps, seq)))
                if bottom:
                    assert _stripe(snaps, seq) > 0
            else:
                seen[(u, _stripe(snaps, seq))] += 1
        assert all(c == 1 for c in seen.values())
        for k in keys:
            u, seq, kind = unpack_internal_key(k)
            if kind != 2:
                st_ = _stripe(snaps, seq)
                assert not any(s <= u < e and seq < t and ts == st_ for s, e, t, ts in tombs)
        if bottom:
            # a point tombstone survives only above an older kept entry of its key
            for i, k in enumerate(keys):
                u, seq, kind = unpack_internal_key(k)
                if kind == 0:
                    assert any(unpack_internal_key(k2)[0] == u and unpack_internal_key(k2)[2] != 2
                               for k2 in keys[i + 1:])
        else:
            n_tombs = sum(1 for ks, _ in runs for k in ks if k[-8] == 2)
            assert len(tombs) == n_tombs
        # compaction is idempotent
        assert impl.merge([(keys, vals)], 0, snaps, impl.MERGE_COMPACT, bottom) == (keys, vals)


@pytest.mark.parametrize("impl", IMPLS)
def test_merge_by_example(impl) -> None:  # type: ignore[no-untyped-def]
    P = pack_internal_key
    run1 = ([P(b"a", 5, 1), P(b"a", 3, 1), P(b"b", 4, 2), P(b"c", 2, 1), P(b"d", 9, 0),
             P(b"d", 1, 1)], [b"a5", b"a3", b"d", b"c2", b"", b"d1"])
    run2 = ([P(b"a", 4, 0), P(b"c", 6, 1)], [b"", b"c6"])
    assert impl.merge([run1, run2], 10) == ([P(b"a", 5, 1), P(b"c", 6, 1)], [b"a5", b"c6"])
    assert impl.merge([run1, run2], 4) == ([P(b"d", 1, 1)], [b"d1"])
    keys, _ = impl.merge([run1, run2], 10, [], impl.MERGE_COMPACT, False)
    assert keys == [P(b"a", 5, 1), P(b"b", 4, 2), P(b"c", 6, 1), P(b"d", 9, 0)]
    keys, _ = impl.merge([run1, run2], 10, [], impl.MERGE_COMPACT, True)
    assert keys == [P(b"a", 5, 1), P(b"c", 6, 1)]  # one stripe: the range tombstone goes too
    keys, _ = impl.merge([run1, run2], 10, [3], impl.MERGE_COMPACT, True)
    assert keys == [P(b"a", 5, 1), P(b"a", 3, 1), P(b"b", 4, 2), P(b"c", 6, 1), P(b"c", 2, 1),
                    P(b"d", 9, 0), P(b"d", 1, 1)]
    # ties between identical internal keys: the lower run index comes first
    dup = ([P(b"k", 7, 1)], [b"first"])
    assert impl.merge([dup, ([P(b"k", 7, 1)], [b"second"])], 9) == ([P(b"k", 7, 1)], [b"first"])
    # errors carry the run in the message and the entry index as offset
    with pytest.raises(lsm.CorruptionError, match="merge run 1: keys out of internal order") as info:
        impl.merge([dup, ([P(b"b", 1, 1), P(b"a", 1, 1)], [b"", b""])], 9)
    assert info.value.offset == 1
    with pytest.raises(lsm.CorruptionError, match="shorter than 8") as info:
        impl.merge([([b"short"], [b""])], 9)
    assert info.value.offset == 0
    with pytest.raises(lsm.CorruptionError, match="unknown kind"):
        impl.merge([([P(b"a", 1, 3)], [b""])], 9)
