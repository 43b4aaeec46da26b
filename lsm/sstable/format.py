"""SSTable file format: constants, block handles, block trailers, the footer
and the properties record (docs/format.md "SSTable" documents every byte).

File layout (do not change: on-disk)::

    table      = data_block* filter_block? rangedel_block? index_block
                 properties_block metaindex_block footer
    each block = contents | compression:u8 | checksum:u32 LE     (the 5-byte trailer)
    checksum   = XXH64(contents || compression byte, seed=0) & 0xFFFFFFFF
    handle     = varint64 offset | varint64 size      (size excludes the trailer)
    footer     = metaindex handle | index handle | zero padding to 40 bytes
                 | format_version:u32 LE | footer_checksum:u32 LE | magic:u64 LE
                 (FOOTER_SIZE = 56; footer_checksum = XXH64(footer[0:44]) & 0xFFFFFFFF)

Compression byte: 0 = stored as is; 1 = LZ4 block format preceded by the
uncompressed length as u32 LE (``lz4.block.compress(store_size=True)``),
used for a data block only when it saves at least 1/8 of its size.  Meta,
index and metaindex blocks are never compressed.

The metaindex, index, properties and range-tombstone blocks use the data
block encoding of the native core (docs/architecture.md).  The footer keeps
its size and the position of its last 16 bytes in every format version, so
a reader can always verify the footer checksum before it looks at the
version and reject a newer table with ``UnsupportedFormatError``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import lz4.block

from blockdev.errors import CorruptionError, UnsupportedFormatError
from lsm import _native as N
from lsm import _twins

__all__ = [
    "TABLE_MAGIC", "FORMAT_VERSION", "SUPPORTED_VERSIONS", "FOOTER_SIZE", "BLOCK_TRAILER_SIZE",
    "NO_COMPRESSION", "LZ4_COMPRESSION", "META_FILTER", "META_PROPERTIES", "META_RANGEDEL",
    "TableProperties", "encode_handle", "decode_handle", "encode_footer", "decode_footer",
    "make_physical_block", "unwrap_physical_block", "encode_properties", "decode_properties",
]

TABLE_MAGIC = 0x5453534D534C4453   # do not change: on-disk (bytes "SDLSMSST" when stored LE)
FORMAT_VERSION = 1                  # do not change: on-disk (the version this code writes)
SUPPORTED_VERSIONS = frozenset({1})
FOOTER_SIZE = 56                    # do not change: on-disk
HANDLES_SIZE = 40                   # do not change: on-disk (two handles, zero padded)
BLOCK_TRAILER_SIZE = 5              # do not change: on-disk (u8 compression + u32 checksum)
NO_COMPRESSION = 0                  # do not change: on-disk
LZ4_COMPRESSION = 1                 # do not change: on-disk
MAX_BLOCK_SIZE = (1 << 32) - 1      # largest contents a handle may describe (u32 lz4 length)

META_FILTER = b"filter.bloom"       # do not change: on-disk (metaindex names)
META_PROPERTIES = b"properties"     # do not change: on-disk
META_RANGEDEL = b"rangedel"         # do not change: on-disk

_TAIL = struct.Struct("<IIQ")       # format_version, footer_checksum, magic
_U32 = struct.Struct("<I")
_CRC_MAGIC = struct.Struct("<IQ")
_checksum = N.checksum
# Varints here are a few bytes each and coded one at a time, in Python, not
# by the C functions: a C call releases and retakes the GIL, and retaking it
# behind a busy writer thread can take a whole switch interval (5 ms), which
# once made handle coding a tenth of a compaction's time.  The fast paths
# below encode values below 2**28 and decode varints of up to 9 bytes;
# everything else (and every malformed input) goes to the twins, which
# validate and raise.
_decode_varint64 = _twins.decode_varint64
_encode_varint = _twins.encode_varint
_ONE_BYTE = [bytes((i,)) for i in range(128)]


def _fast_varint(v: int) -> bytes:
    """LEB128 of ``v``; O(1)."""
    if type(v) is int and v >= 0:
        if v < 0x80:
            return _ONE_BYTE[v]
        if v < 0x4000:
            return bytes((v & 0x7F | 0x80, v >> 7))
        if v < 0x200000:
            return bytes((v & 0x7F | 0x80, v >> 7 & 0x7F | 0x80, v >> 14))
        if v < 0x10000000:
            return bytes((v & 0x7F | 0x80, v >> 7 & 0x7F | 0x80, v >> 14 & 0x7F | 0x80,
                          v >> 21))
    return _encode_varint(v)


def _fast_dv64(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode the varint64 at ``pos``; ``(value, next_pos)``.  O(1)."""
    n = len(buf)
    if 0 <= pos:
        result = shift = 0
        p = pos
        while p < n and shift < 63:
            b = buf[p]
            p += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                return result, p
            shift += 7
    return _decode_varint64(buf, pos)      # truncated, 10 bytes, or a bad pos: validated


@dataclass(frozen=True)
class TableProperties:
    """What a table holds, stored in its properties block (and returned by
    ``TableBuilder.finish``).  Sequence numbers cover point entries and range
    tombstones (0/0 for an empty table); ``smallest_key``/``largest_key`` are
    the internal keys of the first and last *point* entry (b"" if none)."""

    num_entries: int
    num_tombstones: int
    num_range_tombstones: int
    raw_key_size: int
    raw_value_size: int
    data_size: int
    index_size: int
    filter_size: int
    num_data_blocks: int
    smallest_seq: int
    largest_seq: int
    smallest_key: bytes
    largest_key: bytes
    format_version: int
    compression: str | None


_INT_PROPS = ("num_entries", "num_tombstones", "num_range_tombstones", "raw_key_size",
              "raw_value_size", "data_size", "index_size", "filter_size", "num_data_blocks",
              "smallest_seq", "largest_seq", "format_version")
_BYTES_PROPS = ("smallest_key", "largest_key")


def encode_handle(offset: int, size: int) -> bytes:
    """``varint64 offset | varint64 size``.  O(1)."""
    return _fast_varint(offset) + _fast_varint(size)


def decode_handle(buf: bytes, pos: int = 0) -> tuple[int, int, int]:
    """Decode a handle at ``pos``: ``(offset, size, next_pos)``.

    Raises CorruptionError (file None; offset inside ``buf``) when malformed.
    """
    offset, pos = _fast_dv64(buf, pos)
    size, pos = _fast_dv64(buf, pos)
    return offset, size, pos


def encode_footer(metaindex: tuple[int, int], index: tuple[int, int],
                  version: int = FORMAT_VERSION) -> bytes:
    """The 56-byte footer.  Requires: handles of blocks in the file."""
    handles = encode_handle(*metaindex) + encode_handle(*index)
    head = handles + bytes(HANDLES_SIZE - len(handles)) + _U32.pack(version)
    return head + _CRC_MAGIC.pack(_checksum(head) & 0xFFFFFFFF, TABLE_MAGIC)


def decode_footer(footer: bytes, name: str, file_offset: int
                  ) -> tuple[int, tuple[int, int], tuple[int, int]]:
    """Parse a footer read at ``file_offset``: ``(version, metaindex, index)``.

    Checks in order: magic, footer checksum (CorruptionError), version
    (``UnsupportedFormatError`` for a version this code does not read), then
    the handles.  Requires: ``len(footer) == FOOTER_SIZE``.
    """
    version, crc, magic = _TAIL.unpack_from(footer, HANDLES_SIZE)
    if magic != TABLE_MAGIC:
        raise CorruptionError("sstable: bad magic number (not a table, or damaged footer)",
                              name, file_offset + 48)
    if _checksum(footer[:44]) & 0xFFFFFFFF != crc:
        raise CorruptionError("sstable: footer checksum mismatch", name, file_offset)
    if version not in SUPPORTED_VERSIONS:
        raise UnsupportedFormatError(
            f"sstable format_version {version} is not supported (this code reads "
            f"{sorted(SUPPORTED_VERSIONS)})", name)
    try:
        m_off, m_size, pos = decode_handle(footer, 0)
        i_off, i_size, pos = decode_handle(footer, pos)
    except CorruptionError as exc:
        raise CorruptionError(f"sstable: bad footer handle ({exc})", name, file_offset) from None
    if pos > HANDLES_SIZE or footer[pos:HANDLES_SIZE].count(0) != HANDLES_SIZE - pos:
        raise CorruptionError("sstable: bad footer padding", name, file_offset)
    return version, (m_off, m_size), (i_off, i_size)


def make_physical_block(contents: bytes, compress: bool) -> tuple[bytes, int]:
    """``contents`` (LZ4-compressed when ``compress`` and it saves >= 1/8)
    followed by the 5-byte trailer; returns ``(bytes, stored contents size)``.
    O(len(contents))."""
    ctype = b"\x00"
    if compress and len(contents) >= 64:
        packed = _U32.pack(len(contents)) + N.lz4_compress(contents)
        if len(packed) <= len(contents) - (len(contents) >> 3):
            contents = packed
            ctype = b"\x01"
    body = contents + ctype
    return body + _U32.pack(_checksum(body) & 0xFFFFFFFF), len(contents)


def unwrap_physical_block(buf: bytes, size: int, name: str, offset: int,
                          verify: bool = True) -> bytes:
    """Check and decompress a block read from ``offset`` (``buf`` holds the
    contents and the trailer, ``size`` is the handle's size).

    Raises CorruptionError(name, offset) on a short read, a checksum
    mismatch, an unknown compression byte or a failed decompression.
    O(len(buf)).
    """
    if len(buf) != size + BLOCK_TRAILER_SIZE:
        raise CorruptionError(f"sstable: block of {size} bytes is truncated", name, offset)
    if verify and _checksum(buf[:size + 1]) & 0xFFFFFFFF != _U32.unpack_from(buf, size + 1)[0]:
        raise CorruptionError("sstable: block checksum mismatch", name, offset)
    ctype = buf[size]
    if ctype == NO_COMPRESSION:
        return buf[:size]
    if ctype == LZ4_COMPRESSION:
        if size < 4:
            raise CorruptionError("sstable: lz4 block too short", name, offset)
        if _U32.unpack_from(buf, 0)[0] > 255 * size + 64:    # beyond LZ4's maximum ratio
            raise CorruptionError("sstable: lz4 block declares an impossible size", name, offset)
        try:
            return lz4.block.decompress(buf[:size])
        except (lz4.block.LZ4BlockError, ValueError, MemoryError) as exc:
            raise CorruptionError(f"sstable: lz4 decompression failed ({exc})",
                                  name, offset) from None
    raise CorruptionError(f"sstable: unknown compression type {ctype}", name, offset)


def encode_properties(props: TableProperties) -> tuple[list[bytes], list[bytes]]:
    """The properties block's (names, values), names sorted bytewise: ints as
    varint64, keys raw, compression as b"lz4" or b"none"."""
    items: dict[bytes, bytes] = {}
    for f in _INT_PROPS:
        items[f.encode()] = _encode_varint(getattr(props, f))
    for f in _BYTES_PROPS:
        items[f.encode()] = getattr(props, f)
    items[b"compression"] = (props.compression or "none").encode()
    names = sorted(items)
    return names, [items[n] for n in names]


def decode_properties(names: list[bytes], values: list[bytes], name: str, offset: int,
                      version: int) -> TableProperties:
    """Parse a properties block (unknown names are ignored; a missing or
    malformed known one is CorruptionError(name, offset))."""
    items = dict(zip(names, values))
    kw: dict[str, object] = {}
    try:
        for f in _INT_PROPS:
            v, end = _decode_varint64(items[f.encode()], 0)
            if end != len(items[f.encode()]):
                raise CorruptionError(f"trailing bytes in property {f}")
            kw[f] = v
        for f in _BYTES_PROPS:
            kw[f] = items[f.encode()]
        comp = items[b"compression"]
    except KeyError as exc:
        raise CorruptionError(f"sstable: property {exc.args[0]!r} missing", name, offset) from None
    except CorruptionError as exc:
        raise CorruptionError(f"sstable: bad properties block ({exc})", name, offset) from None
    if comp not in (b"lz4", b"none"):
        raise CorruptionError(f"sstable: unknown compression property {comp!r}", name, offset)
    kw["compression"] = "lz4" if comp == b"lz4" else None
    if kw["format_version"] != version:
        raise CorruptionError("sstable: properties format_version disagrees with the footer",
                              name, offset)
    return TableProperties(**kw)  # type: ignore[arg-type]
