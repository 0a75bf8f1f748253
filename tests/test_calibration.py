"""Calibrated range mode (toolchain/calibration.py + compile_network(range_mode="calibrated")), quantization
warnings, run-time saturation counters on compiled networks, and the compile CLI's range options."""
from __future__ import annotations

import math

import numpy as np
import pytest

from hw_sim.emulator import simulate
from models.network import AlphaLayer, TemporalNetwork
from toolchain.calibration import measure_ranges
from toolchain.compiler import UV_MAX, compile_network, decay_constant, default_window
from toolchain.errors import CompileError


def inhibitory_net(n_in=300, n_out=6, seed=0) -> TemporalNetwork:
    """A wide layer of mostly inhibitory weights (worst case: all 300 at once) with an excitatory pulse."""
    rng = np.random.default_rng(seed)
    w = rng.normal(-10.0, 4.0, (n_out, n_in))
    layer = AlphaLayer(w, np.array([0.5]), np.full((n_out, 1), 60.0))
    return TemporalNetwork((layer,), tau=2.0, theta=1.0, latency=1.0)


def sparse_inputs(n, n_in, p=0.02, seed=1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = rng.uniform(0.0, 1.0, (n, n_in))
    t[rng.random((n, n_in)) > p] = np.inf
    return t


def test_worst_case_fails_and_names_calibrated_mode_and_weight_decay():
    with pytest.raises(CompileError) as info:
        compile_network(inhibitory_net())
    msg = str(info.value)
    for words in ("layer0", "negative voltage", "worst case", "--range calibrated", "--weight-decay"):
        assert words in msg, msg
    assert "--vth" not in msg  # the user passed none: do not tell them to pass a smaller one


def test_calibrated_mode_compiles_records_ranges_and_counts_saturation_beyond_them():
    net = inhibitory_net()
    x = sparse_inputs(100, 300)
    cn = compile_network(net, range_mode="calibrated", calibration_times=x, range_margin=0.5,
                         calibration_source="test inputs")
    m = cn.manifest
    assert m["range_mode"] == "calibrated"
    assert m["calibration"]["samples"] == 100 and m["calibration"]["margin"] == 0.5
    assert m["calibration"]["source"] == "test inputs"
    lm = m["layers"][0]
    assert lm["range_mode"] == "calibrated"
    # the measured ranges (with margin) fit the limits; the worst case does not
    assert lm["calibrated_with_margin"]["v_neg_max"] <= UV_MAX < lm["worst_case"]["v_neg_max"]
    assert lm["calibrated_with_margin"]["v_neg_max"] == pytest.approx(1.5 * lm["calibrated"]["v_neg_max"])
    # inputs like the calibration set stay in range on the bit-accurate emulator ...
    res = simulate(cn, cn.input_columns(sparse_inputs(200, 300, seed=7)))
    assert res.v_saturations.sum() == 0 and res.u_wraps.sum() == 0
    # ... every input at once (the worst case) saturates v, and the counters say so
    res = simulate(cn, cn.input_columns(np.zeros((2, 300))))
    assert res.v_saturations.sum() > 0


def _float_grid_reference(net, x, S, W, pulse_cols, dd):
    """Direct numpy transcription: per-neuron maxima (theta units) while the neuron can still spike."""
    out = []
    cols = np.where(np.isfinite(x), np.rint(np.where(np.isfinite(x), x, 0) * S), -1).astype(int)
    for k, layer in enumerate(net.layers):
        w = np.hstack([layer.weights, layer.pulse_weights]) / S * dd
        stats = np.zeros((4, layer.n_out))
        nxt = np.full((x.shape[0], layer.n_out), -1)
        for s in range(x.shape[0]):
            u = np.zeros(layer.n_out)
            v = np.zeros(layer.n_out)
            live = np.ones(layer.n_out, bool)
            for n in range(W):
                ev = np.concatenate([cols[s] == n, pulse_cols[k] == n]).astype(float)
                a = w @ ev
                u = dd * u + a
                v = dd * v + u
                vals = np.stack([np.abs(a), np.abs(u), -v, v])
                stats = np.where(live, np.maximum(stats, vals), stats)
                f = live & (v > net.theta) & (n < W - 1)
                nxt[s, f] = n + 1
                live &= ~f
        out.append(stats / net.theta)
        cols = nxt
    return out


def test_measured_ranges_match_a_direct_float_grid_simulation():
    rng = np.random.default_rng(3)
    layers = (AlphaLayer(rng.normal(0.3, 1.0, (5, 12)), np.array([0.2, 0.4]), rng.normal(0.5, 0.5, (5, 2))),
              AlphaLayer(rng.normal(0.3, 1.0, (4, 5)), np.array([0.3]), rng.normal(0.8, 0.3, (4, 1))))
    net = TemporalNetwork(layers, tau=2.0, theta=1.0, latency=1.0)
    S = 16
    W = default_window(net, S)
    _, D = decay_constant(net.tau, S)
    dd = 1 - D / 4096
    pcols = [np.floor(l.pulse_times * S + 0.5 * k + 0.5).astype(int) for k, l in enumerate(net.layers)]
    x = sparse_inputs(8, 12, p=0.6, seed=2)
    cal = measure_ranges(net, x, S, W, pcols, dd)
    ref = _float_grid_reference(net, x, S, W, pcols, dd)
    for got, want in zip(cal.layers, ref):
        for i, name in enumerate(("a_in", "u", "v_neg", "v_pos")):
            np.testing.assert_allclose(getattr(got, name), want[i], rtol=1e-12, atol=1e-15, err_msg=name)
    assert cal.samples == 8 and any(l.spiked.max() > 0 for l in cal.layers)


@pytest.mark.parametrize("kw, words", [
    ({"range_mode": "calibrated"}, ["needs calibration inputs", "--calibration-samples"]),
    ({"range_mode": "typical"}, ["range_mode='typical'", "worst-case, calibrated"]),
    ({"range_mode": "calibrated", "calibration_times": np.zeros((2, 300)), "range_margin": -1},
     ["range_margin=-1"]),
    ({"range_mode": "calibrated", "calibration_times": np.zeros((2, 5))}, ["shape (N >= 1, 300)"]),
    ({"range_mode": "calibrated", "calibration_times": np.full((2, 300), 50.0)}, ["inside the sample window"]),
    ({"vth": 2000}, ["vth=2000 you passed", "smaller --vth", "--range calibrated"]),
])
def test_bad_range_options_are_clear_errors(kw, words):
    with pytest.raises(CompileError) as info:
        compile_network(inhibitory_net(), **kw)
    for w in words:
        assert w in str(info.value), str(info.value)
    assert "fix" in str(info.value)


def test_quantization_warning_per_layer():
    rng = np.random.default_rng(0)
    # a huge fan-in forces small thresholds (coarse grid): the quantization error exceeds the warning level
    w = rng.normal(0.0, 1.0, (3, 3000))
    net = TemporalNetwork((AlphaLayer(w, np.zeros(0), np.zeros((3, 0))),), tau=2.0, theta=1.0, latency=1.0)
    cn = compile_network(net)
    lm = cn.manifest["layers"][0]
    assert lm["weight_quant_max_abs_err_over_theta"] > 0.01 and lm["quant_warning"]
    assert len(cn.manifest["warnings"]) == 1 and cn.manifest["warnings"][0].startswith("layer0: weight quant")
    import re

    from toolchain.compiler import deployed_network

    j, vth = map(int, re.search(r"neuron (\d+) at vth=(\d+)", cn.manifest["warnings"][0]).groups())
    err = np.abs(deployed_network(cn).layers[0].weights - w)
    assert vth == cn.layers[0].vth[j] and err[j].max() == pytest.approx(err.max())
    assert "--range calibrated" in cn.manifest["warnings"][0]
    quiet = compile_network(net, quant_warn_fraction=10.0)
    assert quiet.manifest["warnings"] == [] and not quiet.manifest["layers"][0]["quant_warning"]
    assert lm["quant_potential_rms_err_over_theta"] > 0
    from toolchain.cli_deploy import compile_summary

    assert "warning: layer0: weight quantization error" in compile_summary(cn)


def test_worst_case_compiled_network_never_saturates_on_extreme_inputs():
    rng = np.random.default_rng(4)
    layer = AlphaLayer(rng.normal(-1.0, 2.0, (6, 200)), np.array([0.3]), np.full((6, 1), 3.0))
    net = TemporalNetwork((layer,), tau=2.0, theta=1.0, latency=1.0)
    cn = compile_network(net)
    x = np.vstack([np.zeros((1, 200)), sparse_inputs(20, 200, p=0.5)])
    res = simulate(cn, cn.input_columns(x))
    assert res.v_saturations.sum() == 0 and res.u_wraps.sum() == 0
    assert math.isfinite(cn.manifest["layers"][0]["worst_case"]["v_neg_max"])


# ------------------------------------------------------------------------------------------------------------
# command line: snnc compile --range calibrated
# ------------------------------------------------------------------------------------------------------------

def wide_inhibitory_autoencoder(dataset: str | None = "mnist") -> TemporalNetwork:
    """784-64-784 whose decoder is strongly inhibitory (worst case: all 64 hidden neurons in one step, cannot be
    met), while on images only a few hidden neurons spike (calibrated ranges fit)."""
    rng = np.random.default_rng(0)
    l0 = AlphaLayer(rng.normal(0.01, 0.02, (64, 784)), np.array([0.2]), np.full((64, 1), 3.5))
    l1 = AlphaLayer(rng.normal(-60.0, 10.0, (784, 64)), np.array([0.9]), np.full((784, 1), 40.0))
    meta = {"dataset": dataset} if dataset else {}
    return TemporalNetwork((l0, l1), tau=2.0, theta=1.0, latency=1.0, metadata=meta)


def run_cli(capsys, *argv):
    from toolchain.cli import main

    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_compile_calibrated_where_worst_case_fails(tmp_path, capsys, monkeypatch):
    from toolchain.artifact import save_onnx
    from toolchain.compiled_io import load_compiled

    monkeypatch.delenv("SNNC_DATA", raising=False)  # the bundled subset: fast and the same everywhere
    model = tmp_path / "model.onnx"
    save_onnx(wide_inhibitory_autoencoder(), model)
    out_file = tmp_path / "c.npz"
    rc, out, err = run_cli(capsys, "compile", model, "--out", out_file)
    assert rc == 2 and "--range calibrated" in err and "worst case" in err and not out_file.exists()
    rc, out, err = run_cli(capsys, "compile", model, "--range", "calibrated", "--calibration-samples", 30,
                           "--range-margin", 0.25, "--out", out_file)
    assert rc == 0, err
    assert "ranges: calibrated (30 samples of mnist train[:30]" in out and "margin 0.25" in out
    m = load_compiled(out_file).manifest
    assert m["range_mode"] == "calibrated" and m["calibration"]["samples"] == 30
    assert m["calibration"]["margin"] == 0.25 and m["calibration"]["source"].startswith("mnist train[:30]")
    # calibration options without calibrated mode, and a model that does not name its dataset
    rc, out, err = run_cli(capsys, "compile", model, "--range-margin", 0.2, "--out", tmp_path / "x.npz")
    assert rc == 2 and "--range-margin only apply to calibrated ranges" in err
    save_onnx(wide_inhibitory_autoencoder(dataset=None), tmp_path / "anon.onnx")
    rc, out, err = run_cli(capsys, "compile", tmp_path / "anon.onnx", "--range", "calibrated",
                           "--out", tmp_path / "x.npz")
    assert rc == 2 and "--calibration-dataset" in err
    rc, out, err = run_cli(capsys, "compile", tmp_path / "anon.onnx", "--range", "calibrated",
                           "--calibration-dataset", "mnist", "--calibration-samples", 10, "--out", tmp_path / "x.npz")
    assert rc == 0, err
    assert not (tmp_path / "x.npz.tmp").exists()


def test_calibrated_manifest_survives_save_and_load(tmp_path):
    from toolchain.compiled_io import load_compiled, save_compiled

    cn = compile_network(inhibitory_net(), range_mode="calibrated", calibration_times=sparse_inputs(20, 300))
    save_compiled(cn, tmp_path / "c.npz")
    back = load_compiled(tmp_path / "c.npz")
    assert back.manifest == cn.manifest and back.manifest["range_mode"] == "calibrated"
    np.testing.assert_array_equal(back.layers[0].vth, cn.layers[0].vth)
