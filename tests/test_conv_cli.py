"""`snnc compile | run | verify | deploy` of a convolutional model (issue [F]) through the CLI entry point: a tiny
784 -> conv -> latent -> convT -> Readout autoencoder saved as a format-2 artifact, bundled MNIST, T = 10."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conv_nets import mnist_conv_autoencoder
from toolchain.artifact_graph import save_graph
from toolchain.cli import main
from toolchain.compiled_conv import CompiledConv
from toolchain.compiled_conv_io import load_compiled_any
from toolchain.ir import Graph, Readout


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("conv-cli") / "conv.onnx"
    save_graph(mnist_conv_autoencoder(np.random.default_rng(0)), path)
    return path


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_compile_run_verify(model, tmp_path, capsys):
    out = tmp_path / "conv.compiled.npz"
    rc, text, _ = run_cli(capsys, "compile", model, "--out", out)
    assert rc == 0 and "conv synapse on Lava Conv" in text and "conv_transpose synapse on Lava Sparse" in text
    cc = load_compiled_any(out)
    assert isinstance(cc, CompiledConv) and cc.manifest["source_metadata"]["p_scale"] == 0.5
    rc, text, _ = run_cli(capsys, "run", out, "--target", "hw_sim", "--limit", "3", "--out", tmp_path / "r.npz")
    assert rc == 0 and "mse_readout" in text
    with np.load(tmp_path / "r.npz") as z:
        assert z["layer3.potentials"].shape == (3, 10, 784) and z["layer0.trains"].shape == (3, 10, 288)
    rc, text, _ = run_cli(capsys, "verify", out, "--targets", "exact,hw_sim", "--limit", "3", "--out",
                          tmp_path / "v")
    rep = json.loads((tmp_path / "v" / "report.json").read_text())
    assert rc == 0 and rep["passed"], text
    assert "mse_readout" in rep["verification"]["reference_metrics"]


def test_deploy_on_lava_fixed(model, tmp_path, capsys):
    rc, text, _ = run_cli(capsys, "deploy", model, "--target", "lava-fixed", "--limit", "2", "--out", tmp_path / "d")
    assert rc == 0, text
    assert isinstance(load_compiled_any(tmp_path / "d" / "compiled.npz"), CompiledConv)
    rep = json.loads((tmp_path / "d" / "report.json").read_text())
    assert rep["passed"] and rep["verification"]["targets"][0]["info"]["mapping"] == ["Conv", "Dense", "Dense",
                                                                                        "Sparse"]


def test_bad_conv_models_refused_before_running(model, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "compile", model, "--range-margin", "0.2", "--out", tmp_path / "x.npz")
    assert rc == 2 and "--range calibrated" in err
    assert not list(tmp_path.iterdir())
    rc, text, _ = run_cli(capsys, "compile", model, "--range", "calibrated", "--calibration-samples", "3", "--out",
                          tmp_path / "cal.npz")
    assert rc == 0 and "ranges: calibrated on 3 samples" in text
    assert load_compiled_any(tmp_path / "cal.npz").manifest["range_mode"] == "calibrated"
    g = mnist_conv_autoencoder(np.random.default_rng(1))
    nodes = dict(g.nodes, latent=Readout(8, 0.9))
    bad = tmp_path / "readout-mid.onnx"
    save_graph(Graph(nodes, g.edges, "steps", g.metadata), bad)
    rc, _, err = run_cli(capsys, "verify", bad, "--targets", "hw_sim", "--limit", "2", "--out", tmp_path / "v")
    assert rc == 2 and "Readout 'latent' feeds further nodes" in err
    rc, _, err = run_cli(capsys, "verify", model, "--targets", "brian2,hw_sim", "--limit", "2", "--out", tmp_path / "v",
                         "-o", "brian2.max_synapses=1000")
    assert rc == 2 and "expands to up to" in err and "max_synapses=1,000" in err
    assert not (tmp_path / "v").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["cal.npz",
                                                                                          "readout-mid.onnx"]


def test_resources_of_a_conv_model(model, tmp_path, capsys):
    rc, text, _ = run_cli(capsys, "resources", model, "--samples", "2")
    assert rc == 0 and "shared kernels vs expanded synapses" in text and "energy per inference, hw_sim" in text
    rc, text, _ = run_cli(capsys, "resources", model, "--samples", "0", "--json")
    rep = json.loads(text)
    assert rep["resources"]["fits"] and rep["resources"]["cores"] >= 4
    assert rep["resources_expanded"]["synaptic_memory_bytes"] > rep["resources"]["synaptic_memory_bytes"]
