"""Tests of FileDevice, EmulatedDevice (model, rate limits, histogram) and FaultyDevice."""

from __future__ import annotations

import os
import statistics
import threading
import time

import pytest

from blockdev.device import MemoryDevice
from blockdev.emulated import (
    LOCAL_SSD,
    NETWORK_DISK,
    EmulatedDevice,
    LatencyHistogram,
    LatencyModel,
    precise_wait_until,
)
from blockdev.errors import (
    ArgumentTypeError,
    ClosedError,
    InvalidArgumentError,
    NotFoundError,
    StorageIOError,
)
from blockdev.faulty import FaultyDevice
from blockdev.file import FileDevice

BS = 4096


# -- FileDevice -------------------------------------------------------------------
def test_file_device_roundtrip_and_reopen(tmp_path):
    p = tmp_path / "disk.img"
    dev = FileDevice(p, size=64 * BS, create=True)
    assert dev.size == 64 * BS and dev.block_size == BS
    dev.write(3 * BS, b"a" * BS + b"b" * BS)
    dev.flush()
    assert dev.read(3 * BS, 2 * BS) == b"a" * BS + b"b" * BS
    assert dev.read(0, BS) == bytes(BS)
    dev.close()
    with pytest.raises(ClosedError):
        dev.read(0, BS)
    dev = FileDevice(str(p))
    assert dev.size == 64 * BS
    assert dev.read(4 * BS, BS) == b"b" * BS
    dev.close()


def test_file_device_discard_reads_zeros_or_old(tmp_path):
    dev = FileDevice(tmp_path / "d", size=16 * BS, create=True)
    dev.write(0, b"z" * (4 * BS))
    dev.discard(BS, 2 * BS)
    got = dev.read(BS, BS)
    assert got in (bytes(BS), b"z" * BS)
    assert dev.read(0, BS) == b"z" * BS
    dev.close()


def test_file_device_arguments(tmp_path):
    with pytest.raises(NotFoundError):
        FileDevice(tmp_path / "missing")
    with pytest.raises(InvalidArgumentError):
        FileDevice(tmp_path / "new", create=True)  # no size to create with
    with pytest.raises(ArgumentTypeError):
        FileDevice(123)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        FileDevice(tmp_path / "x", size=1000, create=True)
    dev = FileDevice(tmp_path / "y", size=8 * BS, create=True)
    with pytest.raises(InvalidArgumentError):
        dev.read(1, BS)
    with pytest.raises(InvalidArgumentError):
        dev.write(8 * BS, b"x" * BS)
    with pytest.raises(ArgumentTypeError):
        dev.write(0, "text")  # type: ignore[arg-type]
    dev.close()
    with pytest.raises(InvalidArgumentError):
        FileDevice(tmp_path / "y", size=16 * BS)  # bigger than the file without create


def test_file_device_direct_io(tmp_path):
    try:
        dev = FileDevice(tmp_path / "direct", size=16 * BS, create=True, direct_io=True)
    except StorageIOError:
        pytest.skip("O_DIRECT unsupported on this file system")
    dev.write(BS, os.urandom(BS) * 1)
    data = b"q" * (2 * BS)
    dev.write(2 * BS, data)
    dev.flush()
    assert dev.read(2 * BS, 2 * BS) == data
    dev.close()


# -- EmulatedDevice ---------------------------------------------------------------
def test_latency_model_validation():
    with pytest.raises(InvalidArgumentError):
        LatencyModel("x", read_us=-1, write_us=1, flush_us=1)
    with pytest.raises(ArgumentTypeError):
        LatencyModel("x", read_us="1", write_us=1, flush_us=1)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        LatencyModel("x", read_us=1, write_us=1, flush_us=1, queue_depth=0)
    with pytest.raises(InvalidArgumentError):
        NETWORK_DISK.with_(iops=0)
    assert NETWORK_DISK.read_us > 5 * LOCAL_SSD.read_us
    with pytest.raises(ArgumentTypeError):
        EmulatedDevice(object(), LOCAL_SSD)  # type: ignore[arg-type]


def test_emulated_passes_data_and_counts():
    dev = EmulatedDevice(MemoryDevice(32 * BS), LatencyModel("fast", 0, 0, 0), seed=1)
    dev.write(0, b"x" * (2 * BS))
    assert dev.read(0, 2 * BS) == b"x" * (2 * BS)
    dev.flush()
    dev.discard(0, BS)
    st = dev.stats()
    c = st["counters"]
    assert (c["reads"], c["writes"], c["flushes"], c["discards"]) == (1, 1, 1, 1)
    assert c["bytes_written"] == 2 * BS and c["bytes_read"] == 2 * BS
    assert st["latency"]["read"]["count"] == 1
    dev.reset_stats()
    assert dev.stats()["counters"]["reads"] == 0
    dev.close()


def test_emulated_jitter_is_deterministic_under_seed():
    a = EmulatedDevice(MemoryDevice(BS), NETWORK_DISK, seed=42)
    b = EmulatedDevice(MemoryDevice(BS), NETWORK_DISK, seed=42)
    sa = [a.sample_latency_ns("read") for _ in range(200)]
    sb = [b.sample_latency_ns("read") for _ in range(200)]
    assert sa == sb
    c = EmulatedDevice(MemoryDevice(BS), NETWORK_DISK, seed=43)
    assert [c.sample_latency_ns("read") for _ in range(200)] != sa
    # the samples follow the model: median near the configured median
    med = statistics.median(sa) / 1000
    assert 0.8 * NETWORK_DISK.read_us < med < 1.25 * NETWORK_DISK.read_us
    assert max(sa) > min(sa)


def test_emulated_queue_depth_bounds_concurrency():
    # A long service time and a barrier make the six reads overlap even on a
    # loaded machine: with queue depth 2 at least one read must wait.
    model = LatencyModel("slow", read_us=50_000, write_us=50_000, flush_us=0, queue_depth=2)
    dev = EmulatedDevice(MemoryDevice(16 * BS), model, seed=0)
    barrier = threading.Barrier(6)

    def reader(i: int) -> None:
        barrier.wait()
        dev.read(i * BS, BS)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    c = dev.stats()["counters"]
    assert c["max_in_flight"] <= 2
    assert c["queue_waits"] >= 1
    assert c["reads"] == 6


def test_emulated_iops_cap_throttles():
    model = LatencyModel("capped", read_us=0, write_us=0, flush_us=0, iops=2000, burst=2)
    dev = EmulatedDevice(MemoryDevice(16 * BS), model)
    for i in range(20):
        dev.read((i % 16) * BS, BS)
    assert dev.stats()["counters"]["throttled"] > 0


def test_precise_wait_reaches_deadline():
    start = time.perf_counter_ns()
    deadline = start + 300_000
    precise_wait_until(deadline)
    assert time.perf_counter_ns() >= deadline


@pytest.mark.slow
def test_emulated_100us_model_measures_within_20_percent():
    model = LatencyModel("100us", read_us=100, write_us=100, flush_us=0)
    dev = EmulatedDevice(MemoryDevice(256 * BS), model, seed=0)
    samples = []
    for i in range(2000):
        t = time.perf_counter_ns()
        dev.read((i % 256) * BS, BS)
        samples.append(time.perf_counter_ns() - t)
    med = statistics.median(samples) / 1000
    assert 80 <= med <= 120, med


def test_histogram_percentiles():
    h = LatencyHistogram()
    assert h.percentile(50) == 0.0
    for v in range(1, 10001):
        h.record(v * 1000)
    h._check()
    assert h.count == 10000
    p50 = h.percentile(50)
    assert abs(p50 - 5_000_000) / 5_000_000 < 0.07
    assert abs(h.percentile(99) - 9_900_000) / 9_900_000 < 0.07
    assert h.percentile(100) == h.max_ns == 10_000_000
    assert h.percentile(0) >= h.min_ns
    s = h.summary()
    assert set(s) >= {"p50_us", "p99_us", "p99.9_us"}
    with pytest.raises(InvalidArgumentError):
        h.percentile(101)


# -- FaultyDevice -----------------------------------------------------------------
def _faulty(blocks=16):
    return FaultyDevice(MemoryDevice(blocks * BS))


def test_faulty_read_errors_transient_and_sticky():
    f = _faulty()
    f.write(0, b"a" * (4 * BS))
    f.add_read_error(1)
    f.add_read_error(2, sticky=True)
    with pytest.raises(StorageIOError):
        f.read(0, 2 * BS)
    assert f.read(0, BS) == b"a" * BS
    f.write(BS, b"b" * BS)          # remaps the pending sector
    assert f.read(BS, BS) == b"b" * BS
    f.write(2 * BS, b"c" * BS)      # sticky: still failing
    with pytest.raises(StorageIOError):
        f.read(2 * BS, BS)
    f.clear_faults()
    assert f.read(2 * BS, BS) == b"c" * BS


def test_faulty_write_and_flush_errors():
    f = _faulty()
    f.add_write_error(3)
    with pytest.raises(StorageIOError):
        f.write(2 * BS, b"x" * (2 * BS))
    assert f.read(2 * BS, BS) == bytes(BS)  # failed write leaves nothing
    f.fail_writes()
    with pytest.raises(StorageIOError):
        f.write(0, b"x" * BS)
    f.fail_writes(False)
    f.fail_flushes()
    with pytest.raises(StorageIOError):
        f.flush()
    assert f.counters["write_errors"] == 2 and f.counters["flush_errors"] == 1


def test_faulty_bit_flips_are_silent():
    f = _faulty()
    f.write(0, b"\x00" * BS)
    pos = f.flip_bits(0, count=3, seed=7)
    assert len(pos) == 3
    data = f.read(0, BS)
    assert sum(bin(b).count("1") for b in data) == 3


def test_faulty_crash_all_drops_unflushed():
    f = _faulty()
    f.write(0, b"a" * BS)
    f.flush()
    f.write(0, b"b" * BS)
    f.write(BS, b"c" * BS)
    assert f.crash("all") == 2
    with pytest.raises(StorageIOError):
        f.read(0, BS)
    f.restart()
    assert f.read(0, 2 * BS) == b"a" * BS + bytes(BS)


def test_faulty_crash_random_keeps_subset_and_tears():
    outcomes = set()
    for seed in range(30):
        f = _faulty()
        f.write(0, b"o" * (4 * BS))
        f.flush()
        f.write(0, b"n" * (4 * BS))
        f.crash("random", seed=seed)
        f.restart()
        data = f.read(0, 4 * BS)
        blocks = tuple(data[i * BS:(i + 1) * BS][:1] for i in range(4))
        assert all(b in (b"o", b"n") for b in blocks)
        outcomes.add(blocks)
    assert (b"o",) * 4 in outcomes
    assert len(outcomes) > 2  # torn variants occur


def test_faulty_loss_and_revive_blank():
    f = _faulty()
    f.write(0, b"a" * BS)
    f.lose()
    for call in (lambda: f.read(0, BS), lambda: f.write(0, b"x" * BS), f.flush, lambda: f.discard(0, BS)):
        with pytest.raises(StorageIOError):
            call()
    f.revive(wipe=True)
    assert f.read(0, BS) == bytes(BS)


def test_faulty_arguments():
    f = _faulty()
    with pytest.raises(InvalidArgumentError):
        f.add_read_error(16)
    with pytest.raises(ArgumentTypeError):
        f.add_read_error("1")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        f.crash("some")
    with pytest.raises(InvalidArgumentError):
        f.flip_bits(0, count=0)


# -- FileDevice: exclusive lock ------------------------------------------------------
_HOLDER = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from blockdev.file import FileDevice
dev = FileDevice(sys.argv[2])
print("locked", flush=True)
sys.stdin.readline()
dev.close()
"""


def _spawn_holder(path):
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, root, str(path)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_file_device_lock_excludes_other_process(tmp_path):
    from blockdev.errors import LockError
    p = tmp_path / "locked.img"
    FileDevice(p, size=8 * BS, create=True).close()
    proc = _spawn_holder(p)
    try:
        with pytest.raises(LockError) as ei:
            FileDevice(p)
        assert str(p) in str(ei.value)
        with pytest.raises(LockError):
            FileDevice(p, read_only=True)       # a shared lock conflicts with the writer too
        ro = FileDevice(p, read_only=True, lock=False)   # the explicit opt-out still reads
        assert ro.read(0, BS) == bytes(BS)
        ro.close()
    finally:
        proc.stdin.write("\n")
        proc.stdin.flush()
        proc.wait(timeout=30)
    FileDevice(p).close()                      # released when the holder closed


def test_file_device_lock_in_process_and_release(tmp_path):
    from blockdev.errors import LockError, ReadOnlyError
    p = tmp_path / "d.img"
    dev = FileDevice(p, size=8 * BS, create=True)
    with pytest.raises(LockError, match="d.img"):
        FileDevice(p)
    dev.write(0, b"q" * BS)
    dev.close()
    # readers share; a writer is refused while they hold it
    r1 = FileDevice(p, read_only=True)
    r2 = FileDevice(p, read_only=True)
    assert r1.read(0, BS) == b"q" * BS
    with pytest.raises(LockError):
        FileDevice(p)
    with pytest.raises(ReadOnlyError):
        r1.write(0, bytes(BS))
    with pytest.raises(ReadOnlyError):
        r1.discard(0, BS)
    r1.close()
    r2.close()
    with pytest.raises(InvalidArgumentError):
        FileDevice(p, read_only=True, create=True)
    with pytest.raises(ArgumentTypeError):
        FileDevice(p, lock=1)  # type: ignore[arg-type]
    dev = FileDevice(p)
    assert dev.read(0, BS) == b"q" * BS
    dev.close()
