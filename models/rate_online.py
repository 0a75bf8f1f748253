"""Roy, Panda & Roy 2019's online training rule, exactly as the authors' MATLAB code runs it
(purdue-nrl/SpikingAutoencoder, ``auto_encoder.m``: ``code``, ``decode``, ``calculate_loss``,
``calculate_gradients``, ``apply_gradients``; ``ae_train.m``: one Adam update per time step).

Per batch of B samples (moments, potentials and traces start at 0), for every step t = 1 .. T with input spikes
x[t] (B, n_in) in {0, 1} (units: potentials and weights in threshold units, V_th = 1):

    V1 = min(leak V1 + x W1^T, V_th);  sig1 = s'(V1 - V_th), s'(u) = e^-u / (1 + e^-u)^2
    tr1 = leak tr1' + x                         (eligibility trace of W1 per sample, (B, n_in))
    a1 = V1 >= V_th;  V1 = 0 where a1;  tr1' = tr1 * (1 - sum(a1) / n_shrink)   (per sample)
    V2 = min(leak V2 + a1 W2^T, V_th);  tr2 = leak tr2' + a1
    a2 = V2 >= V_th;  V2pre = V2;  V2 = 0 where a2;  tr2' = tr2 * (1 - sum(a2) / n_shrink)
    E  = (V_th x - V2pre) * (x XOR a2);  loss = 0.5 sum E^2
    g2 = (-E)^T tr2 / B;  g1 = (((-E) W2) * sig1)^T tr1 / B     (W2 before this step's update)
    Adam (beta1, beta2, eps) with bias correction by t; W -= lr m_hat / (sqrt(v_hat) + eps)

``n_shrink`` is 784 in the authors' code for both layers (the trace shrink that stands in for the paper's
"reset the derivative of a neuron that spiked"). The gradient of step t uses the trace before the shrink.

Sparsity: the columns of W1 whose pixel never spikes in the batch get a zero gradient at every step, so their Adam
moments stay 0 and their update is exactly 0; only the active columns are computed (bitwise the same result).
The output layer's current sums only the hidden neurons that spiked in the step when they are fewer than half.
The Adam update is one fused numba pass (models/rate_kernels.py); tensors live on the CPU; numba's thread count
applies to it, torch's to the matrix products.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-7


@dataclass(frozen=True)
class OnlineRule:
    """Settings of the online rule (defaults: the authors' code). lr: Adam step size per time step."""

    lr: float = 5e-4
    leak: float = 0.9
    v_th: float = 1.0
    beta1: float = ADAM_BETAS[0]
    beta2: float = ADAM_BETAS[1]
    eps: float = ADAM_EPS
    n_shrink: float = 784.0


def sigmoid_derivative(u):
    """s'(u) = e^-u / (1 + e^-u)^2 (torch tensor or numpy array), the authors' surrogate of dA/dV at u = V - V_th.

    s' is even, so it is computed as e^-|u| / (1 + e^-|u|)^2: the same value without overflow for very negative
    potentials (float32 exp overflows beyond 88; the authors' float64 MATLAB beyond 709)."""
    try:
        import torch

        if isinstance(u, torch.Tensor):
            e = torch.exp(-torch.abs(u))
            return e / (1.0 + e) ** 2
    except ModuleNotFoundError:  # pragma: no cover - torch is a dependency of the trainers
        pass
    e = np.exp(-np.abs(u))
    return e / (1.0 + e) ** 2


def online_batch(w1, w2, x, rule: OnlineRule = OnlineRule()) -> dict:
    """Train on one batch in place: w1 (H, n_in), w2 (n_out, H) torch tensors (float32 or float64), x (T, B, n_in)
    spikes (any torch dtype, 0/1); CPU tensors. Returns {"loss": sum over steps of 0.5 sum E^2 / B,
    "out_spikes": (B, n_out) output spike counts, "hid_spikes": hidden spikes summed over batch and steps}."""
    import torch

    from models.rate_kernels import adam_update

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
            adam_update(w.numpy(), g.contiguous().numpy(), m.numpy(), s.numpy(), r.lr, r.beta1, r.beta2, t + 1,
                        r.eps)
    w1[:, cols] = w1a
    return {"loss": loss, "out_spikes": out_counts, "hid_spikes": hid}
