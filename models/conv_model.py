"""Hübotter et al.'s (2021) deep convolutional spiking autoencoder in torch, and its IR graph.

Architecture (``ConvArch``; the paper's code jhuebotter/SpikingVAE, MNIST 1x28x28):

    input (Bernoulli spikes, p = p_scale * pixel per step)
    conv0 Conv2d 1->c1 k5 -> lif0 (c1 x 24 x 24)      conv1 Conv2d c1->c2 k5 -> lif1 (c2 x 20 x 20)
    flat -> enc Dense (c2*400 -> latent) -> latent LIF  dec Dense (latent -> c2*400) -> lif2 (c2*400, read as c2x20x20)
    up0 ConvTranspose2d c2->c1 k5 -> lif3 (c1 x 24 x 24)   up1 ConvTranspose2d c1->1 k5 -> out Readout (784)

No biases. Every spiking population is ``toolchain.ir.LIF(leak=0.99, v_th=1, reset="zero", strict=True)``, which
is exactly the code's ``V = V + I; spike if V > 1; V = 0 where spiked; V = 0.99 V`` (dimensionless, threshold 1).

The image: the code's last layer also keeps a non-resetting trace ``A_t = 0.99 (A_{t-1} + I_t)`` of its input
current, and the reconstruction is ``max_t A_t / (T * p_scale)``. The last layer's spikes feed nothing, so the
graph ends with ``up1 -> out`` where ``out`` is a ``toolchain.ir.Readout(784, leak=0.99)`` (no spiking LIF there):
the image is ``max over t of out's potentials / (T * p_scale)`` (metadata ``readout``).

The code also sets V < -1 to +1 after adding the input (a likely bug: a strongly inhibited neuron jumps to the
threshold). By default this model does not (V is unbounded below, as in the IR's LIF and Loihi's); ``clamp=True``
does, for experiments only (such a network is not the IR graph's and is not exported).

Training (``SpikingConvAE.forward``): membrane-potential-based surrogate-gradient BPTT. Synapses have no
recurrence, so each synapse runs once on all T steps at once ((T*B, C, H, W) torch convs); only the neuron update
loops over steps, inside one autograd Function per layer (:class:`LIFSequence`) that stores a surrogate slope per
step instead of autograd's per-step graph. The spike's derivative is the fast sigmoid
``dS/dV = 1 / (1 + slope |V - v_th|)^2``; the reset is not differentiated (detached). ``surrogate="code"`` is
the code's gradient instead: dS/dV = 1 only on steps with a spike, leak detached (see :class:`LIFSequence`).
Units: potentials in threshold units, time in steps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from toolchain.errors import ArtifactError, SnncError
from toolchain.ir import LIF, Conv2d, ConvTranspose2d, Dense, Flatten, Graph, Input, Readout

LEAK = 0.99
V_TH = 1.0
P_SCALE = 0.2
SPIKING = ("lif0", "lif1", "latent", "lif2", "lif3")  # spiking populations, in order
SYNAPSES = ("conv0", "conv1", "enc", "dec", "up0", "up1")


@dataclass(frozen=True)
class ConvArch:
    """Shape of the network: channels (c1, c2), latent size, kernel k (stride 1, no padding), image side."""

    c1: int = 16
    c2: int = 32
    latent: int = 100
    kernel: int = 5
    side: int = 28

    def __post_init__(self) -> None:
        for name in ("c1", "c2", "latent", "kernel", "side"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise SnncError(f"conv architecture: {name} must be an integer >= 1, got {v!r}")
        if self.side - 2 * (self.kernel - 1) < 1:
            raise SnncError(f"conv architecture: two {self.kernel}x{self.kernel} convolutions leave nothing of a "
                            f"{self.side}x{self.side} image; use a smaller kernel")

    @property
    def s1(self) -> int:  # side after conv0
        return self.side - self.kernel + 1

    @property
    def s2(self) -> int:  # side after conv1
        return self.side - 2 * (self.kernel - 1)

    @property
    def sizes(self) -> dict[str, int]:
        """Neurons per spiking population and the output."""
        return {"lif0": self.c1 * self.s1 ** 2, "lif1": self.c2 * self.s2 ** 2, "latent": self.latent,
                "lif2": self.c2 * self.s2 ** 2, "lif3": self.c1 * self.s1 ** 2, "out": self.side ** 2}

    def macs_per_step(self) -> int:
        """Multiply-adds of the dense synapses per sample and step (the cost BPTT pays, spikes or not)."""
        k2 = self.kernel ** 2
        return int(self.c1 * self.s1 ** 2 * k2 + self.c2 * self.s2 ** 2 * self.c1 * k2
                   + 2 * self.c2 * self.s2 ** 2 * self.latent + self.c2 * self.s2 ** 2 * self.c1 * k2
                   + self.c1 * self.s1 ** 2 * k2)


def init_weights(arch: ConvArch, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The code's init: convs N(0, sqrt(2 / (k^2 C_in))), dense N(0, 2 sqrt(2 / fan_in)); float64, PyTorch layouts
    (Conv2d (C_out, C_in, k, k), ConvTranspose2d (C_in, C_out, k, k), Dense (n_out, n_in))."""
    k = arch.kernel
    n_flat = arch.c2 * arch.s2 ** 2

    def conv(shape, c_in):
        return rng.normal(0.0, math.sqrt(2.0 / (k * k * c_in)), shape)

    return {
        "conv0": conv((arch.c1, 1, k, k), 1),
        "conv1": conv((arch.c2, arch.c1, k, k), arch.c1),
        "enc": rng.normal(0.0, 2.0 * math.sqrt(2.0 / n_flat), (arch.latent, n_flat)),
        "dec": rng.normal(0.0, 2.0 * math.sqrt(2.0 / arch.latent), (n_flat, arch.latent)),
        "up0": conv((arch.c2, arch.c1, k, k), arch.c2),
        "up1": conv((arch.c1, 1, k, k), arch.c1),
    }


def bernoulli_spikes(images01, steps: int, p_scale: float, generator=None):
    """(B, pixels) images in [0, 1] (torch) -> (T, B, pixels) 0/1 spikes of the images' dtype: P(spike) = p_scale
    * pixel per step, independent per step and pixel."""
    import torch

    p = (p_scale * images01).clamp(0.0, 1.0)
    u = torch.rand((steps,) + tuple(p.shape), generator=generator, dtype=p.dtype)
    return (u < p.unsqueeze(0)).to(p.dtype)


SURROGATES = ("fast-sigmoid", "code")


LIF_BACKENDS = ("auto", "torch", "numba")


def _lif_function(backend: str = "auto"):
    """The LIF autograd Function. backend "torch" (the model's default): a torch loop over steps (any device);
    "numba": the fused CPU kernels of models/conv_lif_kernels.py (CPU float32/float64 only; 2-5x faster alone,
    but measured slower in the whole training batch at T = 100, docs/conv.md "Speed"); "auto": numba on the CPU,
    torch elsewhere."""
    import torch

    if backend not in LIF_BACKENDS:
        raise SnncError(f"unknown LIF backend {backend!r}; choose one of {', '.join(LIF_BACKENDS)}")

    def use_numba(t) -> bool:
        ok = t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64)
        if backend == "numba" and not ok:
            raise SnncError(f"the numba LIF kernels run on CPU float tensors, not {t.device} {t.dtype}; use the "
                            f"torch backend")
        return ok and backend != "torch"

    class LIFSequence(torch.autograd.Function):
        """current (T, B, n) -> spikes (T, B, n), final potential U (B, n) of LIF neurons (V = leak V + I; spike on
        V > v_th; reset to 0); U = leak * V_post[T-1], the potential the code holds after the last step.

        ``clamp``: the code's "V < -v_th -> +v_th" after adding the input (before the spike test), off by default.

        Backward, ``surrogate`` "fast-sigmoid": dS/dV = 1 / (1 + slope |V - v_th|)^2, reset detached, so
        g_V[t] = g_S[t] S'(V[t]) + leak (1 - S[t]) g_V[t+1] and g_I[t] = g_V[t] (0 where clamped).
        ``surrogate`` "code" (jhuebotter/SpikingVAE's straight-through): dS/dV = 1 on the steps where the neuron
        spikes and 0 elsewhere, and the leak is detached (the code's ``decay * V.detach() + V - V.detach()``), so
        g_V[t] = g_S[t] S[t] + (1 - S[t]) g_V[t+1]: a neuron that never spikes gets no gradient from its spikes."""

        @staticmethod
        def forward(ctx, current, leak: float, v_th: float, slope: float, code: bool = False, clamp: bool = False):
            ctx.leak, ctx.code, ctx.clamp = leak, code, clamp
            ctx.numba = use_numba(current)
            if ctx.numba:
                from models.conv_lif_kernels import forward_np

                shape = current.shape
                c = current.detach().contiguous().reshape(shape[0], -1).numpy()
                spk, sg, clamped, v_last = forward_np(c, leak, v_th, slope, not code, clamp)
                spikes = torch.from_numpy(spk).reshape(shape)
                sg_t = torch.from_numpy(sg).reshape(shape) if sg is not None else spikes
                cl_t = torch.from_numpy(clamped).reshape(shape) if clamped is not None else spikes
                ctx.save_for_backward(spikes, sg_t, cl_t)
                return spikes, torch.from_numpy(v_last).reshape(shape[1:]) * leak
            steps = current.shape[0]
            v = torch.zeros_like(current[0])
            spikes = torch.empty_like(current)
            sg = None if code else torch.empty_like(current)
            clamped = torch.empty(current.shape, dtype=torch.bool, device=current.device) if clamp else None
            for t in range(steps):
                v = v.mul_(leak).add_(current[t])
                if clamp:
                    low = v < -v_th
                    clamped[t] = low
                    v = v.masked_fill_(low, v_th)
                s = v > v_th
                spikes[t] = s
                if sg is not None:
                    # surrogate slope at V[t], stored in place of V (one float per neuron and step)
                    sg[t] = torch.abs(v - v_th).mul_(slope).add_(1.0).pow_(-2)
                v = v.masked_fill_(s, 0.0)
            u = v * leak
            ctx.save_for_backward(spikes, sg if sg is not None else spikes, clamped if clamp else spikes)
            return spikes, u

        @staticmethod
        def backward(ctx, g_spikes, g_u):
            spikes, sg, clamped = ctx.saved_tensors
            carry_leak = 1.0 if ctx.code else ctx.leak
            if ctx.numba:
                from models.conv_lif_kernels import lif_backward

                shape = spikes.shape
                dt = spikes.numpy().dtype.type
                flat = (shape[0], -1)
                spk = spikes.reshape(flat).numpy()
                carry0 = (g_u.detach().contiguous().reshape(-1) * ctx.leak if g_u is not None
                          else torch.zeros(spk.shape[1], dtype=spikes.dtype)).numpy()
                gs = (g_spikes.detach().contiguous().reshape(flat).numpy() if g_spikes is not None else spk)
                g_cur = torch.empty_like(spikes)
                lif_backward(gs, sg.reshape(flat).numpy(), spk, clamped.reshape(flat).numpy(), carry0,
                             g_cur.reshape(flat).numpy(), dt(carry_leak), g_spikes is not None, ctx.clamp)
                return g_cur, None, None, None, None, None
            steps = spikes.shape[0]
            g_cur = torch.empty_like(spikes)
            carry = g_u * ctx.leak if g_u is not None else torch.zeros_like(spikes[0])  # dL/dV_post[T-1]
            for t in range(steps - 1, -1, -1):
                g_v = carry * (1.0 - spikes[t])
                if g_spikes is not None:
                    g_v = g_v + g_spikes[t] * sg[t]
                if ctx.clamp:
                    g_v = g_v.masked_fill(clamped[t], 0.0)
                g_cur[t] = g_v
                carry = g_v * carry_leak
            return g_cur, None, None, None, None, None

    return LIFSequence


def autograd_lif(current, leak: float, v_th: float, slope: float):
    """Per-step autograd LIF with the fast-sigmoid surrogate (the plain-torch way: one graph node per step), the
    reference the fused LIF function is tested and benchmarked against: current (T, ...) -> (spikes (T, ...), final
    potential leak * V_T), s = H(V - v_th) with the derivative of f(u) = u / (1 + slope |u|), reset to 0."""
    import torch

    v = torch.zeros_like(current[0])
    spikes = []
    for t in range(current.shape[0]):
        v = leak * v + current[t]
        u = v - v_th
        f = u / (1 + slope * u.abs())
        s = (u > 0).to(v.dtype) + f - f.detach()
        spikes.append(s)
        v = v * (1 - s.detach())
    return torch.stack(spikes), leak * v


def _trace_function():
    import torch

    class LeakyTrace(torch.autograd.Function):
        """current (T, B, n) -> A (T, B, n), A_t = leak (A_{t-1} + I_t) (the readout's non-resetting trace).
        Backward with factor f per step (f = leak: exact; f = 1: the code's detached leak):
        G_t = g_A[t] + f G_{t+1}, g_I[t] = f G_t. One pass each way (indexing A[t] in autograd would cost a
        full-size zero tensor per step in the backward: O(T^2))."""

        @staticmethod
        def forward(ctx, current, leak: float, factor: float):
            out = torch.empty_like(current)
            acc = torch.zeros_like(current[0])
            for t in range(current.shape[0]):
                acc = acc.add_(current[t]).mul_(leak)
                out[t] = acc
            ctx.factor = factor
            return out

        @staticmethod
        def backward(ctx, g_out):
            f = ctx.factor
            g_cur = torch.empty_like(g_out)
            carry = torch.zeros_like(g_out[0])
            for t in range(g_out.shape[0] - 1, -1, -1):
                carry = carry.mul_(f).add_(g_out[t])
                g_cur[t] = carry * f
            return g_cur, None, None

    return LeakyTrace


def _module_base():
    import torch

    return torch.nn.Module


class SpikingConvAE(_module_base()):
    """The spiking conv autoencoder as a torch module. Parameters hold the weights in PyTorch layouts
    (:func:`init_weights`); ``forward`` takes (T, B, side*side) 0/1 input spikes."""

    def __init__(self, arch: ConvArch, weights: dict[str, np.ndarray], *, leak: float = LEAK, v_th: float = V_TH,
                 p_scale: float = P_SCALE, slope: float = 5.0, surrogate: str = "fast-sigmoid",
                 clamp: bool = False, dtype=None, lif_backend: str = "torch", channels_last: bool = False):
        import torch

        super().__init__()
        if surrogate not in SURROGATES:
            raise SnncError(f"unknown surrogate {surrogate!r}; choose one of {', '.join(SURROGATES)}")
        dtype = dtype or torch.float32
        self.arch, self.leak, self.v_th, self.p_scale, self.slope = arch, float(leak), float(v_th), float(p_scale), \
            float(slope)
        self.surrogate, self.clamp = surrogate, bool(clamp)
        self.w = torch.nn.ParameterDict({k: torch.nn.Parameter(torch.tensor(np.asarray(weights[k]), dtype=dtype))
                                         for k in SYNAPSES})
        self._lif = _lif_function(lif_backend)
        self._trace = _trace_function()
        self.channels_last = bool(channels_last)

    def weights_numpy(self) -> dict[str, np.ndarray]:
        return {k: p.detach().cpu().numpy().astype(np.float64) for k, p in self.w.items()}

    def forward(self, x) -> dict:
        """x (T, B, side^2) spikes -> {"image": (B, side^2) max_t A_t / (T p_scale), "spikes": {pop: (T, B, n)},
        "final": {pop: (B, n) final potentials U}, "readout": (T, B, side^2) A_t}."""
        import torch
        import torch.nn.functional as F

        a = self.arch
        steps, b = x.shape[0], x.shape[1]
        tb = steps * b
        spikes, final = {}, {}

        def lif(name, current):  # current (T*B, ...) -> spikes (T*B, ...)
            shape = current.shape
            s, u = self._lif.apply(current.reshape(steps, b, -1), self.leak, self.v_th, self.slope,
                                   self.surrogate == "code", self.clamp)
            spikes[name], final[name] = s, u
            return s.reshape(shape)

        def nhwc(t):  # channels_last: ~1.5x faster per convolution alone, no gain measured in the whole batch
            return t.contiguous(memory_format=torch.channels_last) if self.channels_last else t

        h = lif("lif0", F.conv2d(nhwc(x.reshape(tb, 1, a.side, a.side)), nhwc(self.w["conv0"])))
        h = lif("lif1", F.conv2d(nhwc(h), nhwc(self.w["conv1"])))
        h = lif("latent", F.linear(h.reshape(tb, -1), self.w["enc"]))
        h = lif("lif2", F.linear(h, self.w["dec"]))
        h = lif("lif3", F.conv_transpose2d(nhwc(h.reshape(tb, a.c2, a.s2, a.s2)), nhwc(self.w["up0"])))
        cur = F.conv_transpose2d(nhwc(h), nhwc(self.w["up1"])).reshape(steps, b, -1)
        # the code's trace applies its leak to a detached copy: gradient factor 1 per step
        readout = self._trace.apply(cur, self.leak, 1.0 if self.surrogate == "code" else self.leak)
        image = readout.max(dim=0).values / (steps * self.p_scale)
        return {"image": image, "spikes": spikes, "final": final, "readout": readout}


def make_graph(arch: ConvArch, weights: dict[str, np.ndarray], metadata: dict, *, leak: float = LEAK,
               v_th: float = V_TH) -> Graph:
    """The IR graph of the trained network (float64 weights); ``metadata`` should hold steps and p_scale."""
    w = {k: np.asarray(weights[k], np.float64) for k in SYNAPSES}
    sz = arch.sizes

    def pop(n):
        return LIF(n, leak=leak, v_th=v_th, reset="zero", strict=True)

    nodes = {
        "input": Input(arch.side ** 2),
        "conv0": Conv2d(w["conv0"], (1, arch.side, arch.side)), "lif0": pop(sz["lif0"]),
        "conv1": Conv2d(w["conv1"], (arch.c1, arch.s1, arch.s1)), "lif1": pop(sz["lif1"]),
        "flat": Flatten((arch.c2, arch.s2, arch.s2)), "enc": Dense(w["enc"]), "latent": pop(sz["latent"]),
        "dec": Dense(w["dec"]), "lif2": pop(sz["lif2"]),
        "up0": ConvTranspose2d(w["up0"], (arch.c2, arch.s2, arch.s2)), "lif3": pop(sz["lif3"]),
        "up1": ConvTranspose2d(w["up1"], (arch.c1, arch.s1, arch.s1)), "out": Readout(sz["out"], leak=leak),
    }
    order = list(nodes)
    meta = {"family": "conv-lif", "readout": "image = max over steps of out's potentials / (steps * p_scale)",
            "arch": {"c1": arch.c1, "c2": arch.c2, "latent": arch.latent, "kernel": arch.kernel, "side": arch.side}}
    meta.update(metadata)
    return Graph(nodes, tuple(zip(order[:-1], order[1:])), "steps", meta)


def from_graph(graph: Graph) -> tuple[ConvArch, dict[str, np.ndarray], float]:
    """(arch, weights, leak) of a graph made by :func:`make_graph`; ArtifactError for any other graph."""
    names = ("input",) + tuple(x for pair in zip(SYNAPSES, SPIKING + ("out",)) for x in pair)
    if set(graph.nodes) != set(names) | {"flat"}:
        raise ArtifactError(f"not a conv autoencoder graph (snnc train conv): nodes {sorted(graph.nodes)}")
    c0, c1 = graph.nodes["conv0"], graph.nodes["conv1"]
    lat = graph.nodes["latent"]
    if not isinstance(c0, Conv2d) or not isinstance(lat, LIF) or not isinstance(graph.nodes["out"], Readout):
        raise ArtifactError("not a conv autoencoder graph: conv0 must be Conv2d, latent LIF and out Readout")
    arch = ConvArch(c1=int(c0.weight.shape[0]), c2=int(c1.weight.shape[0]), latent=lat.n,
                    kernel=int(c0.weight.shape[2]), side=int(c0.input_shape[1]))
    weights = {k: np.asarray(graph.nodes[k].weight) for k in SYNAPSES}
    try:
        make_graph(arch, weights, {}, leak=lat.leak)
    except (ValueError, SnncError) as exc:
        raise ArtifactError(f"conv autoencoder graph has inconsistent shapes: {exc}") from None
    return arch, weights, lat.leak


def reconstruct(graph: Graph, images01: np.ndarray, *, steps: int, p_scale: float, seed: int,
                batch: int = 100) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Images (N, side^2) in [0, 1] -> (reconstructions (N, side^2), spike counts {pop: (N, n)}) of a conv graph,
    float32 torch forward on Bernoulli inputs drawn from ``seed``."""
    import torch

    arch, weights, leak = from_graph(graph)
    model = SpikingConvAE(arch, weights, leak=leak, p_scale=p_scale)
    gen = torch.Generator().manual_seed(int(seed))
    recs, counts = [], {k: [] for k in SPIKING}
    with torch.no_grad():
        for i in range(0, images01.shape[0], batch):
            img = torch.tensor(images01[i:i + batch], dtype=torch.float32)
            out = model(bernoulli_spikes(img, steps, p_scale, gen))
            recs.append(out["image"].numpy().astype(np.float64))
            for k in SPIKING:
                counts[k].append(out["spikes"][k].sum(0).numpy())
    return np.concatenate(recs), {k: np.concatenate(v) for k, v in counts.items()}
