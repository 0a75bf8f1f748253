"""Lowering of a :class:`toolchain.ir.LIF` population (fed by one Dense node) onto Lava 0.10's stock LIF.

Stock ``lava.proc.lif`` LIF (fixed point, /work/shared/docs/lava-brian2-notes.md sections 1 and 6):
``u = trunc0(u (4096 - du - 1) / 4096) + a_in << 6``; ``v = clip(trunc0(v (4096 - dv) / 4096) + u, +-(2**23-1))``;
spike when ``v > vth << 6``; then v = 0 (u kept).

* du = 4095: u is exactly this step's input (no current memory), so keeping u at a spike is harmless;
* dv = round(4096 (1 - leak)) (12 bits): the leak becomes 1 - dv/4096 (``leak_eff``, in the manifest);
* one integer ``scale`` per neuron (integer units of a_in per threshold; ``threshold="neuron"``, default) or per
  layer (``"layer"``), chosen with the layer's weight exponent so that each neuron's largest weight fills the
  mantissa (grid max|w_j| / 127.5 of the threshold for 8 bits) within the worst-case ranges (``_auto_scale``).
  The stock LIF process declares vth as one value (shape (1,)), but its models compare ``v > vth << 6`` with
  numpy broadcasting, so a (n,) vth array gives every neuron its own threshold in both precisions (measured:
  tests/test_lava_lif.py); per-neuron scaling is per-row weight scaling;
* ``V >= v_th`` (IR) against Lava's strict ``v > vth << 6``: without leak (dv = 0) v is always a multiple of 64
  (u = a_in << 6 and nothing truncates), so vth = scale - 1 makes ``v > vth << 6`` exactly ``v >= scale << 6``;
  with leak the truncated decay leaves v anywhere, and vth = scale misses only v == scale << 6 exactly (scale - 1
  would add 63 spurious values), so vth = scale there and for strict IR nodes. Float: vth_float is the largest
  float64 below v_th for non-strict nodes, so Lava's ``v > vth_float`` is exactly ``v >= v_th``;
* the authors' clamp of V at v_th (Roy et al.) changes the potential a loss reads, not the spikes: a clamped V
  reaches v_th exactly when the unclamped one does, and the reset to zero erases the difference. So clamp is
  accepted and not emitted; reset "subtract" is refused (stock LIF resets to zero);
* worst-case ranges per neuron, every input spiking at once in every step of a sample of ``max_steps`` steps:
  |a_in| = max(sum of positive, sum of negative effective weights) <= 2**15 - 1 (16-bit hardware input; this
  also keeps u = a_in << 6 inside 24 bits, where it would wrap); negative v <= 64 neg sum_{n < T} leak_eff**n
  <= 2**23 - 1 (v saturates). Positive v needs no check: it can saturate only in a step in which it crosses the
  threshold, and it spikes and resets then anyway;
* calibrated ranges (``cal``: maxima measured on training inputs, toolchain/steps_calibration.py, times 1 +
  margin) replace the worst case: scale_j a_in_j <= 2**15 - 1 and 64 scale_j v_neg_j <= 2**23 - 1.
"""
from __future__ import annotations


import numpy as np

from toolchain.compiled_steps import CompiledStepsLayer
from toolchain.errors import CompileError
from toolchain.ir import LIF, Dense
from toolchain.lower_dense import DenseQuant, add_residual_block, lower_dense
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


def calibrated_rows(scales: np.ndarray | float, cal) -> dict[str, np.ndarray]:
    """Calibrated magnitudes per neuron at integer ``scales`` (units per threshold): ``cal`` holds the measured
    maxima in threshold units, margin included (attributes a_in, v_neg: (n_out,))."""
    s = np.asarray(scales, dtype=np.float64)
    a = s * cal.a_in
    return {"a_in": a, "u": a * (1 << STATE_SHIFT), "v_neg": s * cal.v_neg * (1 << STATE_SHIFT)}


def range_rows(effective: np.ndarray, scales: np.ndarray | float, dv: int, max_steps: int,
               cal=None) -> dict[str, np.ndarray]:
    """The magnitudes the range checks bound: worst case (cal None) or calibrated (toolchain/steps_calibration.py)."""
    return worst_case_rows(effective, dv, max_steps) if cal is None else calibrated_rows(scales, cal)


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


def _scale_caps(per_threshold: np.ndarray, dv: int, max_steps: int, cal=None) -> np.ndarray:
    """Largest float scale per neuron (n_out,) that the (worst-case or calibrated) ranges allow (before
    rounding), <= 2**16."""
    rows = range_rows(per_threshold, 1.0, dv, max_steps, cal)
    with np.errstate(divide="ignore"):
        return np.minimum.reduce([np.full(rows["a_in"].shape, float(VTH_AUTO_MAX)), A_IN_MAX / rows["a_in"],
                                  UV_MAX / rows["v_neg"]])


THRESHOLD_MODES = ("neuron", "layer")
_CALIBRATED_FIX = ("compile with data-calibrated ranges (range_mode='calibrated'; command line: --range calibrated "
                   "--calibration-samples N), which bound what training inputs reach instead of every input "
                   "spiking in every step")


def lower_lif_layer(syn_name: str, dense: Dense, pop_name: str, node: LIF, max_steps: int, bits: int,
                    scale: int | None = None, threshold: str = "neuron", cal=None,
                    measured=None, blocks: int = 1, exponent: str = "mantissa") -> tuple[CompiledStepsLayer, dict]:
    """Lower one Dense -> LIF pair; returns the layer and its manifest entry. scale: integer units per threshold
    for every neuron (None = automatic: one per neuron, or the layer's smallest with threshold="layer").
    cal: calibrated maxima per neuron with the margin applied (attributes a_in, v_neg in threshold units; None =
    worst-case ranges); measured: the raw measurement (toolchain.steps_calibration.StepsRanges) for the manifest.
    exponent: "mantissa" (default: the weight exponent of the finest first-block grid) or "fine" (blocks 2: of
    the finest grid of both blocks, see _best_exp). CompileError when the node cannot run or the weights overflow at
    the scale."""
    dv = lif_decay(pop_name, node)
    per = dense.weight / node.v_th
    if scale is None:
        q, scales = _auto_scale(f"{syn_name} -> {pop_name}", per, dv, max_steps, bits, threshold == "layer", cal,
                                blocks, exponent == "fine" and blocks == 2)
    else:
        scales = np.full(node.n, int(scale), dtype=np.int64)
        q = lower_dense(syn_name, per, scales, bits, f"pass a smaller scale (e.g. {VTH_MIN}) or {_WEIGHT_FIX}")
        q = add_residual_block(q, per, scales, bits) if blocks == 2 else q
        bad = _violation(range_rows(q.effective, scales, dv, max_steps, cal))
        if bad:
            what, value, limit, j = bad
            kind = "worst-case" if cal is None else "calibrated"
            raise CompileError(f"{pop_name}: neuron {j}: {kind} {what} = {value:.4g} exceeds {limit} at "
                               f"scale={scale} over {max_steps} steps; fix: pass a smaller scale, leave it unset "
                               f"for the automatic choice, {_WEIGHT_FIX}"
                               + ("" if cal is not None else f", or {_CALIBRATED_FIX}"))
    vth = scales - 1 if (dv == 0 and not node.strict) else scales   # V >= v_th on Lava's v > vth << 6
    if vth.min() < 0 or vth.max() > VTH_MAX:
        raise CompileError(f"{pop_name}: thresholds in [{vth.min()}, {vth.max()}] do not fit the 17-bit field "
                           f"[0, {VTH_MAX}]; fix: pass a scale in [{VTH_MIN}, {VTH_MAX}]")
    dv_float = 1.0 - node.leak
    layer = CompiledStepsLayer(
        name=pop_name, synapse=syn_name, weights=q.mantissas.astype(np.int32), weight_exp=q.exp,
        num_weight_bits=bits, du=DU_NO_MEMORY, dv=dv, vth=vth.astype(np.int64), scale=scales.astype(np.int64),
        weights_float=np.array(dense.weight, dtype=np.float64), du_float=1.0, dv_float=dv_float,
        vth_float=float(node.v_th if node.strict else np.nextafter(node.v_th, 0.0)), leak=node.leak,
        v_th=node.v_th, strict=node.strict, clamp=node.clamp, dt_ms=node.dt_ms,
        fine_weights=None if q.fine is None else q.fine.astype(np.int32), fine_exp=q.fine_exp)
    rows = worst_case_rows(q.effective, dv, max_steps)
    _, hi, _ = MANTISSA[bits]
    row_max = np.abs(q.mantissas).max(axis=1, initial=0)
    manifest = {
        "name": pop_name, "synapse": syn_name, "threshold": "given" if scale is not None else threshold,
        "scale_min": int(scales.min()), "scale_max": int(scales.max()), "weight_exp": q.exp,
        "fine_exp": None if q.fine is None else q.fine_exp,
        "dv": dv, "leak": node.leak, "leak_eff": 1.0 - dv / DECAY_UNITY,
        "float_leak_exact": bool(1.0 - dv_float == node.leak),
        "mantissa_used": float(row_max.max(initial=0) / hi),
        "mantissa_used_median_row": float(np.median(row_max) / hi),
        "max_weight_error": q.max_error,
        "worst_case": {k: float(v.max(initial=0.0)) for k, v in rows.items()},
        "clamp_dropped": node.clamp,
    }
    if cal is not None:
        crow = calibrated_rows(scales, cal)
        manifest["calibrated"] = {k: float(v.max(initial=0.0)) for k, v in crow.items()}
        if measured is not None:
            manifest["measured"] = {
                "a_in_max": float(measured.a_in.max(initial=0.0)), "v_neg_max": float(measured.v_neg.max(initial=0.0)),
                "v_pos_max": float(measured.v_pos.max(initial=0.0)),
                "spikes_per_step": float(measured.rate.sum()), "silent_neurons": int((measured.rate == 0).sum())}
    return layer, manifest


def _full_scale(big: np.ndarray, e: int, bits: int) -> np.ndarray:
    """Scale per row at which the row's largest |weight| fills the mantissa at exponent e (inf for empty rows)."""
    _, hi, step = MANTISSA[bits]
    with np.errstate(divide="ignore"):
        return np.floor((hi + step / 2) * 2.0**e / big)


def _best_exp(big: np.ndarray, caps: np.ndarray, bits: int, fine: bool = False) -> int:
    """The Dense weight exponent whose scales ``min(cap_j, full-mantissa scale_j(e))`` give the finest weight grid
    relative to each neuron's largest weight: smallest worst-row relative step ``2**e / (scale_j big_j)``, then the
    smallest mean, then the largest e (larger scales). A row is feasible at e when its scale is >= VTH_MIN; the
    exponents where every row is feasible are preferred. (A neuron held below its full-mantissa scale by its ranges
    gets a coarser grid at every larger e, so it must not be left out of the choice.)

    ``fine`` (``exponent="fine"``, two weight blocks): the second block holds every weight's rounding residual at
    the smallest exponent ef, so the grid is ``2**ef / scale_j`` at any e whose residuals (at most half a coarse
    step) fit the fine mantissa: a larger e only raises the full-mantissa scales; the exponent is the one with the
    finest such grid, the smallest e among equals (fewer weights left to the second block). The default choice
    (the first block's grid) kept, e.g., a trained audiocoder's hidden layer at exponent 0 and scales 307-1,023
    where its calibrated ranges allow 1,400-9,300 (docs/audio.md, "The decoder's +-1 step gate")."""
    live = big > 0
    ef = weight_exp_min(bits)
    _, hi, step = MANTISSA[bits]
    best, best_key = ef, None
    for e in range(ef, WEIGHT_EXP_MAX + 1):
        if fine and step * 2.0**e / 2 > hi * 2.0**ef:     # the residuals would not fit the second block
            break
        sc = np.floor(np.minimum(np.minimum(caps, _full_scale(big, e, bits)), VTH_AUTO_MAX))
        feasible = bool(np.all(sc >= VTH_MIN))
        if not live.any():
            rel = np.zeros(1)
        else:
            with np.errstate(divide="ignore"):
                rel = 2.0**(ef if fine else e) / (np.maximum(sc[live], 1.0) * big[live])
        key = (not feasible, round(float(rel.max()), 12), round(float(rel.mean()), 12), e if fine else -e)
        if best_key is None or key < best_key:
            best, best_key = e, key
    return best


def _auto_scale(name: str, per: np.ndarray, dv: int, max_steps: int, bits: int,
                one_per_layer: bool, cal=None, blocks: int = 1, fine: bool = False) -> tuple[DenseQuant, np.ndarray]:
    """Scales (n_out,) and one weight exponent with the finest weight grid relative to each threshold that the
    worst-case ranges allow.

    At exponent e neuron j's grid is step 2**e / scale_j. Where the mantissa bounds the scale (scale_j =
    (hi + step/2) 2**e / max_i |w_ji|, full mantissa) that is step max|w_j| / (hi + step/2) at any e, so each neuron
    would take the largest e whose full-mantissa scale its ranges allow; the Dense has one exponent, so the layer
    takes the smallest of those (every neuron still fills its mantissa, at a smaller scale). Where even the
    smallest exponent overflows a neuron's ranges at full mantissa, that neuron takes its range-bound scale (its
    mantissa is then partly used). ``one_per_layer``: every neuron gets the smallest scale (one vth per LIF
    process, the plainest use of the stock process). Rows that still violate a range after rounding are lowered by
    1 % at a time; a half-way value rounded past the mantissa lowers its row by 1."""
    caps = _scale_caps(per, dv, max_steps, cal)
    big = np.abs(per).max(axis=1, initial=0.0)
    if one_per_layer:
        caps = np.full(caps.shape, caps.min(initial=float(VTH_AUTO_MAX)))
        big = np.full(big.shape, big.max(initial=0.0))
    lo, hi, _ = MANTISSA[bits]
    exp = _best_exp(big, caps, bits, fine)
    scales = np.floor(np.minimum(caps, _full_scale(big, exp, bits))).astype(np.int64)
    scales = np.minimum(scales, VTH_AUTO_MAX)
    fix = _WEIGHT_FIX + (f", or compile for fewer steps (max_steps, now {max_steps}): without leak the negative "
                         "voltage grows with every step" if dv == 0 and cal is None else "")
    fix += "" if cal is not None else f", or {_CALIBRATED_FIX}"
    for _ in range(2000):
        if scales.min() < VTH_MIN:
            break
        q = lower_dense(name, per, scales, bits, fix, exp=exp)
        q = add_residual_block(q, per, scales, bits) if blocks == 2 else q
        over = (q.mantissas.min(axis=1, initial=0) < lo) | (q.mantissas.max(axis=1, initial=0) > hi)
        if over.any():
            scales = np.where(over, scales - 1, scales)
            continue
        rows = range_rows(q.effective, scales, dv, max_steps, cal)
        bad = np.zeros(scales.shape, dtype=bool)
        for key, _, limit in _LIMITS:
            bad |= rows[key] > limit
        if not bad.any():
            if one_per_layer and scales.min() != scales.max():
                scales = np.full(scales.shape, scales.min())
                continue
            return q, scales
        scales = np.where(bad, np.floor(scales * 0.99).astype(np.int64), scales)
    j = int(np.argmin(scales))
    q = lower_dense(name, per, VTH_MIN, bits, fix)
    what, value, limit, j = _violation(range_rows(q.effective, VTH_MIN, dv, max_steps, cal)) or (
        "scale", float(caps[j]), VTH_MIN, j)
    basis = (f"every input spiking in every one of {max_steps} steps" if cal is None else
             "the calibrated ranges, margin included")
    raise CompileError(f"{name}: neuron {j}: {'worst-case' if cal is None else 'calibrated'} {what} = {value:.4g} "
                       f"exceeds the limit {limit} even at the smallest useful scale {VTH_MIN} ({basis}); "
                       f"fix: {fix}")
