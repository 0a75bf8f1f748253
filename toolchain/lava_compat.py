"""Import-time compatibility shim that lets lava-nc 0.10.0 import on Python 3.11.

lava-nc 0.10.0 declares ``Requires-Python <3.11``. On 3.11 its module
``lava.magma.compiler.var_model`` fails at import: dataclasses there use an instance of the
(unhashable) dataclass ``ByteEncoder`` as a field default, which Python 3.11 rejects
("mutable default ... use default_factory"). Making ``ByteEncoder`` hashable is the only change
needed. We do it by importing that one module once with ``dataclasses.dataclass`` wrapped so that
``ByteEncoder`` gets ``unsafe_hash=True``; site-packages is never edited.

Second quirk: at import, Lava's multiprocessing layer calls ``multiprocessing.set_start_method('fork')``
without ``force``, which raises "context has already been set" when anything in the process already set it
(numba's parallel layer, used by models/exact.py, sets 'fork'). Lava needs 'fork'; we let that one call pass.

Call :func:`install` before importing anything from lava.
"""
from __future__ import annotations

import dataclasses
import importlib
import multiprocessing
import sys
import threading

_VAR_MODEL = "lava.magma.compiler.var_model"
_LAVA_MP = "lava.magma.runtime.message_infrastructure.multiprocessing"
_lock = threading.Lock()


def install() -> None:
    """Pre-import the two lava modules that fail on 3.11 / after numba, with their quirks handled. Idempotent."""
    with _lock:
        _import_var_model()
        _import_lava_multiprocessing()


def _import_var_model() -> None:
    if _VAR_MODEL in sys.modules:
        return
    original = dataclasses.dataclass

    def patched(cls=None, /, **kwargs):
        def wrap(c):
            if c.__module__ == _VAR_MODEL and c.__name__ == "ByteEncoder":
                kwargs.setdefault("unsafe_hash", True)
            return original(c, **kwargs)

        return wrap if cls is None else wrap(cls)

    dataclasses.dataclass = patched
    try:
        importlib.import_module(_VAR_MODEL)
    except ModuleNotFoundError as exc:
        raise ImportError(
            "lava-nc is not installed. Run `make venv` (it installs lava-nc==0.10.0 with "
            "--ignore-requires-python, see docs/install.md)."
        ) from exc
    finally:
        dataclasses.dataclass = original


def _import_lava_multiprocessing() -> None:
    if _LAVA_MP in sys.modules:
        return
    original = multiprocessing.set_start_method

    def tolerant(method, force=False):
        if multiprocessing.get_start_method(allow_none=True) == method:
            return None
        return original(method, force=True)

    multiprocessing.set_start_method = tolerant
    try:
        importlib.import_module(_LAVA_MP)
    finally:
        multiprocessing.set_start_method = original


def lava_available() -> bool:
    """True when lava-nc imports (after the shim)."""
    try:
        install()
        return True
    except ImportError:
        return False
