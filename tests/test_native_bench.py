"""Micro-benchmarks of the native core: C against its pure-Python twin
(pytest-benchmark; nothing about time is asserted).  Disabled by default
(each body runs once as a smoke test); measure with

    python -m pytest tests/test_native_bench.py --benchmark-enable --benchmark-group-by=func \
        --benchmark-columns=min,median,rounds --benchmark-sort=name

The numbers are recorded in docs/benchmarks.md, section "Native core".
"""

from __future__ import annotations

import random

import pytest

from lsm.dbformat import pack_internal_key
from native_support import IMPLS

pytestmark = pytest.mark.benchmark

_rnd = random.Random(42)
BLOCK_KEYS = [pack_internal_key(b"user%08d" % i, 1000 + i, 1) for i in range(0, 3000, 3)][:100]
BLOCK_VALUES = [bytes(_rnd.getrandbits(8) for _ in range(24)) for _ in BLOCK_KEYS]
DATA_4K = bytes(_rnd.getrandbits(8) for _ in range(4096))


def _runs() -> list:
    runs = []
    for r in range(4):
        keys = sorted({b"key%06d" % _rnd.randrange(20000) for _ in range(2500)})
        runs.append(([pack_internal_key(k, 10 * i + r, 1) for i, k in enumerate(keys)],
                     [b"v" * 16] * len(keys)))
    return runs


MERGE_RUNS = _runs()


@pytest.mark.parametrize("impl", IMPLS)
def test_bench_checksum_4k(benchmark, impl) -> None:  # type: ignore[no-untyped-def]
    assert benchmark(impl.checksum, DATA_4K) == impl.checksum(DATA_4K)


@pytest.mark.parametrize("impl", IMPLS)
def test_bench_checksum_16b(benchmark, impl) -> None:  # type: ignore[no-untyped-def]
    benchmark(impl.checksum, DATA_4K[:16])


@pytest.mark.parametrize("impl", IMPLS)
def test_bench_block_decode(benchmark, impl) -> None:  # type: ignore[no-untyped-def]
    block = impl.block_encode(BLOCK_KEYS, BLOCK_VALUES, 16)
    keys, _ = benchmark(impl.block_decode, block)
    assert keys == BLOCK_KEYS


@pytest.mark.parametrize("impl", IMPLS)
def test_bench_block_encode(benchmark, impl) -> None:  # type: ignore[no-untyped-def]
    benchmark(impl.block_encode, BLOCK_KEYS, BLOCK_VALUES, 16)


@pytest.mark.parametrize("impl", IMPLS)
def test_bench_block_seek(benchmark, impl) -> None:  # type: ignore[no-untyped-def]
    block = impl.block_encode(BLOCK_KEYS, BLOCK_VALUES, 16)
    target = BLOCK_KEYS[77]
    assert benchmark(impl.block_seek, block, target, impl.CMP_INTERNAL)[0] == 77


@pytest.mark.parametrize("impl", IMPLS)
def test_bench_bloom_probe(benchmark, impl) -> None:  # type: ignore[no-untyped-def]
    f = impl.bloom_build(BLOCK_KEYS, 10)
    assert benchmark(impl.bloom_may_contain, f, BLOCK_KEYS[5])


@pytest.mark.parametrize("impl", IMPLS)
def test_bench_merge_read(benchmark, impl) -> None:  # type: ignore[no-untyped-def]
    keys, _ = benchmark(impl.merge, MERGE_RUNS, 10**6)
    assert keys


@pytest.mark.parametrize("impl", IMPLS)
def test_bench_merge_compact(benchmark, impl) -> None:  # type: ignore[no-untyped-def]
    keys, _ = benchmark(impl.merge, MERGE_RUNS, 0, [5000, 15000], impl.MERGE_COMPACT, True)
    assert keys


@pytest.mark.parametrize("impl", IMPLS)
def test_bench_block_get(benchmark, impl) -> None:  # type: ignore[no-untyped-def]
    block = impl.block_encode(BLOCK_KEYS, BLOCK_VALUES, 16)
    assert benchmark(impl.block_get, block, b"user%08d" % 231, 10**6)[0] == 1231


@pytest.mark.parametrize("impl", IMPLS)
def test_bench_user_keys(benchmark, impl) -> None:  # type: ignore[no-untyped-def]
    assert len(benchmark(impl.user_keys, BLOCK_KEYS)) == 100


@pytest.mark.parametrize("impl", IMPLS)
def test_bench_merge_one_run(benchmark, impl) -> None:  # type: ignore[no-untyped-def]
    keys, _ = benchmark(impl.merge, MERGE_RUNS[:1], 10**6)
    assert len(keys) == len(MERGE_RUNS[0][0])


@pytest.mark.parametrize("impl", IMPLS)
def test_bench_log_encode_record(benchmark, impl) -> None:  # type: ignore[no-untyped-def]
    assert len(benchmark(impl.log_encode_record, DATA_4K[:130], 1000)) == 137


@pytest.mark.parametrize("impl", IMPLS)
def test_bench_batch_encode_single(benchmark, impl) -> None:  # type: ignore[no-untyped-def]
    assert len(benchmark(impl.batch_encode_single, 12345, 1, b"k" * 16, DATA_4K[:100])) == 131


@pytest.mark.parametrize("impl", IMPLS)
def test_bench_batch_encode_100(benchmark, impl) -> None:  # type: ignore[no-untyped-def]
    items = [(1, b"%016d" % i, DATA_4K[i:i + 100]) for i in range(100)]
    assert len(benchmark(impl.batch_encode, 12345, items)) == 12 + 100 * 119
