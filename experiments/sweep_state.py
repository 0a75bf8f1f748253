"""A sweep's study in the shared storage: create or load it (the spec and output folder travel with it), the trial
folders on disk, and the progress of every config.

The study keeps the spec (user attribute ``snnc_spec``) and the output folder (``snnc_out``), so a worker on
another machine needs only the storage URL and the study name. Each trial carries its config and hash (user
attributes ``config``, ``config_hash``) and the worker that ran it (``worker``: host:pid).

Finished trials live in ``<out>/trials/<hash>/`` (``trial.json`` with the value, plus the trainer's files); a
trial trains in ``<out>/trials/.staging-<hash>-<host>-<pid>-<number>/`` and the folder is renamed into place when
it finished, so a trial folder is there complete or not at all.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path

from experiments.sweep_spec import SpecError, SweepSpec, TrialConfig, spec_from_dict
from experiments.sweep_storage import StorageError, open_storage, redact
from toolchain.errors import SnncError

SPEC_ATTR = "snnc_spec"
OUT_ATTR = "snnc_out"
TRIALS_DIR = "trials"
LOGS_DIR = "logs"
TRIAL_JSON = "trial.json"
_STAGING_RE = re.compile(r"^\.staging-([0-9a-f]+)-(.+)-(\d+)-(\d+)$")


def worker_id() -> str:
    """'host:pid' of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def trial_dir(out: str | Path, config_hash: str) -> Path:
    return Path(out) / TRIALS_DIR / config_hash


def staging_dir(out: str | Path, config_hash: str, number: int) -> Path:
    return Path(out) / TRIALS_DIR / f".staging-{config_hash}-{socket.gethostname()}-{os.getpid()}-{number}"


def read_finished(out: str | Path, config_hash: str) -> dict | None:
    """The ``trial.json`` of a finished config, or None (no folder, or one without a readable trial.json)."""
    p = trial_dir(out, config_hash) / TRIAL_JSON
    try:
        d = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) and "value" in d else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def clean_stale_staging(out: str | Path) -> list[Path]:
    """Remove staging folders that dead workers of this host left (a killed worker cannot clean up); staging
    folders of other hosts and of live processes are kept. Returns the removed folders."""
    root = Path(out) / TRIALS_DIR
    if not root.is_dir():
        return []
    host = socket.gethostname()
    removed = []
    for p in root.iterdir():
        m = _STAGING_RE.match(p.name)
        if not m or m.group(2) != host:
            continue
        pid = int(m.group(3))
        if pid != os.getpid() and _pid_alive(pid):
            continue
        if pid == os.getpid():  # our own leftovers (an earlier trial of this process): only between trials
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


def create_study(spec: SweepSpec, storage_url: str, out: str | Path):
    """Create the study of ``spec`` in ``storage_url`` (or load it: a re-run continues it) and store the spec and
    the output folder in it. Returns the study."""
    import optuna

    storage = open_storage(storage_url)
    try:
        study = optuna.create_study(study_name=spec.name, storage=storage, direction=spec.direction,
                                    load_if_exists=True)
    except Exception as exc:
        raise StorageError(f"cannot create the study {spec.name!r} in {redact(storage_url)} "
                           f"({type(exc).__name__}: {exc}); fix: check the storage") from None
    if study.direction.name.lower() != spec.direction:
        raise SpecError(f"study {spec.name!r} already exists with direction {study.direction.name.lower()}, the "
                        f"spec says {spec.direction}; rename the sweep (name = ...) or fix direction")
    study.set_user_attr(SPEC_ATTR, spec.to_dict())
    study.set_user_attr(OUT_ATTR, str(Path(out).resolve()))
    return study


def load_sweep(storage_url: str, study_name: str, *, heartbeat: bool = False):
    """(study, spec, out folder) of an existing sweep; with ``heartbeat`` the storage records heartbeats and
    retries stale trials as the spec says."""
    import optuna

    storage = open_storage(storage_url)
    try:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    except Exception as exc:
        raise StorageError(f"cannot list the studies in {redact(storage_url)} ({type(exc).__name__}: {exc}); fix: "
                           f"check the storage") from None
    if study_name not in names:
        raise SnncError(f"no sweep named {study_name!r} in {redact(storage_url)} (it has: "
                        f"{', '.join(names) or 'none'}); create it with `snnc sweep run SPEC --storage "
                        f"{redact(storage_url)}` first")
    study = optuna.load_study(study_name=study_name, storage=storage)
    attrs = study.user_attrs
    if SPEC_ATTR not in attrs:
        raise SnncError(f"study {study_name!r} in {redact(storage_url)} was not made by `snnc sweep run` (no spec "
                        f"in it); pick another --study")
    spec = spec_from_dict(attrs[SPEC_ATTR], origin=f"study {study_name}")
    if heartbeat:
        storage = open_storage(storage_url, heartbeat_interval=spec.heartbeat_interval,
                               grace_period=spec.grace_period, max_retry=spec.max_retry)
        study = optuna.load_study(study_name=study_name, storage=storage)
    return study, spec, Path(attrs.get(OUT_ATTR, "."))


@dataclass
class ConfigState:
    """Where one config of a sweep stands: state is done, failed, running, waiting (a retry is queued) or
    pending (not started)."""

    config: TrialConfig | None
    hash: str
    state: str
    value: float | None = None
    trials: list[int] = field(default_factory=list)
    workers: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class Progress:
    """Every config of the sweep (grid) or every trial so far (search), and whether the sweep is finished."""

    rows: list[ConfigState]
    total: int
    n_done: int
    n_failed: int
    n_running: int
    n_waiting: int
    finished: bool
    can_start: bool  # a worker may start a trial now (a queued retry or a config nobody runs)

    def counts(self) -> str:
        return (f"{self.n_done}/{self.total} done, {self.n_failed} failed, {self.n_running} running, "
                f"{self.n_waiting} queued")


def _trial_hash(t) -> str | None:
    return t.user_attrs.get("config_hash")


def progress(study, spec: SweepSpec, out: str | Path) -> Progress:
    """The sweep's state from the storage (and finished trial folders of ``out``)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    by_hash: dict[str, list] = {}
    for t in trials:
        h = _trial_hash(t)
        if h is not None:
            by_hash.setdefault(h, []).append(t)
    n_waiting_unknown = sum(1 for t in trials if t.state == TrialState.WAITING and _trial_hash(t) is None)

    def state_of(h: str, ts: list) -> ConfigState:
        states = {t.state for t in ts}
        done = [t for t in ts if t.state == TrialState.COMPLETE]
        workers = sorted({t.user_attrs.get("worker", "?") for t in ts if t.state != TrialState.WAITING})
        row = ConfigState(None, h, "pending", trials=[t.number for t in ts], workers=workers)
        if done:
            row.state, row.value = "done", done[-1].value
        elif TrialState.RUNNING in states:
            row.state = "running"
        elif TrialState.WAITING in states:
            row.state = "waiting"
        elif TrialState.FAIL in states:
            row.state = "failed"
            fails = [t for t in ts if t.state == TrialState.FAIL]
            row.error = fails[-1].user_attrs.get("error") or "worker lost (no heartbeat)"
        else:
            finished = read_finished(out, h)
            if finished is not None:
                row.state, row.value = "done", float(finished["value"])
        return row

    rows: list[ConfigState] = []
    if spec.sampler == "grid":
        for c in spec.configs():
            row = state_of(c.hash, by_hash.get(c.hash, []))
            row.config = c
            rows.append(row)
        total = len(rows)
    else:
        for h, ts in by_hash.items():
            row = state_of(h, ts)
            cfg = ts[0].user_attrs.get("config")
            row.config = TrialConfig(cfg["trainer"], tuple(sorted(cfg["args"].items()))) if cfg else None
            rows.append(row)
        total = int(spec.n_trials or 0)
    n = {s: sum(1 for r in rows if r.state == s) for s in ("done", "failed", "running", "waiting", "pending")}
    n["waiting"] += n_waiting_unknown
    if spec.sampler == "grid":
        finished = n["done"] + n["failed"] == total
        can_start = n["waiting"] > 0 or n["pending"] > 0
    else:  # a search counts trials (a config proposed again is reused, and that trial counts too)
        n["done"] = sum(1 for t in trials if t.state == TrialState.COMPLETE)
        n["running"] = sum(1 for t in trials if t.state == TrialState.RUNNING)
        settled = n["done"] + n["failed"]
        finished = settled >= total and n["waiting"] == 0
        can_start = n["waiting"] > 0 or settled + n["running"] < total
    return Progress(rows, total, n["done"], n["failed"], n["running"], n["waiting"], finished, can_start)
