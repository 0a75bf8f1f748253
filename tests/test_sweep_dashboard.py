"""`optuna-dashboard` on a sweep's own storage: a small sweep runs to a journal file, an SQLite file and a real
PostgreSQL server (pgserver, started here), then `optuna-dashboard STORAGE` runs as a real child process on a free
port and its JSON API must show the study, its spec and every trial with its config and config hash (the names of
the trial folders). The dashboard's process group is killed at the end; no child outlives the test."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = Path(sys.executable).with_name("optuna-dashboard")  # installed with snnc (pyproject, requirements.lock)
START_TIMEOUT_S = 90

SPEC = """
name = "dash"
trainer = "ann"
metric = "test_mse"
[args]
epochs = 1
limit-train = 40
limit-eval = 20
device = "cpu"
[grid]
hidden = [4, 8]
"""


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    env.pop("SNNC_DATA", None)
    env.update({k: "1" for k in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200
        return json.loads(r.read().decode("utf-8"))


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _dashboard_view(storage: str, log: Path) -> tuple[dict, dict]:
    """Start `optuna-dashboard storage` on a free port, return (/api/studies, /api/studies/<dash's id>)."""
    assert DASHBOARD.is_file(), f"optuna-dashboard is not installed next to {sys.executable}"
    port = _free_port()
    with open(log, "w") as f:
        proc = subprocess.Popen([str(DASHBOARD), storage, "--host", "127.0.0.1", "--port", str(port)], env=_env(),
                                stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert proc.poll() is None, f"optuna-dashboard exited with {proc.returncode}:\n{log.read_text()}"
            try:
                studies = _get(f"{base}/api/studies")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                assert time.monotonic() < deadline, f"optuna-dashboard did not answer:\n{log.read_text()}"
                time.sleep(0.2)
        ids = [s["study_id"] for s in studies["study_summaries"] if s["study_name"] == "dash"]
        assert len(ids) == 1, studies
        return studies, _get(f"{base}/api/studies/{ids[0]}")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
        assert not _alive(proc.pid)


@pytest.mark.parametrize("backend", ["journal", "sqlite", "postgresql"])
def test_optuna_dashboard_shows_the_sweep_and_its_trials(tmp_path, backend):
    server = None
    if backend == "postgresql":
        try:
            import pgserver

            server = pgserver.get_server(tmp_path / "pg", cleanup_mode="delete")
        except Exception as exc:  # pragma: no cover - depends on the machine
            pytest.skip(f"pgserver cannot start a PostgreSQL server here ({type(exc).__name__}: {exc})")
    try:
        out = tmp_path / "sweep"
        storage = {"journal": str(out / "sweep.journal"), "sqlite": f"sqlite:///{tmp_path / 'sweep.db'}",
                   "postgresql": server.get_uri() if server else ""}[backend]
        spec = tmp_path / "dash.toml"
        spec.write_text(SPEC)
        r = subprocess.run([sys.executable, "-m", "toolchain.cli", "sweep", "run", str(spec), "--workers", "2",
                            "--out", str(out), "--storage", storage], env=_env(), cwd=ROOT, text=True,
                           capture_output=True, timeout=400, stdin=subprocess.DEVNULL)
        assert r.returncode == 0 and "2/2 done, 0 failed" in r.stdout, r.stdout + r.stderr
        folders = {p.name for p in (out / "trials").iterdir()}
        assert len(folders) == 2

        # PostgreSQL: optuna-dashboard hands the URL to SQLAlchemy as it is, and a bare postgresql:// means
        # psycopg 3 there; snnc installs psycopg2, so the dashboard gets the driver in the URL (docs/sweeps.md)
        url = storage.replace("postgresql://", "postgresql+psycopg2://", 1) if backend == "postgresql" else storage
        studies, detail = _dashboard_view(url, tmp_path / "dashboard.log")

        summary = next(s for s in studies["study_summaries"] if s["study_name"] == "dash")
        attrs = {a["key"]: a["value"] for a in summary["user_attrs"]}
        assert json.loads(attrs["snnc_spec"])["grid"] == {"hidden": [4, 8]}
        assert Path(attrs["snnc_out"]) == out.resolve()
        trials = detail["trials"]
        assert len(trials) == 2 and {t["state"] for t in trials} == {"Complete"}
        seen = {}
        for t in trials:
            ua = {a["key"]: a["value"] for a in t["user_attrs"]}
            config = json.loads(ua["config"])
            assert config["trainer"] == "ann" and config["args"]["epochs"] == 1
            assert ua["worker"].split(":")[0] == socket.gethostname()
            # the grid point, as queued by `snnc sweep run`
            assert [(p["name"], p["param_external_value"]) for p in t["fixed_params"]] == \
                [("hidden", str(config["args"]["hidden"]))]
            value = json.loads((out / "trials" / ua["config_hash"] / "trial.json").read_text())["value"]
            assert t["values"] == [pytest.approx(value)]
            seen[ua["config_hash"]] = config["args"]["hidden"]
        assert set(seen) == folders and sorted(seen.values()) == [4, 8]
    finally:
        if server is not None:
            server.cleanup()
