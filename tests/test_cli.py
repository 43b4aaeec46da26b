"""The `lsm` operator tool: every subcommand on a real DB (directory and
device image), damage reported with exit status, and `lsm superdisk`."""

from __future__ import annotations

import json
import os

import pytest

import blockdev
import lsm
from lsm.tools.cli import main


@pytest.fixture
def dbdir(tmp_path):
    path = tmp_path / "db"
    with lsm.DB(path, create_if_missing=True, write_buffer_size=4096, block_size=256) as db:
        for i in range(400):
            db.put(b"key%04d" % i, b"value%d" % i)
        db.delete_range(b"key0100", b"key0110")
        db.delete(b"key0200")
        db.flush()
        db.put(b"only-in-log", b"\x00\xff")
    return str(path)


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_get_and_scan(capsys, dbdir):
    assert run(capsys, "get", dbdir, "key0005")[:2] == (0, "value5\n")
    rc, out, err = run(capsys, "get", dbdir, "key0100")
    assert rc == 1 and "not found" in err
    assert run(capsys, "get", "--hex", dbdir, b"only-in-log".hex())[1] == "00ff\n"
    rc, out, _ = run(capsys, "scan", dbdir, "--start", "key0098", "--limit", "4")
    assert out.splitlines() == ["key0098 => value98", "key0099 => value99",
                                "key0110 => value110", "key0111 => value111"]
    rc, out, _ = run(capsys, "scan", dbdir, "--prefix", "key03", "--keys-only", "--reverse")
    assert out.splitlines()[0] == "key0399" and len(out.splitlines()) == 100


def test_stats(capsys, dbdir):
    rc, out, _ = run(capsys, "stats", dbdir, "--json")
    st = json.loads(out)
    assert rc == 0 and st["num_files"] >= 1
    rc, out, _ = run(capsys, "stats", dbdir)
    assert "Level" in out and "files:" in out


def test_dumps(capsys, dbdir):
    ssts = sorted(n for n in os.listdir(dbdir) if n.endswith(".sst"))
    rc, out, _ = run(capsys, "dump-sst", os.path.join(dbdir, ssts[0]), "--limit", "3")
    assert rc == 0 and "num_entries" in out and "PUT" in out
    logs = sorted(n for n in os.listdir(dbdir) if n.endswith(".log"))
    rc, out, _ = run(capsys, "dump-wal", os.path.join(dbdir, logs[-1]))
    assert rc == 0 and "only-in-log" in out and "PUT" in out
    (manifest,) = [n for n in os.listdir(dbdir) if n.startswith("MANIFEST")]
    rc, out, _ = run(capsys, "dump-manifest", os.path.join(dbdir, manifest))
    assert rc == 0 and "format_version" in out and "add L" in out


def test_verify_and_repair(capsys, dbdir):
    rc, out, _ = run(capsys, "verify", dbdir)
    assert rc == 0 and "OK" in out
    ssts = sorted(n for n in os.listdir(dbdir) if n.endswith(".sst"))
    victim = os.path.join(dbdir, ssts[0])
    data = bytearray(open(victim, "rb").read())
    data[len(data) // 3] ^= 0xFF
    open(victim, "wb").write(bytes(data))
    rc, out, err = run(capsys, "verify", dbdir)
    # damage is exit 1 (not the operational-error 2), reported with file and offset
    assert rc == 1, (out, err)
    damaged = [line for line in out.splitlines() if "DAMAGED" in line]
    assert damaged and all("offset" in line for line in damaged), out
    assert any(ssts[0] in line for line in damaged), out
    assert "1 damaged" in out or "2 damaged" in out
    rc, out, _ = run(capsys, "repair", dbdir)
    report = json.loads(out)
    assert rc == 0 and report["corrupt_tables"][0]["file"] == ssts[0]
    rc, out, _ = run(capsys, "verify", dbdir)
    assert rc == 0


def test_errors_exit_2(capsys, tmp_path):
    rc, out, err = run(capsys, "get", tmp_path / "missing", "k")
    assert rc == 2 and "NotFoundError" in err and "missing" in err


def test_device_image_and_superdisk(capsys, tmp_path):
    img = tmp_path / "dev.img"
    dev = blockdev.FileDevice(str(img), size=8 << 20, create=True)
    with lsm.DB(dev, create_if_missing=True) as db:
        db.put(b"a", b"on a device")
    dev.close()
    assert run(capsys, "get", img, "a")[1] == "on a device\n"
    durable, cache = tmp_path / "durable.img", tmp_path / "cache.img"
    sd = blockdev.SuperDisk.open(durable=str(durable), cache=str(cache), create=True,
                                 size=16 << 20)
    with lsm.DB(sd, create_if_missing=True) as db:
        db.put(b"b", b"on a superdisk")
        assert "device" in db.stats()
    sd.close()
    assert run(capsys, "get", f"superdisk:{durable},{cache}", "b")[1] == "on a superdisk\n"
    rc, out, _ = run(capsys, "superdisk", "status", "--durable", durable, "--cache", cache,
                     "--json")
    assert rc == 0 and "state" in json.loads(out)
    rc, out, _ = run(capsys, "superdisk", "scrub", "--durable", durable, "--cache", cache)
    assert rc == 0
    rc, out, _ = run(capsys, "superdisk", "rebuild", "--durable", durable, "--cache", cache)
    assert rc == 0


def _digest(*paths):
    import hashlib
    return [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in paths]


def test_superdisk_status_is_read_only(capsys, tmp_path):
    durable, cache = str(tmp_path / "d.img"), str(tmp_path / "c.img")
    sd = blockdev.SuperDisk.open(durable=durable, cache=cache, create=True, size=8 << 20,
                                 region_size=1 << 20, background_rebuild=False)
    sd.write(0, b"x" * 4096)
    sd.rebuild_step(1 << 20)        # leave the cache recovering: an assembly would resume the rebuild
    sd.close()
    before = _digest(durable, cache)
    rc, out, _ = run(capsys, "superdisk", "status", "--durable", durable, "--cache", cache, "--json")
    info = json.loads(out)
    assert rc == 0 and info["state"] == "rebuilding" and info["assembly"] == "trusted"
    assert info["rebuild"]["remaining_bytes"] == (8 << 20) - info["rebuild"]["cursor"]
    assert info["legs"]["durable"]["in_use"] is False
    rc, out, _ = run(capsys, "superdisk", "status", "--durable", durable, "--cache", cache)
    assert rc == 0 and "nothing written" in out and "rebuilding" in out
    assert _digest(durable, cache) == before          # not one byte changed, generation included


def test_live_superdisk_is_locked_but_status_works(capsys, tmp_path):
    durable, cache = str(tmp_path / "d.img"), str(tmp_path / "c.img")
    sd = blockdev.SuperDisk.open(durable=durable, cache=cache, create=True, size=8 << 20)
    db = lsm.DB(sd, create_if_missing=True)
    db.put(b"k", b"v")
    try:
        # a second opener (the reported corruption) is refused, naming the leg
        rc, out, err = run(capsys, "get", f"superdisk:{durable},{cache}", "k")
        assert rc == 2 and "LockError" in err and "d.img" in err
        rc, out, err = run(capsys, "superdisk", "scrub", "--durable", durable, "--cache", cache)
        assert rc == 2 and "LockError" in err
        rc, out, _ = run(capsys, "superdisk", "status", "--durable", durable, "--cache", cache,
                         "--json")
        info = json.loads(out)
        assert rc == 0 and info["legs"]["durable"]["in_use"] is True
        assert info["legs"]["cache"]["in_use"] is True
    finally:
        db.close()
        sd.close()
    assert run(capsys, "get", f"superdisk:{durable},{cache}", "k")[:2] == (0, "v\n")


def test_tools_do_not_shadow_builtins():
    import ast
    import builtins
    import lsm.tools.cli
    import lsm.tools.stress
    for mod in (lsm.tools.cli, lsm.tools.stress):
        tree = ast.parse(open(mod.__file__).read())
        bound = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.arg):
                bound.add(node.arg)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                bound.add(node.id)
        shadowed = sorted(n for n in bound if hasattr(builtins, n))
        assert not shadowed, f"{mod.__name__} shadows builtins: {shadowed}"
