"""File names of a database: every file the engine creates, and their parsing.

A database is a flat namespace of files (one directory with ``PosixFS``, one
device with ``BlockFS``).  Numbered files share one counter (the
``next_file_number`` persisted in the MANIFEST), so a number names at most one
file of any kind.  Names (do not change: on-disk; a renamed file is a lost
file)::

    %06d.log        write-ahead log            kind LOG_FILE
    %06d.sst        SSTable                    kind TABLE_FILE
    MANIFEST-%06d   version-edit log           kind MANIFEST_FILE
    %06d.dbtmp      temporary (CURRENT swap)   kind TEMP_FILE
    CURRENT         name of the live MANIFEST  kind CURRENT_FILE
    LOCK            one-process lock           kind LOCK_FILE
    LOG, LOG.old    human-readable info log    kind INFO_LOG_FILE
    IDENTITY        unique id of the database  kind IDENTITY_FILE

``%06d`` pads to at least six digits; larger numbers simply use more digits.
Only the canonical spelling parses (``0012.log`` is not ours), so that a
foreign file in the directory is never taken for, or deleted as, one of ours.
"""

from __future__ import annotations

from blockdev.errors import ArgumentTypeError, InvalidArgumentError

__all__ = [
    "LOG_FILE", "TABLE_FILE", "MANIFEST_FILE", "TEMP_FILE", "CURRENT_FILE",
    "LOCK_FILE", "INFO_LOG_FILE", "IDENTITY_FILE",
    "CURRENT", "LOCK", "INFO_LOG", "INFO_LOG_OLD", "IDENTITY",
    "log_file_name", "table_file_name", "manifest_file_name", "temp_file_name",
    "parse_file_name", "MAX_FILE_NUMBER",
]

LOG_FILE = "log"
TABLE_FILE = "table"
MANIFEST_FILE = "manifest"
TEMP_FILE = "temp"
CURRENT_FILE = "current"
LOCK_FILE = "lock"
INFO_LOG_FILE = "info_log"
IDENTITY_FILE = "identity"

CURRENT = "CURRENT"          # do not change: on-disk
LOCK = "LOCK"                # do not change: on-disk
INFO_LOG = "LOG"             # do not change: on-disk
INFO_LOG_OLD = "LOG.old"     # do not change: on-disk
IDENTITY = "IDENTITY"        # do not change: on-disk

_MANIFEST_PREFIX = "MANIFEST-"   # do not change: on-disk
_SUFFIXES = {".log": LOG_FILE, ".sst": TABLE_FILE, ".dbtmp": TEMP_FILE}  # do not change: on-disk
_FIXED = {CURRENT: CURRENT_FILE, LOCK: LOCK_FILE, INFO_LOG: INFO_LOG_FILE,
          INFO_LOG_OLD: INFO_LOG_FILE, IDENTITY: IDENTITY_FILE}

MAX_FILE_NUMBER = (1 << 64) - 1   # file numbers are varint64 in the MANIFEST


def _check_number(number: object) -> int:
    if type(number) is not int:
        raise ArgumentTypeError(f"number must be an int, not {type(number).__name__}")
    if not 0 < number <= MAX_FILE_NUMBER:
        raise InvalidArgumentError(f"number must be in 1..2**64-1, got {number}")
    return number


def log_file_name(number: int) -> str:
    """``"%06d.log"``.  Requires: 1 <= number < 2**64."""
    return f"{_check_number(number):06d}.log"


def table_file_name(number: int) -> str:
    """``"%06d.sst"``.  Requires: 1 <= number < 2**64."""
    return f"{_check_number(number):06d}.sst"


def manifest_file_name(number: int) -> str:
    """``"MANIFEST-%06d"``.  Requires: 1 <= number < 2**64."""
    return f"{_MANIFEST_PREFIX}{_check_number(number):06d}"


def temp_file_name(number: int) -> str:
    """``"%06d.dbtmp"``.  Requires: 1 <= number < 2**64."""
    return f"{_check_number(number):06d}.dbtmp"


def _parse_number(digits: str) -> int | None:
    if not digits.isdigit() or not digits.isascii():
        return None
    number = int(digits)
    if number == 0 or number > MAX_FILE_NUMBER or f"{number:06d}" != digits:
        return None
    return number


def parse_file_name(name: str) -> tuple[str, int] | None:
    """Classify a file name: ``(kind, number)``, number 0 for unnumbered kinds.

    Returns None for a name that is not one of ours (in canonical spelling).
    O(len(name)).
    """
    if not isinstance(name, str):
        raise ArgumentTypeError(f"name must be a str, not {type(name).__name__}")
    fixed = _FIXED.get(name)
    if fixed is not None:
        return fixed, 0
    if name.startswith(_MANIFEST_PREFIX):
        number = _parse_number(name[len(_MANIFEST_PREFIX):])
        return None if number is None else (MANIFEST_FILE, number)
    dot = name.rfind(".")
    if dot <= 0:
        return None
    kind = _SUFFIXES.get(name[dot:])
    if kind is None:
        return None
    number = _parse_number(name[:dot])
    return None if number is None else (kind, number)
