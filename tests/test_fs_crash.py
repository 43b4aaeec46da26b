"""Crash behaviour of the file layer: CrashFS over PosixFS and BlockFS,
error injection, and a hypothesis state machine of file operations with
crashes at any point, checked against a model (after recovery every synced
byte is there and nothing unsynced is half-visible inside a synced prefix).
The state machine also runs BlockFS over a FaultyDevice that really loses
unflushed device writes."""

from __future__ import annotations

import shutil
import tempfile
from typing import Optional

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from blockdev import BlockFS, CrashFS, FileSystem, PosixFS
from blockdev.device import MemoryDevice
from blockdev.errors import (
    ClosedError,
    CorruptionError,
    InvalidArgumentError,
    LockError,
    NoSpaceError,
    NotFoundError,
    StorageIOError,
)
from blockdev.faulty import FaultyDevice


def read_all(fs: FileSystem, name: str) -> bytes:
    with fs.open(name) as r:
        return r.read(0, r.size)


@pytest.fixture(params=["posix", "blockfs"])
def cfs(request, tmp_path):
    if request.param == "posix":
        inner: FileSystem = PosixFS(tmp_path / "db", create=True)
    else:
        inner = BlockFS(MemoryDevice(4 << 20, name="crash-mem"), create=True)
    fs = CrashFS(inner)
    yield fs
    fs.close()


def test_crash_all_drops_unsynced(cfs: CrashFS) -> None:
    w = cfs.create("wal")
    w.append(b"a" * 5000)
    w.sync()
    w.append(b"b" * 3000)
    s = cfs.create("dir-synced")
    s.append(b"d")
    cfs.sync_dir()  # existence durable, but no byte synced
    n = cfs.create("new")  # never synced
    n.append(b"n")
    report = cfs.crash("all")
    assert report.dropped == ("new",)
    assert ("wal", 8000, 5000) in report.truncated
    assert cfs.list() == ["dir-synced", "wal"]
    assert read_all(cfs, "wal") == b"a" * 5000
    assert cfs.size("dir-synced") == 0
    with pytest.raises(ClosedError):
        w.append(b"x")
    with pytest.raises(ClosedError):
        w.sync()


def test_crash_random_keeps_a_prefix(cfs: CrashFS) -> None:
    seen = set()
    for seed in range(12):
        w = cfs.create("f")
        w.append(b"s" * 100)
        w.sync()
        for i in range(5):
            w.append(bytes([65 + i]) * 50)
        cfs.crash("random", seed=seed)
        data = read_all(cfs, "f")
        full = b"s" * 100 + b"".join(bytes([65 + i]) * 50 for i in range(5))
        assert full.startswith(data) and len(data) >= 100
        seen.add(len(data))
    assert len(seen) > 3  # really random, including torn appends
    assert any(n % 50 for n in seen)


def test_rename_is_durable_and_moves_tracking(cfs: CrashFS) -> None:
    w = cfs.create("CURRENT.tmp")
    w.append(b"MANIFEST-2\n")
    w.sync()
    w.close()
    w = cfs.create("CURRENT")
    w.append(b"MANIFEST-1\n")
    w.sync()
    w.close()
    cfs.rename("CURRENT.tmp", "CURRENT")
    cfs.crash("all")
    assert cfs.list() == ["CURRENT"]
    assert read_all(cfs, "CURRENT") == b"MANIFEST-2\n"
    assert cfs.synced_length("CURRENT") == 11


def test_delete_is_durable(cfs: CrashFS) -> None:
    w = cfs.create("old.sst")
    w.append(b"x" * 100)
    w.sync()
    w.close()
    cfs.delete("old.sst")
    cfs.crash("all")
    assert cfs.list() == []


def test_crash_releases_locks(cfs: CrashFS) -> None:
    cfs.lock("LOCK")
    with pytest.raises(LockError):
        cfs.lock("LOCK")
    cfs.crash("all")
    cfs.lock("LOCK").release()


def test_preexisting_files_are_durable(tmp_path) -> None:
    inner = PosixFS(tmp_path / "pre", create=True)
    w = inner.create("old")
    w.append(b"old bytes")
    w.sync()
    w.close()
    fs = CrashFS(inner)
    w = fs.create("x")
    w.append(b"1")
    fs.crash("all")
    assert fs.list() == ["old"]
    assert read_all(fs, "old") == b"old bytes"


def test_inject_errors(cfs: CrashFS) -> None:
    rule = cfs.inject_error("append", "*.log", error=NoSpaceError, count=2)
    w = cfs.create("000003.log")
    for _ in range(2):
        with pytest.raises(NoSpaceError) as info:
            w.append(b"data")
        assert info.value.file == "000003.log"
    w.append(b"data")  # rule exhausted; failed appends took no effect
    w.sync()
    assert rule.hits == 2 and rule.remaining == 0
    assert read_all(cfs, "000003.log") == b"data"
    other = cfs.create("MANIFEST")
    other.append(b"ok")  # pattern does not match
    cfs.inject_error("sync", lambda n: n.startswith("MAN"), count=None)
    for _ in range(3):
        with pytest.raises(StorageIOError):
            other.sync()
    cfs.clear_errors()
    other.sync()
    cfs.inject_error("rename", error=StorageIOError)
    with pytest.raises(StorageIOError):
        cfs.rename("MANIFEST", "M2")
    assert cfs.exists("MANIFEST") and not cfs.exists("M2")
    cfs.inject_error("create", "x", error=CorruptionError)
    with pytest.raises(CorruptionError):
        cfs.create("x")
    assert not cfs.exists("x")
    cfs.inject_error("read", "MANIFEST")
    with cfs.open("MANIFEST") as r:
        with pytest.raises(StorageIOError):
            r.read(0, 2)
        assert r.read(0, 2) == b"ok"
    cfs.inject_error("delete", None, error=StorageIOError("boom"))
    with pytest.raises(StorageIOError, match="boom"):
        cfs.delete("MANIFEST")


def test_inject_error_validation(cfs: CrashFS) -> None:
    with pytest.raises(InvalidArgumentError):
        cfs.inject_error("explode")
    with pytest.raises(TypeError):
        cfs.inject_error("append", error=ValueError)
    with pytest.raises(InvalidArgumentError):
        cfs.inject_error("append", count=0)
    with pytest.raises(InvalidArgumentError):
        cfs.crash("some")


def test_crashfs_detects_a_lost_synced_byte() -> None:
    """CrashFS over BlockFS checks the crash guarantee on remount."""
    dev = MemoryDevice(1 << 20)
    fs = CrashFS(BlockFS.format(dev))
    w = fs.create("f")
    w.append(b"x" * 100)
    w.sync()
    # Sabotage: rewind the journaled size behind BlockFS's back.
    node = fs.inner._inodes[fs.inner._names["f"]]
    fs.inner._abandon()
    bfs = BlockFS.mount(dev)
    ww = bfs.create("f")
    ww.append(b"x" * 10)
    ww.sync()
    ww.close()
    bfs._abandon()
    fs.inner = BlockFS.mount(dev)
    del node
    with pytest.raises(CorruptionError, match="crash guarantee violated"):
        fs.crash("all")


# -- the state machine -----------------------------------------------------------


class Harness:
    """A file system that can crash; ``crash`` returns the recovered one."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.tmp: Optional[str] = None
        if kind == "crash-posix":
            self.tmp = tempfile.mkdtemp(prefix="fs-sm-")
            self.fs: FileSystem = CrashFS(PosixFS(self.tmp))
        elif kind == "crash-blockfs":
            self.fs = CrashFS(BlockFS.format(MemoryDevice(2 << 20), journal_blocks=2))
        elif kind == "blockfs-faulty":
            self.dev = FaultyDevice(MemoryDevice(2 << 20, block_size=512))
            self.fs = BlockFS.format(self.dev, journal_blocks=3)
        else:
            raise AssertionError(kind)

    def crash(self, mode: str, seed: int) -> FileSystem:
        if isinstance(self.fs, CrashFS):
            self.fs.crash(mode, seed)
        else:
            assert isinstance(self.fs, BlockFS)
            self.dev.crash(mode, seed)
            self.dev.restart()
            self.fs._abandon(power_loss=True)
            self.fs = BlockFS.mount(self.dev)
        return self.fs

    def close(self) -> None:
        self.fs.close()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


class MFile:
    def __init__(self) -> None:
        self.data = b""      # every byte appended
        self.synced = 0      # bytes covered by a completed sync
        self.durable = False  # existence survives a crash


NAMES = st.sampled_from(["a", "b", "c", "CURRENT", "000001.log"])


class FileLayerMachine(RuleBasedStateMachine):
    kind = "crash-posix"

    def __init__(self) -> None:
        super().__init__()
        self.h = Harness(self.kind)
        self.model: dict[str, MFile] = {}
        self.writers: dict[str, object] = {}  # name -> open WritableFile (current file)

    @property
    def fs(self) -> FileSystem:
        return self.h.fs

    def teardown(self) -> None:
        self.h.close()

    @rule(name=NAMES)
    def create(self, name: str) -> None:
        w = self.fs.create(name)
        old = self.writers.pop(name, None)
        if old is not None:
            old.close()
        self.writers[name] = w
        m = MFile()
        m.durable = name in self.model  # a replacing create is durable at once
        self.model[name] = m

    @precondition(lambda self: self.writers)
    @rule(data=st.data(), size=st.sampled_from([0, 1, 3, 100, 511, 512, 513, 2000, 5000]))
    def append(self, data, size: int) -> None:
        name = data.draw(st.sampled_from(sorted(self.writers)))
        m = self.model[name]
        chunk = bytes([(len(m.data) + i) % 251 for i in range(size)])
        self.writers[name].append(chunk)
        m.data += chunk

    @precondition(lambda self: self.writers)
    @rule(data=st.data())
    def sync(self, data) -> None:
        name = data.draw(st.sampled_from(sorted(self.writers)))
        self.writers[name].sync()
        m = self.model[name]
        m.synced = len(m.data)
        m.durable = True

    @precondition(lambda self: self.writers)
    @rule(data=st.data())
    def close_writer(self, data) -> None:
        name = data.draw(st.sampled_from(sorted(self.writers)))
        self.writers.pop(name).close()

    @precondition(lambda self: self.model)
    @rule(data=st.data(), dst=NAMES)
    def rename(self, data, dst: str) -> None:
        src = data.draw(st.sampled_from(sorted(self.model)))
        self.fs.rename(src, dst)
        if src == dst:
            self.model[src].durable = True
            return
        m = self.model.pop(src)
        m.durable = True
        self.model[dst] = m
        old = self.writers.pop(dst, None)
        if old is not None:
            old.close()
        w = self.writers.pop(src, None)
        if w is not None:
            self.writers[dst] = w

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def delete(self, data) -> None:
        name = data.draw(st.sampled_from(sorted(self.model)))
        w = self.writers.pop(name, None)
        if w is not None:
            w.close()
        self.fs.delete(name)
        del self.model[name]

    @rule()
    def sync_dir(self) -> None:
        self.fs.sync_dir()
        for m in self.model.values():
            m.durable = True

    @rule(name=NAMES)
    def delete_missing(self, name: str) -> None:
        if name not in self.model:
            with pytest.raises(NotFoundError):
                self.fs.delete(name)

    @rule(mode=st.sampled_from(["all", "random"]), seed=st.integers(0, 2 ** 16))
    def crash(self, mode: str, seed: int) -> None:
        self.writers.clear()
        fs = self.h.crash(mode, seed)
        survivors = set(fs.list())
        new_model: dict[str, MFile] = {}
        for name, m in self.model.items():
            if m.durable:
                assert name in survivors, f"durable file {name} lost"
            if name not in survivors:
                continue
            got = read_all(fs, name)
            if m.durable:
                assert len(got) >= m.synced, f"{name}: {len(got)} bytes, {m.synced} synced"
            assert m.data.startswith(got), f"{name}: bytes that were never appended"
            nm = MFile()
            nm.data = got
            nm.synced = len(got)
            nm.durable = True
            new_model[name] = nm
        assert survivors <= set(self.model) | {"LOCK"}, survivors - set(self.model)
        self.model = new_model
        if isinstance(fs, BlockFS):
            fs.check()

    @invariant()
    def contents_match(self) -> None:
        assert sorted(self.model) == self.fs.list()
        for name, m in self.model.items():
            assert self.fs.size(name) == len(m.data)
        if self.model:
            name = sorted(self.model)[0]
            assert read_all(self.fs, name) == self.model[name].data


SM_SETTINGS = settings(max_examples=25, stateful_step_count=40, deadline=None,
                       suppress_health_check=[HealthCheck.too_slow])


class CrashPosixMachine(FileLayerMachine):
    kind = "crash-posix"


class CrashBlockFSMachine(FileLayerMachine):
    kind = "crash-blockfs"


class FaultyBlockFSMachine(FileLayerMachine):
    kind = "blockfs-faulty"


TestCrashPosix = CrashPosixMachine.TestCase
TestCrashPosix.settings = SM_SETTINGS
TestCrashBlockFS = CrashBlockFSMachine.TestCase
TestCrashBlockFS.settings = settings(SM_SETTINGS, max_examples=50)
TestFaultyBlockFS = FaultyBlockFSMachine.TestCase
TestFaultyBlockFS.settings = settings(SM_SETTINGS, max_examples=80)


# Long soaks of the same machines (opt in with -m slow).
_SLOW = settings(max_examples=1500, stateful_step_count=60, deadline=None,
                 suppress_health_check=list(HealthCheck))


class SlowCrashBlockFSMachine(FileLayerMachine):
    kind = "crash-blockfs"


class SlowFaultyBlockFSMachine(FileLayerMachine):
    kind = "blockfs-faulty"


TestSlowCrashBlockFS = pytest.mark.slow(SlowCrashBlockFSMachine.TestCase)
TestSlowCrashBlockFS.settings = _SLOW
TestSlowFaultyBlockFS = pytest.mark.slow(SlowFaultyBlockFSMachine.TestCase)
TestSlowFaultyBlockFS.settings = _SLOW
