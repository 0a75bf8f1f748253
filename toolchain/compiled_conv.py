"""CompiledConv: a steps graph with convolutions (Conv2d, ConvTranspose2d, Flatten, Dense, LIF, Readout; issue
[F]) lowered for Lava 0.10's ``lava.proc.conv`` Conv, ``lava.proc.sparse`` Sparse, ``lava.proc.dense`` Dense and
the stock ``lava.proc.lif`` LIF (schema and derivation: docs/compiler.md, "Convolutional graphs").

Each layer k is one synapse node feeding one population node. Fixed point (``lava-fixed``, hw_sim), per step:

    a[t] = wrap24(sum over the synapse's taps of w_eff * s_src[t-1])     (one step of delay per connection)
    LIF:     u = a << 6;  v = clip(trunc0(v (4096 - dv) / 4096) + u, +-(2**23 - 1));  spike if v > vth << 6; v = 0
    Readout: A[t] = leak * (A[t-1] + a[t] / scale)      (off-chip, float64, from the synaptic input a)

with ``w_eff = weights * 2**weight_exp`` (integer mantissas on the ``num_weight_bits`` grid), plus
``fine_weights * 2**fine_exp`` when the layer has a second weight block (the rounding residuals at the smallest
exponent in a second Conv / Sparse / Dense process of the same geometry feeding the same LIF; Lava sums both
into a). ``weights`` keeps
the IR node's layout (Dense (n_out, n_in), Conv2d (C_out, C_in, kH, kW), ConvTranspose2d (C_in, C_out, kH, kW));
the Lava layouts (flipped, transposed kernels, (W, H, C) maps, Sparse matrices) are derived by
:mod:`toolchain.lower_conv`. Convolutions share one ``scale`` per output channel (per-neuron scaling would break
weight sharing); ``vth`` and ``scale`` are stored per neuron (channel values repeated over the map, C order).

Float (``lava-float``): the IR's float weights, du = 1, dv = 1 - leak, vth_float as in toolchain/compiled_steps.py.

Population k lags the float model (toolchain/lif_reference.py) by k + 2 Lava steps (the source's step plus one per
connection process), plus one per relay stage before it: a Dense layer with ``fan_in_groups`` k > 1 (a fan-in beyond
a core's input axons) runs as k partial sums relayed as graded spikes and summed exactly by the population, one
step later (targets/lava_conv.py); targets shift results back (``lag_steps``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from toolchain.compiled_steps import check_weight_blocks
from toolchain.errors import ArtifactError
from toolchain.ir import LIF, Conv2d, ConvTranspose2d, Dense, Flatten, Graph, Input, Readout
from toolchain.quantize import DECAY_MAX, VTH_MAX

FORMAT = "snnc-compiled-conv"
FORMAT_VERSION = 1
MAX_STEPS = 1 << 24
KINDS = ("dense", "conv", "conv_transpose")
POPULATION_KINDS = ("lif", "readout")


@dataclass(frozen=True)
class CompiledConvLayer:
    """One synapse -> population pair (see the module docstring for the integer equations).

    in_shape:  (C, H, W) map the synapse reads (a flat source is (n_in, 1, 1))
    out_shape: (C, H, W) map the population holds ((n, 1, 1) when fed by a Dense node)
    flatten:   name of the Flatten view between the source and a Dense synapse ("" = none)
    stride, padding, output_padding: the convolution's (h, w) pairs ((1, 1), (0, 0), (0, 0) for Dense)
    """

    name: str
    synapse: str
    kind: str
    population: str
    flatten: str
    weights: np.ndarray          # int32 mantissas, IR weight layout
    weight_exp: int
    num_weight_bits: int
    in_shape: tuple
    out_shape: tuple
    stride: tuple
    padding: tuple
    output_padding: tuple
    du: int
    dv: int
    vth: np.ndarray              # (n_out,) int64
    scale: np.ndarray            # (n_out,) int64 integer units per IR threshold (Readout: per unit of A)
    weights_float: np.ndarray    # IR weights, float64
    du_float: float
    dv_float: float
    vth_float: float
    leak: float
    v_th: float
    strict: bool
    clamp: bool
    dt_ms: float = 1.0
    fine_weights: np.ndarray | None = None   # int32 mantissas of a second block (IR layout), or None
    fine_exp: int = 0                        # its weight exponent (< weight_exp)
    fan_in_groups: int = 1                   # Dense only: inputs split into this many relayed partial sums

    @property
    def n_in(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def blocks(self) -> int:
        """Weight blocks (connection processes into the population): 1, or 2 with fine_weights."""
        return 1 if self.fine_weights is None else 2

    def block_effective(self) -> list[np.ndarray]:
        """Integer weights (int64, IR layout) of each block: [coarse] or [coarse, fine]."""
        out = [_shift(self.weights, self.weight_exp)]
        if self.fine_weights is not None:
            out.append(_shift(self.fine_weights, self.fine_exp))
        return out

    @property
    def n_out(self) -> int:
        return int(np.prod(self.out_shape))

    @property
    def leak_eff(self) -> float:
        """Per-step voltage factor the 12-bit code realises (LIF); the exact leak for an off-chip Readout."""
        return self.leak if self.population == "readout" else 1.0 - self.dv / 4096.0

    @property
    def effective(self) -> np.ndarray:
        """Integer weights the synapse realises (int64, IR layout): mantissas * 2**weight_exp, plus
        fine_weights * 2**fine_exp with a second block (Lava sums both blocks' outputs into the population)."""
        return sum(self.block_effective())

    def synapse_node(self, weight: np.ndarray | None = None) -> Dense | Conv2d | ConvTranspose2d:
        """The IR synapse node of this layer (``weight``: float weights in IR layout, default weights_float)."""
        w = self.weights_float if weight is None else weight
        if self.kind == "dense":
            return Dense(w)
        if self.kind == "conv":
            return Conv2d(w, self.in_shape, self.stride, self.padding)
        return ConvTranspose2d(w, self.in_shape, self.stride, self.padding, self.output_padding)

    def population_node(self) -> LIF | Readout:
        if self.population == "readout":
            return Readout(self.n_out, self.leak)
        return LIF(self.n_out, leak=self.leak, v_th=self.v_th, reset="zero", clamp=self.clamp, strict=self.strict,
                   dt_ms=self.dt_ms)


@dataclass(frozen=True)
class CompiledConv:
    """A compiled convolutional steps graph: layers in graph order, checked for samples of up to ``max_steps``
    steps. :attr:`graph` rebuilds the float source graph (what ``float`` runs and the verifier compares with)."""

    layers: tuple[CompiledConvLayer, ...]
    max_steps: int
    manifest: dict = field(default_factory=dict)
    input_name: str = "input"

    @property
    def graph(self) -> Graph:
        """The source steps graph with the original node names and the source metadata (p_scale, steps, ...)."""
        nodes: dict = {self.input_name: Input(self.n_in)}
        edges, prev = [], self.input_name
        for cl in self.layers:
            if cl.flatten:
                nodes[cl.flatten] = Flatten(cl.in_shape)
                edges.append((prev, cl.flatten))
                prev = cl.flatten
            nodes[cl.synapse] = cl.synapse_node()
            nodes[cl.name] = cl.population_node()
            edges += [(prev, cl.synapse), (cl.synapse, cl.name)]
            prev = cl.name
        meta = dict(self.manifest.get("source_metadata") or {})
        return Graph(nodes, tuple(edges), "steps", meta | {"compiled": "CompiledConv"})

    @property
    def n_in(self) -> int:
        return self.layers[0].n_in

    @property
    def names(self) -> list[str]:
        return [cl.name for cl in self.layers]

    def relay_stages(self, k: int) -> int:
        """Relay stages (layers with fan_in_groups > 1) up to and including layer k: one step of delay each."""
        return sum(1 for cl in self.layers[:k + 1] if cl.fan_in_groups > 1)

    def lag_steps(self, k: int) -> int:
        """Lava (fixed-point) time steps between an input column and population k's response: RingBuffer + k + 1
        connections + one per relay stage of a split fan-in (:meth:`relay_stages`)."""
        return k + 2 + self.relay_stages(k)


def _shift(m: np.ndarray, e: int) -> np.ndarray:
    m = np.asarray(m, dtype=np.int64)
    return m << e if e >= 0 else m >> -e


def _bad(where: str, what: str) -> ArtifactError:
    return ArtifactError(f"{where}: {what}; fix: recompile the graph with toolchain.conv_compiler.compile_conv_graph")


def _pair(v, lo: int) -> bool:
    return (isinstance(v, tuple) and len(v) == 2
            and all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) and x >= lo for x in v))


def validate_compiled_conv(cc: CompiledConv, where: str = "compiled conv graph") -> CompiledConv:
    """Check every field against its hardware range and the shapes against each other (the IR nodes rebuilt
    from each layer check the convolution arithmetic); ArtifactError naming the field otherwise."""
    if not isinstance(cc, CompiledConv):
        raise ArtifactError(f"{where}: expected a CompiledConv, got {type(cc).__name__}; fix: pass the result of "
                            "toolchain.conv_compiler.compile_conv_graph")
    if not cc.layers:
        raise _bad(where, "no layers")
    names = [cc.input_name] + [n for cl in cc.layers for n in (cl.flatten, cl.synapse, cl.name) if n != ""]
    if not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise _bad(where, f"node names must be distinct non-empty strings, got {names}")
    if not (isinstance(cc.max_steps, (int, np.integer)) and 1 <= cc.max_steps <= MAX_STEPS):
        raise _bad(where, f"max_steps={cc.max_steps!r} is outside [1, {MAX_STEPS}]")
    prev = None
    for k, cl in enumerate(cc.layers):
        at = f"{where}, layer {k} ({cl.name!r})"
        if cl.kind not in KINDS or cl.population not in POPULATION_KINDS:
            raise _bad(at, f"kind={cl.kind!r} / population={cl.population!r} not in {KINDS} / {POPULATION_KINDS}")
        if cl.population == "readout" and k != len(cc.layers) - 1:
            raise _bad(at, "a Readout must be the last population (its potentials are read off-chip)")
        for name in ("in_shape", "out_shape"):
            v = getattr(cl, name)
            if not (isinstance(v, tuple) and len(v) == 3 and all(isinstance(x, (int, np.integer)) and x >= 1
                                                                  for x in v)):
                raise _bad(at, f"{name}={v!r} must be a (C, H, W) tuple of positive integers")
        for name, lo in (("stride", 1), ("padding", 0), ("output_padding", 0)):
            if not _pair(getattr(cl, name), lo):
                raise _bad(at, f"{name}={getattr(cl, name)!r} must be a pair of integers >= {lo}")
        if cl.flatten and cl.kind != "dense":
            raise _bad(at, "a Flatten view may only feed a Dense synapse")
        w = np.asarray(cl.weights)
        if w.dtype.kind not in "iu" or np.asarray(cl.weights_float).shape != w.shape:
            raise _bad(at, f"weights must be an integer array with weights_float of the same shape, got {w.shape} "
                           f"{w.dtype} and {np.asarray(cl.weights_float).shape}")
        if not np.all(np.isfinite(cl.weights_float)):
            raise _bad(at, "weights_float contains NaN or inf")
        try:
            node = cl.synapse_node()
        except ValueError as exc:
            raise _bad(at, f"the synapse does not fit its shapes ({exc})") from None
        out = (node.n_out, 1, 1) if isinstance(node, Dense) else node.output_shape
        if isinstance(node, Dense) and node.n_in != cl.n_in:
            raise _bad(at, f"Dense weights take {node.n_in} inputs but in_shape {cl.in_shape} holds {cl.n_in}")
        if tuple(out) != tuple(cl.out_shape):
            raise _bad(at, f"the synapse produces a {tuple(out)} map but out_shape is {cl.out_shape}")
        if prev is not None and cl.n_in != prev:
            raise _bad(at, f"has {cl.n_in} inputs but the previous layer has {prev} neurons")
        prev = cl.n_out
        check_weight_blocks(cl, w, at, _bad)
        for name, v in (("du", cl.du), ("dv", cl.dv)):
            if not (isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v <= DECAY_MAX):
                raise _bad(at, f"{name}={v!r} is outside the integer range [0, {DECAY_MAX}]")
        for name, top in (("vth", VTH_MAX), ("scale", VTH_MAX + 1)):
            a = np.asarray(getattr(cl, name))
            if a.shape != (cl.n_out,) or a.dtype.kind not in "iu":
                raise _bad(at, f"{name} must be an integer array of shape ({cl.n_out},), got {a.shape} {a.dtype}")
            if a.size and (a.min() < 0 or a.max() > top):
                raise _bad(at, f"{name} values in [{a.min()}, {a.max()}] are outside [0, {top}]")
        g = cl.fan_in_groups
        if isinstance(g, bool) or not isinstance(g, (int, np.integer)) or not 1 <= g <= cl.n_in \
                or (g > 1 and cl.kind != "dense"):
            raise _bad(at, f"fan_in_groups={g!r} must be an integer in [1, n_in={cl.n_in}], and 1 unless the synapse "
                           "is Dense")
        if cl.kind != "dense":
            c_out, h, wd = cl.out_shape
            per_channel = np.asarray(cl.scale).reshape(c_out, h * wd)
            if np.any(per_channel != per_channel[:, :1]):
                raise _bad(at, "a convolution's scale must be one value per output channel (shared weights)")
        if cl.population == "readout" and np.any(np.asarray(cl.scale) < 1):
            raise _bad(at, "a Readout's scale must be >= 1 (integer units per unit of A)")
        if not (0.0 <= cl.du_float <= 1.0 and 0.0 <= cl.dv_float < 1.0 and np.isfinite(cl.vth_float)
                and cl.vth_float > 0 and 0.0 < cl.leak <= 1.0 and np.isfinite(cl.v_th) and cl.v_th > 0
                and np.isfinite(cl.dt_ms) and cl.dt_ms > 0):
            raise _bad(at, f"float parameters out of range (du_float={cl.du_float}, dv_float={cl.dv_float}, "
                           f"vth_float={cl.vth_float}, leak={cl.leak}, v_th={cl.v_th}, dt_ms={cl.dt_ms})")
    return cc


def is_compiled_conv(net) -> bool:
    """True for a CompiledConv (the targets dispatch on it)."""
    return isinstance(net, CompiledConv)
