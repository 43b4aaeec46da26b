"""The one error hierarchy of superdisk-lsm.

Both packages raise these: ``blockdev`` (devices, SuperDisk, file layer) and
``lsm`` (the engine, which re-exports them).  ``Error`` is the single base
class, so ``except lsm.Error`` catches everything the product raises on
purpose.  Each class names what went wrong; corruption and I/O errors carry
the file (or device) and the byte offset where it was found.

No class here shadows a builtin name: the device error is ``StorageIOError``
(it is also an ``OSError``), the argument errors are also ``ValueError`` /
``TypeError`` so that ordinary Python code catches them as it expects.
"""

from __future__ import annotations

__all__ = [
    "Error",
    "CorruptionError",
    "StorageIOError",
    "NoSpaceError",
    "DurableLegError",
    "InvalidArgumentError",
    "ArgumentTypeError",
    "ClosedError",
    "LockError",
    "ReadOnlyError",
    "UnsupportedFormatError",
    "NotFoundError",
]


class Error(Exception):
    """Base class of every error superdisk-lsm raises on purpose."""


class CorruptionError(Error):
    """Stored bytes fail a check: bad checksum, bad magic, impossible length.

    ``file`` names the file or device (``None`` when unknown, e.g. a bare
    buffer handed to a decoder) and ``offset`` the byte offset of the bad
    record inside it (``None`` when unknown).
    """

    def __init__(self, message: str, file: str | None = None, offset: int | None = None):
        self.file = file
        self.offset = offset
        where = ""
        if file is not None:
            where = f" in {file}"
        if offset is not None:
            where += f" at offset {offset}"
        super().__init__(f"{message}{where}")


class StorageIOError(Error, OSError):
    """A device or file operation failed (EIO, a lost device, ...)."""

    def __init__(self, message: str, file: str | None = None, offset: int | None = None):
        self.file = file
        self.offset = offset
        where = ""
        if file is not None:
            where = f" on {file}"
        if offset is not None:
            where += f" at offset {offset}"
        Exception.__init__(self, f"{message}{where}")

    def __str__(self) -> str:  # OSError's __str__ would show errno fields
        return str(self.args[0]) if self.args else ""


class NoSpaceError(StorageIOError):
    """The device or file system is full (ENOSPC)."""


class DurableLegError(StorageIOError):
    """A SuperDisk's durable leg is gone: writes cannot be made durable."""


class InvalidArgumentError(Error, ValueError):
    """An argument has a bad value (out of range, empty key, bad option)."""


class ArgumentTypeError(InvalidArgumentError, TypeError):
    """An argument has the wrong type (e.g. ``str`` where bytes belong)."""


class ClosedError(Error):
    """The DB, iterator, snapshot, file or device was already closed."""


class LockError(Error):
    """Another process (or another open handle) holds the DB lock."""


class ReadOnlyError(Error):
    """Writes are refused: read-only mode after a background error, or policy."""


class UnsupportedFormatError(Error):
    """A file or device holds a format version this code cannot read,
    or holds no format of ours at all."""

    def __init__(self, message: str, file: str | None = None):
        self.file = file
        super().__init__(message if file is None else f"{message}: {file}")


class NotFoundError(Error):
    """A DB or file that was required to exist does not."""
