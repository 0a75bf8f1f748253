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

    def train_batch(self, x) -> dict:
        """x: (T, B, n_in) torch 0/1 spikes. One Adam step; returns {"loss", "out_spikes" (B, n_out) counts}."""
        x = x.to(self.w1.dtype)
        self.opt.zero_grad(set_to_none=True)
        loss, a2 = bptt_loss(self.w1, self.w2, x, self.leak, self.v_th)
        loss.backward()
        self.opt.step()
        return {"loss": float(loss.detach()), "out_spikes": a2.detach().sum(dim=0)}

    def numpy(self) -> tuple[np.ndarray, np.ndarray]:
        return self.w1.detach().numpy().astype(np.float64), self.w2.detach().numpy().astype(np.float64)
