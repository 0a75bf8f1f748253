"""Bit-accurate emulation of a CompiledSteps (Dense -> LIF chain) as ``lava-fixed`` runs it on Lava 0.10's stock
``PyDenseModelBitAcc`` and ``PyLifResetModelBitAcc`` (toolchain/compiled_steps.py states the integer equations).

Batched over samples with numpy int64, results aligned to the float model (toolchain/lif_reference.py): the
Dense delay and the source step are not simulated, since they only shift each layer's train by a constant number
of steps (targets/lava_lif.py shifts Lava's results back by the same amount).
"""
from __future__ import annotations

import time

import numpy as np

from toolchain.compiled_steps import CompiledSteps, validate_compiled_steps
from toolchain.errors import TargetError
from toolchain.quantize import DECAY_BITS, DECAY_UNITY, STATE_SHIFT, UV_MAX, effective_weights


def check_steps_input(cs: CompiledSteps, spikes_in: np.ndarray, target: str) -> np.ndarray:
    """(N, T, n_in) 0/1 spike trains with 1 <= T <= cs.max_steps -> uint8; TargetError naming the problem."""
    x = np.asarray(spikes_in)
    if x.ndim != 3 or x.shape[2] != cs.n_in or x.shape[0] < 1 or x.shape[1] < 1:
        raise TargetError(f"{target}: input spike trains must have shape (samples, steps, {cs.n_in}), got "
                          f"{x.shape}; fix: pass one (steps, {cs.n_in}) 0/1 array per sample")
    if x.dtype.kind not in "biuf" or not np.all((x == 0) | (x == 1)):
        raise TargetError(f"{target}: input spike trains must hold only 0 and 1; fix: encode the inputs as spike "
                          "trains (one spike per channel and step at most)")
    if x.shape[1] > cs.max_steps:
        raise TargetError(f"{target}: samples have {x.shape[1]} steps but the network was compiled (and its ranges "
                          f"checked) for at most {cs.max_steps}; fix: recompile with max_steps={x.shape[1]}")
    return x.astype(np.uint8)


def _trunc_decay(v: np.ndarray, dv: int) -> np.ndarray:
    """trunc0(v (4096 - dv) / 4096), as Lava's sign * (|x| >> 12)."""
    x = v * (DECAY_UNITY - dv)
    return np.sign(x) * (np.abs(x) >> DECAY_BITS)


def run_lif_fixed(cs: CompiledSteps, spikes_in: np.ndarray) -> list[np.ndarray]:
    """Spike trains [(N, T, n) uint8] of every layer, aligned to the float model's steps."""
    validate_compiled_steps(cs)
    x = check_steps_input(cs, spikes_in, "hw_sim")
    n, t_steps = x.shape[:2]
    src = x
    out = []
    lim = UV_MAX + 1  # Lava's max_uv_val = 2**23
    for cl in cs.layers:
        w = effective_weights(cl.weights, cl.weight_exp)       # (n_out, n_in) int64
        a_all = src.astype(np.int64) @ w.T                      # (N, T, n_out): exact integer sums
        v = np.zeros((n, cl.n_out), dtype=np.int64)
        s_out = np.zeros((n, t_steps, cl.n_out), dtype=np.uint8)
        thr = np.int64(cl.vth) << STATE_SHIFT
        for t in range(t_steps):
            u = a_all[:, t] << STATE_SHIFT                      # du = 4095: no current memory
            u = np.where(u > lim, u - 2 * lim, u)               # 24-bit wrap, as Lava does it
            u = np.where(u <= -lim, u + 2 * lim, u)
            v = np.clip(_trunc_decay(v, cl.dv) + u, -lim + 1, lim - 1)
            fired = v > thr
            s_out[:, t] = fired
            v = np.where(fired, 0, v)
        out.append(s_out)
        src = s_out
    return out


class HwSimLifTarget:
    """hw_sim for steps graphs: ``run(cs, spikes_in) -> (spikes per layer, wall_s, info)``."""

    name = "hw_sim"

    def run(self, cs: CompiledSteps, spikes_in: np.ndarray) -> tuple[list[np.ndarray], float, dict]:
        t0 = time.perf_counter()
        spikes = run_lif_fixed(cs, spikes_in)
        return spikes, time.perf_counter() - t0, {"precision": "fixed_pt", "names": cs.names}
