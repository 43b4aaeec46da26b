"""Damaged files: a flipped byte in a log, a table, the MANIFEST or CURRENT
gives CorruptionError naming the file (and the offset), or -- for a log
without paranoid_checks -- the documented recovery that skips the damaged
region and reports it.  Never wrong data."""

from __future__ import annotations

import os

import pytest

import lsm

VALUE = b"0123456789" * 10


def _names(path, suffix):
    return sorted(n for n in os.listdir(path) if n.endswith(suffix))


def _flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def _make(path, n=2000, **opts):
    with lsm.DB(path, create_if_missing=True, **opts) as db:
        for i in range(n):
            db.put(b"k%05d" % i, VALUE + b"%d" % i)


def test_log_corruption_paranoid_names_file_and_offset(tmp_path):
    path = tmp_path / "db"
    _make(path, write_buffer_size=64 << 20)
    (log,) = _names(path, ".log")[-1:]
    assert os.path.getsize(path / log) > 100_000
    _flip(path / log, 40_000)
    with pytest.raises(lsm.CorruptionError) as info:
        lsm.DB(path, paranoid_checks=True)
    assert info.value.file == log and info.value.offset is not None
    assert 32768 <= info.value.offset < 65536


def test_log_corruption_recovers_around_the_damage(tmp_path):
    path = tmp_path / "db"
    _make(path, write_buffer_size=64 << 20)
    (log,) = _names(path, ".log")[-1:]
    _flip(path / log, 40_000)
    with lsm.DB(path) as db:
        report = db.stats()["recovery"]
        assert report and report[0]["file"] == log and report[0]["dropped_bytes"] > 0
        got = dict(db.iterator())
        assert 1500 < len(got) < 2000
        for k, v in got.items():
            assert v == VALUE + b"%d" % int(k[1:])     # never wrong data
        # the keys lost are one contiguous run (the damaged block)
        missing = sorted(int(k[1:]) for k in (b"k%05d" % i for i in range(2000)) if k not in got)
        assert missing == list(range(missing[0], missing[-1] + 1))


def test_torn_log_tail_is_dropped_silently(tmp_path):
    path = tmp_path / "db"
    _make(path, n=100, write_buffer_size=64 << 20)
    (log,) = _names(path, ".log")[-1:]
    size = os.path.getsize(path / log)
    with open(path / log, "r+b") as f:
        f.truncate(size - 50)
    with lsm.DB(path, paranoid_checks=True) as db:
        got = dict(db.iterator())
        assert len(got) == 99 and db.stats()["recovery"] == []


@pytest.mark.parametrize("where", [0.1, 0.3, 0.5])
def test_table_corruption_raises_with_file_and_offset(tmp_path, where):
    path = tmp_path / "db"
    _make(path, write_buffer_size=64 << 10, block_cache_size=0)
    with lsm.DB(path, block_cache_size=0) as db:
        db.compact_range()
    tables = _names(path, ".sst")
    victim = tables[len(tables) // 2]
    size = os.path.getsize(path / victim)
    _flip(path / victim, int(size * where))
    errors = 0
    with lsm.DB(path, block_cache_size=0) as db:
        for i in range(2000):
            try:
                v = db.get(b"k%05d" % i)
            except lsm.CorruptionError as exc:
                assert exc.file == victim and exc.offset is not None
                errors += 1
                continue
            assert v == VALUE + b"%d" % i          # never wrong data
        with pytest.raises(lsm.CorruptionError) as info:
            list(db.iterator())
        assert info.value.file == victim
    assert errors > 0


@pytest.mark.parametrize("offset", [3, 9, 20, 60, 200])
def test_manifest_corruption(tmp_path, offset):
    """Any damaged record before the last one is refused (the last one alone
    is indistinguishable from a torn write, as in LevelDB)."""
    path = tmp_path / "db"
    _make(path, n=300, write_buffer_size=4096)
    (manifest,) = [n for n in os.listdir(path) if n.startswith("MANIFEST")]
    before = (path / manifest).read_bytes()
    _flip(path / manifest, offset)
    with pytest.raises(lsm.CorruptionError) as info:
        lsm.DB(path)
    assert info.value.file == manifest
    after = (path / manifest).read_bytes()   # nothing rewritten
    assert len(after) == len(before) and after != before


def test_current_corruption(tmp_path):
    path = tmp_path / "db"
    _make(path, n=10)
    (path / "CURRENT").write_bytes(b"garbage\n")
    with pytest.raises(lsm.CorruptionError) as info:
        lsm.DB(path)
    assert info.value.file == "CURRENT"


def test_missing_table_is_reported(tmp_path):
    path = tmp_path / "db"
    _make(path, n=500, write_buffer_size=4096)
    os.remove(path / _names(path, ".sst")[0])
    with lsm.DB(path) as db:
        with pytest.raises(lsm.Error):
            list(db.iterator())
