"""Convolution IR nodes (issue [F]): shapes, chaining checks, validation and the format 2 round trip."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from toolchain.artifact_graph import load_graph, save_graph
from toolchain.errors import ArtifactError
from toolchain.ir import LIF, Conv2d, ConvTranspose2d, Dense, Flatten, Graph, Input, Readout
from toolchain.ir_equal import same_graph
from toolchain.validate import validate_graph


def conv_autoencoder(rng: np.random.Generator, c1: int = 2, c2: int = 3, latent: int = 5) -> Graph:
    """A small graph of Hübotter et al.'s shape: conv, conv, flatten, fc, fc, convT, convT (+ a readout)."""
    n = lambda *s: rng.normal(0, 0.3, s)  # noqa: E731
    nodes = {
        "input": Input(1 * 12 * 12),
        "conv0": Conv2d(n(c1, 1, 3, 3), (1, 12, 12)), "lif0": LIF(c1 * 10 * 10, 0.99, strict=True),
        "conv1": Conv2d(n(c2, c1, 3, 3), (c1, 10, 10), stride=2, padding=1), "lif1": LIF(c2 * 5 * 5, 0.99),
        "flat": Flatten((c2, 5, 5)), "enc": Dense(n(latent, c2 * 25)), "latent": LIF(latent, 0.99),
        "dec": Dense(n(c2 * 25, latent)), "lif2": LIF(c2 * 25, 0.99),
        "up0": ConvTranspose2d(n(c2, c1, 3, 3), (c2, 5, 5), stride=2, padding=1, output_padding=1),
        "lif3": LIF(c1 * 10 * 10, 0.99),
        "up1": ConvTranspose2d(n(c1, 1, 3, 3), (c1, 10, 10)), "out": Readout(144, 0.99),
    }
    order = list(nodes)
    return Graph(nodes, tuple(zip(order[:-1], order[1:])), "steps", {"family": "conv"})


def test_output_shapes_match_pytorch():
    rng = np.random.default_rng(0)
    x = torch.zeros(1, 3, 11, 9, dtype=torch.float64)
    for stride, pad in [((1, 1), (0, 0)), ((2, 1), (1, 2)), ((3, 2), (2, 0))]:
        w = rng.normal(size=(4, 3, 3, 2))
        c = Conv2d(w, (3, 11, 9), stride, pad)
        assert c.output_shape == tuple(torch.nn.functional.conv2d(x, torch.tensor(w), stride=stride,
                                                                  padding=pad).shape[1:])
        t = ConvTranspose2d(rng.normal(size=(3, 5, 3, 2)), (3, 11, 9), stride, pad, (stride[0] - 1, 0))
        y = torch.nn.functional.conv_transpose2d(x, torch.tensor(t.weight), stride=stride, padding=pad,
                                                 output_padding=(stride[0] - 1, 0))
        assert t.output_shape == tuple(y.shape[1:])


def test_graph_chain_skips_views_and_round_trips(tmp_path):
    g = conv_autoencoder(np.random.default_rng(1))
    assert [s for s, _ in g.chain()] == ["conv0", "conv1", "enc", "dec", "up0", "up1"]
    assert g.synapse_source("enc") == "lif1"
    assert g.map_shape("lif1") == (3, 5, 5) and g.map_shape("latent") is None
    validate_graph(g)
    save_graph(g, tmp_path / "conv.onnx")
    assert same_graph(load_graph(tmp_path / "conv.onnx"), g)


@pytest.mark.parametrize("make, match", [
    (lambda: Conv2d(np.zeros((2, 3, 3, 3)), (2, 8, 8)), "input channels"),
    (lambda: Conv2d(np.zeros((2, 1, 9, 3)), (1, 8, 8)), "empty output"),
    (lambda: Conv2d(np.zeros((2, 1, 3, 3)), (1, 8, 8), stride=0), "integers >= 1"),
    (lambda: ConvTranspose2d(np.zeros((1, 2, 3, 3)), (1, 4, 4), stride=2, output_padding=2), "smaller than"),
    (lambda: Flatten((3, 4)), "channels, height, width"),
])
def test_bad_conv_parameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_shapes_that_do_not_chain():
    w = np.zeros((2, 1, 3, 3))
    nodes = {"input": Input(64), "c0": Conv2d(w, (1, 8, 8)), "l0": LIF(72, 0.9),
             "c1": Conv2d(np.zeros((2, 2, 3, 3)), (2, 4, 9)), "l1": LIF(2 * 2 * 7, 0.9)}
    with pytest.raises(ValueError, match="shapes do not chain"):
        Graph(nodes, (("input", "c0"), ("c0", "l0"), ("l0", "c1"), ("c1", "l1")), "steps")
    bad_flat = {"input": Input(64), "c0": Conv2d(w, (1, 8, 8)), "l0": LIF(72, 0.9), "f": Flatten((2, 4, 9)),
                "d": Dense(np.zeros((3, 72))), "l1": LIF(3, 0.9)}
    with pytest.raises(ValueError, match="shapes do not chain"):
        Graph(bad_flat, (("input", "c0"), ("c0", "l0"), ("l0", "f"), ("f", "d"), ("d", "l1")), "steps")
    wrong_size = dict(bad_flat, f=Flatten((2, 6, 6)), d=Dense(np.zeros((3, 50))))
    with pytest.raises(ValueError, match="expects 50 inputs but 'f' has 72"):
        Graph(wrong_size, (("input", "c0"), ("c0", "l0"), ("l0", "f"), ("f", "d"), ("d", "l1")), "steps")


def test_conv_weights_out_of_range_refused(tmp_path):
    g = conv_autoencoder(np.random.default_rng(2))
    big = dict(g.nodes, conv0=Conv2d(np.full((2, 1, 3, 3), 1e9), (1, 12, 12)))
    with pytest.raises(ArtifactError, match="conv0.weight"):
        save_graph(Graph(big, g.edges, "steps"), tmp_path / "big.onnx")
    assert not list(tmp_path.iterdir())
