"""Build script: the C core is compiled by cffi (out-of-line API mode).

``pip install`` builds the extension ``lsm._lsm_c`` from ``native/`` through
``cffi_modules`` (``native/build.py:ffibuilder``).  When no C compiler is
available the build of that one extension is skipped with a single warning
and the package runs on its pure-Python twins (see lsm/_native.py);
``LSM_REQUIRE_NATIVE=1`` makes a failed build fatal.
"""

from __future__ import annotations

import glob
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
            return
        self._remove_stale_builds()

    def _remove_stale_builds(self) -> None:
        """After an in-place build, delete other builds of the same module
        (another ABI tag, e.g. an older hand-written extension), which
        Python could otherwise load instead of the new one."""
        if not self.inplace:
            return
        for ext in self.extensions:
            built = os.path.abspath(self.get_ext_fullpath(ext.name))
            if not os.path.exists(built):
                continue
            stem = ext.name.rsplit(".", 1)[-1]
            for path in glob.glob(os.path.join(os.path.dirname(built), stem + ".*")):
                if os.path.abspath(path) != built and path.endswith((".so", ".pyd")):
                    os.unlink(path)

    def build_extension(self, ext) -> None:  # type: ignore[no-untyped-def]
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            self._failed().add(ext.name)
            self._give_up(exc)

    def copy_extensions_to_source(self) -> None:
        """(editable installs) Copy only the extensions that were built."""
        kept = self.extensions
        self.extensions = [e for e in kept if e.name not in self._failed()]
        try:
            super().copy_extensions_to_source()
        finally:
            self.extensions = kept

    def _failed(self) -> set:
        if not hasattr(self, "_failed_names"):
            self._failed_names: set = set()
        return self._failed_names

    def _give_up(self, exc: BaseException) -> None:
        if os.environ.get("LSM_REQUIRE_NATIVE") == "1":
            raise exc
        if getattr(self, "_warned", False):
            return  # one warning per build
        self._warned = True
        sys.stderr.write(
            "WARNING: superdisk-lsm could not build its C extension "
            f"({exc}); it will run on the pure-Python twins.\n")


setup(
    cffi_modules=["native/build.py:ffibuilder"],
    cmdclass={"build_ext": OptionalBuildExt},
)
