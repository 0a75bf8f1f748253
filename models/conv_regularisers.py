"""Hübotter et al.'s (2021) regularisers of the spiking conv autoencoder (loss terms, per batch).

On every spiking population with spike counts n (B, neurons) over T steps and final potentials U (B, neurons)
(threshold units), with r = n / T (spikes per step) and u = U / T:

    lambda1 sum|r| + lambda2 sum r^2     (against bursting)
    beta1 sum|u| + beta2 sum u^2         (keeps potentials near 0 .. threshold: neither dead nor bursting)

and on the latent population only (r of the latent layer, B examples x L neurons):

    gamma_example sum_b (sum_j r_bj)^2   (spreads spikes over examples)
    gamma_neuron  sum_j (sum_b r_bj)^2   (spreads spikes over neurons)
    gamma_count   sum_bj r_bj            (total latent activity)

each sum divided by the batch size B. ``layers`` says which spiking populations the per-layer terms (lambda, beta)
cover: "all" (the paper) or "latent" (only the latent population; measured: beta1 = 0.01 on all five layers
silences the decoder within 50 batches, the terms pull every final potential towards 0, below threshold, and
the big conv/dense layers outweigh the reconstruction error). The paper's own weights are not public; ``PRESETS`` holds ours ("none",
"sparse", "dense"); "dense" is measured on the cpu preset (docs/conv.md), "sparse" is not measured yet.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from toolchain.errors import SnncError


@dataclass(frozen=True)
class RegWeights:
    """Regulariser weights (dimensionless; the loss is a sum of squared pixel errors per image)."""

    lambda1: float = 0.0
    lambda2: float = 0.0
    beta1: float = 0.0
    beta2: float = 0.0
    gamma_example: float = 0.0
    gamma_neuron: float = 0.0
    gamma_count: float = 0.0
    layers: str = "all"

    def __post_init__(self) -> None:
        if self.layers not in ("all", "latent"):
            raise SnncError(f"regulariser layers must be 'all' or 'latent', got {self.layers!r}")
        for k, v in asdict(self).items():
            if k == "layers":
                continue
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise SnncError(f"regulariser weight {k} must be a finite number >= 0, got {v!r}")

    @property
    def active(self) -> bool:
        return any(v > 0 for k, v in asdict(self).items() if k != "layers")


PRESETS: dict[str, RegWeights] = {
    "none": RegWeights(),
    "sparse": RegWeights(lambda1=0.1, beta1=0.1, beta2=0.1, gamma_count=0.1, layers="latent"),
    "dense": RegWeights(beta1=0.1, beta2=0.1, layers="latent"),
}


def resolve_weights(preset: str, overrides: dict[str, float | None]) -> RegWeights:
    """A preset's weights, each replaced by an explicitly given value (None = keep the preset's)."""
    if preset not in PRESETS:
        raise SnncError(f"unknown regulariser preset {preset!r}; choose one of {', '.join(PRESETS)}")
    given = {k: (v if k == "layers" else float(v)) for k, v in overrides.items() if v is not None}
    unknown = set(given) - set(asdict(PRESETS[preset]))
    if unknown:
        raise SnncError(f"unknown regulariser weights {sorted(unknown)}")
    return replace(PRESETS[preset], **given)


def regulariser_loss(spikes: dict, final: dict, weights: RegWeights, latent: str = "latent"):
    """Sum of the terms above (a torch scalar) from the forward pass's spikes {pop: (T, B, n)} and final
    potentials {pop: (B, n)}."""
    import torch

    first = next(iter(spikes.values()))
    steps, b = first.shape[0], first.shape[1]
    total = first.new_zeros(())
    w = weights
    for name, s in spikes.items():
        if w.layers == "latent" and name != latent:
            continue
        r = s.sum(0) / steps
        u = final[name] / steps
        if w.lambda1:
            total = total + w.lambda1 * r.abs().sum() / b
        if w.lambda2:
            total = total + w.lambda2 * (r * r).sum() / b
        if w.beta1:
            total = total + w.beta1 * u.abs().sum() / b
        if w.beta2:
            total = total + w.beta2 * (u * u).sum() / b
    if latent in spikes and (w.gamma_example or w.gamma_neuron or w.gamma_count):
        r = spikes[latent].sum(0) / steps
        total = total + (w.gamma_example * (r.sum(1) ** 2).sum() + w.gamma_neuron * (r.sum(0) ** 2).sum()
                         + w.gamma_count * r.sum()) / b
    return total if isinstance(total, torch.Tensor) else torch.tensor(total)
