"""CompiledSteps: a steps-time graph (Dense + LIF chain) lowered onto Lava 0.10's stock ``lava.proc.dense.Dense``
and ``lava.proc.lif.LIF`` / ``LIFReset`` processes, in both precisions (schema and derivation: docs/compiler.md,
"Steps graphs (LIF)").

Per layer k (population ``name`` fed by synapse ``synapse``), fixed point (``lava-fixed``, hw_sim):

    a[t]  = (sum_i weights[j, i] s_i[t-1]) * 2**weight_exp           (Dense: one step of delay)
            [+ (sum_i fine_weights[j, i] s_i[t-1]) * 2**fine_exp]     (optional second Dense into the same LIF)
    u[t]  = a[t] << 6                                                 (du = 4095: u is this step's input)
    v[t]  = clip(trunc0(v[t-1] (4096 - dv) / 4096) + u[t], -(2**23 - 1), 2**23 - 1)
    s[t]  = v[t] > vth << 6;  v[t] = 0 where s[t]

float (``lava-float``): du_float = 1, dv_float = 1 - leak, weights_float = the IR weights, vth_float = the IR
threshold (the largest float64 below it when the IR spikes on V >= v_th, so Lava's strict test is exactly >=).
``scale[j]`` = integer units (of u / 64) per unit of the IR threshold for neuron j (row j of the weights is scaled
by it): vth = scale - 1 for V >= v_th without leak (v is then a multiple of 64: exact), vth = scale with leak
(misses only v == scale << 6 exactly) and for strict LIF nodes.

Layer k lags the float model (toolchain/lif_reference.py) by k + 1 steps in Lava (one per Dense) plus the source's
own step; targets shift results back (``lag_steps``).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from toolchain.errors import ArtifactError
from toolchain.ir import LIF, Dense, Graph, Input
from toolchain.quantize import DECAY_MAX, MANTISSA, VTH_MAX, WEIGHT_EXP_MAX, effective_weights, weight_exp_min

FORMAT = "snnc-compiled-steps"
FORMAT_VERSION = 1
MAX_STEPS = 1 << 24  # longest sample the range checks may cover


@dataclass(frozen=True)
class CompiledStepsLayer:
    """One Dense -> LIF pair. Integers: see the module docstring; ``leak`` / ``v_th`` are the IR's values."""

    name: str
    synapse: str
    weights: np.ndarray        # (n_out, n_in) int32 mantissas
    weight_exp: int
    num_weight_bits: int
    du: int                    # 12-bit; 4095 = no current memory
    dv: int                    # 12-bit voltage decay code
    vth: np.ndarray            # (n_out,) int64, 17-bit; neuron j spikes when v > vth[j] << 6
    scale: np.ndarray          # (n_out,) int64 integer units per IR threshold (see module docstring)
    weights_float: np.ndarray  # (n_out, n_in) float64
    du_float: float
    dv_float: float
    vth_float: float
    leak: float
    v_th: float
    strict: bool
    clamp: bool
    dt_ms: float = 1.0
    fine_weights: np.ndarray | None = None   # (n_out, n_in) int32 mantissas of a second Dense block, or None
    fine_exp: int = 0                        # its weight exponent (< weight_exp)

    @property
    def effective(self) -> np.ndarray:
        """(n_out, n_in) int64 integer weights the Dense block(s) realise: weights * 2**weight_exp, plus
        fine_weights * 2**fine_exp when the layer has a second block (Lava sums both Dense outputs into a_in)."""
        eff = effective_weights(self.weights, self.weight_exp)
        if self.fine_weights is not None:
            eff = eff + effective_weights(self.fine_weights, self.fine_exp)
        return eff

    @property
    def n_in(self) -> int:
        return int(self.weights.shape[1])

    @property
    def n_out(self) -> int:
        return int(self.weights.shape[0])

    @property
    def leak_eff(self) -> float:
        """Per-step voltage factor the 12-bit code realises: 1 - dv / 4096."""
        return 1.0 - self.dv / 4096.0


@dataclass(frozen=True)
class CompiledSteps:
    """A compiled steps graph: layers in graph order, checked for samples of up to ``max_steps`` steps.
    ``input_name`` names the source graph's Input node; :attr:`graph` rebuilds that float graph (the IR the
    float targets run and the verifier compares against)."""

    layers: tuple[CompiledStepsLayer, ...]
    max_steps: int
    manifest: dict = field(default_factory=dict)
    input_name: str = "input"

    @property
    def graph(self) -> Graph:
        """The source steps graph: input -> Dense(weights_float) -> LIF(leak, v_th, reset zero, clamp, strict,
        dt_ms) per layer, with the original node names."""
        nodes: dict = {self.input_name: Input(self.n_in)}
        edges, prev = [], self.input_name
        for cl in self.layers:
            nodes[cl.synapse] = Dense(cl.weights_float)
            nodes[cl.name] = LIF(cl.n_out, leak=cl.leak, v_th=cl.v_th, reset="zero", clamp=cl.clamp,
                                 strict=cl.strict, dt_ms=cl.dt_ms)
            edges += [(prev, cl.synapse), (cl.synapse, cl.name)]
            prev = cl.name
        return Graph(nodes, tuple(edges), "steps", {"compiled": "CompiledSteps"})

    @property
    def n_in(self) -> int:
        return self.layers[0].n_in

    @property
    def names(self) -> list[str]:
        return [cl.name for cl in self.layers]

    def lag_steps(self, k: int) -> int:
        """Lava time steps between an input column and layer k's response to it (RingBuffer + k + 1 Dense)."""
        return k + 2


def check_weight_blocks(cl, w: np.ndarray, at: str, bad: Callable[[str, str], Exception]) -> None:
    """Both weight blocks of one compiled layer: ``num_weight_bits`` a known mantissa width, the weights ``w`` and
    ``cl.fine_weights`` mantissas of that width (multiples of its step), ``weight_exp`` in range and ``fine_exp``
    below it. ``bad(at, what)`` makes the error raised (each compiled format names its own fix)."""
    if cl.num_weight_bits not in MANTISSA:
        raise bad(at, f"num_weight_bits={cl.num_weight_bits} is not one of {sorted(MANTISSA)}")
    lo, hi, step = MANTISSA[cl.num_weight_bits]
    if w.size and (w.min() < lo or w.max() > hi or np.any(w & (step - 1))):  # step: 1 or 2
        raise bad(at, f"weights must be multiples of {step} in [{lo}, {hi}] ({cl.num_weight_bits}-bit mantissas)")
    if not weight_exp_min(cl.num_weight_bits) <= cl.weight_exp <= WEIGHT_EXP_MAX:
        raise bad(at, f"weight_exp={cl.weight_exp} is outside [{weight_exp_min(cl.num_weight_bits)}, "
                      f"{WEIGHT_EXP_MAX}]")
    if cl.fine_weights is not None:
        f = np.asarray(cl.fine_weights)
        if f.shape != w.shape or f.dtype.kind not in "iu":
            raise bad(at, f"fine_weights must be an integer array of the weights' shape {w.shape}, got "
                          f"{f.shape} {f.dtype}")
        if f.size and (f.min() < lo or f.max() > hi or np.any(f & (step - 1))):
            raise bad(at, f"fine_weights must be multiples of {step} in [{lo}, {hi}]")
        if isinstance(cl.fine_exp, bool) or not isinstance(cl.fine_exp, (int, np.integer)) \
                or not weight_exp_min(cl.num_weight_bits) <= cl.fine_exp < cl.weight_exp:
            raise bad(at, f"fine_exp={cl.fine_exp!r} must be an integer in "
                          f"[{weight_exp_min(cl.num_weight_bits)}, weight_exp - 1 = {cl.weight_exp - 1}]")


def _bad(where: str, what: str) -> ArtifactError:
    return ArtifactError(f"{where}: {what}; fix: recompile the graph with toolchain.steps_compiler.compile_graph")


def validate_compiled_steps(cs: CompiledSteps, where: str = "compiled steps graph") -> CompiledSteps:
    """Check every field against its hardware range and the layer shapes against each other; ArtifactError
    naming the field otherwise."""
    if not isinstance(cs, CompiledSteps):
        raise ArtifactError(f"{where}: expected a CompiledSteps, got {type(cs).__name__}; fix: pass the result "
                            "of toolchain.steps_compiler.compile_graph")
    if not cs.layers:
        raise _bad(where, "no layers")
    names = [cs.input_name] + [n for cl in cs.layers for n in (cl.synapse, cl.name)]
    if not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise _bad(where, f"node names must be distinct non-empty strings, got {names}")
    if not (isinstance(cs.max_steps, (int, np.integer)) and 1 <= cs.max_steps <= MAX_STEPS):
        raise _bad(where, f"max_steps={cs.max_steps!r} is outside [1, {MAX_STEPS}]")
    prev = None
    for k, cl in enumerate(cs.layers):
        at = f"{where}, layer {k} ({cl.name!r})"
        w = np.asarray(cl.weights)
        if w.ndim != 2 or w.dtype.kind not in "iu" or np.asarray(cl.weights_float).shape != w.shape:
            raise _bad(at, f"weights must be a 2-D integer array with weights_float of the same shape, got "
                           f"{w.shape} {w.dtype} and {np.asarray(cl.weights_float).shape}")
        if prev is not None and w.shape[1] != prev:
            raise _bad(at, f"has {w.shape[1]} inputs but the previous layer has {prev} neurons")
        prev = w.shape[0]
        check_weight_blocks(cl, w, at, _bad)
        for name, v, top in (("du", cl.du, DECAY_MAX), ("dv", cl.dv, DECAY_MAX)):
            if not (isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v <= top):
                raise _bad(at, f"{name}={v!r} is outside the integer range [0, {top}]")
        for name, top in (("vth", VTH_MAX), ("scale", VTH_MAX + 1)):
            a = np.asarray(getattr(cl, name))
            if a.shape != (w.shape[0],) or a.dtype.kind not in "iu":
                raise _bad(at, f"{name} must be an integer array of shape ({w.shape[0]},), got {a.shape} {a.dtype}")
            if a.size and (a.min() < 0 or a.max() > top):
                raise _bad(at, f"{name} values in [{a.min()}, {a.max()}] are outside the integer range [0, {top}]")
        if not np.all(np.isfinite(cl.weights_float)):
            raise _bad(at, "weights_float contains NaN or inf")
        if not (0.0 <= cl.du_float <= 1.0 and 0.0 <= cl.dv_float < 1.0 and np.isfinite(cl.vth_float)
                and cl.vth_float > 0 and 0.0 < cl.leak <= 1.0 and np.isfinite(cl.v_th) and cl.v_th > 0
                and np.isfinite(cl.dt_ms) and cl.dt_ms > 0):
            raise _bad(at, f"float parameters out of range (du_float={cl.du_float}, dv_float={cl.dv_float}, "
                           f"vth_float={cl.vth_float}, leak={cl.leak}, v_th={cl.v_th}, dt_ms={cl.dt_ms})")
    return cs
