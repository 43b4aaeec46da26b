"""Build script: the C core is compiled by cffi (out-of-line API mode).

``pip install`` builds the extension ``lsm._lsm_c`` from ``native/`` through
``cffi_modules`` (``native/build.py:ffibuilder``).  When no C compiler is
available the build of that one extension is skipped with a single warning
and the package runs on its pure-Python twins (see lsm/_native.py);
``LSM_REQUIRE_NATIVE=1`` makes a failed build fatal.
"""

from __future__ import annotations

import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """build_ext that turns a failed C build into one warning, not a failed
    install.  Set LSM_REQUIRE_NATIVE=1 to make a failed build fatal."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any compiler failure
            self._give_up(exc)

    def build_extension(self, ext) -> None:  # type: ignore[no-untyped-def]
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            self._give_up(exc)

    def _give_up(self, exc: BaseException) -> None:
        if os.environ.get("LSM_REQUIRE_NATIVE") == "1":
            raise exc
        sys.stderr.write(
            "WARNING: superdisk-lsm could not build its C extension "
            f"({exc}); it will run on the pure-Python twins.\n")


setup(
    cffi_modules=["native/build.py:ffibuilder"],
    cmdclass={"build_ext": OptionalBuildExt},
)
