"""Checks shared by the step-grid targets (lava-float, lava-fixed, hw_sim): what they can run, and inputs.

A compiled network that Lava would silently alter (clip, mask, wrap) or cannot run is rejected before anything
runs, with the same wording on every grid target (hw_sim must refuse exactly what lava-fixed refuses).
"""
from __future__ import annotations

import numpy as np

from toolchain.compiled import CompiledNetwork, shift_is_exact
from toolchain.errors import TargetError

FIX = "recompile the model with `snnc compile` (toolchain.compiler.compile_network)"


def check_grid_network(net: CompiledNetwork, target: str, fixed: bool = True) -> None:
    """Raise TargetError for a layout ``target`` cannot run; with ``fixed`` also for out-of-range integers."""
    W = int(net.window)
    if W < 3:
        raise TargetError(f"window={W} steps is too short (>= 3 needed); fix: {FIX}")
    for cl in net.layers:
        if cl.kind != "dense":
            raise TargetError(f"{cl.name}: layer kind {cl.kind!r} is not supported by {target} (only 'dense'); "
                              "fix: run this network on a target that supports it")
        if cl.pulse_steps.size and (cl.pulse_steps.min() < 0 or cl.pulse_steps.max() > W - 2):
            raise TargetError(f"{cl.name}: pulse columns {cl.pulse_steps.tolist()} must lie in [0, {W - 2}]; "
                              f"fix: {FIX}")
        if fixed:
            _check_integers(cl, target)


def _check_integers(cl, target: str) -> None:
    w = np.hstack([cl.weights, cl.pulse_weights])
    nwb = int(cl.num_weight_bits)
    if nwb not in (8, 9):
        raise TargetError(f"{cl.name}: num_weight_bits={nwb} is not supported by {target} (8 or 9); fix: {FIX}")
    if nwb == 8 and w.size and (w.min() < -256 or w.max() > 254 or np.any(w % 2)):
        raise TargetError(f"{cl.name}: 8-bit mixed-sign weight mantissas must be even values in [-256, 254] "
                          f"(Lava would clip/mask them), got [{w.min()}, {w.max()}]; fix: {FIX}")
    if nwb == 9 and w.size and (w.min() < -256 or w.max() > 255):
        raise TargetError(f"{cl.name}: 9-bit mixed-sign weight mantissas must lie in [-256, 255] (Lava would "
                          f"clip them), got [{w.min()}, {w.max()}]; fix: {FIX}")
    if not (0 <= cl.du <= 4095 and 0 <= cl.dv <= 4095 and -1 <= cl.weight_exp <= 7 and -1 <= cl.pulse_exp <= 7):
        raise TargetError(f"{cl.name}: du={cl.du}, dv={cl.dv} (12 bit), weight_exp={cl.weight_exp} or "
                          f"pulse_weight_exp={cl.pulse_exp} (-1..7) is out of range; fix: {FIX}")
    # a negative exponent makes Lava's Dense floor its sum (right shift): exact only with even mantissas
    for field_name, e, block in (("weight_exp", cl.weight_exp, cl.weights),
                                 ("pulse_weight_exp", cl.pulse_exp, cl.pulse_weights)):
        if not shift_is_exact(block, e):
            raise TargetError(f"{cl.name}: {field_name}={e} needs even weight mantissas (Lava's Dense floors the "
                              f"shifted sum), got odd ones; fix: {FIX}")
    # one 17-bit threshold mantissa per neuron (lava-fixed passes the whole vector to OnceLIF)
    vth = cl.vth
    bad = np.flatnonzero((vth < 1) | (vth > 131071))
    if bad.size:
        j = int(bad[0])
        raise TargetError(f"{cl.name}: vth[{j}]={int(vth[j])} is out of range (17 bit, 1..131071; {bad.size} of "
                          f"{cl.n_out} neurons out of range); fix: {FIX}")


def grid_input_columns(net: CompiledNetwork, input_times: np.ndarray) -> np.ndarray:
    """Input times (N, n_in), time units, inf = no spike -> source columns, checked against the window."""
    x = np.asarray(input_times, dtype=np.float64)
    n_in = net.layers[0].n_in
    if x.ndim != 2 or x.shape[1] != n_in:
        raise TargetError(f"input_times must have shape (N, {n_in}), got {x.shape}; "
                          "fix: pass one row of spike times per sample")
    if np.isnan(x).any():
        raise TargetError("input_times contain NaN; fix: use inf for 'no spike'")
    if np.isneginf(x).any():
        raise TargetError("input_times contain -inf; fix: use inf for 'no spike' and times >= 0")
    cols = net.input_columns(x)
    bad = np.isfinite(x) & ((cols < 0) | (cols > net.window - 1))
    if bad.any():
        t = x[bad][0]
        raise TargetError(
            f"input time {t:g} maps to step column {int(np.rint(t * net.steps_per_unit))}, outside the sample "
            f"window [0, {net.window - 1}]; fix: use input times in [0, {(net.window - 1) / net.steps_per_unit:g}]"
            " or recompile with a longer window"
        )
    return cols
