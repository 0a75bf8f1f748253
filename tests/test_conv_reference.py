"""Float64 reference of convolutional steps graphs (toolchain/lif_reference.py) against torch (issue [F])."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conv_nets import conv_autoencoder, input_trains
from toolchain.ir import LIF, Conv2d, ConvTranspose2d, Readout
from toolchain.lif_reference import simulate, synapse_current


@pytest.mark.parametrize("stride, pad", [((1, 1), (0, 0)), ((2, 1), (1, 2)), ((3, 2), (2, 0)), ((2, 2), (1, 1))])
def test_conv_currents_equal_torch(stride, pad):
    rng = np.random.default_rng(3)
    x = (rng.random((4, 3, 11, 9)) < 0.3).astype(np.float64)
    c = Conv2d(rng.normal(size=(5, 3, 3, 2)), (3, 11, 9), stride, pad)
    ref = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(c.weight), stride=stride, padding=pad)
    got = synapse_current(c, x.reshape(4, -1))
    np.testing.assert_allclose(got, ref.numpy().reshape(4, -1), rtol=0, atol=1e-12)
    for op in [(0, 0), (stride[0] - 1, stride[1] - 1)]:
        t = ConvTranspose2d(rng.normal(size=(3, 4, 3, 2)), (3, 11, 9), stride, pad, op)
        ref = torch.nn.functional.conv_transpose2d(torch.tensor(x), torch.tensor(t.weight), stride=stride,
                                                   padding=pad, output_padding=op)
        got = synapse_current(t, x.reshape(4, -1))
        assert got.shape == (4, int(np.prod(ref.shape[1:])))
        np.testing.assert_allclose(got, ref.numpy().reshape(4, -1), rtol=0, atol=1e-12)


def test_conv_autoencoder_simulation_equals_torch_loop():
    """simulate() of the small conv AE equals a plain torch float64 loop of the docstring equations."""
    rng = np.random.default_rng(4)
    g = conv_autoencoder(rng)
    x = input_trains(rng)
    tr = simulate(g, x)
    assert tr.names == g.populations()
    src = torch.tensor(x, dtype=torch.float64)
    for (syn_name, pop_name), spikes, pots in zip(g.chain(), tr.spikes, tr.potentials):
        syn, pop = g.nodes[syn_name], g.nodes[pop_name]
        n, t_steps = src.shape[:2]
        flat = src.reshape(n * t_steps, -1)
        if isinstance(syn, Conv2d):
            cur = torch.nn.functional.conv2d(flat.reshape((-1,) + syn.input_shape), torch.tensor(syn.weight),
                                             stride=syn.stride, padding=syn.padding)
        elif isinstance(syn, ConvTranspose2d):
            cur = torch.nn.functional.conv_transpose2d(flat.reshape((-1,) + syn.input_shape), torch.tensor(syn.weight),
                                                       stride=syn.stride, padding=syn.padding,
                                                       output_padding=syn.output_padding)
        else:
            cur = flat @ torch.tensor(syn.weight).T
        cur = cur.reshape(n, t_steps, -1).numpy()
        v = np.zeros((n, pop.n))
        out = np.zeros((n, t_steps, pop.n), np.uint8)
        for t in range(t_steps):
            if isinstance(pop, Readout):
                v = pop.leak * (v + cur[:, t])
                np.testing.assert_allclose(pots[:, t], v, rtol=1e-12, atol=1e-12)
                continue
            v = pop.leak * v + cur[:, t]
            np.testing.assert_allclose(pots[:, t], v, rtol=1e-12, atol=1e-12)
            fired = v > pop.v_th if pop.strict else v >= pop.v_th
            out[:, t] = fired
            v = np.where(fired, 0.0, v)
        np.testing.assert_array_equal(spikes, out)
        src = torch.tensor(out, dtype=torch.float64)
    assert isinstance(g.nodes[tr.names[-1]], Readout) and not tr.spikes[-1].any()
    assert all(s.any() for s in tr.spikes[:-1]), "every spiking population of the test net should spike"
    assert isinstance(g.nodes["lif0"], LIF)
