"""Paths of the cffi binding (lsm/_native.py) that the random equivalence
tests rarely reach: output buffers that must grow, scratch buffers larger
than the pool keeps, argument subclasses that take the validators' slow
path, and pooled buffers shared by threads.  Every check compares with the
twin (same result or the same error)."""

from __future__ import annotations

import enum
import threading
from collections import namedtuple

from lsm import _native
from lsm.dbformat import pack_internal_key
from native_support import C, T, assert_same, needs_c

pytestmark = needs_c


class Bytes(bytes):
    pass


class Cmp(enum.IntEnum):
    BYTEWISE = 0
    INTERNAL = 1


def test_block_decode_keys_larger_than_the_first_guess() -> None:
    """Long shared prefixes: the full keys are many times the block size,
    so the first decode runs out of room and the binding measures first."""
    prefix = b"p" * 3000
    keys = [prefix + b"%05d" % i for i in range(200)]
    vals = [b""] * 200
    block = T.block_encode(keys, vals, 1000)
    assert sum(map(len, keys)) > 10 * len(block)
    out = assert_same("block_decode", block)
    assert out == ("ok", (keys, vals))
    # many tiny entries: the struct format is longer than the first guess
    keys = [b"%d" % (10**9 + i) for i in range(3000)]
    block = T.block_encode(keys, [b"v" * 11] * 3000, 16)
    assert assert_same("block_decode", block)[1][0] == keys
    # and a corrupt tail behind the expansion is still found at its offset
    bad = bytearray(T.block_encode([prefix + b"a", prefix + b"b"], [b"", b""], 1000))
    bad[len(prefix) + 4 + 1] = 0x7F
    assert assert_same("block_decode", bytes(bad))[0] == "err"


def test_blocks_larger_than_the_pooled_scratch() -> None:
    keys = [pack_internal_key(b"k%03d" % i, 7, 1) for i in range(40)]
    vals = [bytes([i]) * 40000 for i in range(40)]   # ~1.6 MiB block
    block = T.block_encode(keys, vals, 4)
    assert len(block) > (1 << 20)
    for _ in range(2):   # the big buffer is not kept; the second call allocates again
        assert assert_same("block_seek", block, keys[33], 1)[1][0] == 33
        assert assert_same("block_get", block, b"k033", 10)[1] == (7, 1, vals[33])
        assert assert_same("block_decode", block)[1][0] == keys
    assert_same("log_encode_record", b"x" * (3 << 20), 32760)


def test_subclassed_arguments_take_the_validator_path() -> None:
    keys = [pack_internal_key(b"k%d" % i, 3, 1) for i in range(10)]
    block = T.block_encode(keys, [b"v"] * 10, 3)
    assert assert_same("block_seek", block, Bytes(keys[4]), Cmp.INTERNAL)[1][0] == 4
    assert assert_same("block_seek", bytearray(block), keys[4], 1)[1][0] == 4
    assert assert_same("block_get", memoryview(block), Bytes(b"k4"), 5)[0] == "ok"
    assert assert_same("block_encode", [Bytes(k) for k in keys], [b"v"] * 10, 3)[0] == "ok"
    assert assert_same("bloom_build", [Bytes(b"a"), b"b"], 10)[0] == "ok"
    assert assert_same("bloom_may_contain", T.bloom_build([b"a"], 10), Bytes(b"a"))[0] == "ok"
    assert assert_same("user_keys", (Bytes(keys[0]), keys[1]))[0] == "ok"
    assert assert_same("checksum", Bytes(b"abc"), Cmp.INTERNAL)[0] == "ok"
    assert assert_same("decode_varint64", Bytes(b"\x81\x01"), Cmp.BYTEWISE)[1] == (129, 2)
    Item = namedtuple("Item", "kind key value")
    items = [Item(1, b"a", b"1"), Item(Cmp.BYTEWISE, Bytes(b"b"), b""), (2, b"c", b"d")]
    assert assert_same("batch_encode", 9, items)[0] == "ok"
    assert assert_same("batch_encode_single", Cmp.INTERNAL, 1, Bytes(b"k"), b"v")[0] == "ok"
    assert assert_same("log_encode_record", Bytes(b"pay"), Cmp.INTERNAL)[0] == "ok"
    run = ([Bytes(k) for k in keys], [Bytes(b"v")] * 10)
    assert assert_same("merge", (run,), 5, (Cmp.INTERNAL,), Cmp.INTERNAL, False)[0] == "ok"


def test_batch_encode_rules_checked_in_c_give_the_twins_errors() -> None:
    for items in ([(1, b"a", b"1"), (0, b"b", b"x")], [(2, b"b", b"b")],
                  [(2, b"b", b"a"), (7, b"a", b"")], [(1, b"a", b"")] * 3 + [(0, b"", b"\x00")]):
        out = assert_same("batch_encode", 1, items)
        assert out[0] == "err" and "items[" in out[2]


def test_merge_fetches_values_only_for_range_tombstones() -> None:
    """Without a range tombstone the C merge runs without the values; a
    tombstone in any run (even the last entry) makes it use them."""
    run1 = ([pack_internal_key(b"a", 5, 1), pack_internal_key(b"c", 5, 1)], [b"1", b"2"])
    run2 = ([pack_internal_key(b"b", 9, 1)], [b"3"])
    assert assert_same("merge", [run1, run2], 10)[1] == ([run1[0][0], run2[0][0], run1[0][1]],
                                                         [b"1", b"3", b"2"])
    tomb = ([pack_internal_key(b"a", 7, 2)], [b"bb"])
    out = assert_same("merge", [run1, run2, tomb], 10)
    assert out[1] == ([run2[0][0], run1[0][1]], [b"3", b"2"])   # a@5 is deleted by [a, bb)@7
    out = assert_same("merge", [run1, tomb], 10, [], _native.MERGE_COMPACT, False)
    assert out[1] == ([tomb[0][0], run1[0][1]], [b"bb", b"2"])   # a@5 shadowed by the tombstone


def test_pooled_buffers_are_never_shared_between_threads() -> None:
    """Threads hammer the pooled wrappers with different blocks at once; each
    gets its own answers."""
    blocks = []
    for t in range(4):
        keys = [pack_internal_key(b"t%d-%04d" % (t, i), 10 + i, 1) for i in range(300)]
        vals = [b"%d:%d" % (t, i) * (1 + t) for i in range(300)]
        blocks.append((keys, vals, C.block_encode(keys, vals, 8)))
    errors: list = []

    def work(t: int) -> None:
        keys, vals, block = blocks[t]
        try:
            for i in range(0, 300, 3):
                r = C.block_seek(block, keys[i], 1)
                assert r == (i, keys[i], vals[i])
                assert C.block_get(block, b"t%d-%04d" % (t, i), 10**6) == (10 + i, 1, vals[i])
                if i % 30 == 0:
                    assert C.block_decode(block) == (keys, vals)
                    assert C.decode_varint64(C.encode_varint(i * 1000 + t)) == (
                        i * 1000 + t, len(C.encode_varint(i * 1000 + t)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors[0]
