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
    """Raise TargetError for a layout ``target`` cannot run; with ``fixed`` also for out-of-range integers.

    Every message names the offending field (``steps_per_unit``, ``window``, ``weights``, ``pulse_weights``,
    ``weight_exp``, ``vth``, ...). The hil device runs the same check before it accepts a network."""
    S = net.steps_per_unit
    if isinstance(S, bool) or not isinstance(S, (int, np.integer)) or S < 1:
        raise TargetError(f"steps_per_unit={S!r} must be a positive integer (steps per model time unit); "
                          f"fix: {FIX}")
    W = net.window
    if isinstance(W, bool) or not isinstance(W, (int, np.integer)) or W < 3:
        raise TargetError(f"window={W!r} steps must be an integer >= 3; fix: {FIX}")
    W = int(W)
    for cl in net.layers:
        if cl.kind != "dense":
            raise TargetError(f"{cl.name}: layer kind {cl.kind!r} is not supported by {target} (only 'dense'); "
                              "fix: run this network on a target that supports it")
        if cl.pulse_steps.size and (cl.pulse_steps.min() < 0 or cl.pulse_steps.max() > W - 2):
            raise TargetError(f"{cl.name}: pulse columns {cl.pulse_steps.tolist()} must lie in [0, {W - 2}]; "
                              f"fix: {FIX}")
        if fixed:
            _check_integers(cl, target)


def _check_mantissas(cl, field_name: str, m: np.ndarray, nwb: int) -> None:
    """Weight mantissas Lava's Dense keeps unchanged: 8 bit mixed sign = even values in [-256, 254] (its LSB is
    masked), 9 bit = [-256, 255]."""
    if not m.size:
        return
    hi = 254 if nwb == 8 else 255
    lo_v, hi_v = int(m.min()), int(m.max())
    n_odd = int(np.count_nonzero(m % 2)) if nwb == 8 else 0
    if lo_v < -256 or hi_v > hi or n_odd:
        what = "even values in [-256, 254]" if nwb == 8 else "values in [-256, 255]"
        odd = f", {n_odd} of them odd" if n_odd else ""
        raise TargetError(f"{cl.name}: {field_name}: {nwb}-bit mixed-sign weight mantissas must be {what} (Lava "
                          f"would clip/mask them), got values in [{lo_v}, {hi_v}]{odd}; fix: {FIX}")


def _check_integers(cl, target: str) -> None:
    nwb = cl.num_weight_bits
    if isinstance(nwb, bool) or nwb not in (8, 9):
        raise TargetError(f"{cl.name}: num_weight_bits={nwb!r} is not supported by {target} (8 or 9); fix: {FIX}")
    nwb = int(nwb)
    _check_mantissas(cl, "weights", np.asarray(cl.weights), nwb)
    _check_mantissas(cl, "pulse_weights", np.asarray(cl.pulse_weights), nwb)
    for field_name, value, lo, hi, bits in (("du", cl.du, 0, 4095, "12 bit"), ("dv", cl.dv, 0, 4095, "12 bit"),
                                            ("weight_exp", cl.weight_exp, -1, 7, "-1..7"),
                                            ("pulse_weight_exp", cl.pulse_exp, -1, 7, "-1..7")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
            raise TargetError(f"{cl.name}: {field_name}={value!r} is out of range (an integer, {bits}: {lo}..{hi}); "
                              f"fix: {FIX}")
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
