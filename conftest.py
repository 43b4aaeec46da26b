# Lets `pytest` run from a checkout without installing (the repo root on sys.path).

import os
import shutil
import tempfile

import pytest


@pytest.fixture(scope="session", autouse=True)
def _blockfs_writeback_dir():
    """BlockFS write-back buffers (blockdev.writeback) of the test session go
    to a private directory, removed at the end, not to /dev/shm (tests
    abandon many mounts, as crashes do, and leave their buffers behind).
    Child processes (the kill -9 tests) inherit it."""
    path = tempfile.mkdtemp(prefix="blockfs-wb-")
    old = os.environ.get("BLOCKFS_WRITEBACK_DIR")
    os.environ["BLOCKFS_WRITEBACK_DIR"] = path
    yield path
    if old is None:
        os.environ.pop("BLOCKFS_WRITEBACK_DIR", None)
    else:
        os.environ["BLOCKFS_WRITEBACK_DIR"] = old
    shutil.rmtree(path, ignore_errors=True)
