"""``lsm-bench``: the db_bench-style benchmark CLI (bench.cli) and its workloads,
engines, device models and reports."""

from __future__ import annotations
