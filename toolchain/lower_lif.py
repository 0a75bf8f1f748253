"""Lowering of a :class:`toolchain.ir.LIF` population (fed by one Dense node) onto Lava 0.10's stock LIF.

Stock ``lava.proc.lif`` LIF (fixed point, /work/shared/docs/lava-brian2-notes.md sections 1 and 6):
``u = trunc0(u (4096 - du - 1) / 4096) + a_in << 6``; ``v = clip(trunc0(v (4096 - dv) / 4096) + u, +-(2**23-1))``;
spike when ``v > vth << 6``; then v = 0 (u kept).

* du = 4095: u is exactly this step's input (no current memory), so keeping u at a spike is harmless;
* dv = round(4096 (1 - leak)) (12 bits): the leak becomes 1 - dv/4096 (``leak_eff``, in the manifest);
* one integer ``scale`` per layer (integer units of a_in per threshold; stock LIF has one vth per process),
  chosen with the weight exponent so that the largest weight fills the mantissa (grid max|w| / 127.5 of the
  threshold for 8 bits) at the largest scale <= 2**16 that the worst-case ranges allow (``_auto_scale``);
* ``V >= v_th`` (IR) against Lava's strict ``v > vth << 6``: vth = scale - 1. Without leak v is a multiple of
  64 and the two tests agree exactly; with leak v carries truncation remainders and the test is exact up to one
  integer unit (1/scale of the threshold). A strict IR node gets vth = scale. Float: vth_float is the largest
  float64 below v_th, so Lava's ``v > vth_float`` is exactly ``v >= v_th``;
* the authors' clamp of V at v_th (Roy et al.) changes the potential a loss reads, not the spikes: a clamped V
  reaches v_th exactly when the unclamped one does, and the reset to zero erases the difference. So clamp is
  accepted and not emitted; reset "subtract" is refused (stock LIF resets to zero);
* worst-case ranges per neuron, every input spiking at once in every step of a sample of ``max_steps`` steps:
  |a_in| = max(sum of positive, sum of negative effective weights) <= 2**15 - 1 (16-bit hardware input; this
  also keeps u = a_in << 6 inside 24 bits, where it would wrap); negative v <= 64 neg sum_{n < T} leak_eff**n
  <= 2**23 - 1 (v saturates). Positive v needs no check: it can saturate only in a step in which it crosses the
  threshold, and it spikes and resets then anyway.
"""
from __future__ import annotations

import math

import numpy as np

from toolchain.compiled_steps import CompiledStepsLayer
from toolchain.errors import CompileError
from toolchain.ir import LIF, Dense
from toolchain.lower_dense import DenseQuant, lower_dense
from toolchain.quantize import (
    A_IN_MAX, DECAY_MAX, DECAY_UNITY, MANTISSA, STATE_SHIFT, UV_MAX, VTH_AUTO_MAX, VTH_MAX, VTH_MIN,
    WEIGHT_EXP_MAX, leak_decay_code, weight_exp_min,
)

DU_NO_MEMORY = DECAY_MAX  # du = 4095: Lava adds 1, so u keeps nothing of the previous step

_WEIGHT_FIX = ("shrink the weights (retrain with weight decay, or with a larger threshold v_th relative to the "
               "weights)")


def lif_decay(name: str, node: LIF) -> int:
    """12-bit voltage decay code of the node's leak; CompileError when it does not fit or cannot run."""
    if node.reset != "zero":
        raise CompileError(f"{name}: LIF reset {node.reset!r} cannot run on Lava's stock LIF, which resets v to 0; "
                           "fix: train with reset='zero'")
    dv = leak_decay_code(node.leak)
    if not 0 <= dv <= DECAY_MAX:
        raise CompileError(f"{name}: leak {node.leak:g} needs the 12-bit voltage decay code "
                           f"round(4096 (1 - leak)) = {dv}, outside [0, {DECAY_MAX}]; fix: use a leak >= "
                           f"{1 - (DECAY_MAX + 0.5) / DECAY_UNITY:.6f}")
    return dv


def worst_case_rows(effective: np.ndarray, dv: int, max_steps: int) -> dict[str, np.ndarray]:
    """Worst-case magnitudes per neuron (n_out,) of integer weights ``effective`` (n_out, n_in): ``a_in``, ``u``
    (= a_in << 6) and ``v_neg`` (every negative weight active in all ``max_steps`` steps)."""
    w = np.asarray(effective, dtype=np.float64)
    pos = np.where(w > 0, w, 0.0).sum(axis=1)
    neg = np.where(w < 0, -w, 0.0).sum(axis=1)
    a = np.maximum(pos, neg)
    return {"a_in": a, "u": a * (1 << STATE_SHIFT), "v_neg": neg * (1 << STATE_SHIFT) * _geometric(dv, max_steps)}


_LIMITS = (("a_in", "synaptic input per step |a_in| (16-bit)", A_IN_MAX),
           ("u", "current |u| = |a_in| << 6 (24-bit, wraps)", UV_MAX),
           ("v_neg", "negative voltage |v| (24-bit, saturates)", UV_MAX))


def _geometric(dv: int, steps: int) -> float:
    r = 1.0 - dv / DECAY_UNITY
    return float(steps) if r == 1.0 else (1.0 - r**steps) / (1.0 - r)


def _violation(rows: dict) -> tuple[str, float, int, int] | None:
    for key, what, limit in _LIMITS:
        if np.any(rows[key] > limit):
            j = int(np.argmax(rows[key]))
            return what, float(rows[key][j]), limit, j
    return None


def _scale_cap(per_threshold: np.ndarray, dv: int, max_steps: int) -> float:
    """Largest float scale the worst-case ranges allow (before rounding the weights)."""
    rows = worst_case_rows(per_threshold, dv, max_steps)
    with np.errstate(divide="ignore"):
        caps = [A_IN_MAX / rows["a_in"].max(initial=0.0), UV_MAX / rows["v_neg"].max(initial=0.0)]
    return float(min([float(VTH_AUTO_MAX)] + caps))


def lower_lif_layer(syn_name: str, dense: Dense, pop_name: str, node: LIF, max_steps: int, bits: int,
                    scale: int | None = None) -> tuple[CompiledStepsLayer, dict]:
    """Lower one Dense -> LIF pair; returns the layer and its manifest entry. scale: integer units per threshold
    (None = automatic). CompileError when the node cannot run or the weights overflow at the scale."""
    dv = lif_decay(pop_name, node)
    per = dense.weight / node.v_th
    if scale is None:
        q, scale = _auto_scale(f"{syn_name} -> {pop_name}", per, dv, max_steps, bits)
    else:
        q = lower_dense(syn_name, per, scale, bits, f"pass a smaller scale (e.g. {VTH_MIN}) or {_WEIGHT_FIX}")
        bad = _violation(worst_case_rows(q.effective, dv, max_steps))
        if bad:
            what, value, limit, j = bad
            raise CompileError(f"{pop_name}: neuron {j}: worst-case {what} = {value:.4g} exceeds {limit} at "
                               f"scale={scale} over {max_steps} steps; fix: pass a smaller scale, leave it unset "
                               f"for the automatic choice, or {_WEIGHT_FIX}")
    vth = scale if node.strict else scale - 1
    if not 0 <= vth <= VTH_MAX:
        raise CompileError(f"{pop_name}: threshold {vth} does not fit the 17-bit field [0, {VTH_MAX}]; fix: pass "
                           f"a scale in [{VTH_MIN}, {VTH_MAX}]")
    dv_float = 1.0 - node.leak
    layer = CompiledStepsLayer(
        name=pop_name, synapse=syn_name, weights=q.mantissas.astype(np.int32), weight_exp=q.exp,
        num_weight_bits=bits, du=DU_NO_MEMORY, dv=dv, vth=int(vth), scale=int(scale),
        weights_float=np.array(dense.weight, dtype=np.float64), du_float=1.0, dv_float=dv_float,
        vth_float=float(node.v_th if node.strict else np.nextafter(node.v_th, 0.0)), leak=node.leak,
        v_th=node.v_th, strict=node.strict, clamp=node.clamp)
    rows = worst_case_rows(q.effective, dv, max_steps)
    lo, hi, _ = MANTISSA[bits]
    manifest = {
        "name": pop_name, "synapse": syn_name, "scale": int(scale), "vth": int(vth), "weight_exp": q.exp,
        "dv": dv, "leak": node.leak, "leak_eff": 1.0 - dv / DECAY_UNITY,
        "float_leak_exact": bool(1.0 - dv_float == node.leak),
        "mantissa_used": float(np.abs(q.mantissas).max(initial=0) / hi),
        "max_weight_error": q.max_error,
        "worst_case": {k: float(v.max(initial=0.0)) for k, v in rows.items()},
        "clamp_dropped": node.clamp,
    }
    return layer, manifest


def _auto_scale(name: str, per: np.ndarray, dv: int, max_steps: int, bits: int) -> tuple[DenseQuant, int]:
    """Scale and exponent with the finest weight grid relative to the threshold that the worst-case ranges allow.

    At exponent e the grid is step 2**e / scale. Where the mantissa bounds the scale (scale = (hi + step/2) 2**e /
    max|w|, full mantissa) that is step max|w| / (hi + step/2) at any e: take the largest such e whose scale the
    ranges allow (the largest scale: the finest voltage resolution). If even exponent -1 (0 for 9 bits) overflows
    the ranges at full mantissa, take the range-bound scale there (the mantissa is then partly used). Rounded
    weights that still violate a range lower the scale by 1 % at a time."""
    cap = min(_scale_cap(per, dv, max_steps), float(VTH_AUTO_MAX))
    lo, hi, step = MANTISSA[bits]
    big = float(np.abs(per).max(initial=0.0))
    exp, scale = weight_exp_min(bits), int(math.floor(cap))
    if big > 0:
        for e in range(weight_exp_min(bits), WEIGHT_EXP_MAX + 1):
            full = int(math.floor((hi + step / 2) * 2.0**e / big))
            if full <= cap:
                exp, scale = e, full
    fix = _WEIGHT_FIX + (f", or compile for fewer steps (max_steps, now {max_steps}): without leak the negative "
                         "voltage grows with every step" if dv == 0 else "")
    while scale >= VTH_MIN:
        q = lower_dense(name, per, scale, bits, fix, exp=exp)
        if q.mantissas.size and (q.mantissas.min() < lo or q.mantissas.max() > hi):
            scale -= 1     # a half-way value rounded up at the edge of the mantissa
            continue
        if _violation(worst_case_rows(q.effective, dv, max_steps)) is None:
            return q, scale
        scale = int(scale * 0.99)
    q = lower_dense(name, per, VTH_MIN, bits, fix)
    what, value, limit, j = _violation(worst_case_rows(q.effective, dv, max_steps)) or ("scale", cap, VTH_MIN, 0)
    raise CompileError(f"{name}: neuron {j}: worst-case {what} = {value:.4g} exceeds the limit {limit} even at the "
                       f"smallest useful scale {VTH_MIN} (every input spiking in every one of {max_steps} steps); "
                       f"fix: {fix}")
