"""Non-spiking baselines of the same shape as the spiking conv autoencoder (models/conv_model.py).

Deterministic AE: conv0 -> ReLU -> conv1 -> ReLU -> flatten -> enc (latent, linear) -> dec -> ReLU -> up0 ->
ReLU -> up1, a linear output like the spiking model's readout (with no biases a sigmoid output cannot make a black
background: a pixel no feature reaches reads sigmoid(0) = 0.5; measured on 2,000 MNIST images, 2 epochs: val
SSE/image 77 with a sigmoid, 27 linear). VAE: enc gives mean and log-variance of a Gaussian latent (2 x latent outputs), z = mu + exp(logvar / 2) eps, KL(q || N(0, I)) joins the loss (``beta`` times). No biases and
the same loss as the spiking model: the sum of squared pixel errors per image, mean over the batch. Init: the
spiking model's for the convolutions, He N(0, sqrt(2 / fan_in)) for the two dense layers (the spiking init's
2 sqrt(2 / fan_in) makes the first steps' outputs huge).
"""
from __future__ import annotations

import numpy as np

from models.conv_model import SYNAPSES, ConvArch, _module_base, init_weights


class ConvBaseline(_module_base()):
    """``kind`` "ae" or "vae"; forward(images (B, side^2)) -> {"image", "latent" (B, latent), "kl" (scalar)}."""

    def __init__(self, arch: ConvArch, kind: str, rng: np.random.Generator, beta: float = 1.0):
        import torch

        super().__init__()
        if kind not in ("ae", "vae"):
            raise ValueError(f"baseline kind must be 'ae' or 'vae', got {kind!r}")
        self.arch, self.kind, self.beta = arch, kind, float(beta)
        w = init_weights(arch, rng)
        w["enc"] = w["enc"] / 2.0  # He init for the dense layers (see the module docstring)
        w["dec"] = w["dec"] / 2.0
        if kind == "vae":
            w["enc"] = np.concatenate([w["enc"], rng.normal(0.0, 1e-3, w["enc"].shape)])  # log-variance rows ~ 0
        self.w = torch.nn.ParameterDict({k: torch.nn.Parameter(torch.tensor(w[k], dtype=torch.float32))
                                         for k in SYNAPSES})

    def forward(self, images, generator=None) -> dict:
        import torch
        import torch.nn.functional as F

        a = self.arch
        b = images.shape[0]
        h = F.relu(F.conv2d(images.reshape(b, 1, a.side, a.side), self.w["conv0"]))
        h = F.relu(F.conv2d(h, self.w["conv1"]))
        z = F.linear(h.reshape(b, -1), self.w["enc"])
        kl = z.new_zeros(())
        if self.kind == "vae":
            mu, logvar = z[:, :a.latent], z[:, a.latent:].clamp(-20, 20)
            kl = 0.5 * (mu * mu + logvar.exp() - 1.0 - logvar).sum() / b
            if self.training:
                eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype)  # drawn on the CPU generator
                z = mu + torch.exp(0.5 * logvar) * eps.to(mu.device)
            else:
                z = mu
        h = F.relu(F.linear(z, self.w["dec"]))
        h = F.relu(F.conv_transpose2d(h.reshape(b, a.c2, a.s2, a.s2), self.w["up0"]))
        img = F.conv_transpose2d(h, self.w["up1"]).reshape(b, -1)
        return {"image": img, "latent": z, "kl": kl}

    def loss(self, images, generator=None):
        """(loss, output): SSE per image (+ beta KL for the VAE), mean over the batch."""
        out = self.forward(images, generator)
        sse = ((out["image"] - images) ** 2).sum() / images.shape[0]
        return sse + (self.beta * out["kl"] if self.kind == "vae" else 0.0), out
