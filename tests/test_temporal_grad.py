"""Exact gradients and the compiled forward of the temporal trainer (models/temporal_*.py)."""
from __future__ import annotations

import numba
import numpy as np
import pytest
import torch

from models.exact import exact_forward, layer_forward
from models.network import AlphaLayer, TemporalNetwork
from models.temporal_autograd import TorchTemporalNetwork, alpha_layer
from models.temporal_backprop import reconstruction_gradients
from models.temporal_kernels import layer_forward_fast


def random_net(rng, sizes, n_pulses, tau, theta, w_mean=0.4, pulse_mean=0.8):
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers.append(AlphaLayer(rng.normal(w_mean, 0.6, (n_out, n_in)),
                                 np.sort(rng.uniform(0.0, 1.0, n_pulses)),
                                 rng.normal(pulse_mean, 0.3, (n_out, n_pulses))))
    return TemporalNetwork(tuple(layers), tau, theta, latency=1.0)


def random_inputs(rng, n, n_in, p_silent=0.3, levels=None):
    x = rng.uniform(0.0, 1.0, (n, n_in))
    if levels:
        x = np.round(x * levels) / levels  # ties, as with 8-bit pixels
    x[rng.uniform(size=x.shape) < p_silent] = np.inf
    return x


def test_fast_layer_forward_is_bitwise_the_exact_reference():
    rng = np.random.default_rng(1)
    for trial in range(30):
        n_in, n_out, n = (int(v) for v in rng.integers((1, 1, 1), (120, 50, 12)))
        x = random_inputs(rng, n, n_in, p_silent=float(rng.uniform(0, 0.9)), levels=[None, 8, 255][trial % 3])
        w = rng.normal(float(rng.uniform(-0.5, 1.0)), 1.0, (n_out, n_in))
        tau, theta = float(rng.uniform(0.1, 2.0)), float(rng.uniform(0.2, 1.5))
        ref = layer_forward(x, w, tau, theta)
        for n_split in (1, 3):  # samples x neuron shares as parallel work items: same result
            got = layer_forward_fast(x, np.ascontiguousarray(w.T), tau, theta, n_split)
            for name, r, g in zip(("t_out", "A", "B", "W", "n_prefix", "order"), ref, got[:6]):
                assert np.array_equal(r, g), f"trial {trial}, n_split {n_split}: {name} differs"
            assert np.array_equal(got[6], np.isfinite(x).sum(axis=1))


def test_torch_forward_equals_exact_forward():
    rng = np.random.default_rng(2)
    for sizes in ([30, 8, 30], [50, 16, 12, 50], [784, 32, 784]):
        net = random_net(rng, sizes, n_pulses=3, tau=float(rng.uniform(0.2, 1.5)), theta=0.8,
                         w_mean=0.1 if sizes[0] > 100 else 0.4)
        x = random_inputs(rng, 6, sizes[0], levels=255)
        ref = exact_forward(net, x)
        got = TorchTemporalNetwork(net)(torch.tensor(x))
        assert len(got) == len(ref)
        for r, g in zip(ref, got):
            assert g.dtype == torch.float64
            assert np.array_equal(r, g.detach().numpy())
        assert np.isfinite(ref[-1]).any()


def _loss_np(net, x, targets):
    out = exact_forward(net, x)[-1]
    assert np.all(np.isfinite(out))
    return 0.5 * np.sum((out - net.latency - targets) ** 2)


def _with(net, li, name, value):
    layers = list(net.layers)
    l = layers[li]
    kw = dict(weights=l.weights, pulse_times=l.pulse_times, pulse_weights=l.pulse_weights)
    kw[name] = value
    layers[li] = AlphaLayer(**kw)
    return TemporalNetwork(tuple(layers), net.tau, net.theta, net.latency)


def _smooth_net(rng):
    """A random 6-5-4 network (2 pulses) where every neuron spikes, away from threshold-grazing crossings."""
    while True:
        net = random_net(rng, [6, 5, 4], n_pulses=2, tau=float(rng.uniform(0.3, 1.5)), theta=0.5)
        x = random_inputs(rng, 3, 6, p_silent=0.2)
        traces = []
        xx = x
        for l in net.layers:
            xin = np.hstack([xx, np.broadcast_to(l.pulse_times, (xx.shape[0], l.n_pulses))])
            t, a, b, w, k, order = layer_forward(xin, l.all_weights(), net.tau, net.theta)
            traces.append((t, w))
            xx = t
        ok = all(np.all(np.isfinite(t)) and np.all(1.0 + w > 0.1) for t, w in traces)
        if ok:
            return net, x


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(2):
        net, x = _smooth_net(rng)
        targets = rng.uniform(0, 1, (x.shape[0], 4))
        tnet = TorchTemporalNetwork(net)
        xt = torch.tensor(np.where(np.isfinite(x), x, np.inf), requires_grad=True)
        out = tnet(xt)[-1]
        loss = 0.5 * torch.sum((out - net.latency - torch.tensor(targets)) ** 2)
        loss.backward()
        eps = 1e-6
        for li in range(len(net.layers)):
            for name, grad in (("weights", tnet.weights[li].grad), ("pulse_weights", tnet.pulse_weights[li].grad),
                               ("pulse_times", tnet.pulse_times[li].grad)):
                p0 = getattr(net.layers[li], name)
                for idx in np.ndindex(p0.shape):
                    fds = []
                    for h in (eps, 2 * eps):
                        pp, pm = p0.copy(), p0.copy()
                        pp[idx] += h
                        pm[idx] -= h
                        fds.append((_loss_np(_with(net, li, name, pp), x, targets)
                                    - _loss_np(_with(net, li, name, pm), x, targets)) / (2 * h))
                    if abs(fds[0] - fds[1]) > 1e-5 * (1 + abs(fds[0])):
                        continue  # a causal set changes within +-2 eps: not differentiable here
                    assert grad[idx].item() == pytest.approx(fds[0], rel=1e-5, abs=1e-7), (li, name, idx)
                    checked += 1
        # input times (finite ones)
        for idx in zip(*np.nonzero(np.isfinite(x))):
            xp, xm = x.copy(), x.copy()
            xp[idx] += eps
            xm[idx] -= eps
            fd = (_loss_np(net, xp, targets) - _loss_np(net, xm, targets)) / (2 * eps)
            assert xt.grad[idx].item() == pytest.approx(fd, rel=1e-5, abs=1e-7)
            checked += 1
    assert checked > 150


def test_clip_bounds_local_derivatives_and_penalty_hits_silent_neurons():
    rng = np.random.default_rng(4)
    net = random_net(rng, [10, 3], n_pulses=2, tau=1.0, theta=0.5)
    w = net.layers[0].weights.copy()
    w[1] = -1.0  # neuron 1 can never spike
    pw = net.layers[0].pulse_weights.copy()
    pw[1] = -1.0
    x = random_inputs(rng, 5, 10, p_silent=0.1)
    params = [torch.tensor(a, requires_grad=True) for a in (w, net.layers[0].pulse_times, pw)]
    out = alpha_layer(torch.tensor(x), params[0], params[1], params[2], net.tau, net.theta, clip=0.01, penalty=2.0)
    assert torch.all(torch.isinf(out[:, 1]))
    spiking = torch.isfinite(out)
    out.masked_fill(~spiking, 0.0).sum().backward()
    gw, gpt, gpw = (p.grad.numpy() for p in params)
    # silent neuron: -penalty per sample on every incoming weight, pulses included
    assert np.allclose(gw[1], -2.0 * 5) and np.allclose(gpw[1], -2.0 * 5)
    # spiking neurons: each sample contributes at most clip per weight
    n_spk = spiking.sum(0).numpy()
    for j in (0, 2):
        assert np.all(np.abs(gw[j]) <= 0.01 * n_spk[j] + 1e-15)
    assert np.all(np.abs(gpt) <= 0.01 * spiking.sum().item() + 1e-15)


def test_fast_path_equals_autograd_and_is_thread_count_independent():
    rng = np.random.default_rng(5)
    net = random_net(rng, [40, 8, 40], n_pulses=3, tau=0.5, theta=0.6, w_mean=0.3)
    x = random_inputs(rng, 9, 40, p_silent=0.4, levels=255)
    targets = rng.uniform(0, 1, (9, 40))
    clip, penalty, latency = 5.0, 0.7, net.latency
    params = [(l.all_weights(), l.pulse_times) for l in net.layers]
    res = reconstruction_gradients(params, x, targets, latency, net.tau, net.theta, clip, penalty)

    tnet = TorchTemporalNetwork(net)
    out = tnet(torch.tensor(x), clip=clip, penalty=penalty / 9)[-1]
    fin = torch.isfinite(out)
    diff = torch.where(fin, out - latency - torch.tensor(targets), torch.zeros_like(out))
    (0.5 * (diff ** 2).sum() / 9).backward()
    for li, g in enumerate(res.grads):
        n_in = net.layers[li].n_in
        np.testing.assert_allclose(g.weights_all[:, :n_in], tnet.weights[li].grad.numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(g.weights_all[:, n_in:], tnet.pulse_weights[li].grad.numpy(), rtol=1e-12,
                                   atol=1e-14)
        np.testing.assert_allclose(g.pulse_times, tnet.pulse_times[li].grad.numpy(), rtol=1e-12, atol=1e-14)
    rel = np.where(np.isfinite(res.t_out), res.t_out - latency, 1.0)
    assert res.sq_error_sum == pytest.approx(np.sum((rel - targets) ** 2))
    assert np.any(res.grads[0].weights_all != 0)

    n_threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        res1 = reconstruction_gradients(params, x, targets, latency, net.tau, net.theta, clip, penalty)
    finally:
        numba.set_num_threads(n_threads)
    for g, g1 in zip(res.grads, res1.grads):
        assert np.array_equal(g.weights_all, g1.weights_all) and np.array_equal(g.pulse_times, g1.pulse_times)


def test_backward_modes_agree_bitwise():
    from models.temporal_backprop import layer_forward as fwd
    from models.temporal_kernels import layer_grads

    rng = np.random.default_rng(6)
    for n_in, n_out, silent in ((12, 30, 0.1), (60, 7, 0.5)):
        x = random_inputs(rng, 5, n_in, p_silent=silent, levels=16)
        w_all = rng.normal(0.4, 0.8, (n_out, n_in + 2))
        st = fwd(x, w_all, np.array([0.3, 0.6]), 0.7, 0.6)
        g = rng.normal(0, 1, st.t_out.shape)
        args = (st.ts, st.es, w_all, st.t_out, st.a, st.b, st.w, st.n_prefix, st.order, g, 0.7, 3.0, 0.5, 0)
        gw0, gin0 = layer_grads(*args, 0)
        gw1, gin1 = layer_grads(*args, 1)
        assert np.array_equal(gw0, gw1) and np.array_equal(gin0, gin1)
        assert np.any(gin0 != 0) and np.isfinite(gw0).all()
