"""Deployment of the audio-to-image model: one LIF graph (same spikes as the audiocoder's forward pass), the
resource model's DRC error for the paper's front end with its fix, and hw_sim-lif verification of a small one."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from models.audio_deploy import check_deployable, chip_resources, joint_graph
from models.audio_model import AudioCoder, run_clip
from hw_sim.resources import LOIHI2
from toolchain.errors import DRCError, SnncError


def _coder(n_in=96, h=40, code=12, seed=0) -> AudioCoder:
    rng = np.random.default_rng(seed)
    meta = {"spec": {"rate": 8000, "frames": 3, "decimation": 10, "ear_q": 8, "step_factor": 0.5}, "steps": 12,
            "p_scale": 0.5, "pairing": "A"}
    return AudioCoder(rng.normal(0.08, 0.2, (n_in, h)).astype(np.float32),
                      rng.normal(0.1, 0.4, (code, h)).astype(np.float32), rng.normal(0.1, 0.5, (784, code)),
                      0.9, 1.0, meta)


def test_joint_graph_matches_audiocoder_forward():
    from toolchain.lif_reference import simulate

    ac = _coder()
    rng = np.random.default_rng(1)
    x = (rng.random((4, 12, 96)) < 0.3).astype(np.uint8)
    tr = simulate(joint_graph(ac), x)
    for n in range(4):
        code, img = run_clip(ac, [np.flatnonzero(x[n, t]) for t in range(12)])
        assert code.sum() > 0 and img.sum() > 0
        np.testing.assert_array_equal(tr.spikes[1][n], code)
        np.testing.assert_array_equal(tr.spikes[2][n].sum(axis=0), img)


def test_paper_front_end_needs_many_chips_and_is_refused_on_one_with_the_fix():
    with pytest.raises(DRCError, match=r"58500-2048-196.*needs 1938 neuro-cores = 16 chips.*15 relay groups.*"
                                       r"--chips 16.*--prune.*--decimation 80 --frames 120"):
        check_deployable(58_500, 2048)
    rep, assign = chip_resources(58_500, 2048)                   # 2 weight blocks (the compiler's default)
    assert rep.cores == 1938 and assign.chips == 16 and not rep.violations
    assert [lr.cores for lr in rep.layers] == [1928, 7, 3]       # fc0: 15 groups of relays + summing cores
    rep, assign = chip_resources(58_500, 2048, weight_blocks=1)
    assert rep.cores == 959 and assign.chips == 8
    assign = check_deployable(58_500, 2048, chips=16)
    assert assign.chips == 16 and assign.cores_per_chip[-1] == 1938 - 15 * 128
    # 90 % pruned, sparse storage (8-bit weight + a 12-bit axon index per non-zero synapse of a 3,900-input group)
    rep, assign = chip_resources(58_500, 2048, nonzero=(int(58_500 * 2048 * 2 * 0.1), None, None), storage="sparse")
    assert assign.chips == 4 and rep.cores == 494
    rep, assign = chip_resources(3840, 512)
    assert not rep.violations and assign.chips == 1 and rep.cores == 36      # both blocks in every layer: a bound
    check_deployable(3840, 512)


def _features(n_clips=10, seed=2):
    from models.cochleagram import FeatureSet, FeatureSpec

    rng = np.random.default_rng(seed)
    vals = rng.random((n_clips * 3, 32)).astype(np.float16)
    return FeatureSet(FeatureSpec(8000, 3), vals, np.arange(0, 3 * n_clips + 1, 3), np.arange(n_clips) % 10,
                      np.array(["x"] * n_clips), np.zeros(n_clips, np.int64))


def test_small_front_end_verifies_on_hw_sim():
    from models.audio_deploy import deploy_check

    dep = deploy_check(_coder(), _features(), n_clips=6, targets=("hw_sim-lif",), calibration_clips=4)
    rep = dep.report
    assert [t.target for t in rep.targets] == ["hw_sim-lif"] and dep.assign.chips == 1
    assert rep.passed, rep


TINY = dataclasses.replace(LOIHI2, name="tiny", neurons_per_core=16, max_fan_in_axons=64, max_fan_out_axons=256,
                           cores_per_chip=4)


def test_multi_chip_deployment_with_a_relay_split_fan_in_verifies_on_hw_sim():
    """A front end wider than the (tiny) chip's 64 input axons: compiled with 2 relay groups, placed on several
    chips, verified on hw_sim-lif; spikes cross chip boundaries; too few chips is refused naming the count."""
    from hw_sim.multichip import traffic_from_run
    from models.audio_deploy import deploy_check, isolated_layers
    from toolchain.lif_reference import simulate

    ac = _coder()
    with pytest.raises(DRCError, match=r"needs \d+ neuro-cores = (\d+) chips.*2 relay groups.*--chips"):
        deploy_check(ac, _features(), n_clips=4, chip=TINY, chips=1, calibration_clips=4)
    need = check_deployable(ac.n_in, ac.hidden, ac.n_code, chip=TINY, chips=99).chips
    assert need > 1
    dep = deploy_check(ac, _features(), n_clips=6, chip=TINY, chips=need, calibration_clips=4)
    assert dep.compiled.layers[0].fan_in_groups == 2 and dep.report.passed, dep.report
    run = dep.runs["hw_sim-lif"]
    tr = traffic_from_run(dep.compiled, dep.assign, dep.inputs, run.trains)
    assert tr.inter_chip_spikes > 0 and tr.inter_chip_payloads > 0
    ref = simulate(joint_graph(ac), dep.inputs).spikes
    alone = isolated_layers(dep.compiled, dep.inputs, ref)
    assert [d["layer"] for d in alone] == [cl.name for cl in dep.compiled.layers]
    assert all(d["matched_1"] > 0.9 for d in alone)


def test_pruning_zeroes_the_smallest_weights_and_sparse_storage_saves_cores():
    from models.audio_deploy import deploy_check, prune_audiocoder

    ac = _coder()
    pr = prune_audiocoder(ac, 0.8)
    assert np.count_nonzero(pr.w1t) == pytest.approx(0.2 * ac.w1t.size, abs=1)
    assert np.count_nonzero(pr.w2) == pytest.approx(0.2 * ac.w2.size, abs=1)
    np.testing.assert_array_equal(pr.dec_w, ac.dec_w)
    kept = pr.w1t != 0
    assert np.abs(ac.w1t[kept]).min() >= np.abs(ac.w1t[~kept]).max()
    np.testing.assert_array_equal(pr.w1t[kept], ac.w1t[kept])
    assert prune_audiocoder(ac, 0.5, ("decoder",)).meta["pruned"] == {"fraction": 0.5, "layers": ["decoder"]}
    with pytest.raises(SnncError, match="--prune 1.0 must be a fraction"):
        prune_audiocoder(ac, 1.0)
    with pytest.raises(SnncError, match="cannot prune layer"):
        prune_audiocoder(ac, 0.5, ("fc9",))
    nz = lambda a: tuple(int(np.count_nonzero(w)) * 2 for w in (a.w1t, a.w2, a.dec_w))  # noqa: E731
    mem = dataclasses.replace(TINY, synaptic_memory_bits=2048)     # memory binds: 2 x 48 x 8 bits per relay row
    dense, _ = chip_resources(ac.n_in, ac.hidden, ac.n_code, chip=mem, storage="shared")
    sparse, _ = chip_resources(ac.n_in, ac.hidden, ac.n_code, chip=mem, nonzero=nz(pr), storage="sparse")
    assert sparse.layers[0].cores < dense.layers[0].cores
    dep = deploy_check(pr, _features(), n_clips=6, calibration_clips=4, storage="sparse")
    assert dep.report.passed, dep.report


def test_cli_refuses_bad_prune_and_chips_before_reading_features(tmp_path, capsys):
    from models.audio_model import save_audiocoder
    from toolchain.cli import main

    save_audiocoder(_coder(), tmp_path / "audiocoder.npz")
    for extra, words in ((["--prune", "1.5"], "--prune 1.5 must be a fraction"),
                         (["--chips", "0"], "--chips must be >= 1"),
                         (["--prune", "0.5", "--prune-layers", "fc7"], "cannot prune layer")):
        assert main(["audio-deploy", str(tmp_path), "--data-dir", str(tmp_path / "nowhere"), *extra]) == 2
        assert words in capsys.readouterr().err
