"""FileMetaData / VersionEdit encoding, Version logic, VersionSet over PosixFS."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blockdev.errors import (ClosedError, CorruptionError, InvalidArgumentError,
                             NotFoundError, UnsupportedFormatError)
from blockdev.fs import PosixFS
from lsm import filenames as fn
from lsm.dbformat import KIND_RANGE_TOMBSTONE, KIND_VALUE, pack_internal_key
from lsm.options import Options
from lsm.version import (FORMAT_VERSION, FileMetaData, Version, VersionEdit, VersionSet,
                         sentinel_key)
from lsm.wal import LogWriter


def meta(number: int, lo: bytes, hi: bytes, size: int = 100, seq: int = 1,
         hi_sentinel: bool = False) -> FileMetaData:
    largest = sentinel_key(hi) if hi_sentinel else pack_internal_key(hi, seq, KIND_VALUE)
    return FileMetaData(number, size, pack_internal_key(lo, seq, KIND_VALUE), largest,
                        seq, seq, 10, 1)


ikeys = st.builds(lambda u, s, k: pack_internal_key(u, s, k), st.binary(max_size=20),
                  st.integers(0, 2**56 - 1), st.integers(0, 2))
metas = st.builds(
    lambda n, size, a, b, s1, s2, e, d: FileMetaData(n, size, min(a, b), max(a, b), min(s1, s2),
                                                     max(s1, s2), e, d),
    st.integers(1, 2**64 - 1), st.integers(0, 2**64 - 1), st.binary(min_size=8, max_size=20),
    st.binary(min_size=8, max_size=20), st.integers(0, 2**56), st.integers(0, 2**56),
    st.integers(0, 2**40), st.integers(0, 2**40)).filter(lambda m: m is not None)
opt_u64 = st.none() | st.integers(0, 2**64 - 1)
edits = st.builds(
    VersionEdit,
    log_number=opt_u64, next_file_number=opt_u64,
    last_sequence=st.none() | st.integers(0, 2**56 - 1),
    compact_pointers=st.lists(st.tuples(st.integers(0, 63), ikeys), max_size=3).map(tuple),
    deleted_files=st.lists(st.tuples(st.integers(0, 63), st.integers(1, 2**64 - 1)),
                           max_size=3).map(tuple),
    new_files=st.lists(st.tuples(st.integers(0, 63), metas), max_size=3).map(tuple),
    format_version=st.none() | st.integers(0, 2**32 - 1),
)




@settings(max_examples=150, deadline=None, suppress_health_check=list(__import__(
    "hypothesis").HealthCheck))
@given(st.data())
def test_edit_round_trip(data: st.DataObject) -> None:
    try:
        edit = data.draw(edits)
    except InvalidArgumentError:
        return   # min/max by bytes may not be internal order: not a valid FileMetaData
    enc = edit.encode()
    assert VersionEdit.decode(enc) == edit
    # every strict prefix that ends inside a field is rejected
    if enc:
        cut = data.draw(st.integers(1, len(enc))) - 1
        try:
            VersionEdit.decode(enc[:cut], "MANIFEST-000009", 50)
        except CorruptionError as exc:
            assert exc.file == "MANIFEST-000009" and 50 <= exc.offset <= 50 + len(enc)


def test_edit_worked_example() -> None:
    f = FileMetaData(5, 1000, pack_internal_key(b"a", 3, 1), pack_internal_key(b"b", 4, 1),
                     3, 4, 2, 0)
    edit = VersionEdit(format_version=1, log_number=4, next_file_number=6, last_sequence=4,
                       deleted_files=((0, 2),), new_files=((1, f),))
    assert edit.encode().hex() == (
        "0101" "0204" "0306" "0404" "060002"
        "0701" "05" "e807" "09" "61" "0103000000000000" "09" "62" "0104000000000000"
        "03" "04" "02" "00")


@pytest.mark.parametrize("payload,offset", [
    (bytes([99, 1]), 0),                 # unknown tag
    (bytes([2, 1, 2, 2]), 2),            # repeated scalar
    (bytes([5, 0, 20, 1, 2]), 0),        # pointer key past the end
    (bytes([5, 0, 2, 1, 2]), 0),         # pointer key too short for an internal key
    (bytes([6, 0, 0]), 0),               # deleted file number 0
    (bytes([2, 0x80]), 1),               # truncated varint
    (bytes([4]) + b"\xff" * 8 + b"\x01", 0),   # last sequence > 2**56-1
])
def test_edit_corrupt(payload: bytes, offset: int) -> None:
    with pytest.raises(CorruptionError) as ei:
        VersionEdit.decode(payload, "M", 100)
    assert ei.value.offset == 100 + offset


def test_file_meta_validation() -> None:
    with pytest.raises(InvalidArgumentError):
        FileMetaData(0, 1, pack_internal_key(b"a", 1, 1), pack_internal_key(b"b", 1, 1), 1, 1, 1, 0)
    with pytest.raises(InvalidArgumentError):
        meta(1, b"b", b"a")
    with pytest.raises(InvalidArgumentError):
        FileMetaData(1, 1, b"short", pack_internal_key(b"b", 1, 1), 1, 1, 1, 0)


def test_version_apply_and_lookup() -> None:
    v = Version.empty(4)
    v = v.apply(VersionEdit(new_files=(
        (0, meta(10, b"a", b"m", seq=5)), (0, meta(11, b"c", b"z", seq=9)),
        (1, meta(3, b"k", b"p", hi_sentinel=True)), (1, meta(4, b"p", b"t")),
        (1, meta(2, b"a", b"f")), (2, meta(7, b"a", b"zz")))))
    v._check()
    assert [f.number for f in v.levels[0]] == [11, 10]     # newest first
    assert [f.number for f in v.levels[1]] == [2, 3, 4]
    got = lambda k: [(lv, f.number) for lv, f in v.files_for_get(k)]  # noqa: E731
    assert got(b"d") == [(0, 11), (0, 10), (1, 2), (2, 7)]
    assert got(b"p") == [(0, 11), (1, 4), (2, 7)]           # file 3 ends before p (sentinel)
    assert got(b"g") == [(0, 11), (0, 10), (2, 7)]          # in the gap of level 1
    assert got(b"zzz") == []
    assert [f.number for f in v.overlapping(1, b"f", b"k")] == [2, 3]
    assert [f.number for f in v.overlapping(1, b"p", None)] == [4]
    assert [f.number for f in v.overlapping(1, None, None)] == [2, 3, 4]
    assert [f.number for f in v.overlapping(0, b"n", b"n")] == [11]
    assert v.level_bytes(1) == 300
    v2 = v.apply(VersionEdit(deleted_files=((1, 3),), new_files=((2, meta(8, b"zzz", b"zzzz")),)))
    v2._check()
    assert [f.number for f in v2.levels[1]] == [2, 4] and v.levels[1][1].number == 3
    with pytest.raises(InvalidArgumentError):
        v.apply(VersionEdit(deleted_files=((2, 3),)))           # not at that level
    with pytest.raises(InvalidArgumentError):
        v.apply(VersionEdit(new_files=((1, meta(20, b"o", b"q")),)))   # overlaps 3 and 4
    with pytest.raises(InvalidArgumentError):
        v.apply(VersionEdit(new_files=((3, meta(2, b"x", b"y")),)))    # number twice
    with pytest.raises(InvalidArgumentError):
        v.apply(VersionEdit(new_files=((5, meta(30, b"x", b"y")),)))   # level >= num_levels
    # touching at a sentinel boundary is disjoint; at an inclusive key it is not
    v.apply(VersionEdit(new_files=((3, meta(31, b"a", b"c", hi_sentinel=True)),
                                   (3, meta(32, b"c", b"d")))))._check()
    with pytest.raises(InvalidArgumentError):
        v.apply(VersionEdit(new_files=((3, meta(31, b"a", b"c", seq=1)),
                                       (3, meta(32, b"c", b"d", seq=2)))))


# -- VersionSet --------------------------------------------------------------

def make_set(path: str, **kw: object) -> VersionSet:
    return VersionSet(PosixFS(path, create=True), Options(**kw))


def test_create_recover_apply(tmp_path) -> None:
    vs = make_set(str(tmp_path))
    vs.create_new()
    assert vs.read_current() == "MANIFEST-000001"
    n = vs.new_file_number()
    assert n == 2
    f = meta(n, b"a", b"c", seq=7)
    vs.last_sequence = 7
    v = vs.log_and_apply(VersionEdit(log_number=3, new_files=((0, f),)))
    assert v is vs.current and vs.live_file_numbers() == {2}
    g = meta(vs.new_file_number(), b"x", b"y", seq=8)
    vs.log_and_apply(VersionEdit(new_files=((1, g),), compact_pointers=((1, g.largest),)))
    vs._check()
    vs.close()
    with pytest.raises(ClosedError):
        vs.log_and_apply(VersionEdit())

    vs2 = make_set(str(tmp_path))
    vs2.recover()
    vs2._check()
    assert vs2.current == vs.current
    assert (vs2.log_number, vs2.last_sequence) == (3, 7)
    assert vs2.compact_pointers == {1: g.largest}
    assert vs2.next_file_number > 3
    assert vs2.manifest_number > 1
    files = set(os.listdir(tmp_path))
    assert "MANIFEST-000001" not in files and vs2.manifest_name in files
    assert not any(x.endswith(".dbtmp") for x in files)
    vs2.log_and_apply(VersionEdit(deleted_files=((0, 2),)))
    vs2.close()
    vs3 = make_set(str(tmp_path))
    vs3.recover(read_only=True)
    assert vs3.live_file_numbers() == {g.number}
    with pytest.raises(ClosedError):
        vs3.log_and_apply(VersionEdit())
    with pytest.raises(InvalidArgumentError):
        make_set(str(tmp_path)).create_new()     # exists


def test_manifest_rollover(tmp_path) -> None:
    vs = make_set(str(tmp_path))
    vs.create_new()
    vs.manifest_rollover_bytes = 300
    first = vs.manifest_number
    for i in range(20):
        number = vs.new_file_number()
        vs.log_and_apply(VersionEdit(new_files=((0, meta(number, b"k%02d" % i, b"k%02d" % i,
                                                         seq=i + 1)),)))
    assert vs.manifest_number != first
    assert len([x for x in os.listdir(tmp_path) if x.startswith("MANIFEST-")]) == 1
    expect = vs.current
    vs.close()
    vs2 = make_set(str(tmp_path))
    vs2.recover()
    assert vs2.current == expect


def _manifest_path(tmp_path) -> str:
    (name,) = [x for x in os.listdir(tmp_path) if x.startswith("MANIFEST-")]
    return os.path.join(tmp_path, name)


def test_torn_tail_is_ignored(tmp_path) -> None:
    vs = make_set(str(tmp_path))
    vs.create_new()
    for i in range(3):
        vs.log_and_apply(VersionEdit(new_files=((0, meta(vs.new_file_number(), b"a", b"b",
                                                         seq=i + 1)),)))
    before = vs.current
    last = meta(vs.new_file_number(), b"q", b"r", seq=9)
    vs.log_and_apply(VersionEdit(new_files=((0, last),)))
    vs.close()
    path = _manifest_path(tmp_path)
    size = os.path.getsize(path)
    with open(path, "r+b") as fh:     # cut into the last record
        fh.truncate(size - 5)
    vs2 = make_set(str(tmp_path))
    vs2.recover()
    assert vs2.current == before


def test_corrupt_middle_record(tmp_path) -> None:
    vs = make_set(str(tmp_path))
    vs.create_new()
    for i in range(3):
        vs.log_and_apply(VersionEdit(new_files=((0, meta(vs.new_file_number(), b"a", b"b",
                                                         seq=i + 1)),)))
    vs.close()
    path = _manifest_path(tmp_path)
    data = bytearray(open(path, "rb").read())
    data[30] ^= 0x40                       # inside the second record's payload
    open(path, "wb").write(bytes(data))
    with pytest.raises(CorruptionError) as ei:
        make_set(str(tmp_path)).recover()
    assert ei.value.file == os.path.basename(path)
    assert ei.value.offset is not None


def _write_manifest(tmp_path, records: list[bytes], number: int = 5) -> None:
    fs = PosixFS(str(tmp_path), create=True)
    name = fn.manifest_file_name(number)
    w = LogWriter(fs.create(name), name)
    for r in records:
        w.add_record(r)
    w.sync()
    w.close()
    with open(os.path.join(tmp_path, "CURRENT"), "w") as fh:
        fh.write(name + "\n")


def test_newer_format_and_bad_first_record(tmp_path) -> None:
    base = dict(log_number=1, next_file_number=9, last_sequence=0)
    _write_manifest(tmp_path, [VersionEdit(format_version=FORMAT_VERSION + 1, **base).encode()])
    with pytest.raises(UnsupportedFormatError):
        make_set(str(tmp_path)).recover()
    _write_manifest(tmp_path, [VersionEdit(**base).encode()])
    with pytest.raises(CorruptionError, match="format version"):
        make_set(str(tmp_path)).recover()
    _write_manifest(tmp_path, [VersionEdit(format_version=1, log_number=1).encode()])
    with pytest.raises(CorruptionError, match="lacks"):
        make_set(str(tmp_path)).recover()
    _write_manifest(tmp_path, [VersionEdit(format_version=1, **base).encode(),
                               VersionEdit(deleted_files=((0, 4),)).encode()])
    with pytest.raises(CorruptionError, match="inconsistent"):
        make_set(str(tmp_path)).recover()
    _write_manifest(tmp_path, [VersionEdit(format_version=1, **base).encode(),
                               VersionEdit(new_files=((6, meta(3, b"a", b"b")),)).encode()])
    with pytest.raises(InvalidArgumentError, match="num_levels"):
        make_set(str(tmp_path), num_levels=4).recover()


def test_current_problems(tmp_path) -> None:
    with pytest.raises(NotFoundError):
        make_set(str(tmp_path)).recover()
    for content in (b"MANIFEST-1\n", b"garbage", b"MANIFEST-000000\n", b"MANIFEST-000003",
                    b"\xff\xfe"):
        with open(os.path.join(tmp_path, "CURRENT"), "wb") as fh:
            fh.write(content)
        with pytest.raises(CorruptionError) as ei:
            make_set(str(tmp_path)).recover()
        assert ei.value.file == "CURRENT"
    with open(os.path.join(tmp_path, "CURRENT"), "wb") as fh:
        fh.write(b"MANIFEST-000003\n")
    with pytest.raises(CorruptionError, match="missing"):
        make_set(str(tmp_path)).recover()


def test_range_tombstone_extent_meta() -> None:
    f = FileMetaData(1, 10, pack_internal_key(b"a", 4, KIND_RANGE_TOMBSTONE), sentinel_key(b"k"),
                     4, 4, 1, 1)
    assert f.contains(b"a") and f.contains(b"j") and not f.contains(b"k")
    assert f.overlaps(b"j", b"z") and not f.overlaps(b"k", b"z")


def test_new_database_golden_bytes(tmp_path) -> None:
    make_set(str(tmp_path)).create_new()
    assert open(os.path.join(tmp_path, "MANIFEST-000001"), "rb").read().hex() == (
        "4019eae6080001" "0101" "0200" "0302" "0400")
    assert open(os.path.join(tmp_path, "CURRENT"), "rb").read() == b"MANIFEST-000001\n"


# -- crashes and I/O errors (CrashFS) ---------------------------------------------

def test_crash_after_each_edit_recovers_last_synced_state(tmp_path) -> None:
    from blockdev.crashfs import CrashFS

    for seed in range(6):
        d = tmp_path / f"db{seed}"
        cfs = CrashFS(PosixFS(str(d), create=True))
        vs = VersionSet(cfs, Options())
        vs.create_new()
        for i in range(seed * 3 + 1):
            vs.last_sequence = 10 * (i + 1)
            vs.log_and_apply(VersionEdit(log_number=i, new_files=((0, meta(
                vs.new_file_number(), b"k%02d" % i, b"k%02d" % i, seq=i + 1)),)))
            if i % 4 == 3:       # a reopen in the middle: new MANIFEST, old one deleted
                expect_mid = vs.current
                vs.close()
                vs = VersionSet(cfs, Options())
                vs.recover()
                assert vs.current == expect_mid
        expect = (vs.current, vs.last_sequence, vs.log_number)
        cfs.crash(mode="random", seed=seed)
        vs2 = VersionSet(cfs, Options())
        vs2.recover()
        assert (vs2.current, vs2.last_sequence, vs2.log_number) == expect


def test_failed_manifest_write_is_sticky_and_harmless(tmp_path) -> None:
    from blockdev.crashfs import CrashFS
    from blockdev.errors import StorageIOError

    cfs = CrashFS(PosixFS(str(tmp_path), create=True))
    vs = VersionSet(cfs, Options())
    vs.create_new()
    vs.log_and_apply(VersionEdit(new_files=((0, meta(vs.new_file_number(), b"a", b"b")),)))
    before = vs.current
    cfs.inject_error("sync", "MANIFEST-*")
    with pytest.raises(StorageIOError):
        vs.log_and_apply(VersionEdit(new_files=((0, meta(vs.new_file_number(), b"c", b"d")),)))
    assert vs.current == before
    with pytest.raises(StorageIOError):          # sticky: the DB must reopen
        vs.log_and_apply(VersionEdit())
    cfs.crash(mode="all")
    vs2 = VersionSet(cfs, Options())
    vs2.recover()
    assert vs2.current == before


def test_failed_current_swap_keeps_old_state(tmp_path) -> None:
    from blockdev.crashfs import CrashFS
    from blockdev.errors import StorageIOError

    cfs = CrashFS(PosixFS(str(tmp_path), create=True))
    vs = VersionSet(cfs, Options())
    vs.create_new()
    vs.log_and_apply(VersionEdit(new_files=((1, meta(vs.new_file_number(), b"a", b"b")),)))
    expect = vs.current
    vs.close()
    cfs.inject_error("rename", "*.dbtmp")
    with pytest.raises(StorageIOError):
        VersionSet(cfs, Options()).recover()
    assert not any(n.endswith(".dbtmp") for n in cfs.list())
    cfs.crash(mode="random", seed=3)
    vs2 = VersionSet(cfs, Options())
    vs2.recover()
    assert vs2.current == expect
    assert [n for n in cfs.list() if n.startswith("MANIFEST-")] == [vs2.manifest_name]


def test_concurrent_log_and_apply(tmp_path) -> None:
    import threading

    vs = make_set(str(tmp_path))
    vs.create_new()
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for i in range(15):
                n = vs.new_file_number()
                vs.log_and_apply(VersionEdit(new_files=((0, meta(n, b"t%d" % t, b"t%d" % t,
                                                                 seq=n)),)))
        except BaseException as exc:   # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(vs.live_file_numbers()) == 60
    vs._check()
    expect = vs.current
    vs.close()
    vs2 = make_set(str(tmp_path))
    vs2.recover()
    assert vs2.current == expect
