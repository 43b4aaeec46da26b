"""The native core is a cffi out-of-line API-mode module and every C call
releases the GIL (SPEC §4, §2 "C calls release the GIL").

Two checks:

* static: the C source cffi generates from ``native/build.py`` wraps the call
  of every function declared to cffi in ``Py_BEGIN_ALLOW_THREADS`` /
  ``Py_END_ALLOW_THREADS`` (needs cffi, not a compiler);
* behavioural: with the interpreter's switch interval raised so far that no
  thread is ever preempted, a thread that is inside a C call is watched by a
  second thread.  The watcher can run at that moment only if the C call
  released the GIL; holding it, the watcher would see nothing.  No time is
  measured: the test counts observations.
"""

from __future__ import annotations

import os
import re
import runpy
import sys
import threading
import time
from typing import Any, Callable

from lsm import _native
from lsm.dbformat import pack_internal_key
from native_support import C, needs_c

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "native", "build.py")


def _build_module() -> dict:
    return runpy.run_path(BUILD)


def _declared_functions(cdef: str) -> list[str]:
    text = re.sub(r"/\*.*?\*/", " ", cdef, flags=re.S)
    return sorted(set(re.findall(r"\b(lsm_\w+)\s*\(", text)))


def test_build_script_is_cffi_api_mode() -> None:
    mod = _build_module()
    ffibuilder = mod["ffibuilder"]
    import cffi
    assert isinstance(ffibuilder, cffi.FFI)
    # set_source was called: out-of-line API mode (ABI mode has no C source)
    module_name, source, _ = ffibuilder._assigned_source[:3]
    assert module_name == "lsm._lsm_c"
    assert "lsm_core.h" in source
    kwds = ffibuilder._assigned_source[3]
    sources = [os.path.basename(s) for s in kwds["sources"]]
    assert {"xxh64.c", "block.c", "bloom.c", "merge.c", "log.c"} <= set(sources)
    assert "pymod.c" not in sources and not kwds.get("libraries")
    assert not os.path.exists(os.path.join(ROOT, "native", "pymod.c"))


def test_every_declared_function_is_used_and_called_without_the_gil(tmp_path) -> None:  # type: ignore[no-untyped-def]
    mod = _build_module()
    declared = _declared_functions(mod["cdef_text"]())
    assert set(_native.C_FUNCTIONS) <= set(declared)
    path = mod["emit_c"](str(tmp_path))
    with open(path, encoding="utf-8") as f:
        generated = f.read()
    for name in declared:
        m = re.search(r"\n_cffi_f_%s\(.*?\n}\n" % name, generated, flags=re.S)
        assert m, f"no cffi wrapper for {name}"
        body = m.group(0)
        opening = body.index("\n{")   # the call is in the body, after the signature
        call = re.search(r"\b%s\(" % name, body[opening:])
        assert call, f"{name} is not called by its wrapper"
        at = opening + call.start()
        begin = body.find("Py_BEGIN_ALLOW_THREADS")
        end = body.find("Py_END_ALLOW_THREADS")
        assert 0 <= begin < at < end, f"{name} is called with the GIL held"


@needs_c
def test_loaded_module_is_the_cffi_build() -> None:
    from lsm import _lsm_c
    assert hasattr(_lsm_c, "ffi") and hasattr(_lsm_c, "lib")
    for name in _native.C_FUNCTIONS:
        assert callable(getattr(_lsm_c.lib, name)), name
    assert C.module is _lsm_c


def _observed_inside(call: Callable[[], Any], calls: int) -> int:
    """Run ``call()`` ``calls`` times on a worker thread, flagging each call,
    while a watcher thread counts how often it runs during a flagged call.
    No thread is preempted (huge switch interval); both yield only through
    GIL-releasing calls (``time.sleep(0)`` between iterations, and the C call
    itself if it releases the GIL)."""
    state = {"inside": False, "stop": False, "seen": 0}

    def worker() -> None:
        for _ in range(calls):
            state["inside"] = True
            call()
            state["inside"] = False
            time.sleep(0)

    def watcher() -> None:
        while not state["stop"]:
            if state["inside"]:
                state["seen"] += 1
            time.sleep(0)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    try:
        w = threading.Thread(target=watcher)
        t = threading.Thread(target=worker)
        w.start()
        t.start()
        t.join()
        state["stop"] = True
        w.join()
    finally:
        sys.setswitchinterval(old)
    return state["seen"]


@needs_c
def test_checksum_releases_the_gil() -> None:
    data = os.urandom(1 << 23)   # 8 MiB: milliseconds of C per call
    expected = C.checksum(data)
    results = []
    assert _observed_inside(lambda: results.append(C.checksum(data)), 12) > 0
    assert results == [expected] * 12


@needs_c
def test_merge_releases_the_gil() -> None:
    # < 1 MiB of keys, so b"".join does not release the GIL by itself, and no
    # range tombstone, so the values are never joined: only the C merge can.
    n = 40000
    runs = [([pack_internal_key(b"%09d" % (i * 2 + r), 5, 1) for i in range(n // 2)],
             [b"v"] * (n // 2)) for r in range(2)]
    assert sum(len(k) for run in runs for k in run[0]) < (1 << 20)
    assert len(C.merge(runs, 10)[0]) == n
    assert _observed_inside(lambda: C.merge(runs, 10), 12) > 0


def test_the_watch_sees_nothing_while_the_gil_is_held() -> None:
    """Control: a long C call that keeps the GIL (``bytes.count`` over 8
    MiB) is never observed, so a positive count above really means a
    released GIL."""
    data = os.urandom(1 << 23)
    assert _observed_inside(lambda: data.count(b"\xfe\xff\xfe"), 12) == 0
