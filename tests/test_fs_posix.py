"""PosixFS specifics: the lock against another process, directory fsyncs,
hard links, error mapping."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap

import pytest

from blockdev import PosixFS
from blockdev.errors import InvalidArgumentError, LockError, NoSpaceError, NotFoundError, StorageIOError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_lock_keeps_another_process_out(tmp_path) -> None:
    fs = PosixFS(tmp_path / "db", create=True)
    lk = fs.lock("LOCK")
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {ROOT!r})
        from blockdev import PosixFS
        from blockdev.errors import LockError
        try:
            PosixFS({str(tmp_path / "db")!r}).lock("LOCK")
        except LockError as exc:
            print("LockError:", exc)
        else:
            print("acquired")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("LockError:"), out.stdout + out.stderr
    assert "LOCK" in out.stdout
    lk.release()
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "acquired", out.stdout + out.stderr


def test_second_handle_in_process_is_refused(tmp_path) -> None:
    a = PosixFS(tmp_path / "db", create=True)
    b = PosixFS(tmp_path / "db")
    lk = a.lock("LOCK")
    with pytest.raises(LockError, match=str(tmp_path)):
        b.lock("LOCK")
    lk.release()
    b.lock("LOCK").release()


def test_directory_fsyncs(tmp_path, monkeypatch) -> None:
    fs = PosixFS(tmp_path / "db", create=True)
    calls: list[str] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append("dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    w = fs.create("000001.log")
    w.append(b"x")
    w.sync()
    assert calls == ["file", "dir"]  # the new name is made durable once
    w.append(b"y")
    w.sync()
    assert calls == ["file", "dir", "file"]
    w.close()
    calls.clear()
    fs.rename("000001.log", "000002.log")
    assert calls == ["dir"]
    calls.clear()
    fs.delete("000002.log")
    assert calls == ["dir"]
    calls.clear()
    w = fs.create("f")
    w.close()
    assert calls == []  # a new name: durable at its first sync
    w = fs.create("f")  # replacing: the truncation is made durable now
    w.close()
    assert calls == ["file"]


def test_link_or_copy_hard_links(tmp_path) -> None:
    src = PosixFS(tmp_path / "db", create=True)
    dst = PosixFS(tmp_path / "checkpoint", create=True)
    w = src.create("000007.sst")
    w.append(b"sst" * 100)
    w.sync()
    w.close()
    src.link_or_copy("000007.sst", dst, "000007.sst")
    a = os.stat(tmp_path / "db" / "000007.sst")
    b = os.stat(tmp_path / "checkpoint" / "000007.sst")
    assert a.st_ino == b.st_ino and a.st_nlink == 2
    assert dst.list() == ["000007.sst"]


def test_constructor_errors(tmp_path) -> None:
    with pytest.raises(NotFoundError):
        PosixFS(tmp_path / "missing")
    (tmp_path / "plain").write_bytes(b"")
    with pytest.raises(InvalidArgumentError):
        PosixFS(tmp_path / "plain", create=True)
    with pytest.raises(TypeError):
        PosixFS(42)  # type: ignore[arg-type]


def test_list_skips_directories(tmp_path) -> None:
    fs = PosixFS(tmp_path / "db", create=True)
    os.mkdir(tmp_path / "db" / "sub")
    fs.create("a").close()
    assert fs.list() == ["a"]
    assert not fs.exists("sub")


def test_enospc_maps_to_nospace_and_keeps_size(tmp_path, monkeypatch) -> None:
    fs = PosixFS(tmp_path / "db", create=True)
    w = fs.create("f")
    w.append(b"12345")
    real = os.pwrite
    state = {"n": 0}

    def flaky(fd: int, data, offset: int) -> int:
        state["n"] += 1
        if state["n"] == 1:
            return real(fd, bytes(data)[:3], offset)  # a short write, then ENOSPC
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", flaky)
    with pytest.raises(NoSpaceError) as info:
        w.append(b"abcdefgh")
    assert str(tmp_path) in str(info.value)
    monkeypatch.setattr(os, "pwrite", real)
    assert w.size == 5
    assert fs.size("f") == 5  # the partial append was cut back
    w.append(b"6")
    w.close()
    with fs.open("f") as r:
        assert r.read(0, 10) == b"123456"

    def eio(fd: int, data, offset: int) -> int:
        raise OSError(errno.EIO, "Input/output error")

    w = fs.create("g")
    monkeypatch.setattr(os, "pwrite", eio)
    with pytest.raises(StorageIOError):
        w.append(b"x")


# ---- create_mapped: the write-ahead log's memory-mapped appends -------------

def test_mapped_appends_round_trip_and_close_truncates(tmp_path) -> None:
    fs = PosixFS(tmp_path / "db", create=True)
    w = fs.create_mapped("000001.log")
    chunks = [bytes([i % 251]) * (1000 + 37 * i) for i in range(3000)]   # > 1 growth step
    for c in chunks:
        w.append(c)
    w.append(bytearray(b"tail"))
    w.append(memoryview(b"xyz"))
    expect = b"".join(chunks) + b"tailxyz"
    assert w.size == len(expect)
    w.sync()
    r = fs.open("000001.log")
    live = r.read(0, r.size)
    r.close()
    assert live[:len(expect)] == expect            # readers see appends at once ...
    assert live[len(expect):].count(0) == len(live) - len(expect)   # ... then reserved zeros
    w.close()
    w.close()                                       # idempotent
    r = fs.open("000001.log")
    assert r.size == len(expect) and r.read(0, r.size) == expect    # truncated on close
    r.close()
    with pytest.raises(Exception, match="closed"):
        w.append(b"more")


def test_mapped_log_survives_a_kill_and_reads_back(tmp_path) -> None:
    """Records appended (not synced) by a process killed with SIGKILL are all
    in the file; the zero-filled preallocated tail reads as a torn tail."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {ROOT!r})
        from blockdev import PosixFS
        from lsm.wal import LogWriter
        fs = PosixFS({str(tmp_path / "db")!r}, create=True)
        log = LogWriter(fs.create_mapped("000003.log"), "000003.log")
        for i in range(20000):
            log.add_record(b"record %d " % i * (1 + i % 7))
        print("written", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "written", out.stdout + out.stderr
    from lsm.wal import LogReader
    fs = PosixFS(tmp_path / "db")
    f = fs.open("000003.log")
    assert f.size > 0
    reported: list = []
    records = list(LogReader(f, "000003.log", paranoid=True,
                             reporter=lambda n, why: reported.append((n, why))))
    f.close()
    assert records == [b"record %d " % i * (1 + i % 7) for i in range(20000)]
    assert reported == []


def test_mapped_append_reports_no_space(tmp_path, monkeypatch) -> None:
    fs = PosixFS(tmp_path / "db", create=True)
    w = fs.create_mapped("000005.log")
    w.append(b"a" * 100)

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(NoSpaceError):
        w.append(b"b" * (4 << 20))                 # needs a new growth step
    assert w.size == 100
    w.append(b"c" * 10)                            # still usable within the reserved room
    w.close()
    r = fs.open("000005.log")
    assert r.read(0, r.size) == b"a" * 100 + b"c" * 10
    r.close()


def test_mapped_append_parts(tmp_path) -> None:
    """append_parts: the same bytes as append(b"".join(parts)), small or
    large, few parts or many (a log record's fragments)."""
    fs = PosixFS(tmp_path / "db", create=True)
    w = fs.create_mapped("000007.log")
    expect = b""
    for parts in ([b"ab", b"cd"], [b"x" * 20000, memoryview(b"y" * 30000)[5:], b"z"],
                  [bytes([i % 256]) * 100 for i in range(700)], [b"q" * (1 << 20)]):
        w.append_parts(list(parts))
        expect += b"".join(bytes(p) for p in parts)
        assert w.size == len(expect)
    w.close()
    r = fs.open("000007.log")
    assert r.read(0, r.size) == expect
    r.close()
