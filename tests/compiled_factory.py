"""Hand-built CompiledNetwork objects for hw_sim tests (independent of the compiler)."""
from __future__ import annotations

import math

import numpy as np

from models.network import AlphaLayer, TemporalNetwork
from toolchain.compiled import CompiledLayer, CompiledNetwork


def make_compiled(sizes: tuple[int, ...] = (12, 6, 4), steps_per_unit: int = 16, n_pulses: int = 1,
                  weight_bits: int = 8, seed: int = 0, tau: float = 1.0) -> CompiledNetwork:
    """A small random network with Lava fixed-point fields filled in (alpha neurons, du = D - 1, dv = D)."""
    rng = np.random.default_rng(seed)
    S = steps_per_unit
    d = math.exp(-tau / S)
    D = int(round(4096 * (1 - d)))
    float_layers, layers = [], []
    for k in range(len(sizes) - 1):
        n_in, n_out = sizes[k], sizes[k + 1]
        w = rng.normal(0.6, 0.5, size=(n_out, n_in))
        pt = np.linspace(0.1, 0.5, n_pulses)
        pw = rng.normal(0.3, 0.2, size=(n_out, n_pulses))
        float_layers.append(AlphaLayer(w, pt, pw))
        iw = np.clip(2 * np.rint(w * 40), -256, 254).astype(np.int32)
        ipw = np.clip(2 * np.rint(pw * 40), -256, 254).astype(np.int32)
        iw[:, ::5] = 0  # some connection sparsity
        layers.append(CompiledLayer(
            name=f"layer{k}", weights=iw, pulse_weights=ipw,
            pulse_steps=np.rint(pt * S).astype(np.int64), weight_exp=0, du=D - 1, dv=D, vth=40 * S,
            once=True, weights_float=w / S * d, pulse_weights_float=pw / S * d, du_float=1 - d,
            dv_float=1 - d, vth_float=1.0, num_weight_bits=weight_bits,
        ))
    source = TemporalNetwork(tuple(float_layers), tau=tau, theta=1.0, latency=1.0)
    return CompiledNetwork(steps_per_unit=S, window=3 * S, layers=tuple(layers), source=source,
                           manifest={"factory": "tests/compiled_factory.py", "seed": seed})
