"""Known-answer tests of the checksum (XXH64) against the xxhash package,
for both implementations."""

from __future__ import annotations

import random

import pytest
import xxhash

import lsm
from lsm import _native
from native_support import IMPLS

SEEDS = [0, 1, 0x9E3779B185EBCA87, 2**64 - 1, 123456789]


def _data(n: int, rnd: random.Random) -> bytes:
    return bytes(rnd.getrandbits(8) for _ in range(n))


@pytest.mark.parametrize("impl", IMPLS)
def test_lengths_0_to_300(impl) -> None:  # type: ignore[no-untyped-def]
    rnd = random.Random(7)
    for n in range(301):
        data = _data(n, rnd)
        for seed in SEEDS:
            assert impl.checksum(data, seed) == xxhash.xxh64_intdigest(data, seed), (n, seed)


@pytest.mark.parametrize("impl", IMPLS)
def test_large_and_views(impl) -> None:  # type: ignore[no-untyped-def]
    rnd = random.Random(8)
    data = _data(100_003, rnd)
    for seed in (0, 2**64 - 1):
        assert impl.checksum(data, seed) == xxhash.xxh64_intdigest(data, seed)
    assert impl.checksum(bytearray(data[:777])) == xxhash.xxh64_intdigest(data[:777])
    view = memoryview(data)[1000:5000]
    assert impl.checksum(view, 3) == xxhash.xxh64_intdigest(bytes(view), 3)
    assert impl.checksum(memoryview(data)[::3]) == xxhash.xxh64_intdigest(data[::3])


@pytest.mark.parametrize("impl", IMPLS)
def test_published_vectors(impl) -> None:  # type: ignore[no-untyped-def]
    # Values of the reference implementation (and of xxhash), written out so
    # that a broken xxhash install could not hide a broken checksum.
    assert impl.checksum(b"") == 0xEF46DB3751D8E999
    assert impl.checksum(b"a") == 0xD24EC4F1A98C6E5B
    assert impl.checksum(b"abc") == 0x44BC2CF5AD770999
    assert impl.checksum(b"", 1) == xxhash.xxh64_intdigest(b"", 1)


@pytest.mark.parametrize("impl", IMPLS)
def test_argument_errors(impl) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(lsm.ArgumentTypeError, match="data"):
        impl.checksum("text")
    with pytest.raises(lsm.InvalidArgumentError, match="seed"):
        impl.checksum(b"x", -1)
    with pytest.raises(lsm.InvalidArgumentError, match="seed"):
        impl.checksum(b"x", 2**64)
    with pytest.raises(lsm.ArgumentTypeError, match="seed"):
        impl.checksum(b"x", "0")


def test_selected_checksum_is_exported() -> None:
    assert _native.checksum(b"abc") == xxhash.xxh64_intdigest(b"abc")
    assert lsm.implementation in ("native", "python")
