"""Lava helper process for the steps-graph targets (targets/lava_lif.py), in its own package because Lava's
ProcessModel discovery executes every ``.py`` file beside a custom process's module.

``WindowSink``: records a population's spikes and sends one sample's (T, n) spike train to the host through an
external pipe once per window, instead of one message per step (an ``Extractor`` per layer cost ~1/3 of the run
time of a 784-196-784 net, T = 15). The neurons stay Lava's stock LIF.
Importing this package makes Lava importable first (:func:`toolchain.lava_compat.install`).
"""
from __future__ import annotations

from toolchain.lava_compat import install

install()

from targets.lava_lif_procs.process import WindowSink  # noqa: E402

__all__ = ["WindowSink"]
