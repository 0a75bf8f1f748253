"""Shared setup of the deploy benchmarks: the model (a given ONNX file or a seeded random autoencoder) and inputs."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from models.network import AlphaLayer, TemporalNetwork  # noqa: E402


def random_autoencoder(hidden: int = 32, seed: int = 0, tau: float = 1.0, n_pulses: int = 4) -> TemporalNetwork:
    """Untrained 784-hidden-784 with pulses driving every neuron (for timing; errors of a trained model differ)."""
    rng = np.random.default_rng(seed)
    pt = np.linspace(0.2, 1.6, n_pulses)
    l0 = AlphaLayer(rng.normal(0.03, 0.05, (hidden, 784)), pt, rng.normal(0.5, 0.2, (hidden, n_pulses)))
    l1 = AlphaLayer(rng.normal(0.05, 0.15, (784, hidden)), pt, rng.normal(0.8, 0.3, (784, n_pulses)))
    return TemporalNetwork((l0, l1), tau, 1.0, latency=1.0, metadata={"benchmark": "random-untrained"})


def load_model(path: str | None) -> tuple[TemporalNetwork, str]:
    """(network, description): the ONNX artifact at ``path``, else the seeded random autoencoder."""
    if path:
        from toolchain.artifact import load_onnx

        return load_onnx(path), str(path)
    return random_autoencoder(), "random untrained 784-32-784 (seed 0, tau 1, theta 1, 4 pulses)"


def load_inputs(dataset: str, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """(images01 (N, 784), latency-coded input times) of the first ``limit`` test images."""
    from models.datasets import load_dataset
    from models.encoding import latency_encode

    images = np.asarray(load_dataset(dataset, "test", limit=limit).images, dtype=np.float64)
    return images, latency_encode(images)
