"""The sweep worker's process settings: glibc malloc kept from handing freed memory back to the kernel
(experiments/sweep_malloc.py: fewer page faults for the same allocations), and ``--fast-exit`` (the worker ends
without the interpreter's teardown once the sweep is finished, with its output flushed and the trials on disk).
Every check runs in a child process, so the test process keeps its own malloc and exit."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# a batch's temporaries: 30 blocks of 2 MiB allocated (every page written), then all freed, 20 times; prints the
# minor page faults this took and what tune_malloc set. With glibc's defaults the freed heap top (60 MiB) is above
# the trim threshold (twice the dynamic mmap threshold, here 4 MiB) and goes back to the kernel every round
CHURN = """
import json, resource, sys
import numpy as np
from experiments.sweep_malloc import tune_malloc
done = tune_malloc() if sys.argv[1] == "tuned" else {}
def batch():
    blocks = [np.ones(1 << 18) for _ in range(30)]  # 2 MiB of float64 each
    del blocks
batch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    batch()
print(json.dumps({"faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, "set": done}))
"""


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env.pop("SNNC_DATA", None)
    env.update({k: "1" for k in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    env.update(extra)
    return env


def _churn(mode: str, **env: str) -> dict:
    r = subprocess.run([sys.executable, "-c", CHURN, mode], env=_env(**env), cwd=ROOT, text=True,
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_tuned_malloc_reuses_freed_blocks_instead_of_faulting_fresh_pages():
    plain, tuned = _churn("plain"), _churn("tuned")
    assert tuned["set"] == {"MALLOC_MMAP_THRESHOLD_": 32 << 20, "MALLOC_TRIM_THRESHOLD_": 1 << 30,
                            "MALLOC_TOP_PAD_": 64 << 20}
    # plain: ~15,000 pages a round come back from the kernel; tuned: the heap keeps them after the first round
    assert plain["faults"] > 10 * 15000 and tuned["faults"] < plain["faults"] / 20, (plain, tuned)
    # a setting given in the environment is the user's: left alone
    mine = _churn("tuned", MALLOC_TOP_PAD_="0")
    assert "MALLOC_TOP_PAD_" not in mine["set"] and "MALLOC_MMAP_THRESHOLD_" in mine["set"]


SPEC = """
name = "fastexit"
trainer = "temporal"
metric = "test_mse"
[args]
dataset = "mnist"
epochs = 1
limit-train = 40
limit-eval = 20
[grid]
hidden = [4]
noise = [0.0]
"""


def test_fast_exit_worker_ends_with_its_output_and_trial_and_sweep_run_uses_it(tmp_path):
    from experiments.sweep_run import worker_command

    spec = tmp_path / "s.toml"
    spec.write_text(SPEC)
    out = tmp_path / "sweep"
    snnc = [sys.executable, "-m", "toolchain.cli"]
    r = subprocess.run([*snnc, "sweep", "run", str(spec), "--workers", "0", "--out", str(out)], env=_env(),
                       cwd=ROOT, text=True, capture_output=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    storage = str(out / "sweep.journal")
    t0 = time.perf_counter()
    w = subprocess.run([*snnc, "sweep", "worker", "--storage", storage, "--study", "fastexit", "--fast-exit"],
                       env=_env(), cwd=ROOT, text=True, capture_output=True, timeout=300)
    assert w.returncode == 0, w.stdout + w.stderr
    assert time.perf_counter() - t0 < 300
    # the last line is printed (flushed before the process ends) and the trial is complete on disk
    assert w.stdout.rstrip().splitlines()[-1].endswith("1 trial(s) here; sweep fastexit: 1/1 done, 0 failed, "
                                                       "0 running, 0 queued")
    (trial,) = (out / "trials").iterdir()
    rec = json.loads((trial / "trial.json").read_text())
    assert rec["hash"] == trial.name and (trial / "model.onnx").is_file()
    s = subprocess.run([*snnc, "sweep", "status", str(spec), "--out", str(out)], env=_env(), cwd=ROOT, text=True,
                       capture_output=True, timeout=300)
    assert s.returncode == 0 and "1/1 done" in s.stdout, s.stdout + s.stderr
    assert "--fast-exit" in worker_command(storage, "fastexit", out, 1)


def test_a_retry_carrying_the_dead_trials_heartbeat_is_not_stale_until_its_grace_period(tmp_path):
    """Optuna's retry callback copies the dead trial's system attributes, its last heartbeat among them, into the
    retry: a worker that has just started the retry must not see it failed by another worker's stale check
    before its own first heartbeat (seen under load in the kill test: the retry failed and the sweep ended with
    a failure). A trial whose start and heartbeat are both old is stale."""
    import datetime

    import optuna

    from experiments.sweep_storage import HEARTBEAT_ATTR, open_storage

    st = open_storage(str(tmp_path / "hb.journal"), heartbeat_interval=1, grace_period=4)
    sid = st.create_new_study([optuna.study.StudyDirection.MINIMIZE], "hb")
    retry = st.create_new_trial(sid)  # RUNNING, started now
    st.set_trial_system_attr(retry, HEARTBEAT_ATTR, time.time() - 100)  # the copied heartbeat
    old = optuna.trial.FrozenTrial(
        number=0, state=optuna.trial.TrialState.RUNNING, value=None,
        datetime_start=datetime.datetime.now() - datetime.timedelta(seconds=60), datetime_complete=None, params={},
        distributions={}, user_attrs={}, system_attrs={HEARTBEAT_ATTR: time.time() - 50}, intermediate_values={},
        trial_id=0)
    dead = st.create_new_trial(sid, template_trial=old)
    assert st._get_stale_trial_ids(sid) == [dead] and retry != dead
