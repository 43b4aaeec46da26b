"""cffi build script of the native core (out-of-line API mode).

``ffibuilder`` compiles ``native/*.c`` into the extension module
``lsm._lsm_c``; setup.py names it in ``cffi_modules``.  The declarations
given to ``cdef`` are read from ``native/lsm_core.h`` (between the
``CDEF BEGIN`` / ``CDEF END`` markers), so the header is the single source
of the C API.  No system library is linked; only a C99 compiler is needed.

In API mode cffi releases the GIL around every call of a C function (the
generated wrappers call them between ``Py_BEGIN_ALLOW_THREADS`` and
``Py_END_ALLOW_THREADS``), so the hot loops run in parallel with other
Python threads.

Run directly (``python native/build.py``) to build in place for
development; ``pip install -e .`` does the same through setuptools.
"""

from __future__ import annotations

import os
import sys

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = ["xxh64.c", "block.c", "bloom.c", "merge.c"]


def _cdef() -> str:
    with open(os.path.join(HERE, "lsm_core.h"), encoding="utf-8") as f:
        text = f.read()
    begin = text.index("/* CDEF BEGIN")
    begin = text.index("*/", begin) + 2
    end = text.index("/* CDEF END */")
    return text[begin:end]


def _sources() -> list[str]:
    # setuptools wants paths relative to setup.py's directory (the cwd).
    return [os.path.relpath(os.path.join(HERE, s)) for s in SOURCES]


if __name__ == "__main__":
    os.chdir(os.path.dirname(HERE))  # paths below are relative to the project root

ffibuilder = FFI()
ffibuilder.cdef(_cdef())
ffibuilder.set_source(
    "lsm._lsm_c",
    '#include "lsm_core.h"',
    sources=_sources(),
    include_dirs=[HERE],
    extra_compile_args=[] if sys.platform == "win32" else ["-O2", "-std=c99", "-Wall"],
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=".", verbose=True)
