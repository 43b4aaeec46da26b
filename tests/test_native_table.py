"""C == twin for the native write path (native/table.c vs the twins at the end
of lsm/_twins.py): ``table_blocks``, ``blocks_unpack``, ``sort_entries``,
``bloom_build_hashes`` and ``merge_indices``.

Every comparison calls both implementations on the same input and demands
the same result byte for byte, or the same error: exception type, message,
``offset`` and (``blocks_unpack``) ``block_index``.  The C side comes from
``lsm._native.c_api()`` whatever ``LSM_PURE`` says, so the file exercises
both implementations in both CI modes; without the extension the
comparisons skip and the reference checks run on the twin alone.

Besides the pairwise comparisons the outputs are checked against
independent references: ``block_decode`` of the produced blocks, the blocks
``TableBuilder`` writes, ``sorted``, ``bloom_build`` and ``merge``.
"""

from __future__ import annotations

import itertools
import os
import random
import struct
from array import array
from typing import Any, Optional

import pytest
import xxhash
from hypothesis import HealthCheck, event, given, settings, strategies as st

from blockdev.errors import CorruptionError
from blockdev.fs import PosixFS
from lsm import _native
from lsm import _twins as T
from lsm.sstable import TableBuilder, TableReader

C = _native.c_api()
MAX_SEQ = T.MAX_SEQUENCE
HUGE = 1 << 62
# the implementations a reference test runs on (the twin alone when unbuilt)
WHICH = st.sampled_from(["twin", "c"] if C is not None else ["twin"])
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))

def impl(name: str) -> Any:
    """The implementation ``name`` ("twin" or "c"); skips "c" when unbuilt."""
    if name == "twin":
        return T
    if C is None:
        pytest.skip("lsm._lsm_c is not built")
    return C


def need_c() -> Any:
    if C is None:
        pytest.skip("lsm._lsm_c is not built: nothing to compare the twins with")
    return C


def ik(uk: bytes, seq: int, kind: int) -> bytes:
    return uk + struct.pack("<Q", seq << 8 | kind)


def trailer(key: bytes) -> int:
    return struct.unpack_from("<Q", key, len(key) - 8)[0]


def norm(obj: Any) -> Any:
    """A comparable form of a result (arrays -> lists, chunks -> tuples)."""
    if isinstance(obj, T.TableChunk):
        return ("chunk", tuple((name, norm(getattr(obj, name)))
                               for name in type(obj).__slots__))
    if isinstance(obj, array):
        return ("array", obj.typecode, obj.tolist())
    if isinstance(obj, (tuple, list)):
        return type(obj).__name__, [norm(x) for x in obj]
    return obj


def outcome(fn: Any, *args: Any) -> tuple:
    """``("ok", result)`` or ``("err", type, message, offset, block_index)``."""
    return outcome_raw(fn, *args)[0]


def outcome_raw(fn: Any, *args: Any) -> tuple[tuple, Any]:
    """``outcome`` and the raw result (None after an error)."""
    try:
        raw = fn(*args)
    except Exception as exc:  # noqa: BLE001 - the exception is the result compared
        return ("err", type(exc), str(exc), getattr(exc, "offset", None),
                getattr(exc, "block_index", None)), None
    return ("ok", norm(raw)), raw


def same(name: str, *args: Any) -> tuple:
    """Call ``name`` in both implementations; assert identical outcomes."""
    c = need_c()
    a = outcome(getattr(c, name), *args)
    b = outcome(getattr(T, name), *args)
    assert a == b, f"{name}: C {a!r:.600} != twin {b!r:.600}"
    return b


def value_bytes(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


# ------------------------------------------------------------ strategies

UKEYS = [b"", b"a", b"ab", b"abc", b"abd", b"b", b"ba", b"bb\x00", b"c" * 20, b"d" * 140]
SEQS = st.one_of(st.integers(0, 30), st.integers(0, MAX_SEQ))
VLENS = st.one_of(st.integers(0, 12), st.integers(100, 300))


@st.composite
def sorted_entries(draw: Any, max_size: int = 60, kinds: tuple = (0, 1)) -> list:
    """Internal entries (key, value) strictly increasing in internal order,
    several versions per user key, values up to 300 bytes."""
    raw = draw(st.lists(st.tuples(st.sampled_from(UKEYS), SEQS, st.sampled_from(kinds), VLENS),
                        max_size=max_size))
    seen = {}
    for uk, seq, kind, vl in raw:
        seen.setdefault((uk, seq << 8 | kind), vl)
    items = sorted(seen.items(), key=lambda kv: (kv[0][0], -kv[0][1]))
    return [(uk + struct.pack("<Q", t), value_bytes(t ^ len(uk), vl)) for (uk, t), vl in items]


def split_ikey(k: bytes) -> tuple[bytes, int]:
    return k[:-8], trailer(k)


def as_layout(entries: list, layout: int, shuffle_seed: Optional[int]) -> tuple:
    """(packed, order) holding ``entries`` in layout 0 or 1; with a shuffle
    seed the entries are stored shuffled and ``order`` restores them (for
    layout 1 via ``sort_entries``, cross-checked here)."""
    idx = list(range(len(entries)))
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(idx)
    stored = [entries[i] for i in idx]
    if layout == 0:
        packed = T.pack([k for k, _ in stored], [v for _, v in stored])
    else:
        packed = T.pack([k[:-8] for k, _ in stored], [k[-8:] + v for k, v in stored])
    if shuffle_seed is None:
        return packed, None
    inv = [0] * len(idx)
    for pos, i in enumerate(idx):
        inv[i] = pos
    order = array("Q", inv)
    if layout == 1:
        assert T.sort_entries(packed) == order
        if C is not None:
            assert C.sort_entries(packed) == order
    return packed, order


# ------------------------------------------------------------ table_blocks


def check_chunk(ch: T.TableChunk, entries: list, pos: int, n_order: int, block_size: int,
                restart: int, limit: int, prev_key: Optional[bytes]) -> None:
    """The chunk against the entries it took (``entries`` in order position)."""
    taken = entries[pos:ch.next_pos]
    assert pos <= ch.next_pos <= n_order
    # blocks decode back to exactly the entries taken; last keys and positions
    got_k: list[bytes] = []
    got_v: list[bytes] = []
    per_entry = 3 + 4 // restart
    start = 0
    for b, end in enumerate(ch.block_ends):
        keys, vals = T.block_decode(ch.data[start:end])
        assert keys, "empty block"
        assert ch.last_keys[b] == keys[-1]
        assert ch.last_positions[b] == pos + len(got_k) + len(keys) - 1
        est = 8
        for j, (k, v) in enumerate(zip(keys, vals)):
            est += len(k) + len(v) + per_entry
            if j < len(keys) - 1:
                assert est < block_size, "block not closed when the estimate reached block_size"
        if b < len(ch.block_ends) - 1:
            assert est >= block_size, "block closed early"
        # the encoding is block_encode's
        assert ch.data[start:end] == T.block_encode(keys, vals, restart)
        got_k += keys
        got_v += vals
        start = end
    assert start == len(ch.data)
    assert list(zip(got_k, got_v)) == taken
    if hasattr(ch, "entries"):
        assert ch.entries == len(taken)
    if hasattr(ch, "first_key"):
        assert ch.first_key == (taken[0][0] if taken else b"")
    # hashes: XXH64 of every user key that differs from the one before it
    prev_uk = prev_key[:-8] if prev_key is not None else None
    want_h = []
    boundaries = []         # bytes taken before each new user key (after the first entry)
    acc = 0
    for k, v in taken:
        if k[:-8] != prev_uk:
            want_h.append(xxhash.xxh64_intdigest(k[:-8]))
            boundaries.append(acc)
        prev_uk = k[:-8]
        acc += len(k) + len(v)
    assert list(ch.hashes) == want_h
    # statistics
    assert ch.key_bytes == sum(len(k) for k, _ in taken)
    assert ch.value_bytes == sum(len(v) for _, v in taken)
    assert ch.tombstones == sum(1 for k, _ in taken if not trailer(k) & 1)
    seqs = [trailer(k) >> 8 for k, _ in taken]
    assert ch.min_seq == (min(seqs) if seqs else (1 << 64) - 1)
    assert ch.max_seq == (max(seqs) if seqs else 0)
    # stop reasons
    if ch.stop == 0:
        assert ch.next_pos == n_order
    else:
        assert ch.next_pos < n_order
        nxt = entries[ch.next_pos][0][:-8]
        last_uk = taken[-1][0][:-8] if taken else (prev_key[:-8] if prev_key else None)
        assert nxt != last_uk, "stopped inside a user key"
        if ch.stop == 1:
            assert taken and acc >= limit
            # the first user-key boundary at or past the limit
            assert all(b < limit for b in boundaries if b > 0)
        else:
            assert ch.stop == 2
            assert taken or prev_key is not None, "grandparent cut of an empty table"


@st.composite
def grandparents_spec(draw: Any) -> Optional[tuple]:
    if draw(st.booleans()):
        return None
    gk = sorted(set(draw(st.lists(st.sampled_from(UKEYS + [b"aa", b"b\xff", b"zz"]),
                                  max_size=8))))
    sizes = draw(st.lists(st.integers(0, 3000), min_size=len(gk), max_size=len(gk)))
    return gk, sizes, draw(st.integers(0, 4000))


@SETTINGS
@given(entries=sorted_entries(), layout=st.sampled_from([0, 1]),
       shuffle=st.one_of(st.none(), st.integers(0, 2**32)),
       block_size=st.one_of(st.integers(64, 600), st.sampled_from([1, 4096])),
       restart=st.integers(1, 16),
       limit=st.one_of(st.integers(0, 1500), st.just(HUGE)),
       gps=grandparents_spec(), data=st.data())
def test_table_blocks_chained(entries, layout, shuffle, block_size, restart, limit, gps, data):
    """Chained calls as a compaction makes them: C == twin at every call
    (chunk and grandparent state), and every chunk decodes back to the
    entries it took."""
    c = need_c()
    packed, order = as_layout(entries, layout, shuffle)
    n = len(entries)
    g_c = T.Grandparents(*gps) if gps else None
    g_t = T.Grandparents(*gps) if gps else None
    pos = data.draw(st.integers(0, min(n, 3)), "start")
    prev_key = None
    if pos > 0 and data.draw(st.booleans(), "prev_at_start"):
        prev_key = entries[pos - 1][0]
    elif pos == 0 and n and data.draw(st.booleans(), "prev_before_first"):
        # a key before the first entry: same user key with a larger trailer
        # (no new hash for it), or a smaller user key
        uk, t = split_ikey(entries[0][0])
        if uk and data.draw(st.booleans(), "smaller_user_key"):
            prev_key = uk[:-1] + struct.pack("<Q", data.draw(st.integers(0, 2**64 - 1)))
        else:
            prev_key = uk + struct.pack("<Q", t + 1)
    for _ in range(4 * n + 10):
        if pos >= n:
            break
        # feed the stream in batches (n_order < n) or whole
        n_order = data.draw(st.integers(pos + 1, n), "n_order") if data.draw(
            st.booleans(), "batch") else n
        args = (packed, layout, order, pos, n_order, block_size, restart, limit, prev_key)
        a = outcome(c.table_blocks, *args, g_c)
        b, ch = outcome_raw(T.table_blocks, *args, g_t)
        assert a == b, f"C {a!r:.800} != twin {b!r:.800}"
        if gps:
            assert g_c.state == g_t.state
        assert b[0] == "ok", b
        event(f"stop {ch.stop}")
        check_chunk(ch, entries, pos, n_order, block_size, restart, limit, prev_key)
        if ch.next_pos > pos:
            prev_key = entries[ch.next_pos - 1][0]
        if ch.stop and data.draw(st.booleans(), "new_table"):
            prev_key = None       # the next output table starts empty
        pos = ch.next_pos
    assert pos == n


@SETTINGS
@given(entries=sorted_entries(max_size=40), layout=st.sampled_from([0, 1]),
       shuffle=st.one_of(st.none(), st.integers(0, 2**32)), data=st.data())
def test_table_blocks_errors(entries, layout, shuffle, data):
    """Broken input: unsorted, duplicate, kind 2/3, short keys, index out of
    range, prev_key after the first entry -> the same error from both."""
    need_c()
    entries = list(entries)
    n = len(entries)
    what = data.draw(st.sampled_from(["swap", "dup", "kind", "short", "prev", "index"]))
    if n == 0 and what != "index":
        what = "prev"
        entries = [(ik(b"k", 5, 1), b"v")]
        n = 1
    prev_key = None
    if what == "swap" and n >= 2:
        i = data.draw(st.integers(0, n - 2))
        entries[i], entries[i + 1] = entries[i + 1], entries[i]
    elif what == "dup":
        i = data.draw(st.integers(0, n - 1))
        entries.insert(i, entries[i])
    elif what == "kind":
        i = data.draw(st.integers(0, n - 1))
        uk, t = split_ikey(entries[i][0])
        entries[i] = (ik(uk, t >> 8, data.draw(st.sampled_from([2, 3, 0x80, 0xFF]))),
                      entries[i][1])
    elif what == "short":
        i = data.draw(st.integers(0, n - 1))
        cut = data.draw(st.integers(0, 7))
        if layout == 0:     # a key shorter than 8 bytes (layout 1: below)
            entries[i] = (entries[i][0][:cut], entries[i][1])
    elif what == "prev":
        uk, t = split_ikey(entries[0][0])
        prev_key = data.draw(st.sampled_from([
            entries[0][0],                                   # equal to the first entry
            ik(uk, max((t >> 8) - 1, 0), t & 0xFF),          # same user key, older
            uk + b"\xff" + struct.pack("<Q", 1 << 8 | 1),     # a later user key
            ik(b"\xff" * 3, 0, 1)]))
    if layout == 0:
        packed = T.pack([k for k, _ in entries], [v for _, v in entries])
    else:
        if what == "short":
            # entry i (u64le(trailer) || value) cut to fewer than 8 bytes
            vs = [k[-8:] + v for k, v in entries]
            vs[i] = vs[i][:cut]
            packed = T.pack([k[:-8] for k, _ in entries], vs)
        else:
            packed = T.pack([k[:-8] for k, _ in entries], [k[-8:] + v for k, v in entries])
    n = len(entries)
    order = None
    if shuffle is not None or what == "index":
        order = array("Q", range(n))
        if what == "index":
            order.append(n + data.draw(st.integers(0, 5)))
    n_order = len(order) if order is not None else n
    for bs, limit in ((64, HUGE), (4096, HUGE), (256, 100)):
        r = same("table_blocks", packed, layout, order, 0, n_order, bs, 2, limit, prev_key, None)
        if limit == HUGE and what == "index":
            assert r[:2] == ("err", T.InvalidArgumentError) and "out of range" in r[2]
        elif limit == HUGE and what in ("dup", "kind", "short"):
            assert r[:2] == ("err", CorruptionError), r


def test_table_blocks_targeted_errors():
    """Each error kind once, with its exact message and offset."""
    need_c()
    good = [ik(b"a", 9, 1), ik(b"a", 3, 0), ik(b"b", 7, 1)]
    vals = [b"x", b"", b"z" * 200]
    p = T.pack(good, vals)
    cases = {
        "unsorted": T.pack([good[1], good[0]], [b"", b""]),
        "dup": T.pack([good[0], good[0]], [b"", b""]),
        "kind2": T.pack([good[0], ik(b"b", 1, 2)], [b"", b""]),
        "kind3": T.pack([ik(b"b", 1, 3)], [b""]),
        "short": T.pack([good[0], b"1234567"], [b"", b""]),
        "empty_key": T.pack([b""], [b""]),
    }
    want = {"unsorted": (CorruptionError, 1), "dup": (CorruptionError, 1),
            "kind2": (CorruptionError, 1), "kind3": (CorruptionError, 0),
            "short": (CorruptionError, 1), "empty_key": (CorruptionError, 0)}
    for name, packed in cases.items():
        r = same("table_blocks", packed, 0, None, 0, len(packed[1]), 4096, 16, HUGE, None, None)
        assert r[0] == "err" and (r[1], r[3]) == want[name], (name, r)
    # layout 1: the entry (u64le(trailer) || value) shorter than 8 bytes
    p1 = T.pack([b"a", b"b"], [struct.pack("<Q", 5 << 8 | 1) + b"v", b"\x01" * 7])
    r = same("table_blocks", p1, 1, None, 0, 2, 4096, 16, HUGE, None, None)
    assert r[0] == "err" and r[1] is CorruptionError and r[3] == 1
    # pos > 0: offsets are order positions
    r = same("table_blocks", cases["unsorted"], 0, None, 1, 2, 4096, 16, HUGE, good[0], None)
    assert r[0] == "err" and r[3] == 1
    # prev_key after the first entry
    r = same("table_blocks", p, 0, None, 0, 3, 4096, 16, HUGE, ik(b"a", 9, 1), None)
    assert r[0] == "err" and r[1] is CorruptionError and r[3] == 0
    r = same("table_blocks", p, 0, None, 0, 3, 4096, 16, HUGE, ik(b"a", 10, 0), None)
    assert r[0] == "ok"
    # an order index out of range, after valid entries
    r = same("table_blocks", p, 0, array("Q", [0, 1, 3]), 0, 3, 4096, 16, HUGE, None, None)
    assert r[:3] == ("err", T.InvalidArgumentError,
                     "table_blocks: entry index 3 at position 2 is out of range")
    r = same("table_blocks", p, 0, array("Q", [0, 1, 2**64 - 1]), 0, 3, 64, 1, HUGE, None,
             None)
    assert r[0] == "err" and r[1] is T.InvalidArgumentError


BAD_TABLE_ARGS = [
    # (index of the argument, replacement)
    (0, (b"", array("Q"), b"", array("Q"), b"")),       # packed of 5
    (0, [b"", array("Q"), b"", array("Q")]),            # list, not tuple
    (0, ("ab", array("Q", [2]), b"", array("Q", [0]))),  # str keys
    (0, (b"ab", [2], b"", array("Q", [0]))),            # list lens
    (0, (b"ab", array("q", [2]), b"", array("Q", [0]))),  # signed lens
    (0, (b"ab", array("Q", [2, 0]), b"", array("Q", [0]))),  # lens differ in length
    (0, (b"ab", array("Q", [3]), b"", array("Q", [0]))),  # key lens past the buffer
    (0, (b"ab", array("Q", [2]), b"", array("Q", [2**64 - 1]))),  # value lens past the buffer
    (1, 2), (1, -1), (1, True), (1, 1.0),
    (2, [0]), (2, array("L", [0])), (2, b"\x00" * 8),
    (3, -1), (3, 2), (3, "0"),
    (4, 2), (4, -1), (4, None),
    (5, 0), (5, 2**32), (5, 64.0),
    (6, 0), (6, -3), (6, 2**32), (6, True),
    (7, -1), (7, 2**64), (7, None),
    (8, "a\x00\x00\x00\x00\x00\x00\x00\x00"), (8, bytearray(9)), (8, b"1234567"), (8, b""),
    (9, "gps"), (9, [b"a"]),
]


@pytest.mark.parametrize("idx,bad", BAD_TABLE_ARGS)
def test_table_blocks_bad_arguments(idx, bad):
    need_c()
    args = [T.pack([ik(b"a", 1, 1)], [b"v"]), 0, None, 0, 1, 4096, 16, HUGE, None, None]
    assert same("table_blocks", *args)[0] == "ok"
    args[idx] = bad
    r = same("table_blocks", *args)
    assert r[0] == "err", r


@pytest.mark.parametrize("ri", [(1 << 30) - 1, 1 << 30, (1 << 30) + 1, 2**32 - 1])
def test_table_blocks_large_restart_interval(ri):
    """A restart interval the block format cannot hold (> MAX_RESTART_INTERVAL)
    is rejected by both, even with no entry to encode; up to the limit both
    encode the same block (one restart)."""
    need_c()
    p = T.pack([ik(b"a", 1, 1), ik(b"b", 1, 0)], [b"v", b""])
    for pos in (0, 2):
        r = same("table_blocks", p, 0, None, pos, 2, 4096, ri, HUGE, None, None)
        if ri > T.MAX_RESTART_INTERVAL:
            assert r[:2] == ("err", T.InvalidArgumentError), r
        else:
            assert r[0] == "ok"


def test_table_blocks_grandparent_state_targeted():
    """The grandparent rule: a cut only at a new user key of a non-empty
    table, the state carried across calls, identical in both."""
    need_c()
    keys = [ik(b"k%03d" % i, 100 - i, 1) for i in range(60)]
    p = T.pack(keys, [b"v" * 50] * 60)
    gk = [b"k%03d" % i for i in range(5, 60, 7)]
    for gp_limit in (0, 1, 100, 2500, 10**9):
        gc = T.Grandparents(gk, [1000] * len(gk), gp_limit)
        gt = T.Grandparents(gk, [1000] * len(gk), gp_limit)
        pos, prev, cuts = 0, None, []
        while pos < 60:
            a = outcome(C.table_blocks, p, 0, None, pos, 60, 256, 4, HUGE, prev, gc)
            b, ch = outcome_raw(T.table_blocks, p, 0, None, pos, 60, 256, 4, HUGE, prev, gt)
            assert a == b and gc.state == gt.state, (gp_limit, pos)
            assert ch.next_pos > pos
            cuts.append(ch.next_pos)
            pos, prev = ch.next_pos, None
        if gp_limit >= 10**9:
            assert cuts == [60]
        if gp_limit == 100:
            assert len(cuts) > 3


# ------------------------------------------------------------ TableBuilder


@pytest.fixture(scope="module")
def table_fs(tmp_path_factory):
    fs = PosixFS(str(tmp_path_factory.mktemp("tables")), create=True)
    yield fs
    fs.close()


_names = itertools.count()


def builder_blocks(fs: Any, entries: list, block_size: int, restart: int, bloom: int
                   ) -> tuple[list[bytes], list[bytes], Optional[bytes]]:
    """The data block contents, index keys and filter of the table
    ``TableBuilder.add`` writes for ``entries`` (no compression)."""
    name = "%06d.sst" % next(_names)
    w = fs.create(name)
    b = TableBuilder(w, name=name, block_size=block_size, block_restart_interval=restart,
                     bloom_bits_per_key=bloom, compression=None)
    for k, v in entries:
        b.add(k, v)
    b.finish()
    w.sync()
    w.close()
    r = TableReader(fs.open(name), name)
    try:
        ix = r._index()
        f = fs.open(name)
        try:
            blocks = [f.read(off, size) for off, size in zip(ix.offs, ix.sizes)]
        finally:
            f.close()
        return blocks, list(ix.keys), ix.filter
    finally:
        r.close()
        fs.delete(name)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(entries=sorted_entries(max_size=80), layout=st.sampled_from([0, 1]),
       shuffle=st.one_of(st.none(), st.integers(0, 2**32)),
       block_size=st.one_of(st.integers(64, 700), st.just(4096)), restart=st.integers(1, 16),
       bloom=st.sampled_from([0, 1, 10]), which=WHICH)
def test_table_blocks_equal_table_builder(table_fs, entries, layout, shuffle, block_size,
                                          restart, bloom, which):
    """One call with a huge limit cuts and encodes the blocks TableBuilder
    writes; its last keys are the index keys and bloom_build_hashes of its
    hashes is the table's filter."""
    api = impl(which)
    packed, order = as_layout(entries, layout, shuffle)
    ch = api.table_blocks(packed, layout, order, 0, len(entries), block_size, restart, HUGE,
                          None, None)
    assert ch.stop == 0 and ch.next_pos == len(entries)
    got = [ch.data[a:b] for a, b in zip([0] + ch.block_ends, ch.block_ends)]
    want, index_keys, filt = builder_blocks(table_fs, entries, block_size, restart, bloom)
    assert got == want
    assert ch.last_keys == index_keys
    if bloom:
        assert api.bloom_build_hashes(ch.hashes, bloom) == filt
    else:
        assert filt is None


# ------------------------------------------------------------ blocks_unpack


def chunk_blocks(entries: list, block_size: int, restart: int) -> list[bytes]:
    ch = T.table_blocks(T.pack([k for k, _ in entries], [v for _, v in entries]), 0, None, 0,
                        len(entries), block_size, restart, HUGE, None, None)
    return [ch.data[a:b] for a, b in zip([0] + ch.block_ends, ch.block_ends)]


BOUNDS = st.one_of(st.none(), st.sampled_from(UKEYS + [b"aa", b"abc\x00", b"zz", b"\x00"]))


@SETTINGS
@given(entries=sorted_entries(max_size=80), block_size=st.integers(64, 700),
       restart=st.integers(1, 16), lo=BOUNDS, hi=BOUNDS, data=st.data())
def test_blocks_unpack_valid(entries, block_size, restart, lo, hi, data):
    """Runs of valid blocks: the entries within [lo, hi), run starts; C ==
    twin == a filter over the entries."""
    need_c()
    blocks = chunk_blocks(entries, block_size, restart)
    # split the blocks into runs (empty runs allowed)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(blocks)), max_size=4)))
    bounds = [0] + cuts + [len(blocks)]
    runs = [blocks[a:b] for a, b in zip(bounds, bounds[1:])]
    if data.draw(st.booleans()):
        runs = [list(r) for r in runs]
    else:
        runs = tuple(tuple(r) for r in runs)
    r = same("blocks_unpack", runs, lo, hi)
    assert r[0] == "ok"
    packed, starts = T.blocks_unpack(runs, lo, hi)
    keys = T.unpack_items(packed[0], packed[1])
    vals = T.unpack_items(packed[2], packed[3])
    want_starts = []
    want = []
    for run in runs:
        want_starts.append(len(want))
        for blk in run:
            for k, v in zip(*T.block_decode(blk)):
                if (lo is None or k[:-8] >= lo) and (hi is None or k[:-8] < hi):
                    want.append((k, v))
    want_starts.append(len(want))
    assert list(zip(keys, vals)) == want
    assert list(starts) == want_starts
    # the flat form (blocks back to back, lengths, blocks per run) is the same
    flat = [b for run in runs for b in run]
    for kind in (bytes, bytearray, memoryview):
        bufs = [kind(b"".join(run)) for run in runs]
        f = same("blocks_unpack_flat", bufs, array("Q", map(len, flat)),
                 array("Q", map(len, runs)), lo, hi)
        assert f == r
    # the C views feed merge_indices and table_blocks like bytes
    cp, cs = C.blocks_unpack_flat([b"".join(run) for run in runs], array("Q", map(len, flat)),
                                  array("Q", map(len, runs)), lo, hi)
    tp = (bytes(cp[0]), cp[1], bytes(cp[2]), cp[3])
    assert (C.merge_indices(cp, cs, MAX_SEQ).tolist()
            == C.merge_indices(tp, cs, MAX_SEQ).tolist())


def test_blocks_unpack_edges():
    need_c()
    blocks = chunk_blocks([(ik(b"k%02d" % i, 9, 1), b"v%d" % i) for i in range(20)], 64, 2)
    for runs in ([], [[]], [[], []], [blocks], [blocks[:3], [], blocks[3:]], ()):
        for lo, hi in ((None, None), (b"k1", b"k5"), (b"k5", b"k1"), (b"k5", b"k5"),
                       (b"", None), (None, b""), (b"zz", None), (b"k15", b"k17\x00")):
            r = same("blocks_unpack", runs, lo, hi)
            assert r[0] == "ok"
    # lo > hi keeps nothing but still reports run starts
    packed, starts = C.blocks_unpack([blocks, blocks[:2]], b"k5", b"k1")
    assert packed[1].tolist() == [] and starts.tolist() == [0, 0, 0]
    for bad in (("nope", None, None), ([b"blk"], None, None), ([[bytearray(b"x")]], None, None),
                ([["x"]], None, None), ([blocks], "a", None), ([blocks], None, 5),
                ([blocks], bytearray(b"a"), None)):
        r = same("blocks_unpack", *bad)
        assert r[0] == "err"


def test_blocks_unpack_flat_checks_its_arguments_and_numbers_bad_blocks():
    need_c()
    blocks = chunk_blocks([(ik(b"k%02d" % i, 9, 1), b"v%d" % i) for i in range(20)], 64, 2)
    buf = b"".join(blocks)
    lens = array("Q", map(len, blocks))
    one = array("Q", [len(blocks)])
    for bad in (([buf], lens, array("Q", [len(blocks) + 1]), None, None),   # too many blocks
                ([buf + b"x"], lens, one, None, None),                      # bytes left over
                ([buf[:10], buf[10:]], lens, array("Q", [1, len(blocks) - 1]), None, None),
                ([buf, b""], lens, one, None, None),                        # runs != buffers
                ([buf], list(lens), one, None, None),
                ([buf], lens, [len(blocks)], None, None),
                (buf, lens, one, None, None),                               # not a list
                (["s"], lens, one, None, None),
                ([memoryview(array("Q", [1, 2]))], array("Q", [16]), array("Q", [1]), None, None),
                ([buf], lens, one, "a", None)):
        assert same("blocks_unpack_flat", *bad)[0] == "err"
    damaged = bytearray(blocks[5])
    damaged[-1] ^= 0x7F               # the restart count: a bad block 5 + 3 = 8
    parts = blocks[3:5] + [bytes(damaged)]
    runs = [blocks[:3], parts]
    args = ([b"".join(blocks[:3]), b"".join(parts)], array("Q", map(len, blocks[:3] + parts)),
            array("Q", [3, 3]))
    r = same("blocks_unpack_flat", *args, None, None)
    assert r == same("blocks_unpack", runs, None, None) and r[0] == "err"
    with pytest.raises(CorruptionError) as info:
        C.blocks_unpack_flat(*args)
    assert info.value.block_index == 5


def test_blocks_unpack_takes_block_views():
    """Blocks may be memoryviews into one read (TableReader.raw_block_chunks): same
    result as bytes, in both implementations; the chunk's first key is
    read from its first block (first_block_key)."""
    need_c()
    blocks = chunk_blocks([(ik(b"k%02d" % i, 9, 1), b"v%d" % i) for i in range(30)], 64, 2)
    data = b"".join(blocks)
    view = memoryview(data)
    views = []
    at = 0
    for b in blocks:
        views.append(view[at:at + len(b)])
        at += len(b)
    for lo, hi in ((None, None), (b"k05", b"k20")):
        as_bytes = same("blocks_unpack", [blocks[:4], blocks[4:]], lo, hi)
        as_views = same("blocks_unpack", [views[:4], views[4:]], lo, hi)
        assert as_bytes == as_views and as_bytes[0] == "ok"
    assert T.first_block_key(blocks[0]) == ik(b"k00", 9, 1)
    assert T.first_block_key(blocks[1]) == T.block_decode(blocks[1])[0][0]


ALL_OPS = ("flip", "set", "truncate", "extend", "cut_front", "insert", "entry", "entry",
           "restart")


@st.composite
def mutated_block(draw: Any, block: bytes, ops: tuple = ALL_OPS, max_ops: int = 4) -> bytes:
    b = bytearray(block)
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.sampled_from(ops))
        nr = struct.unpack_from("<I", b, len(b) - 4)[0] if len(b) >= 4 else 0
        data_end = len(b) - 4 - 4 * nr
        if op == "entry" and 0 < data_end <= len(b):
            # an entry byte (varint headers, key bytes): short keys, overruns
            i = draw(st.integers(0, data_end - 1))
            b[i] = draw(st.sampled_from([0, 1, 7, 8, 0x7F, 0x80, 0xFF, b[i] ^ 1]))
        elif op == "restart" and nr and 0 <= data_end < len(b) - 4:
            # one restart offset: bad or misaligned restarts
            j = draw(st.integers(0, nr - 1))
            struct.pack_into("<I", b, data_end + 4 * j, draw(st.integers(0, data_end + 2)))
        elif op in ("flip", "set") and b:
            i = draw(st.integers(0, len(b) - 1))
            b[i] = (b[i] ^ draw(st.integers(1, 255))) if op == "flip" else draw(
                st.integers(0, 255))
        elif op == "truncate":
            del b[draw(st.integers(0, len(b))):]
        elif op == "cut_front":
            del b[:draw(st.integers(0, len(b)))]
        elif op == "insert":
            b[draw(st.integers(0, len(b))):0] = draw(st.binary(min_size=1, max_size=6))
        else:
            b += draw(st.binary(min_size=1, max_size=9))
    return bytes(b)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(entries=sorted_entries(max_size=30), restart=st.integers(1, 4), data=st.data())
def test_blocks_unpack_malformed(entries, restart, data):
    """Damaged blocks (bytes flipped, set, cut, inserted, appended) placed
    among valid ones: the same result or the same error (type, message,
    offset, block_index) from both."""
    need_c()
    if not entries:
        entries = [(ik(b"k", 1, 1), b"v")]
    blocks = chunk_blocks(entries, data.draw(st.integers(64, 300)), restart)
    i = data.draw(st.integers(0, len(blocks) - 1))
    if data.draw(st.booleans()):
        bad = data.draw(mutated_block(blocks[i]))
    else:   # one damaged entry byte or restart offset, the trailer intact
        bad = data.draw(mutated_block(blocks[i], ("entry", "restart"), 1))
    blocks[i] = bad
    split = data.draw(st.integers(0, len(blocks)))
    runs = [blocks[:split], blocks[split:]]
    lo = data.draw(BOUNDS)
    r = same("blocks_unpack", runs, lo, None)
    event(r[2].split(": ", 1)[-1].split(" at offset")[0] if r[0] == "err" else "ok")
    if r[0] == "err" and r[1] is CorruptionError:
        assert r[4] is not None and r[2].startswith("data block %d: " % r[4])


def test_blocks_unpack_every_byte():
    """Every single-byte change of two small blocks (every position, several
    values) and every restart offset: C == twin, and the sweep reaches the
    short-key and misaligned-restart errors."""
    need_c()
    seen = set()
    blocks = [T.block_encode([ik(b"ab", 5, 1), ik(b"abc", 4, 0), ik(b"b", 3, 1)],
                             [b"x", b"", b"y" * 130], 2),
              T.block_encode([ik(b"", 9, 1), ik(b"k", 8, 1)], [b"", b"vv"], 1)]
    for blk in blocks:
        for i in range(len(blk)):
            for v in {0, 1, 2, 7, 8, 9, 0x7F, 0x80, 0xFF, blk[i] ^ 1, blk[i] ^ 0x80}:
                bad = blk[:i] + bytes([v]) + blk[i + 1:]
                r = same("blocks_unpack", [[blocks[1]], [bad]], None, None)
                seen.add(r[2].split(": ", 1)[-1].split(" at offset")[0] if r[0] == "err"
                         else "ok")
        nr = struct.unpack_from("<I", blk, len(blk) - 4)[0]
        data_end = len(blk) - 4 - 4 * nr
        for j in range(nr):
            for off in range(data_end + 2):
                bad = bytearray(blk)
                struct.pack_into("<I", bad, data_end + 4 * j, off)
                r = same("blocks_unpack", [[bytes(bad)]], b"ab", None)
                seen.add(r[2].split(": ", 1)[-1].split(" at offset")[0] if r[0] == "err"
                         else "ok")
    want = {T.ERRORS[c] for c in (T.ERR_BLOCK_SHORT_INTERNAL_KEY, T.ERR_BLOCK_RESTART_MISALIGNED,
                                  T.ERR_BLOCK_ENTRY_OVERRUN, T.ERR_BLOCK_BAD_RESTART,
                                  T.ERR_BLOCK_RESTART_SHARED, T.ERR_BLOCK_SHARED_TOO_LONG)}
    assert want <= seen, want - seen


def test_blocks_unpack_targeted_corruption():
    need_c()
    good = T.block_encode([ik(b"abc", 5, 1), ik(b"abd", 4, 1)], [b"x", b"y" * 200], 1)
    cases = [
        b"",                                  # too short
        b"\x00\x00\x00",
        b"\x00\x00\x00\x00",                  # no restarts
        b"\xff\xff\xff\xff",                  # restarts overrun
        b"\x00\x00\x00\x00\x01\x00\x00\x00",  # empty block: valid
        good[:-1], good[1:], good + b"\x00",
        T.block_encode([b"1234567"], [b"v"], 1),                          # short key
        T.block_encode([b""], [b""], 1),
        T.block_encode([ik(b"a", 1, 1), b"abcdefg"], [b"v", b"w"], 16),   # short after valid
        T.block_encode([ik(b"a", 1, 1), b"abcdefg", b"\x00"], [b"v", b"w", b""], 1),
        T.block_encode([ik(b"a", 1, 1), ik(b"a", 1, 1)[:7]], [b"v" * 300, b""], 2),
        T.block_encode([b"ab"], [b"v" * 200], 1),
    ]
    for bi, blk in enumerate(cases):
        for runs in ([[blk]], [[good], [good, blk]], [[], [good, good, blk, good]]):
            r = same("blocks_unpack", runs, None, None)
            if bi >= 8:   # the short-key blocks
                assert r[0] == "err" and r[1] is CorruptionError, (bi, r)
                assert "internal key" in r[2] or "short" in r[2], r
                assert r[4] == sum(len(x) for x in runs[:-1]) + len(runs[-1]) - 1 - (
                    1 if runs[-1] and runs[-1][-1] is not blk else 0), (bi, r)


# ------------------------------------------------------------ sort_entries


@SETTINGS
@given(items=st.lists(st.tuples(st.sampled_from(UKEYS), st.integers(0, 40),
                                st.integers(0, 255), st.integers(0, 20)), max_size=120),
       which=WHICH)
def test_sort_entries(items, which):
    """Memtable entries (duplicate user keys and trailers included) sort by
    (user key, -trailer), stably; C == twin == sorted()."""
    api = impl(which)
    keys = [uk for uk, *_ in items]
    ents = [struct.pack("<Q", seq << 8 | kind) + value_bytes(seq, vl)
            for _, seq, kind, vl in items]
    packed = T.pack(keys, ents)
    want = sorted(range(len(items)), key=lambda i: (keys[i], -trailer(ents[i][:8])))
    got = api.sort_entries(packed)
    assert isinstance(got, array) and got.typecode == "Q"
    assert got.tolist() == want
    if C is not None:
        assert C.sort_entries(packed) == T.sort_entries(packed)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(n=st.integers(1, 40), shorts=st.lists(st.tuples(st.integers(0, 39), st.integers(0, 7)),
                                              min_size=1, max_size=3))
def test_sort_entries_short_entry(n, shorts):
    need_c()
    keys = [b"k%d" % (i % 7) for i in range(n)]
    ents = [struct.pack("<Q", i << 8 | 1) for i in range(n)]
    for i, ln in shorts:
        if i < n:
            ents[i] = ents[i][:ln]
    r = same("sort_entries", T.pack(keys, ents))
    bad = [i for i, e in enumerate(ents) if len(e) < 8]
    if bad:
        assert r[0] == "err" and r[1] is CorruptionError and r[3] == bad[0]
    else:
        assert r[0] == "ok"


def test_sort_entries_bad_arguments():
    need_c()
    for packed in (None, [b"", array("Q"), b"", array("Q")], (b"", array("Q"), b""),
                   (b"a", array("Q", [1]), b"", array("Q")),
                   (b"a", array("Q", [2]), b"\x00" * 8, array("Q", [8])),
                   (b"a", array("Q", [1]), b"\x00" * 8, array("Q", [9])),
                   (b"a", array("Q", [1]), "\x00" * 8, array("Q", [8])),
                   (b"a", array("I", [1]), b"\x00" * 8, array("Q", [8]))):
        assert same("sort_entries", packed)[0] == "err"
    assert same("sort_entries", (b"", array("Q"), b"", array("Q")))[1] == ("array", "Q", [])
    # trailing bytes past the lengths are ignored by both
    assert same("sort_entries", (b"ab", array("Q", [1]), b"\x00" * 9, array("Q", [8])))[0] == "ok"


# ------------------------------------------------------------ bloom_build_hashes


@SETTINGS
@given(keys=st.lists(st.binary(max_size=12), max_size=200),
       bpk=st.one_of(st.sampled_from([1, 10, 30, 1000]), st.integers(1, 1000)),
       which=WHICH)
def test_bloom_build_hashes(keys, bpk, which):
    api = impl(which)
    hashes = array("Q", [xxhash.xxh64_intdigest(k) for k in keys])
    got = api.bloom_build_hashes(hashes, bpk)
    assert got == T.bloom_build(keys, bpk)
    if C is not None:
        assert C.bloom_build_hashes(hashes, bpk) == T.bloom_build_hashes(hashes, bpk)


def test_bloom_build_hashes_arguments():
    need_c()
    h = array("Q", [0, 1, 2**64 - 1, 12345])
    for bpk in (1, 10, 30, 1000):
        assert same("bloom_build_hashes", h, bpk)[0] == "ok"
        assert same("bloom_build_hashes", array("Q"), bpk)[0] == "ok"
    for hashes, bpk in ((h, 0), (h, 1001), (h, True), (h, 10.0), (h, -1), (h, None),
                        ([0, 1], 10), (array("q", [0]), 10), (b"\x00" * 8, 10), (None, 10)):
        r = same("bloom_build_hashes", hashes, bpk)
        assert r[0] == "err", (hashes, bpk)


# ------------------------------------------------------------ merge_indices


@st.composite
def merge_run(draw: Any) -> list:
    """A sorted run of points (kinds 0/1) and range tombstones (kind 2, the
    value the end key, usually after the start)."""
    ents = draw(sorted_entries(max_size=25, kinds=(0, 1, 2)))
    out = []
    for k, v in ents:
        if trailer(k) & 0xFF == 2:
            v = draw(st.sampled_from(UKEYS + [b"aa", b"bz", b"zz"]))
        out.append((k, v))
    return out


def pack_runs(runs: list) -> tuple:
    keys = [k for r in runs for k, _ in r]
    vals = [v for r in runs for _, v in r]
    starts = array("Q", [0])
    for r in runs:
        starts.append(starts[-1] + len(r))
    return T.pack(keys, vals), starts


@SETTINGS
@given(runs=st.lists(merge_run(), max_size=4), read_seq=st.one_of(st.integers(0, 40),
                                                                   st.just(MAX_SEQ)),
       snaps=st.lists(st.integers(0, 40), max_size=3), mode=st.sampled_from([0, 1]),
       bottom=st.booleans())
def test_merge_indices(runs, read_seq, snaps, mode, bottom):
    """The indices pick exactly merge's output; C == twin."""
    snaps = sorted(snaps)
    packed, starts = pack_runs(runs)
    keys = T.unpack_items(packed[0], packed[1])
    vals = T.unpack_items(packed[2], packed[3])
    want = T.merge([([k for k, _ in r], [v for _, v in r]) for r in runs], read_seq, snaps, mode,
                   bottom)
    for api in ([T] + ([C] if C is not None else [])):
        idx = api.merge_indices(packed, starts, read_seq, snaps, mode, bottom)
        assert isinstance(idx, array) and idx.typecode == "Q"
        assert ([keys[i] for i in idx], [vals[i] for i in idx]) == want
    if C is not None:
        same("merge_indices", packed, starts, read_seq, snaps, mode, bottom)


@SETTINGS
@given(runs=st.lists(merge_run(), min_size=1, max_size=3), data=st.data())
def test_merge_indices_malformed(runs, data):
    """Unsorted runs, short keys, kind > 2 -> the same CorruptionError."""
    need_c()
    runs = [list(r) for r in runs]
    r = data.draw(st.integers(0, len(runs) - 1))
    run = runs[r]
    what = data.draw(st.sampled_from(["swap", "short", "kind"]))
    if not run:
        run.append((ik(b"q", 3, 1), b""))
    i = data.draw(st.integers(0, len(run) - 1))
    broken = what != "swap" or len(run) >= 2
    if what == "swap" and len(run) >= 2:
        i = min(i, len(run) - 2)
        run[i], run[i + 1] = run[i + 1], run[i]
    elif what == "short":
        run[i] = (run[i][0][:data.draw(st.integers(0, 7))], run[i][1])
    else:
        uk, t = split_ikey(run[i][0])
        run[i] = (ik(uk, t >> 8, data.draw(st.integers(3, 255))), run[i][1])
    packed, starts = pack_runs(runs)
    for mode, bottom in ((0, False), (1, False), (1, True)):
        res = same("merge_indices", packed, starts, 20, [5], mode, bottom)
        if broken:
            assert res[:2] == ("err", CorruptionError) and f"merge run {r}" in res[2], res


def test_merge_indices_targeted():
    need_c()
    run0 = [ik(b"a", 9, 2), ik(b"a", 5, 1), ik(b"c", 4, 0)]
    v0 = [b"c", b"x", b""]
    run1 = [ik(b"b", 7, 1), ik(b"b", 2, 1)]
    v1 = [b"y", b"z"]
    packed = T.pack(run0 + run1, v0 + v1)
    starts = array("Q", [0, 3, 5])
    for mode in (0, 1):
        for bottom in (False, True):
            for snaps in ([], [3], [1, 6, 8]):
                assert same("merge_indices", packed, starts, 10, snaps, mode, bottom)[0] == "ok"
    # errors name the run and the entry index inside it
    bad = T.pack(run0 + [run1[1], run1[0]], v0 + v1)
    r = same("merge_indices", bad, starts, 10, [], 0, False)
    assert r[:2] == ("err", CorruptionError) and r[3] == 1 and "run 1" in r[2]
    for rs in (array("Q"), [0, 3, 5], array("Q", [1, 3, 5]), array("Q", [0, 3, 4]),
               array("Q", [0, 4, 3, 5]), array("q", [0, 3, 5]), None, array("Q", [0, 6])):
        assert same("merge_indices", packed, rs, 10, [], 0, False)[0] == "err", rs
    for read_seq, snaps, mode, bottom in ((-1, [], 0, False), (MAX_SEQ + 1, [], 0, False),
                                          (10, [3, 1], 0, False), (10, [-1], 1, False),
                                          (10, [], 2, False), (10, [], 0, 1),
                                          (10, "ab", 0, False), (True, [], 0, False),
                                          (10, 5, 0, False), (10, None, 1, True),
                                          (10, {1, 2}, 0, False), (10, b"\x01", 0, False),
                                          (10, (s for s in [1]), 1, False),
                                          (10, [1.0], 0, False), (10, [True], 0, False)):
        r = same("merge_indices", packed, starts, read_seq, snaps, mode, bottom)
        assert r[0] == "err" and r[1] in (T.ArgumentTypeError, T.InvalidArgumentError), r
    # snapshots as any sequence of ints, as merge takes them
    for snaps in ((), (3,), range(2, 9, 3), [1, 1, 6]):
        r = same("merge_indices", packed, starts, 10, snaps, 1, False)
        assert r[0] == "ok"
        want = T.merge([(run0, v0), (run1, v1)], 10, list(snaps), 1, False)
        assert [(run0 + run1)[i] for i in r[1][2]] == want[0]
    # an empty packed run with one or several empty runs
    empty = (b"", array("Q"), b"", array("Q"))
    for rs in (array("Q", [0]), array("Q", [0, 0, 0])):
        assert same("merge_indices", empty, rs, 10, [], 1, True)[1] == ("array", "Q", [])


# ------------------------------------------------------------ selection


def test_selected_implementation():
    """lsm._native exports the twin under LSM_PURE=1, else the C function."""
    if os.environ.get("LSM_PURE") == "1":
        assert _native.table_blocks is T.table_blocks
        assert _native.merge_indices is T.merge_indices
    elif C is not None:
        assert _native.table_blocks is C.table_blocks
        assert _native.blocks_unpack is C.blocks_unpack
    else:
        pytest.skip("lsm._lsm_c is not built")


def test_large_outputs_are_views_that_outlive_their_call():
    """Large blocks_unpack_flat, table_blocks, blocks_seal and blocks_open
    outputs come back from C as memoryviews over fresh native memory (an
    anonymous map): equal to the twin's bytes, and still valid after other
    large calls have come and gone."""
    import gc
    c = need_c()
    rng = random.Random(5)
    entries = [(ik(b"key%07d" % i, 100 + i, 1), rng.randbytes(90)) for i in range(12000)]
    blocks = chunk_blocks(entries, 4096, 16)
    bufs = [b"".join(blocks[:150]), b"".join(blocks[150:])]
    args = (bufs, array("Q", map(len, blocks)), array("Q", [150, len(blocks) - 150]))
    cp, cs = c.blocks_unpack_flat(*args)
    tp, ts = T.blocks_unpack_flat(*args)
    assert type(cp[0]) is memoryview and len(cp[2]) >= _native._VIEW_POOL_MIN_BYTES
    order = c.merge_indices(cp, cs, MAX_SEQ)
    assert order.tolist() == T.merge_indices(tp, ts, MAX_SEQ).tolist()
    chunk = c.table_blocks(cp, 0, order, 0, len(order), 4096, 16, 1 << 40, None, None)
    want = T.table_blocks(tp, 0, order, 0, len(order), 4096, 16, 1 << 40, None, None)
    assert type(chunk.data) is memoryview and norm(chunk) == norm(want)
    ends = array("Q", chunk.block_ends)
    phys, sizes = c.blocks_seal(chunk.data, ends, True)
    tphys, tsizes = T.blocks_seal(bytes(want.data), ends, True)
    assert type(phys) is memoryview and phys == tphys and sizes == tsizes
    offsets = array("Q", itertools.accumulate((s + 5 for s in sizes[:-1]), initial=0))
    data, oends = c.blocks_open(phys, offsets, sizes, True, "t.sst", 0)
    assert type(data) is memoryview and len(data) > 1 << 20
    del cp, chunk, phys, tp
    gc.collect()
    for _ in range(3):      # reuse the memory the dropped outputs had
        c.blocks_unpack_flat(*args)
    assert data == bytes(want.data) and oends.tolist() == ends.tolist()


def test_view_pool_reuses_a_buffer_only_once_no_view_is_alive():
    import gc
    import threading
    c = need_c()
    pool = _native._ViewPool(c.ffi)
    a = pool.take(100_000)
    va = pool.view(a, 10)
    del a
    b = pool.take(100_000)
    assert b is not pool._bufs[0][0]            # the first is still viewed: a new one
    del b
    gc.collect()
    again = pool.take(50_000)                   # the second is idle: reused, not a third
    assert len(pool._bufs) == 2 and any(again is e[0] for e in pool._bufs)
    del again
    va[:3] = b"abc"
    pool.trim()                                 # drops the idle one, keeps the viewed one
    assert len(pool._bufs) == 1 and bytes(va[:3]) == b"abc"
    pool._check()
    del va
    pool.trim()
    assert pool._bufs == [] and pool._total == 0
    # concurrent takers never share a buffer
    seen: list = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(200):
            p = pool.take(70_000)
            v = pool.view(p, 8)
            with lock:
                assert all(x is not p for x in seen)
                seen.append(p)
            v[:8] = b"x" * 8
            with lock:
                seen.remove(p)
            del p, v

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pool._check()
    # the pool never holds more than its budget
    big = [pool.take(_native._VIEW_POOL_MAX_BYTES // 3) for _ in range(5)]
    assert pool._total <= _native._VIEW_POOL_MAX_BYTES and len(big) == 5
