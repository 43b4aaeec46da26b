"""superdisk-lsm: an embedded LSM-tree key-value store.

Public names only; see docs/architecture.md.
"""

from __future__ import annotations

from blockdev.errors import (
    ArgumentTypeError,
    ClosedError,
    CorruptionError,
    DurableLegError,
    Error,
    InvalidArgumentError,
    LockError,
    NoSpaceError,
    NotFoundError,
    ReadOnlyError,
    StorageIOError,
    UnsupportedFormatError,
)
from lsm._native import implementation
from lsm.batch import WriteBatch
from lsm.db import DB, BoundWriteBatch, PrefixedDB, Snapshot, destroy_db, repair_db
from lsm.iterators import Iterator, IteratorInvalidError, RawIterator
from lsm.options import Options

__all__ = [
    "implementation",
    "Error", "CorruptionError", "StorageIOError", "NoSpaceError", "DurableLegError",
    "InvalidArgumentError", "ArgumentTypeError", "ClosedError", "LockError",
    "ReadOnlyError", "UnsupportedFormatError", "NotFoundError",
    "DB", "WriteBatch", "BoundWriteBatch", "Snapshot", "PrefixedDB", "Iterator", "RawIterator",
    "IteratorInvalidError", "Options", "destroy_db", "repair_db",
]
