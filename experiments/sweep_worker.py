"""A sweep worker: pulls trials of one study from the shared storage and trains them until the sweep is finished.

Any number of workers, on any machines, may serve one study (``snnc sweep worker --storage URL --study NAME``).
Each loop: fail the trials of dead workers (no heartbeat for the spec's grace period; Optuna's
``fail_stale_trials`` hands them to ``RetryHeartbeatStaleTrialCallback``, which queues each one again up to
``max_retry`` times), remove staging folders that dead workers of this host left, then start one trial if the
sweep has one to start (a queued retry, a config nobody runs, or for a search fewer trials than ``n_trials``),
else wait; stop when every config is done or failed for good. A worker stopped by Ctrl-C or SIGTERM (a
preempted Slurm job) fails its trial and queues its retry at once.

A trial runs ``snnc train <trainer> ...`` in this process (``toolchain.cli``'s own parser and command function,
stdout and stderr into ``train.log``), in a staging folder that is renamed into ``<out>/trials/<hash>/`` when the
trainer has finished and ``trial.json`` is written; a config already finished (its folder, or a complete trial in
the storage) is not trained again. The trial's value is ``metrics.json[spec.metric]``.

Threads: one per worker by default (numba's and torch's pools, and ``--threads`` for trainers that have it), so N
workers use N cores. Memory: glibc's malloc keeps freed blocks for the next trial's batches
(``experiments/sweep_malloc.py``).
"""
from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from experiments.sweep_malloc import tune_malloc
from experiments.sweep_spec import SweepSpec, TrialConfig, parse_trainer_argv, trainer_parsers
from experiments.sweep_state import (LOGS_DIR, TRIAL_JSON, TRIALS_DIR, clean_stale_staging, load_sweep, progress,
                                     read_finished, staging_dir, trial_dir, worker_id)
from experiments.sweep_storage import is_url, redact
from toolchain.atomic import atomic_write_text, ensure_output_folder
from toolchain.errors import SnncError

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")
SETTLE_S = 3.0  # s a worker waits before it believes a finished sweep's failures (a retry may be on its way)


def thread_env(threads: int) -> dict[str, str]:
    """Environment variables that limit numba, torch/OpenMP and BLAS to ``threads`` threads."""
    return {k: str(threads) for k in THREAD_ENV}


def limit_threads(threads: int) -> None:
    """Use at most ``threads`` threads in this process: the environment (for libraries not loaded yet), numba's
    and torch's pools."""
    if threads < 1:
        raise SnncError(f"--threads must be >= 1, got {threads}")
    for k, v in thread_env(threads).items():
        os.environ.setdefault(k, v)
    import numba
    import torch

    numba.set_num_threads(min(threads, int(numba.config.NUMBA_NUM_THREADS)))
    torch.set_num_threads(threads)


def process_start_unix() -> float | None:
    """When this process started (seconds since the epoch, from /proc; None where there is no /proc): with the
    trials' start and end times it shows a worker's start-up and idle time (benchmarks/sweep_scaling.py)."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def _queue_aware_grid_sampler():
    import optuna

    class QueueAwareGridSampler(optuna.samplers.GridSampler):
        """Optuna's GridSampler for a study whose grid points are queued (``enqueue_trial``: the sweep's
        longest-first order, re-runs of failed configs): such a trial has fixed parameters and no ``grid_id``,
        which GridSampler.after_trial (Optuna 5.0) indexes when one grid point is left (KeyError)."""

        def after_trial(self, study, trial, state, values) -> None:
            if "grid_id" in study._storage.get_trial_system_attrs(trial._trial_id):
                super().after_trial(study, trial, state, values)

    return QueueAwareGridSampler


def make_sampler(spec: SweepSpec):
    """GridSampler over the spec's grid (one that accepts queued trials), or TPE (seeded by the spec) for a
    search."""
    import optuna

    if spec.sampler == "grid":
        return _queue_aware_grid_sampler()({k: list(v) for k, v in spec.grid.items()}, seed=spec.seed)
    return optuna.samplers.TPESampler(seed=spec.seed + os.getpid())


def suggest(trial, spec: SweepSpec) -> dict:
    """The trial's point of the grid / search space, {flag: value}.

    A queued grid trial (``snnc sweep run`` queues the grid longest first; retries copy the queue entry) takes its
    point from the queue without recording it as Optuna parameters: Optuna fixes a categorical parameter's choices
    for the whole study, so recording them would refuse every point of a grid later extended with new values.
    Its point is in the trial's user attribute ``config``."""
    if spec.sampler == "grid":
        fixed = trial.study._storage.get_trial_system_attrs(trial._trial_id).get("fixed_params") or {}
        if set(spec.params) <= set(fixed):
            return {k: fixed[k] for k in spec.params}
        return {k: trial.suggest_categorical(k, list(spec.grid[k])) for k in spec.params}
    out = {}
    for k in spec.params:
        d = spec.search[k]
        if "choices" in d:
            out[k] = trial.suggest_categorical(k, list(d["choices"]))
        elif d["int"]:
            out[k] = trial.suggest_int(k, d["low"], d["high"], step=d.get("step", 1), log=d["log"])
        else:
            out[k] = trial.suggest_float(k, d["low"], d["high"], step=d.get("step"), log=d["log"])
    return out


def _options(parser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


class TrialRunner:
    """Runs one config of a sweep into its folder (see the module docstring)."""

    def __init__(self, spec: SweepSpec, out: Path, threads: int, log: Callable[[str], None]):
        self.spec, self.out, self.threads, self.log = spec, out, threads, log
        self.parsers = trainer_parsers()

    def extra_flags(self, trainer: str) -> dict:
        """Flags added unless the spec sets them: --threads (this worker's count), --no-progress."""
        opts = _options(self.parsers[trainer]) if trainer in self.parsers else set()
        extra = {}
        if "--threads" in opts:
            extra["threads"] = self.threads
        if "--no-progress" in opts:
            extra["no-progress"] = True
        return extra

    def train(self, cfg: TrialConfig, number: int) -> dict:
        """Train ``cfg`` in a staging folder, then move it to ``<out>/trials/<hash>``; returns trial.json's dict.
        On any failure the staging folder is removed and its log kept as ``<out>/logs/trial-<n>-<hash>.log``."""
        h = cfg.hash
        stage = staging_dir(self.out, h, number)
        shutil.rmtree(stage, ignore_errors=True)
        ensure_output_folder(stage)
        argv = cfg.argv(out=stage, extra=self.extra_flags(cfg.trainer))
        t0, c0, started = time.perf_counter(), time.process_time(), time.time()
        log_path = stage / "train.log"
        try:
            args = parse_trainer_argv(argv, self.parsers)
            with open(log_path, "w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
                print(f"$ snnc {shlex.join(argv)}", flush=True)
                rc = int(args.func(args) or 0)
            if rc != 0:
                raise SnncError(f"`snnc {shlex.join(argv[:2])}` exited with {rc}; see the trial's train.log")
            metrics = self._metrics(stage)
            value = metrics.get(self.spec.metric)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                keys = ", ".join(k for k, v in metrics.items() if isinstance(v, (int, float)))
                raise SnncError(f"the trainer's metrics.json has no number {self.spec.metric!r} (numbers: {keys}); "
                                f"set metric in the spec to one of them")
            record = {"hash": h, "config": cfg.as_dict(), "argv": argv[:-2], "metric": self.spec.metric,
                      "value": float(value), "study": self.spec.name, "trial": number, "worker": worker_id(),
                      "threads": self.threads, "wall_s": time.perf_counter() - t0,
                      "cpu_s": time.process_time() - c0, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                      time.gmtime()),
                      "started_unix": started, "finished_unix": time.time(),
                      "worker_started_unix": process_start_unix()}
            atomic_write_text(stage / TRIAL_JSON, json.dumps(record, indent=2) + "\n")
            self._publish(stage, trial_dir(self.out, h))
            return record
        except BaseException:
            self._keep_log(log_path, number, h)
            shutil.rmtree(stage, ignore_errors=True)
            raise

    @staticmethod
    def _metrics(stage: Path) -> dict:
        try:
            d = json.loads((stage / "metrics.json").read_text())
        except (OSError, ValueError) as exc:
            raise SnncError(f"the trainer wrote no readable metrics.json in {stage} ({exc}); only trainers that "
                            f"write <out>/metrics.json can be swept") from None
        if not isinstance(d, dict):
            raise SnncError(f"{stage}/metrics.json is not a JSON object")
        return d

    @staticmethod
    def _publish(stage: Path, final: Path) -> None:
        """Rename the finished staging folder into place (atomic); if another worker finished the same config
        first, keep its folder."""
        try:
            os.rename(stage, final)
        except OSError:
            if read_finished(final.parent.parent, final.name) is not None:
                shutil.rmtree(stage, ignore_errors=True)
                return
            shutil.rmtree(final, ignore_errors=True)  # a folder without trial.json: not a finished trial
            os.rename(stage, final)

    def _keep_log(self, log_path: Path, number: int, h: str) -> None:
        with contextlib.suppress(OSError, SnncError):
            text = log_path.read_text(errors="replace")
            atomic_write_text(self.out / LOGS_DIR / f"trial-{number}-{h}.log", text)


class Objective:
    """The Optuna objective: the config's value, reused when the config is already finished. Remembers the trial
    it was running when the worker was interrupted (``interrupted``: the trial's storage id)."""

    def __init__(self, study, spec: SweepSpec, runner: TrialRunner, log: Callable[[str], None]):
        self.study, self.spec, self.runner, self.log = study, spec, runner, log
        self.interrupted: int | None = None

    def __call__(self, trial) -> float:
        import optuna
        from optuna.trial import TrialState

        spec, log = self.spec, self.log
        try:
            cfg = spec.config(suggest(trial, spec))
        except Exception as exc:
            trial.set_user_attr("error", f"cannot take the trial's grid point: {type(exc).__name__}: {exc}"[:2000])
            log(f"{worker_id()}: trial {trial.number} FAILED before training: {exc}")
            raise
        h = cfg.hash
        trial.set_user_attr("config_hash", h)
        trial.set_user_attr("config", cfg.as_dict())
        trial.set_user_attr("worker", worker_id())
        label = cfg.label(tuple(dict.fromkeys(("trainer",) + spec.params)))
        done = read_finished(self.runner.out, h)
        if done is not None:
            trial.set_user_attr("reused", "trial folder")
            log(f"{worker_id()}: trial {trial.number} [{label}] already finished ({h}): {spec.metric} "
                f"{done['value']:.6g}")
            return float(done["value"])
        for t in self.study.get_trials(deepcopy=False):
            if t.number == trial.number or t.user_attrs.get("config_hash") != h:
                continue
            if t.state == TrialState.COMPLETE:
                trial.set_user_attr("reused", f"trial {t.number}")
                return float(t.value)
            if t.state == TrialState.RUNNING and t.number < trial.number:
                raise optuna.TrialPruned(f"duplicate of trial {t.number}, which runs this config")
        log(f"{worker_id()}: trial {trial.number} [{label}] training ({h})")
        try:
            rec = self.runner.train(cfg, trial.number)
        except KeyboardInterrupt:
            self.interrupted = trial._trial_id
            trial.set_user_attr("error", "worker interrupted (Ctrl-C or SIGTERM)")
            trial.set_user_attr("interrupted", True)
            raise
        except Exception as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
            log(f"{worker_id()}: trial {trial.number} [{label}] FAILED: {exc}")
            raise
        log(f"{worker_id()}: trial {trial.number} [{label}] {spec.metric} {rec['value']:.6g} "
            f"({rec['wall_s']:.1f} s)")
        return rec["value"]

    def retry_interrupted(self) -> None:
        """Queue a retry of the trial this worker was running when it was interrupted, as Optuna's retry callback
        does for a stale trial (counted against ``max_retry``)."""
        import copy

        from optuna.trial import TrialState

        callback = self.study._storage.get_heartbeat_stale_trial_callback()
        if callback is None or self.interrupted is None:
            return
        t = self.study._storage.get_trial(self.interrupted)
        self.interrupted = None
        if t.state == TrialState.FAIL:
            callback(self.study, copy.deepcopy(t))


def default_poll_s(storage: str, spec: SweepSpec) -> float:
    """Seconds between looks at the storage while every open trial runs elsewhere: 1 s for a journal file (a look
    reads only the journal's new lines), min(5 s, heartbeat interval) for a database shared by many workers. The
    last trials' idle workers notice the end of the sweep within this time, so it adds to a sweep's wall time."""
    return 1.0 if not is_url(storage) else min(5.0, float(spec.heartbeat_interval))


def run_worker(storage: str, study_name: str, *, out: str | Path | None = None, threads: int = 1,
               poll_s: float | None = None, max_trials: int | None = None,
               log: Callable[[str], None] = print) -> int:
    """Serve the sweep ``study_name`` in ``storage`` until it is finished (or ``max_trials`` trials were run
    here). Returns 0 when every config is done, 1 when some failed for good."""
    import optuna

    limit_threads(threads)
    tune_malloc()  # trials reuse freed memory instead of faulting in fresh pages (experiments/sweep_malloc.py)
    study, spec, out0 = load_sweep(storage, study_name, heartbeat=True)
    study.sampler = make_sampler(spec)
    out = Path(out) if out is not None else out0
    ensure_output_folder(out / TRIALS_DIR)
    runner = TrialRunner(spec, out, threads, log)
    objective = Objective(study, spec, runner, log)
    poll_s = float(poll_s if poll_s is not None else default_poll_s(storage, spec))
    ran, settled = 0, False
    log(f"{worker_id()}: worker on sweep {spec.name} ({redact(storage)}), {threads} thread(s), trials in {out}")
    while True:
        optuna.storages.fail_stale_trials(study)
        clean_stale_staging(out)
        p = progress(study, spec, out)
        if p.finished and p.n_failed and not settled:
            # Optuna marks a stale trial failed first and queues its retry after (fail_stale_trials): another
            # worker may be between the two, so a sweep that looks finished with failures is read once more
            settled = True
            time.sleep(SETTLE_S)
            continue
        if p.finished or (max_trials is not None and ran >= max_trials):
            break
        settled = False
        if not p.can_start:
            time.sleep(poll_s)
            continue
        try:
            study.optimize(objective, n_trials=1, catch=(Exception,))
        except KeyboardInterrupt:
            objective.retry_interrupted()
            raise
        ran += 1
    log(f"{worker_id()}: {ran} trial(s) here; sweep {spec.name}: {p.counts()}")
    backend = getattr(study._storage, "_backend", study._storage)  # Optuna wraps an RDBStorage in a cache
    engine = getattr(backend, "engine", None)  # a database: close its connections
    if engine is not None:
        engine.dispose()
    return 0 if p.finished and p.n_failed == 0 else (1 if p.finished else 0)
