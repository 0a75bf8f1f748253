"""`snnc compile | run | verify | deploy` on steps (LIF) models, through the CLI entry point (toolchain/cli_steps.py).

A random 784-20-784 LIF autoencoder saved as a format-2 artifact (toolchain.artifact_graph.save_graph) with the
metadata a rate model records (dataset, encoding, p_scale, steps); bundled MNIST images, a few samples, T = 10.
"""
from __future__ import annotations

import json

import brian2  # noqa: F401  (imported at collection: Brian2's log handler must not bind to a per-test capsys stream)
import numpy as np
import pytest

from models.datasets import load_dataset
from models.rate_encoding import bernoulli_encode
from toolchain.artifact_graph import save_graph
from toolchain.cli import main
from toolchain.compiled_steps_io import load_compiled_steps
from toolchain.ir import LIF, lif_chain

META = {"dataset": "mnist", "encoding": "bernoulli", "p_scale": 0.3, "steps": 10, "family": "rate-lif"}


def lif_graph(seed: int = 0, w0=(-0.1, 0.15), meta: dict | None = None):
    rng = np.random.default_rng(seed)
    return lif_chain([rng.uniform(*w0, (20, 784)), rng.uniform(-0.3, 0.4, (784, 20))],
                     [LIF(20, 0.9, clamp=True), LIF(784, 0.9, clamp=True)], META if meta is None else meta)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("steps-cli") / "lif.onnx"
    save_graph(lif_graph(), path)
    return path


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_compile_writes_compiled_steps_and_prints_the_summary(model, tmp_path, capsys):
    out_file = tmp_path / "c.npz"
    rc, out, err = run_cli(capsys, "compile", model, "--out", out_file, "--threshold", "layer")
    assert rc == 0, err
    assert "steps network 784-20-784, T<=10 steps" in out and "thresholds per layer" in out
    assert "layer0" in out and "layer1" in out and "dv" in out and "410" in out  # leak 0.9 -> dv 410
    cs = load_compiled_steps(out_file)
    assert cs.max_steps == 10 and [cl.n_out for cl in cs.layers] == [20, 784]
    assert all(cl.vth.min() == cl.vth.max() for cl in cs.layers)  # one threshold per layer
    assert cs.manifest["source_metadata"]["p_scale"] == 0.3
    # --time-steps overrides the recorded T
    rc, out, err = run_cli(capsys, "compile", model, "--out", tmp_path / "c40.npz", "--time-steps", 40)
    assert rc == 0 and load_compiled_steps(tmp_path / "c40.npz").max_steps == 40


def test_run_encodes_the_dataset_with_the_models_p_scale_and_seed_and_same_names_reach_lava_and_hw_sim(
        model, tmp_path, capsys):
    from targets.registry import get_target

    comp = tmp_path / "c.npz"
    assert run_cli(capsys, "compile", model, "--out", comp)[0] == 0
    trains = {}
    for name in ("hw_sim", "lava-fixed"):
        out_file = tmp_path / f"{name}.npz"
        rc, out, err = run_cli(capsys, "run", comp, "--target", name, "--limit", 4, "--seed", 7, "--out", out_file)
        assert rc == 0, err
        assert "mse_image" in out and "spike_mse" in out
        with np.load(out_file, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            trains[name] = [z[f"layer{k}.trains"] for k in range(2)]
            x = z["input.trains"]
        assert meta["target"] == {"hw_sim": "hw_sim-lif", "lava-fixed": "lava-fixed-lif"}[name]
        assert meta["steps"] == 10 and meta["p_scale"] == 0.3 and meta["seed"] == 7
    images = load_dataset("mnist", "test", limit=4).images.reshape(4, -1)
    np.testing.assert_array_equal(x, bernoulli_encode(images, 10, 0.3, np.random.default_rng(7)))
    ref = get_target("hw_sim-lif").run(load_compiled_steps(comp), x).trains
    for k in range(2):
        np.testing.assert_array_equal(trains["hw_sim"][k], ref[k])
        np.testing.assert_array_equal(trains["lava-fixed"][k], trains["hw_sim"][k])   # bit for bit
    assert trains["hw_sim"][1].sum() > 0


def test_verify_maps_alpha_names_passes_and_writes_the_report_folder(model, tmp_path, capsys):
    out_dir = tmp_path / "rep"
    rc, out, err = run_cli(capsys, "verify", model, "--targets", "hw_sim,exact,brian2", "--limit", 5,
                           "-o", "hw_sim.threads=1", "--out", out_dir)
    assert rc == 0, out + err
    assert "verdict: PASS" in out and "hw_sim-lif" in out and "brian2-lif" in out
    rep = json.loads((out_dir / "report.json").read_text())
    assert rep["family"] == "steps" and rep["passed"] is True
    assert rep["targets"] == ["hw_sim-lif", "float", "brian2-lif"]
    assert rep["context"]["samples"] == 5 and rep["context"]["steps"] == 10
    v = rep["verification"]
    assert v["reference_metrics"]["mse_image"] > 0
    by = {t["target"]: t for t in v["targets"]}
    assert by["brian2-lif"]["layers"][1]["fraction"]["0"] == 1.0     # brian2 = float model, spike for spike
    assert by["hw_sim-lif"]["info"]["threads"] == 1                   # -o hw_sim.* reached hw_sim-lif
    for f in ("steps_report.json", "steps_summary.txt", "report.md"):
        assert (out_dir / f).is_file()
    assert "| hw_sim-lif | fixed | PASS |" in (out_dir / "report.md").read_text()


def test_verify_exits_1_when_quantization_breaks_a_gate(tmp_path, capsys):
    """Each hidden neuron has one large weight (on pixel 0, never lit in MNIST) and many small ones that the 8-bit
    mantissa rounds to zero (one weight block: the default second block of residuals would resolve them): the
    float model's hidden layer spikes, the fixed-point one hardly does."""
    g = lif_graph()
    w0 = np.full((20, 784), 0.012)
    w0[:, 0] = 4.0
    g = lif_chain([w0, g.nodes["fc1"].weight], [LIF(20, 0.9, clamp=True), LIF(784, 0.9, clamp=True)], META)
    save_graph(g, tmp_path / "bad.onnx")
    out_dir = tmp_path / "rep"
    rc, out, err = run_cli(capsys, "verify", tmp_path / "bad.onnx", "--targets", "hw_sim", "--limit", 3,
                           "--out", out_dir, "--quiet", "--weight-blocks", "1")
    assert rc == 1, out + err
    assert "verdict: FAIL" in out and "gate failed: hw_sim-lif: min_matched_1_step [layer0]" in out
    assert json.loads((out_dir / "report.json").read_text())["passed"] is False


def test_deploy_lava_fixed_writes_compiled_and_report(model, tmp_path, capsys):
    out_dir = tmp_path / "dep"
    rc, out, err = run_cli(capsys, "deploy", model, "--target", "lava-fixed", "--limit", 3, "--out", out_dir)
    assert rc == 0, out + err
    assert "steps network 784-20-784" in out and "lava-fixed-lif (fixed" in out and "verdict: PASS" in out
    assert load_compiled_steps(out_dir / "compiled.npz").max_steps == 10
    assert json.loads((out_dir / "report.json").read_text())["passed"] is True
    # deploying the compiled file needs no compile step and writes no compiled.npz
    out2 = tmp_path / "dep2"
    rc, out, err = run_cli(capsys, "deploy", out_dir / "compiled.npz", "--target", "float", "--limit", 2,
                           "--out", out2)
    assert rc == 0, out + err
    assert not (out2 / "compiled.npz").exists() and (out2 / "report.json").is_file()


@pytest.mark.parametrize("argv, words", [
    (["verify", "{m}", "--targets", "hil"], ["'hil' cannot run steps"]),
    (["verify", "{m}", "--targets", "nope"], ["'nope' cannot run steps"]),
    (["deploy", "{m}", "--target", "hw_sim,brian2"], ["takes one target"]),
    (["verify", "{m}", "--targets", "hw_sim", "--steps-per-unit", "8"], ["--steps-per-unit", "alpha"]),
    (["verify", "{m}", "--targets", "hw_sim", "--noise", "0.1"], ["--noise", "alpha"]),
    (["verify", "{m}", "--targets", "brian2", "--brian2-dt", "0.01"], ["--brian2-dt"]),
    (["verify", "{m}", "--targets", "hw_sim", "--limit", "0"], ["--limit"]),
    (["verify", "{m}", "--targets", "hw_sim", "--p-scale", "1.5"], ["--p-scale", "(0, 1]"]),
    (["verify", "{m}", "--targets", "hw_sim", "-o", "hw_sim.bogus=1"], ["bogus"]),
    (["run", "{m}", "--target", "hw_sim"], ["ONNX model", "snnc compile"]),
    (["run", "{c}", "--target", "hw_sim", "--time-steps", "11"], ["exceed the 10 steps", "--time-steps"]),
    (["verify", "{c}", "--targets", "hw_sim", "--weight-bits", "9"], ["already compiled", "--weight-bits"]),
    (["verify", "{nometa}", "--targets", "hw_sim"], ["--dataset"]),
    (["compile", "{nometa}"], ["--time-steps"]),
    (["verify", "{m}", "--targets", "hw_sim", "--range-margin", "0.2"], ["--range-margin", "--range calibrated"]),
    (["verify", "{c}", "--targets", "hw_sim", "--range", "calibrated"], ["already compiled", "--range"]),
    (["verify", "{nometa}", "--targets", "hw_sim", "--range", "calibrated"], ["--calibration-dataset"]),
    (["verify", "{m}", "--targets", "hw_sim", "--range", "calibrated", "--range-margin", "-1"], ["range_margin"]),
])
def test_bad_steps_inputs_exit_2_before_anything_runs(model, tmp_path, capsys, argv, words):
    comp = tmp_path / "c.npz"
    assert run_cli(capsys, "compile", model, "--out", comp)[0] == 0
    nometa = tmp_path / "nometa.onnx"
    save_graph(lif_graph(meta={"p_scale": 0.3, "steps": 10} if "compile" not in argv else {}), nometa)
    out_dir = tmp_path / "out"
    args = [a.format(m=model, c=comp, nometa=nometa) for a in argv]
    if args[0] != "compile":
        args += ["--out", out_dir / "x.npz" if args[0] == "run" else out_dir]
        if "--limit" not in args:
            args += ["--limit", "2"]
    rc, out, err = run_cli(capsys, *args)
    assert rc == 2, out + err
    for w in words:
        assert w in err, err
    assert not out_dir.exists()


def test_steps_only_options_are_refused_for_alpha_models(tmp_path, capsys):
    from test_deploy_cli import autoencoder
    from toolchain.artifact import save_onnx

    save_onnx(autoencoder(), tmp_path / "a.onnx")
    rc, out, err = run_cli(capsys, "verify", tmp_path / "a.onnx", "--targets", "exact", "--dataset", "mnist",
                           "--limit", 2, "--p-scale", 0.3, "--out", tmp_path / "o")
    assert rc == 2 and "--p-scale" in err and "steps (LIF) models only" in err


def test_hw_sim_speed_benchmark_on_a_lif_model(model):
    """benchmarks/hw_sim_speed.py --model M.onnx (a steps graph): hw_sim-lif vs lava-fixed-lif, identical spikes."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "benchmarks/hw_sim_speed.py", "--model", str(model), "--samples", "20",
                           "--lava-samples", "3", "--threads", "1"], cwd=root, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["family"] == "steps" and out["identical"] is True and out["steps"] == 10
    assert out["lava_fixed_images"] == 3 and out["hw_sim_images"] == 20 and out["sizes"] == [784, 20, 784]
    assert out["ratio"] > 0 and out["lava_fixed_startup_s"] > 0 and out["spikes_per_image"][1] > 0


def test_range_calibrated_compiles_a_model_the_worst_case_refuses(tmp_path, capsys):
    """Weights ~10x Roy's init: every input spiking in every step overflows the 16-bit input even at the smallest
    scale, so the worst case refuses (naming --range calibrated); calibrated on 30 Bernoulli-coded training images
    it compiles, records its figures, and verifies on hw_sim through the CLI."""
    path = tmp_path / "wide.onnx"
    save_graph(lif_graph(w0=(-1.0, 1.2)), path)
    rc, out, err = run_cli(capsys, "compile", path, "--out", tmp_path / "w.npz")
    assert rc == 2 and "--range calibrated" in err and not (tmp_path / "w.npz").exists()
    rc, out, err = run_cli(capsys, "compile", path, "--out", tmp_path / "c.npz", "--range", "calibrated",
                           "--calibration-samples", "30", "--range-margin", "0.25")
    assert rc == 0, err
    assert "ranges: calibrated on 30 samples (mnist train[:30]" in out
    m = load_compiled_steps(tmp_path / "c.npz").manifest
    assert m["range_mode"] == "calibrated" and m["calibration"]["margin"] == 0.25
    assert all(e["calibrated"]["a_in"] <= 32767 < e["worst_case"]["a_in"] for e in m["layers"][:1])
    rc, out, err = run_cli(capsys, "verify", path, "--targets", "hw_sim", "--range", "calibrated",
                           "--calibration-samples", "30", "--limit", "5", "--out", tmp_path / "v")
    assert rc in (0, 1), err
    assert "hw_sim-lif" in out and (tmp_path / "v" / "report.json").exists()


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_verify_writes_raster_and_count_map_plots_listed_in_report_md(model, tmp_path, capsys):
    import matplotlib.image as mpimg

    out_dir = tmp_path / "plots"
    rc, out, err = run_cli(capsys, "verify", model, "--targets", "hw_sim,float", "--limit", 3, "--plot-sample", 1,
                           "-o", "hw_sim.threads=1", "--out", out_dir)
    assert rc == 0, out + err
    md = (out_dir / "report.md").read_text()
    rep = json.loads((out_dir / "report.json").read_text())
    assert rep["plots"] == ["raster.png", "count_maps.png"] and rep["context"]["plot_sample"] == 1
    assert "Plots (sample 1)" in md
    for f in ("raster.png", "count_maps.png"):
        data = (out_dir / f).read_bytes()
        assert data[:8] == PNG_MAGIC
        img = mpimg.imread(out_dir / f)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
        assert f"![{f}]({f})" in md
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plots"]   # no staging debris beside the folder


def test_steps_plot_failure_leaves_the_earlier_report_intact(model, tmp_path, capsys, monkeypatch):
    import toolchain.steps_plots as sp

    out_dir = tmp_path / "rep"
    rc, out, err = run_cli(capsys, "verify", model, "--targets", "hw_sim", "--limit", 2, "--out", out_dir)
    assert rc == 0, out + err
    before = {p.name: p.read_bytes() for p in out_dir.iterdir()}

    def broken(*a, **k):
        raise RuntimeError("plot failed")

    monkeypatch.setattr(sp, "plot_count_maps", broken)
    with pytest.raises(RuntimeError, match="plot failed"):
        main(["verify", str(model), "--targets", "hw_sim", "--limit", "3", "--out", str(out_dir)])
    assert {p.name: p.read_bytes() for p in out_dir.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


def test_plot_sample_outside_the_samples_exits_2_before_anything_is_written(model, tmp_path, capsys):
    rc, out, err = run_cli(capsys, "verify", model, "--targets", "hw_sim", "--limit", 3, "--plot-sample", 3,
                           "--out", tmp_path / "o")
    assert rc == 2 and "--plot-sample 3" in out + err and "0..2" in out + err
    assert not (tmp_path / "o").exists()


def test_count_maps_titles_carry_the_per_image_zscored_mse(tmp_path, monkeypatch):
    import matplotlib.axes

    from toolchain.spike_metrics import zscore_mse
    from toolchain.steps_plots import plot_count_maps

    rng = np.random.default_rng(0)
    img = rng.uniform(0, 1, (2, 16))
    trains = (rng.uniform(size=(2, 5, 16)) < 0.3).astype(np.uint8)
    titles = []
    orig = matplotlib.axes.Axes.set_title

    def record(self, label, *a, **k):
        titles.append(label)
        return orig(self, label, *a, **k)

    monkeypatch.setattr(matplotlib.axes.Axes, "set_title", record)
    assert plot_count_maps(tmp_path / "c.png", img, trains, {"t": trains[::-1]})
    counts = trains.sum(axis=1)
    assert f"z-MSE {zscore_mse(counts[:1], img[:1]):.3f}" in titles
    assert f"z-MSE {zscore_mse(counts[1:][::-1][:1], img[:1]):.3f}" in titles    # target row, sample 0
    assert (tmp_path / "c.png").read_bytes()[:8] == PNG_MAGIC
    assert not plot_count_maps(tmp_path / "d.png", img[:, :15], trains[:, :, :15], {})   # not square: skipped
    assert not (tmp_path / "d.png").exists()
