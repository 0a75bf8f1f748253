"""``snnc sweep run|worker|status``: grids and searches of training runs on Optuna (docs/sweeps.md).

Registered by ``toolchain/cli.py`` by module name, like every room's commands; Optuna, torch and the trainers are
imported inside the command functions, so ``snnc --help`` stays fast.
"""
from __future__ import annotations

import argparse

SWEEP_EXAMPLES = """examples:
  snnc sweep run sweep.toml --workers 2                 # grid or search of the spec, 2 local worker processes
  snnc sweep run sweep.toml --storage postgresql://user:pw@db-host/sweeps --workers 0   # create it only
  snnc sweep worker --storage postgresql://user:pw@db-host/sweeps --study fig3   # on each machine, any number
  snnc sweep status sweep.toml
  snnc sweep status --storage runs/sweeps/fig3/sweep.journal --study fig3

a spec (TOML or JSON) names a trainer (`snnc train <trainer>`), flags for every trial ([args]) and a grid
([grid]) or a search space ([search], sampler = "tpe", n_trials); see docs/sweeps.md. Trials are written to
<out>/trials/<config hash>/; a finished config is never trained again, a dead worker's trial is retried once.
"""


def _log(text: str) -> None:
    print(text, flush=True)


def register(subparsers) -> None:
    """Add ``sweep`` with ``run``, ``worker`` and ``status``."""
    sweep = subparsers.add_parser("sweep", help="run grids and searches of training runs (Optuna), on one or many "
                                                "machines", description="Sweeps of training runs on Optuna.",
                                  epilog=SWEEP_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = sweep.add_subparsers(dest="sweep_command", required=True, metavar="SWEEP_COMMAND")

    r = sub.add_parser("run", help="create or continue a sweep from its spec and run local workers",
                       epilog=SWEEP_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("spec", help="sweep spec file (.toml or .json)")
    r.add_argument("--workers", type=int, default=1,
                   help="local worker processes (default 1; 0: only create the study for workers started elsewhere)")
    r.add_argument("--storage", default=None,
                   help="journal file path or database URL (postgresql://..., sqlite:///...); default "
                        "<out>/sweep.journal")
    r.add_argument("--out", default=None, help="sweep folder (default: the spec's out, else runs/sweeps/<name>)")
    r.add_argument("--threads", type=int, default=1, help="threads per worker (default 1: N workers use N cores)")
    r.set_defaults(func=_run)

    w = sub.add_parser("worker", help="serve a sweep from its storage until it is finished (any machine)",
                       epilog=SWEEP_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    w.add_argument("--storage", required=True, help="the sweep's journal file or database URL")
    w.add_argument("--study", required=True, help="the sweep's name (the spec's name)")
    w.add_argument("--out", default=None,
                   help="folder for the trial folders (default: the one the sweep was created with; on another "
                        "machine, a local or shared folder)")
    w.add_argument("--threads", type=int, default=1, help="threads for this worker (default 1)")
    w.add_argument("--max-trials", type=int, default=None, help="stop after this many trials (default: when the "
                                                                "sweep is finished)")
    w.add_argument("--poll", type=float, default=None,
                   help="seconds between looks at the storage while other workers hold every open trial "
                        "(default 1 for a journal file, min(5, heartbeat interval) for a database)")
    w.add_argument("--fast-exit", action="store_true",
                   help="when the sweep is finished, end the process at once instead of tearing the interpreter down "
                        "(about 1 CPU s with torch loaded); `snnc sweep run` starts its local workers with it")
    w.set_defaults(func=_worker)

    s = sub.add_parser("status", help="show a sweep's progress", epilog=SWEEP_EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("spec", nargs="?", default=None, help="sweep spec file (or give --storage and --study)")
    s.add_argument("--storage", default=None, help="journal file or database URL (default: the spec's)")
    s.add_argument("--study", default=None, help="sweep name (default: the spec's)")
    s.add_argument("--out", default=None, help="sweep folder (default: the one stored with the sweep)")
    s.set_defaults(func=_status)


def _run(args: argparse.Namespace) -> int:
    from experiments.sweep_run import run_sweep

    return run_sweep(args.spec, workers=args.workers, storage=args.storage, out=args.out, threads=args.threads,
                     log=_log)


def _worker(args: argparse.Namespace) -> int:
    import os

    from experiments.sweep_worker import run_worker, thread_env
    from toolchain.errors import SnncError

    if args.threads < 1 or (args.max_trials is not None and args.max_trials < 1) or \
            (args.poll is not None and not args.poll > 0):
        raise SnncError("--threads and --max-trials must be >= 1 and --poll > 0")
    for k, v in thread_env(args.threads).items():  # before numba/torch are loaded
        os.environ.setdefault(k, v)
    rc = run_worker(args.storage, args.study, out=args.out, threads=args.threads, poll_s=args.poll,
                    max_trials=args.max_trials, log=_log)
    if args.fast_exit:
        # everything the worker wrote is on disk or committed (atomic trial folders, the storage's writes); what
        # a normal exit would add is Python's teardown of torch, numba and sympy modules, ~1 CPU s per process
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    return rc


def _status(args: argparse.Namespace) -> int:
    from experiments.sweep_run import sweep_status

    return sweep_status(spec_path=args.spec, storage=args.storage, study=args.study, out=args.out, log=_log)
