"""How lsm/_native.py picks the implementation (LSM_PURE, LSM_REQUIRE_NATIVE,
a missing extension) and that both expose the same API."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys

import pytest

from lsm import _native, _twins
from native_support import C, needs_c

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FUNCTIONS = ["checksum", "encode_varint", "decode_varint32", "decode_varint64", "block_encode",
             "block_decode", "block_seek", "block_get", "bloom_build", "bloom_may_contain",
             "merge", "log_encode_record", "batch_encode_single", "batch_encode",
             "user_keys",
             "blocks_unpack", "blocks_unpack_flat", "sort_entries", "table_blocks", "bloom_build_hashes",
             "merge_indices"]
CONSTANTS = ["CMP_BYTEWISE", "CMP_INTERNAL", "MERGE_READ", "MERGE_COMPACT"]

# Hides lsm._lsm_c, as on a machine where it could not be compiled.
BLOCK_EXTENSION = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "lsm._lsm_c":
            raise ImportError("No module named 'lsm._lsm_c'")
        return None
sys.meta_path.insert(0, _Block())
"""


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LSM_")}
    full_env.update(env)
    full_env["PYTHONPATH"] = ROOT + os.pathsep + full_env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=60)


def test_pure_forces_twins_without_warning() -> None:
    r = _run("import lsm; print(lsm.implementation)", LSM_PURE="1", PYTHONWARNINGS="error")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "python"


@needs_c
def test_native_is_default_when_built() -> None:
    r = _run("import lsm, lsm._native as n; print(lsm.implementation, n.checksum is n.c_api().checksum)",
             PYTHONWARNINGS="error")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["native", "True"]


def test_missing_extension_warns_once_and_falls_back() -> None:
    code = BLOCK_EXTENSION + (
        "import warnings\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    import lsm, lsm._native\n"
        "    import importlib; importlib.reload(lsm._native)\n"
        "print(lsm.implementation, len([x for x in w if 'lsm._lsm_c' in str(x.message)]))\n")
    r = _run(code)
    assert r.returncode == 0, r.stderr
    # one warning per selection (the reload selects again)
    assert r.stdout.split() == ["python", "2"]


def test_require_native_fails_loudly() -> None:
    r = _run(BLOCK_EXTENSION + "import lsm", LSM_REQUIRE_NATIVE="1")
    assert r.returncode != 0
    assert "ImportError" in r.stderr and "LSM_REQUIRE_NATIVE=1" in r.stderr


def test_pure_wins_over_require_native() -> None:
    r = _run(BLOCK_EXTENSION + "import lsm; print(lsm.implementation)",
             LSM_PURE="1", LSM_REQUIRE_NATIVE="1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "python"


def test_module_exports_everything() -> None:
    for name in FUNCTIONS + CONSTANTS + ["implementation", "c_api"]:
        assert hasattr(_native, name), name
    for name in CONSTANTS:
        assert getattr(_native, name) == getattr(_twins, name)


@needs_c
@pytest.mark.parametrize("name", FUNCTIONS)
def test_signatures_identical(name: str) -> None:
    """Same parameter names, kinds and defaults (the C builtins carry no
    annotations)."""
    def shape(fn):  # type: ignore[no-untyped-def]
        return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]
    assert shape(getattr(C, name)) == shape(getattr(_twins, name))


def test_function_list_matches_native_module() -> None:
    assert tuple(FUNCTIONS) == _native.FUNCTIONS


@needs_c
def test_keyword_arguments_and_call_errors() -> None:
    assert C.checksum(data=b"ab", seed=3) == _twins.checksum(data=b"ab", seed=3)
    assert C.merge(runs=[], read_seq=0, bottom=True) == ([], [])
    assert C.decode_varint32(b"\x05", offset=0) == (5, 1)
    for bad in [lambda: C.checksum(), lambda: C.checksum(b"", 0, 1),
                lambda: C.checksum(b"", sede=1), lambda: C.checksum(b"", 0, seed=1)]:
        with pytest.raises(TypeError):
            bad()


def test_stale_extension_is_refused() -> None:
    """A module that is not the cffi build (e.g. an old hand-written
    extension), or one lacking a C function (an old build), is reported,
    not used."""
    import types
    with pytest.raises(ImportError, match="stale build .not the cffi module"):
        _native._make_c_api(types.SimpleNamespace(checksum=_twins.checksum))
    if C is not None:
        lib = types.SimpleNamespace(**{name: getattr(C.lib, name)
                                       for name in _native.C_FUNCTIONS[:-1]})
        with pytest.raises(ImportError, match=f"stale build .no {_native.C_FUNCTIONS[-1]}"):
            _native._make_c_api(types.SimpleNamespace(ffi=C.ffi, lib=lib))
        full = types.SimpleNamespace(**{name: getattr(C.lib, name)
                                        for name in _native.C_FUNCTIONS})
        api = _native._make_c_api(types.SimpleNamespace(ffi=C.ffi, lib=full))
        assert api.checksum(b"abc") == _twins.checksum(b"abc")
