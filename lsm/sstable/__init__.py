"""SSTables: immutable sorted tables of internal keys (docs/format.md "SSTable").

``TableBuilder`` writes one; ``TableReader`` serves point lookups and block
scans from one; ``TableProperties`` describes one.
"""

from __future__ import annotations

from lsm.sstable.builder import TableBuilder
from lsm.sstable.format import FORMAT_VERSION, TABLE_MAGIC, TableProperties
from lsm.sstable.reader import TableReader

__all__ = ["TableBuilder", "TableReader", "TableProperties", "FORMAT_VERSION", "TABLE_MAGIC"]
