"""Surrogate-gradient backpropagation through time for the rate-coded LIF autoencoder (torch autograd).

Same neuron, input and loss as the online rule (``models/rate_online.py``): per step
V = min(leak V + W a_prev, V_th), a = H(V - V_th), V reset to 0 after a spike, and the masked loss
L = sum_t 0.5 sum (mask_t (V_th x_t - V2pre_t))^2 / B with mask_t = x_t XOR a2_t. Unlike the online rule, the
gradient is the exact gradient of L through the unrolled network except for three standard choices:
the spike's derivative is the authors' sigmoid surrogate s'(V - V_th) = e^-u / (1 + e^-u)^2; the clamp
min(V, V_th) passes gradients straight through; the reset and the mask are not differentiated (detached).
One Adam update per batch (torch.optim.Adam, eps 1e-7).

Synapses have no recurrence, so each layer's input current for all T steps is one matrix product
((T*B, n_in) @ W^T) and only the neuron update loops over steps.

Two implementations of the same gradient: :func:`bptt_loss` is torch autograd (differentiable, for use in your
own PyTorch code); :func:`bptt_grads` (what :class:`BpttLearner` trains with) is hand-written: the LIF
recurrences forward and backward are numba kernels (models/rate_bptt_kernels.py) that keep only spikes, the
surrogate derivative and the masked error per step, and the five weight-sized products are BLAS calls. Tested
equal to autograd to float64 rounding.
"""
from __future__ import annotations

import numpy as np


def _spike_fn():
    import torch

    class SpikeSigmoid(torch.autograd.Function):
        """a = (V >= V_th) forward; da/dV = s'(V - V_th) backward."""

        @staticmethod
        def forward(ctx, u):  # u = V - V_th
            ctx.save_for_backward(u)
            return (u >= 0).to(u.dtype)

        @staticmethod
        def backward(ctx, grad):
            (u,) = ctx.saved_tensors
            e = torch.exp(-torch.abs(u))  # s' is even: no overflow for very negative u
            return grad * e / (1.0 + e) ** 2

    return SpikeSigmoid.apply


class _ClampST:
    """min(V, V_th) forward, identity backward (straight through)."""

    @staticmethod
    def apply(v, v_th):
        return v - (v - v_th).clamp(min=0).detach()


def lif_layer(current, leak: float, v_th: float, spike):
    """current (T, B, n) -> (spikes (T, B, n), pre-reset potentials (T, B, n)), differentiable."""
    import torch

    v = torch.zeros_like(current[0])
    spikes, pots = [], []
    for t in range(current.shape[0]):
        v = _ClampST.apply(leak * v + current[t], v_th)
        a = spike(v - v_th)
        spikes.append(a)
        pots.append(v)
        v = v * (1.0 - a.detach())
    return torch.stack(spikes), torch.stack(pots)


def bptt_loss(w1, w2, x, leak: float = 0.9, v_th: float = 1.0):
    """Masked loss of one batch (scalar tensor, per sample: sum over steps of 0.5 sum E^2, mean over the batch) and
    the output spikes (T, B, n_out). x: (T, B, n_in) float 0/1."""
    spike = _spike_fn()
    t_steps, b, n_in = x.shape
    i1 = (x.reshape(t_steps * b, n_in) @ w1.T).reshape(t_steps, b, -1)
    a1, _ = lif_layer(i1, leak, v_th, spike)
    i2 = (a1.reshape(t_steps * b, -1) @ w2.T).reshape(t_steps, b, -1)
    a2, v2 = lif_layer(i2, leak, v_th, spike)
    mask = (x != a2.detach()).to(x.dtype)
    err = mask * (v_th * x - v2)
    return 0.5 * (err * err).sum() / b, a2


SPARSE_BELOW = 0.1  # hidden spike density (per neuron and step) below which the a1 products use spike lists
# input spike density below which the input currents x W1^T are row gathers of W1^T (one row per input spike)
# instead of a dense BLAS product: 1 thread, 1024 network, 6,000 rows, busy machine: at 14 % (Fashion, p 0.5)
# 40 ms vs 63 ms, at 25 % 60 vs 57 ms.
INPUT_SPARSE_BELOW = 0.2


def _ws(work: dict | None, key: str, shape: tuple, dtype):
    """A torch tensor of ``shape`` and ``dtype``: fresh, or the one kept in ``work`` under ``key`` (made there on
    first use or when the shape changes). Reusing the batch-sized buffers saves the kernel's page clearing of
    ~200 MB of fresh memory per Fashion-1024 batch (22 of 280 ms, measured on the busy 2-core machine)."""
    import torch

    if work is None:
        return torch.empty(shape, dtype=dtype)
    t = work.get(key)
    if t is None or tuple(t.shape) != tuple(shape) or t.dtype != dtype:
        t = work[key] = torch.empty(shape, dtype=dtype)
    return t


def bptt_grads(w1, w2, x, leak: float = 0.9, v_th: float = 1.0, spike_lists: bool | None = None,
               input_lists: bool | None = None, work: dict | None = None, profile: dict | None = None) -> dict:
    """Hand-written BPTT of :func:`bptt_loss`: w1 (H, n_in), w2 (n_out, H), x (T, B, n_in) 0/1 spikes (torch CPU
    tensors; computed in w1's dtype). Returns {"loss": float, "g1": dL/dW1, "g2": dL/dW2 (torch, like w1/w2),
    "out_spikes": (B, n_out) output spike counts, "hidden_density": hidden spikes per neuron and step}.
    ``spike_lists``: compute a1 @ W2^T and g2^T a1 from lists of hidden spikes (row gathers) instead of BLAS;
    None = when the hidden density is below SPARSE_BELOW. ``input_lists``: compute the input currents x @ W1^T from
    lists of input spikes (row gathers of W1^T); None = when the input density is below INPUT_SPARSE_BELOW.
    ``work``: a dict that keeps the batch-sized buffers between calls (BpttLearner passes one); the returned
    gradients then live in it and are overwritten by the next call with the same dict. ``profile``: a dict to
    which the CPU seconds of each part are added (models.rate_online.PartTimer)."""
    import numba
    import torch

    from models import rate_bptt_kernels as K

    from models.rate_online import PartTimer

    tick = PartTimer(profile)
    w1 = w1.detach()
    w2 = w2.detach()
    dt = w1.dtype
    npdt = np.float32 if dt == torch.float32 else np.float64
    c = np.dtype(npdt).type
    t_steps, b, n_in = x.shape
    h, n_out = w1.shape[0], w2.shape[0]
    xf = _ws(work, "xf", (t_steps * b, n_in), dt)
    xf.copy_(x.reshape(t_steps * b, n_in))
    leak_c, vth_c, one, zero, tiny = c(leak), c(v_th), c(1.0), c(0.0), c(np.finfo(npdt).tiny)
    x_u8 = x.numpy() if x.dtype == torch.uint8 else (x != 0).to(torch.uint8).numpy()
    in_density = float(np.count_nonzero(x_u8)) / max(1, x_u8.size)
    tick("setup")
    if (in_density < INPUT_SPARSE_BELOW) if input_lists is None else input_lists:
        from models.rate_kernels import spike_lists as _lists

        ptr, idx = _lists(np.ascontiguousarray(x_u8))                  # rows t B + n, as xf's
        i1 = _ws(work, "i1", (t_steps * b, h), dt)
        w1t = _ws(work, "w1t", (n_in, h), dt)
        w1t.copy_(w1.T)
        K.gather_csr(ptr, idx, w1t.numpy(), i1.numpy(), zero)
        tick("x W1^T (input-spike gathers)")
    else:
        i1 = torch.mm(xf, w1.T, out=_ws(work, "i1", (t_steps * b, h), dt))   # (T*B, H) input currents
        tick("x W1^T (BLAS)")
    a1 = _ws(work, "a1", (t_steps * b, h), dt)
    e1 = _ws(work, "e1", (t_steps * b, h), dt)
    nspk = _ws(work, "nspk", (t_steps * b,), torch.int32).numpy()
    spk = _ws(work, "spk", (t_steps * b, h), torch.int32).numpy()
    K.hidden_forward(i1.numpy().reshape(t_steps, b, h), a1.numpy().reshape(t_steps, b, h),
                     e1.numpy().reshape(t_steps, b, h), nspk, spk, leak_c, vth_c, one, zero)
    tick("hidden LIF forward")
    e1.exp_()                                                        # e^(V1 - v_th)
    tick("exp")
    density = float(nspk.sum()) / (t_steps * b * h)
    sparse = density < SPARSE_BELOW if spike_lists is None else spike_lists
    if sparse:                                                       # hidden spikes as row lists, not BLAS
        i2 = _ws(work, "i2", (t_steps * b, n_out), dt)
        w2t = _ws(work, "w2t", (h, n_out), dt)
        w2t.copy_(w2.T)
        K.gather_rows(nspk, spk, w2t.numpy(), i2.numpy(), zero)
    else:
        i2 = torch.mm(a1, w2.T, out=_ws(work, "i2", (t_steps * b, n_out), dt))   # (T*B, n_out)
    tick("a1 W2^T")
    a2 = _ws(work, "a2", (t_steps, b, n_out), torch.uint8).numpy()
    err = _ws(work, "err", (t_steps * b, n_out), dt)
    counts = np.zeros((b, n_out), npdt)
    sq = np.zeros(b, npdt)
    K.output_forward(i2.numpy().reshape(t_steps, b, n_out), xf.numpy().reshape(t_steps, b, n_out), a2,
                     err.numpy().reshape(t_steps, b, n_out), counts, sq, leak_c, vth_c, one, zero)
    g2 = i2                                                          # reuse: dL/dI2 (T*B, n_out)
    K.output_backward(err.numpy().reshape(t_steps, b, n_out), a2, g2.numpy().reshape(t_steps, b, n_out),
                      c(-1.0 / b), leak_c, one, zero, tiny)
    tick("output LIF forward + backward")
    if sparse:
        grad_w2t = _ws(work, "gw2t", (h, n_out), dt).numpy()
        K.scatter_rows(nspk, spk, g2.numpy(), grad_w2t, numba.get_num_threads(), zero)
        grad_w2 = torch.from_numpy(grad_w2t).T
    else:
        grad_w2 = torch.mm(g2.T, a1, out=_ws(work, "gw2", (n_out, h), dt))   # (n_out, H)
    tick("G2^T a1")
    da1 = torch.mm(g2, w2, out=_ws(work, "da1", (t_steps * b, h), dt))        # (T*B, H)
    tick("G2 W2 (BLAS)")
    g1 = i1                                                          # reuse: dL/dI1
    K.hidden_backward(da1.numpy().reshape(t_steps, b, h), e1.numpy().reshape(t_steps, b, h),
                      a1.numpy().reshape(t_steps, b, h), g1.numpy().reshape(t_steps, b, h), leak_c, one, zero, tiny)
    tick("hidden LIF backward")
    grad_w1 = torch.mm(g1.T, xf, out=_ws(work, "gw1", (h, n_in), dt))        # (H, n_in)
    tick("G1^T x (BLAS)")
    return {"loss": 0.5 * float(sq.sum()) / b, "g1": grad_w1, "g2": grad_w2, "out_spikes": torch.from_numpy(counts),
            "hidden_density": density}


class BpttLearner:
    """w1 (H, n_in), w2 (n_out, H) as torch leaf tensors with a torch Adam optimiser (lr, betas, eps)."""

    def __init__(self, w1: np.ndarray, w2: np.ndarray, lr: float = 3e-3, leak: float = 0.9, v_th: float = 1.0,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-7, dtype=None):
        import torch

        dtype = dtype or torch.float32
        self.w1 = torch.tensor(w1, dtype=dtype, requires_grad=True)
        self.w2 = torch.tensor(w2, dtype=dtype, requires_grad=True)
        self.leak, self.v_th = leak, v_th
        self.opt = torch.optim.Adam([self.w1, self.w2], lr=lr, betas=betas, eps=eps)
        self._work: dict = {}                     # bptt_grads' batch-sized buffers, reused between batches

    def train_batch(self, x, profile: dict | None = None) -> dict:
        """x: (T, B, n_in) torch 0/1 spikes. One Adam step (gradient by :func:`bptt_grads`); returns {"loss",
        "out_spikes" (B, n_out) counts, "hidden_density"}. ``profile``: CPU seconds per part are added to it."""
        from models.rate_online import PartTimer

        r = bptt_grads(self.w1, self.w2, x, self.leak, self.v_th, work=self._work, profile=profile)
        tick = PartTimer(profile)
        self.w1.grad, self.w2.grad = r["g1"], r["g2"]
        self.opt.step()
        tick("Adam (torch)")
        return {"loss": r["loss"], "out_spikes": r["out_spikes"], "hidden_density": r["hidden_density"]}

    def numpy(self) -> tuple[np.ndarray, np.ndarray]:
        return self.w1.detach().numpy().astype(np.float64), self.w2.detach().numpy().astype(np.float64)
