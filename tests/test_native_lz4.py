"""The LZ4 block codec and the bulk physical-block functions (native/lz4.c
vs the twins at the end of lsm/_twins.py): ``lz4_compress``,
``lz4_decompress``, ``blocks_seal``, ``blocks_open``.

Three kinds of checks:

* C == twin: the same bytes (the compressor is deterministic and the C code
  replicates it exactly), or the same error -- exception type, message,
  ``file``, ``offset`` and (``blocks_open``) ``block_index``.  The C side
  comes from ``lsm._native.c_api()`` whatever ``LSM_PURE`` says; without
  the extension these comparisons skip;
* interop with the ``lz4`` package: it decodes what we write, we decode
  what it writes, and on damaged streams both decoders accept and reject
  the same inputs (one documented exception: a match offset of 0);
* the SSTable block format: ``blocks_seal`` writes what
  ``make_physical_block`` writes (with our compressor in place of the
  package's), ``blocks_open`` returns what ``unwrap_physical_block`` returns
  and raises its errors (message, file, offset).
"""

from __future__ import annotations

import os
import random
import struct
import subprocess
import sys
from array import array
from typing import Any, Callable

import lz4.block
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from blockdev.errors import ArgumentTypeError, CorruptionError, InvalidArgumentError
from lsm import _native
from lsm import _twins as T
from lsm.sstable import format as F

C = _native.c_api()
CL = C if C is not None and hasattr(C, "lz4_compress") else None
IMPLS = [pytest.param(T, id="twin")] + [
    pytest.param(CL, id="c", marks=pytest.mark.skipif(CL is None, reason="lsm._lsm_c not built"))]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
U32 = struct.Struct("<I")


def need_c() -> Any:
    if CL is None:
        pytest.skip("lsm._lsm_c is not built: nothing to compare the twins with")
    return CL


def outcome(fn: Callable[..., Any], *args: Any) -> tuple:
    """("ok", result) or ("err", type, message, file, offset, block_index)."""
    try:
        return ("ok", fn(*args))
    except Exception as exc:  # noqa: BLE001 - the type is part of the outcome
        return ("err", type(exc), str(exc), getattr(exc, "file", None),
                getattr(exc, "offset", None), getattr(exc, "block_index", None))


def bare(res: tuple) -> str:
    """The message of an error outcome without CorruptionError's
    " in FILE at offset N" suffix."""
    text = res[2]
    where = ""
    if res[3] is not None:
        where = f" in {res[3]}"
    if res[4] is not None:
        where += f" at offset {res[4]}"
    assert text.endswith(where)
    return text[:len(text) - len(where)] if where else text


def same(name: str, *args: Any) -> tuple:
    """Both implementations on ``args``: identical outcomes (or the twin's
    alone when the extension is not built)."""
    a = outcome(getattr(T, name), *args)
    if CL is not None:
        b = outcome(getattr(CL, name), *args)
        assert a == b, f"{name}: twin {a!r} != C {b!r}"
    return a


# ---- corpora ---------------------------------------------------------------

def bench_like(n: int, seed: int) -> bytes:
    """The benchmark's value style: random pieces from a small pool, each
    repeated a few times, between key-like counters."""
    rnd = random.Random(seed)
    pool = [rnd.randbytes(rnd.randrange(4, 40)) for _ in range(40)]
    out = bytearray()
    while len(out) < n:
        out += b"key%08d" % rnd.randrange(10**8)
        out += rnd.choice(pool) * rnd.randrange(1, 4)
    return bytes(out[:n])


def corpus() -> list[bytes]:
    rnd = random.Random(7)
    out = [b"", bytes(65536), b"the quick brown fox jumps over the lazy dog. " * 300,
           rnd.randbytes(4096), rnd.randbytes(70000), bench_like(4096, 1), bench_like(65536, 2),
           bench_like(200_000, 3), b"ab" * 40000, bytes(range(256)) * 300,
           b"\x00" * 13, b"\x00" * 12, b"a" * 300 + rnd.randbytes(300) + b"a" * 300]
    for n in range(1, 21):
        out += [rnd.randbytes(n), b"x" * n, (b"ab" * n)[:n]]
    # matches right at the end rules: a repeat ending at n-5 .. n-13
    for tail in range(3, 16):
        out.append(b"0123456789abcdef" * 4 + b"0123456789abcdef"[:tail] + bytes(tail))
    return out


CORPUS = corpus()


@st.composite
def pieces(draw: Any) -> bytes:
    """Random pieces from a small drawn pool, repeated: compressible data
    with matches of every length and distance."""
    pool = draw(st.lists(st.binary(min_size=1, max_size=24), min_size=1, max_size=6))
    parts = draw(st.lists(st.tuples(st.integers(0, len(pool) - 1), st.integers(1, 20)),
                          max_size=40))
    return b"".join(pool[i] * k for i, k in parts)


data_strategy = st.one_of(st.binary(max_size=600), pieces())


# ---- lz4_compress / lz4_decompress ----------------------------------------

def test_compress_corpus_identical_and_interoperable() -> None:
    for data in CORPUS:
        comp = same("lz4_compress", data)[1]
        assert len(comp) <= T.lz4_bound(len(data))
        assert lz4.block.decompress(comp, uncompressed_size=len(data)) == data
        assert lz4.block.decompress(U32.pack(len(data)) + comp) == data
        assert same("lz4_decompress", comp, len(data)) == ("ok", data)


def test_decompress_lz4_package_output() -> None:
    for data in CORPUS:
        for kw in ({}, {"mode": "fast", "acceleration": 8}, {"mode": "high_compression"}):
            theirs = lz4.block.compress(data, store_size=False, **kw)
            assert same("lz4_decompress", theirs, len(data)) == ("ok", data)


def test_compress_ratio_close_to_lz4_package() -> None:
    """Same ballpark as the reference compressor (a regression guard on the
    matcher, not an exact figure)."""
    for seed in range(3):
        data = bench_like(4096, seed)
        ours = len(T.lz4_compress(data))
        theirs = len(lz4.block.compress(data, store_size=False))
        assert ours <= theirs * 1.1
    assert len(T.lz4_compress(bytes(65536))) < 300


def test_compress_output_shape() -> None:
    """Fixed expectations of the algorithm: short inputs are one literal
    run; the format's end rules hold (last 5 bytes literals)."""
    for n in range(13):
        data = bytes(n)
        exp = bytes([min(n, 15) << 4]) + (bytes([n - 15]) if n >= 15 else b"") + data
        assert T.lz4_compress(data) == exp
    # 13 zero bytes: a match at 1 (offset 1) of 7 bytes, then 5 literals
    assert T.lz4_compress(bytes(13)) == bytes([0x13, 0, 1, 0, 0x50]) + bytes(5)


@SETTINGS
@given(data_strategy)
def test_compress_roundtrip_and_identical(data: bytes) -> None:
    comp = same("lz4_compress", data)[1]
    assert len(comp) <= T.lz4_bound(len(data))
    assert same("lz4_decompress", comp, len(data)) == ("ok", data)
    assert lz4.block.decompress(U32.pack(len(data)) + comp) == data
    theirs = lz4.block.compress(data, store_size=False)
    assert same("lz4_decompress", theirs, len(data)) == ("ok", data)


def _damage(rnd: random.Random, comp: bytes, size: int) -> tuple[bytes, int]:
    c = bytearray(comp)
    how = rnd.randrange(5)
    if how == 0 and c:
        for _ in range(rnd.randrange(1, 3)):
            c[rnd.randrange(len(c))] = rnd.randrange(256)
    elif how == 1:
        del c[rnd.randrange(len(c) + 1):]
    elif how == 2:
        c += rnd.randbytes(rnd.randrange(1, 4))
    elif how == 3:
        size = max(0, size + rnd.randrange(-20, 20))
    elif c:
        c[rnd.randrange(len(c))] ^= 1 << rnd.randrange(8)
    return bytes(c), size


def _reference(comp: bytes, size: int) -> tuple:
    try:
        return ("ok", lz4.block.decompress(U32.pack(size) + comp))
    except lz4.block.LZ4BlockError:
        return ("err",)


def test_damaged_streams_same_error_and_lz4_agreement() -> None:
    """Damaged streams (bytes replaced, flipped, cut, extended, wrong
    sizes): C and twin give the same result or error; the lz4 package's
    decoder accepts exactly the same inputs with the same output, except a
    match offset of 0, which it tolerates and we reject."""
    rnd = random.Random(11)
    pool = [rnd.randbytes(rnd.randrange(4, 30)) for _ in range(20)]
    checked = 0
    for it in range(2500):
        data = b"".join(rnd.choice(pool) * rnd.randrange(1, 4)
                        for _ in range(rnd.randrange(0, 12)))
        comp = (T.lz4_compress(data) if it % 2 else
                lz4.block.compress(data, store_size=False,
                                   mode=rnd.choice(["default", "high_compression"])))
        bad, size = _damage(rnd, comp, len(data))
        ours = same("lz4_decompress", bad, size)
        ref = _reference(bad, size)
        if ours[0] == "ok" or ref[0] == "ok":
            if ours != ref:
                assert ours[0] == "err" and bare(ours) == T.LZ4_ERRORS[T.ERR_LZ4_BAD_OFFSET], \
                    (bad, size, ours, ref)
                assert bad[ours[4]:ours[4] + 2] == b"\x00\x00"
        else:
            assert ours[1] is CorruptionError
            assert bare(ours) in T.LZ4_ERRORS.values() and 0 <= ours[4] <= len(bad)
        checked += 1
    assert checked == 2500


@SETTINGS
@given(data_strategy, st.data())
def test_damaged_streams_hypothesis(data: bytes, d: Any) -> None:
    comp = T.lz4_compress(data)
    bad, size = _damage(random.Random(d.draw(st.integers(0, 2**32))), comp, len(data))
    res = same("lz4_decompress", bad, size)
    if res[0] == "err":
        assert res[1] is CorruptionError and res[3] is None


def _err(data: bytes, size: int) -> tuple[str, int]:
    res = same("lz4_decompress", data, size)
    assert res[0] == "err" and res[1] is CorruptionError and res[3] is None, res
    return bare(res), res[4]


def test_every_decoder_error_at_its_offset() -> None:
    E = T.LZ4_ERRORS
    lits8 = bytes([0x80]) + b"abcdefgh"
    tail = bytes([0x80]) + b"stuvwxyz"
    good = lits8 + b"\x08\x00" + tail       # 8 literals, 4 copied, 8 literals: 20
    assert same("lz4_decompress", good, 20) == ("ok", b"abcdefghabcdstuvwxyz")
    assert _err(b"", 3) == (E[T.ERR_LZ4_TRUNCATED], 0)
    assert _err(b"\xf0", 20) == (E[T.ERR_LZ4_TRUNCATED], 0)              # length byte missing
    assert _err(b"\xf0\xff", 300) == (E[T.ERR_LZ4_TRUNCATED], 0)
    assert _err(b"\x50abc", 5) == (E[T.ERR_LZ4_LITERALS_OVERRUN], 0)
    assert _err(b"\x50abcde", 4) == (E[T.ERR_LZ4_OUTPUT_OVERRUN], 0)
    assert _err(b"\x50abcde", 6) == (E[T.ERR_LZ4_SIZE_MISMATCH], 6)
    assert _err(good, 21) == (E[T.ERR_LZ4_SIZE_MISMATCH], len(good))
    assert _err(good, 19) == (E[T.ERR_LZ4_END_LIMIT], 0)                 # match in last 12
    assert _err(good + b"\x00", 20) == (E[T.ERR_LZ4_END_LIMIT], 11)      # trailing byte
    assert _err(lits8 + b"\x08\x00" + b"\x30xyz", 20) == (E[T.ERR_LZ4_END_LIMIT], 0)  # < 8 in
    assert _err(lits8 + b"\x00\x00" + tail, 20) == (E[T.ERR_LZ4_BAD_OFFSET], 9)
    assert _err(lits8 + b"\x09\x00" + tail, 20) == (E[T.ERR_LZ4_BAD_OFFSET], 9)
    assert _err(bytes([0x8f]) + b"abcdefgh\x01\x00" + b"\xff" * 6, 400) == \
        (E[T.ERR_LZ4_TRUNCATED], 0)                                      # match length byte
    long_match = bytes([0x8f]) + b"abcdefgh\x01\x00\x00" + tail         # 8 + 19 + 8
    assert same("lz4_decompress", long_match, 35) == ("ok", b"abcdefgh" + b"h" * 19 + b"stuvwxyz")
    assert _err(long_match, 25) == (E[T.ERR_LZ4_MATCH_END], 0)
    two = lits8 + b"\x08\x00" + bytes([0x80]) + b"ijklmnop" + b"\x01\x00" + tail
    assert same("lz4_decompress", two, 32) == ("ok", b"abcdefghabcdijklmnoppppp" + b"stuvwxyz")
    assert _err(two, 31) == (E[T.ERR_LZ4_END_LIMIT], 11)                 # second sequence
    assert _err(b"\x05", 0) == (E[T.ERR_LZ4_EMPTY], 0)
    assert _err(b"\x00\x00", 0) == (E[T.ERR_LZ4_EMPTY], 0)
    assert _err(b"", 0) == (E[T.ERR_LZ4_TRUNCATED], 0)
    assert same("lz4_decompress", b"\x00", 0) == ("ok", b"")


@pytest.mark.parametrize("impl", IMPLS)
def test_lz4_argument_errors(impl: Any) -> None:
    with pytest.raises(ArgumentTypeError, match="data"):
        impl.lz4_compress("text")
    with pytest.raises(ArgumentTypeError, match="data"):
        impl.lz4_decompress(None, 3)
    with pytest.raises(ArgumentTypeError, match="size"):
        impl.lz4_decompress(b"\x00", 0.0)
    with pytest.raises(ArgumentTypeError, match="size"):
        impl.lz4_decompress(b"\x00", True)
    with pytest.raises(InvalidArgumentError, match="size"):
        impl.lz4_decompress(b"\x00", -1)
    with pytest.raises(InvalidArgumentError, match="size"):
        impl.lz4_decompress(b"\x00", T.LZ4_MAX_INPUT + 1)
    data = bench_like(3000, 5)
    comp = T.lz4_compress(data)
    # other buffers: bytearray, memoryview (also non-contiguous / wide items)
    assert impl.lz4_compress(bytearray(data)) == comp
    assert impl.lz4_compress(memoryview(data)[::1]) == comp
    assert impl.lz4_compress(memoryview(data + data)[::2]) == T.lz4_compress((data + data)[::2])
    wide = memoryview(array("I", range(100)))
    assert impl.lz4_compress(wide) == T.lz4_compress(wide.tobytes())
    assert impl.lz4_decompress(bytearray(comp), 3000) == data
    assert impl.lz4_decompress(memoryview(b"xx" + comp)[2:], 3000) == data


# ---- blocks_seal / blocks_open --------------------------------------------

def split(data_blocks: list[bytes]) -> tuple[bytes, Any]:
    ends = array("Q")
    e = 0
    for b in data_blocks:
        e += len(b)
        ends.append(e)
    return b"".join(data_blocks), ends


def reference_seal(blocks: list[bytes], compress: bool, monkeypatch: Any) -> tuple[bytes, list]:
    """make_physical_block with our compressor in place of the package's."""
    with monkeypatch.context() as m:
        m.setattr(lz4.block, "compress",
                  lambda c, store_size: U32.pack(len(c)) + T.lz4_compress(c))
        made = [F.make_physical_block(b, compress) for b in blocks]
    return b"".join(p for p, _ in made), [s for _, s in made]


def handles(sizes: Any, gaps: list[int] | None = None) -> Any:
    offs = array("Q")
    o = 0
    for i, s in enumerate(sizes):
        o += gaps[i] if gaps else 0
        offs.append(o)
        o += s + F.BLOCK_TRAILER_SIZE
    return offs


SEAL_BLOCKS = ([b"", b"x", b"y" * 63, b"z" * 64, bytes(4096), CORPUS[3], bench_like(4096, 9),
                bench_like(16384, 10), b"short", b"ab" * 40]
               + [bench_like(n, n) for n in (60, 64, 70, 100, 500, 1000)])


@pytest.mark.parametrize("compress", [False, True])
def test_blocks_seal_is_make_physical_block(compress: bool, monkeypatch: Any) -> None:
    data, ends = split(SEAL_BLOCKS)
    res = same("blocks_seal", data, ends, compress)
    assert res[0] == "ok"
    phys, sizes = res[1]
    ref_phys, ref_sizes = reference_seal(SEAL_BLOCKS, compress, monkeypatch)
    assert phys == ref_phys
    assert list(sizes) == ref_sizes and sizes.typecode == "Q"
    if not compress:   # no compressor involved: the unpatched function agrees too
        assert phys == b"".join(F.make_physical_block(b, False)[0] for b in SEAL_BLOCKS)
    # the real unwrap_physical_block (lz4 package decoder) reads every block
    offs = handles(sizes)
    for blk, off, size in zip(SEAL_BLOCKS, offs, sizes):
        raw = phys[off:off + size + F.BLOCK_TRAILER_SIZE]
        assert F.unwrap_physical_block(raw, size, "t", off) == blk
    if compress:
        assert any(phys[o + s] == F.LZ4_COMPRESSION for o, s in zip(offs, sizes))
    # and blocks_open gives the contents back, with gaps and an offset base
    assert same("blocks_open", phys, offs, sizes, True, "t", 0) == ("ok", (data, ends))
    gaps = [3 * i for i in range(len(sizes))]
    spaced = bytearray()
    for g, blk_off, size in zip(gaps, offs, sizes):
        spaced += b"\xee" * g + phys[blk_off:blk_off + size + 5]
    assert same("blocks_open", bytes(spaced), handles(sizes, gaps), sizes, False, "t",
                1000) == ("ok", (data, ends))


@SETTINGS
@given(st.lists(data_strategy, max_size=8), st.booleans())
def test_blocks_seal_open_roundtrip(blocks: list[bytes], compress: bool) -> None:
    data, ends = split(blocks)
    phys, sizes = same("blocks_seal", data, ends, compress)[1]
    offs = handles(sizes)
    assert same("blocks_open", phys, offs, sizes, True, "f", 7) == ("ok", (data, ends))
    # blocks in another order, some twice
    order = list(reversed(range(len(blocks)))) + list(range(len(blocks)))[:2]
    got = same("blocks_open", memoryview(phys), array("Q", [offs[i] for i in order]),
               array("Q", [sizes[i] for i in order]), False, "f", 0)
    assert got[1][0] == b"".join(blocks[i] for i in order)


def test_blocks_open_needs_a_second_pass() -> None:
    """Contents far larger than the first scratch guess (3x the stored
    bytes): the C binding measures and decodes again; a damaged block
    behind the large ones is still reported as the twin reports it."""
    blocks = [bytes(60000), b"q" * 50000, bench_like(4096, 4), bytes(100000)]
    data, ends = split(blocks)
    phys, sizes = same("blocks_seal", data, ends, True)[1]
    assert sum(sizes) * 3 < len(data)
    offs = handles(sizes)
    assert same("blocks_open", phys, offs, sizes, True, "f", 0) == ("ok", (data, ends))
    bad = bytearray(phys)
    bad[offs[3] + 7] ^= 0x40
    res = same("blocks_open", bytes(bad), offs, sizes, True, "f", 50)
    assert res[:2] == ("err", CorruptionError) and bare(res) == "sstable: block checksum mismatch"
    assert res[3:] == ("f", 50 + offs[3], 3)
    # a declared size too large to fit, on a block behind a large one
    bad = bytearray(phys)
    struct.pack_into("<I", bad, offs[2], 255 * sizes[2] + 65)
    res = same("blocks_open", bytes(bad), offs, sizes, False, "f", 0)
    assert bare(res) == "sstable: lz4 block declares an impossible size" and res[5] == 2


def _rechecksum(buf: bytearray, off: int, size: int) -> None:
    struct.pack_into("<I", buf, off + size + 1,
                     T.checksum(bytes(buf[off:off + size + 1])) & 0xFFFFFFFF)


def _unwrap_outcome(buf: bytes, offs: Any, sizes: Any, verify: bool, name: str,
                    base: int) -> tuple:
    """unwrap_physical_block over the blocks, first error wins."""
    parts = []
    for i, (o, s) in enumerate(zip(offs, sizes)):
        try:
            parts.append(F.unwrap_physical_block(buf[o:o + s + 5], s, name, base + o, verify))
        except CorruptionError as exc:
            return ("err", CorruptionError, str(exc), exc.file, exc.offset, i)
    return ("ok", b"".join(parts))


def _compare_with_unwrap(buf: bytes, offs: Any, sizes: Any, verify: bool) -> tuple:
    ours = same("blocks_open", buf, offs, sizes, verify, "db/000007.sst", 4096)
    ref = _unwrap_outcome(buf, offs, sizes, verify, "db/000007.sst", 4096)
    if ours[0] == "ok" or ref[0] == "ok":
        assert ours[0] == ref[0] == "ok", (ours, ref)
        assert ours[1][0] == ref[1]
    else:
        prefix = "sstable: lz4 decompression failed ("
        if ref[2].startswith(prefix):   # the reason is the decoder's own
            assert ours[2].startswith(prefix)
            assert bare(ours)[len(prefix):-1].rsplit(" at byte ", 1)[0] in T.LZ4_ERRORS.values()
            assert ours[:2] + ours[3:] == ref[:2] + ref[3:]
        else:
            assert ours == ref
    return ours


def test_blocks_open_errors_match_unwrap_physical_block() -> None:
    blocks = [bench_like(3000, 20), b"raw block, stored" * 2, bench_like(5000, 21), b""]
    data, ends = split(blocks)
    phys, sizes = T.blocks_seal(data, ends, True)
    offs = handles(sizes)
    assert [phys[o + s] for o, s in zip(offs, sizes)] == [1, 0, 1, 0]
    seen = set()

    def check(buf: Any, verify: bool = True, s: Any = sizes, o: Any = offs) -> None:
        r = _compare_with_unwrap(bytes(buf), o, s, verify)
        seen.add(bare(r).split(" (")[0] if r[0] == "err" else "ok")

    check(phys)
    check(phys[:-1])                                        # last block truncated
    check(phys[:offs[2] + 10])                              # blocks 2, 3 cut
    check(phys, s=array("Q", [sizes[0], sizes[1] + 1, sizes[2], sizes[3]]))
    check(phys, o=array("Q", [offs[0], offs[1], len(phys) + 5, offs[3]]))
    check(phys, o=array("Q", [offs[0], offs[1], offs[2], 2**64 - 1]),
          s=array("Q", [sizes[0], sizes[1], sizes[2], 2**64 - 3]))
    for i in range(4):
        bad = bytearray(phys)
        bad[offs[i] + sizes[i] + 2] ^= 1                     # checksum byte
        check(bad)
        check(bad, verify=False)
        bad = bytearray(phys)
        bad[offs[i] + sizes[i]] = 7                          # unknown type
        check(bad, verify=False)
        _rechecksum(bad, offs[i], sizes[i])
        check(bad)
    # an lz4 block shorter than 4 bytes: block 1 relabelled, cut to 3 bytes
    short = bytearray(phys[:offs[1]] + b"abc\x01\x00\x00\x00\x00")
    _rechecksum(short, offs[1], 3)
    check(short, s=array("Q", [sizes[0], 3]), o=offs[:2])
    # impossible declared size / decompression failures, checksums fixed
    rnd = random.Random(3)
    for trial in range(300):
        bad = bytearray(phys)
        i = rnd.choice([0, 2])
        if trial % 3 == 0:
            struct.pack_into("<I", bad, offs[i], rnd.choice(
                [0, 1, len(blocks[i]) - 1, len(blocks[i]) + 1, 255 * sizes[i] + 64,
                 255 * sizes[i] + 65, 2**32 - 1]))
        else:
            for _ in range(rnd.randrange(1, 4)):
                bad[offs[i] + 4 + rnd.randrange(sizes[i] - 4)] = rnd.randrange(256)
        _rechecksum(bad, offs[i], sizes[i])
        check(bad)
    assert {"ok", "sstable: block checksum mismatch", "sstable: unknown compression type 7",
            "sstable: lz4 block too short", "sstable: lz4 block declares an impossible size",
            "sstable: lz4 decompression failed"} <= seen
    assert any(x.startswith("sstable: block of") and x.endswith("is truncated") for x in seen)


@pytest.mark.parametrize("impl", IMPLS)
def test_blocks_argument_errors(impl: Any) -> None:
    q = array("Q", [3])
    with pytest.raises(ArgumentTypeError, match="data"):
        impl.blocks_seal("abc", q, True)
    with pytest.raises(ArgumentTypeError, match="ends"):
        impl.blocks_seal(b"abc", [3], True)
    with pytest.raises(ArgumentTypeError, match="ends"):
        impl.blocks_seal(b"abc", array("I", [3]), True)
    with pytest.raises(ArgumentTypeError, match="compress"):
        impl.blocks_seal(b"abc", q, 1)
    with pytest.raises(InvalidArgumentError, match="ends must finish"):
        impl.blocks_seal(b"abcd", q, True)
    with pytest.raises(InvalidArgumentError, match="ends must not descend"):
        impl.blocks_seal(b"abc", array("Q", [2, 1, 3]), False)
    assert impl.blocks_seal(b"", array("Q"), True) == (b"", array("Q"))
    assert impl.blocks_seal(bytearray(b"abc"), q, True) == T.blocks_seal(b"abc", q, True)
    phys, sizes = T.blocks_seal(b"abc", q, False)
    offs = array("Q", [0])
    for args, exc, what in [
            (("x", offs, sizes, True, "n", 0), ArgumentTypeError, "buf"),
            ((phys, [0], sizes, True, "n", 0), ArgumentTypeError, "offsets"),
            ((phys, offs, array("L", [3]), True, "n", 0), ArgumentTypeError, "sizes"),
            ((phys, offs, array("Q", [3, 3]), True, "n", 0), InvalidArgumentError, "offsets"),
            ((phys, offs, sizes, None, "n", 0), ArgumentTypeError, "verify"),
            ((phys, offs, sizes, True, b"n", 0), ArgumentTypeError, "name"),
            ((phys, offs, sizes, True, "n", -1), InvalidArgumentError, "base_offset"),
            ((phys, offs, sizes, True, "n", 1.0), ArgumentTypeError, "base_offset")]:
        with pytest.raises(exc, match=what):
            impl.blocks_open(*args)
    assert impl.blocks_open(bytearray(phys), offs, sizes, True, "n", 0) == (b"abc", q)
    assert impl.blocks_open(memoryview(b"z" + phys)[1:], offs, sizes, True, "n", 0) == (b"abc", q)
    assert impl.blocks_open(b"", array("Q"), array("Q"), True, "n", 0) == (b"", array("Q"))


# ---- the registry ------------------------------------------------------------

def test_lz4_functions_exported() -> None:
    import inspect
    assert _native.LZ4_FUNCTIONS == ("lz4_compress", "lz4_decompress", "blocks_seal",
                                     "blocks_open")
    for name in _native.LZ4_FUNCTIONS:
        fn = getattr(_native, name)
        assert name in _native.__all__
        if _native.implementation == "python" or CL is None:
            assert fn is getattr(T, name)
        else:
            assert fn is getattr(CL, name)
            shape = [(p.name, p.kind, p.default)
                     for p in inspect.signature(fn).parameters.values()]
            assert shape == [(p.name, p.kind, p.default)
                             for p in inspect.signature(getattr(T, name)).parameters.values()]


def test_stale_build_without_an_lz4_function_is_refused() -> None:
    import types
    c = need_c()
    lib = types.SimpleNamespace(**{n: getattr(c.lib, n) for n in _native.LZ4_C_FUNCTIONS[:-1]})
    api = types.SimpleNamespace(ffi=c.ffi, lib=lib)
    with pytest.raises(ImportError, match="stale build .no lsm_blocks_open"):
        _native._make_lz4_api(api)
    assert not hasattr(api, "lz4_compress")


STALE_LZ4 = """
import sys, types, warnings
import lsm._lsm_c as real
lib = types.SimpleNamespace(**{n: getattr(real.lib, n) for n in dir(real.lib)
                               if n != "lsm_lz4_decompress"})
fake = types.ModuleType("lsm._lsm_c")
fake.ffi, fake.lib = real.ffi, lib
import lsm._native as n, lsm._twins as t, importlib
sys.modules["lsm._lsm_c"] = fake
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    importlib.reload(n)
print(n.implementation, n.checksum is n.c_api().checksum,
      n.lz4_compress is t.lz4_compress, n.blocks_open is t.blocks_open,
      sum("LZ4 and physical blocks use the twins" in str(x.message) for x in w))
"""


def test_stale_build_lacking_lz4_falls_back_to_twins() -> None:
    need_c()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LSM_")}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", STALE_LZ4], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["native", "True", "True", "True", "1"]
