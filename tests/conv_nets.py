"""Small random convolutional steps graphs for the conv deployment tests (issue [F]); not a test module."""
from __future__ import annotations

import numpy as np

from toolchain.ir import LIF, Conv2d, ConvTranspose2d, Dense, Flatten, Graph, Input, Readout


def conv_autoencoder(rng: np.random.Generator, c1: int = 2, c2: int = 3, latent: int = 5, scale: float = 0.3,
                     strided: bool = True, readout: bool = True) -> Graph:
    """Hübotter et al.'s shape at 12 x 12: conv, conv, flatten, fc (latent), fc, convT, convT (+ a Readout).

    strided: the second conv and the first convT use stride 2 (the convT then becomes a Sparse matrix on Lava);
    otherwise every convolution has stride 1. readout: the last population is a Readout (else a LIF)."""
    n = lambda *s: rng.normal(0, scale, s)  # noqa: E731
    if strided:
        conv1 = Conv2d(n(c2, c1, 3, 3), (c1, 10, 10), stride=2, padding=1)
        up0 = ConvTranspose2d(n(c2, c1, 3, 3), (c2, 5, 5), stride=2, padding=1, output_padding=1)
    else:
        conv1 = Conv2d(n(c2, c1, 3, 3), (c1, 10, 10), padding=(1, 0))
        up0 = ConvTranspose2d(n(c2, c1, 3, 3), tuple(conv1.output_shape), padding=(1, 0))
    m = int(np.prod(conv1.output_shape))
    nodes = {
        "input": Input(144),
        "conv0": Conv2d(n(c1, 1, 3, 3), (1, 12, 12)), "lif0": LIF(c1 * 100, 0.99, strict=True),
        "conv1": conv1, "lif1": LIF(m, 0.95),
        "flat": Flatten(conv1.output_shape), "enc": Dense(n(latent, m)), "latent": LIF(latent, 0.99),
        "dec": Dense(n(m, latent) * 3), "lif2": LIF(m, 0.99),
        "up0": up0, "lif3": LIF(c1 * 100, 0.99),
        "up1": ConvTranspose2d(n(c1, 1, 3, 3), (c1, 10, 10)),
        "out": Readout(144, 0.99) if readout else LIF(144, 0.99),
    }
    order = list(nodes)
    return Graph(nodes, tuple(zip(order[:-1], order[1:])), "steps",
                 {"family": "conv", "p_scale": 0.5, "steps": 12, "encoding": "bernoulli"})


def input_trains(rng: np.random.Generator, n: int = 3, steps: int = 12, p: float = 0.4) -> np.ndarray:
    """(n, steps, 144) Bernoulli 0/1 trains of random 12 x 12 images (blobs of brightness)."""
    img = np.clip(rng.normal(0.3, 0.4, (n, 144)), 0, 1)
    return (rng.random((n, steps, 144)) < p * img[:, None, :]).astype(np.uint8)


def mnist_conv_autoencoder(rng: np.random.Generator, c: int = 2, latent: int = 8, steps: int = 10) -> Graph:
    """A tiny 28 x 28 conv autoencoder for the CLI tests: conv 1->c k5 stride 2 (c x 12 x 12), flatten, Dense to
    the latent LIF, Dense back, ConvTranspose2d c->1 k5 stride 2 (output_padding 1) into a Readout of 784."""
    n = lambda s, *shape: rng.normal(0, s, shape)  # noqa: E731
    m = c * 144
    nodes = {
        "input": Input(784),
        "conv0": Conv2d(n(0.5, c, 1, 5, 5), (1, 28, 28), stride=2), "lif0": LIF(m, 0.95),
        "flat": Flatten((c, 12, 12)), "enc": Dense(n(0.3, latent, m)), "latent": LIF(latent, 0.95),
        "dec": Dense(n(1.0, m, latent)), "lif1": LIF(m, 0.95),
        "up": ConvTranspose2d(n(0.3, c, 1, 5, 5), (c, 12, 12), stride=2, output_padding=1),
        "out": Readout(784, 0.99),
    }
    order = list(nodes)
    return Graph(nodes, tuple(zip(order[:-1], order[1:])), "steps",
                 {"family": "conv", "p_scale": 0.5, "steps": steps, "encoding": "bernoulli", "dataset": "mnist"})
