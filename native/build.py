"""Build description of the native core: the CPython extension ``lsm._lsm_c``.

``extension()`` returns the setuptools ``Extension`` that setup.py builds:
``native/pymod.c`` (the binding: argument checks, Python objects) compiled
with the leaf sources (``xxh64.c``, ``block.c``, ``bloom.c``, ``merge.c``,
``log.c``: plain buffers, no Python API).  No system library is linked;
only a C99 compiler and the Python headers are needed.  The public C API of
the leaf functions is ``native/lsm_core.h``.

Run directly (``python native/build.py``) to build in place for
development; ``pip install -e .`` does the same through setuptools.
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SOURCES = ["pymod.c", "xxh64.c", "block.c", "bloom.c", "merge.c", "log.c"]
HEADERS = ["lsm_core.h", "core_internal.h"]


def extension():  # type: ignore[no-untyped-def]
    """The ``setuptools.Extension`` of ``lsm._lsm_c`` (paths relative to the
    project root, where setup.py runs)."""
    from setuptools import Extension

    rel = [os.path.relpath(os.path.join(HERE, s), ROOT) for s in SOURCES]
    return Extension(
        "lsm._lsm_c",
        sources=rel,
        depends=[os.path.relpath(os.path.join(HERE, h), ROOT) for h in HEADERS],
        include_dirs=[os.path.relpath(HERE, ROOT)],
        extra_compile_args=[] if sys.platform == "win32" else ["-O2", "-std=c99", "-Wall"],
    )


if __name__ == "__main__":
    from setuptools import setup

    os.chdir(ROOT)
    setup(name="lsm-native-inplace", ext_modules=[extension()],
          script_args=["build_ext", "--inplace"])
