"""Build description of the native core: the CPython extension ``lsm._lsm_c``.

``extension()`` returns the setuptools ``Extension`` that setup.py builds:
``native/pymod.c`` (the binding: argument checks, Python objects) compiled
with the leaf sources (``xxh64.c``, ``block.c``, ``bloom.c``, ``merge.c``,
``log.c``: plain buffers, no Python API).  No system library is linked;
only a C99 compiler and the Python headers are needed.  The public C API of
the leaf functions is ``native/lsm_core.h``.

Run directly (``python native/build.py``) to build in place for
development: the module is compiled in a temporary directory and then
renamed over ``lsm/_lsm_c*.so``, so processes that have the old one loaded
keep their (unlinked) copy instead of crashing on a file rewritten under
them.  ``pip install -e .`` builds through setuptools (it rewrites the file
in place: stop running tests first).
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


def build_in_place() -> str:
    """Compile ``lsm._lsm_c`` and atomically replace the one in ``lsm/``;
    return its path."""
    import glob
    import shutil
    import tempfile

    from setuptools import setup

    os.chdir(ROOT)
    with tempfile.TemporaryDirectory() as tmp:
        setup(name="lsm-native", ext_modules=[extension()],
              script_args=["build_ext", "--build-lib", tmp, "--build-temp",
                           os.path.join(tmp, "obj")])
        (built,) = glob.glob(os.path.join(tmp, "lsm", "_lsm_c*"))
        dest = os.path.join(ROOT, "lsm", os.path.basename(built))
        staged = dest + ".new"
        shutil.copyfile(built, staged)
        os.chmod(staged, 0o755)
        os.replace(staged, dest)
    return dest


if __name__ == "__main__":
    print(build_in_place())
