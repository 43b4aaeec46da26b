"""C core vs pure-Python twins: same bytes out or the same error (type,
message, offset), for every function, on random and on malformed input.

Skipped (with a reason) when the extension lsm._lsm_c is not built; run
regardless of LSM_PURE (both implementations are imported explicitly).
"""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lsm.dbformat import pack_internal_key
from native_support import (
    C,
    T,
    assert_same,
    internal_entries,
    merge_runs,
    needs_c,
    snapshot_lists,
    sorted_unique_keys,
    to_run,
)

pytestmark = needs_c
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MEDIUM = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---- checksum and varints -------------------------------------------------

@FAST
@given(st.binary(max_size=300), st.integers(0, 2**64 - 1))
def test_checksum(data: bytes, seed: int) -> None:
    assert_same("checksum", data, seed)
    assert_same("checksum", bytearray(data), seed)
    assert_same("checksum", memoryview(data)[::2] if data else data, seed)


def test_checksum_bad_arguments() -> None:
    for args in [("x", 0), (b"x", -1), (b"x", 2**64), (b"x", 1.5), (None,), (b"x", True)]:
        out = assert_same("checksum", *args)
        assert out[0] == "err"


@FAST
@given(st.one_of(st.integers(0, 2**64 - 1), st.integers(-5, 2**70), st.just(True)))
def test_encode_varint(value: int) -> None:
    assert_same("encode_varint", value)


@FAST
@given(st.binary(max_size=14), st.integers(-1, 15))
def test_decode_varints_random(buf: bytes, offset: int) -> None:
    assert_same("decode_varint32", buf, offset)
    assert_same("decode_varint64", buf, offset)


@FAST
@given(st.integers(0, 2**64 - 1), st.binary(max_size=3), st.integers(0, 3))
def test_decode_varints_valid_and_truncated(value: int, prefix: bytes, cut: int) -> None:
    enc = T.encode_varint(value)
    buf = prefix + enc
    assert_same("decode_varint32", buf, len(prefix))
    out = assert_same("decode_varint64", buf, len(prefix))
    assert out == ("ok", (value, len(buf)))
    short = buf[:max(len(prefix), len(buf) - 1 - cut)]
    assert_same("decode_varint32", short, len(prefix))
    assert_same("decode_varint64", short, len(prefix))


def test_decode_varints_overlong() -> None:
    for buf in [b"\xff" * 5 + b"\x00", b"\xff" * 4 + b"\x10", b"\xff" * 4 + b"\x0f",
                b"\xff" * 10 + b"\x00", b"\xff" * 9 + b"\x02", b"\xff" * 9 + b"\x01",
                b"\x80\x00", b"\x80" * 20]:
        assert_same("decode_varint32", buf, 0)
        assert_same("decode_varint64", buf, 0)


# ---- blocks ---------------------------------------------------------------

@FAST
@given(st.lists(st.tuples(st.binary(max_size=12), st.binary(max_size=140)), max_size=40),
       st.integers(1, 20))
def test_block_encode_decode(pairs: list, interval: int) -> None:
    keys = [k for k, _ in pairs]
    vals = [v for _, v in pairs]
    out = assert_same("block_encode", keys, vals, interval)
    assert out[0] == "ok"
    assert_same("block_decode", out[1])


def test_block_encode_bad_arguments() -> None:
    for args in [([b"a"], [], 1), ([b"a"], [b"b"], 0), ([b"a"], [b"b"], True),
                 (["a"], [b"b"], 1), ([b"a"], [None], 1), (b"a", [b"b"], 1),
                 ([b"a"], [b"b"], 2**31)]:
        assert_same("block_encode", *args)


@st.composite
def mutated_block(draw, internal: bool = False) -> bytes:  # type: ignore[no-untyped-def]
    """A valid block, then one of several corruptions (or none)."""
    if internal:
        keys, vals = to_run(draw(internal_entries(max_size=30)))
    else:
        keys = draw(sorted_unique_keys(max_size=40))
        vals = [draw(st.binary(max_size=8)) for _ in keys]
    block = bytearray(T.block_encode(keys, vals, draw(st.integers(1, 6))))
    how = draw(st.sampled_from(["none", "truncate", "flip", "count", "restart",
                                "overlong", "random", "shared", "lengths"]))
    n = len(block)
    nr = struct.unpack_from("<I", block, n - 4)[0]
    if how == "truncate":
        del block[draw(st.integers(0, n - 1)):]
    elif how == "flip":
        for _ in range(draw(st.integers(1, 3))):
            block[draw(st.integers(0, n - 1))] = draw(st.integers(0, 255))
    elif how == "count":
        struct.pack_into("<I", block, n - 4, draw(st.sampled_from([0, 2, nr + 1, nr - 1, 2**32 - 1])))
    elif how == "restart":
        j = draw(st.integers(0, nr - 1))
        struct.pack_into("<I", block, n - 4 - 4 * nr + 4 * j, draw(st.integers(0, n + 3)))
    elif how == "overlong":
        pos = draw(st.integers(0, max(0, n - 4 - 4 * nr)))
        block[pos:pos] = b"\xff" * draw(st.integers(1, 11))
    elif how == "random":
        block = bytearray(draw(st.binary(max_size=80)))
    elif how in ("shared", "lengths") and n - 4 - 4 * nr > 0:
        # rewrite the first varint byte of some entry byte-position
        pos = draw(st.integers(0, n - 5 - 4 * nr))
        block[pos] = draw(st.integers(0, 127)) if how == "shared" else 0x7F
    return bytes(block)


@FAST
@given(mutated_block())
def test_block_decode_malformed(block: bytes) -> None:
    assert_same("block_decode", block)


@MEDIUM
@given(mutated_block(internal=True))
def test_block_decode_malformed_internal(block: bytes) -> None:
    assert_same("block_decode", block)


@FAST
@given(mutated_block(), st.binary(max_size=12))
def test_block_seek_bytewise(block: bytes, target: bytes) -> None:
    assert_same("block_seek", block, target, T.CMP_BYTEWISE)


@FAST
@given(mutated_block(internal=True), st.sampled_from([b"", b"a", b"b", b"c", b"e", b"zzz"]),
       st.integers(0, 210), st.sampled_from([0, 1, 2, 255]))
def test_block_seek_internal(block: bytes, uk: bytes, seq: int, kind: int) -> None:
    assert_same("block_seek", block, pack_internal_key(uk, seq, kind), T.CMP_INTERNAL)


def test_block_seek_bad_arguments_and_short_keys() -> None:
    block = T.block_encode([b"a", b"b"], [b"1", b"2"], 1)
    for args in [(block, b"short", 1), (block, "a", 0), (block, b"a", 2), ("x", b"a", 0)]:
        assert_same("block_seek", *args)
    # a block of keys shorter than 8 bytes searched with the internal order
    assert assert_same("block_seek", block, b"12345678", 1)[0] == "err"


# ---- bloom ----------------------------------------------------------------

@FAST
@given(st.lists(st.binary(max_size=20), max_size=60), st.integers(1, 40),
       st.lists(st.binary(max_size=20), max_size=10))
def test_bloom(keys: list, bpk: int, probes: list) -> None:
    out = assert_same("bloom_build", keys, bpk)
    assert out[0] == "ok"
    for k in keys + probes:
        assert_same("bloom_may_contain", out[1], k)


@FAST
@given(st.binary(max_size=40), st.binary(max_size=10))
def test_bloom_random_filters(filt: bytes, key: bytes) -> None:
    assert_same("bloom_may_contain", filt, key)


def test_bloom_bad_arguments() -> None:
    for args in [([b"a"], 0), ([b"a"], 1001), (["a"], 10), ([b"a"], 1.0)]:
        assert_same("bloom_build", *args)
    for args in [(b"\x00" * 9, "a"), ("x", b"a"), (b"", b"a"), (b"\x01", b"a")]:
        assert_same("bloom_may_contain", *args)


# ---- merge ----------------------------------------------------------------

@MEDIUM
@given(merge_runs(unique_seq=False), st.integers(0, 40), snapshot_lists(),
       st.sampled_from([0, 1]), st.booleans())
def test_merge(runs: list, read_seq: int, snaps: list, mode: int, bottom: bool) -> None:
    assert_same("merge", runs, read_seq, [s // 5 for s in snaps], mode, bottom)


@MEDIUM
@given(merge_runs(), st.integers(0, 210), snapshot_lists(), st.sampled_from([0, 1]),
       st.booleans())
def test_merge_unique_seqs(runs: list, read_seq: int, snaps: list, mode: int, bottom: bool) -> None:
    assert_same("merge", runs, read_seq, snaps, mode, bottom)


@MEDIUM
@given(merge_runs(), st.data())
def test_merge_malformed(runs: list, data: st.DataObject) -> None:
    runs = [(list(k), list(v)) for k, v in runs]
    nonempty = [r for r in runs if r[0]]
    assume(nonempty)
    keys, vals = nonempty[data.draw(st.integers(0, len(nonempty) - 1))]
    i = data.draw(st.integers(0, len(keys) - 1))
    how = data.draw(st.sampled_from(["short", "kind", "shuffle", "reverse"]))
    if how == "short":
        keys[i] = keys[i][:data.draw(st.integers(0, 7))]
    elif how == "kind":
        keys[i] = keys[i][:-1] + bytes([data.draw(st.integers(3, 255))])
    elif how == "shuffle":
        perm = data.draw(st.permutations(list(range(len(keys)))))
        keys[:] = [keys[p] for p in perm]
        vals[:] = [vals[p] for p in perm]
    else:
        keys.reverse()
    assert_same("merge", runs, 100, [], data.draw(st.sampled_from([0, 1])), False)


def test_merge_bad_arguments() -> None:
    good = ([pack_internal_key(b"a", 1, 1)], [b"v"])
    for args in [([good], -1), ([good], 2**56), ([good], 5, [3, 1]), ([good], 5, [], 2),
                 ([good], 5, [], 0, 1), ([(good[0],)], 5), ([(good[0], [])], 5),
                 ([([b"x" * 8], ["v"])], 5), ("runs", 5), ([good], 5, (1.0,))]:
        assert_same("merge", *args)


def test_merge_big_runs() -> None:
    """Many entries across many runs (exercises the heap and growth paths)."""
    runs = []
    for r in range(9):
        entries = [(b"k%04d" % (i * 7 % 500), 1000 * r + i, 1 if i % 5 else 0, b"v%d" % i)
                   for i in range(300)]
        entries.append((b"k0100", 1000 * r + 999, 2, b"k0150"))
        runs.append(to_run(entries))
    for mode, snaps, bottom in [(0, [], False), (1, [], True), (1, [2500, 4100, 7000], True),
                                (1, [50, 3000], False)]:
        out = assert_same("merge", runs, 5000, snaps, mode, bottom)
        assert out[0] == "ok" and out[1][0]
    assert C is not None
