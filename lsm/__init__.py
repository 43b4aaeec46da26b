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

__all__ = [
    "implementation",
    "Error", "CorruptionError", "StorageIOError", "NoSpaceError", "DurableLegError",
    "InvalidArgumentError", "ArgumentTypeError", "ClosedError", "LockError",
    "ReadOnlyError", "UnsupportedFormatError", "NotFoundError",
]
