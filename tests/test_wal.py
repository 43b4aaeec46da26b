"""Tests of lsm/wal.py: the log format, torn tails and corruption handling."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from blockdev.errors import ArgumentTypeError, ClosedError, CorruptionError
from blockdev.fs import PosixFS
from lsm import wal
from lsm.wal import BLOCK_SIZE, HEADER_SIZE, LogReader, LogWriter


@pytest.fixture
def fs(tmp_path):
    f = PosixFS(str(tmp_path / "db"), create=True)
    yield f
    f.close()


def write_log(fs, name, records):
    w = fs.create(name)
    lw = LogWriter(w, name)
    offsets = [lw.add_record(r) for r in records]
    lw.sync()
    assert lw.size == w.size
    lw.close()
    return offsets


def read_log(fs, name, **kw):
    f = fs.open(name)
    try:
        r = LogReader(f, name, **kw)
        return list(r), r
    finally:
        f.close()


def put_bytes(fs, name, data):
    w = fs.create(name)
    w.append(data)
    w.close()


def get_bytes(fs, name):
    f = fs.open(name)
    try:
        return f.read(0, f.size)
    finally:
        f.close()


SIZES = [0, 1, 6, 7, 100, BLOCK_SIZE - 2 * HEADER_SIZE, BLOCK_SIZE - HEADER_SIZE - 1,
         BLOCK_SIZE - HEADER_SIZE, BLOCK_SIZE - HEADER_SIZE + 1, BLOCK_SIZE, 3 * BLOCK_SIZE + 5, 1]


def test_round_trip_sizes_crossing_blocks(fs):
    rng = random.Random(1)
    records = [rng.randbytes(n) for n in SIZES * 2]
    offsets = write_log(fs, "a.log", records)
    got, r = read_log(fs, "a.log", paranoid=True)
    assert got == records
    assert r.last_record_offset == offsets[-1]
    assert r.end_offset == fs.size("a.log")
    assert not r.torn_tail
    assert offsets == sorted(offsets)


def test_layout_bytes_of_a_small_record(fs):
    write_log(fs, "a.log", [b"hello"])
    data = get_bytes(fs, "a.log")
    crc, length, ftype = struct.unpack_from("<IHB", data)
    assert (length, ftype) == (5, wal.FULL)
    assert data[7:] == b"hello"
    import xxhash
    assert crc == xxhash.xxh64_intdigest(b"hello", wal.FULL) & 0xFFFFFFFF


def test_trailer_is_zero_and_fragment_never_starts_in_last_six_bytes(fs):
    # first record leaves exactly 6 bytes in block 0
    first = BLOCK_SIZE - HEADER_SIZE - 6
    offsets = write_log(fs, "a.log", [b"x" * first, b"y"])
    data = get_bytes(fs, "a.log")
    assert data[BLOCK_SIZE - 6:BLOCK_SIZE] == bytes(6)
    assert offsets[1] == BLOCK_SIZE
    got, _ = read_log(fs, "a.log", paranoid=True)
    assert got == [b"x" * first, b"y"]


def test_fragment_types_of_a_large_record(fs):
    write_log(fs, "a.log", [b"z" * (2 * BLOCK_SIZE + 10)])
    data = get_bytes(fs, "a.log")
    types = [data[6], data[BLOCK_SIZE + 6], data[2 * BLOCK_SIZE + 6]]
    assert types == [wal.FIRST, wal.MIDDLE, wal.LAST]


def test_empty_log_and_argument_checks(fs):
    write_log(fs, "a.log", [])
    got, r = read_log(fs, "a.log")
    assert got == [] and r.last_record_offset == -1
    w = fs.create("b.log")
    lw = LogWriter(w, "b.log")
    with pytest.raises(ArgumentTypeError):
        lw.add_record("text")
    lw.add_record(bytearray(b"ba"))
    lw.add_record(memoryview(b"mv"))
    lw.close()
    with pytest.raises(ClosedError):
        lw.add_record(b"x")
    assert read_log(fs, "b.log")[0] == [b"ba", b"mv"]
    with pytest.raises(ArgumentTypeError):
        LogWriter(object())


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(sizes=st.lists(st.integers(0, 40000), min_size=1, max_size=5), data=st.data())
def test_torn_tail_at_every_offset_is_silent(tmp_path_factory, sizes, data):
    root = tmp_path_factory.mktemp("torn")
    fs = PosixFS(str(root), create=True)
    rng = random.Random(len(sizes))
    records = [rng.randbytes(n) for n in sizes]
    offsets = write_log(fs, "a.log", records)
    full = get_bytes(fs, "a.log")
    last_start = offsets[-1]
    # every cut inside the last record (payload and headers), plus zero-filled tails
    cut = data.draw(st.integers(last_start, len(full) - 1), label="cut")
    zero_fill = data.draw(st.booleans(), label="zero_fill")
    torn = full[:cut] + (bytes(len(full) - cut) if zero_fill else b"")
    put_bytes(fs, "t.log", torn)
    got, r = read_log(fs, "t.log", paranoid=True)
    assert got == records[:-1]
    fs.close()


def test_torn_tail_exhaustive_small_record(fs):
    records = [b"a" * 50, b"b" * 70]
    offsets = write_log(fs, "a.log", records)
    full = get_bytes(fs, "a.log")
    for cut in range(offsets[1], len(full)):
        put_bytes(fs, "t.log", full[:cut])
        got, r = read_log(fs, "t.log", paranoid=True)
        assert got == records[:1], cut
        assert r.end_offset == offsets[1]


def test_torn_multi_block_record_at_block_boundary(fs):
    records = [b"a" * 10, b"b" * (BLOCK_SIZE * 2)]
    write_log(fs, "a.log", records)
    full = get_bytes(fs, "a.log")
    for cut in (BLOCK_SIZE, 2 * BLOCK_SIZE, 2 * BLOCK_SIZE + 3):
        put_bytes(fs, "t.log", full[:cut])
        got, r = read_log(fs, "t.log", paranoid=True)
        assert got == records[:1]
        assert r.torn_tail


def corrupt_at(fs, name, offset, new=None):
    data = bytearray(get_bytes(fs, name))
    data[offset] = (data[offset] ^ 0x55) if new is None else new
    put_bytes(fs, name, bytes(data))


def test_mid_log_checksum_corruption_paranoid_and_not(fs):
    rng = random.Random(2)
    records = [rng.randbytes(1000) for _ in range(100)]   # ~3 blocks
    offsets = write_log(fs, "a.log", records)
    victim = 5
    corrupt_at(fs, "a.log", offsets[victim] + HEADER_SIZE + 10)
    with pytest.raises(CorruptionError) as ei:
        read_log(fs, "a.log", paranoid=True)
    assert ei.value.file == "a.log" and ei.value.offset == offsets[victim]
    reports = []
    got, r = read_log(fs, "a.log", reporter=lambda n, why: reports.append((n, why)))
    # records 5.. up to the end of block 0 are dropped; everything from block 1 on survives
    first_in_block1 = next(i for i, o in enumerate(offsets) if o >= BLOCK_SIZE)
    expect = records[:victim] + [rec for i, rec in enumerate(records)
                                 if i >= first_in_block1 and offsets[i] >= BLOCK_SIZE]
    # a record straddling blocks 0/1 is dropped (its tail is reported as a damaged fragment)
    assert got == expect
    assert reports and "checksum" in reports[0][1]
    assert sum(n for n, _ in reports) == r.dropped_bytes > 0


def test_corrupt_type_and_length(fs):
    records = [b"r%d" % i * 300 for i in range(300)]
    offsets = write_log(fs, "a.log", records)
    corrupt_at(fs, "a.log", offsets[3] + 6, 9)       # unknown type
    with pytest.raises(CorruptionError, match="type"):
        read_log(fs, "a.log", paranoid=True)
    write_log(fs, "b.log", records)
    data = bytearray(get_bytes(fs, "b.log"))
    struct.pack_into("<H", data, offsets[3] + 4, 40000)   # crosses block, file continues
    put_bytes(fs, "b.log", bytes(data))
    with pytest.raises(CorruptionError, match="length") as ei:
        read_log(fs, "b.log", paranoid=True)
    assert ei.value.offset == offsets[3]
    got, _ = read_log(fs, "b.log")
    assert got[:3] == records[:3] and got[-1] == records[-1]


def test_zeroed_region_before_data_is_corruption(fs):
    records = [b"q" * 20000 for _ in range(6)]
    offsets = write_log(fs, "a.log", records)
    data = bytearray(get_bytes(fs, "a.log"))
    data[offsets[1]:offsets[1] + HEADER_SIZE] = bytes(HEADER_SIZE)
    put_bytes(fs, "a.log", bytes(data))
    with pytest.raises(CorruptionError, match="zero"):
        read_log(fs, "a.log", paranoid=True)
    got, r = read_log(fs, "a.log")
    assert got[0] == records[0] and records[-1] == got[-1] and len(got) < 6


def test_every_single_byte_flip_is_detected_or_tail(fs):
    """No flipped byte ever yields a wrong record: records come out as a
    subsequence of the originals, and paranoid mode raises unless the flip is
    in the last record's length field (which then looks like a torn tail) or
    in a block trailer."""
    rng = random.Random(3)
    records = [rng.randbytes(rng.randrange(0, 3000)) for _ in range(30)]
    write_log(fs, "a.log", records)
    full = get_bytes(fs, "a.log")
    for off in range(0, len(full), 37):
        data = bytearray(full)
        data[off] ^= 0x01
        put_bytes(fs, "c.log", bytes(data))
        got, _ = read_log(fs, "c.log")
        it = iter(records)
        assert all(any(g == x for x in it) for g in got), off


def test_multi_fragment_damage_non_paranoid_resync(fs):
    records = [b"s" * 10, b"L" * (3 * BLOCK_SIZE), b"t" * 10]
    offsets = write_log(fs, "a.log", records)
    corrupt_at(fs, "a.log", offsets[1] + HEADER_SIZE + 5)   # FIRST fragment damaged
    reports = []
    got, _ = read_log(fs, "a.log", reporter=lambda n, w: reports.append(w))
    assert got == [records[0], records[2]]
    assert any("damaged record" in w for w in reports)


def test_golden_example(fs):
    """The worked example of docs/format.md, byte for byte."""
    write_log(fs, "000003.log", [b"hello", b""])
    assert get_bytes(fs, "000003.log") == bytes.fromhex(
        "b2a1d004 0500 01 68656c6c6f 4bbea336 0000 01")
