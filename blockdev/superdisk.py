"""SuperDisk: a two-leg mirror — a durable (network) leg and a cache (local SSD) leg.

Semantics are those of Linux md RAID1 with the durable member marked
write-mostly, plus per-block checksums, generation-checked assembly and a
loud durable-leg failure mode.  See docs/superdisk.md for the full design and
docs/format.md ("SuperDisk") for every on-disk byte.

Leg layout (both legs, identical geometry; do not change: on-disk)::

    block 0, 1      superblock slots (written alternately: slot = update_seq % 2)
    csum area       ceil(N / E) checksum blocks, E = (block_size - 8) / 8 entries each
    bitmap area     write-intent bitmap blocks (meaningful on the durable leg only)
    data area       N = size / block_size data blocks

A checksum entry (u64 LE) of data block ``b`` is 0 when the block reads as
zeros (never written, written with zeros, or discarded) and otherwise
``xxh64(block, seed=b) or 1``.  Each checksum block ends with
``xxh64(entries, seed=CSUM_SEED + index)``.  The whole table is held in
memory (8 bytes per data block; size / 512 bytes of RAM) and is the
authority for verification; it is loaded from the durable leg at assembly.

Routing: a block is read from the cache when a cache is attached and healthy,
the block lies below the rebuild cursor, and its bitmap region is not waiting
for resync; otherwise from durable.  Every block read is verified against
its checksum; a bad cache copy is replaced from durable (read, rewrite,
re-read, verify: a "corrected error"), a bad durable copy is healed from a
good cache copy, and when neither copy verifies the read raises
``CorruptionError``.

Writes: the write-intent bit of each touched region is made durable first;
then, under the stripe locks of the touched checksum blocks, the in-memory
checksums are updated and the data and checksum blocks are written to both
legs at once (durable-leg I/O on the pool, cache-leg I/O in the caller).  The
call returns when the durable leg has completed and the cache leg has
completed or been marked failed.

Assembly generations: every superblock update of the pair (open, clean
close, ejection, re-add) raises the generation.  A cache whose generation,
array identity and member identity match the durable leg is trusted (minus
set bitmap regions); a cache that left at generation G (recorded on the
durable leg) and returns with generation G is re-added with a bitmap resync;
anything else — blank, foreign, replaced, older, or *newer* than the durable
leg (a durable restored from a snapshot) — is rebuilt from durable.
"""

from __future__ import annotations

import concurrent.futures
import enum
import os
import struct
import sys
import threading
import time
import uuid
from array import array
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import xxhash

from blockdev.bitmap import WriteIntentBitmap, bitmap_blocks_for
from blockdev.device import BlockDevice
from blockdev.errors import (
    ArgumentTypeError,
    ClosedError,
    CorruptionError,
    DurableLegError,
    InvalidArgumentError,
    ReadOnlyError,
    StorageIOError,
    UnsupportedFormatError,
)

__all__ = ["SuperDisk", "Superblock", "Layout", "format_status", "format_inspect", "SB_MAGIC",
           "FORMAT_VERSION", "SuperDiskFormat", "block_checksum"]

# -- on-disk constants (do not change: on-disk) ----------------------------------
class SuperDiskFormat(enum.IntEnum):
    """Named SuperDisk leg format versions (superblock bytes 8-11, u32 LE).

    Each member is one released layout; never renumber or reuse a value
    (do not change: on-disk).  A new layout adds a member, documents it in
    docs/format.md ("SuperDisk" / "Format versions") and moves
    ``FORMAT_VERSION``; readers refuse anything above ``FORMAT_VERSION``.
    """

    #: initial: two superblock slots, per-block XXH64 checksum area,
    #: write-intent bitmap, data area.
    V1 = 1


SB_MAGIC = b"SDSKLEG\x00"
FORMAT_VERSION = SuperDiskFormat.V1     # the version written (do not change: on-disk)
CSUM_SEED = 0x0000_4D55_5343_4B53      # "SKCSUM\0\0" as LE u64, + checksum block index
ROLE_DURABLE = 1
ROLE_CACHE = 2
FLAG_CLEAN = 0x01
CACHE_NONE = 0          # no cache member recorded
CACHE_IN_SYNC = 1
CACHE_RECOVERING = 2    # rebuild in progress; cursor valid
CACHE_FAILED = 3        # ejected or missing since left_generation
_SB_STRUCT = struct.Struct("<8sII16s16sBBBBIQQQQQQQQQQ16sQQQ")   # 176 bytes, then u64 checksum
SB_BYTES = _SB_STRUCT.size + 8
assert _SB_STRUCT.size == 176

_CACHE_STATE_NAMES = {CACHE_NONE: "none", CACHE_IN_SYNC: "in_sync",
                      CACHE_RECOVERING: "recovering", CACHE_FAILED: "failed"}
_NSTRIPES = 256
_STRIPE_BLOCKS = 16     # data blocks per stripe-lock group
_LITTLE = sys.byteorder == "little"


_ZEROS: Dict[int, bytes] = {}


def _zeros(n: int) -> bytes:
    z = _ZEROS.get(n)
    if z is None:
        z = _ZEROS[n] = bytes(n)
    return z


def block_checksum(data: bytes, block: int) -> int:
    """Checksum entry of a data block: 0 for all zeros, else xxh64(seed=block) or 1.  O(len(data))."""
    if data == _zeros(len(data)):
        return 0
    return _xxh64(data, seed=block) or 1


_xxh64 = xxhash.xxh64_intdigest


@dataclass(frozen=True)
class Superblock:
    """One leg's superblock (see docs/format.md, "SuperDisk")."""

    array_uuid: bytes
    member_uuid: bytes
    role: int
    flags: int
    cache_state: int
    block_size: int
    size: int
    generation: int
    update_seq: int
    leg_size: int
    csum_offset: int
    csum_blocks: int
    bitmap_offset: int
    bitmap_blocks: int
    region_size: int
    data_offset: int
    paired_uuid: bytes
    left_generation: int
    rebuild_cursor: int
    created_ns: int
    version: int = int(FORMAT_VERSION)

    def encode(self, block_size: int) -> bytes:
        """The superblock as one on-disk block.  O(block_size)."""
        body = _SB_STRUCT.pack(
            SB_MAGIC, self.version, SB_BYTES, self.array_uuid, self.member_uuid, self.role,
            self.flags, self.cache_state, 0, self.block_size, self.size, self.generation,
            self.update_seq, self.leg_size, self.csum_offset, self.csum_blocks,
            self.bitmap_offset, self.bitmap_blocks, self.region_size, self.data_offset,
            self.paired_uuid, self.left_generation, self.rebuild_cursor, self.created_ns)
        body += struct.pack("<Q", xxhash.xxh64_intdigest(body))
        return body + bytes(block_size - len(body))

    @classmethod
    def decode(cls, data: bytes, file: str, offset: int) -> "Superblock":
        """Parse a superblock block.  Raises UnsupportedFormatError (no magic /
        newer version) or CorruptionError (bad checksum or fields)."""
        if len(data) < SB_BYTES or data[:8] != SB_MAGIC:
            raise UnsupportedFormatError("no SuperDisk superblock", file)
        f = _SB_STRUCT.unpack_from(data, 0)
        (stored,) = struct.unpack_from("<Q", data, _SB_STRUCT.size)
        if stored != xxhash.xxh64_intdigest(data[:_SB_STRUCT.size]):
            raise CorruptionError("SuperDisk superblock checksum mismatch", file, offset)
        version = f[1]
        if version > FORMAT_VERSION:
            raise UnsupportedFormatError(
                f"SuperDisk format version {version} is newer than supported "
                f"{FORMAT_VERSION.name} ({int(FORMAT_VERSION)})", file)
        sb = cls(array_uuid=f[3], member_uuid=f[4], role=f[5], flags=f[6], cache_state=f[7],
                 block_size=f[9], size=f[10], generation=f[11], update_seq=f[12], leg_size=f[13],
                 csum_offset=f[14], csum_blocks=f[15], bitmap_offset=f[16], bitmap_blocks=f[17],
                 region_size=f[18], data_offset=f[19], paired_uuid=f[20], left_generation=f[21],
                 rebuild_cursor=f[22], created_ns=f[23], version=version)
        try:
            sb._check()
        except AssertionError as exc:
            raise CorruptionError(f"SuperDisk superblock has impossible fields ({exc})", file, offset) from None
        return sb

    def layout(self) -> "Layout":
        return Layout.for_size(self.size, self.block_size, self.region_size)

    def _check(self) -> None:
        assert self.role in (ROLE_DURABLE, ROLE_CACHE), "role"
        assert self.block_size >= 512 and self.block_size & (self.block_size - 1) == 0, "block_size"
        assert self.size % self.block_size == 0, "size"
        assert self.region_size % self.block_size == 0 and self.region_size > 0, "region_size"
        assert self.cache_state in _CACHE_STATE_NAMES, "cache_state"
        lay = self.layout()
        assert (lay.csum_offset, lay.csum_blocks, lay.bitmap_offset, lay.bitmap_blocks, lay.data_offset) == (
            self.csum_offset, self.csum_blocks, self.bitmap_offset, self.bitmap_blocks, self.data_offset), "layout"
        assert self.rebuild_cursor <= self.size // self.block_size, "cursor"


@dataclass(frozen=True)
class Layout:
    """Geometry of a leg for a data size (all offsets in bytes)."""

    block_size: int
    nblocks: int
    region_blocks: int
    nregions: int
    entries_per_csum_block: int
    csum_offset: int
    csum_blocks: int
    bitmap_offset: int
    bitmap_blocks: int
    data_offset: int
    leg_size: int

    @classmethod
    def for_size(cls, size: int, block_size: int, region_size: int) -> "Layout":
        """O(1)."""
        n = size // block_size
        rb = region_size // block_size
        nregions = -(-n // rb)
        e = (block_size - 8) // 8
        cblocks = -(-n // e)
        bblocks = bitmap_blocks_for(nregions, block_size)
        csum_off = 2 * block_size
        bm_off = csum_off + cblocks * block_size
        data_off = bm_off + bblocks * block_size
        return cls(block_size, n, rb, nregions, e, csum_off, cblocks, bm_off, bblocks, data_off, data_off + size)

    @classmethod
    def max_for_leg(cls, leg_size: int, block_size: int, region_size: int) -> "Layout":
        """The largest layout fitting in ``leg_size`` bytes.  O(log leg_size)."""
        lo, hi = 0, leg_size // block_size
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if cls.for_size(mid * block_size, block_size, region_size).leg_size <= leg_size:
                lo = mid
            else:
                hi = mid - 1
        return cls.for_size(lo * block_size, block_size, region_size)


# ---------------------------------------------------------------------------------
class _Leg:
    """A leg: its device, whether the SuperDisk opened it (and closes it)."""

    def __init__(self, dev: BlockDevice, owned: bool, role: str) -> None:
        self.dev = dev
        self.owned = owned
        self.role = role
        self.sb: Optional[Superblock] = None


def _open_leg(spec: Any, role: str, create: bool, leg_size: Optional[int], block_size: int) -> _Leg:
    from blockdev.file import FileDevice  # local import: keeps module import light

    if isinstance(spec, BlockDevice):
        if spec.closed:
            raise ClosedError(f"{role} leg {spec.name} is closed")
        return _Leg(spec, False, role)
    if isinstance(spec, (str, os.PathLike)):
        path = os.fspath(spec)
        exists = os.path.exists(path)
        if not exists and leg_size is None:
            raise InvalidArgumentError(f"size is required to create the {role} leg {path}")
        if exists:
            dev = FileDevice(path, block_size=block_size,
                             size=leg_size if (create and leg_size is not None
                                               and os.path.getsize(path) < leg_size) else None,
                             create=create)
        else:
            dev = FileDevice(path, size=leg_size, create=True, block_size=block_size)
        return _Leg(dev, True, role)
    raise ArgumentTypeError(f"{role} must be a path or a BlockDevice, got {type(spec).__name__}")


def _read_sb(dev: BlockDevice, block_size: int) -> Tuple[Optional[Superblock], str]:
    """The freshest valid superblock slot of ``dev`` and a reason when none."""
    best: Optional[Superblock] = None
    reasons = []
    if dev.size < 2 * block_size:
        return None, "device too small"
    for slot in (0, 1):
        data = dev.read(slot * block_size, block_size)
        try:
            sb = Superblock.decode(data, dev.name, slot * block_size)
        except UnsupportedFormatError as exc:
            if data[:8] == SB_MAGIC:
                raise
            reasons.append("blank" if not data.strip(b"\0") else "foreign")
            continue
        except CorruptionError as exc:
            reasons.append(str(exc))
            continue
        if best is None or sb.update_seq > best.update_seq:
            best = sb
    return best, ("blank" if reasons and all(r == "blank" for r in reasons) else "; ".join(reasons))


def _classify_cache(dsb: Superblock, csb: Optional[Superblock], why: str, nblocks: int,
                    name: str) -> Tuple[str, int, str]:
    """How assembly treats a cache leg: ``(mode, cursor, reason)`` with mode
    ``'trusted'``, ``'re-add'`` (bitmap resync) or ``'rebuild'`` (full copy).
    Pure: reads and writes nothing.  Raises InvalidArgumentError when the
    "cache" holds a durable superblock (never overwritten).  O(1)."""
    if csb is None:
        return "rebuild", 0, f"cache is {why or 'blank'}"
    if csb.role == ROLE_DURABLE:
        raise InvalidArgumentError(
            f"the cache leg {name} holds a SuperDisk durable superblock"
            + (" of this very array (same disk passed twice?)" if csb.array_uuid == dsb.array_uuid
               else " of another array; refusing to overwrite it"))
    if csb.array_uuid != dsb.array_uuid:
        return "rebuild", 0, f"cache belongs to another array ({uuid.UUID(bytes=csb.array_uuid)})"
    if csb.member_uuid != dsb.paired_uuid:
        return "rebuild", 0, "cache member was replaced since (identity mismatch)"
    if csb.size != dsb.size or csb.region_size != dsb.region_size:
        return "rebuild", 0, "cache geometry differs from the array"
    if csb.generation > dsb.generation:
        return "rebuild", 0, (f"cache generation {csb.generation} is newer than durable {dsb.generation} "
                              "(durable restored from an older snapshot?); durable is the source of truth")
    cursor = min(csb.rebuild_cursor, nblocks) if csb.cache_state == CACHE_RECOVERING else nblocks
    if csb.generation == dsb.generation and dsb.cache_state in (CACHE_IN_SYNC, CACHE_RECOVERING):
        return "trusted", cursor, "cache is current"
    if (csb.generation < dsb.generation and dsb.cache_state == CACHE_FAILED
            and dsb.left_generation == csb.generation):
        return "re-add", cursor, f"cache returns after leaving at generation {csb.generation}: bitmap resync"
    return "rebuild", 0, (f"cache generation {csb.generation} is stale (durable {dsb.generation}, "
                          f"state {_CACHE_STATE_NAMES[dsb.cache_state]})")


def _stale_below(dirty: Sequence[int], cursor: int, lay: Layout) -> set:
    """The dirty regions a returning cache must resync: those starting below
    ``cursor`` (the recovery pass copies everything at or above it).  O(len(dirty))."""
    return {r for r in dirty if r * lay.region_blocks < cursor}


def _remaining_blocks(cursor: int, stale: Any, lay: Layout, resync_pos: Optional[int] = None) -> int:
    """Blocks a rebuild still has to copy: the recovery pass ``[cursor, N)``
    plus, for each stale region (all below the cursor), its part below the
    cursor -- disjoint ranges, so the sum never exceeds N.  ``resync_pos``:
    progress inside the lowest stale region.  O(len(stale))."""
    n = lay.nblocks - min(cursor, lay.nblocks)
    first = min(stale) if stale else None
    for r in stale:
        lo = r * lay.region_blocks
        hi = min(lo + lay.region_blocks, lay.nblocks, cursor)
        if r == first and resync_pos is not None and lo <= resync_pos < hi:
            lo = resync_pos
        n += max(0, hi - lo)
    return n


def _open_for_inspect(spec: Any, role: str, opened: List[BlockDevice]) -> Tuple[BlockDevice, Optional[bool]]:
    """A leg to examine read-only, and whether another process holds it
    (None: unknown, a device object was passed)."""
    from blockdev.errors import LockError
    from blockdev.file import FileDevice

    if isinstance(spec, BlockDevice):
        if spec.closed:
            raise ClosedError(f"{role} leg {spec.name} is closed")
        return spec, None
    if not isinstance(spec, (str, os.PathLike)):
        raise ArgumentTypeError(f"{role} must be a path or a BlockDevice, got {type(spec).__name__}")
    path = os.fspath(spec)
    try:
        dev = FileDevice(path, read_only=True)          # shared lock: nobody writes while we read
        in_use = False
    except LockError:
        dev = FileDevice(path, read_only=True, lock=False)   # a live array: read a snapshot
        in_use = True
    opened.append(dev)
    return dev, in_use


def _read_sb_any_block_size(dev: BlockDevice) -> Tuple[Optional[Superblock], str]:
    """Like ``_read_sb`` when the array block size is unknown: slot 0 sits at
    offset 0 for every block size and names it; a slot-0-less leg is tried at
    the usual sizes.  O(1)."""
    head = dev.read(0, dev.block_size) if dev.size >= dev.block_size else b""
    sizes: List[int] = []
    if len(head) >= SB_BYTES and head[:8] == SB_MAGIC:
        try:
            sizes.append(Superblock.decode(head, dev.name, 0).block_size)
        except CorruptionError:
            pass
    sizes += [bs for bs in (4096, 512, 1024, 2048, 8192, 16384, 65536) if bs not in sizes]
    why = "blank"
    for bs in sizes:
        if dev.size < 2 * bs or bs % dev.block_size:
            continue
        sb, why = _read_sb(dev, bs)
        if sb is not None and sb.block_size == bs:
            return sb, why
    return None, why


def _leg_info(dev: BlockDevice, sb: Optional[Superblock], in_use: Optional[bool]) -> Dict[str, Any]:
    """The examine fields of one leg's superblock."""
    info: Dict[str, Any] = {"device": dev.name, "in_use": in_use, "superblock": None}
    if sb is not None:
        info["superblock"] = {
            "version": sb.version,
            "role": "durable" if sb.role == ROLE_DURABLE else "cache",
            "array_uuid": str(uuid.UUID(bytes=sb.array_uuid)),
            "member_uuid": str(uuid.UUID(bytes=sb.member_uuid)),
            "paired_uuid": str(uuid.UUID(bytes=sb.paired_uuid)),
            "generation": sb.generation,
            "update_seq": sb.update_seq,
            "clean": bool(sb.flags & FLAG_CLEAN),
            "cache_state": _CACHE_STATE_NAMES[sb.cache_state],
            "left_generation": sb.left_generation,
            "rebuild_cursor": sb.rebuild_cursor * sb.block_size,
            "size": sb.size,
            "leg_size": sb.leg_size,
            "block_size": sb.block_size,
            "region_size": sb.region_size,
            "created_ns": sb.created_ns,
        }
    return info


class _CsumWriter:
    """Coalescing writer of one leg's checksum blocks.

    ``kick(cbs)`` marks checksum blocks dirty and starts (on the I/O pool) a
    writer task per block unless one is running; a running task loops while
    its block is re-dirtied, each time writing a fresh snapshot of the
    in-memory table, so the last write to land always holds the newest
    entries and at most one write per block is in flight.  ``barrier()``
    waits until every block dirty or in flight at the call has been written
    with a snapshot taken after the call (what ``flush`` needs).
    """

    def __init__(self, owner: "SuperDisk", dev: BlockDevice, on_error: Callable[[BaseException], None]) -> None:
        self.owner = owner
        self.dev = dev
        self.on_error = on_error
        self.cond = threading.Condition()
        self.dirty: set = set()
        self.inflight: set = set()
        self.started: Dict[int, int] = {}
        self.completed: Dict[int, int] = {}
        self.error: Optional[BaseException] = None

    def kick(self, cbs: Sequence[int]) -> None:
        submit = []
        with self.cond:
            if self.error is not None:
                return
            for c in cbs:
                self.dirty.add(c)
                if c not in self.inflight:
                    self.inflight.add(c)
                    submit.append(c)
        for c in submit:
            try:
                self.owner._executor.submit(self._run, c)
            except RuntimeError:  # pool shut down (abandoned array): nothing to write to
                with self.cond:
                    self.inflight.discard(c)
                    self.dirty.discard(c)
                    self.cond.notify_all()

    def _run(self, c: int) -> None:
        lay = self.owner._layout
        bs = self.owner.block_size
        while True:
            with self.cond:
                self.dirty.discard(c)
                n = self.started.get(c, 0) + 1
                self.started[c] = n
            err: Optional[BaseException] = None
            try:
                self.dev.write(lay.csum_offset + c * bs, self.owner._cblock_bytes(c))
            except (StorageIOError, ClosedError) as exc:
                err = exc
            with self.cond:
                self.completed[c] = n
                if err is None and c in self.dirty:
                    continue
                self.inflight.discard(c)
                self.dirty.discard(c)
                if err is not None and self.error is None:
                    self.error = err
                self.cond.notify_all()
            if err is not None:
                self.on_error(err)
            return

    def barrier(self) -> Optional[BaseException]:
        """Wait as described above; returns the first write error, if any."""
        with self.cond:
            targets = {c: self.started.get(c, 0) + (1 if c in self.dirty else 0)
                       for c in self.inflight | self.dirty}
            while self.error is None and any(self.completed.get(c, 0) < t and c in self.inflight
                                             for c, t in targets.items()):
                self.cond.wait()
            return self.error

    def idle(self) -> bool:
        with self.cond:
            return not self.inflight


class SuperDisk(BlockDevice):
    """The mirrored device.  Create with :meth:`SuperDisk.open`."""

    # -- construction ------------------------------------------------------------
    @classmethod
    def open(cls, durable: Any, cache: Any = None, create: bool = False, size: Optional[int] = None, *,
             block_size: int = 4096, region_size: int = 64 << 20,
             durable_failure_policy: str = "fail", rebuild_rate: Optional[float] = 200 << 20,
             background_rebuild: bool = True, rebuild_chunk: int = 1 << 20,
             max_corrected_errors: int = 20, error_half_life: float = 3600.0,
             bitmap_clear_delay: float = 5.0, io_threads: int = 16,
             clock: Callable[[], float] = time.monotonic, name: Optional[str] = None) -> "SuperDisk":
        """Assemble (or, with ``create=True`` on a leg with no superblock,
        format) a SuperDisk.

        ``durable``/``cache``: a path (opened as a FileDevice, created when
        missing) or a BlockDevice (owned by the caller, not closed by us);
        ``cache=None`` runs degraded.  ``size``: data bytes (new arrays:
        default all of the durable leg; existing arrays: must match).
        ``durable_failure_policy``: ``'fail'`` (every call raises
        DurableLegError once the durable leg failed) or ``'read-only'``
        (writes raise ReadOnlyError, reads are served from the cache).
        ``rebuild_rate``: bytes/s for background rebuild (None: unlimited).
        ``max_corrected_errors`` within the decaying window of
        ``error_half_life`` seconds ejects the cache.
        Requires: legs distinct; block_size a power of two >= 512;
        region_size a multiple of block_size.
        """
        for arg, v in (("create", create), ("background_rebuild", background_rebuild)):
            if not isinstance(v, bool):
                raise ArgumentTypeError(f"{arg} must be a bool, got {type(v).__name__}")
        for arg, v in (("block_size", block_size), ("region_size", region_size), ("io_threads", io_threads),
                       ("max_corrected_errors", max_corrected_errors), ("rebuild_chunk", rebuild_chunk)):
            if not isinstance(v, int) or isinstance(v, bool):
                raise ArgumentTypeError(f"{arg} must be an int, got {type(v).__name__}")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool)):
            raise ArgumentTypeError(f"size must be an int or None, got {type(size).__name__}")
        for arg, v in (("error_half_life", error_half_life), ("bitmap_clear_delay", bitmap_clear_delay)):
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise ArgumentTypeError(f"{arg} must be a number, got {type(v).__name__}")
        if rebuild_rate is not None and (not isinstance(rebuild_rate, (int, float)) or isinstance(rebuild_rate, bool)):
            raise ArgumentTypeError(f"rebuild_rate must be a number or None, got {type(rebuild_rate).__name__}")
        if not callable(clock):
            raise ArgumentTypeError("clock must be callable")
        if durable_failure_policy not in ("fail", "read-only"):
            raise InvalidArgumentError(
                f"durable_failure_policy must be 'fail' or 'read-only', got {durable_failure_policy!r}")
        if block_size < 512 or block_size & (block_size - 1):
            raise InvalidArgumentError(f"block_size must be a power of two >= 512, got {block_size}")
        if region_size <= 0 or region_size % block_size:
            raise InvalidArgumentError(f"region_size must be a positive multiple of {block_size}, got {region_size}")
        if size is not None and (size <= 0 or size % block_size):
            raise InvalidArgumentError(f"size must be a positive multiple of {block_size}, got {size}")
        if rebuild_rate is not None and rebuild_rate <= 0:
            raise InvalidArgumentError(f"rebuild_rate must be > 0 or None, got {rebuild_rate}")
        if io_threads < 1 or max_corrected_errors < 1 or rebuild_chunk < block_size:
            raise InvalidArgumentError("io_threads and max_corrected_errors must be >= 1, "
                                       f"rebuild_chunk >= block_size")
        if error_half_life <= 0 or bitmap_clear_delay < 0:
            raise InvalidArgumentError("error_half_life must be > 0 and bitmap_clear_delay >= 0")
        if durable is None:
            raise InvalidArgumentError("durable leg is required")
        if cache is not None and cache is durable:
            raise InvalidArgumentError("durable and cache must be different devices")

        leg_size = Layout.for_size(size, block_size, region_size).leg_size if size is not None else None
        dleg = _open_leg(durable, "durable", create, leg_size, block_size)
        try:
            self = cls.__new__(cls)
            self._init(dleg, create, size, block_size, region_size, durable_failure_policy, rebuild_rate,
                       background_rebuild, rebuild_chunk, max_corrected_errors, error_half_life,
                       bitmap_clear_delay, io_threads, clock, name)
        except BaseException:
            if dleg.owned:
                dleg.dev.close()
            raise
        try:
            if cache is not None:
                cleg = _open_leg(cache, "cache", True, self._layout.leg_size, block_size)
                self._attach(cleg, at_open=True)
            self._finish_open()
        except BaseException:
            self._release()
            raise
        return self

    def _init(self, dleg: _Leg, create: bool, size: Optional[int], block_size: int, region_size: int,
              policy: str, rebuild_rate: Optional[float], background_rebuild: bool, rebuild_chunk: int,
              max_corrected_errors: int, error_half_life: float, bitmap_clear_delay: float,
              io_threads: int, clock: Callable[[], float], name: Optional[str]) -> None:
        dev = dleg.dev
        if dev.block_size != block_size and dev.block_size > block_size:
            raise InvalidArgumentError(f"durable leg block size {dev.block_size} exceeds {block_size}")
        self.policy = policy
        self.rebuild_rate = rebuild_rate
        self.background_rebuild = background_rebuild
        self.rebuild_chunk = rebuild_chunk
        self.max_corrected_errors = max_corrected_errors
        self.error_half_life = float(error_half_life)
        self.bitmap_clear_delay = float(bitmap_clear_delay)
        self._clock = clock
        self._durable = dleg
        self._cache: Optional[_Leg] = None
        self._cache_failed = False
        self._durable_failed: Optional[BaseException] = None
        self._notes: List[str] = []
        self._state_lock = threading.RLock()
        self._bitmap_io_lock = threading.Lock()
        self._rebuild_lock = threading.Lock()
        self._stripes = [threading.Lock() for _ in range(_NSTRIPES)]
        self._write_seq = 0
        self._seq_lock = threading.Lock()
        self._err_score = 0.0
        self._err_time = clock()
        self._rebuild_thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._rebuild_started: Optional[float] = None
        self._rebuild_done_bytes = 0
        self._rebuild_total_bytes = 0
        self.counters: Dict[str, int] = {k: 0 for k in (
            "reads", "writes", "flushes", "discards", "reads_cache", "reads_durable",
            "bytes_read_cache", "bytes_read_durable", "read_errors_cache", "read_errors_durable",
            "checksum_failures_cache", "checksum_failures_durable", "corrected_errors",
            "durable_healed", "repair_failures", "unrecoverable", "ejections",
            "rebuilt_bytes", "resynced_regions", "rechecksummed_regions", "bitmap_writes")}
        self._counter_lock = threading.Lock()

        sb, why = _read_sb(dev, block_size)
        if sb is None:
            if not create:
                raise UnsupportedFormatError(
                    f"durable leg holds no SuperDisk superblock ({why or 'blank'}); pass create=True to format it",
                    dev.name)
            sb = self._format_durable(size, block_size, region_size)
            self._notes.append("formatted a new array on the durable leg")
        else:
            if sb.role != ROLE_DURABLE:
                raise UnsupportedFormatError(
                    "the durable leg holds a SuperDisk *cache* superblock; pass the durable disk as durable",
                    dev.name)
            if sb.block_size != block_size:
                raise InvalidArgumentError(
                    f"array block size is {sb.block_size}, open() was given block_size={block_size}")
            if size is not None and size != sb.size:
                raise InvalidArgumentError(f"array size is {sb.size}, open() was given size={size}")
            if sb.leg_size > dev.size:
                raise CorruptionError(
                    f"durable leg is {dev.size} bytes but its superblock needs {sb.leg_size}", dev.name, 0)
        dleg.sb = sb
        super().__init__(sb.size, sb.block_size)
        self.name = name if name is not None else f"superdisk({dev.name})"
        self._layout = sb.layout()
        lay = self._layout
        self._cursor = lay.nblocks          # cache valid below this block (when attached)
        self._stale: set = set()            # regions the cache must resync before use (all below the cursor)
        self._resync_pos: Optional[int] = None  # next block of the region being resynced
        self._bitmap = WriteIntentBitmap(lay.nregions, lay.region_blocks, block_size)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=io_threads, thread_name_prefix="superdisk-io")
        self._dwriter = _CsumWriter(self, dev, self._fail_durable)
        self._dirty_cbs: set = set()
        self._dirty_cbs_lock = threading.Lock()
        self._cwriter: Optional[_CsumWriter] = None
        self._load_bitmap()
        self._table = array("Q", bytes(8 * lay.nblocks))
        self._bad_cblocks = self._load_table()
        self._clean_at_open = bool(sb.flags & FLAG_CLEAN)

    def _format_durable(self, size: Optional[int], block_size: int, region_size: int) -> Superblock:
        dev = self._durable.dev
        if size is None:
            lay = Layout.max_for_leg(dev.size, block_size, region_size)
            if lay.nblocks == 0:
                raise InvalidArgumentError(f"durable leg {dev.name} is too small for a SuperDisk")
        else:
            lay = Layout.for_size(size, block_size, region_size)
            if lay.leg_size > dev.size:
                raise InvalidArgumentError(
                    f"durable leg {dev.name} has {dev.size} bytes; size {size} needs {lay.leg_size}")
        zero = bytes(min(lay.data_offset - lay.csum_offset, 1 << 20))
        off = lay.csum_offset
        while off < lay.data_offset:
            n = min(len(zero), lay.data_offset - off)
            dev.write(off, zero[:n])
            off += n
        # empty bitmap blocks with valid trailers
        bm = WriteIntentBitmap(lay.nregions, lay.region_blocks, block_size)
        for i in range(lay.bitmap_blocks):
            dev.write(lay.bitmap_offset + i * block_size, bm.encode_block(i))
        # checksum blocks of all-zero entries need their trailers too
        for i in range(lay.csum_blocks):
            dev.write(lay.csum_offset + i * block_size, self._encode_cblock_entries(bytes(block_size - 8), i))
        sb = Superblock(array_uuid=uuid.uuid4().bytes, member_uuid=uuid.uuid4().bytes, role=ROLE_DURABLE,
                        flags=FLAG_CLEAN, cache_state=CACHE_NONE, block_size=block_size, size=lay.nblocks * block_size,
                        generation=1, update_seq=1, leg_size=lay.leg_size, csum_offset=lay.csum_offset,
                        csum_blocks=lay.csum_blocks, bitmap_offset=lay.bitmap_offset,
                        bitmap_blocks=lay.bitmap_blocks, region_size=region_size, data_offset=lay.data_offset,
                        paired_uuid=bytes(16), left_generation=0, rebuild_cursor=0, created_ns=time.time_ns())
        dev.write(block_size, sb.encode(block_size))
        dev.flush()
        return sb

    @staticmethod
    def _encode_cblock_entries(entries: bytes, index: int) -> bytes:
        return entries + struct.pack("<Q", xxhash.xxh64_intdigest(entries, seed=CSUM_SEED + index))

    def _cblock_bytes(self, index: int) -> bytes:
        e = self._layout.entries_per_csum_block
        lo = index * e
        part = self._table[lo:lo + e]
        if not _LITTLE:
            part.byteswap()
        raw = part.tobytes()
        raw += bytes(self.block_size - 8 - len(raw))
        return self._encode_cblock_entries(raw, index)

    def _decode_cblock(self, data: bytes, index: int) -> Optional[array]:
        bs = self.block_size
        entries = data[:bs - 8]
        (stored,) = struct.unpack_from("<Q", data, bs - 8)
        if stored != xxhash.xxh64_intdigest(entries, seed=CSUM_SEED + index):
            return None
        arr = array("Q")
        arr.frombytes(entries)
        if not _LITTLE:
            arr.byteswap()
        return arr

    def _load_table(self) -> List[int]:
        lay = self._layout
        dev = self._durable.dev
        bad = []
        e = lay.entries_per_csum_block
        chunk = max(1, (1 << 20) // self.block_size)
        for first in range(0, lay.csum_blocks, chunk):
            n = min(chunk, lay.csum_blocks - first)
            data = dev.read(lay.csum_offset + first * self.block_size, n * self.block_size)
            for i in range(n):
                idx = first + i
                arr = self._decode_cblock(data[i * self.block_size:(i + 1) * self.block_size], idx)
                if arr is None:
                    bad.append(idx)
                    continue
                lo = idx * e
                hi = min(lo + e, lay.nblocks)
                self._table[lo:hi] = arr[:hi - lo]
        return bad

    def _load_bitmap(self) -> None:
        lay = self._layout
        data = self._durable.dev.read(lay.bitmap_offset, lay.bitmap_blocks * self.block_size)
        bad = []
        for i in range(lay.bitmap_blocks):
            if not self._bitmap.load_block(i, data[i * self.block_size:(i + 1) * self.block_size]):
                bad.append(i)
        if bad:
            self._notes.append(f"bitmap blocks {bad} failed their checksum: their regions are treated as dirty")

    # -- assembly of the cache leg ---------------------------------------------------
    def _attach(self, cleg: _Leg, at_open: bool) -> None:
        """Classify ``cleg`` against the durable superblock and attach it."""
        dsb = self._durable.sb
        assert dsb is not None
        lay = self._layout
        dev = cleg.dev
        if dev.size < lay.leg_size:
            raise InvalidArgumentError(
                f"cache leg {dev.name} has {dev.size} bytes; the array needs {lay.leg_size}")
        if dev.block_size > self.block_size:
            raise InvalidArgumentError(f"cache leg block size {dev.block_size} exceeds {self.block_size}")
        try:
            csb, why = _read_sb(dev, self.block_size)
        except UnsupportedFormatError as exc:
            csb, why = None, str(exc)
        except StorageIOError as exc:
            self._notes.append(f"cache leg {dev.name} unreadable at assembly ({exc}); running degraded")
            self._cache, self._cache_failed = cleg, True
            return
        mode, cursor, reason = _classify_cache(dsb, csb, why, lay.nblocks, dev.name)
        self._notes.append(f"{dev.name}: {reason}" + ("" if mode != "rebuild" else "; full rebuild"))
        member = csb.member_uuid if (mode != "rebuild" and csb is not None) else uuid.uuid4().bytes
        # dirty regions below the cursor must resync; those at or above it are
        # copied whole by the recovery pass anyway (counting them too would
        # count their bytes twice)
        stale = (_stale_below(self._bitmap.dirty_regions(), cursor, lay)
                 if mode != "rebuild" else set())
        if mode == "rebuild":
            # the cache's bitmap area is unused; its checksum area is rewritten as the rebuild passes
            cursor = 0
        cleg.sb = Superblock(
            array_uuid=dsb.array_uuid, member_uuid=member, role=ROLE_CACHE, flags=0,
            cache_state=CACHE_IN_SYNC if cursor >= lay.nblocks else CACHE_RECOVERING,
            block_size=dsb.block_size, size=dsb.size, generation=dsb.generation,
            update_seq=csb.update_seq if csb is not None else 0,
            leg_size=dsb.leg_size, csum_offset=dsb.csum_offset, csum_blocks=dsb.csum_blocks,
            bitmap_offset=dsb.bitmap_offset, bitmap_blocks=dsb.bitmap_blocks, region_size=dsb.region_size,
            data_offset=dsb.data_offset, paired_uuid=dsb.array_uuid, left_generation=0,
            rebuild_cursor=min(cursor, lay.nblocks), created_ns=time.time_ns())
        with self._state_lock:
            self._cache = cleg
            self._cwriter = _CsumWriter(
                self, cleg.dev, lambda exc: self._fail_cache_locked(f"checksum block write failed: {exc}"))
            self._cache_failed = False
            self._cursor = min(cursor, lay.nblocks)
            self._stale = stale
            self._err_score = 0.0
            if self._cursor < lay.nblocks or stale:
                self._rebuild_started = None
                self._rebuild_done_bytes = 0
            self._resync_pos = None
            self._rebuild_total_bytes = _remaining_blocks(self._cursor, stale, lay) * self.block_size
        if not at_open:
            self._write_pair_sbs(bump=True)

    def _finish_open(self) -> None:
        lay = self._layout
        cache = self._cache if not self._cache_failed else None
        # damaged checksum blocks on durable: take the cache's copy when the cache is fully in sync
        for idx in self._bad_cblocks:
            fixed = False
            e = lay.entries_per_csum_block
            lo, hi = idx * e, min((idx + 1) * e, lay.nblocks)
            clean = not any(self._bitmap.is_dirty(r) for r in self._bitmap.regions_for(lo, hi - lo))
            if cache is not None and self._cursor >= lay.nblocks and clean:
                try:
                    data = cache.dev.read(lay.csum_offset + idx * self.block_size, self.block_size)
                    arr = self._decode_cblock(data, idx)
                except StorageIOError:
                    arr = None
                if arr is not None:
                    e = lay.entries_per_csum_block
                    lo, hi = idx * e, min((idx + 1) * e, lay.nblocks)
                    self._table[lo:hi] = arr[:hi - lo]
                    fixed = True
                    self._notes.append(f"checksum block {idx} damaged on durable: restored from the cache")
            if not fixed:
                e = lay.entries_per_csum_block
                lo, hi = idx * e, min((idx + 1) * e, lay.nblocks)
                self._recompute_checksums(lo, hi - lo)
                self._notes.append(f"checksum block {idx} damaged on durable and no cache copy: "
                                   "recomputed from durable data (corruption there cannot be detected)")
            self._durable.dev.write(lay.csum_offset + idx * self.block_size, self._cblock_bytes(idx))
        # unclean shutdown: re-checksum every dirty region from durable (durable is the truth)
        if not self._clean_at_open:
            dirty = self._bitmap.dirty_regions()
            for r in dirty:
                lo = r * lay.region_blocks
                self._recompute_checksums(lo, min(lay.region_blocks, lay.nblocks - lo))
            if dirty:
                e = lay.entries_per_csum_block
                cbs = sorted({c for r in dirty for c in range(
                    r * lay.region_blocks // e,
                    (min((r + 1) * lay.region_blocks, lay.nblocks) - 1) // e + 1)})
                for c in cbs:
                    self._durable.dev.write(lay.csum_offset + c * self.block_size, self._cblock_bytes(c))
                self._add("rechecksummed_regions", len(dirty))
            self._notes.append(f"unclean shutdown: {len(dirty)} dirty regions re-checksummed from durable")
        # rewrite any damaged bitmap blocks
        pend = self._bitmap.pending_blocks(range(lay.nregions)) if lay.nregions else []
        for b in pend:
            data = self._bitmap.encode_block(b)
            self._durable.dev.write(lay.bitmap_offset + b * self.block_size, data)
        self._durable.dev.flush()
        for b in pend:
            self._bitmap.persisted(b, self._bitmap.encode_block(b))
        self._write_pair_sbs(bump=True, clean=False)
        if self.background_rebuild and self._needs_rebuild():
            self.rebuild(wait=False)

    def _recompute_checksums(self, first: int, n: int) -> None:
        bs = self.block_size
        dev = self._durable.dev
        step = max(1, (1 << 20) // bs)
        for s in range(first, first + n, step):
            m = min(step, first + n - s)
            data = dev.read(self._layout.data_offset + s * bs, m * bs)
            for i in range(m):
                self._table[s + i] = block_checksum(data[i * bs:(i + 1) * bs], s + i)

    # -- superblocks -------------------------------------------------------------------
    def _write_sb(self, leg: _Leg, sb: Superblock) -> Superblock:
        sb = replace(sb, update_seq=sb.update_seq + 1)
        leg.dev.write((sb.update_seq % 2) * self.block_size, sb.encode(self.block_size))
        leg.dev.flush()
        leg.sb = sb
        return sb

    def _write_pair_sbs(self, bump: bool, clean: Optional[bool] = None) -> None:
        """Write cache then durable superblocks (raising the generation when
        ``bump``).  Durable failures mark the durable leg failed and raise."""
        with self._state_lock:
            dsb = self._durable.sb
            assert dsb is not None
            gen = dsb.generation + (1 if bump else 0)
            cache_state = CACHE_NONE if self._cache is None and dsb.cache_state == CACHE_NONE else dsb.cache_state
            paired, left = dsb.paired_uuid, dsb.left_generation
            if self._cache is not None and not self._cache_failed:
                c = self._cache
                assert c.sb is not None
                in_sync = self._cursor >= self._layout.nblocks
                cstate = CACHE_IN_SYNC if in_sync else CACHE_RECOVERING
                try:
                    self._write_sb(c, replace(c.sb, generation=gen, cache_state=cstate,
                                              rebuild_cursor=self._cursor))
                    cache_state, paired, left = cstate, c.sb.member_uuid, 0
                except StorageIOError as exc:
                    self._fail_cache_locked(f"superblock write failed: {exc}", write_sb=False)
                    cache_state, left = CACHE_FAILED, c.sb.generation
            elif self._cache is not None and self._cache_failed and dsb.cache_state != CACHE_FAILED:
                # an ejected cache left at its own generation; one unreadable at
                # assembly last matched the durable leg's current generation
                cache_state = CACHE_FAILED
                left = self._cache.sb.generation if self._cache.sb is not None else dsb.generation
            elif self._cache is None and dsb.cache_state in (CACHE_IN_SYNC, CACHE_RECOVERING):
                cache_state, left = CACHE_FAILED, dsb.generation  # cache missing at this assembly
            flags = dsb.flags
            if clean is not None:
                flags = (flags | FLAG_CLEAN) if clean else (flags & ~FLAG_CLEAN)
            try:
                self._write_sb(self._durable, replace(
                    dsb, generation=gen, cache_state=cache_state, paired_uuid=paired, left_generation=left,
                    flags=flags, rebuild_cursor=min(self._cursor, self._layout.nblocks)))
            except StorageIOError as exc:
                self._fail_durable(exc)
                raise DurableLegError(f"durable leg failed writing its superblock: {exc}", self.name) from exc

    # -- helpers -------------------------------------------------------------------------
    def _add(self, key: str, n: int = 1) -> None:
        with self._counter_lock:
            self.counters[key] += n

    def _next_seq(self) -> int:
        with self._seq_lock:
            self._write_seq += 1
            return self._write_seq

    def _cache_dev(self) -> Optional[BlockDevice]:
        c = self._cache
        if c is None or self._cache_failed:
            return None
        return c.dev

    def _cache_valid(self, b: int) -> bool:
        return (self._cache is not None and not self._cache_failed and b < self._cursor
                and (not self._stale or b // self._layout.region_blocks not in self._stale))

    def _stripe_ids(self, first: int, n: int) -> List[int]:
        g0, g1 = first // _STRIPE_BLOCKS, (first + n - 1) // _STRIPE_BLOCKS
        if g1 - g0 + 1 >= _NSTRIPES:
            return list(range(_NSTRIPES))
        return sorted({g % _NSTRIPES for g in range(g0, g1 + 1)})

    def _cbs_of(self, first: int, n: int) -> range:
        e = self._layout.entries_per_csum_block
        return range(first // e, (first + n - 1) // e + 1)

    def _cache_writer(self) -> Optional[_CsumWriter]:
        if self._cache is None or self._cache_failed:
            return None
        return self._cwriter

    def _lock_stripes(self, ids: Sequence[int]) -> None:
        for i in ids:
            self._stripes[i].acquire()

    def _unlock_stripes(self, ids: Sequence[int]) -> None:
        for i in reversed(ids):
            self._stripes[i].release()

    def _fail_durable(self, exc: BaseException) -> None:
        with self._state_lock:
            if self._durable_failed is None:
                self._durable_failed = exc
                self._notes.append(f"durable leg FAILED: {exc}; policy {self.policy}")

    def _check_writable(self) -> None:
        if self._durable_failed is not None:
            if self.policy == "read-only":
                raise ReadOnlyError(f"{self.name} is read-only: the durable leg failed ({self._durable_failed})")
            raise DurableLegError(f"the durable leg of {self.name} failed: {self._durable_failed}", self.name)

    def _check_readable(self) -> None:
        if self._durable_failed is not None and self.policy == "fail":
            raise DurableLegError(f"the durable leg of {self.name} failed: {self._durable_failed}", self.name)

    def fail_cache(self, reason: str = "failed by operator") -> None:
        """Eject the cache leg (like ``mdadm --fail``); the array runs degraded."""
        self._check_open()
        if not isinstance(reason, str):
            raise ArgumentTypeError(f"reason must be a str, got {type(reason).__name__}")
        with self._state_lock:
            self._fail_cache_locked(reason)

    def _fail_cache_locked(self, reason: str, write_sb: bool = True) -> None:
        with self._state_lock:
            if self._cache is None or self._cache_failed:
                return
            self._cache_failed = True
            self._add("ejections")
            self._notes.append(f"cache {self._cache.dev.name} ejected: {reason}")
            if write_sb and self._durable_failed is None:
                try:
                    self._write_pair_sbs(bump=True)
                except DurableLegError:
                    pass  # recorded by _fail_durable; the caller's next durable I/O reports it

    def _note_corrected(self) -> None:
        with self._state_lock:
            now = self._clock()
            self._err_score = self._err_score * 0.5 ** (max(0.0, now - self._err_time) / self.error_half_life) + 1
            self._err_time = now
            self._add("corrected_errors")
            if self._err_score > self.max_corrected_errors:
                self._fail_cache_locked(
                    f"{self._err_score:.1f} corrected errors within the decay window "
                    f"(limit {self.max_corrected_errors})")

    def error_score(self) -> float:
        """The decayed count of corrected cache errors (ejection above max_corrected_errors)."""
        with self._state_lock:
            now = self._clock()
            return self._err_score * 0.5 ** (max(0.0, now - self._err_time) / self.error_half_life)

    # -- read path ------------------------------------------------------------------------
    def _read(self, offset: int, length: int) -> bytes:
        self._check_readable()
        self._add("reads")
        bs = self.block_size
        b0, n = offset // bs, length // bs
        if n == 1 and self._cache_valid(b0):
            # fast path: one block from the cache, verified
            entry = self._table[b0]
            if entry == 0:
                return _zeros(bs)
            cache = self._cache_dev()
            if cache is not None:
                try:
                    blk = cache.read(self._layout.data_offset + offset, bs)
                except StorageIOError:
                    blk = None
                    self._add("read_errors_cache")
                else:
                    with self._counter_lock:
                        self.counters["reads_cache"] += 1
                        self.counters["bytes_read_cache"] += bs
                    if (_xxh64(blk, seed=b0) or 1) == entry:
                        return blk
                return self._slow_block(b0, from_cache=True, had_error=blk is None)
        out = bytearray(length)
        i = 0
        while i < n:
            route = self._cache_valid(b0 + i)
            j = i + 1
            while j < n and self._cache_valid(b0 + j) == route:
                j += 1
            if route:
                self._read_run_cache(b0 + i, j - i, out, i * bs)
            else:
                self._read_run_durable(b0 + i, j - i, out, i * bs)
            i = j
        return bytes(out)

    def _read_run_cache(self, first: int, n: int, out: bytearray, pos: int) -> None:
        cache = self._cache_dev()
        if cache is None:
            return self._read_run_durable(first, n, out, pos)
        self._read_run_from(cache, "cache", first, n, out, pos)

    def _read_run_durable(self, first: int, n: int, out: bytearray, pos: int) -> None:
        self._read_run_from(self._durable.dev, "durable", first, n, out, pos)

    def _read_run_from(self, dev: BlockDevice, side: str, first: int, n: int,
                       out: bytearray, pos: int) -> None:
        """Read blocks ``first .. first+n-1`` from ``dev`` (the ``side``
        "cache" or "durable", which names its counters) in one device read
        into ``out[pos:]``; a block whose checksum does not match its table
        entry, or the whole run after a read error, goes through
        ``_slow_block``.  O(n) hashing of n blocks."""
        bs = self.block_size
        try:
            data = dev.read(self._layout.data_offset + first * bs, n * bs)
            with self._counter_lock:
                self.counters["reads_" + side] += 1
                self.counters["bytes_read_" + side] += n * bs
        except StorageIOError:
            self._add("read_errors_" + side)
            data = None
        from_cache = side == "cache"
        for i in range(n):
            b = first + i
            entry = self._table[b]
            if data is not None:
                blk = data[i * bs:(i + 1) * bs]
                if entry == 0 or (_xxh64(blk, seed=b) or 1) == entry:
                    out[pos + i * bs:pos + (i + 1) * bs] = bytes(bs) if entry == 0 else blk
                    continue
            out[pos + i * bs:pos + (i + 1) * bs] = self._slow_block(b, from_cache=from_cache, had_error=data is None)

    def _slow_block(self, b: int, from_cache: bool, had_error: bool) -> bytes:
        """Re-read ``b`` under its stripe lock (a racing write may explain a
        mismatch), then repair.  Returns verified bytes or raises."""
        ids = self._stripe_ids(b, 1)
        self._lock_stripes(ids)
        try:
            entry = self._table[b]
            if entry == 0:
                return bytes(self.block_size)
            if from_cache and self._cache_valid(b):
                blk, err = self._try_read(self._cache_dev(), b)
                if blk is not None and block_checksum(blk, b) == entry:
                    return blk
                if err is None and blk is not None:
                    self._add("checksum_failures_cache")
                elif not had_error:
                    self._add("read_errors_cache")
                return self._repair_cache_block(b)
            return self._durable_verified(b)
        finally:
            self._unlock_stripes(ids)

    def _try_read(self, dev: Optional[BlockDevice], b: int) -> Tuple[Optional[bytes], Optional[BaseException]]:
        if dev is None:
            return None, None
        try:
            return dev.read(self._layout.data_offset + b * self.block_size, self.block_size), None
        except StorageIOError as exc:
            return None, exc

    def _durable_verified(self, b: int) -> bytes:
        """Verified durable copy of ``b``, healing durable from a good cache
        copy when needed.  Requires: stripe lock of ``b`` held."""
        entry = self._table[b]
        blk, err = self._try_read(self._durable.dev, b)
        if blk is not None and block_checksum(blk, b) == entry:
            return blk
        if blk is not None:
            self._add("checksum_failures_durable")
        # the cache copy is checksum-verified, so even an ejected cache is a
        # safe last resort before reporting corruption
        cblk, _ = self._try_read(self._cache.dev if self._cache is not None else None, b)
        if cblk is not None and block_checksum(cblk, b) == entry:
            if self._durable_failed is None:
                try:
                    self._durable.dev.write(self._layout.data_offset + b * self.block_size, cblk)
                    self._durable.dev.flush()
                    self._add("durable_healed")
                    self._notes.append(f"block {b}: durable copy {'unreadable' if blk is None else 'corrupt'}, "
                                       "healed from the cache")
                except StorageIOError as exc:
                    self._fail_durable(exc)
            return cblk
        self._add("unrecoverable")
        if blk is None and err is not None and cblk is None:
            raise StorageIOError(f"block {b} unreadable on the durable leg and no good cache copy: {err}",
                                 self.name, b * self.block_size)
        raise CorruptionError(f"block {b} fails its checksum on every leg", self.name, b * self.block_size)

    def _repair_cache_block(self, b: int) -> bytes:
        """md-style read repair.  Requires: stripe lock of ``b`` held."""
        good = self._durable_verified(b)
        cache = self._cache_dev()
        if cache is None:
            return good
        off = self._layout.data_offset + b * self.block_size
        try:
            cache.write(off, good)
            again = cache.read(off, self.block_size)
            ok = again == good
        except StorageIOError:
            ok = False
        if ok:
            self._note_corrected()
        else:
            self._add("repair_failures")
            self._fail_cache_locked(f"read repair of block {b} failed")
        return good

    # -- write path -----------------------------------------------------------------------
    def _begin_regions(self, regions: range) -> None:
        need = self._bitmap.begin_write(regions)
        if not need:
            return
        with self._bitmap_io_lock:
            need = self._bitmap.pending_blocks(regions)
            if not need:
                return
            lay = self._layout
            written = []
            try:
                for blk in need:
                    data = self._bitmap.encode_block(blk)
                    self._durable.dev.write(lay.bitmap_offset + blk * self.block_size, data)
                    written.append((blk, data))
                self._durable.dev.flush()
            except StorageIOError as exc:
                self._bitmap.end_write(regions, 0, self._clock())
                self._fail_durable(exc)
                raise DurableLegError(f"durable leg failed writing the bitmap: {exc}", self.name) from exc
            self._add("bitmap_writes", len(written))
            for blk, data in written:
                self._bitmap.persisted(blk, data)

    def _run_legs(self, durable_ops: List[Callable[[], None]], cache_ops: List[Callable[[], None]]) -> None:
        """Run cache ops on the pool and durable ops inline (the durable leg is
        the slow one: no thread hand-off on the critical path), in parallel;
        durable errors → DurableLegError; cache errors eject the cache."""
        futs = [self._executor.submit(op) for op in cache_ops]
        first_exc: Optional[BaseException] = None
        cache_exc: Optional[BaseException] = None
        for op in durable_ops:
            try:
                op()
            except StorageIOError as exc:
                first_exc = exc
                break
        for f in futs:
            try:
                f.result()
            except StorageIOError as exc:
                cache_exc = cache_exc or exc
        if cache_exc is not None:
            self._fail_cache_locked(f"write failed: {cache_exc}")
        if first_exc is not None:
            self._fail_durable(first_exc)
            raise DurableLegError(f"write to the durable leg of {self.name} failed: {first_exc}",
                                  self.name) from first_exc

    def _write(self, offset: int, data: bytes) -> None:
        self._check_writable()
        self._add("writes")
        bs = self.block_size
        b0, n = offset // bs, len(data) // bs
        regions = self._bitmap.regions_for(b0, n)
        self._begin_regions(regions)
        ids = self._stripe_ids(b0, n)
        seq = 0
        try:
            self._lock_stripes(ids)
            try:
                self._check_writable()
                for i in range(n):
                    self._table[b0 + i] = block_checksum(data[i * bs:(i + 1) * bs], b0 + i)
                self._issue(b0, n, data)
                seq = self._next_seq()
            finally:
                self._unlock_stripes(ids)
        finally:
            self._bitmap.end_write(regions, seq or self._next_seq(), self._clock())

    def _issue(self, b0: int, n: int, data: Optional[bytes]) -> None:
        """Write data (or discard when ``data`` is None) on both legs at once
        and mark the checksum blocks dirty.  Checksum blocks are persisted
        lazily: the region's bitmap bit is durable, so after a crash the
        region is re-checksummed from durable; they must be on disk only
        before the bit is cleared (``_lazy_clear``) or at close.
        Requires: stripe locks held, table already updated."""
        bs = self.block_size
        doff = self._layout.data_offset + b0 * bs
        cbs = self._cbs_of(b0, n)

        def op(dev: BlockDevice) -> Callable[[], None]:
            if data is not None:
                return lambda: dev.write(doff, data)
            return lambda: dev.discard(doff, n * bs)

        cache = self._cache_dev()
        with self._dirty_cbs_lock:
            self._dirty_cbs.update(cbs)
        self._run_legs([op(self._durable.dev)], [op(cache)] if cache is not None else [])

    def _flush(self) -> None:
        self._check_writable_flush()
        self._add("flushes")
        with self._seq_lock:
            seq = self._write_seq
        self._flush_legs()
        self._lazy_clear(seq, self.bitmap_clear_delay)

    def _check_writable_flush(self) -> None:
        if self._durable_failed is not None:
            raise DurableLegError(f"the durable leg of {self.name} failed: {self._durable_failed}", self.name)

    def _flush_legs(self) -> None:
        cw = self._cache_writer()
        if cw is not None:
            cw.barrier()            # an error there has already ejected the cache
        err = self._dwriter.barrier()
        if err is not None:
            self._fail_durable(err)
            raise DurableLegError(f"checksum write to the durable leg of {self.name} failed: {err}",
                                  self.name) from err
        cache = self._cache_dev()
        self._run_legs([self._durable.dev.flush], [cache.flush] if cache is not None else [])

    def _region_in_sync(self, r: int) -> bool:
        lay = self._layout
        end = min((r + 1) * lay.region_blocks, lay.nblocks)
        return (self._cache is not None and not self._cache_failed and end <= self._cursor
                and r not in self._stale)

    def _persist_csums(self, cbs: Optional[Sequence[int]] = None) -> None:
        """Write the dirty checksum blocks (all, or those in ``cbs``) to both
        legs and wait for them (not flushed)."""
        with self._dirty_cbs_lock:
            if cbs is None:
                take = sorted(self._dirty_cbs)
                self._dirty_cbs.clear()
            else:
                take = sorted(self._dirty_cbs.intersection(cbs))
                self._dirty_cbs.difference_update(take)
        cw = self._cache_writer()
        if take:
            self._dwriter.kick(take)
            if cw is not None:
                cw.kick(take)
        if cw is not None:
            cw.barrier()
        err = self._dwriter.barrier()
        if err is not None:
            self._fail_durable(err)
            raise DurableLegError(f"checksum write to the durable leg of {self.name} failed: {err}",
                                  self.name) from err

    def _lazy_clear(self, flushed_seq: int, delay: float) -> None:
        regions = self._bitmap.clearable(flushed_seq, self._clock(), delay, self._region_in_sync)
        if not regions:
            return
        lay = self._layout
        cbs = sorted({c for r in regions
                      for c in self._cbs_of(r * lay.region_blocks,
                                            min(lay.region_blocks, lay.nblocks - r * lay.region_blocks))})
        with self._dirty_cbs_lock:
            need = bool(self._dirty_cbs.intersection(cbs))
        if need:
            # the checksums of a region must be durable before its bit may clear
            self._persist_csums(cbs)
            self._flush_legs()
        with self._bitmap_io_lock:
            blocks = self._bitmap.clear(regions)
            try:
                for blk in blocks:
                    self._durable.dev.write(self._layout.bitmap_offset + blk * self.block_size,
                                            self._bitmap.encode_block(blk))
                self._add("bitmap_writes", len(blocks))
            except StorageIOError as exc:
                self._fail_durable(exc)
                raise DurableLegError(f"durable leg failed writing the bitmap: {exc}", self.name) from exc

    def _discard(self, offset: int, length: int) -> None:
        self._check_writable()
        self._add("discards")
        bs = self.block_size
        b0, n = offset // bs, length // bs
        regions = self._bitmap.regions_for(b0, n)
        self._begin_regions(regions)
        ids = self._stripe_ids(b0, n)
        seq = 0
        try:
            self._lock_stripes(ids)
            try:
                for i in range(n):
                    self._table[b0 + i] = 0
                self._issue(b0, n, None)
                seq = self._next_seq()
            finally:
                self._unlock_stripes(ids)
        finally:
            self._bitmap.end_write(regions, seq or self._next_seq(), self._clock())

    # -- rebuild / resync -------------------------------------------------------------------
    def _needs_rebuild(self) -> bool:
        return (self._cache is not None and not self._cache_failed
                and (self._cursor < self._layout.nblocks or bool(self._stale)))

    def _copy_range(self, first: int, n: int) -> None:
        """Copy data blocks ``[first, first+n)`` (inside one checksum block)
        from durable to the cache, verifying each; writes the checksum block."""
        lay = self._layout
        bs = self.block_size
        ids = self._stripe_ids(first, n)
        self._lock_stripes(ids)
        try:
            cache = self._cache_dev()
            if cache is None:
                return
            try:
                data = bytearray(self._durable.dev.read(lay.data_offset + first * bs, n * bs))
            except StorageIOError:
                data = None
            if data is None:
                data = bytearray(n * bs)
                for i in range(n):
                    data[i * bs:(i + 1) * bs] = self._rebuild_block(first + i, None)
            else:
                for i in range(n):
                    b = first + i
                    entry = self._table[b]
                    blk = bytes(data[i * bs:(i + 1) * bs])
                    if entry != 0 and block_checksum(blk, b) != entry:
                        self._add("checksum_failures_durable")
                        data[i * bs:(i + 1) * bs] = self._rebuild_block(b, blk)
            try:
                cache.write(lay.data_offset + first * bs, bytes(data))
            except StorageIOError as exc:
                self._fail_cache_locked(f"rebuild write failed: {exc}")
                return
            cw = self._cache_writer()
            if cw is not None:
                cw.kick(self._cbs_of(first, n))
        finally:
            self._unlock_stripes(ids)

    def _rebuild_block(self, b: int, bad: Optional[bytes]) -> bytes:
        """A durable block that failed to read or verify during rebuild: heal
        from the cache's old copy if it verifies, else leave it (reads will
        raise CorruptionError) and copy what durable has."""
        entry = self._table[b]
        cblk, _ = self._try_read(self._cache_dev(), b)
        if entry != 0 and cblk is not None and block_checksum(cblk, b) == entry:
            try:
                self._durable.dev.write(self._layout.data_offset + b * self.block_size, cblk)
                self._add("durable_healed")
            except StorageIOError as exc:
                self._fail_durable(exc)
            return cblk
        if entry != 0:
            self._add("unrecoverable")
            self._notes.append(f"block {b}: no verified copy on either leg during rebuild")
        return bad if bad is not None else bytes(self.block_size)

    def rebuild_step(self, max_bytes: int) -> int:
        """Do at most ``max_bytes`` of resync / recovery work (at least one
        block), then persist the cursor.  Not rate-limited.  Returns the bytes
        processed (0 when nothing is left).  Thread-safe."""
        self._check_open()
        if not isinstance(max_bytes, int) or isinstance(max_bytes, bool):
            raise ArgumentTypeError(f"max_bytes must be an int, got {type(max_bytes).__name__}")
        if max_bytes <= 0:
            raise InvalidArgumentError(f"max_bytes must be > 0, got {max_bytes}")
        if self._durable_failed is not None:
            raise DurableLegError(f"cannot rebuild: the durable leg failed ({self._durable_failed})", self.name)
        lay = self._layout
        bs = self.block_size
        e = lay.entries_per_csum_block
        budget = max(1, max_bytes // bs)
        done = 0
        with self._rebuild_lock:
            if not self._needs_rebuild():
                return 0
            if self._rebuild_started is None:
                self._rebuild_started = self._clock()
                self._rebuild_done_bytes = 0
            cursor_moved = False
            while done < budget and self._needs_rebuild():
                below = sorted(r for r in self._stale if r * lay.region_blocks < self._cursor)
                if below:
                    r = below[0]
                    lo = r * lay.region_blocks
                    # the part of the region at or above the cursor is the recovery pass's
                    hi = min(lo + lay.region_blocks, lay.nblocks, self._cursor)
                    pos = self._resync_pos
                    if pos is None or not lo <= pos < hi:
                        pos = lo
                    while pos < hi and done < budget:
                        m = min(hi - pos, budget - done, e - pos % e)
                        self._copy_range(pos, m)
                        pos += m
                        done += m
                    self._bitmap.touch(r, self._next_seq(), self._clock())
                    if pos >= hi:
                        with self._state_lock:
                            self._stale.discard(r)
                        self._resync_pos = None
                        self._add("resynced_regions")
                    else:
                        self._resync_pos = pos
                    continue
                if self._cursor < lay.nblocks:
                    c = self._cursor
                    m = min(lay.nblocks - c, budget - done, e - c % e)
                    self._copy_range(c, m)
                    if self._cache_failed:
                        break
                    with self._state_lock:
                        self._cursor = c + m
                        # stale regions the recovery pass just copied whole need no resync
                        self._stale = {r for r in self._stale
                                       if min((r + 1) * lay.region_blocks, lay.nblocks) > self._cursor}
                    done += m
                    cursor_moved = True
                    self._add("rebuilt_bytes", m * bs)
                    continue
                # stale regions at or above the cursor are covered by recovery
                with self._state_lock:
                    self._stale = {r for r in self._stale if r * lay.region_blocks < self._cursor}
            self._rebuild_done_bytes += done * bs
            cw = self._cache_writer()
            if cw is not None and done:
                cw.barrier()
            cache = self._cache_dev()
            if cache is not None and done:
                try:
                    cache.flush()
                except StorageIOError as exc:
                    self._fail_cache_locked(f"flush failed during rebuild: {exc}")
            if cache is not None and (cursor_moved or not self._needs_rebuild()):
                self._persist_progress()
        return done * bs

    def _persist_progress(self) -> None:
        with self._state_lock:
            c = self._cache
            if c is None or self._cache_failed or c.sb is None:
                return
            complete = not self._needs_rebuild()
            if complete:
                self._notes.append("rebuild complete: cache in sync")
                self._rebuild_started = None
                self._write_pair_sbs(bump=True)
            else:
                try:
                    self._write_sb(c, replace(c.sb, cache_state=CACHE_RECOVERING, rebuild_cursor=self._cursor))
                except StorageIOError as exc:
                    self._fail_cache_locked(f"superblock write failed: {exc}")

    def rebuild(self, wait: bool = True) -> None:
        """Bring the cache in sync.  ``wait=True``: run (or wait for) the whole
        rebuild in this thread, rate-limited by ``rebuild_rate``;
        ``wait=False``: start the background rebuild thread and return."""
        self._check_open()
        if not isinstance(wait, bool):
            raise ArgumentTypeError(f"wait must be a bool, got {type(wait).__name__}")
        if wait:
            t = self._rebuild_thread
            if t is not None and t.is_alive():
                t.join()
            else:
                self._rebuild_loop()
            if self._durable_failed is not None:
                self._check_writable_flush()
            return
        with self._state_lock:
            t = self._rebuild_thread
            if t is not None and t.is_alive():
                return
            if not self._needs_rebuild():
                return
            self._rebuild_thread = threading.Thread(target=self._rebuild_loop, name="superdisk-rebuild",
                                                    daemon=True)
            self._rebuild_thread.start()

    def _rebuild_loop(self) -> None:
        t0 = time.monotonic()
        moved = 0
        while not self._stop.is_set() and not self._closed and self._needs_rebuild():
            try:
                got = self.rebuild_step(self.rebuild_chunk)
            except (DurableLegError, ClosedError):
                return
            if got == 0:
                break
            moved += got
            if self.rebuild_rate is not None:
                ahead = moved / self.rebuild_rate - (time.monotonic() - t0)
                if ahead > 0:
                    self._stop.wait(ahead)

    def add_cache(self, cache: Any) -> None:
        """Attach a cache leg to a running array (no cache or an ejected one):
        re-added with a bitmap resync when it is the member that left, else
        rebuilt in full.  Starts the background rebuild if enabled."""
        self._check_open()
        self._check_writable()
        ids = list(range(_NSTRIPES))
        with self._rebuild_lock:
            self._lock_stripes(ids)
            try:
                with self._state_lock:
                    if self._cache is not None and not self._cache_failed:
                        raise InvalidArgumentError(f"{self.name} already has a working cache leg")
                    old = self._cache
                cleg = _open_leg(cache, "cache", True, self._layout.leg_size, self.block_size)
                if old is not None and old.owned and old.dev is not cleg.dev:
                    try:
                        old.dev.close()
                    except StorageIOError:
                        pass
                self._attach(cleg, at_open=False)
            finally:
                self._unlock_stripes(ids)
        if self.background_rebuild and self._needs_rebuild():
            self.rebuild(wait=False)

    # -- scrub -------------------------------------------------------------------------------
    def scrub(self, repair: bool = False) -> Dict[str, int]:
        """Compare both legs block by block against the checksums (and the
        on-disk checksum blocks against memory).  ``repair=True`` rewrites a
        bad copy from the verified one.  Returns counts.  O(size)."""
        self._check_open()
        if not isinstance(repair, bool):
            raise ArgumentTypeError(f"repair must be a bool, got {type(repair).__name__}")
        if repair:
            self._check_writable()
        lay = self._layout
        bs = self.block_size
        e = lay.entries_per_csum_block
        res = {k: 0 for k in ("blocks_checked", "durable_bad", "cache_bad", "mismatches", "repaired",
                              "unrecoverable", "csum_blocks_bad")}
        if self._durable_failed is None:
            self._persist_csums()
        for c in range(lay.csum_blocks):
            lo, hi = c * e, min((c + 1) * e, lay.nblocks)
            ids = self._stripe_ids(lo, 1)
            self._lock_stripes(ids)
            try:
                want = self._cblock_bytes(c)
                legs = [self._durable.dev]
                cache = self._cache_dev()
                if cache is not None and hi <= self._cursor:
                    legs.append(cache)
                writers = {id(self._durable.dev): self._dwriter}
                if cache is not None and self._cwriter is not None:
                    writers[id(cache)] = self._cwriter
                for dev in legs:
                    if not writers[id(dev)].idle():
                        continue          # a write of this block is in flight: nothing to compare yet
                    try:
                        got = dev.read(lay.csum_offset + c * bs, bs)
                    except StorageIOError:
                        got = None
                    if got != want:
                        res["csum_blocks_bad"] += 1
                        if repair:
                            writers[id(dev)].kick([c])
                            res["repaired"] += 1
                d = self._durable.dev.read(lay.data_offset + lo * bs, (hi - lo) * bs)
                cdata = None
                if cache is not None:
                    try:
                        cdata = cache.read(lay.data_offset + lo * bs, (hi - lo) * bs)
                    except StorageIOError:
                        cdata = None
                for b in range(lo, hi):
                    entry = self._table[b]
                    if entry == 0:
                        continue
                    res["blocks_checked"] += 1
                    i = (b - lo) * bs
                    dblk = d[i:i + bs]
                    d_ok = block_checksum(dblk, b) == entry
                    c_in = cache is not None and self._cache_valid(b)
                    cblk = cdata[i:i + bs] if (c_in and cdata is not None) else None
                    c_ok = cblk is not None and block_checksum(cblk, b) == entry
                    if not d_ok:
                        res["durable_bad"] += 1
                    if c_in and not c_ok:
                        res["cache_bad"] += 1
                    if c_in and cblk != dblk:
                        res["mismatches"] += 1
                    if not d_ok and not c_ok:
                        res["unrecoverable"] += 1
                        continue
                    if repair and not d_ok:
                        assert cblk is not None
                        self._durable.dev.write(lay.data_offset + b * bs, cblk)
                        res["repaired"] += 1
                    if repair and c_in and not c_ok and cache is not None:
                        try:
                            cache.write(lay.data_offset + b * bs, dblk)
                            res["repaired"] += 1
                        except StorageIOError as exc:
                            self._fail_cache_locked(f"scrub repair failed: {exc}")
            finally:
                self._unlock_stripes(ids)
        if repair:
            self._flush_legs()
        return res

    # -- status ---------------------------------------------------------------------------------
    def status(self) -> Dict[str, Any]:
        """A /proc/mdstat-like snapshot (see docs/superdisk.md).  Thread-safe."""
        lay = self._layout
        bs = self.block_size
        with self._state_lock:
            cache = self._cache
            if self._durable_failed is not None:
                state = "failed" if self.policy == "fail" else "read-only"
            elif cache is None or self._cache_failed:
                state = "degraded"
            elif self._needs_rebuild():
                state = "rebuilding"
            else:
                state = "clean"
            action = "idle"
            if state == "rebuilding":
                action = "recovery" if self._cursor < lay.nblocks else "resync"
            remaining = _remaining_blocks(self._cursor, self._stale, lay, self._resync_pos) * bs \
                if state == "rebuilding" else 0
            rate = None
            if self._rebuild_started is not None and state == "rebuilding":
                elapsed = max(1e-9, self._clock() - self._rebuild_started)
                rate = self._rebuild_done_bytes / elapsed if self._rebuild_done_bytes else None
            eta = remaining / rate if rate else None
            if cache is None:
                cstate = "missing"
            elif self._cache_failed:
                cstate = "failed"
            elif self._needs_rebuild():
                cstate = "recovering"
            else:
                cstate = "in_sync"
            dsb = self._durable.sb
            assert dsb is not None
            with self._counter_lock:
                counters = dict(self.counters)
            return {
                "name": self.name,
                "state": state,
                "action": action,
                "array_uuid": str(uuid.UUID(bytes=dsb.array_uuid)),
                "generation": dsb.generation,
                "size": self.size,
                "block_size": bs,
                "policy": self.policy,
                "legs": {
                    "durable": {"device": self._durable.dev.name, "role": "durable", "write_mostly": True,
                                "state": "failed" if self._durable_failed is not None else "in_sync"},
                    "cache": {"device": cache.dev.name if cache is not None else None, "role": "cache",
                              "state": cstate},
                },
                "rebuild": {
                    "cursor": self._cursor * bs if cache is not None else 0,
                    "total": self.size,
                    "progress": (self._cursor / lay.nblocks if lay.nblocks else 1.0) if cache is not None else 0.0,
                    "stale_regions": len(self._stale),
                    "remaining_bytes": remaining,
                    "rate_bytes_per_s": rate,
                    "eta_seconds": eta,
                    "rate_limit_bytes_per_s": self.rebuild_rate,
                    "background": self._rebuild_thread is not None and self._rebuild_thread.is_alive(),
                },
                "bitmap": {"region_size": lay.region_blocks * bs, "regions": lay.nregions,
                           "dirty_regions": self._bitmap.count_dirty()},
                "error_score": self.error_score(),
                "max_corrected_errors": self.max_corrected_errors,
                "counters": counters,
                "notes": list(self._notes[-20:]),
            }

    @classmethod
    def inspect(cls, durable: Any, cache: Any = None) -> Dict[str, Any]:
        """Examine a SuperDisk's legs without assembling or writing anything
        (``mdadm --examine``): both superblock slots of each leg, the durable
        leg's write-intent bitmap, and what the next assembly would do with
        the cache (trust it, re-add with a bitmap resync, or rebuild it).

        ``durable``/``cache``: paths (opened ``O_RDONLY`` -- the kernel
        refuses writes -- and without taking the device lock, so a live
        array held by a running process can be examined; each leg reports
        ``in_use`` when another process holds its lock) or BlockDevice
        objects (only read).  The answer is a snapshot: a live array may
        move on while it is read (each superblock slot is checksummed, so a
        torn read falls back to the other slot).  Raises UnsupportedFormatError
        when the durable leg holds no SuperDisk.  O(bitmap blocks).
        """
        if durable is None:
            raise InvalidArgumentError("durable leg is required")
        if cache is not None and cache is durable:
            raise InvalidArgumentError("durable and cache must be different devices")
        opened: List[BlockDevice] = []
        try:
            ddev, d_in_use = _open_for_inspect(durable, "durable", opened)
            dsb, why = _read_sb_any_block_size(ddev)
            if dsb is None:
                raise UnsupportedFormatError(
                    f"durable leg holds no SuperDisk superblock ({why or 'blank'})", ddev.name)
            if dsb.role != ROLE_DURABLE:
                raise UnsupportedFormatError(
                    "the durable leg holds a SuperDisk *cache* superblock; pass the durable disk as durable",
                    ddev.name)
            lay = dsb.layout()
            bs = dsb.block_size
            notes: List[str] = []
            bitmap = WriteIntentBitmap(lay.nregions, lay.region_blocks, bs)
            if lay.bitmap_blocks:
                data = ddev.read(lay.bitmap_offset, lay.bitmap_blocks * bs)
                bad = [i for i in range(lay.bitmap_blocks)
                       if not bitmap.load_block(i, data[i * bs:(i + 1) * bs])]
                if bad:
                    notes.append(f"bitmap blocks {bad} fail their checksum: their regions count as dirty")
            dirty = bitmap.dirty_regions()
            legs: Dict[str, Any] = {"durable": _leg_info(ddev, dsb, d_in_use), "cache": None}
            clean = bool(dsb.flags & FLAG_CLEAN)
            if not clean:
                notes.append(f"durable leg not cleanly closed (or in use): {len(dirty)} dirty regions "
                             "would be re-checksummed at assembly")
            mode: Optional[str] = None
            cursor = 0
            stale: set = set()
            if cache is None:
                state = "degraded"
                cstate = "missing"
                notes.append("no cache leg given: the array would run degraded")
            else:
                cdev, c_in_use = _open_for_inspect(cache, "cache", opened)
                try:
                    if cdev.size < lay.leg_size:
                        raise InvalidArgumentError(
                            f"cache leg {cdev.name} has {cdev.size} bytes; the array needs {lay.leg_size}")
                    try:
                        csb, cwhy = _read_sb(cdev, bs)
                    except UnsupportedFormatError as exc:
                        csb, cwhy = None, str(exc)
                    legs["cache"] = _leg_info(cdev, csb, c_in_use)
                    mode, cursor, reason = _classify_cache(dsb, csb, cwhy, lay.nblocks, cdev.name)
                    notes.append(f"{cdev.name}: {reason}" + ("" if mode != "rebuild" else "; full rebuild"))
                    if mode == "rebuild":
                        cursor = 0
                    else:
                        stale = _stale_below(dirty, cursor, lay)
                    rebuilding = cursor < lay.nblocks or bool(stale)
                    state = "rebuilding" if rebuilding else "clean"
                    cstate = "recovering" if rebuilding else "in_sync"
                except StorageIOError as exc:
                    notes.append(f"cache leg unreadable ({exc}): the array would run degraded")
                    state, cstate, legs["cache"] = "degraded", "failed", {"device": cdev.name}
                except InvalidArgumentError as exc:
                    notes.append(f"cache leg refused: {exc}")
                    state, cstate = "degraded", "refused"
                    legs["cache"] = legs["cache"] or {"device": cdev.name}
            remaining = _remaining_blocks(cursor, stale, lay) * bs if state == "rebuilding" else 0
            action = "idle"
            if state == "rebuilding":
                action = "recovery" if cursor < lay.nblocks else "resync"
            legs["durable"]["state"] = "in_sync"
            if legs["cache"] is not None:
                legs["cache"]["state"] = cstate
            return {
                "name": f"superdisk({ddev.name})",
                "state": state,
                "action": action,
                "assembly": mode or "none",
                "array_uuid": str(uuid.UUID(bytes=dsb.array_uuid)),
                "generation": dsb.generation,
                "format_version": dsb.version,
                "clean_shutdown": clean,
                "size": dsb.size,
                "block_size": bs,
                "legs": legs,
                "rebuild": {
                    "cursor": cursor * bs,
                    "total": dsb.size,
                    "progress": (cursor / lay.nblocks if lay.nblocks else 1.0),
                    "stale_regions": len(stale),
                    "remaining_bytes": remaining,
                },
                "bitmap": {"region_size": lay.region_blocks * bs, "regions": lay.nregions,
                           "dirty_regions": len(dirty)},
                "notes": notes,
            }
        finally:
            for dev in opened:
                dev.close()

    def format_status(self) -> str:
        """``status()`` rendered the way /proc/mdstat reads."""
        return format_status(self.status())

    # -- shutdown ------------------------------------------------------------------------------
    def _stop_rebuild(self) -> None:
        self._stop.set()
        t = self._rebuild_thread
        if t is not None and t is not threading.current_thread():
            t.join()

    def _close(self) -> None:
        self._stop_rebuild()
        err: Optional[BaseException] = None
        if self._durable_failed is None:
            try:
                with self._seq_lock:
                    seq = self._write_seq
                self._persist_csums()
                self._flush_legs()
                self._lazy_clear(seq, 0.0)
                self._durable.dev.flush()
                self._write_pair_sbs(bump=True, clean=True)
            except StorageIOError as exc:
                err = exc
        self._release()
        if err is not None:
            raise err

    def abandon(self) -> None:
        """Drop the array without writing anything (as if the process died):
        the next open sees an unclean shutdown.  For tests and emergencies."""
        if self._closed:
            return
        self._closed = True
        self._stop_rebuild()
        self._release()

    def _release(self) -> None:
        self._stop.set()
        ex = getattr(self, "_executor", None)
        if ex is not None:
            ex.shutdown(wait=True)
        for leg in (getattr(self, "_cache", None), getattr(self, "_durable", None)):
            if leg is not None and leg.owned and not leg.dev.closed:
                try:
                    leg.dev.close()
                except StorageIOError:
                    pass

    def _check(self) -> None:
        """Invariants of the in-memory state (tests call this)."""
        lay = self._layout
        assert 0 <= self._cursor <= lay.nblocks
        assert len(self._table) == lay.nblocks
        assert all(0 <= r < lay.nregions for r in self._stale)
        assert all(r * lay.region_blocks < self._cursor for r in self._stale), "stale region above the cursor"
        assert _remaining_blocks(self._cursor, self._stale, lay, self._resync_pos) <= lay.nblocks
        for r in self._stale:
            assert self._bitmap.is_dirty(r), f"stale region {r} must keep its bit set"
        self._bitmap._check()


def format_status(st: Dict[str, Any]) -> str:
    """Render a ``SuperDisk.status()`` dict like /proc/mdstat."""
    if not isinstance(st, dict):
        raise ArgumentTypeError(f"status must be a dict, got {type(st).__name__}")
    legs = st["legs"]
    d, c = legs["durable"], legs["cache"]
    up = ("U" if d["state"] == "in_sync" else "_") + ("U" if c["state"] == "in_sync" else "_")
    active = 1 + (1 if c["state"] in ("in_sync", "recovering") else 0)
    members = [f"{d['device']}[0](W)" + ("(F)" if d["state"] == "failed" else "")]
    if c["device"] is not None:
        members.append(f"{c['device']}[1]" + ("(F)" if c["state"] == "failed" else "")
                       + ("(R)" if c["state"] == "recovering" else ""))
    lines = [f"{st['name']} : active raid1 {' '.join(members)}  state={st['state']}",
             f"      {st['size'] // 1024} blocks super sdsk-{int(FORMAT_VERSION)} [2/{active}] [{up}]"
             f"  gen={st['generation']} uuid={st['array_uuid']}"]
    rb = st["rebuild"]
    if st["state"] == "rebuilding":
        width = 20
        done = int(rb["progress"] * width)
        bar = "=" * max(0, done - 1) + ">" + "." * (width - max(1, done))
        eta = rb["eta_seconds"]
        speed = rb["rate_bytes_per_s"]
        lines.append(f"      [{bar}]  {st['action']} = {rb['progress'] * 100:.1f}% "
                     f"({rb['cursor'] // 1024}/{rb['total'] // 1024})"
                     f" finish={'?' if eta is None else f'{eta / 60:.1f}min'}"
                     f" speed={'?' if speed is None else f'{speed / 1024:.0f}K/sec'}"
                     f" stale_regions={rb['stale_regions']}")
    bm = st["bitmap"]
    lines.append(f"      bitmap: {bm['dirty_regions']}/{bm['regions']} regions dirty, "
                 f"{bm['region_size'] // 1024}KB chunk")
    k = st["counters"]
    lines.append(f"      reads: cache={k['reads_cache']} durable={k['reads_durable']}  "
                 f"corrected={k['corrected_errors']} csum_fail(cache/durable)="
                 f"{k['checksum_failures_cache']}/{k['checksum_failures_durable']} "
                 f"healed_durable={k['durable_healed']} ejections={k['ejections']} "
                 f"unrecoverable={k['unrecoverable']} error_score={st['error_score']:.2f}")
    return "\n".join(lines) + "\n"


def format_inspect(info: Dict[str, Any]) -> str:
    """Render a ``SuperDisk.inspect()`` dict like ``mdadm --examine``."""
    if not isinstance(info, dict):
        raise ArgumentTypeError(f"info must be a dict, got {type(info).__name__}")
    rb = info["rebuild"]
    bm = info["bitmap"]
    lines = [f"{info['name']} (examined read-only; nothing written)",
             f"          Array UUID : {info['array_uuid']}",
             f"      Format version : sdsk-{info['format_version']}",
             f"          Generation : {info['generation']}",
             f"          Array size : {info['size']} bytes ({info['block_size']}-byte blocks)",
             f"      Clean shutdown : {'yes' if info['clean_shutdown'] else 'no'}",
             f"   Next assembly    : state={info['state']} action={info['action']} cache={info['assembly']}",
             f"     Rebuild cursor : {rb['cursor']}/{rb['total']} ({rb['progress'] * 100:.1f}%)"
             f"  stale_regions={rb['stale_regions']} remaining={rb['remaining_bytes']}",
             f"              Bitmap : {bm['dirty_regions']}/{bm['regions']} regions dirty, "
             f"{bm['region_size'] // 1024}KB chunk"]
    for role in ("durable", "cache"):
        leg = info["legs"][role]
        if leg is None:
            lines.append(f"  {role}: (none)")
            continue
        in_use = {True: "in use by another process", False: "not in use", None: "lock not checked"}
        lines.append(f"  {role}: {leg['device']}  state={leg.get('state', '?')}  "
                     f"{in_use[leg.get('in_use')]}")
        sb = leg.get("superblock")
        if sb is None:
            lines.append("      no superblock")
            continue
        lines.append(f"      role={sb['role']} gen={sb['generation']} seq={sb['update_seq']} "
                     f"cache_state={sb['cache_state']} clean={'yes' if sb['clean'] else 'no'} "
                     f"cursor={sb['rebuild_cursor']} member={sb['member_uuid']}")
    for note in info["notes"]:
        lines.append(f"  note: {note}")
    return "\n".join(lines) + "\n"
