"""Where a benchmark DB lives: a directory, or an emulated block device.

Design
------
``make_target(kind, base_dir, label, size)`` builds one fresh target:

* ``posix``: a new directory ``base_dir/label`` (every engine can use it);
* ``local`` / ``network``: a sparse ``FileDevice`` image under ``base_dir``
  wrapped in ``EmulatedDevice`` with the ``LOCAL_SSD`` / ``NETWORK_DISK``
  latency model;
* ``superdisk``: ``SuperDisk.open(durable=<network-emulated image>,
  cache=<local-emulated image>, create=True, size=size)``, returned once
  its initial cache sync is done (a clean array); with
  ``faulty_cache=True`` the cache leg is wrapped in a ``FaultyDevice`` so a
  scenario can lose it (``Target.lose_cache()``).

Only ``lsm`` opens a device target (it puts BlockFS inside).  Each emulated
leg keeps I/O counters (``EmulatedDevice.counters``); ``Target.leg_counters()``
snapshots them so the runner can report device reads and writes per leg and
per workload (reads per leg on a superdisk).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

from blockdev.errors import ArgumentTypeError, InvalidArgumentError

__all__ = ["DEVICE_KINDS", "Target", "make_target", "device_support"]

DEVICE_KINDS = ("posix", "local", "network", "superdisk")
MiB = 1 << 20


def _blockdev_attr(name: str) -> Any:
    """``blockdev.<name>``, also looked up in its submodules while the
    package root does not export everything yet; None when absent."""
    import importlib
    import blockdev
    obj = getattr(blockdev, name, None)
    if obj is not None:
        return obj
    for sub in ("file", "emulated", "faulty", "superdisk"):
        try:
            mod = importlib.import_module(f"blockdev.{sub}")
        except ImportError:
            continue
        obj = getattr(mod, name, None)
        if obj is not None:
            return obj
    return None


def device_support(kind: str) -> tuple[bool, str]:
    """Whether this checkout can build a ``kind`` target, and why not."""
    if kind not in DEVICE_KINDS:
        raise InvalidArgumentError(f"unknown device {kind!r}; choose from {', '.join(DEVICE_KINDS)}")
    if kind == "posix":
        return True, ""
    needed = ["FileDevice", "EmulatedDevice", "LOCAL_SSD", "NETWORK_DISK"]
    if kind == "superdisk":
        needed.append("SuperDisk")
    missing = [n for n in needed if _blockdev_attr(n) is None]
    if missing:
        return False, f"blockdev lacks {', '.join(missing)} in this checkout"
    return True, ""


@dataclass
class Target:
    """One benchmark target: ``target`` is what the engine opens."""

    kind: str
    target: Any
    path: str
    legs: dict = field(default_factory=dict)       # leg name -> EmulatedDevice
    superdisk: Any = None
    faulty_cache: Any = None
    devices: list = field(default_factory=list)     # everything to close, outermost first

    def leg_counters(self) -> dict:
        """``{leg: counters}`` (a copy) for every emulated leg."""
        out = {}
        for name, dev in self.legs.items():
            stats = dev.stats() if hasattr(dev, "stats") else {}
            out[name] = dict(stats.get("counters", {}))
        return out

    def superdisk_status(self) -> Optional[dict]:
        if self.superdisk is None:
            return None
        return self.superdisk.status()

    def lose_cache(self) -> None:
        """Whole loss of the superdisk's cache leg (needs ``faulty_cache``)."""
        if self.faulty_cache is None:
            raise InvalidArgumentError("this target was built without faulty_cache=True")
        self.faulty_cache.lose()

    def close(self) -> None:
        """Close every device of the target (idempotent; errors surface)."""
        for dev in self.devices:
            if not getattr(dev, "closed", False):
                dev.close()
        self.devices = []


def make_target(kind: str, base_dir: str, label: str, size: int = 256 * MiB,
                faulty_cache: bool = False, seed: int = 0) -> Target:
    """A fresh target of ``kind`` under ``base_dir`` (see module docstring).

    Requires: ``base_dir`` exists; ``size`` a positive multiple of 1 MiB for devices.
    """
    if not isinstance(kind, str):
        raise ArgumentTypeError("kind must be a str")
    if not isinstance(size, int) or isinstance(size, bool):
        raise ArgumentTypeError("size must be an int")
    ok, why = device_support(kind)
    if not ok:
        raise InvalidArgumentError(f"cannot build a {kind} device: {why}")
    path = os.path.join(base_dir, label)
    if kind == "posix":
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        return Target(kind, path, path)
    if size <= 0 or size % MiB:
        raise InvalidArgumentError(f"size must be a positive multiple of 1 MiB, got {size}")
    FileDevice = _blockdev_attr("FileDevice")
    EmulatedDevice = _blockdev_attr("EmulatedDevice")
    LOCAL_SSD = _blockdev_attr("LOCAL_SSD")
    NETWORK_DISK = _blockdev_attr("NETWORK_DISK")
    os.makedirs(path, exist_ok=True)

    def image(name: str, model: Any, s: int) -> Any:
        inner = FileDevice(os.path.join(path, name + ".img"), size=s, create=True)
        return EmulatedDevice(inner, model, seed=seed, name=name)

    if kind in ("local", "network"):
        dev = image(kind, LOCAL_SSD if kind == "local" else NETWORK_DISK, size)
        return Target(kind, dev, path, legs={kind: dev}, devices=[dev])
    SuperDisk = _blockdev_attr("SuperDisk")
    # The legs are a little larger than the array: the superdisk keeps its
    # superblock, bitmap and checksums on them.
    leg_size = size + max(16 * MiB, size // 8)
    durable = image("durable", NETWORK_DISK, leg_size)
    cache = image("cache", LOCAL_SSD, leg_size)
    cache_dev = cache
    faulty = None
    if faulty_cache:
        FaultyDevice = _blockdev_attr("FaultyDevice")
        if FaultyDevice is None:
            raise InvalidArgumentError("blockdev lacks FaultyDevice in this checkout")
        faulty = FaultyDevice(cache)
        cache_dev = faulty
    sd = SuperDisk.open(durable=durable, cache=cache_dev, create=True, size=size)
    # A new array starts by syncing its cache leg in the background; wait for
    # it, so that the benchmark measures a clean array, not the initial resync.
    sd.rebuild(wait=True)
    return Target(kind, sd, path, legs={"durable": durable, "cache": cache}, superdisk=sd,
                  faulty_cache=faulty, devices=[sd, durable, cache])
