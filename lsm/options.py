"""Options: every tunable of the engine (SPEC §2), validated once, then frozen.

Names and defaults follow RocksDB / LevelDB so that their users recognise
them.  An ``Options`` value is immutable; build a changed copy with
``dataclasses.replace`` (which validates again).  ``Options.from_kwargs``
is the entry point for ``lsm.DB(**options)``: an unknown keyword raises
``InvalidArgumentError`` naming it, a wrong type ``ArgumentTypeError`` naming
the option, an out-of-range value ``InvalidArgumentError`` naming it.

Write stalls (E-DB applies them; the thresholds live here): writes slow down
when L0 holds ``level0_slowdown_writes_trigger`` files or all
``max_write_buffer_number`` memtables are full but one, and stop at
``level0_stop_writes_trigger`` L0 files or when every memtable is full.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from blockdev.errors import ArgumentTypeError, InvalidArgumentError

__all__ = ["Options", "COMPRESSIONS", "COMPACTION_STYLES"]

COMPRESSIONS = ("lz4", None)
COMPACTION_STYLES = ("leveled", "tiered")

# (minimum, maximum) for every int option; maximums keep values sane and
# representable in the on-disk formats (u32 block lengths, varint sizes).
_INT_RANGES: dict[str, tuple[int, int]] = {
    "write_buffer_size": (4 << 10, 1 << 40),
    "max_write_buffer_number": (2, 64),
    "max_open_files": (10, 1 << 24),
    "block_size": (256, 1 << 28),
    "block_restart_interval": (1, 1 << 16),
    "bloom_bits_per_key": (0, 1000),
    "block_cache_size": (0, 1 << 48),
    "level0_file_num_compaction_trigger": (1, 1 << 16),
    "level0_slowdown_writes_trigger": (1, 1 << 16),
    "level0_stop_writes_trigger": (1, 1 << 16),
    "max_bytes_for_level_base": (4 << 10, 1 << 50),
    "level_size_multiplier": (2, 1000),
    "target_file_size_base": (1 << 10, 1 << 40),
    "num_levels": (2, 64),
    "min_merge_width": (2, 1 << 10),
    "max_merge_width": (2, 1 << 10),
    "max_background_jobs": (1, 64),
    "max_subcompactions": (1, 64),
    "max_key_size": (1, 1 << 30),
    "max_value_size": (0, 1 << 31),
}
_BOOLS = ("cache_index_and_filter_blocks", "paranoid_checks", "create_if_missing",
          "error_if_exists")


@dataclass(frozen=True)
class Options:
    """All engine options.  Validated in ``__post_init__`` (O(number of options))."""

    write_buffer_size: int = 4 << 20
    # 3, not RocksDB's 2: a flush here (native LZ4 and block building plus
    # some Python, on the writer's 2 cores) can lag a burst of batched writes
    # by a memtable; one more buffer absorbs it (docs/operations.md)
    max_write_buffer_number: int = 3
    max_open_files: int = 1000
    block_size: int = 4096
    block_restart_interval: int = 16
    bloom_bits_per_key: int = 10          # 0 = no bloom filter
    compression: str | None = "lz4"
    block_cache_size: int = 8 << 20       # 0 = no block cache
    cache_index_and_filter_blocks: bool = False
    level0_file_num_compaction_trigger: int = 4
    level0_slowdown_writes_trigger: int = 20   # RocksDB's defaults (LevelDB: 8 and 12)
    level0_stop_writes_trigger: int = 36
    max_bytes_for_level_base: int = 10 << 20
    level_size_multiplier: int = 10
    target_file_size_base: int = 2 << 20
    num_levels: int = 7
    compaction_style: str = "leveled"     # or "tiered"
    min_merge_width: int = 4              # tiered: fewest similar runs merged at once
    max_merge_width: int = 32             # tiered: most runs merged at once
    paranoid_checks: bool = False
    max_background_jobs: int = 2
    max_subcompactions: int = 2           # key-range slices of one large compaction, in parallel
    max_key_size: int = 65536
    max_value_size: int = 64 << 20
    create_if_missing: bool = False
    error_if_exists: bool = False

    def __post_init__(self) -> None:
        for name, (lo, hi) in _INT_RANGES.items():
            value = getattr(self, name)
            if type(value) is not int:  # bool is an int subclass: refused too
                raise ArgumentTypeError(
                    f"option {name} must be an int, not {type(value).__name__}")
            if not lo <= value <= hi:
                raise InvalidArgumentError(
                    f"option {name} must be in {lo}..{hi}, got {value}")
        for name in _BOOLS:
            value = getattr(self, name)
            if type(value) is not bool:
                raise ArgumentTypeError(
                    f"option {name} must be a bool, not {type(value).__name__}")
        if self.compression is not None and not isinstance(self.compression, str):
            raise ArgumentTypeError(
                f"option compression must be a str or None, not {type(self.compression).__name__}")
        if self.compression not in COMPRESSIONS:
            raise InvalidArgumentError(
                f"option compression must be 'lz4' or None, got {self.compression!r}")
        if not isinstance(self.compaction_style, str):
            raise ArgumentTypeError(
                "option compaction_style must be a str, not "
                f"{type(self.compaction_style).__name__}")
        if self.compaction_style not in COMPACTION_STYLES:
            raise InvalidArgumentError(
                "option compaction_style must be 'leveled' or 'tiered', got "
                f"{self.compaction_style!r}")
        if not (self.level0_file_num_compaction_trigger <= self.level0_slowdown_writes_trigger
                <= self.level0_stop_writes_trigger):
            raise InvalidArgumentError(
                "options must satisfy level0_file_num_compaction_trigger <= "
                "level0_slowdown_writes_trigger <= level0_stop_writes_trigger, got "
                f"{self.level0_file_num_compaction_trigger}, "
                f"{self.level0_slowdown_writes_trigger}, {self.level0_stop_writes_trigger}")
        if self.max_merge_width < self.min_merge_width:
            raise InvalidArgumentError(
                f"option max_merge_width ({self.max_merge_width}) must be >= "
                f"min_merge_width ({self.min_merge_width})")
        if self.compaction_style == "tiered" and self.num_levels < 3:
            raise InvalidArgumentError(
                "option num_levels must be >= 3 with compaction_style='tiered'")

    @classmethod
    def from_kwargs(cls, **kw: Any) -> "Options":
        """Options from keyword arguments; unknown names raise InvalidArgumentError."""
        known = {f.name for f in dataclasses.fields(cls)}
        for name in kw:
            if name not in known:
                raise InvalidArgumentError(f"unknown option {name!r}")
        return cls(**kw)

    def max_bytes_for_level(self, level: int) -> int:
        """Leveled target size of ``level`` (>= 1): base x multiplier**(level-1)."""
        if level < 1:
            raise InvalidArgumentError(f"level must be >= 1, got {level}")
        return self.max_bytes_for_level_base * self.level_size_multiplier ** (level - 1)

    def _check(self) -> None:
        """Re-assert every invariant (a frozen value cannot break them)."""
        self.__post_init__()
