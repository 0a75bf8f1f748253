"""Sweeps end to end with real worker processes, real training (bundled data) and real storages (a journal file,
and a PostgreSQL server the test starts from the pgserver package): 2 local workers through `snnc sweep run`, a
re-run that trains nothing, a worker SIGKILLed mid-trial whose trial is failed by its lost heartbeat and retried,
a failing config, and a TPE search. No child process outlives a test."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from toolchain.cli import main

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 400

# 2 conditions x 2 hidden sizes, 1 epoch on a few bundled images; heartbeats every second, stale after 4 s
GRID = """
name = "{name}"
trainer = "temporal"
metric = "test_mse"
heartbeat_interval = 1
grace_period = 4
[args]
dataset = "mnist"
epochs = 1
limit-train = {limit}
limit-eval = 20
[grid]
noise = [0.0, 0.4]
hidden = [8, 16]
"""


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    env.pop("SNNC_DATA", None)  # the bundled subset
    env.update({k: "1" for k in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    return env


def _snnc(*args: str, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "toolchain.cli", *args], env=_env(), cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)


def _start(*args: str, log: Path) -> subprocess.Popen:
    f = open(log, "w")
    try:
        return subprocess.Popen([sys.executable, "-m", "toolchain.cli", *args], env=_env(), cwd=ROOT, stdout=f,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        f.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not reaped by its parent) is not running
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _stop(procs) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def _trials(storage: str, name: str):
    from experiments.sweep_state import load_sweep

    study, spec, out = load_sweep(storage, name)
    return study.get_trials(deepcopy=False), spec


def _check_finished_folder(out: Path, n: int, model: str = "model.onnx") -> list[dict]:
    trials = out / "trials"
    assert not [p.name for p in trials.iterdir() if p.name.startswith(".")], "staging debris left"
    recs = []
    for d in sorted(trials.iterdir()):
        rec = json.loads((d / "trial.json").read_text())
        metrics = json.loads((d / "metrics.json").read_text())
        assert rec["hash"] == d.name and rec["value"] == metrics["test_mse"]
        assert (d / model).is_file() and (d / "train.log").is_file()
        recs.append(rec)
    assert len(recs) == n
    return recs


def test_grid_with_two_local_workers_then_rerun_skips_everything(tmp_path, capsys):
    spec = tmp_path / "grid.toml"
    # no worker dies here: a long grace period keeps a heartbeat thread starved by JIT compilation or a loaded
    # machine from failing a live trial (the retry path has its own tests below)
    spec.write_text(GRID.format(name="two-workers", limit=40).replace("grace_period = 4", "grace_period = 120"))
    out = tmp_path / "sweep"
    r = _snnc("sweep", "run", str(spec), "--workers", "2", "--out", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "4/4 done, 0 failed" in r.stdout
    recs = _check_finished_folder(out, 4)
    pids = {int(rec["worker"].rsplit(":", 1)[1]) for rec in recs}
    assert {c["config"]["args"]["hidden"] for c in recs} == {8, 16}
    assert all(rec["threads"] == 1 and "--threads" in rec["argv"] for rec in recs)
    assert not [p for p in pids if _alive(p)], "a worker outlived `snnc sweep run`"
    trials, _ = _trials(str(out / "sweep.journal"), "two-workers")
    assert len(trials) == 4 and all(t.state.name == "COMPLETE" for t in trials)
    assert {t.user_attrs["config_hash"] for t in trials} == {rec["hash"] for rec in recs}

    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("trials/*/trial.json")}
    assert main(["sweep", "run", str(spec), "--workers", "2", "--out", str(out)]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.glob("trials/*/trial.json")} == mtimes
    assert len(_trials(str(out / "sweep.journal"), "two-workers")[0]) == 4  # no new trial
    assert main(["sweep", "status", str(spec), "--out", str(out)]) == 0
    assert capsys.readouterr().out.count(" done ") == 4


def _postgres(tmp_path):
    try:
        import pgserver

        server = pgserver.get_server(tmp_path / "pg", cleanup_mode="delete")
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"pgserver cannot start a PostgreSQL server on this machine ({type(exc).__name__}: {exc})")
    return server


@pytest.mark.parametrize("backend", ["journal", "postgresql"])
def test_worker_killed_mid_trial_is_retried_and_every_trial_completes(tmp_path, backend):
    server = _postgres(tmp_path) if backend == "postgresql" else None
    procs: list[subprocess.Popen] = []
    try:
        out = tmp_path / "sweep"
        storage = server.get_uri() if server else str(out / "sweep.journal")
        name = f"kill-{backend}"
        spec = tmp_path / "grid.toml"
        spec.write_text(GRID.format(name=name, limit=100))
        r = _snnc("sweep", "run", str(spec), "--workers", "0", "--out", str(out), "--storage", storage)
        assert r.returncode == 0, r.stdout + r.stderr
        worker = ("sweep", "worker", "--storage", storage, "--study", name, "--poll", "0.5")
        victim = _start(*worker, log=tmp_path / "victim.log")
        procs.append(victim)
        stage_prefix = ".staging-"
        host = socket.gethostname()
        deadline = time.monotonic() + 180
        killed_in = None
        while killed_in is None and time.monotonic() < deadline and victim.poll() is None:
            for p in (out / "trials").glob(stage_prefix + "*"):
                if p.name.split("-")[-2] == str(victim.pid) and host in p.name:
                    os.killpg(victim.pid, signal.SIGKILL)  # mid-trial: its staging folder exists
                    killed_in = p.name.split("-")[1]
                    break
            time.sleep(0.01)
        assert killed_in is not None, (tmp_path / "victim.log").read_text()
        victim.wait()
        # two more workers start now (their start-up overlaps the grace period): together they finish the 3 open
        # configs and, once the victim's trial has had no heartbeat for 4 s, one of them retries it
        survivors = [_start(*worker, log=tmp_path / f"survivor{i}.log") for i in range(2)]
        procs += survivors
        for i, sv in enumerate(survivors):
            assert sv.wait(timeout=TIMEOUT_S) == 0, (tmp_path / f"survivor{i}.log").read_text()

        trials, spec_obj = _trials(storage, name)
        states = [t.state.name for t in trials]
        failed = [t for t in trials if t.state.name == "FAIL"]
        assert len(failed) == 1 and failed[0].user_attrs["worker"] == f"{host}:{victim.pid}", states
        assert failed[0].user_attrs["config_hash"] == killed_in
        retried = [t for t in trials if t.system_attrs.get("failed_trial") == failed[0].number]
        assert len(retried) == 1 and retried[0].state.name == "COMPLETE"
        assert retried[0].user_attrs["worker"] in {f"{host}:{sv.pid}" for sv in survivors}
        done = {t.user_attrs["config_hash"] for t in trials if t.state.name == "COMPLETE"}
        assert done == {c.hash for c in spec_obj.configs()}
        _check_finished_folder(out, 4)
        st = _snnc("sweep", "status", "--storage", storage, "--study", name)
        assert st.returncode == 0 and "4/4 done, 0 failed" in st.stdout
    finally:
        _stop(procs)
        if server is not None:
            server.cleanup()
    assert not [p.pid for p in procs if _alive(p.pid)]


def test_failing_config_is_reported_and_leaves_its_log_only(tmp_path):
    spec = tmp_path / "bad.toml"
    spec.write_text('name = "bad"\ntrainer = "ann"\nmetric = "test_mse"\n[args]\nepochs = 1\nlimit-train = 40\n'
                    'limit-eval = 20\ndevice = "cpu"\n[grid]\nhidden = [4, 0]\n')
    out = tmp_path / "sweep"
    r = _snnc("sweep", "run", str(spec), "--out", str(out))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "1/2 done, 1 failed" in r.stdout and "hidden, epochs and batch size must be >= 1" in r.stdout
    recs = _check_finished_folder(out, 1, model="ann.pt")
    assert recs[0]["config"]["args"]["hidden"] == 4
    logs = list((out / "logs").iterdir())
    assert len(logs) == 1 and "--hidden 0" in logs[0].read_text()
    # a re-run retries the failed config only (here it fails again), the finished one is not trained again
    r2 = _snnc("sweep", "run", str(spec), "--out", str(out))
    assert r2.returncode == 1 and "queued 1 failed config(s) again" in r2.stdout
    trials, _ = _trials(str(out / "sweep.journal"), "bad")
    assert sorted(t.state.name for t in trials) == ["COMPLETE", "FAIL", "FAIL"]
    assert len(list((out / "logs").iterdir())) == 2


def test_tpe_search_runs_n_trials_and_reports_the_best(tmp_path):
    spec = tmp_path / "search.toml"
    spec.write_text('name = "search"\ntrainer = "ann"\nsampler = "tpe"\nn_trials = 3\nmetric = "val_mse"\n'
                    '[args]\nepochs = 1\nlimit-train = 40\nlimit-eval = 20\ndevice = "cpu"\n[search]\n'
                    'lr = {low = 1e-4, high = 1e-2, log = true}\nhidden = {choices = [4, 8]}\n')
    out = tmp_path / "sweep"
    r = _snnc("sweep", "run", str(spec), "--out", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3/3 done" in r.stdout and "best:" in r.stdout
    trials, _ = _trials(str(out / "sweep.journal"), "search")
    assert sum(t.state.name == "COMPLETE" for t in trials) == 3
    for t in trials:
        assert 1e-4 <= t.params["lr"] <= 1e-2 and t.params["hidden"] in (4, 8)


def test_fig3_runner_trains_the_grid_and_writes_csv_markdown_and_figure(tmp_path, capsys):
    out = tmp_path / "fig3"
    r = _snnc("experiments", "fig3", "--epochs", "1", "--limit-train", "40", "--limit-eval", "20", "--noise",
              "0,0.4", "--hidden", "8", "--datasets", "mnist", "--workers", "1", "--out", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    rows = (out / "fig3.csv").read_text().splitlines()
    assert rows[0].startswith("dataset,model,hidden,noise") and len(rows) == 5
    assert {tuple(x.split(",")[1:4]) for x in rows[1:]} == {(m, "8", n) for m in ("snn", "ann") for n in ("0.0", "0.4")}
    md = (out / "fig3.md").read_text()
    assert "| snn | 8 |" in md and "| ann | 8 |" in md and "SNN / ANN test MSE" in md and "Missing" not in md
    assert (out / "fig3.png").read_bytes()[:4] == b"\x89PNG"
    # the spec written beside the results reads back as the same sweep; --collect-only rewrites from the trials
    from experiments.fig3 import fig3_spec
    from experiments.sweep_spec import load_spec

    assert load_spec(out / "fig3.toml") == fig3_spec(epochs=1, limit_train=40, limit_eval=20, datasets=("mnist",),
                                                     noises=(0.0, 0.4), hidden=(8,))
    (out / "fig3.md").unlink()
    assert main(["experiments", "fig3", "--collect-only", "--out", str(out)]) == 0
    assert (out / "fig3.md").read_text() == md
    assert main(["experiments", "fig3", "--collect-only", "--out", str(tmp_path / "none")]) == 2
    assert "cannot read the sweep spec" in capsys.readouterr().err


def test_sigterm_fails_the_running_trial_and_queues_its_retry_at_once(tmp_path):
    out = tmp_path / "sweep"
    spec = tmp_path / "grid.toml"
    spec.write_text(GRID.format(name="term", limit=100).replace("grace_period = 4", "grace_period = 600"))
    assert _snnc("sweep", "run", str(spec), "--workers", "0", "--out", str(out)).returncode == 0
    storage = str(out / "sweep.journal")
    w = _start("sweep", "worker", "--storage", storage, "--study", "term", log=tmp_path / "w.log")
    try:
        deadline = time.monotonic() + 180
        while not list((out / "trials").glob(f".staging-*-{w.pid}-*")) and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(w.pid, signal.SIGTERM)  # like a preempted Slurm job
        assert w.wait(timeout=60) == 143, (tmp_path / "w.log").read_text()
    finally:
        _stop([w])
    trials, _ = _trials(storage, "term")
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert len(failed) == 1 and failed[0].user_attrs.get("interrupted")
    queued = [t for t in trials if t.state.name == "WAITING"]
    retry = [t for t in queued if "failed_trial" in t.system_attrs]
    assert len(retry) == 1 and retry[0].system_attrs["failed_trial"] == failed[0].number  # no grace period
    assert retry[0].user_attrs["config_hash"] == failed[0].user_attrs["config_hash"]
    # the other 3 configs are still queued (longest first) from `sweep run`; nothing else was started
    assert len(queued) == 4 and len(trials) == 5
    assert not list((out / "trials").glob(".staging-*"))
    assert len(list((out / "logs").glob("trial-*.log"))) == 1
