"""Speed paths of the spiking conv autoencoder (issue [F] section 2): the numba LIF kernels equal the torch loop
(spikes bit for bit, gradients to rounding) in every mode, channels_last convolutions give the same network, and
the readout trace's one-pass backward equals autograd's."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from models.conv_model import SPIKING, ConvArch, SpikingConvAE, _lif_function, _trace_function, bernoulli_spikes, \
    init_weights
from toolchain.errors import SnncError


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("code, clamp", [(False, False), (True, False), (False, True), (True, True)])
def test_numba_lif_equals_torch_loop(dtype, code, clamp):
    gen = torch.Generator().manual_seed(3)
    cur = (torch.randn(30, 5, 700, generator=gen, dtype=dtype) * 0.9 + 0.15)
    gs = torch.randn(30, 5, 700, generator=gen, dtype=dtype)
    gu = torch.randn(5, 700, generator=gen, dtype=dtype)
    res = {}
    for be in ("torch", "numba"):
        c = cur.clone().requires_grad_(True)
        s, u = _lif_function(be).apply(c, 0.99, 1.0, 5.0, code, clamp)
        (g,) = torch.autograd.grad((s * gs).sum() + (u * gu).sum(), c)
        res[be] = (s.detach(), u.detach(), g)
    assert 0.01 < res["torch"][0].mean() < 0.9
    assert torch.equal(res["torch"][0], res["numba"][0])          # spikes: bit for bit
    assert torch.equal(res["torch"][1], res["numba"][1])          # final potentials
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(res["torch"][2], res["numba"][2], rtol=tol, atol=tol)
    # only the spike path (no g_u): the kernels' use_gs branch with a zero carry start
    c = cur.clone().requires_grad_(True)
    (g1,) = torch.autograd.grad(_lif_function("numba").apply(c, 0.99, 1.0, 5.0, code, clamp)[0].sum(), c)
    (g2,) = torch.autograd.grad(_lif_function("torch").apply(c, 0.99, 1.0, 5.0, code, clamp)[0].sum(), c)
    torch.testing.assert_close(g1, g2, rtol=tol, atol=tol)


def test_lif_backend_checks():
    with pytest.raises(SnncError, match="unknown LIF backend"):
        _lif_function("cuda")
    with pytest.raises(SnncError, match="torch backend"):
        _lif_function("numba").apply(torch.zeros(2, 1, 3, dtype=torch.float16), 0.99, 1.0, 5.0, False, False)


@pytest.mark.parametrize("factor", [0.99, 1.0])
def test_trace_backward_equals_autograd(factor):
    gen = torch.Generator().manual_seed(0)
    cur = torch.randn(12, 3, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    g_out = torch.randn(12, 3, 8, generator=gen, dtype=torch.float64)
    a = _trace_function().apply(cur, 0.99, factor)
    (g1,) = torch.autograd.grad((a * g_out).sum(), cur)
    acc, tr = torch.zeros(3, 8, dtype=torch.float64), []
    for t in range(12):
        acc = acc + cur[t]
        acc = 0.99 * acc if factor != 1.0 else 0.99 * acc.detach() + (acc - acc.detach())
        tr.append(acc)
    ref = torch.stack(tr)
    (g2,) = torch.autograd.grad((ref * g_out).sum(), cur)
    torch.testing.assert_close(a.detach(), ref.detach(), rtol=0, atol=1e-15)
    torch.testing.assert_close(g1, g2, rtol=1e-12, atol=1e-12)


def test_channels_last_and_backends_give_the_same_network():
    arch = ConvArch(c1=3, c2=4, latent=10, kernel=3, side=12)
    w = {k: v * 2.5 for k, v in init_weights(arch, np.random.default_rng(2)).items()}
    gen = torch.Generator().manual_seed(5)
    x = bernoulli_spikes(torch.rand(3, arch.side ** 2, generator=gen, dtype=torch.float64), 15, 0.5, gen)
    runs = {}
    for key in [(True, "auto"), (False, "torch")]:
        m = SpikingConvAE(arch, w, dtype=torch.float64, p_scale=0.5, channels_last=key[0], lif_backend=key[1])
        o = m(x)
        loss = ((o["image"] - 0.3) ** 2).sum() + sum(u.abs().sum() for u in o["final"].values())
        loss.backward()
        runs[key] = (o, {k: p.grad.clone() for k, p in m.w.items()})
    (oa, ga), (ob, gb) = runs.values()
    for name in SPIKING:
        assert oa["spikes"][name].sum() > 0, name
        assert torch.equal(oa["spikes"][name], ob["spikes"][name]), name
    torch.testing.assert_close(oa["image"], ob["image"], rtol=1e-12, atol=1e-12)
    for k in ga:
        torch.testing.assert_close(ga[k], gb[k], rtol=1e-9, atol=1e-12)
