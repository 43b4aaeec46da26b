"""Options validation and file-name parsing."""

from __future__ import annotations

import dataclasses

import pytest

from blockdev.errors import ArgumentTypeError, InvalidArgumentError
from lsm import filenames as fn
from lsm.options import Options


def test_defaults_are_rocksdb_like() -> None:
    o = Options()
    assert o.write_buffer_size == 4 << 20
    assert o.level0_file_num_compaction_trigger == 4
    assert (o.level0_slowdown_writes_trigger, o.level0_stop_writes_trigger) == (20, 36)
    assert o.compaction_style == "leveled" and o.compression == "lz4"
    assert o.max_subcompactions == 2 and Options(max_subcompactions=1).max_subcompactions == 1
    assert o.max_bytes_for_level(1) == 10 << 20
    assert o.max_bytes_for_level(3) == 1000 << 20
    o._check()


def test_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Options().block_size = 1  # type: ignore[misc]


def test_unknown_option_named() -> None:
    with pytest.raises(InvalidArgumentError, match="bogus_opt"):
        Options.from_kwargs(bogus_opt=1)


@pytest.mark.parametrize("name,value", [
    ("block_size", "4096"), ("block_size", 4096.0), ("block_size", True),
    ("paranoid_checks", 1), ("compression", b"lz4"), ("compaction_style", 3),
])
def test_wrong_type_named(name: str, value: object) -> None:
    with pytest.raises(ArgumentTypeError, match=name):
        Options.from_kwargs(**{name: value})


@pytest.mark.parametrize("kw", [
    {"block_size": 0}, {"write_buffer_size": -1}, {"num_levels": 1},
    {"compression": "snappy"}, {"compaction_style": "fifo"},
    {"level0_file_num_compaction_trigger": 21},           # > slowdown 20
    {"level0_slowdown_writes_trigger": 40},               # > stop 36
    {"min_merge_width": 8, "max_merge_width": 4},
    {"compaction_style": "tiered", "num_levels": 2},
    {"max_write_buffer_number": 1},
    {"max_subcompactions": 0}, {"max_subcompactions": 65},
])
def test_bad_values(kw: dict) -> None:
    with pytest.raises(InvalidArgumentError):
        Options.from_kwargs(**kw)


def test_replace_validates() -> None:
    o = Options(compression=None, compaction_style="tiered")
    assert o.compression is None
    with pytest.raises(InvalidArgumentError):
        dataclasses.replace(o, block_restart_interval=0)


def test_file_names_round_trip() -> None:
    assert fn.log_file_name(7) == "000007.log"
    assert fn.table_file_name(1234567) == "1234567.sst"
    assert fn.manifest_file_name(1) == "MANIFEST-000001"
    assert fn.temp_file_name(3) == "000003.dbtmp"
    for make, kind in [(fn.log_file_name, fn.LOG_FILE), (fn.table_file_name, fn.TABLE_FILE),
                       (fn.manifest_file_name, fn.MANIFEST_FILE),
                       (fn.temp_file_name, fn.TEMP_FILE)]:
        for n in (1, 999999, 1000000, 2**64 - 1):
            assert fn.parse_file_name(make(n)) == (kind, n)
    assert fn.parse_file_name("CURRENT") == (fn.CURRENT_FILE, 0)
    assert fn.parse_file_name("LOCK") == (fn.LOCK_FILE, 0)
    assert fn.parse_file_name("LOG.old") == (fn.INFO_LOG_FILE, 0)
    assert fn.parse_file_name("IDENTITY") == (fn.IDENTITY_FILE, 0)


@pytest.mark.parametrize("name", [
    "0012.log", "000000.sst", "abc.sst", "MANIFEST-", "MANIFEST-12", "x.log.bak",
    "000012.txt", ".log", "current", "MANIFEST-00001a", "００００１２.log",
])
def test_foreign_names(name: str) -> None:
    assert fn.parse_file_name(name) is None


def test_file_name_argument_checks() -> None:
    with pytest.raises(ArgumentTypeError):
        fn.log_file_name("1")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        fn.table_file_name(0)
    with pytest.raises(ArgumentTypeError):
        fn.parse_file_name(b"CURRENT")  # type: ignore[arg-type]
