"""Slow reference copies of the rate trainers as they were before the speed work (issue [E] section 4): the torch
online rule (dense products, per-step Adam) and the torch-autograd BPTT loss. Tests compare the fast kernels
against these to float tolerance."""
from __future__ import annotations

from models.rate_online import OnlineRule


def reference_online_batch(w1, w2, x, rule: OnlineRule = OnlineRule()) -> dict:
    """Train on one batch in place: w1 (H, n_in), w2 (n_out, H) torch tensors (float32 or float64), x (T, B, n_in)
    spikes (any torch dtype, 0/1); CPU tensors. Returns {"loss": sum over steps of 0.5 sum E^2 / B,
    "out_spikes": (B, n_out) output spike counts, "hid_spikes": hidden spikes summed over batch and steps}."""
    import torch

    from models.rate_online import sigmoid_derivative

    t_steps, b, _ = x.shape
    dt = w1.dtype
    cols = torch.nonzero(x.reshape(-1, x.shape[2]).any(dim=0)).flatten()
    xa = x[:, :, cols].to(dt)                       # (T, B, n_active)
    w1a = w1[:, cols].contiguous()                  # (H, n_active): the columns that can change in this batch
    h, n_out = w1.shape[0], w2.shape[0]
    m1, s1 = torch.zeros_like(w1a), torch.zeros_like(w1a)
    m2, s2 = torch.zeros_like(w2), torch.zeros_like(w2)
    v1 = torch.zeros((b, h), dtype=dt)
    v2 = torch.zeros((b, n_out), dtype=dt)
    tr1p = torch.zeros((b, cols.numel()), dtype=dt)
    tr2p = torch.zeros((b, h), dtype=dt)
    x_full = x.to(dt)
    out_counts = torch.zeros((b, n_out), dtype=dt)
    loss, hid = 0.0, 0.0
    r = rule
    for t in range(t_steps):
        xt = xa[t]
        v1 = torch.clamp(r.leak * v1 + xt @ w1a.T, max=r.v_th)
        sig1 = sigmoid_derivative(v1 - r.v_th)
        tr1 = r.leak * tr1p + xt
        a1 = (v1 >= r.v_th).to(dt)
        v1 = v1 * (1.0 - a1)
        tr1p = tr1 * (1.0 - a1.sum(dim=1, keepdim=True) / r.n_shrink)
        hcols = torch.nonzero(a1.any(dim=0)).flatten()   # hidden neurons that spiked in this step (sparse)
        cur2 = a1[:, hcols] @ w2[:, hcols].T if hcols.numel() < h // 2 else a1 @ w2.T
        v2 = torch.clamp(r.leak * v2 + cur2, max=r.v_th)
        tr2 = r.leak * tr2p + a1
        a2 = (v2 >= r.v_th).to(dt)
        v2pre = v2
        v2 = v2 * (1.0 - a2)
        tr2p = tr2 * (1.0 - a2.sum(dim=1, keepdim=True) / r.n_shrink)
        xf = x_full[t]
        err = (r.v_th * xf - v2pre) * (xf != a2).to(dt)
        loss += 0.5 * float((err * err).sum()) / b
        out_counts += a2
        hid += float(a1.sum())
        neg = -err
        g2 = neg.T @ tr2 / b
        g1 = ((neg @ w2) * sig1).T @ tr1 / b
        for w, g, m, s in ((w1a, g1, m1, s1), (w2, g2, m2, s2)):
            _adam(w, g, m, s, r.lr, r.beta1, r.beta2, t + 1,
                        r.eps)
    w1[:, cols] = w1a
    return {"loss": loss, "out_spikes": out_counts, "hid_spikes": hid}


def _adam(w, g, m, v, lr, b1, b2, step, eps):
    """torch.optim.Adam's update in place (no weight decay), bias correction by ``step``, with 1 - b computed from b
    rounded to the tensors' dtype, as the fused Adam of commit 7c08753 did (see :func:`reference_fused_adam`)."""
    c1, c2 = _one_minus(b1, w.dtype), _one_minus(b2, w.dtype)
    m.mul_(b1).add_(g, alpha=c1)
    v.mul_(b2).addcmul_(g, g, value=c2)
    w.sub_(lr / (1 - b1 ** step) * m / ((v / (1 - b2 ** step)).sqrt() + eps))


def _one_minus(b: float, dtype) -> float:
    """1 - b with b rounded to ``dtype`` first (float32: 1 - 0.999 -> 0.99998713e-3), computed in float64."""
    import numpy as np
    import torch

    return 1.0 - float(np.float32(b)) if dtype in (torch.float32, np.float32) else 1.0 - b


def reference_fused_adam(w, g, m, v, lr: float, b1: float, b2: float, step: int, eps: float) -> None:
    """The fused Adam of commit 7c08753 (models/rate_kernels.py then), in numpy, in place on arrays of one dtype:
    scalars rounded to the arrays' dtype, then every operation in float64 (numba promoted ``1 - b1`` to float64),
    m, v and w stored back in the arrays' dtype."""
    import numpy as np

    dt = w.dtype.type
    f = np.float64
    lr_bc1, fb1, fb2 = f(dt(lr / (1.0 - b1 ** step))), f(dt(b1)), f(dt(b2))
    inv_bc2, feps = f(dt(1.0 / (1.0 - b2 ** step))), f(dt(eps))
    g64 = g.astype(f)
    m64 = fb1 * m.astype(f) + (1 - fb1) * g64
    v64 = fb2 * v.astype(f) + (1 - fb2) * g64 * g64
    m[...] = m64
    v[...] = v64
    w[...] = w.astype(f) - lr_bc1 * m64 / (np.sqrt(v64 * inv_bc2) + feps)


def reference_bptt_loss(w1, w2, x, leak: float = 0.9, v_th: float = 1.0):
    """The torch-autograd BPTT loss of models/rate_bptt.py before the hand-written backward (float tensors)."""
    import torch

    class SpikeSigmoid(torch.autograd.Function):
        @staticmethod
        def forward(ctx, u):
            ctx.save_for_backward(u)
            return (u >= 0).to(u.dtype)

        @staticmethod
        def backward(ctx, grad):
            (u,) = ctx.saved_tensors
            e = torch.exp(-torch.abs(u))
            return grad * e / (1.0 + e) ** 2

    def layer(current):
        v = torch.zeros_like(current[0])
        spikes, pots = [], []
        for t in range(current.shape[0]):
            v = leak * v + current[t]
            v = v - (v - v_th).clamp(min=0).detach()
            a = SpikeSigmoid.apply(v - v_th)
            spikes.append(a)
            pots.append(v)
            v = v * (1.0 - a.detach())
        return torch.stack(spikes), torch.stack(pots)

    t_steps, b, n_in = x.shape
    a1, _ = layer((x.reshape(t_steps * b, n_in) @ w1.T).reshape(t_steps, b, -1))
    a2, v2 = layer((a1.reshape(t_steps * b, -1) @ w2.T).reshape(t_steps, b, -1))
    err = (x != a2.detach()).to(x.dtype) * (v_th * x - v2)
    return 0.5 * (err * err).sum() / b, a2
