"""brian2 target: the alpha ODE in Brian2 (numpy codegen) against the exact closed form."""
from __future__ import annotations

import math

import numpy as np
import pytest

from models.exact import exact_forward, exact_forward_trace
from models.network import AlphaLayer, TemporalNetwork
from targets.brian2 import Brian2Target
from targets.registry import get_target
from toolchain.compiled import CompiledNetwork
from toolchain.errors import TargetError
from toolchain.spike_bounds import peak_potential

DT = 1e-3


def random_net(seed: int, sizes=(24, 10, 24), tau=1.0, theta=1.0, n_pulses=3) -> TemporalNetwork:
    rng = np.random.default_rng(seed)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        sig = math.sqrt(2.0 / (a + b + n_pulses))
        layers.append(AlphaLayer(rng.normal(3 * sig, 4 * sig, (b, a)) * theta * tau,
                                 np.sort(rng.uniform(0.1, 1.0, n_pulses)),
                                 rng.normal(2 * sig, 4 * sig, (b, n_pulses)) * theta * tau))
    return TemporalNetwork(tuple(layers), tau, theta, latency=1.0)


def hand_compiled(net: TemporalNetwork, S: int = 32, horizon: float = 6.0) -> CompiledNetwork:
    """Only the source model, S and the window matter to brian2 (it runs the float model)."""
    return CompiledNetwork(steps_per_unit=S, window=int(horizon * S), layers=(), source=net)


def random_inputs(seed: int, n: int, n_in: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, (n, n_in))
    x[rng.uniform(size=x.shape) < 0.25] = np.inf
    return x


@pytest.fixture(scope="module", params=[(0, 1.0, 1.0), (1, 2.0, 0.6), (2, 0.3, 1.3)], ids=["tau1", "tau2", "tau0.3"])
def run_pair(request):
    seed, tau, theta = request.param
    net = random_net(seed, tau=tau, theta=theta)
    x = random_inputs(seed + 10, 60, net.layers[0].n_in)
    res = Brian2Target(dt=DT, codegen="numpy").run(hand_compiled(net), x)
    return net, x, res


def test_spike_times_within_two_dt_and_presence_agrees(run_pair):
    net, x, res = run_pair
    traces = exact_forward_trace(net, x)
    n_spikes = 0
    for l, (tr, layer) in enumerate(zip(traces, net.layers)):
        te, tb = tr.t_out, res.times[l]
        assert tb.shape == te.shape
        pe, pb = np.isfinite(te), np.isfinite(tb)
        mismatch = pe != pb
        if mismatch.any():  # only neurons whose exact peak potential is within 2 % of theta may flip
            peak = peak_potential(tr, layer.all_weights(), net.tau)
            assert np.all(np.abs(peak[mismatch] / net.theta - 1.0) <= 0.02), f"layer {l}: robust spike flipped"
        both = pe & pb
        err = np.abs(tb[both] - te[both])
        n_spikes += both.sum()
        assert np.mean(err <= 2 * DT) >= 0.999, f"layer {l}: {np.mean(err <= 2 * DT)} within 2 dt"
        assert abs(np.mean(tb[both] - te[both])) < 0.25 * DT  # centring removes the grid latency
    assert n_spikes > 500  # the test exercises many spikes
    assert res.info["dt"] == DT and res.info["codegen"] == "numpy" and res.columns is None


def test_single_alpha_neuron_matches_closed_form():
    # one input of weight w at t0: V = w (t - t0) exp(-tau (t - t0)); crossing by Lambert W (-1 branch not needed:
    # the first crossing solves x e^{-tau x} = theta / w with x = t - t0 on the rising flank)
    tau, theta, w, t0 = 1.5, 0.4, 3.0, 0.2137
    net = TemporalNetwork((AlphaLayer(np.array([[w]]), np.zeros(0), np.zeros((1, 0))),), tau, theta, 1.0)
    xs = np.linspace(0.0, 1.0 / tau, 200001)
    v = w * xs * np.exp(-tau * xs)
    t_ref = t0 + xs[np.argmax(v >= theta)]
    res = Brian2Target(dt=DT, codegen="numpy").run(hand_compiled(net, horizon=3.0), np.array([[t0]]))
    assert abs(res.times[0][0, 0] - t_ref) <= DT
    assert abs(exact_forward(net, np.array([[t0]]))[0][0, 0] - t_ref) < 1e-4


def test_chunked_run_equals_single_run_and_raw_times_lag():
    net = random_net(3)
    cn = hand_compiled(net, horizon=2.5)
    x = random_inputs(4, 5, net.layers[0].n_in)
    one = Brian2Target(codegen="numpy").run(cn, x)
    per_sample_synapses = sum(np.count_nonzero(l.all_weights()) for l in net.layers)
    chunked_target = Brian2Target(codegen="numpy", max_synapses=2 * per_sample_synapses)
    assert chunked_target.chunk_size(cn) == 2
    chunked = chunked_target.run(cn, x)
    for a, b in zip(one.times, chunked.times):
        np.testing.assert_array_equal(a, b)
    raw = Brian2Target(codegen="numpy", substep=False, centre=False).run(cn, x)
    te = exact_forward(net, x)[0]
    both = np.isfinite(te) & np.isfinite(raw.times[0])
    lag = np.mean(raw.times[0][both] - te[both])
    assert 0.25 * DT < lag < 0.75 * DT  # raw Brian2 records the first grid point after the crossing
    # sub-stepped delivery and interpolated crossings (the default) remove nearly all of the grid error
    sub = one.times[0][both] - te[both]
    assert np.median(np.abs(sub)) < 0.02 * DT and np.abs(sub).max() < 0.5 * DT


def test_registry_and_empty_batch():
    net = random_net(5)
    target = get_target("brian2", codegen="numpy", dt=2e-3)
    assert isinstance(target, Brian2Target) and target.name == "brian2"
    res = target.run(hand_compiled(net), np.zeros((0, net.layers[0].n_in)))
    assert [t.shape for t in res.times] == [(0, 10), (0, 24)]


@pytest.mark.parametrize("kwargs, needle", [
    ({"dt": 0.0}, "dt=0.0"),
    ({"dt": float("nan")}, "dt=nan"),
    ({"codegen": "cpp"}, "codegen"),
    ({"duration": -1.0}, "duration"),
    ({"max_synapses": 0}, "max_synapses"),
])
def test_bad_options_are_clear_errors(kwargs, needle):
    with pytest.raises(TargetError, match=needle):
        Brian2Target(**kwargs)


def test_bad_inputs_are_clear_errors():
    net = random_net(6)
    target = Brian2Target(codegen="numpy")
    with pytest.raises(TargetError, match="shape"):
        target.run(hand_compiled(net), np.zeros((2, 5)))
    bad = np.zeros((1, net.layers[0].n_in))
    bad[0, 0] = np.nan
    with pytest.raises(TargetError, match="NaN or negative"):
        target.run(hand_compiled(net), bad)


def test_auto_codegen_falls_back_to_numpy_when_cython_fails(monkeypatch):
    net = random_net(7)
    target = Brian2Target(codegen="auto")
    target.codegen = "cython"  # as on a machine with a C compiler, whose build then fails
    real = Brian2Target._run_all

    def failing_cython(self, net, x, duration, chunk, codegen, cache_dir):
        if codegen == "cython":
            raise TargetError("Brian2 run failed (CompileError: gcc: error); try codegen='numpy'")
        return real(self, net, x, duration, chunk, codegen, cache_dir)

    monkeypatch.setattr(Brian2Target, "_run_all", failing_cython)
    x = random_inputs(8, 2, net.layers[0].n_in)
    res = target.run(hand_compiled(net, horizon=2.0), x)
    assert res.info["codegen"] == "numpy" and "cython failed" in res.info["codegen_fallback"]
    te = exact_forward(net, x)[0]
    both = np.isfinite(te) & np.isfinite(res.times[0])
    assert both.sum() > 5 and np.all(np.abs(res.times[0][both] - te[both]) <= 2 * DT)
    explicit = Brian2Target(codegen="cython")
    with pytest.raises(TargetError, match="gcc"):
        explicit.run(hand_compiled(net, horizon=2.0), x)  # an explicit choice is not silently replaced
