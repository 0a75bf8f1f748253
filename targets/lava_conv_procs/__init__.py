"""Lava helper process for the convolutional targets (targets/lava_conv.py), in its own package because Lava's
ProcessModel discovery executes every ``.py`` file beside a custom process's module.

``ReadoutSink``: the off-chip Readout of issue [F]: it receives the last connection's synaptic input a (the
integer currents of lava-fixed, floats of lava-float), integrates A = leak (A + a / scale) in float64, zeroes A at
the start of every sample window and sends one sample's (T, shape) trace of A to the host per window.
Importing this package makes Lava importable first (:func:`toolchain.lava_compat.install`).
"""
from __future__ import annotations

from toolchain.lava_compat import install

install()

from targets.lava_conv_procs.process import ReadoutSink  # noqa: E402

__all__ = ["ReadoutSink"]
