"""cffi build script of the native core (out-of-line API mode).

``ffibuilder`` compiles the leaf C sources of ``native/`` (``xxh64.c``,
``block.c``, ``bloom.c``, ``merge.c``, ``log.c``: plain buffers in and out,
no Python API) into the extension module ``lsm._lsm_c``; setup.py names it
in ``cffi_modules``.  The declarations given to ``cdef`` are read from
``native/lsm_core.h`` (between the ``CDEF BEGIN`` / ``CDEF END`` markers),
so the header is the single source of the C API; the error-code macros are
not given to cffi (``lsm/_twins.py`` mirrors them as ``ERR_*``).  No system
library is linked; only a C99 compiler and the Python headers are needed.

In API mode cffi releases the GIL around every call of a C function: its
generated wrapper calls the function between ``Py_BEGIN_ALLOW_THREADS`` and
``Py_END_ALLOW_THREADS`` (``tests/test_native_gil.py`` checks the generated
source and the behaviour).  The Python side of the binding (argument
checks, buffers, building Python objects) is ``lsm/_native.py``.

Run directly (``python native/build.py``) to rebuild ``lsm/_lsm_c*.so`` in
place for development: the module is compiled in a temporary directory and
then renamed over the old file, so processes that have the old one loaded
keep their (unlinked) copy instead of crashing on a file rewritten under
them.  ``python native/build.py --emit-c DIR`` only writes the generated C
source (``DIR/_lsm_c.c``).
"""

from __future__ import annotations

import os
import sys

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SOURCES = ["xxh64.c", "block.c", "bloom.c", "merge.c", "log.c", "table.c", "read.c", "lz4.c", "memtab.c"]
HEADERS = ["lsm_core.h", "core_internal.h"]
MODULE = "lsm._lsm_c"


def cdef_text() -> str:
    """The prototypes between the CDEF markers of ``native/lsm_core.h``."""
    with open(os.path.join(HERE, "lsm_core.h"), encoding="utf-8") as f:
        text = f.read()
    begin = text.index("/* CDEF BEGIN")
    begin = text.index("*/", begin) + 2
    end = text.index("/* CDEF END */")
    return text[begin:end]


def make_ffibuilder(absolute: bool = False) -> FFI:
    """A fresh ``FFI`` describing ``lsm._lsm_c``.  Source paths are relative
    to the current directory (setup.py's, where setuptools wants them), or
    absolute (``ffi.compile`` works in a temporary directory)."""
    def _rel(path: str) -> str:
        return path if absolute else os.path.relpath(path, os.getcwd())

    ffi = FFI()
    ffi.cdef(cdef_text())
    ffi.set_source(
        MODULE,
        '#include "lsm_core.h"',
        sources=[_rel(os.path.join(HERE, s)) for s in SOURCES],
        depends=[_rel(os.path.join(HERE, h)) for h in HEADERS],
        include_dirs=[_rel(HERE)],
        extra_compile_args=[] if sys.platform == "win32" else ["-O2", "-std=c99", "-Wall"],
    )
    return ffi


ffibuilder = make_ffibuilder()


def emit_c(directory: str) -> str:
    """Write the C source cffi generates for ``lsm._lsm_c`` into
    ``directory``; return its path."""
    path = os.path.join(directory, "_lsm_c.c")
    make_ffibuilder(absolute=True).emit_c_code(path)
    return path


def build_in_place() -> str:
    """Compile ``lsm._lsm_c`` and atomically replace the one in ``lsm/``;
    return its path."""
    import glob
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        built = make_ffibuilder(absolute=True).compile(tmpdir=tmp)
        dest = os.path.join(ROOT, "lsm", os.path.basename(built))
        for stale in glob.glob(os.path.join(ROOT, "lsm", "_lsm_c*")):
            if os.path.basename(stale) != os.path.basename(built):
                os.unlink(stale)  # another ABI tag: never load a stale module
        staged = dest + ".new"
        shutil.copyfile(built, staged)
        os.chmod(staged, 0o755)
        os.replace(staged, dest)
    return dest


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--emit-c":
        print(emit_c(sys.argv[2]))
    else:
        print(build_in_place())
