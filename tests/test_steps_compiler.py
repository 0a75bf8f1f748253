"""Steps-graph compiler (toolchain/steps_compiler.py, lower_*.py), its file format and hw_sim's LIF emulation."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from hw_sim.lif import run_lif_fixed
from targets.hw_sim_lif import HwSimLifTarget
from toolchain.compiled_steps import CompiledSteps
from toolchain.compiled_steps_io import load_compiled_steps, save_compiled_steps
from toolchain.errors import ArtifactError, CompileError, TargetError
from toolchain.ir import LIF, AlphaOnce, Dense, Graph, Input, Readout, lif_chain
from toolchain.lif_reference import simulate
from toolchain.quantize import A_IN_MAX, MANTISSA, UV_MAX, effective_weights
from toolchain.steps_compiler import deployed_graph


def net(seed=0, sizes=(20, 10, 20), mu=0.1, sd=0.3, leak=0.9, **lif):
    rng = np.random.default_rng(seed)
    ws = [rng.normal(mu, sd, (b, a)) for a, b in zip(sizes[:-1], sizes[1:])]
    return lif_chain(ws, [LIF(w.shape[0], leak, clamp=True, **lif) for w in ws])


def spikes(n=50, t=20, n_in=20, p=0.3, seed=1):
    return (np.random.default_rng(seed).random((n, t, n_in)) < p).astype(np.uint8)


def matched_fraction(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """Fraction of the spikes of a (N, T, n) that have a partner in b within +-k steps (greedy, per neuron)."""
    total = hit = 0
    for ra, rb in zip(a.transpose(0, 2, 1).reshape(-1, a.shape[1]), b.transpose(0, 2, 1).reshape(-1, b.shape[1])):
        free = set(np.flatnonzero(rb).tolist())
        for t in np.flatnonzero(ra):
            total += 1
            for d in sorted(range(-k, k + 1), key=abs):
                if t + d in free:
                    free.discard(t + d)
                    hit += 1
                    break
    return hit / max(total, 1)


def test_lowering_fills_the_mantissa_within_worst_case_ranges():
    """exponent="mantissa" (the one-block choice; the default with weight_blocks=1): each layer's exponent is the
    one at which every neuron's largest weight fills the first block's mantissa."""
    g = net()
    cs = compile_graph_ok(g, 20, exponent="mantissa")
    assert cs.manifest["exponent"] == "mantissa"
    for cl, entry in zip(cs.layers, cs.manifest["layers"]):
        assert (cl.du, cl.dv) == (4095, 410) and np.all(cl.vth == cl.scale) and cl.weight_exp >= -1
        assert len(set(cl.scale.tolist())) > 1                     # one threshold per neuron
        row_max = np.abs(cl.weights).max(axis=1)
        assert row_max.min() >= 250                                # every neuron's largest weight fills the mantissa
        assert entry["mantissa_used"] > 0.99
        eff = effective_weights(cl.weights, cl.weight_exp)
        pos, neg = np.where(eff > 0, eff, 0).sum(1), np.where(eff < 0, -eff, 0).sum(1)
        assert np.maximum(pos, neg).max() <= A_IN_MAX
        r = 1 - 410 / 4096
        assert (neg.max() * 64 * (1 - r**20) / (1 - r)) <= UV_MAX
        # quantized weights within half a grid step of the float weights (threshold units)
        step = MANTISSA[8][2] * 2.0**cl.weight_exp / cl.scale[:, None]
        assert np.all(np.abs(eff / cl.scale[:, None] - cl.weights_float / cl.v_th) <= step / 2 + 1e-12)
        assert np.nextafter(cl.vth_float, 2.0) == cl.v_th        # largest float below v_th: v > vth_f == v >= v_th


def test_one_threshold_per_layer_is_coarser_than_one_per_neuron():
    g = net(sizes=(20, 10, 40), sd=0.3)
    per_neuron, per_layer = compile_graph_ok(g, 20), compile_graph_ok(g, 20, threshold="layer")
    for a, b in zip(per_neuron.layers, per_layer.layers):
        assert len(set(b.scale.tolist())) == 1 and np.all(b.vth == b.scale)
        err_a = np.abs(effective_weights(a.weights, a.weight_exp) / a.scale[:, None] - a.weights_float).max(axis=1)
        err_b = np.abs(effective_weights(b.weights, b.weight_exp) / b.scale[:, None] - b.weights_float).max(axis=1)
        assert err_a.mean() < err_b.mean()
    with pytest.raises(CompileError, match="threshold='row' is not one of"):
        compile_graph_ok(g, 20, threshold="row")


def compile_graph_ok(g, max_steps, **kw) -> CompiledSteps:
    from toolchain.steps_compiler import compile_graph

    return compile_graph(g, max_steps, **kw)


def test_hw_sim_lif_is_the_deployed_integer_model_and_close_to_the_float_model():
    g, x = net(), spikes()
    cs = compile_graph_ok(g, 20)
    fixed = run_lif_fixed(cs, x)
    ref = simulate(g, x).spikes
    # the integer model = the float model with the quantized weights and 12-bit leak (up to truncation)
    dep = simulate(deployed_graph(cs), x).spikes
    assert sum(int((d != f).sum()) for d, f in zip(dep, fixed)) <= 4
    assert simulate(deployed_graph(cs), x).names == ["layer0", "layer1"]
    for r, f in zip(ref, fixed):                                  # issue [E] gate: >= 95 % within +-1 step
        assert matched_fraction(r, f, 1) >= 0.95 and matched_fraction(f, r, 1) >= 0.95
    res = HwSimLifTarget(threads=2).run(cs, x)
    assert all(np.array_equal(a, b) for a, b in zip(res.trains, fixed))
    assert res.target == "hw_sim-lif" and res.info["populations"] == ["layer0", "layer1"]


def test_ties_at_the_threshold_spike_like_the_float_model_without_leak():
    """V >= v_th against Lava's strict v > vth << 6: weights that sum exactly to the threshold must spike.
    (scale=1024 represents 0.25 and 0.5 exactly; the automatic scale fills the mantissa instead.)"""
    g = lif_chain([np.full((3, 4), 0.25), np.full((2, 3), 0.5)], [LIF(3, 1.0), LIF(2, 1.0)])
    x = spikes(n=8, t=12, n_in=4, p=0.5, seed=3)
    ref = simulate(g, x).spikes
    fixed = run_lif_fixed(compile_graph_ok(g, 12, scale=1024), x)
    assert ref[0].sum() > 0 and ref[1].sum() > 0
    assert all(np.array_equal(r, f) for r, f in zip(ref, fixed))
    strict = lif_chain([np.full((3, 4), 0.25)], [LIF(3, 1.0, strict=True)])
    assert np.array_equal(run_lif_fixed(compile_graph_ok(strict, 12, scale=1024), x)[0], simulate(strict, x).spikes[0])


@pytest.mark.parametrize("make, words", [
    (lambda: (lif_chain([np.ones((2, 3))], [Readout(2)]), 10), "Readout, which has no lowering"),
    (lambda: (lif_chain([np.ones((2, 3))], [LIF(2, 0.9, reset="subtract")]), 10), "resets v to 0"),
    (lambda: (lif_chain([np.ones((2, 3))], [LIF(2, 1e-5)]), 10), "outside \\[0, 4095\\]"),
    (lambda: (lif_chain([np.full((2, 3), 0.1)], [LIF(2, 0.9)]), 0), "max_steps=0"),
    (lambda: (lif_chain([np.full((2, 500), 100.0)], [LIF(2, 0.9)]), 10), "even at the smallest useful scale"),
    (lambda: (lif_chain([-np.full((2, 40), 0.5)], [LIF(2, 1.0)]), 100_000), "fewer steps"),
    (lambda: (Graph({"input": Input(2), "fc": Dense(np.ones((1, 2))),
                     "a": AlphaOnce(1, 1.0, 1.0, np.zeros(0), np.zeros((1, 0)))},
                    (("input", "fc"), ("fc", "a")), "continuous"), 10), "steps graphs"),
])
def test_graphs_the_lowering_cannot_run_are_refused_by_name(make, words):
    g, steps = make()
    with pytest.raises(CompileError, match=words):
        compile_graph_ok(g, steps)


def test_explicit_scale_that_overflows_is_refused():
    g = lif_chain([np.full((2, 100), 1.0)], [LIF(2, 0.9)])
    with pytest.raises(CompileError, match="exceeds 32767 at scale=4000"):
        compile_graph_ok(g, 10, scale=4000)
    with pytest.raises(CompileError, match="scale=10 must be an integer in"):
        compile_graph_ok(g, 10, scale=10)
    cs = compile_graph_ok(g, 10, scale=300)
    assert np.all(cs.layers[0].scale == 300) and np.all(cs.layers[0].vth == 300)          # leak: vth = scale
    cs = compile_graph_ok(lif_chain([np.full((2, 100), 1.0)], [LIF(2, 1.0)]), 10, scale=300)
    assert np.all(cs.layers[0].vth == 299)                                                # no leak: scale - 1


def test_bad_spike_trains_are_refused_before_anything_runs():
    cs = compile_graph_ok(net(), 20)
    with pytest.raises(TargetError, match=r"shape \(samples, steps, 20\)"):
        run_lif_fixed(cs, np.zeros((3, 20)))
    with pytest.raises(TargetError, match="only 0 and 1"):
        run_lif_fixed(cs, np.full((1, 5, 20), 2))
    with pytest.raises(TargetError, match="max_steps=30"):
        run_lif_fixed(cs, np.zeros((1, 30, 20)))


def test_save_load_round_trip_and_malformed_files(tmp_path):
    cs = compile_graph_ok(net(leak=0.95), 20, weight_bits=9)
    p = tmp_path / "c.npz"
    save_compiled_steps(cs, p)
    back = load_compiled_steps(p)
    assert back.max_steps == cs.max_steps and back.manifest == json.loads(json.dumps(cs.manifest))
    assert back.input_name == "input" and back.graph.order() == g_order(cs)
    for a, b in zip(cs.layers, back.layers):
        for f in a.__dataclass_fields__:
            va, vb = getattr(a, f), getattr(b, f)
            assert np.array_equal(va, vb) if isinstance(va, np.ndarray) else va == vb, f
    assert sorted(p.parent.iterdir()) == [p]                      # atomic: no temp debris

    def tamper(key, value, name):
        with np.load(p, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
        if key == "meta":
            meta = json.loads(str(d["meta"]))
            meta["layers"][0].update(value)
            d["meta"] = np.array(json.dumps(meta))
        else:
            d[key] = value
        q = tmp_path / name
        with open(q, "wb") as f:
            np.savez(f, **d)
        return q

    with pytest.raises(ArtifactError, match="dv=5000 is outside"):
        load_compiled_steps(tamper("meta", {"dv": 5000}, "dv.npz"))
    with pytest.raises(ArtifactError, match=r"vth values in \[.*200000\] are outside"):
        load_compiled_steps(tamper("layer0.vth", np.full(10, 200000), "vth.npz"))
    with pytest.raises(ArtifactError, match=r"scale must be an integer array of shape \(10,\)"):
        load_compiled_steps(tamper("layer0.scale", np.full(9, 300), "scale.npz"))
    with pytest.raises(ArtifactError, match="weight_exp=9 is outside"):
        load_compiled_steps(tamper("meta", {"weight_exp": 9}, "exp.npz"))
    w = np.array(cs.layers[0].weights)
    w[0, 0] = 300
    with pytest.raises(ArtifactError, match="9-bit mantissas"):
        load_compiled_steps(tamper("layer0.weights", w, "w.npz"))
    with pytest.raises(ArtifactError, match="weights_float of the same shape"):
        load_compiled_steps(tamper("layer1.weights", np.zeros((20, 7), np.int32), "shape.npz"))
    q = tamper("layer1.weights", np.zeros((20, 7), np.int32), "shape2.npz")
    with np.load(q) as z:
        d = {k: z[k] for k in z.files}
    d["layer1.weights_float"] = np.zeros((20, 7))
    with open(q, "wb") as f:
        np.savez(f, **d)
    with pytest.raises(ArtifactError, match="has 7 inputs but the previous layer has 10"):
        load_compiled_steps(q)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ArtifactError, match="unreadable npz"):
        load_compiled_steps(tmp_path / "junk.npz")
    with zipfile.ZipFile(tmp_path / "nometa.npz", "w") as z:
        z.writestr("x.npy", b"")
    with pytest.raises(ArtifactError):
        load_compiled_steps(tmp_path / "nometa.npz")


def test_an_alpha_compiled_file_is_refused_with_the_right_loader(tmp_path):
    from compiled_factory import make_compiled
    from toolchain.compiled_io import save_compiled

    save_compiled(make_compiled(), tmp_path / "alpha.npz")
    with pytest.raises(ArtifactError, match="toolchain.compiled_io.load_compiled"):
        load_compiled_steps(tmp_path / "alpha.npz")
    with pytest.raises(ArtifactError, match="does not exist"):
        load_compiled_steps(tmp_path / "missing.npz")
    with pytest.raises(TargetError, match="expected a CompiledSteps"):
        HwSimLifTarget().run(make_compiled(), spikes())


def g_order(cs) -> list[str]:
    return cs.graph.order()


def test_compiled_steps_carries_its_source_graph():
    from toolchain.ir_equal import graph_differences

    rng = np.random.default_rng(4)
    g = Graph({"spikes": Input(6), "enc": Dense(rng.normal(0.2, 0.3, (4, 6))),
               "hid": LIF(4, 0.95, clamp=True, dt_ms=2.0), "dec": Dense(rng.normal(0.2, 0.3, (6, 4))),
               "out": LIF(6, 1.0, strict=True, dt_ms=2.0)},
              (("spikes", "enc"), ("enc", "hid"), ("hid", "dec"), ("dec", "out")), "steps")
    cs = compile_graph_ok(g, 10)
    assert cs.input_name == "spikes" and cs.names == ["hid", "out"]
    assert graph_differences(cs.graph, Graph(g.nodes, g.edges, "steps", {"compiled": "CompiledSteps"})) == []
    x = spikes(n=4, t=10, n_in=6, p=0.5)
    assert all(np.array_equal(a, b) for a, b in zip(simulate(cs.graph, x).spikes, simulate(g, x).spikes))


@pytest.mark.parametrize("bits", [8, 9])
@pytest.mark.parametrize("threshold", ["neuron", "layer"])
def test_range_bound_layers_keep_the_finest_weight_grid(bits, threshold):
    """Roy-like layer (784 inputs, U(-0.1, 0.1) weights): the worst-case ranges hold every neuron below its
    full-mantissa scale, so the weight exponent must stay at its minimum (bug: 9-bit and per-layer thresholds picked
    exponent 7, rounding most weights to zero: 57 % hidden spike match, or no spikes at all)."""
    rng = np.random.default_rng(3)
    w0 = rng.uniform(-0.1, 0.1, (24, 784)) + 0.01
    w1 = rng.uniform(-0.1, 0.1, (30, 24)) + 0.05
    g = lif_chain([w0, w1], [LIF(24, 0.9, clamp=True), LIF(30, 0.9, clamp=True)])
    x = (np.random.default_rng(4).random((30, 15, 784)) < 0.15).astype(np.uint8)
    cs = compile_graph_ok(g, 15, weight_bits=bits, threshold=threshold)
    cl = cs.layers[0]
    assert cl.weight_exp == -1 if bits == 8 else cl.weight_exp == 0
    assert cs.manifest["layers"][0]["max_weight_error"] <= 0.5 / cl.scale.min() + 1e-12
    ref, fixed = simulate(g, x).spikes, run_lif_fixed(cs, x, threads=1)
    for r, f in zip(ref, fixed):
        assert r.sum() > 100
        assert matched_fraction(r, f, 1) >= 0.95 and matched_fraction(f, r, 1) >= 0.95


def wide_net(seed=5):
    """100 -> 12 -> 20, weights too large for the worst case (every input in every step) at T = 20."""
    rng = np.random.default_rng(seed)
    return lif_chain([rng.normal(0.2, 6.0, (12, 100)), rng.normal(0.3, 1.0, (20, 12))],
                     [LIF(12, 0.9, clamp=True), LIF(20, 0.9, clamp=True)])


def test_calibrated_ranges_compile_what_the_worst_case_refuses(tmp_path):
    g = wide_net()
    with pytest.raises(CompileError, match="--range calibrated"):
        compile_graph_ok(g, 20)
    xc = spikes(n=40, t=20, n_in=100, p=0.05, seed=2)
    cs = compile_graph_ok(g, 20, range_mode="calibrated", calibration_spikes=xc, range_margin=0.5,
                          calibration_source="test trains")
    m = cs.manifest
    assert m["range_mode"] == "calibrated" and m["calibration"]["samples"] == 40
    assert m["calibration"]["margin"] == 0.5 and m["calibration"]["source"] == "test trains"
    from toolchain.steps_calibration import measure_steps_ranges

    meas = measure_steps_ranges(g, xc)
    for cl, e, r in zip(cs.layers, m["layers"], meas):
        # the bound the compiler kept: integer magnitudes at the chosen scales, margin included
        assert np.all(cl.scale * r.a_in * 1.5 <= A_IN_MAX + 1e-9)
        assert np.all(64 * cl.scale * r.v_neg * 1.5 <= UV_MAX + 1e-9)
        assert e["calibrated"]["a_in"] <= A_IN_MAX and e["calibrated"]["v_neg"] <= UV_MAX
        assert e["measured"]["a_in_max"] == pytest.approx(r.a_in.max())
        # measured directly: largest |W s[t]| / v_th over the calibration inputs
    a0 = np.abs(xc.astype(float) @ g.nodes["fc0"].weight.T).max(axis=(0, 1))
    assert np.allclose(meas[0].a_in, a0)
    # on inputs like the calibration's, no range event and the float model within the gate
    from hw_sim.lif import run_lif_fixed_events

    x = spikes(n=30, t=20, n_in=100, p=0.05, seed=9)
    fixed, events = run_lif_fixed_events(cs, x, threads=1)
    assert all(ev["u_wrapped"] == ev["v_saturated_low"] == ev["a_in_over_16bit"] == 0 for ev in events)
    for r, f in zip(simulate(g, x).spikes, fixed):
        assert r.sum() > 20 and matched_fraction(r, f, 1) >= 0.95
    # saved and loaded with its figures; a file whose calibrated figures leave the hardware range is refused
    p = tmp_path / "c.npz"
    save_compiled_steps(cs, p)
    assert load_compiled_steps(p).manifest["range_mode"] == "calibrated"
    bad = dict(m, layers=[dict(m["layers"][0], calibrated=dict(m["layers"][0]["calibrated"], a_in=1e6))]
               + m["layers"][1:])
    save_compiled_steps(CompiledSteps(cs.layers, cs.max_steps, bad, cs.input_name), p)
    with pytest.raises(ArtifactError, match="calibrated a_in"):
        load_compiled_steps(p)
    save_compiled_steps(CompiledSteps(cs.layers, cs.max_steps, dict(m, range_mode="guess"), cs.input_name), p)
    with pytest.raises(ArtifactError, match="range_mode"):
        load_compiled_steps(p)


def test_calibrated_mode_needs_valid_calibration_inputs():
    g = wide_net()
    with pytest.raises(CompileError, match="needs calibration inputs"):
        compile_graph_ok(g, 20, range_mode="calibrated")
    with pytest.raises(CompileError, match=r"\(samples, steps, 100\)"):
        compile_graph_ok(g, 20, range_mode="calibrated", calibration_spikes=np.full((2, 20, 100), 2))
    with pytest.raises(CompileError, match="range_margin"):
        compile_graph_ok(g, 20, range_mode="calibrated", calibration_spikes=spikes(n=2, t=20, n_in=100),
                         range_margin=-1.0)
    with pytest.raises(CompileError, match="range_mode='sometimes'"):
        compile_graph_ok(g, 20, range_mode="sometimes")


def test_second_weight_block_holds_the_rounding_residuals():
    """weight_blocks=2 (default): where the layer's exponent is above the smallest, a second block at the smallest
    exponent holds each weight's residual: the grid is 2**(exp - fine_exp) times finer, hw_sim runs the sum of both
    blocks (its reference loop agrees), the deployed float graph is that sum, and the file keeps both blocks."""
    from hw_sim.lif import run_lif_reference, simulate_lif

    g = wide_net()
    xc = spikes(n=40, t=20, n_in=100, p=0.05, seed=2)
    one = compile_graph_ok(g, 20, range_mode="calibrated", calibration_spikes=xc, weight_blocks=1)
    two = compile_graph_ok(g, 20, range_mode="calibrated", calibration_spikes=xc, exponent="mantissa")
    assert two.manifest["weight_blocks"] == 2 and one.manifest["weight_blocks"] == 1
    refined = 0
    for a, b, ea, eb in zip(one.layers, two.layers, one.manifest["layers"], two.manifest["layers"]):
        assert a.fine_weights is None and np.array_equal(a.weights, b.weights) and a.weight_exp == b.weight_exp
        if b.weight_exp == -1:                            # already the finest 8-bit grid: no second block
            assert b.fine_weights is None and eb["fine_exp"] is None
            continue
        refined += 1
        assert b.fine_exp == -1 and eb["fine_exp"] == -1 and np.abs(b.fine_weights).max() > 0
        step = 2.0 ** (b.weight_exp + 1)                  # the coarse grid in integer units (8 bits: even mantissas)
        assert np.abs(effective_weights(b.fine_weights, b.fine_exp)).max() <= step / 2
        assert eb["max_weight_error"] <= ea["max_weight_error"] / 2
        np.testing.assert_array_equal(b.effective, effective_weights(b.weights, b.weight_exp)
                                      + effective_weights(b.fine_weights, b.fine_exp))
    assert refined >= 1
    x = spikes(n=30, t=20, n_in=100, p=0.05, seed=9)
    run = simulate_lif(two, x, threads=1)
    assert all(np.array_equal(a, b) for a, b in zip(run.trains, run_lif_reference(two, x)[0]))
    dep = deployed_graph(two)
    np.testing.assert_allclose(dep.nodes["fc0"].weight, two.layers[0].effective / two.layers[0].vth[:, None])
    ref = simulate(g, x).spikes
    assert matched_fraction(ref[1], run.trains[1], 1) >= matched_fraction(ref[1], run_lif_fixed(one, x, 1)[1], 1)
    with pytest.raises(CompileError, match="weight_blocks=3 must be 1 or 2"):
        compile_graph_ok(g, 20, range_mode="calibrated", calibration_spikes=xc, weight_blocks=3)


def test_second_weight_block_is_saved_loaded_and_validated(tmp_path):
    import dataclasses

    cs = compile_graph_ok(wide_net(), 20, range_mode="calibrated", calibration_spikes=spikes(n=40, t=20, n_in=100,
                                                                                             p=0.05, seed=2))
    k = next(i for i, cl in enumerate(cs.layers) if cl.fine_weights is not None)
    p = tmp_path / "two.npz"
    save_compiled_steps(cs, p)
    back = load_compiled_steps(p).layers[k]
    assert back.fine_exp == cs.layers[k].fine_exp and np.array_equal(back.fine_weights, cs.layers[k].fine_weights)
    cl = cs.layers[k]
    for bad, words in ((dict(fine_exp=cl.weight_exp), "fine_exp="),
                       (dict(fine_weights=cl.fine_weights[:, :3]), "fine_weights must be an integer array"),
                       (dict(fine_weights=cl.fine_weights + 1), "fine_weights must be multiples of 2")):
        layers = list(cs.layers)
        layers[k] = dataclasses.replace(cl, **bad)
        with pytest.raises(ArtifactError, match=words):
            save_compiled_steps(CompiledSteps(tuple(layers), cs.max_steps, cs.manifest, cs.input_name), p)


def test_negative_potential_below_the_v_floor_saturates_instead_of_refusing():
    """A neuron driven far below its threshold (calibrated v_neg beyond ~512 thresholds, deeper than v's 24-bit
    floor at the smallest scale) compiles with scale 256 and saturates at -(2**23 - 1) as Lava's v does; hw_sim
    counts the saturations and still equals the reference loop. An input beyond 16 bits at that scale is still
    refused by name."""
    from hw_sim.lif import run_lif_reference, simulate_lif

    w = np.full((3, 40), 0.05)
    w[0, :20] = -5.0                       # neuron 0: inhibited by half of the inputs, without leak
    g = lif_chain([w, np.full((2, 3), 0.6)], [LIF(3, 1.0), LIF(2, 0.9)])
    xc = spikes(n=20, t=20, n_in=40, p=0.3, seed=3)
    with pytest.raises(CompileError, match="worst-case"):
        compile_graph_ok(g, 20)
    cs = compile_graph_ok(g, 20, range_mode="calibrated", calibration_spikes=xc)
    entry = cs.manifest["layers"][0]
    assert entry["v_floor_neurons"] == 1 and cs.layers[0].scale[0] == 256
    assert entry["v_floor_thresholds"] == pytest.approx((2**23 - 1) / (64 * 256))
    run = simulate_lif(cs, xc, threads=1)
    ref, events = run_lif_reference(cs, xc)
    assert run.events == events and events[0]["v_saturated_low"] > 0
    assert all(np.array_equal(a, b) for a, b in zip(run.trains, ref))
    w = w.copy()
    w[0, :20] = -100.0                     # |a_in| per step beyond 16 bits even at scale 256: refused
    with pytest.raises(CompileError, match=r"synaptic input per step \|a_in\| \(16-bit\)"):
        compile_graph_ok(lif_chain([w, np.full((2, 3), 0.6)], [LIF(3, 1.0), LIF(2, 0.9)]), 20,
                         range_mode="calibrated", calibration_spikes=xc)


def test_the_fine_exponent_is_the_option_of_two_weight_blocks():
    """compile_graph's default exponent: "mantissa" (the first block's grid, what hw_sim-lif runs fastest); "fine"
    (the grid of both blocks) is the option with two weight blocks and raises exponents; "fine" with one block is
    refused with a CompileError naming the fix."""
    g, xc = wide_net(), spikes(n=40, t=20, n_in=100, p=0.05, seed=2)
    kw = dict(range_mode="calibrated", calibration_spikes=xc)
    default, fine = compile_graph_ok(g, 20, **kw), compile_graph_ok(g, 20, exponent="fine", **kw)
    coarse = compile_graph_ok(g, 20, exponent="mantissa", **kw)
    assert default.manifest["exponent"] == "mantissa" and fine.manifest["exponent"] == "fine"
    assert all(np.array_equal(a.effective, b.effective) and np.array_equal(a.scale, b.scale)
               for a, b in zip(default.layers, coarse.layers))
    assert any(b.weight_exp > a.weight_exp for a, b in zip(coarse.layers, fine.layers))
    assert compile_graph_ok(g, 20, weight_blocks=1, **kw).manifest["exponent"] == "mantissa"
    with pytest.raises(CompileError, match="exponent='fine' with weight_blocks=1"):
        compile_graph_ok(g, 20, weight_blocks=1, exponent="fine", **kw)


def test_conv_compiler_dense_layers_take_the_same_exponent_choice_except_a_split_fan_in():
    """compile_conv_graph (conv graphs, relay-split Dense chains): unsplit Dense layers take compile_graph's
    exponent choice (mantissa by default; fine as the option: the same integers), a split fan-in keeps mantissa."""
    from toolchain.conv_compiler import compile_conv_graph

    g, xc = wide_net(), spikes(n=40, t=20, n_in=100, p=0.05, seed=2)
    kw = dict(range_mode="calibrated", calibration_spikes=xc)
    flat = compile_graph_ok(g, 20, exponent="fine", **kw)
    whole = compile_conv_graph(g, 20, max_fan_in=None, exponent="fine", **kw)
    split = compile_conv_graph(g, 20, max_fan_in=50, exponent="fine", **kw)
    coarse = compile_conv_graph(g, 20, max_fan_in=None, **kw)
    assert [e["exponent"] for e in whole.manifest["layers"]] == ["fine", "fine"]
    assert [e["exponent"] for e in split.manifest["layers"]] == ["mantissa", "fine"]
    assert [e["exponent"] for e in coarse.manifest["layers"]] == ["mantissa", "mantissa"]
    for a, b in zip(flat.layers, whole.layers):
        assert np.array_equal(a.effective, b.effective) and np.array_equal(a.scale, b.scale)
    assert split.layers[0].fan_in_groups == 2 and split.layers[0].weight_exp == coarse.layers[0].weight_exp
    with pytest.raises(CompileError, match="exponent='fine' with weight_blocks=1"):
        compile_conv_graph(g, 20, weight_blocks=1, exponent="fine", **kw)
