"""The property-based test harness of superdisk-lsm (public API).

For engineers testing their own use of ``lsm``:

* ``DBStateMachine`` -- a hypothesis ``RuleBasedStateMachine`` that runs a DB
  against a dict model (subclass it to use your options or target; needs
  hypothesis, imported on first use);
* ``Model``, ``model_iterate``, ``ModelCursor``, ``ModelRawCursor`` -- the
  reference semantics of the DB, its iterators and raw iterators;
* ``verify_prefix_of_history`` -- the crash-consistency check (recovered state
  = a prefix of the write history with no holes, including every acknowledged
  sync write);
* ``CrashFS`` (crash-simulating file layer) and ``FaultyDevice`` (a device
  that loses unflushed writes, fails or corrupts blocks), re-exported from
  ``blockdev``;
* ``crash_db(db, crashfs, mode, seed)`` / ``crash_device_db(db, faulty, mode,
  seed)`` -- stop a DB's background work and simulate a power loss under it.
"""

from __future__ import annotations

from typing import Any

from blockdev.crashfs import CrashFS
from blockdev.errors import Error
from blockdev.faulty import FaultyDevice
from lsm.testing.model import (
    Model,
    ModelCursor,
    ModelRawCursor,
    apply_op,
    model_iterate,
    verify_prefix_of_history,
)

__all__ = ["DBStateMachine", "Model", "ModelCursor", "ModelRawCursor", "apply_op",
           "model_iterate", "verify_prefix_of_history", "CrashFS", "FaultyDevice",
           "crash_db", "crash_device_db", "halt_db"]


def halt_db(db: Any) -> None:
    """Stop ``db``'s background threads (waiting for a running flush or
    compaction to finish) without closing anything: the state a crash finds."""
    with db._mutex:
        db._shutting_down = True
        db._cv.notify_all()
    for t in db._threads:
        t.join()


def crash_db(db: Any, crashfs: CrashFS, mode: str = "all", seed: int | None = None) -> Any:
    """Simulate a power loss under ``db`` (opened on ``crashfs``): halt its
    background work, ``crashfs.crash(mode, seed)``, then discard the DB object
    (its handles are dead).  Returns the CrashReport."""
    halt_db(db)
    report = crashfs.crash(mode, seed=seed)
    try:
        db.close()
    except Error:
        pass   # the dead process's handles: nothing to release
    return report


def crash_device_db(db: Any, device: FaultyDevice, mode: str = "all",
                    seed: int | None = None) -> int:
    """Simulate a crash under ``db`` opened on ``device`` (a FaultyDevice,
    through BlockFS): halt background work, drop the mount without writing,
    then for a power loss (``mode`` "all" or "random") ``device.crash(mode,
    seed)``; for ``mode="process"`` (the process was killed, the device
    keeps every write it accepted) nothing more.  The DB object is
    discarded and the device powered back on.  Returns the number of device
    writes dropped (0 for "process")."""
    if mode not in ("all", "random", "process"):
        raise ValueError(f"mode must be 'all', 'random' or 'process', got {mode!r}")
    halt_db(db)
    db._fs._abandon(power_loss=mode != "process")
    dropped = device.crash(mode, seed=seed) if mode != "process" else 0
    try:
        db.close()
    except Error:
        pass   # the dead process's handles
    if mode != "process":
        device.restart()
    return dropped


def __getattr__(name: str) -> Any:
    if name == "DBStateMachine":
        from lsm.testing.machine import DBStateMachine
        return DBStateMachine
    raise AttributeError(f"module 'lsm.testing' has no attribute {name!r}")
