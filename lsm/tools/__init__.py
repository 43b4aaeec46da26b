"""Command-line tools: ``lsm`` (operator tool, lsm.tools.cli) and
``lsm-stress`` (crash stress test, lsm.tools.stress)."""

from __future__ import annotations
