"""The paper-figure commands (``snnc experiments fig4 ... fig11``, ``snnc report experiments``) end to end on the
bundled data with tiny settings: real sweeps train the models (1 epoch, 40 images), the figures are computed from
them, and the files and numbers are checked for sanity (and against independent computations where one exists)."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from toolchain.cli import main

TINY = ["--epochs", "1", "--limit-train", "40", "--limit-eval", "30", "--workers", "1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One models folder shared by the tests (each command trains only what it misses)."""
    return tmp_path_factory.mktemp("paper-runs")


def _fig(fig, runs, out, *extra) -> int:
    return main(["experiments", fig, *TINY, "--runs", str(runs), "--out", str(out), *extra])


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _outputs_ok(out, stem, pngs=None):
    for p in pngs or [stem]:
        assert (out / f"{p}.png").read_bytes()[:4] == b"\x89PNG"
    md = (out / f"{stem}.md").read_text()
    assert "Paper's claim" in md and "Ours" in md
    assert not list(out.glob(".snnc-tmp-*"))
    return md


def test_fig4_reconstructions_per_noise(runs, tmp_path, capsys):
    out = tmp_path / "f4"
    assert _fig("fig4", runs, out, "--noise", "0,0.6", "--index", "3") == 0
    _outputs_ok(out, "fig4")
    rows = _rows(out / "fig4.csv")
    assert [float(r["noise"]) for r in rows] == [0.0, 0.6]
    for r in rows:
        assert r["digit_index"] == "3" and r["n_test"] == "30"
        assert 0 < float(r["test_mse"]) < 10 and 0 < float(r["digit_mse"]) < 10
    # at noise 0 (no random draw) the figure's test MSE is the trainer's own score of the same model and images
    trial = runs / "trials" / rows[0]["trial"]
    assert float(rows[0]["test_mse"]) == pytest.approx(json.loads((trial / "metrics.json").read_text())["test_mse"],
                                                      rel=1e-5)
    assert "fig4.md" in capsys.readouterr().out
    # a bad index is refused with a message, before anything is written
    assert _fig("fig4", runs, tmp_path / "bad", "--noise", "0", "--index", "999") == 2
    assert "--index" in capsys.readouterr().err and not (tmp_path / "bad" / "fig4.md").exists()


def test_fig5_tsne_per_noise_and_hidden(runs, tmp_path):
    out = tmp_path / "f5"
    assert _fig("fig5", runs, out, "--noise", "0,0.6", "--hidden", "32", "--points", "30") == 0
    _outputs_ok(out, "fig5")
    rows = _rows(out / "fig5.csv")
    assert {(float(r["noise"]), int(r["hidden"])) for r in rows} == {(0.0, 32), (0.6, 32)}
    for r in rows:
        assert r["perplexity"] == "20" and r["n_points"] == "30"
        for k in ("silhouette_tsne", "silhouette_embedding"):
            assert r[k] == "" or -1 <= float(r[k]) <= 1
        assert 0 <= float(r["hidden_spike_fraction"]) <= 1


def test_fig5_tsne_refuses_too_few_points():
    from experiments.fig5 import tsne_2d
    from toolchain.errors import SnncError

    with pytest.raises(SnncError, match="perplexity"):
        tsne_2d(np.random.default_rng(0).normal(size=(10, 4)), 0)
    assert tsne_2d(np.ones((30, 4)), 0) is None  # identical embeddings: no t-SNE (sklearn would crash)


def test_fig6_interpolation_decodes_through_the_decoder_layer(runs, tmp_path):
    out = tmp_path / "f6"
    assert _fig("fig6", runs, out, "--steps", "3") == 0
    md = _outputs_ok(out, "fig6")
    rows = _rows(out / "fig6.csv")
    assert len(rows) == 2 * 2 * 9 and {r["dataset"] for r in rows} == {"mnist", "fashion-mnist"}
    assert all(float(r["nearest_train_mse"]) >= 0 and 0 <= float(r["mean_intensity"]) <= 1 for r in rows)
    assert "inner_over_corner" in md
    # the decoder alone, fed the hidden spike times of an image, gives the whole network's reconstruction
    from experiments.paper_common import load_snn, load_split, snn_decode, snn_layers
    from models.encoding import decode

    net = load_snn(runs / "trials" / rows[0]["trial"])
    imgs = load_split("mnist", "test", 8).images.astype(np.float64)
    _, hid, t_out = snn_layers(net, imgs, 0, noise=0.0)
    np.testing.assert_array_equal(snn_decode(net, hid), decode(t_out, net.latency))
    # pixel-space corners are the test images themselves
    from experiments.fig6 import bilinear

    c = np.arange(16.0).reshape(4, 4)
    g = bilinear(c, 3)
    np.testing.assert_array_equal(g[[0, 2, 6, 8]], c)
    np.testing.assert_allclose(g[4], c.mean(axis=0))


def test_fig7_svm_on_embeddings_and_raw_images(runs, tmp_path):
    out = tmp_path / "f7"
    assert _fig("fig7", runs, out, "--noise", "0.6", "--hidden", "32", "--svm-train", "100") == 0
    md = _outputs_ok(out, "fig7")
    rows = _rows(out / "fig7.csv")
    assert sorted(r["model"] for r in rows) == ["ann", "raw", "snn"]
    for r in rows:
        assert 0 <= float(r["accuracy"]) <= 1 and r["n_svm_train"] == "100" and r["n_test"] == "30"
    import re

    assert re.search(r"at noise >= 0.6, [0-2]/2 \(model, hidden >= 16, noise\) conditions", md)  # snn, ann x h32
    from experiments.fig7 import svm_accuracy

    x = np.repeat(np.eye(3), 10, axis=0) + 0.01 * np.random.default_rng(0).normal(size=(30, 3))
    y = np.repeat(np.arange(3), 10)
    assert svm_accuracy(x, y, x, y) == 1.0


def test_fig8_10_latency_1_vs_16(runs, tmp_path):
    out = tmp_path / "f8"
    assert _fig("fig8-10", runs, out) == 0
    _outputs_ok(out, "fig8_10", pngs=["fig8", "fig9", "fig10"])
    rows = _rows(out / "fig8_10.csv")
    val = {(float(r["latency"]), r["quantity"]): r["value"] for r in rows}
    from experiments.fig8_10 import fig8_10_spec
    from experiments.paper_common import TrainSettings, load_snn, require

    for lat in (1.0, 16.0):
        net = load_snn(require(runs, fig8_10_spec(TrainSettings(1, 40, 30)), {
            "trainer": "temporal", "dataset": "mnist", "noise": 0.0, "hidden": 32, "latency": lat}))
        assert net.latency == lat
        assert float(val[(lat, "encoder_pulse_mean_time")]) == pytest.approx(net.layers[0].pulse_times.mean(),
                                                                              rel=1e-5)
        assert float(val[(lat, "decoder_regular_weight_mean")]) == pytest.approx(net.layers[1].weights.mean(),
                                                                                  rel=1e-5, abs=1e-9)
        # Fig. 9's potential, evaluated at the exact model's output spike, is at the threshold
        if val[(lat, "output_spike_time")]:
            assert float(val[(lat, "potential_at_spike")]) == pytest.approx(net.theta, rel=1e-4)
        assert 0 <= float(val[(lat, "hidden_spike_fraction")]) <= 1


def test_fig11_inverted_images_and_report(runs, tmp_path, capsys):
    out = tmp_path / "figs" / "f11"
    assert _fig("fig11", runs, out, "--noise", "0") == 0
    md = _outputs_ok(out, "fig11")
    rows = _rows(out / "fig11.csv")
    models = {r["model"] for r in rows}
    assert {"snn", "ann relu-sigmoid", "ann gauss-gauss"} <= models
    assert all(0 < float(r["test_mse"]) < 10 for r in rows)
    cached = list((runs / "extra").glob("ann-gauss-*/metrics.json"))
    assert len(cached) == 1
    # a re-run without workers reuses every model (the Gaussian ANN from its cache) and writes the same table
    (out / "fig11.md").unlink()
    assert main(["experiments", "fig11", *TINY[:-2], "--workers", "0", "--noise", "0", "--runs", str(runs),
                 "--out", str(out)]) == 0
    assert (out / "fig11.md").read_text() == md
    # models missing and no workers: a clear error, exit 2
    capsys.readouterr()
    assert main(["experiments", "fig11", *TINY[:-2], "--workers", "0", "--noise", "0.2", "--runs", str(runs),
                 "--out", str(out)]) == 2
    assert "no finished model" in capsys.readouterr().err
    # the report collects every figure below a folder
    f4 = tmp_path / "figs" / "f4"
    assert _fig("fig4", runs, f4, "--noise", "0") == 0
    assert main(["report", "experiments", str(tmp_path / "figs")]) == 0
    rep = (tmp_path / "figs" / "report.md").read_text()
    assert rep.index("Fig. 4") < rep.index("Fig. 11") and "](f4/fig4.png)" in rep and "](f11/fig11.png)" in rep
    page = (tmp_path / "figs" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "<table>" in page
    assert main(["report", "experiments", str(tmp_path / "nothing-here")]) == 2
