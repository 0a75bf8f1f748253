"""`snnc eval` through toolchain.cli.main: temporal ONNX models (exact forward) and ANN checkpoints."""
from __future__ import annotations

import json
import math

import numpy as np
import onnx
import pytest

from models.ann import resolve_config, train_ann
from models.datasets import load_dataset
from models.encoding import latency_encode, reconstruction_mse
from models.exact import exact_forward
from models.network import AlphaLayer, TemporalNetwork
from toolchain.artifact import save_onnx, to_model_proto
from toolchain.cli import main
from toolchain.errors import SnncError

DELAY = 0.1  # time units


def _identity_net(n: int = 784, extra_layer: bool = False) -> TemporalNetwork:
    """Each output neuron fires exactly DELAY after its own input pixel: a perfect latency-DELAY autoencoder."""
    w, tau = 2.0, 1.0
    theta = w * DELAY * math.exp(-tau * DELAY)
    layer = AlphaLayer(w * np.eye(n), np.zeros(0), np.zeros((n, 0)))
    layers = (layer, layer) if extra_layer else (layer,)
    return TemporalNetwork(layers, tau=tau, theta=theta, latency=DELAY * len(layers), metadata={"note": "identity"})


@pytest.fixture(autouse=True)
def _bundled(monkeypatch):
    monkeypatch.delenv("SNNC_DATA", raising=False)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def test_eval_temporal_identity_is_perfect(tmp_path, capsys):
    model = tmp_path / "model.onnx"
    save_onnx(_identity_net(), model)
    png, js = tmp_path / "rec.png", tmp_path / "m.json"
    rc = main(["eval", str(model), "--dataset", "mnist", "--limit", "40", "--png", str(png), "--json", str(js)])
    out = capsys.readouterr().out
    assert rc == 0, out
    res = json.loads(js.read_text())
    assert res["mse"] < 1e-20 and res["n_images"] == 40 and res["kind"] == "temporal"
    assert f"test MSE per pixel: {res['mse']:.6f}" in out and str(png) in out
    assert png.read_bytes()[:4] == b"\x89PNG"
    # with input noise the same model is scored against the clean image: the MSE equals the reference computation
    rc = main(["eval", str(tmp_path), "--dataset", "fashion-mnist", "--limit", "30", "--noise", "0.3",
               "--seed", "5", "--json", str(js)])
    assert rc == 0
    res = json.loads(js.read_text())
    images = load_dataset("fashion-mnist", "test", limit=30).images.astype(np.float64)
    times = latency_encode(images, noise=0.3, noise_mean=1.0, rng=np.random.default_rng(5))
    expected = reconstruction_mse(exact_forward(_identity_net(), times)[-1], images, DELAY)
    assert res["mse"] == pytest.approx(expected, rel=1e-12) and res["mse"] > 1e-3
    assert (tmp_path / "model_eval_fashion-mnist_test.png").exists()  # default PNG beside the model


def test_eval_ann_checkpoint(tmp_path, capsys):
    cfg = resolve_config(hidden=8, epochs=1, batch_size=32, lr=1e-2)
    res = train_ann(cfg, limit=128, eval_limit=50, out=tmp_path / "ann", log=lambda s: None)
    js = tmp_path / "m.json"
    rc = main(["eval", str(tmp_path / "ann"), "--dataset", "mnist", "--limit", "50", "--seed", "2",
               "--json", str(js), "--png", str(tmp_path / "a.png")])
    assert rc == 0
    ev = json.loads(js.read_text())
    assert ev["kind"] == "ann" and ev["mse"] == pytest.approx(res["test_mse"], rel=1e-6)
    assert "test MSE per pixel" in capsys.readouterr().out


def test_eval_errors_are_clear(tmp_path, capsys):
    small = TemporalNetwork((AlphaLayer(np.ones((5, 100)), np.array([0.5]), np.ones((5, 1))),),
                            tau=1.0, theta=1.0, latency=1.0)
    save_onnx(small, tmp_path / "small.onnx")
    assert main(["eval", str(tmp_path / "small.onnx"), "--dataset", "mnist", "--limit", "5"]) == 2
    err = capsys.readouterr().err
    assert "100-5" in err and "784 inputs" in err
    assert main(["eval", str(tmp_path / "missing.onnx"), "--dataset", "mnist"]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "junk.onnx").write_bytes(b"\x00garbage")
    assert main(["eval", str(tmp_path / "junk.onnx"), "--dataset", "mnist"]) == 2
    assert "not a readable ONNX file" in capsys.readouterr().err
    assert main(["eval", str(tmp_path), "--dataset", "mnist"]) == 2
    assert "neither model.onnx nor ann.pt" in capsys.readouterr().err
    save_onnx(_identity_net(), tmp_path / "model.onnx")
    assert main(["eval", str(tmp_path / "model.onnx"), "--dataset", "mnist", "--noise", "-1"]) == 2
    assert "--noise" in capsys.readouterr().err


def test_eval_defaults_to_the_training_noise(tmp_path):
    net = _identity_net()
    trained = TemporalNetwork(net.layers, net.tau, net.theta, net.latency,
                              metadata={"hyperparameters": {"noise": 0.2}, "noise_mean": 0.0})
    save_onnx(trained, tmp_path / "model.onnx")
    js = tmp_path / "m.json"
    assert main(["eval", str(tmp_path), "--dataset", "mnist", "--limit", "10", "--json", str(js)]) == 0
    res = json.loads(js.read_text())
    assert (res["noise"], res["noise_mean"]) == (0.2, 0.0) and res["mse"] > 1e-4
    assert main(["eval", str(tmp_path), "--dataset", "mnist", "--limit", "10", "--noise", "0",
                 "--json", str(js)]) == 0
    assert json.loads(js.read_text())["mse"] < 1e-20


def test_eval_checks_every_output_path_before_work_and_writes_none_on_failure(tmp_path, capsys):
    save_onnx(_identity_net(), tmp_path / "model.onnx")
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    png = tmp_path / "rec.png"
    cases = [(["--png", str(png), "--json", str(blocker / "m.json")], "--json"),  # folder cannot be created
             (["--png", str(png), "--json", str(tmp_path)], "is a folder"),
             (["--png", str(blocker / "x" / "r.png")], "--png"),
             (["--png", str(png), "--json", str(png)], "different files")]
    for extra, words in cases:
        assert main(["eval", str(tmp_path / "model.onnx"), "--dataset", "mnist", "--limit", "5", *extra]) == 2
        assert words in capsys.readouterr().err
        assert not png.exists() and not (tmp_path / "model_eval_mnist_test.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "model.onnx"]  # no debris, no temp files


def test_eval_dataset_defaults_to_the_models_metadata(tmp_path, capsys):
    net = _identity_net()
    save_onnx(TemporalNetwork(net.layers, net.tau, net.theta, net.latency, metadata={"dataset": "fashion-mnist"}),
              tmp_path / "model.onnx")
    js = tmp_path / "m.json"
    assert main(["eval", str(tmp_path), "--limit", "5", "--json", str(js)]) == 0
    assert json.loads(js.read_text())["dataset"] == "fashion-mnist"
    assert "fashion-mnist test" in capsys.readouterr().out
    save_onnx(net, tmp_path / "plain.onnx")  # records no dataset: the error says to pass one
    assert main(["eval", str(tmp_path / "plain.onnx"), "--limit", "5"]) == 2
    assert "pass --dataset" in capsys.readouterr().err
    cfg = resolve_config(hidden=4, epochs=1, batch_size=32, lr=1e-2, dataset="fashion-mnist")
    train_ann(cfg, limit=64, eval_limit=20, out=tmp_path / "ann", log=lambda s: None)
    assert main(["eval", str(tmp_path / "ann"), "--limit", "5", "--json", str(js)]) == 0
    assert json.loads(js.read_text())["dataset"] == "fashion-mnist"


def test_eval_loads_temporal_models_through_the_validating_loader(tmp_path, monkeypatch):
    """eval reads ONNX only through toolchain.artifact.load_onnx, so it refuses what that loader refuses."""
    import toolchain.artifact as artifact

    save_onnx(_identity_net(), tmp_path / "model.onnx")
    real, seen = artifact.load_onnx, []

    def recording(path):
        seen.append(str(path))
        return real(path)

    monkeypatch.setattr(artifact, "load_onnx", recording)
    assert main(["eval", str(tmp_path), "--dataset", "mnist", "--limit", "3", "--png", str(tmp_path / "a.png")]) == 0
    assert seen == [str(tmp_path / "model.onnx")]


def _two_layer(w: float = 1.0, theta: float = 1.0, latency: float = 1.0, hidden: int = 4) -> TemporalNetwork:
    l1 = AlphaLayer(np.full((hidden, 784), w), np.zeros(0), np.zeros((hidden, 0)))
    l2 = AlphaLayer(np.ones((784, hidden)), np.zeros(0), np.zeros((784, 0)))
    return TemporalNetwork((l1, l2), 1.0, theta, latency, metadata={"dataset": "mnist"})


@pytest.mark.parametrize("bad", [dict(w=1e300), dict(theta=1e-300), dict(latency=-1.0), dict(hidden=0)],
                         ids=["weights-1e300", "theta-1e-300", "negative-latency", "zero-hidden"])
def test_eval_refuses_networks_that_compile_refuses(tmp_path, capsys, bad):
    with pytest.raises(SnncError):                 # nobody can write such a model with snnc ...
        save_onnx(_two_layer(**bad), tmp_path / "model.onnx")
    onnx.save(to_model_proto(_two_layer(**bad)), str(tmp_path / "model.onnx"))   # ... but another tool might
    png = tmp_path / "r.png"
    assert main(["eval", str(tmp_path), "--limit", "3", "--png", str(png)]) == 2
    assert "snnc: error" in capsys.readouterr().err and not png.exists()
