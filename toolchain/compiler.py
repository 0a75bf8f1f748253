"""Quantizer and mapper: TemporalNetwork (float alpha neurons) -> CompiledNetwork (Lava CUBA LIF, fixed point).

Mapping (derivation and measured errors: docs/compiler.md, format: docs/compiled-format.md):

* time grid: S steps per model time unit, h = 1/S; input at time t -> source column round(t S); a spike of
  layer l acts on layer l + 1 at the end of its step, on average h/2 late, so layer l's inputs lag by l/2 steps
  on average: its pulses are placed at round(t S + l/2) and its reported columns are read back l/2 steps earlier
  (``CompiledLayer.time_offset_steps``), which removes the systematic lag (docs/compiler.md);
* alpha synapse = CUBA LIF with equal current and voltage decay d = exp(-tau h), deployed dd = 1 - D/4096:
  float: du = dv = 1 - d, w_lava = w h d, vth = theta;
  fixed: D = round(4096 (1 - d)), du = D - 1, dv = D (Lava's u decay carries an offset of 1),
  w_int = round(w h dd vth / theta / 2**wexp) with the smallest wexp >= 0 that fits the mantissa: 8 bits mixed
  sign = even values in [-256, 254] (Lava masks the LSB), 9 bits = [-256, 255]; ordinary inputs and pulses are
  two synapse blocks with their own exponents (pulse weights are typically 5x larger than input weights);
* vth (17-bit mantissa, spike when v > vth * 64) is chosen per layer, unless given: the largest value <= 2**16
  that the worst-case ranges allow, then lowered (by less than 2x) so that the largest input weight uses the
  full mantissa range, which maximises the relative weight precision;
* worst-case magnitudes (16-bit input per step, 24-bit wrapping u, 24-bit saturating v) are checked per layer:
  a value that can overflow raises CompileError naming the layer, the value, the limit and a fix.
"""
from __future__ import annotations

import math
import platform
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from models.network import AlphaLayer, TemporalNetwork
from toolchain.compiled import CompiledLayer, CompiledNetwork
from toolchain.errors import ArtifactError, CompileError

DEFAULT_STEPS_PER_UNIT = 32
DECAY_BITS = 12
DECAY_UNITY = 1 << DECAY_BITS  # 4096
VTH_BITS = 17
VTH_MAX = (1 << VTH_BITS) - 1  # 131071
VTH_AUTO_MAX = 1 << 16  # default cap when vth is chosen automatically
VTH_MIN = 256  # below this the weight grid (2 / vth theta per step) is too coarse to be useful
UV_BITS = 24
UV_MAX = (1 << (UV_BITS - 1)) - 1  # |u|, |v| must stay <= 2**23 - 1
STATE_SHIFT = 6  # Lava shifts a_in and vth left by 6 bits
A_IN_BITS = 16
A_IN_MAX = (1 << (A_IN_BITS - 1)) - 1  # signed 16-bit synaptic input per step
WEIGHT_BITS = 8  # default: Loihi 2 / Lava Dense default; 9 is allowed (Loihi 1 supports 1-9 bit weights)
MANTISSA = {8: (-256, 254, 2), 9: (-256, 255, 1)}  # mixed sign: (min, max, step); 8 bits: Lava masks the LSB
WEIGHT_EXP_MAX = 7
MAX_STEPS_PER_UNIT = 1 << 20
DEFAULT_HORIZON_MARGIN = 1.0  # time units simulated after latency + 1 (the last expected output)


def decay_constant(tau: float, steps_per_unit: float) -> tuple[float, int]:
    """(d, D): float per-step decay d = exp(-tau / S) and its 12-bit code D = round(4096 (1 - d))."""
    d = math.exp(-tau / steps_per_unit)
    return d, int(round(DECAY_UNITY * (1.0 - d)))


def effective_tau(D: int, steps_per_unit: float) -> float:
    """Decay rate (1 / time unit) that the 12-bit decay D realises on a grid of S steps per unit."""
    return -steps_per_unit * math.log(1.0 - D / DECAY_UNITY)


def mantissa_round(x: np.ndarray, bits: int = WEIGHT_BITS) -> np.ndarray:
    """Round to the mantissa grid of ``bits``-bit mixed-sign weights (8: even integers, 9: integers)."""
    step = MANTISSA[bits][2]
    return (step * np.rint(np.asarray(x, dtype=np.float64) / step)).astype(np.int64)


def choose_weight_exp(x: np.ndarray, layer: str, bits: int = WEIGHT_BITS) -> int:
    """Smallest exponent e >= 0 with the rounded mantissas of x / 2**e inside the ``bits``-bit range."""
    lo, hi, _ = MANTISSA[bits]
    big = float(np.abs(x).max(initial=0.0))
    for e in range(WEIGHT_EXP_MAX + 1 if math.isfinite(big) and big / 2.0**WEIGHT_EXP_MAX <= 256.0 else 0):
        q = mantissa_round(x / 2.0**e, bits)
        if q.size == 0 or (q.min() >= lo and q.max() <= hi):
            return e
    raise CompileError(
        f"{layer}: scaled weights up to {big:.4g} need a weight exponent above the limit "
        f"{WEIGHT_EXP_MAX}; fix: pass a smaller vth (e.g. vth={max(1, int(VTH_MIN))}) or a larger steps_per_unit"
    )


def _check_grid(net: TemporalNetwork, S: float) -> tuple[float, int]:
    if not (isinstance(S, (int, np.integer)) and not isinstance(S, bool)):
        raise CompileError(f"steps_per_unit must be an integer, got {S!r}; fix: pass e.g. steps_per_unit=32")
    if S < 2 or S > MAX_STEPS_PER_UNIT:
        raise CompileError(
            f"steps_per_unit={S} is outside [2, {MAX_STEPS_PER_UNIT}]; fix: use e.g. {DEFAULT_STEPS_PER_UNIT}"
        )
    d, D = decay_constant(net.tau, S)
    if D < 1:
        s_max = int(net.tau / -math.log(1.0 - 0.5 / DECAY_UNITY))
        raise CompileError(
            f"steps_per_unit={S} is too large for tau={net.tau:g}: the 12-bit decay 4096 (1 - exp(-tau/S)) = "
            f"{DECAY_UNITY * (1 - d):.3g} rounds to 0 (limit: >= 1, i.e. no decay at all); "
            f"fix: use steps_per_unit <= {s_max}"
        )
    if D >= DECAY_UNITY:
        s_min = int(math.ceil(net.tau / math.log(2 * DECAY_UNITY))) + 1
        raise CompileError(
            f"steps_per_unit={S} is too small for tau={net.tau:g}: the 12-bit decay rounds to {D} "
            f"(limit: <= {DECAY_UNITY - 1}; the neuron would forget everything in one step); "
            f"fix: use steps_per_unit >= {s_min}"
        )
    return d, D


def _offset(k: int, centre: bool) -> float:
    """Mean lag (steps) of layer k's inputs on the grid: k/2 with centring, else 0 (see module doc)."""
    return 0.5 * k if centre else 0.0


def _pulse_columns(layer: AlphaLayer, S: float, offset: float = 0.0) -> tuple[np.ndarray, list[list[int]]]:
    """Pulse source columns round(t S + offset) (halves round up), and the pairs [i, j, column] of distinct pulse
    times sharing a column.

    Pulses in one column act as one pulse with the summed weight (Dense adds them), so a collision is an
    approximation, not an error: it is recorded in the manifest, shown by ``snnc compile`` and measured by the
    verifier. (Trained pulse times often drift together near t = 0.)
    """
    cols = np.floor(layer.pulse_times * S + offset + 0.5).astype(np.int64)
    times = layer.pulse_times
    collisions = [[i, j, int(cols[i])] for i in range(len(cols)) for j in range(i + 1, len(cols))
                  if cols[i] == cols[j] and times[i] != times[j]]
    return cols, collisions


def _peak_factor(D: int, window: int, repeated: bool) -> float:
    """Worst-case v / (u increment) for one input: max_n (n+1) r^n (once) or sum_n (n+1) r^n (every step)."""
    r = 1.0 - D / DECAY_UNITY
    n = np.arange(window, dtype=np.float64)
    k = (n + 1.0) * r**n
    return float(k.sum() if repeated else k.max())


def _worst_case(w: np.ndarray, vth: int, D: int, window: int, inputs_once: bool) -> dict:
    """Worst-case integer magnitudes of one layer (every input/pulse at the same step, once per window).

    w: (n_out, n_in + n_pulses) int64 effective weights w_int * 2**weight_exp of both synapse blocks."""
    pos = np.where(w > 0, w, 0).sum(axis=1)
    neg = np.where(w < 0, -w, 0).sum(axis=1)
    a_max = int(max(pos.max(initial=0), neg.max(initial=0)))  # |a_in| per step (16-bit)
    r_u = 1.0 - D / DECAY_UNITY  # u decays with du + 1 = D
    u_gain = 1.0 if inputs_once else min(float(window), 1.0 / (1.0 - r_u))
    u_max = a_max * (1 << STATE_SHIFT) * u_gain
    p = _peak_factor(D, window, not inputs_once)
    v_neg = float(neg.max(initial=0)) * (1 << STATE_SHIFT) * p
    v_pos = vth * (1 << STATE_SHIFT) + float(pos.max(initial=0)) * (1 << STATE_SHIFT) * u_gain
    return {"a_in_max": a_max, "u_max": u_max, "v_neg_max": v_neg, "v_pos_max": v_pos}


def _range_violations(wc: dict) -> list[tuple[str, float, int]]:
    out = []
    if wc["a_in_max"] > A_IN_MAX:
        out.append(("synaptic input per step |a_in|", wc["a_in_max"], A_IN_MAX))
    if wc["u_max"] > UV_MAX:
        out.append(("current |u| (24-bit, wraps)", wc["u_max"], UV_MAX))
    if wc["v_neg_max"] > UV_MAX:
        out.append(("negative voltage |v| (24-bit, saturates)", wc["v_neg_max"], UV_MAX))
    if wc["v_pos_max"] > UV_MAX:
        out.append(("positive voltage v (24-bit, saturates)", wc["v_pos_max"], UV_MAX))
    return out


@dataclass(frozen=True)
class _Quantized:
    w_int: np.ndarray  # (n_out, n_in) mantissas of the input block
    wexp: int
    p_int: np.ndarray  # (n_out, n_pulses) mantissas of the pulse block
    pexp: int
    effective: np.ndarray  # (n_out, n_in + n_pulses) int64 w_int * 2**exp of both blocks
    worst: dict


def _quantize_block(x: np.ndarray, name: str, bits: int) -> tuple[np.ndarray, int]:
    """Scaled weights -> (int64 mantissas, exponent) of one synapse block."""
    e = choose_weight_exp(x, name, bits)
    return mantissa_round(x / 2.0**e, bits), e


def _quantize_layer(name: str, layer: AlphaLayer, scale: float, vth: int, D: int, window: int,
                    inputs_once: bool, bits: int) -> _Quantized:
    w_int, wexp = _quantize_block(layer.weights * (scale * vth), name, bits)
    p_int, pexp = _quantize_block(layer.pulse_weights * (scale * vth), name, bits)
    effective = np.hstack([w_int << wexp, p_int << pexp])
    return _Quantized(w_int, wexp, p_int, pexp, effective, _worst_case(effective, vth, D, window, inputs_once))


def _fits(name: str, layer: AlphaLayer, scale: float, vth: int, D: int, window: int, inputs_once: bool,
          bits: int) -> bool:
    if np.abs(layer.all_weights()).max(initial=0.0) * scale * vth / 2.0**WEIGHT_EXP_MAX > 127.0:
        return False
    return not _range_violations(_quantize_layer(name, layer, scale, vth, D, window, inputs_once, bits).worst)


def _fix_for(what: str) -> str:
    if what.startswith("synaptic input"):
        return ("use a larger steps_per_unit (the input per step shrinks with h) or reduce the summed weight "
                "magnitude per neuron (retrain with weight regularisation)")
    return "reduce the summed weight magnitude per neuron relative to theta (retrain with weight regularisation)"


def _auto_vth(name: str, layer: AlphaLayer, scale: float, D: int, window: int, inputs_once: bool, bits: int) -> int:
    """vth for one layer: the largest value <= 2**16 whose worst-case ranges fit (halving, then bisecting),
    lowered so that the largest input weight lands on the top of the mantissa range (best relative weight
    precision; the lowering is < 2x). CompileError when even VTH_MIN does not fit."""
    vth = VTH_AUTO_MAX
    while vth >= VTH_MIN and not _fits(name, layer, scale, vth, D, window, inputs_once, bits):
        vth //= 2
    if vth < VTH_MIN:
        wc = _quantize_layer(name, layer, scale, VTH_MIN, D, window, inputs_once, bits).worst
        what, value, limit = _range_violations(wc)[0]
        raise CompileError(
            f"{name}: worst-case {what} = {value:.4g} exceeds the limit {limit} even at the smallest useful "
            f"vth={VTH_MIN}; fix: {_fix_for(what)}"
        )
    lo, hi = vth, min(2 * vth, VTH_AUTO_MAX + 1)  # lo fits; find the largest fitting value below hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _fits(name, layer, scale, mid, D, window, inputs_once, bits):
            lo = mid
        else:
            hi = mid
    big = float(np.abs(layer.weights).max(initial=0.0)) * scale
    wexp = _quantize_layer(name, layer, scale, lo, D, window, inputs_once, bits).wexp
    if big > 0 and wexp > 0:
        full = int(MANTISSA[bits][1] * 2.0 ** (wexp - 1) / big)  # top of the mantissa at exponent wexp - 1
        if VTH_MIN <= full < lo and _fits(name, layer, scale, full, D, window, inputs_once, bits):
            return full
    return lo


def _check_finite(net: TemporalNetwork) -> None:
    for k, layer in enumerate(net.layers):
        for field in ("weights", "pulse_times", "pulse_weights"):
            a = getattr(layer, field)
            if not np.all(np.isfinite(a)):
                raise CompileError(f"layer{k}.{field} contains NaN or inf; fix: retrain or repair the model")
    for field in ("tau", "theta", "latency"):
        v = getattr(net, field)
        if not math.isfinite(v):
            raise CompileError(f"{field}={v} is not finite; fix: repair the model's {field}")


def default_window(net: TemporalNetwork, steps_per_unit: float, margin: float = DEFAULT_HORIZON_MARGIN) -> int:
    """Steps per sample window: covers crossings up to max(latency + 1, last pulse, 1) + margin time units."""
    last_pulse = max((float(l.pulse_times.max()) for l in net.layers if l.n_pulses), default=0.0)
    horizon = max(net.latency + 1.0, last_pulse, 1.0) + margin
    return int(math.ceil(horizon * steps_per_unit)) + 1


def _versions() -> dict:
    v = {"python": platform.python_version(), "numpy": np.__version__}
    try:
        from importlib.metadata import version

        v["lava-nc"] = version("lava-nc")
    except Exception:  # lava is optional for compiling
        v["lava-nc"] = None
    return v


def compile_network(net: TemporalNetwork, steps_per_unit: int = DEFAULT_STEPS_PER_UNIT, vth: int | None = None,
                    compensate_tau: bool = False, source_hash: str = "", window: int | None = None,
                    horizon_margin: float = DEFAULT_HORIZON_MARGIN, weight_bits: int = WEIGHT_BITS,
                    centre: bool = True) -> CompiledNetwork:
    """Quantize and map ``net`` onto Lava CUBA LIF neurons (fixed and float mapping).

    steps_per_unit: S, integer steps per model time unit.
    vth:            17-bit threshold mantissa for every layer; None = per layer, as large as ranges allow.
    compensate_tau: the 12-bit decay D realises tau_eff = -S ln(1 - D/4096) != tau. With True, the time grid is
                    stretched to S' = S tau / tau_eff steps per unit (a float), so the deployed decay per model
                    time unit equals tau exactly (float and fixed mappings both use decay 1 - D/4096).
    window:         steps per sample window (default: :func:`default_window`).
    weight_bits:    8 (Loihi 2, Lava's default; even mantissas) or 9 (Loihi 1: 1-9 bit weights).
    centre:         place layer l's pulses l/2 steps later and read its spikes l/2 steps earlier, cancelling
                    the mean lag of grid spikes (docs/compiler.md); False reproduces the plain mapping.
    """
    if weight_bits not in MANTISSA:
        raise CompileError(f"weight_bits={weight_bits!r} is not supported; fix: use 8 (Loihi 2) or 9 (Loihi 1)")
    if not isinstance(net, TemporalNetwork):
        raise CompileError(f"compile_network needs a TemporalNetwork, got {type(net).__name__}; "
                           "fix: load the model with toolchain.artifact.load_onnx")
    _check_finite(net)
    d, D = _check_grid(net, steps_per_unit)
    tau_eff = effective_tau(D, steps_per_unit)
    S = float(steps_per_unit)
    if compensate_tau:
        S = steps_per_unit * net.tau / tau_eff
        d = 1.0 - D / DECAY_UNITY
    grid = S if compensate_tau else steps_per_unit
    if vth is not None:
        if isinstance(vth, bool) or not isinstance(vth, (int, np.integer)) or not 1 <= vth <= VTH_MAX:
            raise CompileError(f"vth={vth!r} is not an integer in [1, {VTH_MAX}] (17-bit threshold); "
                               "fix: pass e.g. vth=8192 or leave vth unset for the automatic choice")
    W = default_window(net, S, horizon_margin) if window is None else int(window)
    last_col = 0
    for k, layer in enumerate(net.layers):
        if layer.n_pulses:
            last_col = max(last_col, int(_pulse_columns(layer, S, _offset(k, centre))[0].max()))
    if W < last_col + 2 or W < 3:
        raise CompileError(f"window={W} steps is too short: it must exceed the last pulse column {last_col} "
                           f"by 2 and be >= 3; fix: leave window unset or pass window >= {max(3, last_col + 2)}")

    h = 1.0 / S
    scale_float = h * d  # w_lava = w h d
    layers: list[CompiledLayer] = []
    layer_manifest = []
    for k, layer in enumerate(net.layers):
        name = f"layer{k}"
        pulse_cols, collisions = _pulse_columns(layer, S, _offset(k, centre))
        w_all = layer.all_weights()
        # integer increment per unit weight and unit vth; uses the deployed decay dd = 1 - D/4096 so that the
        # fixed mapping is exactly an alpha network with tau_eff and quantized weights (deployed_network)
        scale = h * (1.0 - D / DECAY_UNITY) / net.theta
        inputs_once = True  # inputs and alpha neurons spike at most once per window
        v = _auto_vth(name, layer, scale, D, W, inputs_once, weight_bits) if vth is None else int(vth)
        q = _quantize_layer(name, layer, scale, v, D, W, inputs_once, weight_bits)
        wc = q.worst
        bad = _range_violations(wc)
        if bad:
            what, value, limit = bad[0]
            raise CompileError(
                f"{name}: worst-case {what} = {value:.4g} exceeds the limit {limit} at vth={v}; "
                f"fix: pass a smaller vth (or leave vth unset for the automatic choice), or {_fix_for(what)}"
            )
        w_int = np.hstack([q.w_int, q.p_int]).astype(np.int32)
        if not np.any(w_int) and np.any(w_all):
            raise CompileError(
                f"{name}: every weight quantizes to 0 (max |w| / theta = {np.abs(w_all).max() / net.theta:.3g}), so "
                f"the deployed layer would never spike; fix: check the model's theta ({net.theta:g}) and weight "
                f"scale, or retrain"
            )
        deployed = q.effective.astype(np.float64) / (scale * v)
        err = np.abs(deployed - w_all)
        layers.append(CompiledLayer(
            name=name,
            weights=np.ascontiguousarray(w_int[:, : layer.n_in]),
            pulse_weights=np.ascontiguousarray(w_int[:, layer.n_in:]),
            pulse_steps=pulse_cols,
            weight_exp=int(q.wexp),
            pulse_weight_exp=int(q.pexp),
            time_offset_steps=_offset(k, centre),
            du=D - 1,
            dv=D,
            vth=v,
            once=True,
            weights_float=layer.weights * scale_float,
            pulse_weights_float=layer.pulse_weights * scale_float,
            du_float=1.0 - d,
            dv_float=1.0 - d,
            vth_float=float(net.theta),
            kind="dense",
            num_weight_bits=int(weight_bits),
        ))
        layer_manifest.append({
            "name": name, "kind": "dense", "n_in": layer.n_in, "n_out": layer.n_out, "n_pulses": layer.n_pulses,
            "pulse_steps": [int(c) for c in pulse_cols], "pulse_collisions": collisions, "vth": v, "vth_bits": VTH_BITS, "weight_exp": int(q.wexp),
            "pulse_weight_exp": int(q.pexp), "time_offset_steps": _offset(k, centre),
            "weight_bits": int(weight_bits), "weight_scale": scale * v / 2.0**q.wexp,
            "pulse_weight_scale": scale * v / 2.0**q.pexp,
            "weight_quant_max_abs_err": float(err.max(initial=0.0)),
            "weight_quant_max_abs_err_over_theta": float(err.max(initial=0.0) / net.theta),
            "du": D - 1, "dv": D, "decay_bits": DECAY_BITS, "once": True,
            "worst_case": {key: float(val) for key, val in wc.items()},
            "limits": {"a_in": A_IN_MAX, "u": UV_MAX, "v": UV_MAX},
        })
    manifest = {
        "format": "snnc-compiled",
        "source_hash": source_hash,
        "steps_per_unit": S if compensate_tau else int(steps_per_unit),
        "steps_per_unit_requested": int(steps_per_unit),
        "window": W,
        "tau": net.tau,
        "tau_eff": net.tau if compensate_tau else tau_eff,
        "tau_eff_uncompensated": tau_eff,
        "tau_rel_error": 0.0 if compensate_tau else tau_eff / net.tau - 1.0,
        "compensate_tau": bool(compensate_tau),
        "decay_D": D,
        "decay_float": d,
        "theta": net.theta,
        "latency": net.latency,
        "encoding": net.encoding,
        "state_shift": STATE_SHIFT,
        "uv_bits": UV_BITS,
        "a_in_bits": A_IN_BITS,
        "layers": layer_manifest,
        "tool_versions": _versions(),
    }
    return CompiledNetwork(steps_per_unit=grid, window=W, layers=tuple(layers), source=net, manifest=manifest)


def compile_file(onnx_path: str | Path, **kw) -> CompiledNetwork:
    """Load an ONNX artifact (toolchain.artifact.load_onnx) and compile it; the file's SHA-256 goes in the
    manifest as ``source_hash``."""
    from toolchain.artifact import load_onnx, model_hash

    path = Path(onnx_path)
    if not path.is_file():
        raise ArtifactError(f"model file {path} does not exist; fix: pass the path of a model.onnx "
                            "written by `snnc train` or toolchain.artifact.save_onnx")
    net = load_onnx(path)
    kw.setdefault("source_hash", model_hash(path))
    cn = compile_network(net, **kw)
    cn.manifest["source_path"] = str(path)
    return cn


def deployed_network(cn: CompiledNetwork) -> TemporalNetwork:
    """The float alpha network that the fixed-point mapping realises (for analysis and verification):
    weights w_int 2**e theta / (vth h dd) and tau_eff = -S ln(dd), dd = 1 - dv/4096, from the integers
    themselves (so hand-built compiled networks work too). Pulse times stay the source's."""
    S = float(cn.steps_per_unit)
    dvs = {int(cl.dv) for cl in cn.layers}
    if len(dvs) != 1 or any(cl.du != cl.dv - 1 for cl in cn.layers):
        raise CompileError("deployed_network needs alpha layers with one shared decay (du = D - 1, dv = D in every "
                           f"layer), got du/dv {[(cl.du, cl.dv) for cl in cn.layers]}; fix: compile the network "
                           "with toolchain.compiler.compile_network")
    (D,) = dvs
    dd = 1.0 - D / DECAY_UNITY
    layers = []
    for cl, src in zip(cn.layers, cn.source.layers):
        scale = dd * cl.vth / (S * cn.source.theta)
        layers.append(AlphaLayer(cl.weights * 2.0**cl.weight_exp / scale, src.pulse_times,
                                 cl.pulse_weights * 2.0**cl.pulse_exp / scale))
    return replace(cn.source, layers=tuple(layers), tau=effective_tau(D, S))
