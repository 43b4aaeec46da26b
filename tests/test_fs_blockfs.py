"""BlockFS specifics: format and mount errors, the superblock pair, the
metadata journal (torn tail, compaction, crashes with lost device writes),
the extent allocator, a full device, discard, check(), FileDevice."""

from __future__ import annotations

import os
import random
import struct
from dataclasses import replace

import pytest

from blockdev import BlockFS, writeback
from blockdev.blockfs import (
    REC_COMMIT,
    REC_EXTEND,
    Superblock,
    _Allocator,
    _payload_extend,
    encode_record,
)
from blockdev.device import MemoryDevice
from blockdev.errors import (
    ArgumentTypeError,
    CorruptionError,
    InvalidArgumentError,
    LockError,
    NoSpaceError,
    StorageIOError,
    UnsupportedFormatError,
)
from blockdev.faulty import FaultyDevice


def write_file(fs: BlockFS, name: str, data: bytes, sync: bool = True) -> None:
    w = fs.create(name)
    w.append(data)
    if sync:
        w.sync()
    w.close()


def read_all(fs: BlockFS, name: str) -> bytes:
    with fs.open(name) as r:
        return r.read(0, r.size)


# -- format / mount -----------------------------------------------------------


def test_mount_blank_device_names_it() -> None:
    dev = MemoryDevice(1 << 20, name="blank-disk")
    with pytest.raises(UnsupportedFormatError) as info:
        BlockFS.mount(dev)
    assert "blank-disk" in str(info.value)
    assert info.value.file == "blank-disk"


def test_mount_newer_version_refused() -> None:
    dev = MemoryDevice(1 << 20, name="future")
    fs = BlockFS.format(dev)
    sb = fs.superblock
    fs.close()
    newer = replace(sb, format_version=sb.format_version + 1)
    dev.write(4096 * (sb.sequence % 2), newer.encode())
    with pytest.raises(UnsupportedFormatError, match="version 2"):
        BlockFS.mount(dev)


def test_mount_both_superblocks_corrupt() -> None:
    dev = MemoryDevice(1 << 20, name="bad")
    BlockFS.format(dev).close()
    for slot in (0, 1):
        raw = bytearray(dev.read(slot * 4096, 4096))
        raw[:8] = b"SDKBLKFS"
        raw[20] ^= 0xFF
        dev.write(slot * 4096, bytes(raw))
    with pytest.raises(CorruptionError) as info:
        BlockFS.mount(dev)
    assert info.value.file == "bad"


def test_torn_newest_superblock_falls_back() -> None:
    dev = MemoryDevice(2 << 20)
    fs = BlockFS.format(dev)
    write_file(fs, "a", b"A" * 5000)
    fs.close()
    fs = BlockFS.mount(dev)  # mount compacts: a new superblock
    write_file(fs, "b", b"B" * 100)
    seq = fs.superblock.sequence
    fs._abandon()
    # Tear the newest superblock: the previous one (and its area) is used.
    dev.write(4096 * (seq % 2), b"\x00" * 100 + b"\xff" * 3996)
    fs = BlockFS.mount(dev)
    assert read_all(fs, "a") == b"A" * 5000
    assert "b" not in fs.list()  # it lived in the area of the torn superblock
    assert fs.superblock.sequence % 2 == seq % 2  # the older slot's successor
    fs.check()
    fs.close()


def test_create_flag_and_format() -> None:
    dev = MemoryDevice(1 << 20)
    fs = BlockFS(dev, create=True)
    write_file(fs, "keep", b"k")
    fs.close()
    fs = BlockFS(dev, create=True)  # existing: mounted, not formatted
    assert fs.list() == ["keep"]
    fs.close()
    fs = BlockFS.format(dev)
    assert fs.list() == []
    fs.close()


def test_double_mount_is_locked() -> None:
    dev = MemoryDevice(1 << 20, name="shared")
    fs = BlockFS.format(dev)
    with pytest.raises(LockError, match="shared"):
        BlockFS.mount(dev)
    fs.close()
    BlockFS.mount(dev).close()


def test_format_rejects_tiny_or_small_block_devices() -> None:
    with pytest.raises(InvalidArgumentError):
        BlockFS.format(MemoryDevice(8 * 4096))
    with pytest.raises(InvalidArgumentError):
        BlockFS.format(MemoryDevice(1 << 20, block_size=256))
    with pytest.raises(UnsupportedFormatError):
        BlockFS.mount(MemoryDevice(4096))


def test_superblock_round_trip_layout() -> None:
    dev = MemoryDevice(1 << 20)
    fs = BlockFS.format(dev, journal_blocks=4)
    sb = fs.superblock
    fs.close()
    raw = dev.read(4096 * (sb.sequence % 2), 4096)
    assert raw[:8] == b"SDKBLKFS"
    assert struct.unpack_from("<I", raw, 8)[0] == 1
    assert struct.unpack_from("<I", raw, 12)[0] == 4096
    assert struct.unpack_from("<Q", raw, 16)[0] == 1 << 20
    assert sb.area0_offset == 2 * 4096 and sb.area_length == 4 * 4096
    assert sb.data_offset == 10 * 4096 and sb.data_blocks == 256 - 10
    assert raw == sb.encode()


# -- journal --------------------------------------------------------------------


def test_torn_journal_tail_is_ignored() -> None:
    dev = MemoryDevice(1 << 20, name="torn")
    fs = BlockFS.format(dev)
    write_file(fs, "a", b"a" * 3000)
    sb = fs.superblock
    jpos = fs._jpos
    ino = fs._names["a"]
    fs._abandon()
    # A half-written EXTEND record after the valid ones.
    rec = encode_record(REC_EXTEND, sb.sequence, _payload_extend(ino, 9000, [(200, 2)]))
    area = bytearray(dev.read(sb.active_offset, sb.area_length))
    area[jpos:jpos + len(rec) // 2] = rec[:len(rec) // 2]
    dev.write(sb.active_offset, bytes(area))
    fs = BlockFS.mount(dev)
    assert fs.size("a") == 3000
    assert read_all(fs, "a") == b"a" * 3000
    fs.check()
    fs.close()


def test_record_from_an_older_epoch_is_ignored() -> None:
    dev = MemoryDevice(1 << 20)
    fs = BlockFS.format(dev)
    write_file(fs, "a", b"a" * 10)
    sb = fs.superblock
    jpos = fs._jpos
    ino = fs._names["a"]
    fs._abandon()
    rec = group(sb.sequence - 1, encode_record(REC_EXTEND, sb.sequence - 1, _payload_extend(ino, 20, [])))
    area = bytearray(dev.read(sb.active_offset, sb.area_length))
    area[jpos:jpos + len(rec)] = rec
    dev.write(sb.active_offset, bytes(area))
    fs = BlockFS.mount(dev)
    assert fs.size("a") == 10
    fs.close()


def test_checksummed_nonsense_record_is_corruption() -> None:
    dev = MemoryDevice(1 << 20, name="nonsense")
    fs = BlockFS.format(dev)
    write_file(fs, "a", b"a")
    sb = fs.superblock
    jpos = fs._jpos
    fs._abandon()
    rec = group(sb.sequence, encode_record(REC_EXTEND, sb.sequence, _payload_extend(999, 5, [(100, 1)])))
    dev.write(sb.active_offset, _patch(dev.read(sb.active_offset, sb.area_length), jpos, rec))
    with pytest.raises(CorruptionError) as info:
        BlockFS.mount(dev)
    assert info.value.file == "nonsense"
    assert info.value.offset == sb.active_offset + jpos


def test_overlapping_extents_in_journal_are_corruption() -> None:
    dev = MemoryDevice(1 << 20)
    fs = BlockFS.format(dev)
    write_file(fs, "a", b"a" * 4096)
    write_file(fs, "b", b"b")
    sb = fs.superblock
    jpos = fs._jpos
    a_ext = fs._inodes[fs._names["a"]].extents[0]
    ino_b = fs._names["b"]
    fs._abandon()
    # b claims a's block.
    rec = group(sb.sequence,
                encode_record(REC_EXTEND, sb.sequence, _payload_extend(ino_b, 4097, [(a_ext[0], 1)])))
    dev.write(sb.active_offset, _patch(dev.read(sb.active_offset, sb.area_length), jpos, rec))
    with pytest.raises(CorruptionError, match="belongs to both"):
        BlockFS.mount(dev)


def group(epoch: int, *records: bytes) -> bytes:
    """Records followed by the COMMIT that closes their group."""
    return b"".join(records) + encode_record(REC_COMMIT, epoch, b"")


def test_group_without_commit_is_torn() -> None:
    dev = MemoryDevice(1 << 20)
    fs = BlockFS.format(dev)
    write_file(fs, "a", b"a" * 10)
    sb = fs.superblock
    jpos = fs._jpos
    ino = fs._names["a"]
    fs._abandon()
    rec = encode_record(REC_EXTEND, sb.sequence, _payload_extend(ino, 10, [], None))
    dev.write(sb.active_offset, _patch(dev.read(sb.active_offset, sb.area_length), jpos, rec))
    fs = BlockFS.mount(dev)
    assert fs.size("a") == 10
    fs.close()


def test_last_group_with_unflushed_data_is_dropped() -> None:
    """A sync's data and record share one flush: if the record reached the
    device but the data did not, replay drops that last group."""
    dev = MemoryDevice(1 << 20, name="oneflush")
    fs = BlockFS.format(dev)
    w = fs.create("wal")
    w.append(b"1" * 3000)
    w.sync()
    w.append(b"2" * 7000)
    w.sync()
    node = fs._inodes[fs._names["wal"]]
    runs = node.slice(0, node.nblocks)
    fs._abandon()
    # The second sync's data never made it: its blocks hold old bytes.
    phys = runs[0][0] + 1  # logical block 1 = bytes 4096..8191
    dev.write(phys * 4096, bytes(4096))
    fs = BlockFS.mount(dev)
    assert fs.size("wal") == 3000
    assert read_all(fs, "wal") == b"1" * 3000
    fs.check()
    fs.close()


def test_earlier_groups_are_not_rechecked() -> None:
    dev = MemoryDevice(1 << 20)
    fs = BlockFS.format(dev)
    write_file(fs, "a", b"a" * 5000)
    write_file(fs, "b", b"b" * 10)  # a later group proves a's flush completed
    node = fs._inodes[fs._names["a"]]
    start = node.extents[0][0]
    fs._abandon()
    dev.write(start * 4096, b"X" * 4096)  # device damage after the fact
    fs = BlockFS.mount(dev)
    assert fs.size("a") == 5000
    assert fs.size("b") == 10
    fs.close()


def _patch(area: bytes, pos: int, rec: bytes) -> bytes:
    buf = bytearray(area)
    buf[pos:pos + len(rec)] = rec
    return bytes(buf)


def test_journal_compaction_keeps_state() -> None:
    dev = MemoryDevice(2 << 20, block_size=512)
    fs = BlockFS.format(dev, journal_blocks=4)
    model: dict[str, bytes] = {}
    seq0 = fs.superblock.sequence
    for i in range(200):
        name = f"f{i % 13}"
        data = bytes([i % 256]) * (i * 37 % 3000 + 1)
        write_file(fs, name, data)
        model[name] = data
        if i % 17 == 0:
            fs.rename(name, f"r{i}")
            model[f"r{i}"] = model.pop(name)
        if i % 23 == 0 and model:
            victim = sorted(model)[0]
            fs.delete(victim)
            del model[victim]
    assert fs.superblock.sequence > seq0 + 5  # compacted several times
    fs.check()
    fs._abandon()
    fs = BlockFS.mount(dev)
    assert {n: read_all(fs, n) for n in fs.list()} == model
    fs.check()
    fs.close()


def test_metadata_journal_full_is_nospace_and_recoverable() -> None:
    dev = MemoryDevice(1 << 20, block_size=512)
    fs = BlockFS.format(dev, journal_blocks=2)
    names = []
    with pytest.raises(NoSpaceError):
        for i in range(100):
            name = f"{i:03d}" + "n" * 200
            write_file(fs, name, b"x")
            names.append(name)
    assert 2 <= len(names) < 100
    for name in names[:-1]:
        fs.delete(name)
    write_file(fs, "after", b"fine")
    fs.check()
    fs._abandon()
    fs = BlockFS.mount(dev)
    assert "after" in fs.list()
    fs.close()


# -- flush: surviving the death of the process ----------------------------------


@pytest.fixture(params=["device", "buffer"])
def wb(request, tmp_path):
    """How a flush leaves the process: the provisional group on the device
    (no write-back buffer) or the write-back buffer in ``tmp_path``."""
    return None if request.param == "device" else tmp_path


def test_flush_survives_process_death_without_growing_the_journal(wb) -> None:
    """After a process death (the device keeps every write, the buffer is
    left behind) the flushed bytes of every flushed file are there, and no
    flush moved the journal tail."""
    dev = MemoryDevice(1 << 20, name="flush")
    fs = BlockFS.format(dev, writeback_dir=wb)
    a, b = fs.create("a"), fs.create("b")
    a.append(b"s" * 100)
    a.sync()
    jpos = fs._jpos
    want = {"a": b"s" * 100, "b": b""}
    for i in range(300):
        w, name = (a, "a") if i % 3 else (b, "b")
        data = bytes([i % 251]) * (i * 53 % 700 + 1)  # crosses many block boundaries
        w.append(data)
        w.flush()
        want[name] += data
    assert fs._jpos == jpos
    b.append(b"never flushed")  # may or may not survive
    fs._abandon()
    fs = BlockFS.mount(dev, writeback_dir=wb)
    assert read_all(fs, "a") == want["a"]
    assert read_all(fs, "b")[:len(want["b"])] == want["b"]
    assert len(read_all(fs, "b")) in (len(want["b"]), len(want["b"]) + 13)
    fs.check()
    fs.close()


def test_flush_of_a_new_file_brings_its_create(wb) -> None:
    dev = MemoryDevice(1 << 20)
    fs = BlockFS.format(dev, writeback_dir=wb)
    w = fs.create("new")
    w.flush()  # nothing appended: nothing to do (the file may vanish)
    w.append(b"n" * 10)
    w.flush()
    w.flush()  # nothing new: no write
    fs._abandon()
    fs = BlockFS.mount(dev, writeback_dir=wb)
    assert read_all(fs, "new") == b"n" * 10
    fs.close()


def test_flushed_bytes_that_did_not_reach_the_media_are_dropped(wb) -> None:
    """The flushed state carries the checksum of the bytes past the
    journaled size and is verified like any last group: if a block of them
    is not on the device (a power loss dropped an unflushed data write)
    it is dropped, and the file keeps its synced size."""
    dev = MemoryDevice(1 << 20)
    fs = BlockFS.format(dev, writeback_dir=wb)
    w = fs.create("wal")
    w.append(b"1" * 3000)
    w.sync()
    w.append(b"2" * 7000)
    w.flush()
    node = fs._inodes[fs._names["wal"]]
    phys = node.slice(1, 2)[0][0]  # logical block 1 (bytes 4096..8191), written at append
    fs._abandon()
    dev.write(phys * 4096, bytes(4096))
    fs = BlockFS.mount(dev, writeback_dir=wb)
    assert read_all(fs, "wal") == b"1" * 3000
    fs.check()
    fs.close()


def test_flush_that_does_not_fit_the_journal_block_commits() -> None:
    """Without a buffer the provisional group must fit in the rest of the
    journal's tail block (so one atomic block write replaces it); when
    queued CREATEs make it too big, the flush commits instead, and the
    journal tail moves."""
    dev = MemoryDevice(1 << 20, block_size=512)
    fs = BlockFS.format(dev, writeback_dir=None)
    handles = [fs.create(f"file-with-a-long-name-{i:02d}") for i in range(20)]  # queued CREATEs
    jpos = fs._jpos
    handles[0].append(b"x" * 700)
    handles[0].flush()
    assert fs._jpos > jpos and not fs._prov
    for _ in range(2):  # the CREATEs are committed now: it fits, unless that
        handles[1].append(b"y" * 5)  # commit left the tail at its block's end
        handles[1].flush()
        if fs._prov:
            break
    assert fs._prov
    fs._abandon()
    fs = BlockFS.mount(dev, writeback_dir=None)
    assert read_all(fs, "file-with-a-long-name-00") == b"x" * 700
    assert read_all(fs, "file-with-a-long-name-01") == b"y" * len(read_all(fs, "file-with-a-long-name-01"))
    assert len(read_all(fs, "file-with-a-long-name-01")) in (5, 10)
    fs.check()
    fs.close()


def test_journal_compaction_keeps_provisional_sizes(wb) -> None:
    """Compactions of a small journal while a file is flushed but not
    synced: the snapshot takes the file's live size, so a process death at
    any point keeps the flushed bytes."""
    dev = MemoryDevice(2 << 20, block_size=512)
    fs = BlockFS.format(dev, journal_blocks=2, writeback_dir=wb)
    wal = fs.create("wal")
    logged = b""
    seq0 = fs.superblock.sequence
    for i in range(150):
        data = bytes([i % 256]) * (i * 29 % 400 + 1)
        wal.append(data)
        wal.flush()
        logged += data
        write_file(fs, f"t{i % 7}", bytes([i]) * 300)  # create over, sync: journal churn
        if i % 50 == 49:
            fs._abandon()
            fs = BlockFS.mount(dev, writeback_dir=wb)
            assert read_all(fs, "wal") == logged
            wal = _reopen_for_append(fs, "wal")
    assert fs.superblock.sequence > seq0 + 5
    fs.check()
    fs.close()


def _reopen_for_append(fs: BlockFS, name: str):
    """BlockFS files are write-once: continue ``name`` as a new file with
    the same bytes (what the DB does with a new log)."""
    data = read_all(fs, name)
    w = fs.create(name)
    w.append(data)
    w.sync()
    return w


# -- the write-back buffer ------------------------------------------------------


def _buffered(tmp_path, **kw):
    dev = MemoryDevice(1 << 20)
    fs = BlockFS.format(dev, writeback_dir=tmp_path, **kw)
    w = fs.create("wal")
    w.append(b"a" * 5000)
    w.sync()
    return dev, fs, w


def test_buffer_flush_does_no_device_io_and_clean_close_removes_it(tmp_path) -> None:
    dev, fs, w = _buffered(tmp_path)
    path = fs._wb.path
    before = dev.read(0, dev.size)
    for _ in range(20):
        w.append(b"b" * 100)
        w.flush()
    assert dev.read(0, dev.size) == before  # the flushes went to the buffer only
    assert os.path.exists(path)
    fs.close()
    assert not os.path.exists(path)


def test_buffer_that_is_stale_is_ignored(tmp_path) -> None:
    """A staged group is applied only where the journal ends: once anything
    was committed after it, an old copy of the buffer changes nothing."""
    dev, fs, w = _buffered(tmp_path)
    w.append(b"b" * 100)
    w.flush()
    old = open(fs._wb.path, "rb").read()
    write_file(fs, "other", b"o" * 10)  # a commit: the journal moves on (and journals the wal)
    w.append(b"c" * 100)  # not flushed
    path = fs._wb.path
    fs._abandon()
    with open(path, "wb") as f:
        f.write(old)
    fs = BlockFS.mount(dev, writeback_dir=tmp_path)
    assert read_all(fs, "wal") == b"a" * 5000 + b"b" * 100
    assert read_all(fs, "other") == b"o" * 10
    fs.check()
    fs.close()


def test_buffer_torn_newest_slot_falls_back_to_the_previous(tmp_path) -> None:
    """Two slots: a process killed while storing leaves the previous
    flush's state, which is applied."""
    dev, fs, w = _buffered(tmp_path)
    w.append(b"b" * 100)
    w.flush()
    w.append(b"c" * 100)
    w.flush()
    wbuf = fs._wb
    newest = 1 - wbuf._slot
    path = wbuf.path
    fs._abandon()
    with open(path, "r+b") as f:  # tear the newest store
        f.seek(newest * writeback.SLOT_SIZE + 100)
        f.write(b"\xff" * 8)
    fs = BlockFS.mount(dev, writeback_dir=tmp_path)
    assert read_all(fs, "wal") == b"a" * 5000 + b"b" * 100
    fs.check()
    fs.close()


def test_buffer_lock_keeps_a_second_mount_of_a_copy_out(tmp_path) -> None:
    """A copy of the device (same UUID) mounted beside the original gets no
    buffer (the original holds its lock) and flushes to its device."""
    dev, fs, w = _buffered(tmp_path)
    copy = MemoryDevice(dev.size)
    copy.write(0, dev.read(0, dev.size))
    fs2 = BlockFS.mount(copy, writeback_dir=tmp_path)
    assert fs._wb is not None and fs2._wb is None
    w2 = fs2.create("x")
    w2.append(b"x" * 10)
    w2.flush()
    fs2._abandon()
    fs2 = BlockFS.mount(copy, writeback_dir=None)
    assert read_all(fs2, "x") == b"x" * 10
    fs2.close()
    fs.close()


def test_buffer_write_error_falls_back_to_the_device(tmp_path, monkeypatch) -> None:
    dev, fs, w = _buffered(tmp_path)

    def fail(*args, **kw):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(writeback.WriteBackBuffer, "store", fail)
    w.append(b"b" * 100)
    w.flush()
    assert fs._wb is None  # dropped for this mount
    monkeypatch.undo()
    fs._abandon()
    fs = BlockFS.mount(dev, writeback_dir=tmp_path)
    assert read_all(fs, "wal") == b"a" * 5000 + b"b" * 100
    fs.close()


def test_buffer_image_outside_the_data_area_is_corruption(tmp_path) -> None:
    dev, fs, w = _buffered(tmp_path)
    w.append(b"b" * 100)
    w.flush()
    staged = fs._wb.load()
    assert staged is not None and len(staged.images) == 1
    fs._wb.store(staged.sequence, staged.jpos, staged.records, [(0, staged.images[0][1])])
    fs._abandon()
    with pytest.raises(CorruptionError, match="write-back buffer"):
        BlockFS.mount(dev, writeback_dir=tmp_path)


def test_buffer_too_big_commits_instead_of_mixing_paths(tmp_path) -> None:
    """Tail images that overflow a buffer slot make the flush commit (it
    must not write a provisional group at the journal end, which would make
    the next staged group look stale): every flushed byte survives."""
    bs = 128 << 10  # two tail images no longer fit a slot
    dev = MemoryDevice(64 * bs, block_size=bs)
    fs = BlockFS.format(dev, journal_blocks=2, writeback_dir=tmp_path)
    x, y = fs.create("x"), fs.create("y")
    x.append(b"A" * 131000)
    y.append(b"B" * 131000)
    x.flush()  # staged
    jpos = fs._jpos
    y.flush()  # does not fit the slot: a commit
    assert fs._jpos > jpos and not fs._prov
    x.append(b"C" * 100)
    x.flush()  # staged again, at the new journal end
    fs._abandon()
    fs = BlockFS.mount(dev, writeback_dir=tmp_path)
    assert read_all(fs, "x") == b"A" * 131000 + b"C" * 100
    assert read_all(fs, "y") == b"B" * 131000
    fs.check()
    fs.close()


def test_buffer_of_a_copy_of_the_device_is_never_applied(tmp_path) -> None:
    """Two copies of one device (same UUID) share a buffer file name; every
    mount has its own journal epoch, so the copy's staged group never
    matches the original: no byte the original never held appears there."""
    a = MemoryDevice(4 << 20, name="A")
    BlockFS.format(a, writeback_dir=None).close()
    b = MemoryDevice(4 << 20, name="B")
    b.write(0, a.read(0, a.size))
    fa = BlockFS.mount(a, writeback_dir=tmp_path)
    w = fa.create("x")
    w.append(b"from A" * 10)
    w.flush()
    fa._abandon()
    fb = BlockFS.mount(b, writeback_dir=tmp_path)
    assert fb.superblock.sequence != fa.superblock.sequence
    w = fb.create("y")
    w.append(b"from B" * 10)
    w.flush()  # takes over the buffer file
    fb._abandon()
    fa = BlockFS.mount(a, writeback_dir=tmp_path)
    assert "y" not in fa.list()
    fa.check()
    fa.close()


def test_buffer_directory_errors(tmp_path, monkeypatch) -> None:
    dev = MemoryDevice(1 << 20)
    with pytest.raises(StorageIOError, match="write-back buffer"):
        BlockFS.format(dev, writeback_dir=tmp_path / "missing")
    monkeypatch.setenv(writeback.ENV_DIR, str(tmp_path / "missing"))
    fs = BlockFS.format(dev)  # the automatic default falls back to no buffer
    assert fs._wb is None
    w = fs.create("f")
    w.append(b"f" * 10)
    w.flush()
    fs._abandon()
    fs = BlockFS.mount(dev)
    assert read_all(fs, "f") == b"f" * 10
    fs.close()
    monkeypatch.setenv(writeback.ENV_DIR, "")
    assert writeback.default_dir() is None


def test_buffer_file_that_is_not_ours_is_not_used(tmp_path) -> None:
    uuid = bytes(range(16))
    target = tmp_path / "elsewhere"
    target.write_bytes(b"")
    os.symlink(target, writeback.buffer_path(tmp_path, uuid))
    with pytest.raises(OSError):  # never through a symbolic link
        writeback.WriteBackBuffer.open(tmp_path, uuid)


def test_buffer_argument_checks(tmp_path) -> None:
    with pytest.raises(ArgumentTypeError, match="writeback_dir"):
        BlockFS.format(MemoryDevice(1 << 20), writeback_dir=3)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        writeback.WriteBackBuffer.open(tmp_path, b"short")


# -- crashes with lost device writes ------------------------------------------


class Model:
    """Files and their synced contents for crash tests."""

    def __init__(self) -> None:
        self.synced: dict[str, bytes] = {}     # durable name -> synced bytes
        self.flushed: dict[str, bytes] = {}    # name -> bytes that survive a process death
        self.appended: dict[str, bytes] = {}   # name -> every appended byte

    def check(self, fs: BlockFS, process_death: bool = False) -> None:
        names = set(fs.list())
        must = dict(self.synced)
        if process_death:
            must.update({n: d for n, d in self.flushed.items() if d})
        for name, data in must.items():
            assert name in names, f"synced file {name} lost"
            got = read_all(fs, name)
            assert got[:len(data)] == data, f"synced bytes of {name} damaged"
            full = self.appended.get(name, data)
            assert full.startswith(got), f"{name} holds bytes never appended"
        fs.check()


@pytest.mark.parametrize("buffered", [False, True], ids=["device", "buffer"])
@pytest.mark.parametrize("seed", range(18))
def test_crash_with_lost_device_writes(seed: int, buffered: bool, tmp_path) -> None:
    """Random creates, appends, flushes, syncs and deletes, then a power
    loss (seeds 0, 1 mod 3: every / a random subset of the unflushed device
    writes lost) or a process death (2 mod 3: the device keeps every write,
    so flushed bytes survive too)."""
    rng = random.Random(seed)
    dev = FaultyDevice(MemoryDevice(1 << 20, name=f"crash{seed}"))
    wb = tmp_path if buffered else None
    fs = BlockFS.format(dev, journal_blocks=2, writeback_dir=wb)
    model = Model()
    writers: dict[str, object] = {}
    for step in range(rng.randrange(20, 120)):
        op = rng.random()
        if op < 0.2 or not writers:
            name = f"f{rng.randrange(6)}"
            w = fs.create(name)
            writers[name] = w
            model.appended[name] = b""
            model.synced.pop(name, None)  # replaced: not durable until synced
            model.flushed[name] = b""
        elif op < 0.5:
            name = rng.choice(sorted(writers))
            data = bytes([step % 256]) * rng.choice([1, 100, 4000, 4096, 9000])
            writers[name].append(data)
            model.appended[name] += data
        elif op < 0.65:
            name = rng.choice(sorted(writers))
            writers[name].flush()
            model.flushed[name] = model.appended[name]
        elif op < 0.85:
            name = rng.choice(sorted(writers))
            writers[name].sync()
            model.synced[name] = model.flushed[name] = model.appended[name]
        elif op < 0.92:
            name = rng.choice(sorted(writers))
            if name in model.synced:
                writers.pop(name).close()
                fs.delete(name)
                del model.synced[name]
                del model.appended[name]
                del model.flushed[name]
        else:
            fs.sync_dir()
    for name in sorted(writers):  # end with flushed, unsynced bytes
        if rng.random() < 0.7:
            data = bytes([name.encode()[-1]]) * rng.choice([10, 3000, 5000])
            writers[name].append(data)
            writers[name].flush()
            model.appended[name] += data
            model.flushed[name] = model.appended[name]
    process_death = seed % 3 == 2
    if not process_death:
        dev.crash(mode="random" if seed % 3 else "all", seed=seed)
        dev.restart()
    fs._abandon(power_loss=not process_death)
    fs = BlockFS.mount(dev, writeback_dir=wb)
    model.check(fs, process_death)
    # The recovered file system keeps working.
    write_file(fs, "post-crash", b"p" * 5000)
    fs.close()
    fs = BlockFS.mount(dev)
    assert read_all(fs, "post-crash") == b"p" * 5000
    fs.close()


@pytest.mark.parametrize("seed", range(6))
def test_crash_during_compaction(seed: int) -> None:
    """Crash right after each of the compaction's writes, before its flush
    completes (a failing flush keeps the writes unflushed)."""
    rng = random.Random(100 + seed)
    dev = FaultyDevice(MemoryDevice(1 << 20))
    fs = BlockFS.format(dev, journal_blocks=2)
    model = Model()
    for i in range(40):
        name = f"f{i % 5}"
        data = bytes([i]) * rng.randrange(1, 3000)
        write_file(fs, name, data)
        model.synced[name] = model.appended[name] = data
    seq = fs.superblock.sequence
    dev.fail_flushes(True)
    with pytest.raises(StorageIOError):
        for i in range(200):
            write_file(fs, f"g{i % 3}", b"g" * 100)
    dev.crash(mode="random", seed=seed)
    dev.fail_flushes(False)
    dev.restart()
    fs._abandon(power_loss=True)
    fs = BlockFS.mount(dev)
    assert fs.superblock.sequence >= seq
    model.check(fs)
    fs.close()


# -- space ----------------------------------------------------------------------


def test_full_device_nospace_and_still_usable() -> None:
    dev = FaultyDevice(MemoryDevice(512 * 1024, name="small"))
    fs = BlockFS.format(dev)
    w = fs.create("big")
    chunk = b"z" * 10000
    with pytest.raises(NoSpaceError):
        for _ in range(1000):
            w.append(chunk)
    size = w.size
    assert size % 10000 == 0 and size > 0  # the failed append added nothing
    w.sync()
    w.close()
    fs.check()
    w2 = fs.create("small")
    with pytest.raises(NoSpaceError):
        w2.append(b"q" * 100000)
    assert w2.size == 0
    w2.close()
    discards = dev.counters["discards"]
    fs.delete("big")
    fs.trim()  # freed extents are discarded (here the batch limit already did)
    assert dev.counters["discards"] > discards
    assert fs.trim() == 0
    write_file(fs, "again", b"a" * 200000)
    assert read_all(fs, "again") == b"a" * 200000
    report = fs.check()
    assert report.files == 2
    fs.close()
    fs = BlockFS.mount(dev)
    assert fs.size("again") == 200000
    fs.close()


def test_growing_files_get_contiguous_extents_and_free_coalesces() -> None:
    dev = MemoryDevice(64 << 20)
    fs = BlockFS.format(dev)
    writers = [fs.create(f"t{i}") for i in range(3)]
    for _ in range(64):  # interleaved 64 KiB appends, 4 MiB per file
        for w in writers:
            w.append(b"d" * 65536)
    for w in writers:
        w.sync()
        w.close()
    for i in range(3):
        node = fs._inodes[fs._names[f"t{i}"]]
        assert len(node.extents) <= 8, node.extents  # chunks grow to 1 MiB
    for i in range(3):
        fs.delete(f"t{i}")
    assert len(fs._alloc.extents()) == 1
    assert fs.check().free_blocks == fs.superblock.data_blocks
    fs.close()


def test_allocation_after_delete_never_hands_out_a_block_twice() -> None:
    """A grow that continues at its hint into blocks just freed (still in
    the discard queue) must not get those blocks again from the queue."""
    bs = 4096
    dev = MemoryDevice(8 << 20, block_size=bs)
    fs = BlockFS.format(dev, writeback_dir=None)
    a = fs.create("a")
    a.append(b"A" * 32 * bs)
    a.sync()
    write_file(fs, "b", b"B" * 16 * bs)  # right after a's preallocation
    write_file(fs, "e", b"E" * 16 * bs)
    fs.delete("b")  # freed: free list and discard queue
    a.append(b"a")  # grows into b's blocks at its hint
    node = fs._inodes[fs._names["a"]]
    blocks = [s + i for s, n in node.extents for i in range(n)]
    assert len(blocks) == len(set(blocks))
    a.sync()
    a.append(b"Z" * 16 * bs)
    a.sync()
    fs.check()
    fs.close()
    fs = BlockFS.mount(dev, writeback_dir=None)
    assert read_all(fs, "a") == b"A" * 32 * bs + b"a" + b"Z" * 16 * bs
    fs.close()


def test_allocator_unit() -> None:
    a = _Allocator(10, 110)
    a.free(10, 100)
    a._check()
    x = a.allocate(30, 30)
    assert x == [(10, 30)]
    y = a.allocate(10, 10, hint=40)
    assert y == [(40, 10)]
    a.free(10, 30)
    a._check()
    z = a.allocate(50, 50)
    assert z == [(50, 50)]
    with pytest.raises(NoSpaceError):
        a.allocate(100, 41)
    assert a.allocate(100, 5) == [(10, 5)]  # falls back to need
    a.free(40, 10)
    a.free(10, 5)
    a.free(50, 50)
    a._check()
    assert a.extents() == [(10, 100)]
    with pytest.raises(AssertionError):
        a.free(20, 5)  # double free
    # Fragmented: the request is met from several extents.
    b = _Allocator(0, 10)
    for s in (0, 3, 6, 9):
        b.free(s, 1)
    assert sorted(b.allocate(3, 3)) == [(0, 1), (3, 1), (6, 1)]


# -- check() ----------------------------------------------------------------------


def test_check_catches_overlapping_table() -> None:
    fs = BlockFS.format(MemoryDevice(1 << 20, name="fsck"))
    write_file(fs, "a", b"a" * 8192)
    write_file(fs, "b", b"b" * 8192)
    fs.check()
    node_b = fs._inodes[fs._names["b"]]
    node_a = fs._inodes[fs._names["a"]]
    node_b.extents[0] = node_a.extents[0]  # corrupt the in-memory table
    with pytest.raises(CorruptionError, match="belongs to both") as info:
        fs.check()
    assert info.value.file == "fsck"
    fs._abandon()


def test_check_catches_allocator_leak_and_bad_size() -> None:
    fs = BlockFS.format(MemoryDevice(1 << 20))
    write_file(fs, "a", b"a" * 100)
    fs._alloc.allocate(3, 3)  # blocks lost: neither used nor free
    with pytest.raises(CorruptionError, match="neither used nor free"):
        fs.check()
    fs._abandon()
    fs = BlockFS.format(MemoryDevice(1 << 20))
    write_file(fs, "a", b"a" * 100)
    fs._inodes[fs._names["a"]].size = 10 ** 6
    with pytest.raises(CorruptionError, match="size beyond extents"):
        fs.check()
    fs._abandon()


def test_check_catches_damaged_journal_on_device() -> None:
    dev = MemoryDevice(1 << 20)
    fs = BlockFS.format(dev)
    for i in range(5):
        write_file(fs, f"f{i}", b"x" * 100)
    sb = fs.superblock
    raw = bytearray(dev.read(sb.active_offset, 4096))
    raw[30] ^= 0x40  # inside the first record
    dev.write(sb.active_offset, bytes(raw))
    with pytest.raises(CorruptionError, match="journal"):
        fs.check()
    fs._abandon()


# -- other devices ----------------------------------------------------------------


def test_blockfs_on_file_device(tmp_path) -> None:
    from blockdev.file import FileDevice

    path = tmp_path / "disk.img"
    dev = FileDevice(path, size=8 << 20, create=True)
    fs = BlockFS(dev, create=True)
    payload = bytes(range(256)) * 1000
    write_file(fs, "000001.sst", payload)
    w = fs.create("LOG")
    w.append(b"tail bytes")
    w.sync()
    w.close()
    fs.close()
    dev.close()
    dev = FileDevice(path)
    fs = BlockFS.mount(dev)
    assert read_all(fs, "000001.sst") == payload
    assert read_all(fs, "LOG") == b"tail bytes"
    fs.check()
    fs.close()
    dev.close()


def test_device_write_error_surfaces() -> None:
    dev = FaultyDevice(MemoryDevice(1 << 20))
    fs = BlockFS.format(dev)
    w = fs.create("a")
    dev.fail_writes(True)
    with pytest.raises(StorageIOError):
        w.append(b"x" * 8192)
    dev.fail_writes(False)
    w.close()
    fs.close()


def test_superblock_validate_catches_truncated_device() -> None:
    dev = MemoryDevice(1 << 20, name="big")
    BlockFS.format(dev).close()
    small = MemoryDevice(512 * 1024, name="small")
    small.write(0, dev.read(0, 512 * 1024))
    with pytest.raises(CorruptionError, match="only"):
        BlockFS.mount(small)
    sb = Superblock(1, 4096, 1 << 20, b"u" * 16, 1, 0, 8192, 8192 + 65536, 65536,
                    8192 + 2 * 65536, (1 << 20) // 4096 - 34)
    sb.validate(dev)


def test_golden_bytes_of_docs_format() -> None:
    """The worked example of docs/format.md ("BlockFS"), byte for byte."""
    from blockdev.blockfs import _payload_create, _xxh64

    sb = Superblock(1, 4096, 1 << 20, bytes(range(16)), 2, 1, 8192, 16384, 8192, 24576, 250)
    assert sb.encode()[:104].hex() == (
        "53444b424c4b465301000000001000000000100000000000000102030405060708090a0b0c0d0e0f"
        "02000000000000000100000000000000002000000000000000400000000000000020000000000000"
        "0060000000000000fa000000000000006603eeb0be45f961")
    sb.validate(MemoryDevice(1 << 20))
    data = b"MANIFEST-000001\n"
    assert _xxh64(data) == 0x6483A8099CCDD429
    rec = (encode_record(1, 2, _payload_create(1, "CURRENT"))
           + encode_record(2, 2, _payload_extend(1, 16, [(6, 1)], _xxh64(data)))
           + encode_record(REC_COMMIT, 2, b""))
    assert rec.hex() == (
        "16bc9c0b2171091709000000010200000000000000010743555252454e5483c0"
        "552dee715101" "0e0000000202000000000000000110012" "9d4cd9c09a8836401060"
        "17c1ae4784f0ca03400000000050200000000000000")
    # And a real BlockFS writes exactly such a group.
    dev = MemoryDevice(1 << 20)
    fs = BlockFS.format(dev, journal_blocks=2)
    start = fs._jpos
    w = fs.create("CURRENT")
    w.append(data)
    w.sync()
    sb2 = fs.superblock
    area = dev.read(sb2.active_offset, sb2.area_length)
    block = fs._inodes[fs._names["CURRENT"]].extents[0][0]
    ino = fs._names["CURRENT"]
    expect = (encode_record(1, sb2.sequence, _payload_create(ino, "CURRENT"))
              + encode_record(2, sb2.sequence, _payload_extend(ino, 16, [(block, 1)], _xxh64(data)))
              + encode_record(REC_COMMIT, sb2.sequence, b""))
    assert area[start:start + len(expect)] == expect
    assert block == 6 and dev.read(block * 4096, 4096)[:16] == data
    w.close()
    fs.close()


def test_discard_batches_and_reuse() -> None:
    dev = FaultyDevice(MemoryDevice(4 << 20, name="trim"))
    fs = BlockFS.format(dev, discard_batch=1 << 20)
    write_file(fs, "a", b"a" * 300_000)
    blocks_a = set()
    for s, n in fs._inodes[fs._names["a"]].extents:
        blocks_a.update(range(s, s + n))
    d0 = dev.counters["discards"]
    fs.delete("a")
    assert dev.counters["discards"] == d0  # queued, below the batch size
    write_file(fs, "b", b"b" * 100_000)  # reuses the freed blocks first
    blocks_b = set()
    for s, n in fs._inodes[fs._names["b"]].extents:
        blocks_b.update(range(s, s + n))
    assert blocks_b <= blocks_a
    fs.check()
    queued = fs._to_discard.free_blocks
    assert queued and not (set(range(0, 10 ** 4)) & blocks_b & {
        b for s, n in fs._to_discard.extents() for b in range(s, s + n)})
    write_file(fs, "c", b"c" * 1_500_000)
    fs.delete("c")  # the queue passes 1 MiB: discarded now
    assert dev.counters["discards"] > d0
    assert fs._to_discard.free_blocks == 0
    fs.delete("b")
    d1 = dev.counters["discards"]
    assert fs.trim() > 0  # an explicit trim discards the rest
    assert dev.counters["discards"] > d1
    fs.close()
    fs = BlockFS.mount(dev)
    assert fs.check().free_blocks == fs.superblock.data_blocks
    fs.close()


def test_allocator_remove() -> None:
    a = _Allocator(0, 100)
    a.free(10, 20)
    a.free(50, 10)
    assert a.remove(15, 40) == 15 + 5
    assert a.extents() == [(10, 5), (55, 5)]
    a._check()
    assert a.remove(0, 100) == 10
    assert a.extents() == [] and a.free_blocks == 0


def test_check_catches_bad_discard_queue_and_free_list_overlap() -> None:
    fs = BlockFS.format(MemoryDevice(1 << 20))
    write_file(fs, "a", b"a" * 5000)
    s, _ = fs._inodes[fs._names["a"]].extents[0]
    fs._to_discard.free(s, 1)  # a used block queued for discard
    with pytest.raises(CorruptionError, match="queued for discard but not free"):
        fs.check()
    fs._to_discard.remove(s, 1)
    fs.check()
    fs._alloc.free_blocks += 1  # a wrong count
    with pytest.raises(CorruptionError, match="allocator"):
        fs.check()
    fs._abandon()


def test_writeback_golden_bytes_of_docs_format(tmp_path) -> None:
    """The worked example of docs/format.md "Write-back buffer"."""
    wb = writeback.WriteBackBuffer.open(tmp_path, bytes(range(16)))
    assert wb is not None
    assert os.path.basename(wb.path) == "blockfs-000102030405060708090a0b0c0d0e0f.wb"
    records = encode_record(REC_COMMIT, 2, b"")
    assert wb.store(2, 0x56, records, [(0x6000, b"hello")])
    with open(wb.path, "rb") as f:
        raw = f.read(0x70)
    assert raw[:0x40] == bytes.fromhex(
        "80e6e5f8741c03e2" "4246574201000000" "0100000000000000" "0001020304050607"
        "08090a0b0c0d0e0f" "0200000000000000" "5600000000000000" "2a00000001000000")
    assert raw[0x40:0x6a] == bytes.fromhex(
        "15000000" "7c1ae4784f0ca034" "00000000" "05" "0200000000000000"
        "0060000000000000" "05000000" "68656c6c6f")
    staged = wb.load()
    assert staged is not None and (staged.generation, staged.sequence, staged.jpos) == (1, 2, 0x56)
    assert staged.records == records and staged.images == ((0x6000, b"hello"),)
    wb.close(remove=True)
    assert not os.path.exists(os.path.join(tmp_path, "blockfs-000102030405060708090a0b0c0d0e0f.wb"))
