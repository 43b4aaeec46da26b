"""Tests of lsm/sstable: builder -> reader round trips, get() against a model,
block scans, corruption, truncation and format versions."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from blockdev.errors import (
    ArgumentTypeError,
    ClosedError,
    CorruptionError,
    InvalidArgumentError,
    UnsupportedFormatError,
)
from blockdev.fs import PosixFS
from lsm import _native as N
from lsm.cache import BlockCache
from lsm.dbformat import (
    KIND_TOMBSTONE,
    KIND_VALUE,
    MAX_SEQUENCE,
    compare_internal,
    internal_sort_key,
    lookup_key,
    pack_internal_key,
)
from lsm.sstable import TableBuilder, TableReader
from lsm.sstable.reader import READAHEAD_MAX
from lsm.sstable.format import FOOTER_SIZE, TABLE_MAGIC, encode_footer, decode_footer


@pytest.fixture
def fs(tmp_path):
    f = PosixFS(str(tmp_path / "db"), create=True)
    yield f
    f.close()


def build(fs, name, entries, rts=(), **opts):
    w = fs.create(name)
    b = TableBuilder(w, name=name, **opts)
    for k, v in entries:
        b.add(k, v)
    for s, e, q in rts:
        b.add_range_tombstone(s, e, q)
    b._check()
    est = b.estimated_size
    props = b.finish()
    w.sync()
    w.close()
    return props, est


def open_table(fs, name, **kw):
    return TableReader(fs.open(name), name, **kw)


def get_bytes(fs, name):
    f = fs.open(name)
    try:
        return f.read(0, f.size)
    finally:
        f.close()


def put_bytes(fs, name, data):
    w = fs.create(name)
    w.append(data)
    w.close()


def make_entries(rng, n_keys, max_versions=3, value_size=(0, 200), tomb_p=0.2):
    """Sorted internal entries: distinct user keys, several versions each."""
    users = sorted({rng.randbytes(rng.randrange(0, 12)) for _ in range(n_keys)})
    seq = 1
    out = []
    for uk in users:
        seqs = sorted(rng.sample(range(1, 10 * n_keys + 10), rng.randrange(1, max_versions + 1)),
                      reverse=True)
        for s in seqs:
            kind = KIND_TOMBSTONE if rng.random() < tomb_p else KIND_VALUE
            v = b"" if kind == KIND_TOMBSTONE else rng.randbytes(rng.randrange(*value_size))
            out.append((pack_internal_key(uk, s, kind), v))
        seq += 1
    return out


def model_get(entries, uk, read_seq):
    best = None
    for k, v in entries:
        if k[:-8] == uk:
            t = int.from_bytes(k[-8:], "little")
            if t >> 8 <= read_seq and (best is None or t >> 8 > best[0]):
                best = (t >> 8, t & 0xFF, v)
    return best


# ---------------------------------------------------------------------------
# round trips

@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**32), n=st.integers(0, 300), block_size=st.sampled_from([64, 256, 4096]),
       restart=st.sampled_from([1, 2, 16]), bloom=st.sampled_from([0, 10]),
       compression=st.sampled_from(["lz4", None]), n_rt=st.integers(0, 5))
def test_round_trip_model(tmp_path_factory, seed, n, block_size, restart, bloom, compression, n_rt):
    fs = PosixFS(str(tmp_path_factory.mktemp("rt")), create=True)
    rng = random.Random(seed)
    # compressible values sometimes, so both trailer types occur
    entries = make_entries(rng, n, value_size=(0, 300))
    if rng.random() < 0.5:
        entries = [(k, v[:8] * 20 if v else v) for k, v in entries]
    rts = [(rng.randbytes(2), rng.randbytes(3), rng.randrange(0, 1000)) for _ in range(n_rt)]
    props, est = build(fs, "t.sst", entries, rts, block_size=block_size,
                       block_restart_interval=restart, bloom_bits_per_key=bloom,
                       compression=compression)
    size = fs.size("t.sst")
    assert abs(est - size) <= max(0.5 * size, 2048) or compression == "lz4"
    mode = seed % 3      # 0: no cache; 1: cache; 2: tiny cache holding index and filter too
    cache = None if mode == 0 else BlockCache(1 << 20 if mode == 1 else 2048, shards=2)
    r = open_table(fs, "t.sst", block_cache=cache, cache_id=3,
                   cache_index_and_filter_blocks=(mode == 2))
    r._check()
    assert r.properties == props
    assert props.num_entries == len(entries)
    assert props.num_tombstones == sum(1 for k, _ in entries if k[-8] == KIND_TOMBSTONE)
    assert props.raw_key_size == sum(len(k) for k, _ in entries)
    assert props.raw_value_size == sum(len(v) for _, v in entries)
    assert props.smallest_key == (entries[0][0] if entries else b"")
    assert props.largest_key == (entries[-1][0] if entries else b"")
    allseq = [int.from_bytes(k[-8:], "little") >> 8 for k, _ in entries] + [q for _, _, q in rts]
    assert (props.smallest_seq, props.largest_seq) == ((min(allseq), max(allseq)) if allseq else (0, 0))
    assert props.compression == compression
    assert sorted(r.range_tombstones, key=lambda t: (t[0], -t[2], t[1])) == \
        sorted(rts, key=lambda t: (t[0], -t[2], t[1]))
    # full scan
    assert list(r.entries()) == entries
    flat = [kv for keys, vals in r.blocks() for kv in zip(keys, vals)]
    assert flat == entries
    rev = [kv for keys, vals in r.blocks(reverse=True) for kv in zip(reversed(keys), reversed(vals))]
    assert rev == entries[::-1]
    # get against the model, at several read_seqs
    users = sorted({k[:-8] for k, _ in entries}) + [b"\xff" * 13, b"zz-absent"]
    for uk in users[:60]:
        for rs in (0, 1, rng.randrange(0, 10 * n + 10), MAX_SEQUENCE):
            assert r.get(uk, rs) == model_get(entries, uk, rs), (uk, rs)
        assert r.may_contain(uk) or model_get(entries, uk, MAX_SEQUENCE) is None
    # seeks from random start keys, forward and reverse
    for _ in range(10):
        uk = rng.choice(users)
        start = pack_internal_key(uk, rng.randrange(0, 10 * n + 10), rng.choice([0, 1, 255]))
        sk = internal_sort_key(start)
        expect = [kv for kv in entries if internal_sort_key(kv[0]) >= sk]
        assert list(r.entries(start)) == expect
        first = next(iter(r.blocks(start)), None)
        if expect:
            assert expect[0][0] in first[0]
        else:
            assert first is None
        before = [kv for kv in entries if internal_sort_key(kv[0]) <= sk]
        rb = list(r.blocks(start, reverse=True))
        got_rev = [kv for keys, vals in rb for kv in zip(reversed(keys), reversed(vals))
                   if internal_sort_key(kv[0]) <= sk]
        assert got_rev == before[::-1]
        if rb and before:
            # the first block yielded holds the last entry <= start, or only entries > start
            assert before[-1][0] in rb[0][0] or (len(rb) > 1 and before[-1][0] in rb[1][0]
                                                 and all(compare_internal(k, start) > 0 for k in rb[0][0]))
    r.close()
    fs.close()


def test_empty_table(fs):
    props, _ = build(fs, "e.sst", [])
    assert props.num_entries == 0 and props.num_data_blocks == 0
    r = open_table(fs, "e.sst")
    assert r.get(b"a", 5) is None
    assert list(r.blocks()) == [] and list(r.blocks(reverse=True)) == []
    assert list(r.entries(pack_internal_key(b"a", 1, 1))) == []
    assert r.approximate_offset(pack_internal_key(b"a", 1, 1)) == 0
    assert r.properties.smallest_key == b"" == r.properties.largest_key
    r.close()


def test_only_range_tombstones(fs):
    props, _ = build(fs, "r.sst", [], [(b"a", b"m", 9), (b"c", b"d", 12)])
    r = open_table(fs, "r.sst")
    assert r.range_tombstones == [(b"a", b"m", 9), (b"c", b"d", 12)]
    assert (props.smallest_seq, props.largest_seq) == (9, 12)
    assert props.num_range_tombstones == 2
    assert r.get(b"b", 100) is None


def test_big_values_span_blocks_and_lz4_saves(fs):
    rng = random.Random(5)
    entries = [(pack_internal_key(b"k%04d" % i, 100 + i, KIND_VALUE),
                rng.randbytes(20000) if i % 2 else b"x" * 30000) for i in range(40)]
    p1, _ = build(fs, "a.sst", entries, compression="lz4")
    p2, _ = build(fs, "b.sst", entries, compression=None)
    assert p1.data_size < p2.data_size      # the compressible values shrank
    for name in ("a.sst", "b.sst"):
        r = open_table(fs, name)
        assert list(r.entries()) == entries
        for k, v in entries:
            assert r.get(k[:-8], MAX_SEQUENCE) == (int.from_bytes(k[-8:], "little") >> 8, 1, v)
        r.close()


@pytest.mark.parametrize("decoded", [False, True])
def test_same_user_key_versions_across_blocks(fs, decoded):
    # 200 versions of one key with tiny blocks: versions span many blocks
    entries = [(pack_internal_key(b"key", s, KIND_VALUE if s % 3 else KIND_TOMBSTONE), b"v%d" % s)
               for s in range(400, 0, -2)]
    entries = [(pack_internal_key(b"a%d" % i, 5, KIND_VALUE), b"") for i in range(9)] + entries
    entries += [(pack_internal_key(b"z%d" % i, 5, KIND_VALUE), b"") for i in range(9)]
    build(fs, "v.sst", entries, block_size=64)
    r = open_table(fs, "v.sst", block_cache=BlockCache(1 << 20) if decoded else None)
    if decoded:     # a scan leaves decoded blocks in the cache: get takes the bisect path
        assert list(r.entries()) == entries
    assert r.num_data_blocks > 10
    for rs in range(0, 405):
        assert r.get(b"key", rs) == model_get(entries, b"key", rs)
    assert r.get(b"kex", 1000) is None and r.get(b"kez", 1000) is None


# ---------------------------------------------------------------------------
# lazy block access and caching

@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("cached", [False, True])
def test_block_walk_reads_ahead(fs, reverse, cached):
    """After the first block, a walk reads many blocks per file read
    (READAHEAD_MIN doubling to READAHEAD_MAX), each verified and decoded as
    if read alone; blocks already cached are not read again."""
    entries = [(pack_internal_key(b"%06d" % i, 1, KIND_VALUE), b"v%05d" % i * 8)
               for i in range(4000)]
    build(fs, "ra.sst", entries, block_size=512)
    cache = BlockCache(1 << 24) if cached else None
    r = open_table(fs, "ra.sst", block_cache=cache, cache_id=3)
    reads = []
    real_read = r._file.read
    r._file.read = lambda off, n: (reads.append((off, n)), real_read(off, n))[1]
    if cached:                              # a few blocks cached by earlier reads
        for key in (b"000100", b"002000", b"003500"):
            assert r.get(key, 9) is not None
    del reads[:]
    blocks = [list(zip(keys, values)) for keys, values in r.blocks(reverse=reverse)]
    if reverse:
        blocks.reverse()
    assert [kv for blk in blocks for kv in blk] == entries
    n = r.num_data_blocks
    assert n > 100
    assert len(reads) < n // 4, (len(reads), n)
    assert max(size for _, size in reads) <= READAHEAD_MAX
    r.close()


def test_blocks_are_read_lazily_and_cached(fs):
    entries = [(pack_internal_key(b"%06d" % i, 1, KIND_VALUE), b"v" * 50) for i in range(2000)]
    build(fs, "l.sst", entries, block_size=512)
    cache = BlockCache(1 << 22)
    r = open_table(fs, "l.sst", block_cache=cache, cache_id=7)
    n = r.num_data_blocks
    assert n > 20 and r.blocks_read == 0 and r.blocks_loaded == 0
    it = r.blocks(pack_internal_key(b"001000", 5, 0xFF))
    keys, _ = next(it)
    assert r.blocks_read == 1 and b"001000" in {k[:-8] for k in keys}
    it.close()
    it = r.blocks(pack_internal_key(b"001000", 5, 0xFF), reverse=True)
    next(it)
    next(it)
    # block shared with the forward read; the second block comes with readahead
    assert r.blocks_read == 3 and r.blocks_loaded >= 2
    before = r.blocks_loaded
    assert r.get(b"001000", 9) == (1, 1, b"v" * 50)
    assert r.blocks_loaded == before                      # served by the cache
    assert r.get(b"nope", 9) is None
    hits = cache.hits
    r.get(b"000999", 9)
    assert cache.hits >= hits
    # approximate offsets are monotone and inside the data section
    offs = [r.approximate_offset(pack_internal_key(b"%06d" % i, 1, 1)) for i in range(0, 2001, 100)]
    assert offs == sorted(offs) and offs[-1] == r.properties.data_size and offs[0] == 0
    r.close()
    with pytest.raises(ClosedError):
        list(r.blocks())
    cache.clear()
    with pytest.raises(ClosedError):
        r.get(b"000001", 1)


def test_no_cache_reads_each_time(fs):
    entries = [(pack_internal_key(b"%04d" % i, 1, KIND_VALUE), b"v") for i in range(100)]
    build(fs, "n.sst", entries)
    r = open_table(fs, "n.sst")
    r.get(b"0001", 1)
    r.get(b"0001", 1)
    assert r.blocks_loaded == 2


# ---------------------------------------------------------------------------
# argument validation

def test_builder_rejects_bad_input(fs):
    w = fs.create("x.sst")
    b = TableBuilder(w, name="x.sst")
    with pytest.raises(ArgumentTypeError):
        b.add("str", b"v")
    with pytest.raises(ArgumentTypeError):
        b.add(pack_internal_key(b"a", 1, 1), "v")
    with pytest.raises(InvalidArgumentError):
        b.add(b"short", b"v")
    with pytest.raises(InvalidArgumentError):
        b.add(pack_internal_key(b"a", 1, 2), b"v")
    b.add(pack_internal_key(b"b", 5, 1), b"v")
    with pytest.raises(InvalidArgumentError):
        b.add(pack_internal_key(b"a", 9, 1), b"v")        # user key goes back
    with pytest.raises(InvalidArgumentError):
        b.add(pack_internal_key(b"b", 5, 1), b"v")        # duplicate
    with pytest.raises(InvalidArgumentError):
        b.add(pack_internal_key(b"b", 6, 1), b"v")        # newer after older
    b.add(pack_internal_key(b"b", 5, 0), b"")             # same seq, lower kind: later
    b.add(bytearray(pack_internal_key(b"c", 1, 1)), memoryview(b"mv"))
    with pytest.raises(InvalidArgumentError):
        b.add_range_tombstone(b"a", b"b", -1)
    with pytest.raises(ArgumentTypeError):
        b.add_range_tombstone("a", b"b", 1)
    b.finish()
    with pytest.raises(ClosedError):
        b.add(pack_internal_key(b"d", 1, 1), b"v")
    w.close()
    for kw in ({"block_size": 10}, {"block_restart_interval": 0}, {"bloom_bits_per_key": -1},
               {"compression": "zstd"}):
        with pytest.raises(InvalidArgumentError):
            TableBuilder(fs.create("y.sst"), **kw)
    with pytest.raises(ArgumentTypeError):
        TableBuilder(fs.create("y.sst"), block_size="4096")
    r = open_table(fs, "x.sst")
    assert list(r.entries()) == [(pack_internal_key(b"b", 5, 1), b"v"),
                                 (pack_internal_key(b"b", 5, 0), b""),
                                 (pack_internal_key(b"c", 1, 1), b"mv")]
    with pytest.raises(ArgumentTypeError):
        r.get("b", 1)
    with pytest.raises(InvalidArgumentError):
        r.get(b"b", -1)
    with pytest.raises(InvalidArgumentError):
        r.get(b"b", MAX_SEQUENCE + 1)
    with pytest.raises(ArgumentTypeError):
        r.get(b"b", 1.0)
    with pytest.raises(InvalidArgumentError):
        r.blocks(b"short")
    assert r.get(bytearray(b"c"), 1) == (1, 1, b"mv")


# ---------------------------------------------------------------------------
# corruption, truncation, versions

def _read_everything(fs, name, entries, verify=True):
    """Open and read all through every path; return the values seen."""
    r = open_table(fs, name, verify_checksums=verify)
    try:
        got = list(r.entries())
        rev = [kv for keys, vals in r.blocks(reverse=True) for kv in zip(keys, vals)]
        gets = [r.get(k[:-8], int.from_bytes(k[-8:], "little") >> 8) for k, _ in entries[::7]]
        return got, rev, gets, r.range_tombstones
    finally:
        r.close()


@pytest.mark.parametrize("compression", ["lz4", None])
def test_every_byte_flip_is_detected(fs, compression):
    rng = random.Random(11)
    entries = make_entries(rng, 60, value_size=(0, 60))
    entries = [(k, v * 3) for k, v in entries]
    rts = [(b"a", b"c", 3), (b"x", b"y", 4)]
    build(fs, "c.sst", entries, rts, block_size=256, compression=compression)
    good = get_bytes(fs, "c.sst")
    ok = _read_everything(fs, "c.sst", entries)
    step = max(1, len(good) // 1500)
    for off in range(0, len(good), step):
        bad = bytearray(good)
        bad[off] ^= 1 << (off % 8)
        put_bytes(fs, "bad.sst", bytes(bad))
        try:
            seen = _read_everything(fs, "bad.sst", entries)
        except CorruptionError as exc:
            assert exc.file == "bad.sst" and exc.offset is not None and 0 <= exc.offset < len(good)
            continue
        pytest.fail(f"flip at {off} not detected: same={seen == ok}")


def _damaged_table(fs, name, n, b):
    """``n`` entries in uncompressed 512-byte blocks written as ``name``, and
    a copy ``name2`` with a byte flipped in the middle of data block ``b``.
    Returns ``(entries, block offsets, the damaged copy open)``."""
    entries = [(pack_internal_key(b"%05d" % i, 1, KIND_VALUE), b"value%d" % i) for i in range(n)]
    build(fs, name + ".sst", entries, block_size=512, compression=None)
    good = get_bytes(fs, name + ".sst")
    r = open_table(fs, name + ".sst")
    offs, sizes = r._index().offs, r._index().sizes
    r.close()
    bad = bytearray(good)
    bad[offs[b] + sizes[b] // 2] ^= 0xFF
    put_bytes(fs, name + "2.sst", bytes(bad))
    return entries, offs, open_table(fs, name + "2.sst")


def test_corruption_offsets_point_at_the_block(fs):
    b = 5
    entries, offs, r = _damaged_table(fs, "o", 500, b)
    first_key = None
    for k, _ in entries:
        if r.approximate_offset(k) == offs[b]:
            first_key = k
            break
    with pytest.raises(CorruptionError) as ei:
        r.get(first_key[:-8], 5)
    assert ei.value.offset == offs[b] and ei.value.file == "o2.sst"
    # unaffected blocks still read
    assert r.get(entries[0][0][:-8], 5) == (1, 1, b"value0")


def test_readahead_past_damage_raises_only_on_reaching_it(fs):
    """A walk whose readahead covers a damaged block yields every block
    before it, then raises CorruptionError naming that block."""
    b = 6                                   # inside the first readahead (16 KiB)
    entries, offs, r = _damaged_table(fs, "d", 800, b)
    it = r.blocks()
    got = [next(it) for _ in range(b)]
    assert [kv for keys, values in got for kv in zip(keys, values)] == \
        entries[:sum(len(k) for k, _ in got)]
    with pytest.raises(CorruptionError) as ei:
        next(it)
    assert ei.value.offset == offs[b] and ei.value.file == "d2.sst"


def test_truncated_files(fs):
    entries = [(pack_internal_key(b"%05d" % i, 1, KIND_VALUE), b"v" * 40) for i in range(300)]
    build(fs, "t.sst", entries, block_size=512)
    good = get_bytes(fs, "t.sst")
    for cut in list(range(0, 200, 7)) + list(range(len(good) - 200, len(good))):
        put_bytes(fs, "cut.sst", good[:cut])
        with pytest.raises(CorruptionError) as ei:
            open_table(fs, "cut.sst")
        assert ei.value.file == "cut.sst"


def _rewrite_footer(data: bytes, version: int) -> bytes:
    _, mi, ix = decode_footer(data[-FOOTER_SIZE:], "t", 0)
    return data[:-FOOTER_SIZE] + encode_footer(mi, ix, version)


def test_newer_format_version_is_unsupported(fs):
    build(fs, "v.sst", [(pack_internal_key(b"a", 1, 1), b"v")])
    good = get_bytes(fs, "v.sst")
    put_bytes(fs, "v2.sst", _rewrite_footer(good, 2))
    with pytest.raises(UnsupportedFormatError) as ei:
        open_table(fs, "v2.sst")
    assert "v2.sst" in str(ei.value)
    # a flipped version byte (checksum not updated) is corruption, not "newer"
    bad = bytearray(good)
    bad[-16] ^= 0x02
    put_bytes(fs, "v3.sst", bytes(bad))
    with pytest.raises(CorruptionError):
        open_table(fs, "v3.sst")
    # not a table at all
    put_bytes(fs, "junk.sst", b"\x00" * 100)
    with pytest.raises(CorruptionError, match="magic"):
        open_table(fs, "junk.sst")


def test_footer_layout(fs):
    build(fs, "f.sst", [(pack_internal_key(b"a", 1, 1), b"v")])
    data = get_bytes(fs, "f.sst")
    version, crc, magic = struct.unpack("<IIQ", data[-16:])
    assert data[-8:] == b"SDLSMSST" and magic == TABLE_MAGIC and version == 1
    assert crc == N.checksum(data[-FOOTER_SIZE:-12]) & 0xFFFFFFFF


def test_bloom_filters_absent_keys(fs):
    entries = [(pack_internal_key(b"k%05d" % i, 1, KIND_VALUE), b"v") for i in range(2000)]
    build(fs, "b.sst", entries)
    r = open_table(fs, "b.sst")
    fp = sum(r.may_contain(b"absent%05d" % i) for i in range(2000))
    assert fp < 100                     # ~1% expected at 10 bits per key
    assert all(r.may_contain(k[:-8]) for k, _ in entries)
    assert r.blocks_loaded == 0
    build(fs, "nb.sst", entries, bloom_bits_per_key=0)
    r2 = open_table(fs, "nb.sst")
    assert r2.may_contain(b"absent") and r2.properties.filter_size == 0
    assert r2.get(b"absent", 5) is None


GOLDEN_SST = bytes.fromhex(
    "000d036170706c650107000000000000726564000c007065617200080000000000000000000001000000004ea0cff792"
    "00028800022c690700d53a455800090162020900000000000063000000000100000000bd9b8fb8000c02706561720008"
    "000000000000002a00000000010000000030150c01000b04636f6d7072657373696f6e6e6f6e65000901646174615f73"
    "697a652f000b0166696c7465725f73697a6509000e01666f726d61745f76657273696f6e01000a01696e6465785f7369"
    "7a6519000b0c6c6172676573745f6b6579706561720008000000000000000b016c6172676573745f73657109000f016e"
    "756d5f646174615f626c6f636b7301000b016e756d5f656e7472696573020014016e756d5f72616e67655f746f6d6273"
    "746f6e657301000e016e756d5f746f6d6273746f6e657301000c017261775f6b65795f73697a6519000e017261775f76"
    "616c75655f73697a6503000c0d736d616c6c6573745f6b65796170706c650107000000000000000c01736d616c6c6573"
    "745f7365710700000000120000001f0000002e000000400000004e00000068000000770000008a00000099000000b100"
    "0000c3000000d3000000e5000000010100000f0000000011d0a811000c0266696c7465722e626c6f6f6d2f09000a0370"
    "726f7065727469657375d10200080272616e676564656c3d150000000011000000210000000300000000f9036403cb03"
    "3e57190000000000000000000000000000000000000000000000000000000000000000000000010000007eb497955344"
    "4c534d535354")


def test_golden_example(fs):
    """The worked example of docs/format.md, byte for byte."""
    w = fs.create("000005.sst")
    b = TableBuilder(w, name="000005.sst", compression=None)
    b.add(pack_internal_key(b"apple", 7, KIND_VALUE), b"red")
    b.add(pack_internal_key(b"pear", 8, KIND_TOMBSTONE), b"")
    b.add_range_tombstone(b"b", b"c", 9)
    b.finish()
    w.close()
    assert get_bytes(fs, "000005.sst") == GOLDEN_SST
    r = open_table(fs, "000005.sst")
    assert r.get(b"apple", 7) == (7, KIND_VALUE, b"red")
    assert r.get(b"pear", 100) == (8, KIND_TOMBSTONE, b"")
    assert r.range_tombstones == [(b"b", b"c", 9)]


def test_unverified_reads_still_never_crash(fs):
    """verify_checksums=False: damaged blocks give CorruptionError or (for
    payload bytes) different data, but never another exception type."""
    rng = random.Random(4)
    entries = [(pack_internal_key(b"%05d" % i, 1, KIND_VALUE), b"ab" * rng.randrange(1, 60))
               for i in range(400)]
    build(fs, "u.sst", entries, block_size=512, compression="lz4")
    good = get_bytes(fs, "u.sst")
    r = open_table(fs, "u.sst")
    data_size = r.properties.data_size
    r.close()
    for off in range(0, data_size, 13):
        bad = bytearray(good)
        bad[off] ^= 0xA5
        put_bytes(fs, "u2.sst", bytes(bad))
        r = open_table(fs, "u2.sst", verify_checksums=False)
        try:
            list(r.entries())
            r.get(b"00100", 5)
        except CorruptionError as exc:
            assert exc.file == "u2.sst"
        finally:
            r.close()


def test_index_and_filter_in_the_block_cache(fs):
    entries = [(pack_internal_key(b"%05d" % i, 3, KIND_VALUE), b"v%d" % i) for i in range(3000)]
    build(fs, "i.sst", entries, block_size=256)
    cache = BlockCache(1 << 22, shards=1)
    r = open_table(fs, "i.sst", block_cache=cache, cache_id=9, cache_index_and_filter_blocks=True)
    assert cache.get((9, -1)) is not None
    usage_with_index = cache.usage
    assert usage_with_index > 3000 // 10 * 20          # the index is charged to the cache
    assert r.get(b"00042", 5) == (3, 1, b"v42") and r.index_loads == 0
    cache.clear()
    assert r.get(b"00043", 5) == (3, 1, b"v43") and r.index_loads == 1   # re-read
    assert all(r.may_contain(k[:-8]) for k, _ in entries[::50])
    assert sum(r.may_contain(b"absent%d" % i) for i in range(1000)) < 60
    assert list(r.entries()) == entries
    assert r.approximate_offset(entries[-1][0]) > 0
    r._check()
    # a damaged index found on a re-read is corruption, not a wrong answer
    good = get_bytes(fs, "i.sst")
    ixoff = r._ix_handle[0]
    bad = bytearray(good)
    bad[ixoff + 3] ^= 0x10
    w = fs.create("i.sst")          # same file, rewritten in place (the open fd sees it)
    w.append(bytes(bad))
    w.close()
    cache.clear()
    with pytest.raises(CorruptionError) as ei:
        r.get(b"00044", 5)
    assert ei.value.offset == ixoff and ei.value.file == "i.sst"
    r.close()


def test_blocks_with_user_keys(fs):
    entries = make_entries(random.Random(8), 200)
    build(fs, "u.sst", entries, block_size=128)
    for cache in (None, BlockCache(1 << 20)):
        r = open_table(fs, "u.sst", block_cache=cache, cache_id=1)
        for reverse in (False, True):
            for start in (None, entries[len(entries) // 2][0]):
                a = list(r.blocks(start, reverse))
                b = list(r.blocks_with_user_keys(start, reverse))
                assert [(k, v) for k, v, _ in b] == a
                assert all(u == [k[:-8] for k in k_] for k_, _, u in b)
        r.close()


def _raw_blocks(r, chunk_bytes=1 << 20, start=None, stop=None):
    """Per-block ``(contents, last user key, offset)`` from raw_block_chunks."""
    out = []
    for data, ends, uks, offs in r.raw_block_chunks(chunk_bytes, start, stop):
        begin = 0
        for end, uk, off in zip(ends, uks, offs):
            out.append((bytes(data[begin:end]), uk, off))
            begin = end
    return out


def test_raw_block_chunks_read_only_the_blocks_a_range_needs(fs):
    """raw_block_chunks(start=, stop=) yields exactly the blocks that may hold
    a user key in [start, stop): from the first whose last user key is >=
    start to the first whose last user key is >= stop (a subcompaction's
    slice), in file reads of about chunk_bytes, whatever the chunk size."""
    entries = make_entries(random.Random(9), 300, tomb_p=0.0)
    build(fs, "r.sst", entries, block_size=128)
    r = open_table(fs, "r.sst")
    every = _raw_blocks(r)
    assert len(every) > 10
    assert [b for b, _, _ in _raw_blocks(r, 300)] == [b for b, _, _ in every]
    assert len(list(r.raw_block_chunks(300))) > len(list(r.raw_block_chunks())) == 1
    uks = sorted({k[:-8] for k, _ in entries})
    for start, stop in ((None, None), (uks[40], None), (None, uks[200]), (uks[40], uks[41]),
                        (uks[100], uks[260]), (uks[-1] + b"\x00", None)):
        got = _raw_blocks(r, 1 << 20, start, stop)
        lasts = [u for _, u, _ in every]
        lo = 0 if start is None else next((i for i, u in enumerate(lasts) if u >= start),
                                          len(lasts))
        hi = len(lasts) if stop is None else next(
            (i + 1 for i, u in enumerate(lasts) if u >= stop), len(lasts))
        assert got == every[lo:hi]
        # every entry in range lies in the blocks read
        inside = {k for k, _ in entries if (start is None or k[:-8] >= start)
                  and (stop is None or k[:-8] < stop)}
        read = {k for b, _, _ in got for k in N.block_decode(b)[0]}
        assert inside <= read
    assert r.block_sizes()[0] == [u for _, u, _ in every]
    with pytest.raises(ArgumentTypeError):
        list(r.raw_block_chunks(start="a"))
    r.close()


def test_verify_whole_table(fs):
    entries = make_entries(random.Random(12), 300)
    build(fs, "w.sst", entries, block_size=256)
    r = open_table(fs, "w.sst", verify_checksums=False, block_cache=BlockCache(1 << 20))
    assert r.verify() == len(entries)
    list(r.blocks())                       # cached blocks do not hide file damage from verify
    good = get_bytes(fs, "w.sst")
    off = r.approximate_offset(entries[len(entries) // 2][0]) + 10
    bad = bytearray(good)
    bad[off] ^= 0x40
    w = fs.create("w.sst")
    w.append(bytes(bad))
    w.close()
    with pytest.raises(CorruptionError) as ei:
        r.verify()
    assert ei.value.file == "w.sst" and ei.value.offset <= off
    r.close()
    with pytest.raises(ClosedError):
        r.verify()


@pytest.mark.parametrize("reverse", [False, True])
def test_block_runs_read_decode_and_respect_bound(fs, reverse):
    """block_runs: the first block alone, then runs of blocks read and
    decoded together (one file read each), never past ``bound``, not
    inserted in the block cache; the entries are those of the blocks."""
    entries = [(pack_internal_key(b"%06d" % i, 1, KIND_VALUE), b"v%05d" % i * 8)
               for i in range(4000)]
    build(fs, "br.sst", entries, block_size=512)
    cache = BlockCache(1 << 24)
    r = open_table(fs, "br.sst", block_cache=cache, cache_id=4)
    reads = []
    real_read = r._file.read
    r._file.read = lambda off, n: (reads.append((off, n)), real_read(off, n))[1]
    runs = list(r.block_runs(reverse=reverse))
    if reverse:
        runs.reverse()
    assert [kv for keys, values in runs for kv in zip(keys, values)] == entries
    assert len(runs) < r.num_data_blocks // 4 and len(reads) <= len(runs)
    assert len(cache) == 1                  # only the walk's first block
    # a bounded walk reads at most one block wholly beyond the bound (as
    # without readahead: the walk learns a block is beyond by reading it)
    ix = r._index()
    lo_key, hi_key = b"001000", b"001200"
    del reads[:]
    if not reverse:
        start, bound = pack_internal_key(lo_key, 2**56 - 1, 0xFF), hi_key
        beyond = next(j for j in range(1, len(ix.uks)) if ix.uks[j - 1] > hi_key)
        limit = ix.offs[beyond] + ix.sizes[beyond] + 5
    else:
        start, bound = pack_internal_key(hi_key, 0, 0), lo_key
        beyond = max(j for j in range(len(ix.uks)) if ix.uks[j] < lo_key)
        limit = ix.offs[beyond]
    seen = []
    for keys, _ in r.block_runs(start, reverse, bound):
        seen.extend(k[:-8] for k in keys)
        if (not reverse and keys[0][:-8] > bound) or (reverse and keys[-1][:-8] < bound):
            break
    assert {b"%06d" % i for i in range(1000, 1201)} <= set(seen)
    assert reads and len(reads) < 20
    for off, n in reads:
        assert (off + n <= limit) if not reverse else (off >= limit)
    r.close()


def test_block_runs_fall_back_at_damage(fs):
    b = 4                                   # inside the first run
    entries, offs, r = _damaged_table(fs, "e", 800, b)
    got = []
    with pytest.raises(CorruptionError) as ei:
        for keys, values in r.block_runs():
            got.extend(zip(keys, values))
    assert ei.value.offset == offs[b] and ei.value.file == "e2.sst"
    assert got == entries[:len(got)] and len(got) > 0
