"""The record encoders and the point lookup of the native core:
``log_encode_record`` (byte-identical to lsm.wal.LogWriter),
``batch_encode_single`` / ``batch_encode`` (byte-identical to
lsm.batch.WriteBatch.encode), ``block_get`` (agrees with ``block_seek``);
each on both implementations, plus C-vs-twin equivalence on random and bad
input (skipped without the extension)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lsm.batch import WriteBatch
from lsm.dbformat import MAX_SEQUENCE, pack_internal_key
from lsm.wal import BLOCK_SIZE, LogReader, LogWriter
from native_support import IMPLS, T, assert_same, internal_entries, needs_c, to_run
from test_native_equivalence import mutated_block

PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class _CaptureFile:
    """A WritableFile that keeps what is appended (for LogWriter)."""

    def __init__(self, size: int = 0) -> None:
        self.data = bytearray(size)
        self.size = size

    def append(self, data: bytes) -> None:
        self.data += data
        self.size += len(data)

    def sync(self) -> None:
        pass

    def close(self) -> None:
        pass


class _ReadFile:
    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)
        self.size = len(data)

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset:offset + length]

    def close(self) -> None:
        pass


IMPL_OBJS = [p.values[0] for p in IMPLS]


# ---- log_encode_record ------------------------------------------------------

def _writer_bytes(start: int, payloads: list[bytes]) -> tuple[bytes, list[int]]:
    f = _CaptureFile(start)
    w = LogWriter(f, "x")
    for p in payloads:
        w.add_record(p)
    return bytes(f.data[start:]), [w.size]


@PROPS
@given(st.integers(0, 3 * BLOCK_SIZE),
       st.lists(st.one_of(st.binary(max_size=40),
                          st.integers(0, 2 * BLOCK_SIZE + 50).map(lambda n: b"\x5a" * n)),
                min_size=1, max_size=4))
def test_log_encode_matches_log_writer(start: int, payloads: list[bytes]) -> None:
    expected, _ = _writer_bytes(start, payloads)
    for impl in IMPL_OBJS:
        out = []
        pos = start
        for p in payloads:
            rec = impl.log_encode_record(p, pos % BLOCK_SIZE)
            out.append(rec)
            pos += len(rec)
        assert b"".join(out) == expected


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("offset", [0, 1, BLOCK_SIZE - 8, BLOCK_SIZE - 7, BLOCK_SIZE - 6,
                                    BLOCK_SIZE - 1])
@pytest.mark.parametrize("size", [0, 1, 6, 7, BLOCK_SIZE - 7, BLOCK_SIZE, 3 * BLOCK_SIZE + 5])
def test_log_encode_block_edges_and_readback(impl, offset: int, size: int) -> None:  # type: ignore[no-untyped-def]
    payload = bytes(i * 7 % 251 for i in range(size))
    rec = impl.log_encode_record(payload, offset)
    assert rec == _writer_bytes(offset, [payload])[0]
    if offset == 0:  # a log of this one record reads back
        assert list(LogReader(_ReadFile(rec), "x", paranoid=True)) == [payload]


def test_log_encode_readback_after_other_records() -> None:
    for impl in IMPL_OBJS:
        log = b""
        payloads = [b"a" * 10, b"b" * 40000, b"", b"c" * (BLOCK_SIZE - 20), b"d" * 3]
        for p in payloads:
            log += impl.log_encode_record(p, len(log) % BLOCK_SIZE)
        assert list(LogReader(_ReadFile(log), "x", paranoid=True)) == payloads


@needs_c
@PROPS
@given(st.binary(max_size=100), st.integers(0, BLOCK_SIZE - 1))
def test_log_encode_equivalence(payload: bytes, offset: int) -> None:
    assert_same("log_encode_record", payload, offset)
    assert_same("log_encode_record", bytearray(payload), offset)
    assert_same("log_encode_record", memoryview(payload), offset)


@needs_c
def test_log_encode_bad_arguments() -> None:
    for args in [("x", 0), (b"x", -1), (b"x", BLOCK_SIZE), (b"x", 1.0), (b"x", True),
                 (None, 0), (b"x", 2**70)]:
        assert assert_same("log_encode_record", *args)[0] == "err"


# ---- batch_encode_single / batch_encode --------------------------------------

_ITEM = st.one_of(
    st.tuples(st.just(1), st.binary(max_size=200), st.binary(max_size=200)),
    st.tuples(st.just(0), st.binary(max_size=200), st.just(b"")),
    st.tuples(st.binary(max_size=10), st.binary(max_size=10)).filter(lambda p: p[0] < p[1])
    .map(lambda p: (2, p[0], p[1])),
)


def _write_batch(items: list[tuple[int, bytes, bytes]]) -> WriteBatch:
    wb = WriteBatch()
    for kind, key, value in items:
        if kind == 1:
            wb.put(key, value)
        elif kind == 0:
            wb.delete(key)
        else:
            wb.delete_range(key, value)
    return wb


@PROPS
@given(st.integers(0, MAX_SEQUENCE - 100), st.lists(_ITEM, max_size=8))
def test_batch_encode_matches_write_batch(seq: int, items: list) -> None:
    expected = _write_batch(items).encode(seq)
    for impl in IMPL_OBJS:
        assert impl.batch_encode(seq, items) == expected
        assert impl.batch_encode(seq, tuple(items)) == expected
        if len(items) == 1:
            assert impl.batch_encode_single(seq, *items[0]) == expected
    assert WriteBatch.decode(expected)[1] == [tuple(i) for i in items]


def test_batch_single_large_lengths() -> None:
    for impl in IMPL_OBJS:
        for kl, vl in [(127, 128), (16384, 2**21 + 3)]:
            key, value = b"k" * kl, b"v" * vl
            assert impl.batch_encode_single(MAX_SEQUENCE, 1, key, value) == \
                _write_batch([(1, key, value)]).encode(MAX_SEQUENCE)


_BAD_SINGLE = [(-1, 1, b"a", b""), (MAX_SEQUENCE + 1, 1, b"a", b""), (1.0, 1, b"a", b""),
               (True, 1, b"a", b""), (1, 3, b"a", b""), (1, -1, b"a", b""), (1, 1, "a", b""),
               (1, 1, b"a", bytearray(b"v")), (1, 0, b"a", b"v"), (1, 2, b"b", b"a"),
               (1, 2, b"a", b"a"), (1, None, b"a", b"")]


@needs_c
def test_batch_encode_single_equivalence_and_errors() -> None:
    for args in _BAD_SINGLE:
        assert assert_same("batch_encode_single", *args)[0] == "err"
    for args in [(0, 0, b"", b""), (5, 2, b"", b"\x00"), (2**40, 1, b"x" * 300, b"y" * 70000)]:
        assert assert_same("batch_encode_single", *args)[0] == "ok"


@needs_c
@PROPS
@given(st.integers(0, MAX_SEQUENCE), st.lists(_ITEM, max_size=5))
def test_batch_encode_equivalence(seq: int, items: list) -> None:
    assert_same("batch_encode", seq, items)


@needs_c
def test_batch_encode_bad_arguments() -> None:
    good = (1, b"k", b"v")
    for args in [(1, None), (1, "ab"), (1, [good, [1, b"k", b"v"]]), (1, [good, (1, b"k")]),
                 (MAX_SEQUENCE, [good, good]), (-1, [good]), (1, [(0, b"k", b"v")]),
                 (1, [(2, b"b", b"a")]), (1, [(1, b"k", "v")]), (1.5, [])]:
        assert assert_same("batch_encode", *args)[0] == "err"
    assert assert_same("batch_encode", MAX_SEQUENCE, [good])[0] == "ok"
    assert assert_same("batch_encode", MAX_SEQUENCE + 0, [])[0] == "ok"


# ---- block_get ---------------------------------------------------------------

def _get_via_seek(impl, block: bytes, uk: bytes, seq: int):  # type: ignore[no-untyped-def]
    r = impl.block_seek(block, pack_internal_key(uk, seq, 0xFF), impl.CMP_INTERNAL)
    if r is None or r[1][:-8] != uk:
        return None
    t = int.from_bytes(r[1][-8:], "little")
    return t >> 8, t & 0xFF, r[2]


@PROPS
@given(internal_entries(max_size=40), st.integers(1, 6),
       st.sampled_from([b"", b"a", b"ab", b"b", b"c", b"e", b"zz", b"zzz"]), st.integers(0, 210))
def test_block_get_agrees_with_seek(entries: list, interval: int, uk: bytes, seq: int) -> None:
    keys, vals = to_run(entries)
    block = T.block_encode(keys, vals, interval)
    want = _get_via_seek(T, block, uk, seq)
    # the model: newest entry of uk with seq <= read seq
    visible = [(s, k, v) for (u, s, k, v) in entries if u == uk and s <= seq]
    if want is not None:
        assert visible and max(visible)[0] == want[0]
    else:
        assert not visible
    for impl in IMPL_OBJS:
        assert impl.block_get(block, uk, seq) == want


@needs_c
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_block_get_equivalence_malformed(data: st.DataObject) -> None:
    block = data.draw(mutated_block(internal=True))
    uk = data.draw(st.sampled_from([b"", b"a", b"b", b"c", b"e", b"zzz", b"a" * 300]))
    assert_same("block_get", block, uk, data.draw(st.integers(0, 210)))


@needs_c
def test_block_get_bad_arguments_and_big_blocks() -> None:
    block = T.block_encode([pack_internal_key(b"a", 1, 1)], [b"v"], 1)
    for args in [(block, "a", 1), ("x", b"a", 1), (block, b"a", -1), (block, b"a", 2**56),
                 (block, b"a", 1.0), (block, b"a", True), (block, bytearray(b"a"), 1)]:
        assert assert_same("block_get", *args)[0] == "err"
    assert assert_same("block_get", bytearray(block), b"a", 1) == ("ok", (1, 1, b"v"))
    assert assert_same("block_get", memoryview(block), b"a", 0) == ("ok", None)
    # a block larger than the C stack buffer, with a long user key
    keys = [pack_internal_key(b"k%05d" % i + b"x" * 500, 9, 1) for i in range(40)]
    big = T.block_encode(keys, [b"v" * 100] * 40, 4)
    assert len(big) > 8192
    for i in (0, 17, 39):
        uk = keys[i][:-8]
        assert assert_same("block_get", big, uk, 9) == ("ok", (9, 1, b"v" * 100))
        assert assert_same("block_seek", big, keys[i], 1)[1][0] == i


# ---- user_keys ---------------------------------------------------------------

@PROPS
@given(st.lists(st.binary(min_size=8, max_size=30), max_size=30))
def test_user_keys(keys: list) -> None:
    for impl in IMPL_OBJS:
        assert impl.user_keys(keys) == [k[:-8] for k in keys]
        assert impl.user_keys(tuple(keys)) == [k[:-8] for k in keys]


@needs_c
@PROPS
@given(st.lists(st.binary(max_size=12), max_size=12))
def test_user_keys_equivalence_short_keys(keys: list) -> None:
    assert_same("user_keys", keys)


@needs_c
def test_user_keys_bad_arguments() -> None:
    for args in [(None,), (b"12345678",), ([b"12345678", "x"],), ([bytearray(8)],)]:
        assert assert_same("user_keys", *args)[0] == "err"


# ---- threads -------------------------------------------------------------------

@needs_c
def test_merge_and_encode_while_another_thread_mutates_the_lists() -> None:
    """Every C call releases the GIL, on buffers built from one snapshot of
    the caller's lists: a thread that mutates the lists meanwhile cannot make
    the calls crash or return garbage (each result is a valid merge of some
    state of the lists)."""
    import threading

    from native_support import C
    keys = [pack_internal_key(b"k%06d" % i, 5, 1) for i in range(6000)]
    vals = [b"v%d" % i for i in range(6000)]
    run_keys, run_vals = list(keys), list(vals)
    stop = threading.Event()

    def mutate() -> None:
        while not stop.is_set():
            k, v = run_keys.pop(), run_vals.pop()
            run_keys.append(k)
            run_vals.append(v)

    t = threading.Thread(target=mutate)
    t.start()
    try:
        for _ in range(30):
            try:
                out_keys, out_vals = C.merge([(run_keys, run_vals)], 10)
            except Exception as exc:  # noqa: BLE001 - only these two are acceptable
                assert isinstance(exc, (RuntimeError, ValueError)) or "runs[0]" in str(exc)
                continue
            assert out_keys == sorted(out_keys) and len(out_keys) >= 5999
            block = C.block_encode(run_keys[:3000], run_vals[:3000], 16)
            assert C.block_decode(block)[0] == keys[:3000]
    finally:
        stop.set()
        t.join()
