"""Deployment of the audio-to-image model: one LIF graph (same spikes as the audiocoder's forward pass), the
resource model's DRC error for the paper's front end with its fix, and hw_sim-lif verification of a small one."""
from __future__ import annotations

import numpy as np
import pytest

from models.audio_deploy import check_deployable, chip_resources, joint_graph
from models.audio_model import AudioCoder, run_clip
from toolchain.errors import DRCError


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


def test_paper_front_end_is_refused_with_the_fix():
    with pytest.raises(DRCError, match=r"fan-in of 58500 axons.*exceeds.*4096.*--decimation 80 --frames 120"):
        check_deployable(58_500, 2048)
    rep, chips = chip_resources(58_500, 2048)
    assert rep.cores == 1030 and chips == 9 and len(rep.violations) == 2
    rep, chips = chip_resources(3840, 512)
    assert not rep.violations and chips == 1
    check_deployable(3840, 512)


def test_small_front_end_verifies_on_hw_sim():
    from models.audio_deploy import deploy_check
    from models.cochleagram import FeatureSet, FeatureSpec

    ac = _coder()
    rng = np.random.default_rng(2)
    vals = rng.random((10 * 3, 32)).astype(np.float16)
    fs = FeatureSet(FeatureSpec(8000, 3), vals, np.arange(0, 31, 3), np.arange(10), np.array(["x"] * 10),
                    np.zeros(10, np.int64))
    rep, cs = deploy_check(ac, fs, n_clips=6, targets=("hw_sim-lif",), calibration_clips=4)
    assert [t.target for t in rep.targets] == ["hw_sim-lif"]
    assert rep.passed, rep
