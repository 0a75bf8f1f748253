"""Lowering of convolution synapses (:class:`toolchain.ir.Conv2d`, :class:`toolchain.ir.ConvTranspose2d`) and of
Readout populations, plus the Lava 0.10 layouts of a :class:`toolchain.compiled_conv.CompiledConv`.

Quantization (shared core toolchain/quantize.py): a convolution shares its kernel over the map, so it gets one
integer ``scale`` per *output channel* (units per threshold); the rows quantized are the channel's kernel taps
(:func:`kernel_rows`), with one weight exponent per layer, the smallest that fits the mantissa grid at the chosen
scales. Worst-case ranges per channel: every input of the kernel active in every step, |a_in| = max(sum of positive,
sum of negative tap weights) <= 2**15 - 1 (exact for interior neurons of a stride-1 convolution, an upper bound at
borders and for strided transposed convolutions), negative v bounded as for Dense (toolchain/lower_lif.py).
A Readout (the off-chip trace A) only bounds |a_in| (its scale: units per unit of A).

Lava facts used (/work/shared/docs/lava-brian2-notes.md section 6, checked by tests/test_conv_lava.py):
``lava.proc.conv`` Conv takes (W, H, C) maps and weights (C_out, W, H, C_in), computes a *true* convolution (so
PyTorch kernels are flipped), takes stride/padding as (X, Y) = (w, h), ignores ``weight_exp`` (so it gets the
effective integers mantissa * 2**exp) and wraps its output to 24 bits. A ConvTranspose2d with stride 1 and
padding p <= k - 1 is that Conv with padding k - 1 - p and the transposed, unflipped kernel; any other
ConvTranspose2d becomes a ``lava.proc.sparse`` Sparse matrix (the transpose of the forward convolution, in Lava's
(W, H, C) order), which applies the exponent and the 8-bit clip like Dense. Lava ports flatten (W, H, C) maps in C
order; PyTorch flattens (C, H, W): Dense weights touching a map get their columns / rows permuted
(:func:`lava_perm`).
"""
from __future__ import annotations

import numpy as np

from toolchain.compiled_conv import CompiledConv, CompiledConvLayer
from toolchain.errors import CompileError
from toolchain.ir import LIF, Conv2d, ConvTranspose2d, Readout
from toolchain.lower_lif import DU_NO_MEMORY, lif_decay, worst_case_rows
from toolchain.quantize import (
    A_IN_MAX, DECAY_MAX, MANTISSA, UV_MAX, VTH_AUTO_MAX, VTH_MAX, VTH_MIN, WEIGHT_EXP_MAX, effective_weights,
    mantissa_round, weight_exp_min,
)

LAVA_INT8_MAX = 127  # Lava's Conv stores kernel size, stride and padding as int8
_WEIGHT_FIX = "shrink the weights (retrain with weight decay, or with a larger threshold v_th relative to the weights)"


def kernel_rows(node: Conv2d | ConvTranspose2d) -> np.ndarray:
    """(C_out, C_in kH kW) taps feeding each output channel (float64, IR units)."""
    w = node.weight if isinstance(node, Conv2d) else node.weight.transpose(1, 0, 2, 3)
    return np.ascontiguousarray(w.reshape(w.shape[0], -1))


def rows_to_kernel(rows: np.ndarray, node: Conv2d | ConvTranspose2d) -> np.ndarray:
    """Inverse of :func:`kernel_rows` (any dtype), back to the node's weight layout."""
    if isinstance(node, Conv2d):
        return rows.reshape(node.weight.shape)
    c_in, c_out, kh, kw = node.weight.shape
    return rows.reshape(c_out, c_in, kh, kw).transpose(1, 0, 2, 3)


def check_expressible(name: str, node: Conv2d | ConvTranspose2d) -> None:
    """CompileError for kernel / stride / padding values Lava's Conv cannot hold (int8 fields)."""
    kh, kw = node.weight.shape[2:]
    for what, pair in (("kernel size", (kh, kw)), ("stride", node.stride), ("padding", node.padding)):
        if max(pair) > LAVA_INT8_MAX:
            raise CompileError(f"{name}: {what} {tuple(pair)} exceeds {LAVA_INT8_MAX}, the largest value Lava's Conv "
                               f"process stores (int8); fix: use a {what} <= {LAVA_INT8_MAX}")


def _rows(per_or_eff: np.ndarray, scales, dv: int, max_steps: int, cal) -> dict:
    """Range magnitudes per row: worst case of the (integer or per-unit) weights, or calibrated maxima (``cal``:
    (a_in, v_neg) per row in threshold units, margin included) times the scales."""
    if cal is None:
        return worst_case_rows(per_or_eff, dv, max_steps)
    s = np.asarray(scales, dtype=np.float64)
    return {"a_in": s * cal[0], "v_neg": s * cal[1] * 64.0}


def _residual(per: np.ndarray, sc: np.ndarray, eff: np.ndarray, bits: int) -> tuple[np.ndarray | None, np.ndarray]:
    """Second-block mantissas at the smallest exponent holding each weight's rounding residual
    ``per * sc - eff`` (None when that block would be empty), and the two blocks' summed integer weights. The
    residual is at most half a coarse step (<= 2**(e - 1) <= 64), so it fits the fine mantissa."""
    ef = weight_exp_min(bits)
    lo, hi, _ = MANTISSA[bits]
    fine = np.clip(mantissa_round((per * sc[:, None] - eff) / 2.0**ef, bits), lo, hi)
    if not np.any(fine):
        return None, eff
    return fine, eff + effective_weights(fine, ef)


def _choose(name: str, per: np.ndarray, dv: int, max_steps: int, bits: int, one: bool,
            scale: int | None, cal=None, blocks: int = 1
            ) -> tuple[np.ndarray, int, np.ndarray, np.ndarray | None]:
    """Mantissas (rows x taps), exponent, integer scales per row and second-block mantissas (or None) with the
    finest grid the ranges allow (worst case, or ``cal``: calibrated (a_in, v_neg) per row): per row the scale is
    capped by |a_in| <= 2**15 - 1, the negative-v bound and 2**16; every exponent is tried and the one with the
    smallest worst relative grid step (2**e / (scale * max|w|), with two blocks 2**e_min / (scale * max|w|)) kept,
    ties to the larger exponent (one block) or the smaller (two blocks: smaller residuals, fewer fine synapses).
    blocks=2: a second block at the smallest exponent holds the rounding residuals (both blocks' integer weights
    are range-checked together) where each block's sum over a channel's taps stays inside 24 bits (Lava's Conv
    wraps each process's output separately; hw_sim then needs no per-block wrap); elsewhere one block."""
    rows = _rows(per, 1.0, dv, max_steps, cal)           # magnitudes per unit scale
    big = np.abs(per).max(axis=1, initial=0.0)
    lo, hi, step = MANTISSA[bits]
    ef = weight_exp_min(bits)
    with np.errstate(divide="ignore"):
        caps = np.minimum.reduce([np.full(big.shape, float(VTH_AUTO_MAX)), A_IN_MAX / rows["a_in"],
                                  UV_MAX / rows["v_neg"]])
    if one:
        caps = np.full(caps.shape, caps.min(initial=float(VTH_AUTO_MAX)))
        big = np.full(big.shape, big.max(initial=0.0))
    best = None
    for e in range(weight_exp_min(bits), WEIGHT_EXP_MAX + 1):
        if scale is not None:
            sc = np.full(big.shape, float(scale))
        else:
            with np.errstate(divide="ignore"):
                full = np.floor((hi + step / 2) * 2.0**e / big)
            sc = np.floor(np.minimum(caps, full))
        sc = np.where(np.isfinite(sc), sc, VTH_AUTO_MAX).astype(np.int64)
        fine = None
        for _ in range(200):        # rounding may push a row past the mantissa or a range: lower it a little
            m = mantissa_round(per * sc[:, None] / 2.0**e, bits)
            eff = effective_weights(m, e)
            fine = None
            if blocks == 2 and e > ef:
                fine, both = _residual(per, sc, eff, bits)
                if fine is not None and max(np.abs(eff).sum(axis=1).max(initial=0),
                                            np.abs(both - eff).sum(axis=1).max(initial=0)) >= UV_MAX + 1:
                    fine = None        # a block's sum could leave 24 bits: one block here
                if fine is not None:
                    eff = both
            r = _rows(eff, sc, dv, max_steps, cal)
            over = (m.min(axis=1, initial=0) < lo) | (m.max(axis=1, initial=0) > hi) | (r["a_in"] > A_IN_MAX) \
                | (r["v_neg"] > UV_MAX)
            if not over.any() or scale is not None:
                break
            sc = np.where(over, np.minimum(sc - 1, np.floor(sc * 0.99)).astype(np.int64), sc)
        if over.any() or sc.min(initial=VTH_MIN) < (VTH_MIN if scale is None else 1):
            continue
        live = big > 0
        grid = 2.0**(e if fine is None else ef)
        rel = grid / (sc[live] * big[live]) if live.any() else np.zeros(1)
        key = (round(float(rel.max()), 12), round(float(rel.mean()), 12), e if blocks == 2 else -e)
        if best is None or key < best[0]:
            best = (key, m, e, sc, fine)
    if best is None:
        what = f"scale={scale}" if scale is not None else f"the smallest useful scale {VTH_MIN}"
        basis = (f"worst-case synaptic input (every input active in every one of {max_steps} steps)" if cal is None
                 else "calibrated synaptic input (margin included)")
        raise CompileError(f"{name}: the {basis} exceeds the 16-bit limit {A_IN_MAX} or the 24-bit voltage even at "
                           f"{what}; fix: {_WEIGHT_FIX}"
                           + (", or compile for fewer steps, or with data-calibrated ranges (--range calibrated)"
                              if cal is None else ", or a smaller --range-margin"))
    _, m, e, sc, fine = best
    return m, int(e), sc, fine


def lower_conv_layer(syn_name: str, node, pop_name: str, pop: LIF | Readout, max_steps: int, bits: int,
                     scale: int | None, threshold: str, flatten: str = "",
                     in_shape: tuple | None = None, cal=None, blocks: int = 1) -> tuple[CompiledConvLayer, dict]:
    """Lower one synapse (Conv2d, ConvTranspose2d, or Dense feeding a Readout) and its population.
    in_shape: the (C, H, W) a Dense reads (its Flatten's map), default (n_in, 1, 1). cal: calibrated maxima per
    neuron with the margin applied (attributes a_in, v_neg, threshold units; None = worst-case ranges); a
    convolution takes each channel's maximum over its map. blocks: 2 = a second weight block of rounding
    residuals at the smallest exponent where the layer's exponent is above it and it fits (see _choose)."""
    if isinstance(node, (Conv2d, ConvTranspose2d)):
        check_expressible(syn_name, node)
        per_rows = kernel_rows(node)
        kind = "conv" if isinstance(node, Conv2d) else "conv_transpose"
        out_shape = tuple(node.output_shape)
        in_shape = tuple(node.input_shape)
        geometry = dict(stride=tuple(node.stride), padding=tuple(node.padding),
                        output_padding=tuple(getattr(node, "output_padding", (0, 0))))
    else:
        per_rows = node.weight
        kind = "dense"
        out_shape = (node.n_out, 1, 1)
        in_shape = tuple(in_shape) if in_shape is not None else (node.n_in, 1, 1)
        geometry = dict(stride=(1, 1), padding=(0, 0), output_padding=(0, 0))
    if isinstance(pop, Readout):
        dv, v_th, strict, clamp, dt_ms, leak = DECAY_MAX, 1.0, False, False, 1.0, pop.leak
    else:
        dv = lif_decay(pop_name, pop)
        v_th, strict, clamp, dt_ms, leak = pop.v_th, pop.strict, pop.clamp, pop.dt_ms, pop.leak
    cal_rows = None
    if cal is not None:
        a_in, v_neg = np.asarray(cal.a_in, dtype=np.float64), np.asarray(cal.v_neg, dtype=np.float64)
        if isinstance(pop, Readout):
            v_neg = np.zeros_like(v_neg)
        if kind != "dense":
            a_in, v_neg = a_in.reshape(out_shape[0], -1).max(axis=1), v_neg.reshape(out_shape[0], -1).max(axis=1)
        cal_rows = (a_in, v_neg)
    m_rows, exp, sc_rows, fine_rows = _choose(f"{syn_name} -> {pop_name}", per_rows / v_th, dv, max_steps, bits,
                                              threshold == "layer", scale, cal_rows, blocks)
    per_neuron = int(np.prod(out_shape[1:]))
    scales = np.repeat(sc_rows, per_neuron) if kind != "dense" else sc_rows
    if isinstance(pop, Readout):
        vth, dv_code = scales.copy(), 0
    else:
        vth, dv_code = (scales - 1 if (dv == 0 and not strict) else scales), dv
    if vth.min() < 0 or vth.max() > VTH_MAX:
        raise CompileError(f"{pop_name}: thresholds in [{vth.min()}, {vth.max()}] do not fit the 17-bit field "
                           f"[0, {VTH_MAX}]; fix: pass a scale in [{VTH_MIN}, {VTH_MAX}]")
    weights = rows_to_kernel(m_rows, node) if kind != "dense" else m_rows
    layer = CompiledConvLayer(
        name=pop_name, synapse=syn_name, kind=kind, population="readout" if isinstance(pop, Readout) else "lif",
        flatten=flatten, weights=np.ascontiguousarray(weights, dtype=np.int32), weight_exp=exp, num_weight_bits=bits,
        in_shape=in_shape, out_shape=out_shape, **geometry, du=DU_NO_MEMORY, dv=int(dv_code),
        vth=vth.astype(np.int64), scale=scales.astype(np.int64),
        weights_float=np.array(node.weight, dtype=np.float64), du_float=1.0,
        dv_float=0.0 if isinstance(pop, Readout) else 1.0 - leak,
        vth_float=float(v_th if strict or isinstance(pop, Readout) else np.nextafter(v_th, 0.0)), leak=leak,
        v_th=v_th, strict=strict, clamp=clamp, dt_ms=dt_ms,
        fine_weights=None if fine_rows is None else np.ascontiguousarray(rows_to_kernel(fine_rows, node)
                                                                         if kind != "dense" else fine_rows,
                                                                         dtype=np.int32),
        fine_exp=0 if fine_rows is None else weight_exp_min(bits))
    eff_int = effective_weights(m_rows, exp)
    if fine_rows is not None:
        eff_int = eff_int + effective_weights(fine_rows, weight_exp_min(bits))
    eff = eff_int / sc_rows[:, None]
    _, hi, _ = MANTISSA[bits]
    rows = worst_case_rows(eff_int, dv, max_steps)
    entry = {"name": pop_name, "synapse": syn_name, "kind": kind, "population": layer.population,
             "threshold": "given" if scale is not None else threshold, "scale_min": int(sc_rows.min()),
             "scale_max": int(sc_rows.max()), "weight_exp": exp,
             "fine_exp": None if fine_rows is None else weight_exp_min(bits),
             "fine_nonzero": 0 if fine_rows is None else int(np.count_nonzero(fine_rows)),
             "dv": int(dv_code), "leak": leak,
             "leak_eff": layer.leak_eff, "mantissa_used": float(np.abs(m_rows).max(initial=0) / hi),
             "max_weight_error": float(np.abs(eff - per_rows / v_th).max(initial=0.0)),
             "worst_case": {k: float(v.max(initial=0.0)) for k, v in rows.items()},
             "clamp_dropped": bool(clamp), "lava": lava_mapping(layer)}
    if cal_rows is not None:
        crow = _rows(None, sc_rows, dv, max_steps, cal_rows)
        entry["calibrated"] = {"a_in": float(crow["a_in"].max(initial=0.0)), "u": float(crow["a_in"].max(initial=0.0)
                                                                                        * 64),
                               "v_neg": float(crow["v_neg"].max(initial=0.0))}
    return layer, entry


# ---- Lava layouts -------------------------------------------------------------------------------------------------

def lava_mapping(cl: CompiledConvLayer) -> str:
    """How the synapse runs on Lava: 'Dense', 'Conv' or 'Sparse' (a ConvTranspose2d Lava's Conv cannot express)."""
    if cl.kind == "dense":
        return "Dense"
    if cl.kind == "conv":
        return "Conv"
    kh, kw = cl.weights.shape[2:]
    ok = cl.stride == (1, 1) and cl.output_padding == (0, 0) and cl.padding[0] <= kh - 1 and cl.padding[1] <= kw - 1
    return "Conv" if ok else "Sparse"


def lava_perm(shape: tuple) -> np.ndarray:
    """P with lava_vector[P] = torch_vector for a (C, H, W) map: Lava flattens (W, H, C) in C order."""
    c, h, w = shape
    return np.arange(c * h * w).reshape(w, h, c).transpose(2, 1, 0).reshape(-1)


def to_lava_map(x: np.ndarray, shape: tuple) -> np.ndarray:
    """(..., C*H*W) in torch order -> (..., W, H, C)."""
    c, h, w = shape
    lead = x.shape[:-1]
    y = x.reshape(lead + (c, h, w))
    nd = len(lead)
    return y.transpose(tuple(range(nd)) + (nd + 2, nd + 1, nd))


def from_lava_map(x: np.ndarray, shape: tuple) -> np.ndarray:
    """(..., W, H, C) -> (..., C*H*W) in torch order."""
    nd = x.ndim - 3
    y = x.transpose(tuple(range(nd)) + (nd + 2, nd + 1, nd))
    return y.reshape(x.shape[:nd] + (int(np.prod(shape)),))


def lava_shapes(cc: CompiledConv) -> list[tuple | None]:
    """Map shape (C, H, W) of the input and of every population as Lava holds them ((W, H, C) processes), None for
    flat vectors: a population is a map when a convolution feeds it or reads it."""
    layers = cc.layers
    shapes: list[tuple | None] = [layers[0].in_shape if layers[0].kind != "dense" else None]
    for k, cl in enumerate(layers):
        if cl.kind != "dense":
            shapes.append(cl.out_shape)
        elif k + 1 < len(layers) and layers[k + 1].kind != "dense":
            shapes.append(layers[k + 1].in_shape)
        else:
            shapes.append(None)
    return shapes


def lava_dense_weights(w: np.ndarray, src: tuple | None, dst: tuple | None) -> np.ndarray:
    """Dense weights (n_out, n_in) in torch order -> Lava order (columns / rows of map populations permuted)."""
    out = np.array(w)
    if src is not None:
        tmp = np.empty_like(out)
        tmp[:, lava_perm(src)] = out
        out = tmp
    if dst is not None:
        tmp = np.empty_like(out)
        tmp[lava_perm(dst), :] = out
        out = tmp
    return out


def lava_conv_weights(w: np.ndarray, cl: CompiledConvLayer) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    """Lava Conv (weight (C_out, W, H, C_in), padding (X, Y), stride (X, Y)) of a layer that maps to Conv; ``w``:
    weights in the IR layout (effective integers or floats)."""
    if cl.kind == "conv":
        return (np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)),
                (cl.padding[1], cl.padding[0]), (cl.stride[1], cl.stride[0]))
    kh, kw = w.shape[2:]
    return (np.ascontiguousarray(w.transpose(1, 3, 2, 0)), (kw - 1 - cl.padding[1], kh - 1 - cl.padding[0]), (1, 1))


def conv_transpose_matrix(w: np.ndarray, cl: CompiledConvLayer):
    """scipy csr (n_out, n_in) of a ConvTranspose2d in Lava's (W, H, C) order; ``w``: (C_in, C_out, kH, kW)."""
    from scipy.sparse import coo_matrix

    c_in, h, wd = cl.in_shape
    c_out, ho, wo = cl.out_shape
    kh, kw = w.shape[2:]
    (sh, sw), (ph, pw) = cl.stride, cl.padding
    c, y, x, i, j, o = np.meshgrid(np.arange(c_in), np.arange(h), np.arange(wd), np.arange(kh), np.arange(kw),
                                   np.arange(c_out), indexing="ij")
    oy, ox = y * sh + i - ph, x * sw + j - pw
    keep = (oy >= 0) & (oy < ho) & (ox >= 0) & (ox < wo)
    c, y, x, i, j, o, oy, ox = (a[keep] for a in (c, y, x, i, j, o, oy, ox))
    vals = w[c, o, i, j]
    rows = ox * ho * c_out + oy * c_out + o          # Lava flat index of (o, oy, ox) in (W, H, C)
    cols = x * h * c_in + y * c_in + c
    nz = vals != 0
    return coo_matrix((vals[nz], (rows[nz], cols[nz])), shape=(c_out * ho * wo, c_in * h * wd)).tocsr()


def lava_scale_per_neuron(scale: np.ndarray, shape: tuple | None) -> np.ndarray:
    """Per-neuron values (torch order) in the Lava process's shape."""
    return scale if shape is None else to_lava_map(np.asarray(scale), shape)
