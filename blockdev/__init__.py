"""Block devices for superdisk-lsm: the device protocol (see blockdev.device
for the durability contract), file, memory, emulated and faulty devices, the
SuperDisk mirror, and the file layer (PosixFS, BlockFS) the engine stores its
files through."""

from __future__ import annotations

from blockdev.device import BlockDevice, MemoryDevice
from blockdev.file import FileDevice
from blockdev.emulated import LOCAL_SSD, NETWORK_DISK, EmulatedDevice, LatencyHistogram, LatencyModel
from blockdev.faulty import FaultyDevice
from blockdev.superdisk import SuperDisk, format_status
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
    "FileDevice", "EmulatedDevice", "LatencyModel", "LatencyHistogram", "NETWORK_DISK", "LOCAL_SSD",
    "FaultyDevice", "SuperDisk", "format_status",
]
__all__ += ["FileSystem", "WritableFile", "RandomAccessFile", "FileLock", "PosixFS", "BlockFS", "CrashFS"]
