"""``snnc sweep run``: create (or continue) a sweep's study from its spec and serve it with local worker processes;
``snnc sweep status``: where a sweep stands.

The local workers are ``snnc sweep worker`` processes (one thread each by default). They are tied to this process:
Ctrl-C or SIGTERM stops them (their trials are queued again), and on Linux the kernel kills them if this process
dies without cleaning up (``PR_SET_PDEATHSIG``), so no worker outlives ``snnc sweep run``. Workers on other
machines join the same study with ``snnc sweep worker --storage URL --study NAME`` (docs/sweeps.md).
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from experiments.sweep_order import longest_first
from experiments.sweep_spec import SweepSpec, load_spec
from experiments.sweep_state import Progress, create_study, load_sweep, progress
from experiments.sweep_storage import default_storage, redact
from experiments.sweep_worker import thread_env
from toolchain.atomic import ensure_output_folder
from toolchain.errors import SnncError

PR_SET_PDEATHSIG = 1
STOP_GRACE_S = 30.0


def default_out(spec: SweepSpec) -> Path:
    """The sweep's folder: the spec's ``out``, else ``runs/sweeps/<name>``."""
    return Path(spec.out) if spec.out else Path("runs") / "sweeps" / spec.name


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def worker_command(storage: str, study: str, out: Path, threads: int) -> list[str]:
    """The argv of one local ``snnc sweep worker`` process (``--fast-exit``: it ends without the interpreter's
    teardown once the sweep is finished, so the sweep ends sooner)."""
    return [sys.executable, "-m", "toolchain.cli", "sweep", "worker", "--storage", storage, "--study", study,
            "--out", str(out), "--threads", str(threads), "--fast-exit"]


def start_workers(n: int, storage: str, study: str, out: Path, threads: int) -> list[subprocess.Popen]:
    """Start ``n`` worker processes that die with this one (Linux); each limited to ``threads`` threads."""
    env = {**os.environ, **thread_env(threads)}
    procs = []
    try:
        for _ in range(n):
            procs.append(subprocess.Popen(worker_command(storage, study, out, threads), env=env,
                                          preexec_fn=_die_with_parent))
    except BaseException:
        stop_workers(procs)
        raise
    return procs


def stop_workers(procs: list[subprocess.Popen], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM every live worker (each fails and re-queues its trial), wait up to ``grace_s``, then SIGKILL."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run_sweep(spec_path: str | Path, *, workers: int = 1, storage: str | None = None, out: str | Path | None = None,
              threads: int = 1, log: Callable[[str], None] = print) -> int:
    """Create or continue the sweep of ``spec_path`` and serve it with ``workers`` local processes (0: only create
    the study, for workers started elsewhere). Returns 0 when every trial is done, 1 when some failed or the
    sweep is not finished."""
    if workers < 0 or threads < 1:
        raise SnncError(f"--workers must be >= 0 and --threads >= 1 (got {workers}, {threads})")
    spec = load_spec(spec_path)
    out = ensure_output_folder(Path(out) if out is not None else default_out(spec))
    storage = storage or default_storage(out)
    study = create_study(spec, storage, out)
    p = progress(study, spec, out)
    log(f"sweep {spec.name}: {p.total} trials ({spec.sampler}), {p.counts()}; storage {redact(storage)}; "
        f"trials in {out}")
    again = requeue_failed(study, spec, p)
    if again:
        log(f"queued {again} failed config(s) again (a re-run retries what failed)")
    queued = queue_pending(study, spec, p)
    if again or queued:
        p = progress(study, spec, out)
    if workers == 0:
        log(f"no local workers; start workers with: snnc sweep worker --storage {redact(storage)} --study "
            f"{spec.name}")
        return 0
    if p.finished:
        log("nothing to do: every trial of this sweep has finished")
    else:
        t0 = time.perf_counter()
        procs = start_workers(workers, storage, spec.name, out, threads)
        try:
            for proc in procs:
                proc.wait()
        finally:
            stop_workers(procs)
        log(f"{workers} worker(s) finished in {time.perf_counter() - t0:.1f} s")
        broken = [f"pid {p.pid}: exit {p.returncode}" for p in procs if p.returncode not in (0, 1)]
        if broken:
            log(f"worker(s) stopped with an error ({'; '.join(broken)}); their messages are above")
    study, spec, _ = load_sweep(storage, spec.name)
    p = progress(study, spec, out)
    log(format_status(spec, p))
    return 0 if p.finished and p.n_failed == 0 else 1


def requeue_failed(study, spec: SweepSpec, p: Progress) -> int:
    """Queue one new trial for every grid config that failed for good (a re-run of the spec retries them after
    the cause was fixed); returns how many. Searches are not re-queued (they draw new trials)."""
    if spec.sampler != "grid":
        return 0
    n = 0
    for row in p.rows:
        if row.state == "failed" and row.config is not None:
            args = {"trainer": row.config.trainer, **dict(row.config.args)}
            params = {k: args[k] for k in spec.params}
            study.enqueue_trial(params, user_attrs={"config_hash": row.hash, "config": row.config.as_dict()},
                                skip_if_exists=False)
            n += 1
    return n


def queue_pending(study, spec: SweepSpec, p: Progress) -> int:
    """Queue one trial for every grid config nobody has started (no trial, no finished folder), longest first
    (experiments/sweep_order.py), so that every worker, here or elsewhere, takes the long trials first and the short
    ones fill the end; returns how many. Searches draw their trials from TPE instead."""
    if spec.sampler != "grid" or spec.order != "longest-first":
        return 0
    pending = [row.config for row in p.rows if row.state == "pending" and row.config is not None]
    for cfg in longest_first(pending):
        args = {"trainer": cfg.trainer, **dict(cfg.args)}
        study.enqueue_trial({k: args[k] for k in spec.params},
                            user_attrs={"config_hash": cfg.hash, "config": cfg.as_dict()}, skip_if_exists=False)
    return len(pending)


def format_status(spec: SweepSpec, p: Progress) -> str:
    """A table of every config (grid) or trial config so far (search) with state, value and trials."""
    keys = ("trainer",) + tuple(k for k in spec.params if k != "trainer")
    head = ["hash", *keys, "state", spec.metric, "trials"]
    rows = []
    for r in p.rows:
        d = {"trainer": r.config.trainer, **dict(r.config.args)} if r.config else {}
        rows.append([r.hash, *(str(d.get(k, "?")) for k in keys), r.state,
                     f"{r.value:.6g}" if r.value is not None else "-", ",".join(map(str, r.trials)) or "-"])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    lines = [f"sweep {spec.name} ({spec.sampler}): {p.counts()}"]
    lines += ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip() for line in [head, *rows]]
    for r in p.rows:
        if r.state == "failed" and r.error:
            lines.append(f"failed {r.hash}: {r.error}")
    if spec.sampler == "tpe":
        done = [r for r in p.rows if r.value is not None]
        if done:
            best = (min if spec.direction == "minimize" else max)(done, key=lambda r: r.value)
            what = best.config.label() if best.config else ""
            lines.append(f"best: {best.hash} {spec.metric} {best.value:.6g} ({what})")
    return "\n".join(lines)


def sweep_status(*, spec_path: str | Path | None = None, storage: str | None = None, study: str | None = None,
                 out: str | Path | None = None, log: Callable[[str], None] = print) -> int:
    """Print the status of a sweep named by its spec (default storage in its folder) or by storage + study."""
    if spec_path is not None:
        spec = load_spec(spec_path, check_flags=False)
        folder = Path(out) if out is not None else default_out(spec)
        storage = storage or default_storage(folder)
        study = study or spec.name
    if storage is None or study is None:
        raise SnncError("name the sweep: `snnc sweep status SPEC`, or `--storage URL --study NAME`")
    if not ("://" in storage or Path(storage).exists()):
        raise SnncError(f"no sweep storage at {storage}; run `snnc sweep run SPEC` first or pass --storage")
    st, spec, out0 = load_sweep(storage, study)
    log(format_status(spec, progress(st, spec, Path(out) if out is not None else out0)))
    return 0
