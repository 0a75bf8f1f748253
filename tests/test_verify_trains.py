"""Spike-train verifier (toolchain/spike_metrics.py, toolchain/verify_trains.py): hand-computed matching and
metrics on synthetic trains, flip classification, gates, and float vs brian2-lif end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest

from targets.base import steps_result
from targets.brian2_lif import Brian2LifTarget
from toolchain.errors import DataError, OutputError, TargetError
from toolchain.ir import LIF, lif_chain
from toolchain.lif_reference import simulate
from toolchain.spike_metrics import count_agreement, match_spikes, zscore_mse
from toolchain.verify_trains import target_kind, verify_steps, write_steps_report


def trains_from(lists: list[list[int]], t: int = 8) -> np.ndarray:
    """One sample, one neuron per list of spike steps -> (1, t, n)."""
    out = np.zeros((1, t, len(lists)), np.uint8)
    for j, steps in enumerate(lists):
        out[0, steps, j] = 1
    return out


def test_matching_within_tolerance_is_optimal_and_hand_computed():
    ref = trains_from([[1, 2], [0, 5], [], [7]])
    tgt = trains_from([[2, 3], [0, 4, 6], [3], []])
    m0 = match_spikes(ref, tgt, 0)          # only (2, 2) and (0, 0)
    assert (m0.n_reference, m0.n_target, m0.matched) == (5, 6, 2)
    m1 = match_spikes(ref, tgt, 1)          # 1-2, 2-3 (greedy on exact 2-2 would get one); 0-0, 5-4 (or 5-6)
    assert m1.matched == 4
    assert m1.precision == pytest.approx(4 / 6) and m1.recall == pytest.approx(4 / 5)
    assert m1.f1 == pytest.approx(2 * 4 / 11) and m1.fraction == pytest.approx(4 / 6)
    assert match_spikes(ref, tgt, 2).matched == 4                      # 7 has no partner in neuron 3
    empty = match_spikes(np.zeros((2, 3, 1)), np.zeros((2, 3, 1)), 1)
    assert (empty.precision, empty.recall, empty.f1, empty.fraction) == (1.0, 1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="differ in shape"):
        match_spikes(ref, tgt[:, :4], 0)
    with pytest.raises(ValueError, match="tolerance k"):
        match_spikes(ref, tgt, -1)


def test_count_agreement_and_zscore_mse_by_hand():
    ref = trains_from([[1, 2], [0, 5], [], [7]])
    tgt = trains_from([[2, 3], [0, 4, 6], [3], []])
    agree, mae = count_agreement(ref, tgt)                  # counts 2,2,0,1 vs 2,3,1,0
    assert agree == 0.25 and mae == 0.75
    assert zscore_mse(np.array([[1, 2, 3]]), np.array([[3, 2, 1]])) == pytest.approx(8 / 3)
    # a constant map z-scores to zeros (std 0 -> 1): mse against [-1, 0, 1] is 2/3
    assert zscore_mse(np.array([[2, 2, 2]]), np.array([[0, 1, 2]])) == pytest.approx(2 / 3)


def tie_graph():
    """Two inputs of weight 0.5 reach v_th = 1 exactly (a spike under >=, none under >): a near-threshold case.
    Input 2 alone (weight 3) drives neuron 0 far above threshold."""
    w0 = np.array([[0.5, 0.5, 3.0], [0.2, 0.2, 0.0]])
    w1 = np.array([[1.0, 0.0]])
    return lif_chain([w0, w1], [LIF(2, leak=1.0), LIF(1, leak=1.0)])


def test_flips_are_classified_near_threshold_propagated_or_unexplained():
    g = tie_graph()
    x = np.zeros((2, 4, 3), np.uint8)
    x[0, 1, :2] = 1          # sample 0: V0 = 1.0 exactly at step 1 -> spike (>=)
    x[1, 2, 2] = 1           # sample 1: V0 = 3.0 at step 2 -> spike
    ref = simulate(g, x)
    assert ref.spikes[0][0, 1, 0] == 1 and ref.spikes[1][0, 1, 0] == 1 and ref.spikes[0][1, 2, 0] == 1
    flip = [s.copy() for s in ref.spikes]
    flip[0][0, 1, 0] = 0     # a target that misses the tie (as '>' would) ...
    flip[1][0, 1, 0] = 0     # ... and therefore the downstream spike
    rep = verify_steps(g, x, targets={"lava-float": steps_result("lava-float", flip, 0.0)})
    l0, l1 = rep.targets[0].layers
    assert l0.flips == {"near_threshold": 1, "propagated": 0, "unexplained": 0}
    assert l1.flips == {"near_threshold": 0, "propagated": 1, "unexplained": 0}
    assert l0.fraction[0] == pytest.approx(1 / 2) and l0.matched0_flips_aside == 1.0
    assert rep.passed, rep.summary()
    bad = [s.copy() for s in ref.spikes]
    bad[0][1, 2, 0] = 0      # dropping a spike with V = 3 v_th is no rounding flip
    rep = verify_steps(g, x, targets={"brian2-lif": steps_result("brian2-lif", bad, 0.0)})
    assert rep.targets[0].layers[0].flips["unexplained"] == 1
    assert not rep.passed
    failed = [g_ for g_ in rep.gates if not g_.passed]
    assert [(f.name, f.layer) for f in failed] == [("min_matched_0_steps", "layer0")]
    assert "FAIL min_matched_0_steps [layer0]" in rep.summary()


def shifted(trains: list[np.ndarray], by: int = 1) -> list[np.ndarray]:
    out = []
    for t in trains:
        s = np.zeros_like(t)
        s[:, by:] = t[:, :-by]
        out.append(s)
    return out


def roy_graph(seed: int = 0, n_in: int = 30, n_hid: int = 12):
    rng = np.random.default_rng(seed)
    return lif_chain([rng.uniform(-0.1, 0.25, (n_hid, n_in)), rng.uniform(-0.3, 0.6, (n_in, n_hid))],
                     [LIF(n_hid, 0.9, clamp=True), LIF(n_in, 0.9, clamp=True)])


def roy_inputs(seed: int = 1, n: int = 20, t: int = 15, n_in: int = 30):
    rng = np.random.default_rng(seed)
    img = rng.uniform(size=(n, n_in))
    return img, (rng.uniform(size=(n, t, n_in)) < 0.5 * img[:, None, :]).astype(np.uint8)


def test_fixed_gates_tolerate_one_step_and_fail_a_worse_reconstruction_and_a_cross_mismatch():
    # an autoencoder that reconstructs: identity weights, the output neuron fires on every second input spike
    g = lif_chain([np.eye(30), 0.7 * np.eye(30)], [LIF(30, 0.9, clamp=True), LIF(30, 0.9, clamp=True)])
    img, x = roy_inputs()
    ref = simulate(g, x).spikes
    late = shifted(ref)                                     # every spike one step late; step T-1's are lost
    silent = [np.zeros_like(t) for t in ref]
    rep = verify_steps(g, x, img, targets={"lava-fixed": steps_result("lava-fixed", late, 0.0),
                                           "hw_sim": steps_result("hw_sim", silent, 0.0)})
    lf, hw = rep.targets
    assert lf.kind == hw.kind == "fixed"
    for s, r in zip(lf.layers, ref):
        lost = int(r[:, -1].sum())
        assert s.matched[0] == int((r[:, 1:] & r[:, :-1]).sum())        # late spikes that hit a reference spike
        assert s.matched[1] == int(r.sum()) - lost and s.precision[1] == 1.0
        assert s.recall[1] == pytest.approx(1 - lost / r.sum())
    # a silent output z-scores to zeros: mse_image = mean(z(image)^2) = (n - 1) / n, far worse than the float model
    assert 0 < rep.reference_metrics["mse_image"] < 0.5 and hw.metrics["mse_image"] == pytest.approx(29 / 30)
    assert hw.metrics_rel["mse_image"] > 0.02
    names = {(t.target, ga.name, ga.passed) for t in rep.targets for ga in t.gates}
    assert ("hw_sim", "max_mse_image_worse", False) in names and ("hw_sim", "min_matched_1_step", False) in names
    assert rep.cross_gates[0].name == "lava-fixed = hw_sim" and not rep.cross_gates[0].passed
    assert not rep.passed
    same = verify_steps(g, x, img, targets={"lava-fixed": steps_result("lava-fixed", ref, 0.0),
                                            "hw_sim": steps_result("hw_sim", ref, 0.0)})
    assert same.passed and same.cross_gates[0].passed and same.targets[0].metrics_rel["spike_mse"] == 0.0


def test_float_vs_brian2_lif_end_to_end_passes_and_reports(tmp_path):
    g = roy_graph(seed=2)
    img, x = roy_inputs(seed=3)
    rep = verify_steps(g, x, img.reshape(20, 5, 6), targets=["float", Brian2LifTarget(codegen="numpy")])
    assert [t.target for t in rep.targets] == ["float", "brian2-lif"] and rep.passed, rep.summary()
    b2 = rep.targets[1]
    assert all(s.fraction[0] == 1.0 and s.n_reference > 50 for s in b2.layers)
    assert b2.metrics == rep.reference_metrics and set(b2.metrics) == {"mse_image", "spike_mse"}
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["passed"] is True and d["targets"][1]["layers"][0]["matched"]["0"] == b2.layers[0].n_reference
    assert d["targets"][1]["info"]["codegen"] == "numpy"
    assert "verdict: PASS" in rep.summary()
    paths = write_steps_report(rep, tmp_path / "v")
    assert json.loads(paths[0].read_text())["passed"] is True and "verdict: PASS" in paths[1].read_text()
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == ["steps_report.json", "steps_summary.txt"]
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="existing file"):
        write_steps_report(rep, tmp_path / "f")


def test_bad_verifier_inputs_are_refused_by_name():
    g = roy_graph()
    img, x = roy_inputs()
    with pytest.raises(DataError, match="do not fit"):
        verify_steps(g, x, img[:, :5], targets=["float"])
    with pytest.raises(TargetError, match="tolerance"):
        verify_steps(g, x, targets=["float"], tolerance=0)
    with pytest.raises(TargetError, match="expected"):
        verify_steps(g, x, targets={"hw_sim": steps_result("hw_sim", [t[:, :3] for t in simulate(g, x).spikes], 0)})
    with pytest.raises(TargetError, match="unknown target"):
        verify_steps(g, x, targets=["nope"])
    assert target_kind("lava-fixed") == "fixed" and target_kind("hw_sim") == "fixed"
    assert target_kind("lava-float") == "float" and target_kind("brian2-lif") == "float"


def test_a_steps_graph_loaded_from_an_onnx_v2_artifact_verifies_on_brian2_lif(tmp_path):
    from toolchain.artifact_graph import load_graph, save_graph

    g = roy_graph(seed=4)
    save_graph(g, tmp_path / "lif.onnx")
    loaded = load_graph(tmp_path / "lif.onnx")
    img, x = roy_inputs(seed=5, n=8)
    rep = verify_steps(loaded, x, img, targets=["brian2-lif"])
    assert rep.passed and rep.targets[0].layers[1].n_reference > 0, rep.summary()
    np.testing.assert_array_equal(simulate(g, x).spikes[1], simulate(loaded, x).spikes[1])
