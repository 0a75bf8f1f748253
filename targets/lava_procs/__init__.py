"""Custom Lava processes for snnc (kept in their own package: Lava's ProcessModel discovery executes every
``.py`` file beside a custom process's module).

``OnceLIF``: a ``LIFReset`` whose neurons spike at most once per reset window (``once=True``) and never on the
window's last update; float and bit-accurate models in :mod:`targets.lava_procs.models`.
Importing this package makes Lava importable first (:func:`ensure_lava_importable`).
"""
from __future__ import annotations

import multiprocessing
import sys

from toolchain.lava_compat import install

_LAVA_MP = "lava.magma.runtime.message_infrastructure.multiprocessing"


def ensure_lava_importable() -> None:
    """Apply the Python 3.11 shim and import Lava's multiprocessing layer even when the start method is set.

    Lava 0.10.0 calls ``multiprocessing.set_start_method('fork')`` (without ``force``) at import, which raises
    "context has already been set" when anything ran multiprocessing code before, e.g. numba's parallel
    threading layer (``models.exact``) sets it to 'fork'. Lava needs 'fork'; we let that one call pass.
    """
    install()
    if _LAVA_MP in sys.modules:
        return
    original = multiprocessing.set_start_method

    def tolerant(method, force=False):
        if multiprocessing.get_start_method(allow_none=True) == method:
            return None
        return original(method, force=True)

    multiprocessing.set_start_method = tolerant
    try:
        __import__(_LAVA_MP)
    finally:
        multiprocessing.set_start_method = original


ensure_lava_importable()

from targets.lava_procs.process import OnceLIF  # noqa: E402

__all__ = ["OnceLIF", "ensure_lava_importable"]
