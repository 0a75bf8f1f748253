"""Verifier: per-layer comparison, near-threshold classification, analytic bound, gates and the report files."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from models.exact import exact_forward_trace
from models.network import AlphaLayer, TemporalNetwork
from targets.base import RunResult
from toolchain.compiler import compile_network
from toolchain.errors import DataError, SnncError, TargetError
from toolchain.report import PLOTS, REPORT_JSON, REPORT_MD, SPIKES_NPZ, write_report
from toolchain.spike_bounds import grazes, grid_bound, peak_potential
from toolchain.verifier import DEFAULT_GATES, GateSpec, verify


def small_autoencoder(seed: int = 0, n_in: int = 16, hidden: int = 6, tau: float = 1.0, theta: float = 1.0):
    """n_in-hidden-n_in, pulses drive every neuron well above threshold (few near-threshold cases)."""
    rng = np.random.default_rng(seed)
    pt = np.array([0.3, 0.9])
    l0 = AlphaLayer(rng.normal(0.25, 0.3, (hidden, n_in)), pt, rng.normal(1.2, 0.2, (hidden, 2)))
    l1 = AlphaLayer(rng.normal(0.2, 0.5, (n_in, hidden)), pt + 0.5, rng.normal(1.5, 0.2, (n_in, 2)))
    return TemporalNetwork((l0, l1), tau, theta, latency=1.0)


def inputs_and_images(seed: int, n: int, n_in: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 1, (n, n_in))
    images[images < 0.3] = 0.0
    times = np.where(images > 0, 1.0 - images, np.inf)
    return times, images


@pytest.fixture(scope="module")
def setup():
    net = small_autoencoder()
    cn = compile_network(net, steps_per_unit=32)
    x, images = inputs_and_images(1, 20, net.layers[0].n_in)
    return net, cn, x, images


def exact_result(cn, x, name="lava-fixed", transform=None) -> RunResult:
    times = [t.copy() for t in (tr.t_out for tr in exact_forward_trace(cn.source, x))]
    if transform:
        transform(times)
    return RunResult(name, times, None, 0.0, {})


def test_peak_potential_matches_brute_force(setup):
    net, cn, x, _ = setup
    tr = exact_forward_trace(net, x[:3])[1]
    w = net.layers[1].all_weights()
    peak = peak_potential(tr, w, net.tau)
    t = np.linspace(0, 8, 40001)
    for s in range(3):
        v = np.zeros((w.shape[0], t.size))
        for i, ti in enumerate(tr.in_times[s]):
            if np.isfinite(ti):
                d = np.clip(t - ti, 0, None)
                v += w[:, i : i + 1] * d * np.exp(-net.tau * d)
        np.testing.assert_allclose(peak[s], v.max(axis=1), rtol=1e-6, atol=1e-9)


def test_grid_bound_holds_for_a_perturbed_exact_model(setup):
    # inputs moved by up to h/2 (a grid): the exact output moves by less than the first-order bound (+ slack)
    net, cn, x, _ = setup
    h = 1.0 / 32
    traces = exact_forward_trace(net, x)
    bounds = grid_bound(traces, [l.all_weights() for l in net.layers], net.tau, h, 0.5 * h)
    x_grid = np.where(np.isfinite(x), np.rint(x * 32) / 32, np.inf)
    moved = exact_forward_trace(net, x_grid)[0].t_out
    te = traces[0].t_out
    both = np.isfinite(te) & np.isfinite(moved)
    # layer 0 bound = h/2 (report) + sum |s_i| h/2 >= the input-rounding part alone
    assert np.mean(np.abs(moved[both] - te[both]) <= bounds[0][both] - 0.5 * h + 1e-9) >= 0.99
    assert np.all(bounds[1][np.isfinite(traces[1].t_out)] >= h / 2)


def test_lava_targets_pass_their_gates(setup, tmp_path):
    net, cn, x, images = setup
    rep = verify(cn, x, images, ["lava-float", "lava-fixed"])
    by = {t.target: t for t in rep.targets}
    assert rep.passed, rep.failed_gates()
    for t in rep.targets:
        assert [s.layer for s in t.layers] == [0, 1]
        assert all(s.spikes_both > 0 for s in t.layers)
        assert t.mse is not None and abs(t.mse_rel) < 0.02
    # lava-float sits on the grid of the exact model: every common spike within its analytic bound
    assert all(s.within_bound >= 0.999 for s in by["lava-float"].layers)
    for s in by["lava-float"].layers:  # the spikes beyond it are counted, grazing ones among them
        assert s.beyond_bound == round((1 - s.within_bound) * s.spikes_both) >= s.beyond_bound_grazing >= 0
    assert all(s.dt_median_steps <= 1.0 for s in by["lava-fixed"].layers)
    path = write_report(rep, tmp_path / "rep")
    data = json.loads(path.read_text())
    assert data["passed"] is True and [t["target"] for t in data["targets"]] == ["lava-float", "lava-fixed"]
    assert data["targets"][1]["layers"][1]["dt_p99_steps"] >= 0
    assert "beyond_bound_grazing" in data["targets"][0]["layers"][0]
    md = (tmp_path / "rep" / REPORT_MD).read_text()
    assert "**Result: PASS**" in md and "lava-fixed" in md
    for name in (*PLOTS[:2], SPIKES_NPZ):
        assert (tmp_path / "rep" / name).stat().st_size > 0
    with np.load(tmp_path / "rep" / SPIKES_NPZ) as z:
        np.testing.assert_array_equal(z["exact_layer1"], rep.exact_times[1])
    assert not [p for p in (tmp_path / "rep").iterdir() if p.name.endswith(".tmp")]


def test_identical_times_pass_and_shifted_times_fail(setup):
    net, cn, x, images = setup
    from models.encoding import decode

    images = decode(exact_forward_trace(net, x)[1].t_out, net.latency)  # images the exact model reproduces
    rep = verify(cn, x, images, ["lava-fixed"], results={"lava-fixed": exact_result(cn, x)})
    assert rep.passed and rep.targets[0].layers[1].dt_max == 0.0

    def shift(times):  # every output spike 2 steps late: p99 ok, median fails (> 1 step), MSE changes
        times[1] += 2.0 / 32

    rep = verify(cn, x, images, ["lava-fixed"], results={"lava-fixed": exact_result(cn, x, transform=shift)})
    names = {g.name for g in rep.targets[0].gates if not g.passed}
    assert "median_dt_steps" in names and "mse_rel_vs_exact" in names
    assert not rep.passed and any("median_dt_steps" in f for f in rep.failed_gates())
    assert rep.targets[0].layers[1].dt_median_steps == pytest.approx(2.0)


def test_presence_changes_are_classified(setup):
    net, cn, x, images = setup
    traces = exact_forward_trace(net, x)
    peak1 = peak_potential(traces[1], net.layers[1].all_weights(), net.tau) / net.theta
    robust = np.argwhere(np.isfinite(traces[1].t_out) & (peak1 > 1.5))
    s_out, j_out = robust[0]
    s_hid = (s_out + 1) % x.shape[0]

    def drop(times):
        times[1][s_out, j_out] = np.inf  # a robust output spike vanishes: unexplained
        times[0][s_hid, 0] = np.inf  # a hidden spike vanishes (robust): unexplained in layer 0 ...
        times[1][s_hid, :] = np.inf  # ... and every output of that sample: upstream

    rep = verify(cn, x, images, ["lava-float"], results={"lava-float": exact_result(cn, x, "lava-float", drop)})
    l0, l1 = rep.targets[0].layers
    assert (l0.vanished, l0.unexplained) == (1, 1)
    n_up = int(np.isfinite(traces[1].t_out[s_hid]).sum())
    assert l1.vanished == 1 + n_up and l1.upstream == n_up and l1.unexplained == 1
    assert not rep.passed  # lava-float allows no unexplained change

    # a near-threshold neuron that flips is explained (margin wide enough to include it)
    s, j = np.unravel_index(np.argmin(np.abs(peak1 - 1.0)), peak1.shape)
    margin = abs(peak1[s, j] - 1.0) + 1e-6

    def flip(times):
        times[1][s, j] = np.inf if np.isfinite(times[1][s, j]) else 3.0

    rep = verify(cn, x, images, ["lava-float"], margin=margin,
                 results={"lava-float": exact_result(cn, x, "lava-float", flip)})
    l1 = rep.targets[0].layers[1]
    assert l1.near_threshold == 1 and l1.unexplained == 0 and rep.passed


def test_gate_overrides_and_defaults_documented():
    assert DEFAULT_GATES["lava-fixed"] == DEFAULT_GATES["hw_sim"]
    assert DEFAULT_GATES["lava-fixed"].min_presence == 0.999 and DEFAULT_GATES["lava-fixed"].max_p99_steps == 3.0
    assert DEFAULT_GATES["brian2"].max_abs_dt_target_dt == 2.0


def test_custom_gate_spec_applies(setup):
    net, cn, x, images = setup
    strict = {"lava-fixed": GateSpec(max_median_steps=0.0, max_p99_steps=0.0)}

    def jitter(times):
        times[0][0, np.isfinite(times[0][0])] += 0.1 / 32

    rep = verify(cn, x, images, ["lava-fixed"], gates=strict,
                 results={"lava-fixed": exact_result(cn, x, transform=jitter)})
    assert [g.passed for g in rep.targets[0].gates if g.layer == 0] == [True, False]


def test_bad_inputs_fail_before_running(setup):
    net, cn, x, images = setup
    with pytest.raises(DataError, match="expects"):
        verify(cn, x[:, :5], images, ["exact"])
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        verify(cn, bad, images, ["exact"])
    with pytest.raises(DataError, match="images"):
        verify(cn, x, images[:3], ["exact"])
    with pytest.raises(TargetError, match="unknown target"):
        verify(cn, x, images, ["exact", "loihi9"])
    with pytest.raises(TargetError, match="dt"):
        verify(cn, x, images, ["brian2"], target_options={"brian2": {"dt": -1.0}})
    with pytest.raises(SnncError, match="margin"):
        verify(cn, x, images, ["exact"], margin=math.inf)
    with pytest.raises(DataError, match="no samples"):
        verify(cn, x[:0], images[:0], ["exact"])


def test_bit_exact_targets_are_cross_checked(setup):
    net, cn, x, images = setup
    times = [tr.t_out for tr in exact_forward_trace(net, x)]
    cols = [np.where(np.isfinite(t), np.ceil(t * 32).astype(np.int64), -1) for t in times]
    grid_times = [cn.columns_to_times(c, l) for l, c in enumerate(cols)]
    other = [c.copy() for c in cols]
    other[1][0, 0] += 1  # one column differs in layer 1
    results = {"lava-fixed": RunResult("lava-fixed", grid_times, cols, 0.0, {}),
               "hw_sim": RunResult("hw_sim", [cn.columns_to_times(c, l) for l, c in enumerate(other)], other, 0.0, {})}
    rep = verify(cn, x, images, ["lava-fixed", "hw_sim"], results=results)
    cross = [g for g in rep.targets[1].gates if g.name == "columns_identical_to_lava-fixed"]
    assert [g.passed for g in cross] == [True, False]
    assert cross[1].value == pytest.approx(1 - 1 / cols[1].size)
    assert "hw_sim layer 1: columns_identical_to_lava-fixed" in " ".join(rep.failed_gates())
    assert not any(g.name.startswith("columns_identical") for g in rep.targets[0].gates)


def test_grazes_tells_a_touch_of_theta_from_a_clean_crossing():
    # V = 2.8 k(t) - 2 k(t - 0.8) + 3 k(t - 2): crosses theta = 1 just before 0.8, peaks at 1.0065 theta at 0.8
    # (the inhibitory input turns it back), falls and crosses again near 2.9: a spike time that can jump by ~2.
    def trace(w0):
        layer = AlphaLayer(np.array([[w0, -2.0, 3.0]]), np.zeros(0), np.zeros((1, 0)))
        net = TemporalNetwork((layer,), tau=1.0, theta=1.0, latency=1.0)
        return net, exact_forward_trace(net, np.array([[0.0, 0.8, 2.0]]))[0]

    net, tr = trace(2.8)
    w = net.layers[0].all_weights()
    t = float(tr.t_out[0, 0])
    assert 0.5 < t < 0.8
    assert grazes(tr, w, 1.0, 1.0, 0, 0, t, 2.9, margin=0.02)  # the target crossed at the second rise
    assert not grazes(tr, w, 1.0, 1.0, 0, 0, t, 2.9, margin=0.001)  # 0.65 % above theta: outside 0.1 %
    net, tr = trace(6.0)  # a clean crossing: no local maximum near theta around it
    t = float(tr.t_out[0, 0])
    assert not grazes(tr, net.layers[0].all_weights(), 1.0, 1.0, 0, 0, t, t + 0.2, margin=0.02)
