"""Trial order of a grid sweep: `snnc sweep run` queues the configs longest first (estimated cost), workers take
them in that order, a single-point grid and re-runs work with queued trials, and `order = "sampler"` leaves the
order to GridSampler. Real workers and training (the ANN trainer on a few bundled images: seconds)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.sweep_order import estimated_cost, longest_first
from experiments.sweep_spec import SpecError, load_spec, spec_from_dict

ROOT = Path(__file__).resolve().parents[1]

ANN_GRID = """
name = "{name}"
trainer = "ann"
metric = "test_mse"
{order}
[args]
epochs = 1
limit-train = 40
limit-eval = 20
batch-size = 10
device = "cpu"
[grid]
hidden = {hidden}
"""


def _snnc(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    env.pop("SNNC_DATA", None)
    env.update({k: "1" for k in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    return subprocess.run([sys.executable, "-m", "toolchain.cli", *args], env=env, cwd=ROOT, text=True,
                          capture_output=True, timeout=400, stdin=subprocess.DEVNULL)


def _trials(storage: str, name: str):
    from experiments.sweep_state import load_sweep

    return load_sweep(storage, name)[0].get_trials(deepcopy=False)


def test_longest_first_orders_by_epochs_images_hidden_and_trainer():
    spec = spec_from_dict({"name": "o", "args": {"limit-train": 100, "epochs": 2, "batch-size": 10},
                           "grid": {"trainer": ["ann", "temporal"], "hidden": [8, 32, 16]}})
    order = [(c.trainer, dict(c.args)["hidden"]) for c in longest_first(spec.configs())]
    assert order[0] == ("temporal", 32) and len(order) == 6
    for t in ("temporal", "ann"):
        assert [h for tt, h in order if tt == t] == [32, 16, 8]
    c = spec.config({"trainer": "temporal", "hidden": 8})
    more_epochs = spec_from_dict({"name": "o", "args": {"limit-train": 100, "epochs": 4},
                                  "grid": {"hidden": [8]}, "trainer": "temporal"}).configs()[0]
    full_data = spec_from_dict({"name": "o", "args": {"epochs": 2}, "grid": {"hidden": [8]},
                                "trainer": "temporal"}).configs()[0]
    assert estimated_cost(c) < estimated_cost(more_epochs) < 2 * estimated_cost(c)  # the test set once
    assert estimated_cost(full_data) > 4 * estimated_cost(c)  # 54,000 training images instead of 100
    # a config its trainer refuses costs nothing (it fails at once) and goes last
    bad = spec.config({"trainer": "temporal", "hidden": "x"})
    assert estimated_cost(bad) == 0.0 and longest_first([bad, c])[0] == c
    # smaller batches (more Adam steps) cost more; without --batch-size the preset row's batch counts
    small = spec_from_dict({"name": "o", "args": {"limit-train": 100, "epochs": 2, "batch-size": 2},
                            "grid": {"hidden": [8]}, "trainer": "temporal"}).configs()[0]
    assert estimated_cost(small) > estimated_cost(c)
    row2, row107 = (spec_from_dict({"name": "o", "args": {"epochs": 1}, "grid": {"hidden": [32], "noise": [n]},
                                    "trainer": "temporal"}).configs()[0] for n in (0.2, 0.8))
    assert estimated_cost(row2) > 1.5 * estimated_cost(row107)  # tuned rows: batch 2 vs batch 107


def test_fig3_grid_starts_with_the_longest_trials():
    # the tuned rows set the batch size: noise 0.8 hidden 8 trains with batch 1 (54,000 Adam steps an epoch),
    # noise 0.2 hidden 32 with batch 2, noise 0.8 hidden 32 with batch 107. Measured (full data, 1 epoch, CPU s):
    # ANN h8 batch 1: 45 s (the longest), ANN h32 batch 2: 35-42 s, SNN h32 batch 2: 31-32 s, SNN h32 batch 107:
    # 14-16 s, ANN h32 batch 107: 5.4 s and ANN h8 batch 33: 5.8 s (the shortest)
    from experiments.fig3 import fig3_spec

    configs = fig3_spec(epochs=1).configs()
    order = longest_first(configs)
    assert len(order) == 60 and set(order) == set(configs)
    costs = [estimated_cost(c) for c in order]
    assert costs == sorted(costs, reverse=True)
    point = [(c.trainer, dict(c.args)["hidden"], dict(c.args)["noise"]) for c in order]
    assert point[:4] == [("ann", 8, 0.8)] * 2 + [("ann", 32, 0.2)] * 2
    assert point.index(("temporal", 32, 0.2)) < point.index(("temporal", 32, 0.8))
    assert {p[0] for p in point[-6:]} == {"ann"} and ("ann", 32, 0.8) in point[-4:]


def test_order_key_is_checked(tmp_path):
    with pytest.raises(SpecError, match="order 'random' is unknown"):
        spec_from_dict({"name": "o", "trainer": "ann", "order": "random", "grid": {"hidden": [4]}})
    with pytest.raises(SpecError, match="order 'sampler' is unknown"):
        spec_from_dict({"name": "o", "trainer": "ann", "sampler": "tpe", "order": "sampler", "n_trials": 2,
                        "search": {"hidden": {"choices": [4, 8]}}})
    p = tmp_path / "s.toml"
    p.write_text(ANN_GRID.format(name="o", order='order = "sampler"', hidden="[4, 8]"))
    assert load_spec(p).order == "sampler"
    assert load_spec(p) == spec_from_dict(load_spec(p).to_dict())  # stored in the study and read back


def test_run_queues_longest_first_and_the_worker_follows_it(tmp_path):
    spec = tmp_path / "grid.toml"
    spec.write_text(ANN_GRID.format(name="order", order="", hidden="[4, 16, 8]"))
    out = tmp_path / "sweep"
    storage = str(out / "sweep.journal")
    r = _snnc("sweep", "run", str(spec), "--workers", "0", "--out", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    queued = _trials(storage, "order")
    assert [t.state.name for t in queued] == ["WAITING"] * 3
    assert [t.user_attrs["config"]["args"]["hidden"] for t in sorted(queued, key=lambda t: t.number)] == [16, 8, 4]
    st = _snnc("sweep", "status", str(spec), "--out", str(out))
    assert "0/3 done, 0 failed, 0 running, 3 queued" in st.stdout

    w = _snnc("sweep", "worker", "--storage", storage, "--study", "order")
    assert w.returncode == 0, w.stdout + w.stderr
    recs = [json.loads(p.read_text()) for p in out.glob("trials/*/trial.json")]
    assert len(recs) == 3
    ran = sorted(recs, key=lambda r: r["started_unix"])
    assert [r["config"]["args"]["hidden"] for r in ran] == [16, 8, 4]
    for a, b in zip(ran, ran[1:]):
        assert a["started_unix"] < a["finished_unix"] <= b["started_unix"]
    assert all(r["worker_started_unix"] is None or r["worker_started_unix"] <= ran[0]["started_unix"]
               for r in recs)
    trials = _trials(storage, "order")
    assert len(trials) == 3 and all(t.state.name == "COMPLETE" for t in trials)  # the queued ones, nothing more
    # a re-run queues nothing and trains nothing
    r2 = _snnc("sweep", "run", str(spec), "--workers", "1", "--out", str(out))
    assert r2.returncode == 0 and "nothing to do" in r2.stdout
    assert len(_trials(storage, "order")) == 3


def test_single_point_grid_and_a_grid_extended_later(tmp_path):
    # GridSampler (Optuna 5.0) indexes grid_id after the trial when one grid point is left: queued trials have
    # none, so a one-point grid was the case that broke (KeyError) before the sampler learned about queues
    spec = tmp_path / "grid.toml"
    out = tmp_path / "sweep"
    spec.write_text(ANN_GRID.format(name="grow", order="", hidden="[4]"))
    r = _snnc("sweep", "run", str(spec), "--workers", "1", "--out", str(out))
    assert r.returncode == 0 and "1/1 done, 0 failed" in r.stdout, r.stdout + r.stderr
    spec.write_text(ANN_GRID.format(name="grow", order="", hidden="[4, 12, 8]"))
    r = _snnc("sweep", "run", str(spec), "--workers", "1", "--out", str(out))
    assert r.returncode == 0 and "3/3 done, 0 failed" in r.stdout, r.stdout + r.stderr
    recs = sorted((json.loads(p.read_text()) for p in out.glob("trials/*/trial.json")),
                  key=lambda r: r["started_unix"])
    assert [r["config"]["args"]["hidden"] for r in recs] == [4, 12, 8]  # only the new points, longest first


def test_sampler_order_queues_nothing(tmp_path):
    spec = tmp_path / "grid.toml"
    spec.write_text(ANN_GRID.format(name="plain", order='order = "sampler"', hidden="[4, 8]"))
    out = tmp_path / "sweep"
    r = _snnc("sweep", "run", str(spec), "--workers", "0", "--out", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert _trials(str(out / "sweep.journal"), "plain") == []
    r = _snnc("sweep", "run", str(spec), "--workers", "1", "--out", str(out))
    assert r.returncode == 0 and "2/2 done, 0 failed" in r.stdout, r.stdout + r.stderr
