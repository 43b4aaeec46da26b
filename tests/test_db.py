"""The DB API of SPEC §2: opening (both targets), argument validation, the
dict protocol, batches, snapshots, prefixed views, checkpoints, destroy,
repair, properties and stats, stalls, group commit, read-only mode after a
background error, close with live iterators."""

from __future__ import annotations

import os
import threading

import pytest

import blockdev
import lsm
from blockdev.crashfs import CrashFS
from blockdev.fs import PosixFS
from lsm import filenames
from lsm.batch import WriteBatch
from lsm.db import encode_records
from lsm.dbformat import KIND_RANGE_TOMBSTONE, KIND_TOMBSTONE, KIND_VALUE

SMALL = dict(write_buffer_size=4096, block_size=256, target_file_size_base=2048,
             max_bytes_for_level_base=8192)


@pytest.fixture
def db(tmp_path):
    d = lsm.DB(tmp_path / "db", create_if_missing=True, **SMALL)
    yield d
    d.close()


# -- opening -------------------------------------------------------------------------

def test_open_missing_directory(tmp_path):
    with pytest.raises(lsm.NotFoundError, match="nope"):
        lsm.DB(tmp_path / "nope")
    assert not (tmp_path / "nope").exists()


def test_open_directory_that_is_not_a_db(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("hello")
    with pytest.raises(lsm.NotFoundError, match="no DB"):
        lsm.DB(tmp_path / "x")
    assert (tmp_path / "x" / "notes.txt").read_text() == "hello"


def test_open_a_file_is_an_error(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(lsm.InvalidArgumentError):
        lsm.DB(tmp_path / "f", create_if_missing=True)


def test_error_if_exists_and_lock(tmp_path):
    path = tmp_path / "db"
    with lsm.DB(str(path), create_if_missing=True) as d:
        d.put(b"k", b"v")
        with pytest.raises(lsm.LockError):
            lsm.DB(path)
    with pytest.raises(lsm.InvalidArgumentError, match="exists"):
        lsm.DB(path, error_if_exists=True)
    with lsm.DB(path) as d:
        assert d.get(b"k") == b"v"
        assert d.name == str(path)


def test_bad_target_and_options(tmp_path):
    with pytest.raises(TypeError, match="target"):
        lsm.DB(42)
    with pytest.raises(lsm.InvalidArgumentError, match="no_such_option"):
        lsm.DB(tmp_path / "db", create_if_missing=True, no_such_option=1)
    with pytest.raises(TypeError, match="write_buffer_size"):
        lsm.DB(tmp_path / "db", create_if_missing=True, write_buffer_size="big")
    with pytest.raises(TypeError, match="create_if_missing"):
        lsm.DB(tmp_path / "db", create_if_missing="yes")


def test_newer_format_is_refused(tmp_path):
    from lsm.version import FORMAT_VERSION, VersionEdit
    from lsm.wal import LogWriter
    path = tmp_path / "db"
    with lsm.DB(path, create_if_missing=True) as d:
        d.put(b"a", b"1")
    fs = PosixFS(path)
    name = "MANIFEST-000999"
    w = LogWriter(fs.create(name), name)
    w.add_record(VersionEdit(format_version=FORMAT_VERSION + 1, log_number=1,
                             next_file_number=1000, last_sequence=1).encode())
    w.sync()
    w.close()
    f = fs.create("CURRENT.tmp")
    f.append(b"MANIFEST-000999\n")
    f.sync()
    f.close()
    fs.rename("CURRENT.tmp", "CURRENT")
    fs.close()
    with pytest.raises(lsm.UnsupportedFormatError, match="MANIFEST-000999"):
        lsm.DB(path)


def test_block_device_target():
    dev = blockdev.MemoryDevice(8 << 20)
    with pytest.raises(lsm.UnsupportedFormatError):
        lsm.DB(dev)
    used = blockdev.MemoryDevice(1 << 20)
    used.write(4096, b"\x01" * 4096)              # someone else's data
    with pytest.raises(lsm.UnsupportedFormatError, match="refusing"):
        lsm.DB(used, create_if_missing=True)
    assert used.read(4096, 4096) == b"\x01" * 4096
    with lsm.DB(dev, create_if_missing=True, **SMALL) as d:
        for i in range(500):
            d.put(b"%05d" % i, b"v" * 50)
        d.flush()
        d.compact_range()
    with lsm.DB(dev, **SMALL) as d:
        assert d.get(b"00499") == b"v" * 50
        assert len(list(d.keys())) == 500


# -- validation -----------------------------------------------------------------------

def test_argument_types(db):
    with pytest.raises(TypeError, match="key"):
        db.put("k", b"v")
    with pytest.raises(TypeError, match="value"):
        db.put(b"k", "v")
    with pytest.raises(TypeError, match="key"):
        db.get(None)
    with pytest.raises(TypeError, match="key"):
        db.delete(1)
    with pytest.raises(TypeError, match="start"):
        db.delete_range("a", b"b")
    with pytest.raises(TypeError, match="sync"):
        db.put(b"k", b"v", sync="yes")
    with pytest.raises(TypeError, match="batch"):
        db.write([(b"k", b"v")])
    with pytest.raises(lsm.InvalidArgumentError):
        db.delete_range(b"b", b"a")
    # bytes-like buffers are accepted
    db.put(bytearray(b"ba"), memoryview(b"mv"))
    assert db.get(memoryview(b"ba")) == b"mv"
    db.put(b"", b"empty key is a key")
    assert db.get(b"") == b"empty key is a key"


def test_size_limits(tmp_path):
    with lsm.DB(tmp_path / "db", create_if_missing=True, max_key_size=8,
                max_value_size=16) as d:
        d.put(b"k" * 8, b"v" * 16)
        with pytest.raises(lsm.InvalidArgumentError, match="max_key_size"):
            d.put(b"k" * 9, b"v")
        with pytest.raises(lsm.InvalidArgumentError, match="max_value_size"):
            d.put(b"k", b"v" * 17)
        wb = WriteBatch()
        wb.put(b"k", b"v" * 17)
        with pytest.raises(lsm.InvalidArgumentError, match="max_value_size"):
            d.write(wb)


def test_encode_records_is_the_batch_format():
    items = [(KIND_VALUE, b"k" * 200, b"v" * 300), (KIND_TOMBSTONE, b"x", b""),
             (KIND_RANGE_TOMBSTONE, b"a", b"b")]
    wb = WriteBatch()
    wb.put(b"k" * 200, b"v" * 300)
    wb.delete(b"x")
    wb.delete_range(b"a", b"b")
    assert encode_records(77, items) == wb.encode(77)
    assert WriteBatch.decode(encode_records(5, items)) == (5, items)


# -- basic behaviour -------------------------------------------------------------------

def test_dict_protocol(db):
    db[b"a"] = b"1"
    assert db[b"a"] == b"1"
    assert b"a" in db and b"b" not in db
    with pytest.raises(KeyError):
        db[b"b"]
    del db[b"a"]
    assert db.get(b"a", b"dflt") == b"dflt"
    assert list(db) == []


def test_delete_range(db):
    for i in range(100):
        db.put(b"%03d" % i, b"x")
    db.delete_range(b"010", b"020")
    db.delete_range(b"030", b"030")   # empty range: no-op
    assert db.get(b"009") == b"x" and db.get(b"010") is None and db.get(b"020") == b"x"
    db.put(b"015", b"back")
    assert db.get(b"015") == b"back"
    db.flush()
    db.compact_range()
    assert db.get(b"015") == b"back" and db.get(b"016") is None
    assert len(list(db.keys())) == 91


def test_write_batch_transaction(db):
    with db.write_batch() as wb:
        wb.put(b"a", b"1")
        wb.put(b"b", b"2")
        wb.delete(b"a")
    assert db.get(b"a") is None and db.get(b"b") == b"2"
    with pytest.raises(RuntimeError):
        with db.write_batch(transaction=True) as wb:
            wb.put(b"c", b"3")
            raise RuntimeError("abort")
    assert db.get(b"c") is None
    with pytest.raises(RuntimeError):
        with db.write_batch(transaction=False) as wb:
            wb.put(b"d", b"4")
            raise RuntimeError("written anyway")
    assert db.get(b"d") == b"4"
    wb = db.write_batch()
    wb.put(b"e", b"5")
    wb.delete_range(b"a", b"c")
    wb.write()
    assert db.get(b"b") is None and db.get(b"e") == b"5"
    plain = lsm.WriteBatch()
    plain.put(b"f", b"6")
    db.write(plain, sync=True)
    assert db[b"f"] == b"6"


def test_snapshot(db):
    db.put(b"a", b"1")
    with db.snapshot() as snap:
        db.put(b"a", b"2")
        db.delete(b"a")
        db.put(b"b", b"x")
        db.flush()
        db.compact_range()
        assert snap.get(b"a") == b"1" and snap.get(b"b") is None
        assert list(snap.iterator()) == [(b"a", b"1")]
        assert list(db.iterator(snapshot=snap)) == [(b"a", b"1")]
        raw = snap.raw_iterator()
        raw.seek_to_first()
        assert raw.item() == (b"a", b"1")
        raw.close()
    with pytest.raises(lsm.ClosedError):
        snap.get(b"a")
    with pytest.raises(lsm.ClosedError):
        db.iterator(snapshot=snap)
    with pytest.raises(TypeError, match="snapshot"):
        db.iterator(snapshot=object())


def test_prefixed_db(db):
    p = db.prefixed_db(b"ns:")
    p.put(b"a", b"1")
    p[b"b"] = b"2"
    db.put(b"ns;", b"outside")
    db.put(b"nr", b"outside")
    assert db.get(b"ns:a") == b"1"
    assert p.get(b"a") == b"1" and p[b"b"] == b"2" and b"c" not in p
    assert list(p.iterator()) == [(b"a", b"1"), (b"b", b"2")]
    assert list(p.iterator(reverse=True, include_value=False)) == [b"b", b"a"]
    assert list(p.iterator(start=b"b")) == [(b"b", b"2")]
    it = p.iterator()
    it.seek(b"b")
    assert next(it) == (b"b", b"2")
    with p.write_batch() as wb:
        wb.put(b"c", b"3")
        wb.delete(b"a")
    assert list(p.keys()) == [b"b", b"c"]
    inner = p.prefixed_db(b"x")
    inner.put(b"1", b"deep")
    assert db.get(b"ns:x1") == b"deep"
    with p.snapshot() as snap:
        p.put(b"b", b"new")
        assert snap.get(b"b") == b"2"
        assert [k for k in snap.keys()] == [b"b", b"c", b"x1"]
    p.delete_range(b"b", b"c")
    assert list(p.keys()) == [b"c", b"x1"]
    raw = p.raw_iterator()
    raw.seek_to_last()
    assert raw.key() == b"x1"
    raw.close()


def test_checkpoint_directory_and_device(tmp_path, db):
    for i in range(600):
        db.put(b"%04d" % i, b"v%d" % i)
    db.delete_range(b"0100", b"0200")
    dest = tmp_path / "ckpt"
    db.checkpoint(dest)
    db.put(b"after", b"x")
    with lsm.DB(dest) as c:
        assert c.get(b"after") is None
        assert c.get(b"0599") == b"v599" and c.get(b"0150") is None
        assert len(list(c.keys())) == 500
    with pytest.raises(lsm.InvalidArgumentError):
        db.checkpoint(dest)   # not empty
    dev = blockdev.MemoryDevice(8 << 20)
    db.checkpoint(dev)
    with lsm.DB(dev) as c:
        assert c.get(b"after") == b"x"
        assert len(list(c.keys())) == 501
    with pytest.raises(lsm.InvalidArgumentError, match="blank"):
        db.checkpoint(dev)                     # holds a DB now


def test_destroy_db(tmp_path):
    path = tmp_path / "db"
    with lsm.DB(path, create_if_missing=True) as d:
        d.put(b"a", b"1")
        with pytest.raises(lsm.LockError):
            lsm.destroy_db(path)
    lsm.destroy_db(path)
    assert not path.exists()
    lsm.destroy_db(path)   # nothing there: no error
    path.mkdir()
    (path / "mine.txt").write_text("keep")
    with lsm.DB(path, create_if_missing=True) as d:
        d.put(b"a", b"1")
    lsm.destroy_db(path)
    assert os.listdir(path) == ["mine.txt"]
    dev = blockdev.MemoryDevice(4 << 20)
    with lsm.DB(dev, create_if_missing=True) as d:
        d.put(b"a", b"1")
    lsm.destroy_db(dev)
    with pytest.raises(lsm.NotFoundError):
        lsm.DB(dev)


def test_repair_db_rebuilds_lost_manifest(tmp_path):
    path = tmp_path / "db"
    expect = {}
    with lsm.DB(path, create_if_missing=True, **SMALL) as d:
        for i in range(800):
            k = b"%04d" % (i % 300)
            d.put(k, b"v%d" % i)
            expect[k] = b"v%d" % i
        d.delete_range(b"0050", b"0060")
        for i in range(50, 60):
            expect.pop(b"%04d" % i)
        d.put(b"tail", b"in the log only")
        expect[b"tail"] = b"in the log only"
    for name in os.listdir(path):
        if name.startswith("MANIFEST") or name == "CURRENT":
            os.remove(path / name)
    with pytest.raises(lsm.NotFoundError, match="repair"):
        lsm.DB(path)
    report = lsm.repair_db(path, **SMALL)
    assert report["entries_out"] == len(expect)
    with lsm.DB(path, **SMALL) as d:
        assert dict(d.iterator()) == expect
        d.put(b"new", b"write")
        assert d.get(b"new") == b"write"


def test_repair_db_salvages_corrupt_table(tmp_path):
    path = tmp_path / "db"
    with lsm.DB(path, create_if_missing=True, **SMALL) as d:
        for i in range(400):
            d.put(b"%04d" % i, b"v" * 40)
        d.compact_range()
    tables = sorted(n for n in os.listdir(path) if n.endswith(".sst"))
    victim = path / tables[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    report = lsm.repair_db(path, **SMALL)
    assert report["corrupt_tables"] and report["corrupt_tables"][0]["file"] == tables[0]
    assert (path / (tables[0] + ".corrupt")).exists()
    with lsm.DB(path, **SMALL) as d:
        got = dict(d.iterator())
        assert got and all(v == b"v" * 40 for v in got.values())
        assert 0 < len(got) < 400 or len(got) == 400


# -- introspection -----------------------------------------------------------------------

def test_properties_stats_approximate_size(db):
    for i in range(2000):
        db.put(b"%05d" % i, b"x" * 100)
    db.flush()
    db.compact_range()
    st = db.stats()
    assert st["num_files"] >= 2 and st["total_bytes"] > 20_000
    assert st["flushes"] >= 1 and st["compaction_bytes_written"] > 0
    assert st["write_amplification"] > 0.2   # lz4 shrinks these values
    assert set(st["block_cache"]) >= {"hits", "misses", "hit_rate"}
    levels = [int(db.get_property(f"lsm.num-files-at-level{i}")) for i in range(7)]
    assert sum(levels) == st["num_files"]
    assert db.get_property(b"leveldb.num-files-at-level0") == str(levels[0])
    assert "level" in db.get_property("lsm.sstables")
    assert "Level" in db.get_property("lsm.stats")
    assert db.get_property("lsm.no-such-thing") is None
    with pytest.raises(TypeError, match="name"):
        db.get_property(5)
    whole = db.approximate_size(b"00000", b"99999")
    half = db.approximate_size(b"00000", b"01000")
    assert 0 < half < whole
    assert db.approximate_size(b"b", b"a") == 0
    assert db.approximate_sizes((b"00000", b"99999"), (b"b", b"a")) == [whole, 0]
    with pytest.raises(TypeError):
        db.approximate_sizes(b"00000")


def test_stall_time_is_reported(tmp_path):
    with lsm.DB(tmp_path / "db", create_if_missing=True, write_buffer_size=4096,
                level0_file_num_compaction_trigger=1, level0_slowdown_writes_trigger=1,
                level0_stop_writes_trigger=2) as d:
        for i in range(300):
            d.put(b"%04d" % i, b"v" * 100)
        st = d.stats()
        assert st["stall_micros"] > 0
        assert st["stall_micros_slowdown"] + st["stall_micros_l0_stop"] \
            + st["stall_micros_memtable_stop"] == st["stall_micros"]
        counts = (st["stall_count_slowdown"], st["stall_count_l0_stop"],
                  st["stall_count_memtable_stop"])
        assert sum(counts) > 0
        for why, n in zip(("slowdown", "l0_stop", "memtable_stop"), counts):
            if st[f"stall_micros_{why}"] > 0:
                assert n > 0, why
        assert all(d.get(b"%04d" % i) == b"v" * 100 for i in range(300))


def test_block_cache_capacity_reported_before_first_block(tmp_path):
    with lsm.DB(tmp_path / "db", create_if_missing=True, block_cache_size=1 << 20) as d:
        bc = d.stats()["block_cache"]
        assert bc["capacity"] == 1 << 20 and bc["usage"] == 0


def test_group_commit_shares_syncs(tmp_path):
    with lsm.DB(tmp_path / "db", create_if_missing=True) as d:
        def writer(t):
            for i in range(40):
                d.put(b"t%d-%03d" % (t, i), b"v", sync=True)
        threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(list(d.keys())) == 320
        st = d.stats()
        assert st["grouped_writes"] > st["group_commits"] > 0


def test_read_only_after_background_error(tmp_path):
    fs = CrashFS(PosixFS(tmp_path / "db", create=True))
    d = lsm.DB(fs, create_if_missing=True, write_buffer_size=4096)
    d.put(b"keep", b"1")
    fs.inject_error("create", "*.sst", count=None)
    with pytest.raises(lsm.ReadOnlyError) as info:
        for i in range(1000):
            d.put(b"%04d" % i, b"v" * 100)
        d.flush()
    assert isinstance(info.value.__cause__, lsm.StorageIOError)
    assert d.get(b"keep") == b"1"                  # reads go on
    assert d.stats()["background_error"] is not None
    with pytest.raises(lsm.ReadOnlyError):
        d.delete(b"keep")
    d.close()
    fs.clear_errors()
    with lsm.DB(fs) as d2:                         # reopening recovers from the logs
        assert d2.get(b"keep") == b"1"
        d2.put(b"x", b"y")


def test_close_is_idempotent_and_final(tmp_path):
    d = lsm.DB(tmp_path / "db", create_if_missing=True)
    d.put(b"a", b"1")
    it = d.iterator()
    assert not d.closed
    d.close()
    d.close()
    assert d.closed
    for call in (lambda: d.get(b"a"), lambda: d.put(b"a", b"1"), lambda: d.delete(b"a"),
                 lambda: d.iterator(), lambda: d.snapshot(), lambda: d.flush(),
                 lambda: d.stats(), lambda: d.write_batch()):
        with pytest.raises(lsm.ClosedError):
            call()
    with pytest.raises(lsm.ClosedError):
        next(it)
    with lsm.DB(tmp_path / "db") as d:
        assert d[b"a"] == b"1"
    assert d.closed


def test_files_pinned_by_iterators_survive_compaction(tmp_path):
    with lsm.DB(tmp_path / "db", create_if_missing=True, **SMALL) as d:
        for i in range(1000):
            d.put(b"%04d" % i, b"a" * 50)
        d.flush()
        it = d.iterator()
        first = next(it)
        for i in range(1000):
            d.put(b"%04d" % i, b"b" * 50)
        d.compact_range()
        rest = list(it)
        assert first == (b"0000", b"a" * 50)
        assert len(rest) == 999 and all(v == b"a" * 50 for _, v in rest)
        it.close()
        d.compact_range()
        live = {f.number for lv in d._state.version.levels for f in lv}
        on_disk = {filenames.parse_file_name(n)[1] for n in os.listdir(tmp_path / "db")
                   if n.endswith(".sst")}
        assert on_disk == live


def test_single_background_thread(tmp_path):
    with lsm.DB(tmp_path / "db", create_if_missing=True, max_background_jobs=1,
                **SMALL) as d:
        assert len(d._threads) == 1
        for i in range(3000):
            d.put(b"%05d" % (i * 7 % 3000), b"v%d" % i)
        d.flush()
        d.compact_range()
        assert len(list(d.keys())) == 3000
        st = d.stats()
        assert st["flushes"] > 5 and st["compactions"] + st["trivial_moves"] > 0


def test_no_new_db_over_remains_of_an_old_one(tmp_path):
    path = tmp_path / "db"
    with lsm.DB(path, create_if_missing=True, **SMALL) as d:
        for i in range(500):
            d.put(b"%04d" % i, b"v" * 30)
    os.remove(path / "CURRENT")
    before = sorted(os.listdir(path))
    with pytest.raises(lsm.NotFoundError, match="repair"):
        lsm.DB(path, create_if_missing=True)
    assert sorted(os.listdir(path)) == before
    lsm.repair_db(path)
    with lsm.DB(path) as d:
        assert len(list(d.keys())) == 500


@pytest.mark.parametrize("subs", [1, 3])
def test_subcompactions_keep_every_key_under_concurrent_reads(tmp_path, subs):
    """The same random load with compactions cut into 1 or 3 parallel key
    slices leaves the same contents, while a reader thread checks that a
    key once written is never missing (slices swap in as one edit)."""
    import random
    opts = dict(write_buffer_size=16 << 10, target_file_size_base=4096,
                max_bytes_for_level_base=32 << 10, block_size=512, max_subcompactions=subs)
    rng = random.Random(3)
    model: dict[bytes, bytes] = {}
    with lsm.DB(tmp_path / "db", create_if_missing=True, **opts) as db:
        stop = threading.Event()
        errors: list[str] = []
        stable = [b"stable%03d" % i for i in range(50)]
        for k in stable:
            db.put(k, k * 3)

        def reader() -> None:
            while not stop.is_set():
                for k in stable:
                    if db.get(k) != k * 3:
                        errors.append(f"{k!r} missing or wrong")
                        return

        t = threading.Thread(target=reader)
        t.start()
        try:
            for i in range(6000):
                k = b"k%05d" % rng.randrange(2500)
                if rng.random() < 0.1:
                    db.delete(k)
                    model.pop(k, None)
                else:
                    v = b"%d-" % i * rng.randrange(1, 12)
                    db.put(k, v)
                    model[k] = v
            db.compact_range()
        finally:
            stop.set()
            t.join()
        assert not errors
        assert db.stats()["compactions"] > 0
        got = {k: v for k, v in db.iterator() if not k.startswith(b"stable")}
        assert got == model
        db._check()
