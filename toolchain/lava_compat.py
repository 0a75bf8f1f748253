"""Import-time compatibility shim that lets lava-nc 0.10.0 import on Python 3.11.

lava-nc 0.10.0 declares ``Requires-Python <3.11``. On 3.11 its module
``lava.magma.compiler.var_model`` fails at import: dataclasses there use an instance of the
(unhashable) dataclass ``ByteEncoder`` as a field default, which Python 3.11 rejects
("mutable default ... use default_factory"). Making ``ByteEncoder`` hashable is the only change
needed. We do it by importing that one module once with ``dataclasses.dataclass`` wrapped so that
``ByteEncoder`` gets ``unsafe_hash=True``; site-packages is never edited.

Call :func:`import_lava` (or just import this module's helpers) before importing anything from lava.
"""
from __future__ import annotations

import dataclasses
import importlib
import sys
import threading

_VAR_MODEL = "lava.magma.compiler.var_model"
_lock = threading.Lock()


def install() -> None:
    """Pre-import lava's var_model with ByteEncoder made hashable. Idempotent."""
    with _lock:
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


def lava_available() -> bool:
    """True when lava-nc imports (after the shim)."""
    try:
        install()
        return True
    except ImportError:
        return False
