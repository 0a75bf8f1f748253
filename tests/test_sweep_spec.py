"""Sweep specs: validation (every bad spec refused with a message naming the fix), config hashes, argv."""
from __future__ import annotations

import json

import pytest

from experiments.sweep_spec import SpecError, load_spec, spec_from_dict
from toolchain.cli import main

GRID = """
name = "unit"
trainer = "temporal"
metric = "test_mse"
[args]
dataset = "mnist"
epochs = 1
limit_train = 40
[grid]
noise = [0.0, 0.4]
hidden = [8, 16]
"""


def _write(tmp_path, text, name="s.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_grid_spec_configs_hashes_and_argv(tmp_path):
    spec = load_spec(_write(tmp_path, GRID))
    cfgs = spec.configs()
    assert len(cfgs) == 4 and spec.total() == 4
    assert len({c.hash for c in cfgs}) == 4
    c = spec.config({"hidden": 8, "noise": 0.4})
    assert c in cfgs
    assert c.argv("OUT") == ["train", "temporal", "--dataset", "mnist", "--epochs", "1", "--hidden", "8",
                             "--limit-train", "40", "--noise", "0.4", "--out", "OUT"]
    # canonical numbers and flag spelling: 0 == 0.0, limit_train == limit-train, key order irrelevant
    same = spec_from_dict({"name": "x", "trainer": "temporal", "args": {"limit-train": 40, "epochs": 1.0,
                                                                       "dataset": "mnist"},
                           "grid": {"noise": [0], "hidden": [8.0]}}).configs()[0]
    assert same.hash == spec.config({"hidden": 8, "noise": 0.0}).hash
    assert c.argv("o", extra={"threads": 1, "no-progress": True, "hidden": 99})[-6:] == \
        ["--no-progress", "--noise", "0.4", "--threads", "1", "--out", "o"][-6:]
    assert "--hidden" in c.argv() and "99" not in c.argv("o", extra={"hidden": 99})  # extra never overrides


def test_json_spec_and_per_trainer_args(tmp_path):
    d = {"name": "j", "metric": "test_mse", "args": {"epochs": 1, "temporal": {"no-progress": True}},
         "grid": {"trainer": ["temporal", "ann"], "hidden": [8]}}
    spec = load_spec(_write(tmp_path, json.dumps(d), "s.json"))
    by = {c.trainer: c for c in spec.configs()}
    assert set(by) == {"temporal", "ann"}
    assert "--no-progress" in by["temporal"].argv() and "--no-progress" not in by["ann"].argv()
    assert spec_from_dict(spec.to_dict()) == spec  # what the study stores reads back the same


@pytest.mark.parametrize("text, words", [
    (GRID.replace('name = "unit"', 'name = "a/b"'), "name"),
    ("bogus = 1\n" + GRID, "unknown key"),
    (GRID.replace("[grid]", "[grid]\nout = ['x']"), "--out is set by the sweep"),
    (GRID.replace("noise = [0.0, 0.4]", "noise = []"), "non-empty list"),
    (GRID.replace('trainer = "temporal"\n', ""), "name the trainer"),
    (GRID.replace('metric = "test_mse"', 'metric = "test_mse"\nsampler = "tpe"'), "needs sampler = \"grid\""),
    (GRID.replace('metric = "test_mse"', 'metric = "test_mse"\nsampler = "random"'), "sampler"),
    (GRID.replace('metric = "test_mse"', 'metric = "test_mse"\nheartbeat_interval = 10\ngrace_period = 5'),
     "grace_period"),
    (GRID.replace("[grid]", "[grid]\nhiddn = [1]"), "hiddn"),              # a flag the trainer lacks
    (GRID.replace("epochs = 1", "epochs = \"many\""), "--epochs"),        # a value the trainer refuses
    (GRID.replace('trainer = "temporal"', 'trainer = "nosuch"'), "unknown trainer"),
    ('name = "t"\ntrainer = "ann"\nsampler = "tpe"\n[search]\nlr = {low = 1e-4, high = 1e-2, log = true}\n',
     "n_trials"),
    ('name = "t"\ntrainer = "ann"\nsampler = "tpe"\nn_trials = 3\n[search]\nlr = {low = 1, high = 0}\n',
     "below high"),
    ('name = "t"\ntrainer = "ann"\nsampler = "tpe"\nn_trials = 3\n[search]\nlr = {low = 0, high = 1, log = true}\n',
     "log range"),
    ("name = [", "not valid TOML"),
])
def test_bad_specs_are_refused_with_the_problem(tmp_path, text, words):
    with pytest.raises(SpecError, match=None) as err:
        load_spec(_write(tmp_path, text))
    assert words in str(err.value)


def test_tpe_spec_checks_both_ends_of_each_range(tmp_path):
    ok = 'name = "t"\ntrainer = "ann"\nsampler = "tpe"\nn_trials = 3\n[search]\n' \
         'lr = {low = 1e-4, high = 1e-2, log = true}\nhidden = {low = 4, high = 16}\nnoise = {choices = [0, 0.4]}\n'
    spec = load_spec(_write(tmp_path, ok))
    assert spec.total() == 3 and spec.search["hidden"]["int"] and not spec.search["lr"]["int"]
    assert spec_from_dict(spec.to_dict()) == spec  # what the study stores reads back the same
    bad = ok.replace("hidden = {low = 4, high = 16}", "hidden = {low = 4.5, high = 16.5}")
    with pytest.raises(SpecError, match="--hidden"):
        load_spec(_write(tmp_path, bad))


def test_cli_refuses_a_bad_spec_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["sweep", "run", str(_write(tmp_path, GRID.replace("[grid]", "[grid]\nhiddn = [1]"))),
               "--out", str(out)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "hiddn" in err and "fix the flag in the spec" in err
    assert not out.exists()  # nothing written
    assert main(["sweep", "run", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read the sweep spec" in capsys.readouterr().err
    assert main(["sweep", "status", "--storage", str(tmp_path / "none.journal"), "--study", "x"]) == 2
    assert "no sweep storage" in capsys.readouterr().err
