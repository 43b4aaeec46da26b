"""Selection of the native core: the C extension or the pure-Python twins.

Decided once, at import:

* ``LSM_PURE=1``            -> the twins (``lsm/_twins.py``);
* else ``from lsm import _lsm_c`` (built from ``native/`` by ``pip install``);
* if that fails (or the module is a stale build lacking a function):
  ``LSM_REQUIRE_NATIVE=1`` -> ``ImportError``; otherwise one
  ``RuntimeWarning`` and the twins.

``implementation`` is ``"native"`` or ``"python"``.  This module exports the
same functions (``FUNCTIONS``) and constants as ``lsm._twins`` with the same
parameters and identical behaviour, errors included.

``lsm._lsm_c`` is a hand-written CPython extension (``native/pymod.c``):
its functions are exported here as they are, with no Python wrapper, so a
call costs one C-level vectorcall.  It checks the common argument shapes in
C and hands anything else to the twins' validators (``check_buffer``,
``check_int``, ``check_merge_args``, ...), so a bad argument raises the very
error the twin raises; a corrupt input raises ``_twins.corruption(code,
offset)``, the twin's ``CorruptionError``.

``c_api()`` returns the C-backed namespace whatever ``LSM_PURE`` says (None
when the extension is not built): the equivalence tests compare it with the
twins.
"""

from __future__ import annotations

import importlib
import os
import warnings
from types import SimpleNamespace
from typing import Any, Optional

from lsm import _twins
from lsm._twins import CMP_BYTEWISE, CMP_INTERNAL, MERGE_COMPACT, MERGE_READ

FUNCTIONS = (
    "checksum", "encode_varint", "decode_varint32", "decode_varint64",
    "block_encode", "block_decode", "block_seek", "block_get",
    "bloom_build", "bloom_may_contain", "merge",
    "log_encode_record", "batch_encode_single", "batch_encode", "user_keys",
)

__all__ = [
    "implementation", "c_api", *FUNCTIONS,
    "CMP_BYTEWISE", "CMP_INTERNAL", "MERGE_READ", "MERGE_COMPACT",
]

_c_namespace: Optional[SimpleNamespace] = None
_c_import_error: Optional[BaseException] = None
_c_tried = False


def _make_c_api(mod: Any) -> SimpleNamespace:
    """The C-backed namespace over the extension module ``mod``."""
    missing = [name for name in FUNCTIONS if not callable(getattr(mod, name, None))]
    if missing:
        raise ImportError(f"lsm._lsm_c is a stale build (no {', '.join(missing)}); "
                          "rebuild it: pip install -e .")
    ns = SimpleNamespace(**{name: getattr(mod, name) for name in FUNCTIONS})
    ns.CMP_BYTEWISE = CMP_BYTEWISE
    ns.CMP_INTERNAL = CMP_INTERNAL
    ns.MERGE_READ = MERGE_READ
    ns.MERGE_COMPACT = MERGE_COMPACT
    ns.implementation = "native"
    ns.module = mod
    return ns


def c_api() -> Optional[SimpleNamespace]:
    """The C-backed functions (ignoring ``LSM_PURE``), or None when the
    extension ``lsm._lsm_c`` is not built.  Loaded once."""
    global _c_namespace, _c_import_error, _c_tried
    if not _c_tried:
        _c_tried = True
        try:
            _c_namespace = _make_c_api(importlib.import_module("lsm._lsm_c"))
        except ImportError as exc:
            _c_import_error = exc
    return _c_namespace


def _select() -> Any:
    if os.environ.get("LSM_PURE") == "1":
        return _twins
    api = c_api()
    if api is not None:
        return api
    if os.environ.get("LSM_REQUIRE_NATIVE") == "1":
        raise ImportError(
            "LSM_REQUIRE_NATIVE=1 but the C extension lsm._lsm_c is not built "
            f"({_c_import_error}); reinstall with a C compiler: pip install -e .")
    warnings.warn(
        "superdisk-lsm: the C extension lsm._lsm_c is not built "
        f"({_c_import_error}); running on the slower pure-Python twins. "
        "Set LSM_PURE=1 to silence this warning.", RuntimeWarning, stacklevel=3)
    return _twins


_impl = _select()
implementation: str = "native" if _impl is not _twins else "python"

checksum = _impl.checksum
encode_varint = _impl.encode_varint
decode_varint32 = _impl.decode_varint32
decode_varint64 = _impl.decode_varint64
block_encode = _impl.block_encode
block_decode = _impl.block_decode
block_seek = _impl.block_seek
bloom_build = _impl.bloom_build
bloom_may_contain = _impl.bloom_may_contain
merge = _impl.merge
block_get = _impl.block_get
log_encode_record = _impl.log_encode_record
batch_encode_single = _impl.batch_encode_single
batch_encode = _impl.batch_encode
user_keys = _impl.user_keys
