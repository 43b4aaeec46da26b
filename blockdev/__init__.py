"""Block devices for superdisk-lsm: the device protocol (see blockdev.device
for the durability contract), file, memory, emulated and faulty devices, the
SuperDisk mirror, and the file layer (PosixFS, BlockFS) the engine stores its
files through."""

from __future__ import annotations

from blockdev.device import BlockDevice, MemoryDevice
from blockdev.errors import (
    ClosedError,
    CorruptionError,
    DurableLegError,
    Error,
    InvalidArgumentError,
    NoSpaceError,
    StorageIOError,
)
from blockdev.fs import FileLock, FileSystem, PosixFS, RandomAccessFile, WritableFile
from blockdev.blockfs import BlockFS
from blockdev.crashfs import CrashFS

__all__ = [
    "BlockDevice", "MemoryDevice",
    "Error", "CorruptionError", "StorageIOError", "NoSpaceError", "DurableLegError",
    "InvalidArgumentError", "ClosedError",
]
__all__ += ["FileSystem", "WritableFile", "RandomAccessFile", "FileLock", "PosixFS", "BlockFS", "CrashFS"]
