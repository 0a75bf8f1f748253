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
surrogate derivative and the masked error per step. Of the five weight-sized products, the four with a 0/1
operand (input or hidden spikes) are cache-tiled sums of the rows the spikes pick while the spikes are sparse
(else BLAS), and the dense adjoint product G2 W2 is BLAS. Tested equal to autograd to float64 rounding.
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
# input spike density below which the input currents x W1^T and the gradient G1^T x use lists of input spikes
# (tiled row sums, models/rate_bptt_kernels.py) instead of dense BLAS products
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
    ``spike_lists``: compute a1 @ W2^T and G2^T a1 from lists of hidden spikes (tiled row sums) instead of BLAS;
    None = when the hidden density is below SPARSE_BELOW. ``input_lists``: the same for the input spikes (x @ W1^T
    and G1^T x); None = when the input density is below INPUT_SPARSE_BELOW.
    ``work``: a dict that keeps the batch-sized buffers between calls (BpttLearner passes one); the returned
    gradients then live in it and are overwritten by the next call with the same dict. ``profile``: a dict to
    which the CPU seconds of each part are added (models.rate_online.PartTimer)."""
    import torch

    from models import rate_bptt_kernels as K
    from models.rate_kernels import spike_lists as _lists
    from models.rate_online import PartTimer

    tick = PartTimer(profile)
    w1 = w1.detach()
    w2 = w2.detach()
    dt = w1.dtype
    npdt = np.float32 if dt == torch.float32 else np.float64
    c = np.dtype(npdt).type
    t_steps, b, n_in = x.shape
    h, n_out = w1.shape[0], w2.shape[0]
    rows = t_steps * b
    leak_c, vth_c, one, zero, tiny = c(leak), c(v_th), c(1.0), c(0.0), c(np.finfo(npdt).tiny)
    x_u8 = x.numpy() if x.dtype == torch.uint8 else (x != 0).to(torch.uint8).numpy()
    in_density = float(np.count_nonzero(x_u8)) / max(1, x_u8.size)
    in_sparse = (in_density < INPUT_SPARSE_BELOW) if input_lists is None else input_lists
    if not in_sparse:
        xf = _ws(work, "xf", (rows, n_in), dt)
        xf.copy_(x.reshape(rows, n_in))
    tick("setup")
    a1 = _ws(work, "a1", (rows, h), torch.uint8)
    e1 = _ws(work, "e1", (rows, h), dt)
    if in_sparse:                  # input currents as row sums of W1^T over the input spikes, fused with the LIF
        ptr_x, idx_x = _lists(np.ascontiguousarray(x_u8))              # rows t B + n
        w1p = _ws(work, "w1p", (K.n_tiles(h), n_in, K.TILE), dt).numpy()
        K.pack_transposed(w1.numpy(), w1p, zero)
        K.hidden_forward_tiled(ptr_x, idx_x, w1p, a1.numpy().reshape(t_steps, b, h),
                               e1.numpy().reshape(t_steps, b, h), leak_c, vth_c, zero)
        tick("x W1^T (input-spike row sums) + hidden LIF forward")
    else:
        i1 = torch.mm(xf, w1.T, out=_ws(work, "i1", (rows, h), dt))     # (T*B, H) input currents
        tick("x W1^T (BLAS)")
        K.hidden_forward(i1.numpy().reshape(t_steps, b, h), a1.numpy().reshape(t_steps, b, h),
                         e1.numpy().reshape(t_steps, b, h), leak_c, vth_c, zero)
        tick("hidden LIF forward")
    e1.exp_()                                                        # e^(V1 - v_th)
    tick("exp")
    ptr_h, idx_h = _lists(a1.numpy().reshape(t_steps, b, h))
    density = float(ptr_h[-1]) / (rows * h)
    sparse = density < SPARSE_BELOW if spike_lists is None else spike_lists
    i2 = _ws(work, "i2", (rows, n_out), dt)
    if sparse:                                                       # hidden spikes as row lists, not BLAS
        w2p = _ws(work, "w2p", (K.n_tiles(n_out), h, K.TILE), dt).numpy()
        K.pack_transposed(w2.numpy(), w2p, zero)
        K.gather_tiled(ptr_h, idx_h, w2p, i2.numpy())
        a1f = None
    else:
        a1f = _ws(work, "a1f", (rows, h), dt)
        a1f.copy_(a1)
        torch.mm(a1f, w2.T, out=i2)                                  # (T*B, n_out)
    tick("a1 W2^T")
    counts = np.zeros((b, n_out), npdt)
    sq = np.zeros(b, npdt)
    g2 = i2                                                          # reuse: dL/dI2 (T*B, n_out)
    g2p = _ws(work, "g2p", (K.n_tiles(n_out) if sparse else 0, rows, K.TILE), dt).numpy()
    K.output_layer(i2.numpy().reshape(t_steps, b, n_out), x_u8, g2.numpy().reshape(t_steps, b, n_out), g2p, sparse,
                   counts, sq, c(-1.0 / b), leak_c, vth_c, zero, tiny)
    tick("output LIF forward + backward")
    if sparse:
        bptr, bidx = K.block_columns(ptr_h, idx_h, h, K.ROW_BLOCK)
        grad_w2 = _ws(work, "gw2", (n_out, h), dt)
        K.transposed_tiled(bptr, bidx, K.ROW_BLOCK, g2p, grad_w2.numpy())
    else:
        grad_w2 = torch.mm(g2.T, a1f, out=_ws(work, "gw2", (n_out, h), dt))   # (n_out, H)
    tick("G2^T a1")
    da1 = torch.mm(g2, w2, out=_ws(work, "da1", (rows, h), dt))        # (T*B, H)
    tick("G2 W2 (BLAS)")
    # dL/dI1: packed column tiles for the tiled G1^T x, else (T, B, H) for BLAS (reusing the input currents)
    g1 = np.empty((0, 0, 0), npdt) if in_sparse else i1.numpy().reshape(t_steps, b, h)
    g1p = _ws(work, "g1p", (K.n_tiles(h) if in_sparse else 0, rows, K.TILE), dt).numpy()
    K.hidden_backward(da1.numpy().reshape(t_steps, b, h), e1.numpy().reshape(t_steps, b, h),
                      a1.numpy().reshape(t_steps, b, h), g1, g1p, in_sparse,
                      leak_c, one, zero, tiny)
    tick("hidden LIF backward")
    if in_sparse:
        bptr, bidx = K.block_columns(ptr_x, idx_x, n_in, K.ROW_BLOCK)
        grad_w1 = _ws(work, "gw1", (h, n_in), dt)
        K.transposed_tiled(bptr, bidx, K.ROW_BLOCK, g1p, grad_w1.numpy())
        tick("G1^T x (input-spike row sums)")
    else:
        grad_w1 = torch.mm(i1.T, xf, out=_ws(work, "gw1", (h, n_in), dt))        # (H, n_in)
        tick("G1^T x (BLAS)")
    return {"loss": 0.5 * float(sq.sum()) / b, "g1": grad_w1, "g2": grad_w2, "out_spikes": torch.from_numpy(counts),
            "hidden_density": density}


def _adam(params: list, **kw):
    """torch Adam, the fused CPU kernel where this torch has one: one pass over w, g, m, v instead of ~8 (Fashion-1024:
    6.8 instead of 14.8 ms per step, 1 thread, busy machine); the same update to float rounding (float64: 2e-16 over
    5 steps). torch 2.13's fused CPU Adam misreads non-contiguous gradients (transposed views: off by 0.1 in a test),
    so bptt_grads returns contiguous gradients."""
    import torch

    try:
        return torch.optim.Adam(params, fused=True, **kw)
    except (RuntimeError, TypeError, ValueError):      # no fused kernel for this device / dtype / torch version
        return torch.optim.Adam(params, **kw)


class BpttLearner:
    """w1 (H, n_in), w2 (n_out, H) as torch leaf tensors with a torch Adam optimiser (lr, betas, eps)."""

    def __init__(self, w1: np.ndarray, w2: np.ndarray, lr: float = 3e-3, leak: float = 0.9, v_th: float = 1.0,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-7, dtype=None):
        import torch

        dtype = dtype or torch.float32
        self.w1 = torch.tensor(w1, dtype=dtype, requires_grad=True)
        self.w2 = torch.tensor(w2, dtype=dtype, requires_grad=True)
        self.leak, self.v_th = leak, v_th
        self.opt = _adam([self.w1, self.w2], lr=lr, betas=betas, eps=eps)
        self._work: dict = {}                     # bptt_grads' batch-sized buffers, reused between batches

    def train_batch(self, x, profile: dict | None = None) -> dict:
        """x: (T, B, n_in) torch 0/1 spikes. One Adam step (gradient by :func:`bptt_grads`); returns {"loss",
        "out_spikes" (B, n_out) counts, "hidden_density"}. ``profile``: CPU seconds per part are added to it."""
        from models.rate_online import PartTimer

        r = bptt_grads(self.w1, self.w2, x, self.leak, self.v_th, work=self._work, profile=profile)
        tick = PartTimer(profile)
        self.w1.grad, self.w2.grad = r["g1"].contiguous(), r["g2"].contiguous()   # (fused Adam: see _adam)
        self.opt.step()
        tick("Adam (torch)")
        return {"loss": r["loss"], "out_spikes": r["out_spikes"], "hidden_density": r["hidden_density"]}

    def numpy(self) -> tuple[np.ndarray, np.ndarray]:
        return self.w1.detach().numpy().astype(np.float64), self.w2.detach().numpy().astype(np.float64)
