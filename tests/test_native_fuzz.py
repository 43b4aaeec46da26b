"""Random bytes into every decoder of both implementations: the only error
allowed is CorruptionError (no crash, no IndexError/struct.error, no hang).

The deep variant (-m slow) runs many more mutated blocks; for the C code
the same inputs are also run under AddressSanitizer by
native/fuzz_asan.sh.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lsm
from lsm.dbformat import pack_internal_key
from native_support import IMPLS

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _decoders(impl, data: bytes, target: bytes):  # type: ignore[no-untyped-def]
    yield lambda: impl.decode_varint32(data)
    yield lambda: impl.decode_varint64(data)
    yield lambda: impl.block_decode(data)
    yield lambda: impl.block_seek(data, target, impl.CMP_BYTEWISE)
    yield lambda: impl.block_seek(data, target + b"\x01" * 8, impl.CMP_INTERNAL)
    yield lambda: impl.bloom_may_contain(data, target)
    yield lambda: impl.block_get(data, target, 7)
    yield lambda: impl.user_keys([data, target + data])


def _check_all(impl, data: bytes, target: bytes) -> None:  # type: ignore[no-untyped-def]
    for call in _decoders(impl, data, target):
        try:
            call()
        except lsm.CorruptionError as exc:
            assert exc.offset is not None and 0 <= exc.offset <= len(data)


@pytest.mark.parametrize("impl", IMPLS)
def test_random_bytes(impl) -> None:  # type: ignore[no-untyped-def]
    @FUZZ
    @given(st.binary(max_size=200), st.binary(max_size=10))
    def run(data: bytes, target: bytes) -> None:
        _check_all(impl, data, target)
    run()


def _mutations(rnd: random.Random, count: int):  # type: ignore[no-untyped-def]
    """Valid blocks (bytewise and internal keys) with random damage."""
    for _ in range(count):
        n = rnd.randint(0, 30)
        if rnd.random() < 0.5:
            keys = sorted({bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 6)))
                           for _ in range(n)})
        else:
            keys = sorted({pack_internal_key(bytes([rnd.randint(97, 100)]), rnd.randint(0, 99),
                                             rnd.randint(0, 2)) for _ in range(n)},
                          key=lambda k: (k[:-8], -int.from_bytes(k[-8:], "little")))
        vals = [bytes(rnd.randint(0, 200) for _ in range(rnd.randint(0, 5))) for _ in keys]
        block = bytearray(lsm._twins.block_encode(keys, vals, rnd.randint(1, 5)))
        for _ in range(rnd.randint(1, 4)):
            op = rnd.random()
            if op < 0.4 and block:
                block[rnd.randrange(len(block))] = rnd.getrandbits(8)
            elif op < 0.6:
                del block[rnd.randint(0, len(block)):]
            elif op < 0.8:
                pos = rnd.randint(0, len(block))
                block[pos:pos] = bytes([0xFF] * rnd.randint(1, 11))
            elif block:
                pos = rnd.randrange(len(block))
                del block[pos:pos + rnd.randint(1, 4)]
        yield bytes(block)


@pytest.mark.parametrize("impl", IMPLS)
def test_mutated_blocks(impl) -> None:  # type: ignore[no-untyped-def]
    rnd = random.Random(1234)
    for data in _mutations(rnd, 400):
        _check_all(impl, data, bytes([rnd.randint(96, 101)]))


@pytest.mark.slow
@pytest.mark.parametrize("impl", IMPLS)
def test_mutated_blocks_deep(impl) -> None:  # type: ignore[no-untyped-def]
    rnd = random.Random(99)
    for data in _mutations(rnd, 30000):
        _check_all(impl, data, bytes([rnd.randint(96, 101)]))
