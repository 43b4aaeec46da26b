"""The file-layer contract (blockdev.fs), run against every implementation:
PosixFS, BlockFS on a MemoryDevice, and CrashFS wrapping each."""

from __future__ import annotations

import random

import pytest

from blockdev import BlockFS, CrashFS, FileSystem, PosixFS
from blockdev.device import MemoryDevice
from blockdev.errors import (
    ArgumentTypeError,
    ClosedError,
    InvalidArgumentError,
    LockError,
    NotFoundError,
)


class Env:
    """Makes a file system and can reopen it (clean close + open again)."""

    def __init__(self, kind: str, tmp_path) -> None:
        self.kind = kind
        self.tmp_path = tmp_path
        self.device = MemoryDevice(8 << 20, block_size=4096, name="mem-contract")

    def make(self) -> FileSystem:
        if self.kind == "posix":
            return PosixFS(self.tmp_path / "db", create=True)
        if self.kind == "blockfs":
            return BlockFS(self.device, create=True)
        if self.kind == "crash-posix":
            return CrashFS(PosixFS(self.tmp_path / "db", create=True))
        if self.kind == "crash-blockfs":
            return CrashFS(BlockFS(self.device, create=True))
        raise AssertionError(self.kind)

    def reopen(self, fs: FileSystem) -> FileSystem:
        fs.close()
        return self.make()


@pytest.fixture(params=["posix", "blockfs", "crash-posix", "crash-blockfs"])
def env(request, tmp_path) -> Env:
    return Env(request.param, tmp_path)


@pytest.fixture
def fs(env: Env):
    f = env.make()
    yield f
    f.close()


def write_file(fs: FileSystem, name: str, data: bytes, sync: bool = True) -> None:
    w = fs.create(name)
    w.append(data)
    if sync:
        w.sync()
    w.close()


def read_all(fs: FileSystem, name: str) -> bytes:
    with fs.open(name) as r:
        return r.read(0, r.size + 10)


def test_create_append_read(fs: FileSystem) -> None:
    w = fs.create("000001.log")
    assert w.size == 0
    w.append(b"hello ")
    w.append(bytearray(b"world"))
    w.append(memoryview(b"!"))
    assert w.size == 12
    w.sync()
    w.close()
    assert fs.exists("000001.log")
    assert fs.size("000001.log") == 12
    assert fs.list() == ["000001.log"]
    with fs.open("000001.log") as r:
        assert r.size == 12
        assert r.read(0, 12) == b"hello world!"
        assert r.read(6, 5) == b"world"
        assert r.read(10, 100) == b"d!"  # short only at EOF
        assert r.read(12, 5) == b""
        assert r.read(100, 5) == b""
        assert r.read(3, 0) == b""


def test_empty_append_and_empty_file(fs: FileSystem) -> None:
    w = fs.create("e")
    w.append(b"")
    w.sync()
    w.close()
    assert fs.size("e") == 0
    assert read_all(fs, "e") == b""


def test_large_and_unaligned_appends(fs: FileSystem) -> None:
    rng = random.Random(7)
    model = bytearray()
    w = fs.create("t.sst")
    for i in range(300):
        n = rng.choice([1, 7, 100, 4095, 4096, 4097, 10000, 70000])
        chunk = bytes([i % 251]) * n
        w.append(chunk)
        model += chunk
        if i % 37 == 0:
            w.sync()
    w.sync()
    w.close()
    assert fs.size("t.sst") == len(model)
    with fs.open("t.sst") as r:
        for _ in range(200):
            off = rng.randrange(len(model))
            ln = rng.randrange(20000)
            assert r.read(off, ln) == bytes(model[off:off + ln])
        assert r.read(0, len(model)) == bytes(model)


def test_reader_sees_appends_while_writing(fs: FileSystem) -> None:
    w = fs.create("wal")
    w.append(b"a" * 5000)
    r = fs.open("wal")
    assert r.read(0, 6000) == b"a" * 5000
    w.append(b"b" * 10)
    assert r.size == 5010
    assert r.read(4995, 100) == b"a" * 5 + b"b" * 10
    w.sync()
    w.append(b"c")
    assert r.read(5009, 5) == b"bc"
    r.close()
    w.close()


def test_create_replaces_existing(fs: FileSystem) -> None:
    write_file(fs, "CURRENT", b"old contents that are long")
    write_file(fs, "CURRENT", b"new")
    assert read_all(fs, "CURRENT") == b"new"
    assert fs.list() == ["CURRENT"]


def test_rename_replaces_and_is_atomic(fs: FileSystem) -> None:
    write_file(fs, "CURRENT", b"MANIFEST-000001\n")
    write_file(fs, "CURRENT.tmp", b"MANIFEST-000002\n")
    fs.rename("CURRENT.tmp", "CURRENT")
    assert fs.list() == ["CURRENT"]
    assert read_all(fs, "CURRENT") == b"MANIFEST-000002\n"
    with pytest.raises(NotFoundError):
        fs.rename("nope", "x")
    fs.rename("CURRENT", "CURRENT")  # same name: no-op
    assert read_all(fs, "CURRENT") == b"MANIFEST-000002\n"


def test_rename_of_file_being_written(fs: FileSystem) -> None:
    w = fs.create("a.tmp")
    w.append(b"x" * 100)
    fs.rename("a.tmp", "a")
    w.append(b"y" * 100)
    w.sync()
    w.close()
    assert read_all(fs, "a") == b"x" * 100 + b"y" * 100
    assert not fs.exists("a.tmp")


def test_delete(fs: FileSystem) -> None:
    write_file(fs, "x", b"data" * 3000)
    r = fs.open("x")
    fs.delete("x")
    assert not fs.exists("x")
    assert fs.list() == []
    with pytest.raises(NotFoundError):
        fs.delete("x")
    with pytest.raises(NotFoundError):
        fs.open("x")
    with pytest.raises(NotFoundError):
        fs.size("x")
    # An open handle keeps reading the old bytes until closed.
    write_file(fs, "y", b"z" * 20000)
    assert r.read(0, 12) == b"datadatadata"
    r.close()


def test_lock_excludes_second_handle(fs: FileSystem) -> None:
    lk = fs.lock("LOCK")
    with pytest.raises(LockError) as info:
        fs.lock("LOCK")
    assert "LOCK" in str(info.value)
    lk.release()
    lk.release()  # idempotent
    with fs.lock("LOCK"):
        pass
    assert fs.exists("LOCK")


def test_link_or_copy_same_and_other_fs(env: Env, fs: FileSystem, tmp_path) -> None:
    write_file(fs, "000005.sst", b"table bytes" * 1000)
    fs.link_or_copy("000005.sst", fs, "copy.sst")
    assert read_all(fs, "copy.sst") == b"table bytes" * 1000
    other_posix = PosixFS(tmp_path / "ckpt", create=True)
    fs.link_or_copy("000005.sst", other_posix, "000005.sst")
    assert read_all(other_posix, "000005.sst") == b"table bytes" * 1000
    other_block = BlockFS.format(MemoryDevice(1 << 20, name="other"))
    fs.link_or_copy("000005.sst", other_block, "t.sst")
    assert read_all(other_block, "t.sst") == b"table bytes" * 1000
    write_file(other_block, "t.sst", b"replaced")
    fs.link_or_copy("000005.sst", other_block, "t.sst")  # replaces
    assert read_all(other_block, "t.sst") == b"table bytes" * 1000
    other_block.close()
    with pytest.raises(NotFoundError):
        fs.link_or_copy("missing", other_posix, "m")


def test_clean_reopen_keeps_everything(env: Env, fs: FileSystem) -> None:
    write_file(fs, "synced", b"s" * 9000)
    write_file(fs, "unsynced", b"u" * 5000, sync=False)
    fs.sync_dir()
    w = fs.create("open-writer")
    w.append(b"o" * 4097)
    w.close()
    fs2 = env.reopen(fs)
    try:
        assert fs2.list() == ["open-writer", "synced", "unsynced"]
        assert read_all(fs2, "synced") == b"s" * 9000
        assert read_all(fs2, "unsynced") == b"u" * 5000
        assert read_all(fs2, "open-writer") == b"o" * 4097
    finally:
        fs2.close()


@pytest.mark.parametrize("kind", ["posix", "blockfs"])
def test_flushed_bytes_survive_process_death(kind: str, tmp_path) -> None:
    """After ``flush`` the bytes have left the process: a file system
    opened again without a clean close (the process died, the OS and the
    device did not) holds them."""
    env = Env(kind, tmp_path)
    fs = env.make()
    w = fs.create("log")
    want = b""
    for i in range(50):
        data = bytes([65 + i % 26]) * (i * 97 % 1500 + 1)
        w.append(data)
        w.flush()
        want += data
    if kind == "blockfs":
        fs._abandon()  # type: ignore[attr-defined]
    fs2 = env.make()   # the dead process's handles stay as they were
    try:
        assert read_all(fs2, "log") == want
    finally:
        fs2.close()


def test_closed_handles_raise(fs: FileSystem) -> None:
    w = fs.create("f")
    w.append(b"abc")
    w.close()
    w.close()
    with pytest.raises(ClosedError):
        w.append(b"x")
    with pytest.raises(ClosedError):
        w.sync()
    with pytest.raises(ClosedError):
        w.flush()
    r = fs.open("f")
    r.close()
    with pytest.raises(ClosedError):
        r.read(0, 1)


def test_closed_fs_raises(env: Env) -> None:
    f = env.make()
    f.close()
    f.close()
    for call in (lambda: f.create("a"), lambda: f.list(), lambda: f.exists("a"),
                 lambda: f.sync_dir()):
        with pytest.raises(ClosedError):
            call()


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "nul\0", "x" * 256])
def test_bad_names(fs: FileSystem, bad: str) -> None:
    with pytest.raises(InvalidArgumentError):
        fs.create(bad)
    with pytest.raises(InvalidArgumentError):
        fs.exists(bad)


def test_wrong_types(fs: FileSystem) -> None:
    with pytest.raises(ArgumentTypeError, match="name"):
        fs.create(b"bytes-name")  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError, match="dst"):
        fs.rename("a", 5)  # type: ignore[arg-type]
    w = fs.create("f")
    with pytest.raises(ArgumentTypeError, match="data"):
        w.append("text")  # type: ignore[arg-type]
    w.append(b"12345")
    w.close()
    with fs.open("f") as r:
        with pytest.raises(InvalidArgumentError, match="offset"):
            r.read(-1, 2)
        with pytest.raises(ArgumentTypeError, match="length"):
            r.read(0, 2.0)  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError, match="dest"):
        fs.link_or_copy("f", "not a fs", "g")  # type: ignore[arg-type]


def test_many_files_list_sorted(fs: FileSystem) -> None:
    names = [f"{i:06d}.sst" for i in range(60)]
    random.Random(1).shuffle(names)
    for n in names:
        write_file(fs, n, n.encode(), sync=False)
    fs.sync_dir()
    assert fs.list() == sorted(names)
    for n in names[:30]:
        fs.delete(n)
    assert fs.list() == sorted(names[30:])
    for n in names[30:]:
        assert read_all(fs, n) == n.encode()


def test_threads_write_and_read_concurrently(fs: FileSystem) -> None:
    import threading

    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            w = fs.create(f"t{k}")
            for i in range(60):
                w.append(bytes([k]) * (100 + i * 37))
                if i % 10 == 0:
                    w.sync()
            w.sync()
            w.close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    expected = sum(100 + i * 37 for i in range(60))
    for k in range(4):
        assert read_all(fs, f"t{k}") == bytes([k]) * expected
