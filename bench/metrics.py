"""Engine-internal figures: amplification, cache hit rate, stalls, I/O.

Design
------
The engine's ``db.stats()`` is a (possibly nested) dict whose key names may
still change, so it is read defensively: the dict is flattened to
``a.b.c`` keys, names are normalised (lower case, ``-``/``.``/space →
``_``), and each figure is looked up by a list of candidate names (exact
match, or a flattened key ending in ``_<candidate>``).  A figure that cannot
be found or computed is ``None`` and prints as ``n/a``.  ``LSM_STAT_KEYS``
lists the candidates, in priority order; the report names the key that was
actually used.

Counters are cumulative since open, so a workload's figure is the
difference of two snapshots (``StatSnapshot``) taken around it:

* write amplification = Δ(bytes the engine wrote to storage) / Δ(user bytes
  written), or the engine's own ratio when it reports one;
* read amplification = Δ(data blocks read from storage) / gets;
* block cache hit rate = Δhits / (Δhits + Δmisses);
* stall time = Δ(stall microseconds);
* space amplification = bytes on storage / live user bytes (after the run);
* process I/O (``/proc/self/io`` ``wchar``/``rchar``), for every engine on a
  directory: bytes written by write()-family calls during the workload, so
  a measured write amplification exists for the peers too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

__all__ = ["flatten", "find", "LSM_STAT_KEYS", "StatSnapshot", "proc_io", "derive_lsm_figures"]

# figure -> candidate (normalised) stat names, most specific first
LSM_STAT_KEYS: dict[str, tuple[str, ...]] = {
    "write_amp": ("write_amplification", "write_amp", "w_amp"),
    "user_bytes_written": ("user_bytes_written", "bytes_written_user", "user_bytes",
                           "wal_user_bytes", "ingest_bytes"),
    "storage_bytes_written": ("storage_bytes_written", "bytes_written_storage", "total_bytes_written",
                              "io_bytes_written", "disk_bytes_written"),
    "flush_bytes_written": ("flush_bytes_written", "flush_bytes"),
    "compaction_bytes_written": ("compaction_bytes_written", "compact_bytes_written",
                                 "compaction_write_bytes"),
    "wal_bytes_written": ("wal_bytes_written", "wal_bytes", "log_bytes_written"),
    "gets": ("gets", "get_count", "num_gets", "point_lookups"),
    "blocks_read": ("data_blocks_read", "blocks_read", "block_reads", "block_read_count"),
    "cache_hits": ("block_cache_hits", "block_cache_hit", "cache_hits", "cache_hit"),
    "cache_misses": ("block_cache_misses", "block_cache_miss", "cache_misses", "cache_miss"),
    "stall_micros": ("stall_micros", "stall_time_micros", "write_stall_micros", "stall_us"),
    "stall_seconds": ("stall_seconds", "stall_time_seconds", "stall_time", "write_stall_seconds"),
    "live_bytes": ("total_sst_size", "sst_bytes", "total_file_size", "live_sst_bytes",
                   "table_bytes", "live_data_size", "total_bytes"),
}


def _norm(name: str) -> str:
    out = str(name).lower()
    for ch in "-. /":
        out = out.replace(ch, "_")
    return out


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a_b": 1}`` with normalised names.  O(size)."""
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            key = _norm(k) if not prefix else f"{prefix}_{_norm(k)}"
            if isinstance(v, dict):
                out.update(flatten(v, key))
            else:
                out[key] = v
    return out


def find(flat: dict[str, Any], candidates: tuple[str, ...]) -> tuple[Optional[str], Optional[float]]:
    """The first numeric value whose key equals or ends with a candidate:
    ``(key used, value)`` or ``(None, None)``."""
    for cand in candidates:
        if cand in flat and _is_num(flat[cand]):
            return cand, float(flat[cand])
    for cand in candidates:
        for k in sorted(flat):
            if k.endswith("_" + cand) and _is_num(flat[k]):
                return k, float(flat[k])
    return None, None


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def proc_io() -> Optional[dict[str, int]]:
    """This process's I/O counters from ``/proc/self/io`` (None elsewhere)."""
    try:
        with open("/proc/self/io") as f:
            out = {}
            for line in f:
                k, _, v = line.partition(":")
                out[k.strip()] = int(v)
            return out
    except (OSError, ValueError):
        return None


@dataclass
class StatSnapshot:
    """Engine stats, process I/O and device-leg counters at one instant."""

    flat: dict = field(default_factory=dict)
    io: Optional[dict] = None
    legs: dict = field(default_factory=dict)

    def value(self, figure: str) -> tuple[Optional[str], Optional[float]]:
        return find(self.flat, LSM_STAT_KEYS[figure])


def _delta(before: StatSnapshot, after: StatSnapshot, figure: str) -> tuple[Optional[str], Optional[float]]:
    k1, v1 = before.value(figure)
    k2, v2 = after.value(figure)
    if v2 is None:
        return None, None
    return k2, v2 - (v1 or 0.0)


def derive_lsm_figures(before: StatSnapshot, after: StatSnapshot, *, gets: int,
                       user_bytes: int, live_user_bytes: int) -> tuple[dict, dict]:
    """The per-workload lsm figures and the stat keys they came from.

    ``gets``: point reads the workload issued; ``user_bytes``: key+value
    bytes it wrote; ``live_user_bytes``: user bytes live in the DB after it.
    """
    fig: dict[str, Optional[float]] = {}
    used: dict[str, str] = {}

    # write amplification: this workload's storage writes (WAL + flush +
    # compaction) over its user bytes; the engine's own cumulative ratio only
    # when the parts are not reported.
    ku, du = _delta(before, after, "user_bytes_written")
    ks, ds = _delta(before, after, "storage_bytes_written")
    if ds is None:
        parts = [_delta(before, after, f) for f in
                 ("wal_bytes_written", "flush_bytes_written", "compaction_bytes_written")]
        if any(v is not None for _k, v in parts):
            ds = sum(v or 0.0 for _k, v in parts)
            ks = " + ".join(k for k, v in parts if k)
    denom = du if du else (user_bytes or None)
    k, ratio = after.value("write_amp")
    if ds is not None and denom:
        fig["write_amp"] = ds / denom
        used["write_amp"] = f"({ks}) / {ku or 'workload key+value bytes'}"
    elif ratio is not None and user_bytes:
        fig["write_amp"], used["write_amp"] = ratio, f"{k} (cumulative)"
    else:
        fig["write_amp"] = None

    # read amplification: blocks read from storage per get.  Cache misses
    # stand for block reads only when there is a block cache to miss.
    no_cache = after.flat.get("block_cache_capacity") == 0
    kb, db = _delta(before, after, "blocks_read")
    if kb is None and not no_cache:
        kb, db = _delta(before, after, "cache_misses")
    if gets and db is not None:
        fig["read_amp"], used["read_amp"] = db / gets, kb
    else:
        fig["read_amp"] = None

    # block cache hit rate
    kh, dh = _delta(before, after, "cache_hits")
    km, dm = _delta(before, after, "cache_misses")
    if dh is not None and dm is not None and dh + dm > 0 and not no_cache:
        fig["cache_hit_rate"] = dh / (dh + dm)
        used["cache_hit_rate"] = f"{kh}, {km}"
    else:
        fig["cache_hit_rate"] = None

    # stall time (seconds)
    ks2, dstall = _delta(before, after, "stall_micros")
    if dstall is not None:
        fig["stall_s"], used["stall_s"] = dstall / 1e6, ks2
    else:
        ks3, dsec = _delta(before, after, "stall_seconds")
        fig["stall_s"] = dsec
        if ks3:
            used["stall_s"] = ks3

    # space amplification from the engine's own size figure
    kl, live = after.value("live_bytes")
    if live and live_user_bytes:  # 0: everything is still in memtables, no table yet
        fig["space_amp"], used["space_amp"] = live / live_user_bytes, kl
    else:
        fig["space_amp"] = None
    return fig, used


def io_delta(before: StatSnapshot, after: StatSnapshot) -> dict[str, Optional[int]]:
    """Process-level bytes written/read by system calls during the workload."""
    if before.io is None or after.io is None:
        return {"wchar": None, "rchar": None}
    return {"wchar": after.io.get("wchar", 0) - before.io.get("wchar", 0),
            "rchar": after.io.get("rchar", 0) - before.io.get("rchar", 0)}


def leg_delta(before: StatSnapshot, after: StatSnapshot) -> dict[str, dict[str, int]]:
    """Per-leg device counter differences (reads, writes, bytes...)."""
    out: dict[str, dict[str, int]] = {}
    for leg, c2 in after.legs.items():
        c1 = before.legs.get(leg, {})
        out[leg] = {k: int(c2.get(k, 0)) - int(c1.get(k, 0))
                    for k in ("reads", "writes", "flushes", "bytes_read", "bytes_written")}
    return out


def snapshot(engine: Any, target: Any = None) -> StatSnapshot:
    """Take a ``StatSnapshot`` of ``engine`` (and of ``target``'s legs)."""
    flat = flatten(engine.stats()) if engine.name == "lsm" else {}
    legs = target.leg_counters() if target is not None else {}
    return StatSnapshot(flat=flat, io=proc_io(), legs=legs)


def env_info() -> dict:
    """Machine facts for the JSON report."""
    import platform
    import sys
    info = {"platform": platform.platform(), "machine": platform.machine(),
            "processor": platform.processor(), "cpu_count": os.cpu_count(),
            "python": sys.version.split()[0], "python_implementation": platform.python_implementation()}
    try:
        import lsm
        info["lsm_implementation"] = getattr(lsm, "implementation", None)
    except Exception as exc:  # lsm broken in this checkout: say so
        info["lsm_implementation"] = f"import failed: {type(exc).__name__}: {exc}"
    try:
        info["loadavg_at_start"] = list(os.getloadavg())  # other load on the machine
    except (OSError, AttributeError):
        info["loadavg_at_start"] = None
    try:
        with open("/proc/meminfo") as f:
            first = f.readline().split()
            info["mem_total_kib"] = int(first[1])
    except (OSError, ValueError, IndexError):
        info["mem_total_kib"] = None
    return info
