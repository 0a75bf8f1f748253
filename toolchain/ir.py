"""The network IR: a graph of small frozen nodes, shaped like NIR (``nir/ir/*.py``).

A network is a :class:`Graph`: named nodes and directed edges. There are two kinds of node:

- *synapse* nodes map the spikes of their source population to input current of their target population
  (:class:`Dense`, :class:`Conv2d`, :class:`ConvTranspose2d`);
- *view* nodes (:class:`Flatten`) change only how a population's spikes are indexed, never their values;
- *population* nodes hold neuron state and emit spikes (:class:`AlphaOnce`, :class:`LIF`) or expose potentials
  (:class:`Readout`).

:class:`Input` marks where the encoded input spikes enter. Every node states its equations and units in its
docstring and says whether its time is a grid of steps (LIF family) or continuous model time (alpha family); a
graph's ``time`` is one of the two for all its nodes.

The IR is plain data: no behaviour beyond shape checks and topological order. Trainers (``models/``) produce it,
the artifact (``toolchain/artifact*.py``) stores it, the compiler lowers it one node kind at a time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union

import numpy as np

TimeKind = Literal["steps", "continuous"]


def _f64(name: str, a, ndim: int) -> np.ndarray:
    arr = np.ascontiguousarray(np.asarray(a, dtype=np.float64))
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf; every parameter must be finite")
    arr.setflags(write=False)
    return arr


def _positive_int(name: str, n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {n!r}")
    return int(n)


@dataclass(frozen=True)
class Input:
    """Where encoded input spikes enter: ``n`` input channels.

    Steps graphs: a spike train per channel, s_in[t] in {0, 1} for t = 0 .. T-1 (one sample = (T, n)).
    Continuous graphs: one spike time per channel in model time units (``inf`` = no spike).
    """

    n: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "n", _positive_int("Input.n", self.n))

    @property
    def n_out(self) -> int:
        return self.n


@dataclass(frozen=True)
class Dense:
    """All-to-all synapses: I_j = sum_i W_ji s_i.

    weight: (n_out, n_in), dimensionless (the units of the target population's threshold per input spike).
    Steps graphs: the current of step t is W s[t] (delivered in the same step; hardware delays are the compiler's
    business). Continuous graphs: each input spike at t_i adds W_ji times the target's synaptic kernel from t_i.
    """

    weight: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", _f64("Dense.weight", self.weight, 2))

    @property
    def n_in(self) -> int:
        return int(self.weight.shape[1])

    @property
    def n_out(self) -> int:
        return int(self.weight.shape[0])


@dataclass(frozen=True)
class AlphaOnce:
    """Once-spiking alpha-synapse neurons (Comsa et al. 2021); continuous model time (time units).

    V_j(t) = sum_i w_ji (t - t_i) exp(-tau (t - t_i)) over inputs t_i <= t (those of the incoming Dense node and
    this population's own synchronisation pulses); neuron j spikes the first time V_j reaches ``theta`` and never
    again (``inf`` = no spike).

    n:             neurons
    tau:           decay rate, 1 / time unit
    theta:         threshold, dimensionless (units of the weights)
    pulse_times:   (n_pulses,) time units >= 0; every neuron receives every pulse
    pulse_weights: (n, n_pulses), dimensionless
    """

    n: int
    tau: float
    theta: float
    pulse_times: np.ndarray
    pulse_weights: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "n", _positive_int("AlphaOnce.n", self.n))
        for name in ("tau", "theta"):
            v = float(getattr(self, name))
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"AlphaOnce.{name} must be finite and > 0, got {v}")
            object.__setattr__(self, name, v)
        object.__setattr__(self, "pulse_times", _f64("AlphaOnce.pulse_times", self.pulse_times, 1))
        object.__setattr__(self, "pulse_weights", _f64("AlphaOnce.pulse_weights", self.pulse_weights, 2))
        if self.pulse_weights.shape != (self.n, self.pulse_times.shape[0]):
            raise ValueError(f"AlphaOnce.pulse_weights has shape {self.pulse_weights.shape}, expected "
                             f"(n, n_pulses) = ({self.n}, {self.pulse_times.shape[0]})")
        if np.any(self.pulse_times < 0):
            raise ValueError("AlphaOnce.pulse_times must be >= 0 time units")

    @property
    def n_out(self) -> int:
        return self.n


@dataclass(frozen=True)
class LIF:
    """Discrete-time leaky integrate-and-fire neurons; time is a grid of steps (one step = ``dt_ms``).

    For each step t, with input current I[t] from the incoming synapse node:

        V[t]  = leak * V_post[t-1] + I[t]                (dimensionless, threshold units)
        V[t]  = min(V[t], v_th)            if clamp       (the authors' code of Roy et al. 2019 clamps)
        s[t]  = 1 if V[t] >= v_th else 0   (``strict``: V[t] > v_th)
        V_post[t] = 0 if reset == "zero", V[t] - v_th if reset == "subtract", where s[t] = 1; else V[t]

    ``V[t]`` (pre-reset) is the potential losses read. V_post[-1] = 0.

    n:      neurons
    leak:   per-step multiplicative leak factor in (0, 1] (1 = no leak; Roy et al.: 0.9)
    v_th:   threshold > 0
    reset:  "zero" or "subtract"
    clamp:  clip V at v_th before the spike test
    strict: spike on V > v_th instead of V >= v_th
    dt_ms:  duration of one step in milliseconds (informational: rates = spikes / (T dt))
    """

    n: int
    leak: float
    v_th: float = 1.0
    reset: Literal["zero", "subtract"] = "zero"
    clamp: bool = False
    strict: bool = False
    dt_ms: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "n", _positive_int("LIF.n", self.n))
        leak, v_th, dt = float(self.leak), float(self.v_th), float(self.dt_ms)
        if not (np.isfinite(leak) and 0.0 < leak <= 1.0):
            raise ValueError(f"LIF.leak must lie in (0, 1] (per-step factor), got {self.leak}")
        if not (np.isfinite(v_th) and v_th > 0):
            raise ValueError(f"LIF.v_th must be finite and > 0, got {self.v_th}")
        if not (np.isfinite(dt) and dt > 0):
            raise ValueError(f"LIF.dt_ms must be finite and > 0, got {self.dt_ms}")
        if self.reset not in ("zero", "subtract"):
            raise ValueError(f"LIF.reset must be 'zero' or 'subtract', got {self.reset!r}")
        object.__setattr__(self, "leak", leak)
        object.__setattr__(self, "v_th", v_th)
        object.__setattr__(self, "dt_ms", dt)
        object.__setattr__(self, "clamp", bool(self.clamp))
        object.__setattr__(self, "strict", bool(self.strict))

    @property
    def n_out(self) -> int:
        return self.n


@dataclass(frozen=True)
class Readout:
    """Non-spiking leaky integrator whose potentials are read (steps): A[t] = leak * (A[t-1] + I[t]).

    n:    channels
    leak: per-step factor in (0, 1] (1 = plain sum of the input current over time)
    """

    n: int
    leak: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "n", _positive_int("Readout.n", self.n))
        leak = float(self.leak)
        if not (np.isfinite(leak) and 0.0 < leak <= 1.0):
            raise ValueError(f"Readout.leak must lie in (0, 1], got {self.leak}")
        object.__setattr__(self, "leak", leak)

    @property
    def n_out(self) -> int:
        return self.n


def _int_pair(name: str, v, lo: int) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        v = (v, v)
    try:
        a, b = v
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}") from None
    out = []
    for x in (a, b):
        if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < lo:
            raise ValueError(f"{name} must hold integers >= {lo}, got {v!r}")
        out.append(int(x))
    return out[0], out[1]


def _shape3(name: str, v) -> tuple[int, int, int]:
    try:
        dims = tuple(v)
    except TypeError:
        raise ValueError(f"{name} must be (channels, height, width), got {v!r}") from None
    if len(dims) != 3:
        raise ValueError(f"{name} must be (channels, height, width), got {v!r}")
    return tuple(_positive_int(name, d) for d in dims)  # type: ignore[return-value]


class _MapSynapse:
    """Sizes shared by the convolution nodes: flat C-order maps in and out."""

    @property
    def n_in(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def n_out(self) -> int:
        return int(np.prod(self.output_shape))


def _check_conv(node, kind: str, in_axis: int) -> None:
    """Normalise and check a convolution node in place: weight 4-D finite, input_shape (C, H, W), stride >= 1,
    padding >= 0, weight.shape[in_axis] = C_in, no empty dimension, a non-empty output map."""
    object.__setattr__(node, "weight", _f64(f"{kind}.weight", node.weight, 4))
    object.__setattr__(node, "input_shape", _shape3(f"{kind}.input_shape", node.input_shape))
    object.__setattr__(node, "stride", _int_pair(f"{kind}.stride", node.stride, 1))
    object.__setattr__(node, "padding", _int_pair(f"{kind}.padding", node.padding, 0))
    if node.weight.shape[in_axis] != node.input_shape[0]:
        raise ValueError(f"{kind}.weight has {node.weight.shape[in_axis]} input channels but input_shape "
                         f"{node.input_shape} has {node.input_shape[0]}")
    if min(node.weight.shape) < 1:
        raise ValueError(f"{kind}.weight has an empty dimension: {node.weight.shape}")


def _check_output(node, kind: str) -> None:
    h, w = node.output_shape[1:]
    if h < 1 or w < 1:
        raise ValueError(f"{kind} with kernel {node.weight.shape[2:]}, stride {node.stride}, padding "
                         f"{node.padding} on input {node.input_shape} gives an empty output ({h} x {w})")


@dataclass(frozen=True)
class Conv2d(_MapSynapse):
    """2-D convolution synapses (PyTorch's cross-correlation, no bias, dilation 1, groups 1).

    Populations are flat vectors; a (C, H, W) map is flattened in C order (channel-major, as PyTorch's
    ``flatten``). With s the source spikes viewed as (C_in, H, W) and zero outside the map:

        I[o, y, x] = sum_{c, i, j} weight[o, c, i, j] * s[c, y * stride_h + i - pad_h, x * stride_w + j - pad_w]

    weight:      (C_out, C_in, kH, kW), dimensionless (threshold units per input spike)
    input_shape: (C_in, H, W) of the source population
    stride, padding: (h, w) pairs, steps of pixels; output (C_out, H_out, W_out) with
                 H_out = (H + 2 pad_h - kH) // stride_h + 1 (likewise W_out)
    Steps graphs only: the current of step t is computed from the spikes of step t.
    """

    weight: np.ndarray
    input_shape: tuple[int, int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        _check_conv(self, "Conv2d", in_axis=1)
        _check_output(self, "Conv2d")

    @property
    def output_shape(self) -> tuple[int, int, int]:
        _, h, w = self.input_shape
        kh, kw = self.weight.shape[2:]
        return (int(self.weight.shape[0]), (h + 2 * self.padding[0] - kh) // self.stride[0] + 1,
                (w + 2 * self.padding[1] - kw) // self.stride[1] + 1)


@dataclass(frozen=True)
class ConvTranspose2d(_MapSynapse):
    """2-D transposed convolution synapses (PyTorch's ``ConvTranspose2d``: no bias, dilation 1, groups 1).

    Each source spike s[c, y, x] (source viewed as (C_in, H, W), flattened in C order) adds its kernel to the
    output map at stride offsets:

        I[o, y * stride_h + i - pad_h, x * stride_w + j - pad_w] += weight[c, o, i, j] * s[c, y, x]

    (targets outside the output map are dropped). It is the transpose of the Conv2d with the same weight, stride
    and padding.

    weight:         (C_in, C_out, kH, kW), dimensionless
    input_shape:    (C_in, H, W)
    stride, padding, output_padding: (h, w) pairs; output_padding < stride;
                    H_out = (H - 1) stride_h - 2 pad_h + kH + output_padding_h (likewise W_out)
    """

    weight: np.ndarray
    input_shape: tuple[int, int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    output_padding: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        _check_conv(self, "ConvTranspose2d", in_axis=0)
        object.__setattr__(self, "output_padding", _int_pair("ConvTranspose2d.output_padding",
                                                             self.output_padding, 0))
        if any(op >= s for op, s in zip(self.output_padding, self.stride)):
            raise ValueError(f"ConvTranspose2d.output_padding {self.output_padding} must be smaller than the "
                             f"stride {self.stride}")
        _check_output(self, "ConvTranspose2d")

    @property
    def output_shape(self) -> tuple[int, int, int]:
        _, h, w = self.input_shape
        kh, kw = self.weight.shape[2:]
        return (int(self.weight.shape[1]),
                (h - 1) * self.stride[0] - 2 * self.padding[0] + kh + self.output_padding[0],
                (w - 1) * self.stride[1] - 2 * self.padding[1] + kw + self.output_padding[1])


@dataclass(frozen=True)
class Flatten:
    """A view: the source population's (C, H, W) map read as a flat vector of C*H*W channels in C order.

    s_out[c * H * W + y * W + x] = s_in[c, y, x]; values and time are untouched (identity on the flat vectors
    populations hold). It sits between a population and a synapse (as NIR's Flatten between a convolution's
    neurons and an Affine), and states the shape the flat vector comes from.

    input_shape: (C, H, W)
    """

    input_shape: tuple[int, int, int]

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", _shape3("Flatten.input_shape", self.input_shape))

    @property
    def n_in(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def n_out(self) -> int:
        return self.n_in


Node = Union[Input, Dense, Conv2d, ConvTranspose2d, Flatten, AlphaOnce, LIF, Readout]
SYNAPSES = (Dense, Conv2d, ConvTranspose2d)
VIEWS = (Flatten,)
POPULATIONS = (AlphaOnce, LIF, Readout)
_CONVS = (Conv2d, ConvTranspose2d)
_TIME_OF = {AlphaOnce: "continuous", LIF: "steps", Readout: "steps", Conv2d: "steps", ConvTranspose2d: "steps",
            Flatten: "steps"}


@dataclass(frozen=True)
class Graph:
    """A network: ``nodes`` by name and ``edges`` (source, target) between them, plus graph-wide facts.

    time:     "steps" (LIF family) or "continuous" (alpha family), the same for every population node
    metadata: plain JSON-able facts (dataset, encoding, training settings, ...)

    Well-formed graphs alternate Input/population -> [view ->] synapse -> population; every synapse and view has
    one source and one target. A convolution's ``input_shape`` must equal the map its source population holds
    (the output shape of the convolution feeding it, or the Flatten/Input size). :meth:`order` returns the node
    names in topological order.
    """

    nodes: dict[str, Node]
    edges: tuple[tuple[str, str], ...]
    time: TimeKind
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", dict(self.nodes))
        object.__setattr__(self, "edges", tuple((str(a), str(b)) for a, b in self.edges))
        if self.time not in ("steps", "continuous"):
            raise ValueError(f"Graph.time must be 'steps' or 'continuous', got {self.time!r}")
        for a, b in self.edges:
            for end in (a, b):
                if end not in self.nodes:
                    raise ValueError(f"edge ({a!r}, {b!r}) names unknown node {end!r}")
        inputs = [k for k, v in self.nodes.items() if isinstance(v, Input)]
        if len(inputs) != 1:
            raise ValueError(f"a Graph needs exactly one Input node, got {len(inputs)}")
        for name, node in self.nodes.items():
            kind = _TIME_OF.get(type(node))
            if kind is not None and kind != self.time:
                raise ValueError(f"node {name!r} ({type(node).__name__}) runs in {kind} time but the graph is "
                                 f"{self.time}")
            if isinstance(node, SYNAPSES + VIEWS):
                src, dst = self.sources(name), self.targets(name)
                if len(src) != 1 or len(dst) != 1:
                    raise ValueError(f"{type(node).__name__} node {name!r} needs one source and one target, got "
                                     f"{src} -> {dst}")
                if self.nodes[src[0]].n_out != node.n_in:
                    raise ValueError(f"{type(node).__name__} {name!r} expects {node.n_in} inputs but {src[0]!r} has "
                                     f"{self.nodes[src[0]].n_out}")
                if isinstance(node, VIEWS):
                    if not isinstance(self.nodes[dst[0]], SYNAPSES):
                        raise ValueError(f"view {name!r} feeds {dst[0]!r} ({type(self.nodes[dst[0]]).__name__}); "
                                         f"a view feeds a synapse node")
                elif self.nodes[dst[0]].n_out != node.n_out:
                    raise ValueError(f"synapse {name!r} has {node.n_out} outputs but {dst[0]!r} has "
                                     f"{self.nodes[dst[0]].n_out} neurons")
                if isinstance(node, _CONVS + VIEWS):
                    shape = self.map_shape(src[0])
                    if shape is not None and shape != node.input_shape:
                        raise ValueError(f"{name!r} expects a {node.input_shape} (C, H, W) map but {src[0]!r} "
                                         f"holds a {shape} map; shapes do not chain")
        self.order()  # raises on cycles

    def map_shape(self, name: str) -> tuple[int, int, int] | None:
        """The (C, H, W) map a population holds when a convolution feeds it (else None: a flat vector)."""
        src = self.sources(name)
        if isinstance(self.nodes[name], POPULATIONS) and len(src) == 1 and isinstance(self.nodes[src[0]], _CONVS):
            return self.nodes[src[0]].output_shape
        return None

    def sources(self, name: str) -> list[str]:
        return [a for a, b in self.edges if b == name]

    def targets(self, name: str) -> list[str]:
        return [b for a, b in self.edges if a == name]

    @property
    def input_name(self) -> str:
        return next(k for k, v in self.nodes.items() if isinstance(v, Input))

    def order(self) -> list[str]:
        """Node names in topological order (Kahn; ties in insertion order). Raises ValueError on a cycle."""
        indeg = {k: 0 for k in self.nodes}
        for _, b in self.edges:
            indeg[b] += 1
        ready = [k for k in self.nodes if indeg[k] == 0]
        out: list[str] = []
        while ready:
            k = ready.pop(0)
            out.append(k)
            for b in self.targets(k):
                indeg[b] -= 1
                if indeg[b] == 0:
                    ready.append(b)
        if len(out) != len(self.nodes):
            raise ValueError("the graph has a cycle; snnc supports feed-forward graphs only")
        return out

    def populations(self) -> list[str]:
        """Population node names (the layers whose spikes or potentials targets report), in order."""
        return [k for k in self.order() if isinstance(self.nodes[k], POPULATIONS)]

    def synapse_source(self, synapse: str) -> str:
        """The Input or population whose spikes feed ``synapse`` (through any view nodes)."""
        src = self.sources(synapse)[0]
        while isinstance(self.nodes[src], VIEWS):
            src = self.sources(src)[0]
        return src

    def chain(self) -> list[tuple[str, str]]:
        """For a feed-forward chain: [(synapse, population), ...] from the input to the last layer (view nodes
        such as Flatten sit between and are identities on the flat vectors, so they are not listed)."""
        pairs = []
        for k in self.populations():
            src = self.sources(k)
            if len(src) != 1 or not isinstance(self.nodes[src[0]], SYNAPSES):
                raise ValueError(f"population {k!r} is not fed by exactly one synapse node")
            pairs.append((src[0], k))
        return pairs


def lif_chain(weights: list[np.ndarray], neurons: list[LIF | Readout], metadata: dict | None = None) -> Graph:
    """Build the common feed-forward graph input -> fc0 -> layer0 -> fc1 -> layer1 ... of a steps model.

    weights[k]: (n_k+1, n_k) Dense weights; neurons[k]: the population fed by weights[k]."""
    if len(weights) != len(neurons) or not weights:
        raise ValueError("lif_chain needs one neuron population per weight matrix (at least one)")
    nodes: dict[str, Node] = {"input": Input(int(np.shape(weights[0])[1]))}
    edges = []
    prev = "input"
    for k, (w, pop) in enumerate(zip(weights, neurons)):
        nodes[f"fc{k}"] = Dense(w)
        nodes[f"layer{k}"] = pop
        edges += [(prev, f"fc{k}"), (f"fc{k}", f"layer{k}")]
        prev = f"layer{k}"
    return Graph(nodes, tuple(edges), "steps", dict(metadata or {}))
