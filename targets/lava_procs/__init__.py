"""Custom Lava processes for snnc (kept in their own package: Lava's ProcessModel discovery executes every
``.py`` file beside a custom process's module).

``OnceLIF``: a ``LIFReset`` whose neurons spike at most once per reset window (``once=True``) and never on the
window's last update; float and bit-accurate models in :mod:`targets.lava_procs.models`.
Importing this package makes Lava importable first (:func:`toolchain.lava_compat.install`).
"""
from __future__ import annotations

from toolchain.lava_compat import install

# Lava must be importable (Python 3.11 shim, start-method quirk) before the process modules import it.
install()

from targets.lava_procs.process import OnceLIF  # noqa: E402

__all__ = ["OnceLIF"]
