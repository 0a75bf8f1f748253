"""``snnc experiments fig3``: the paper's Fig. 3 as a sweep plus a collector (docs/sweeps.md).

Registered by ``toolchain/cli.py`` by module name; the sweep machinery and matplotlib load inside the command.
"""
from __future__ import annotations

import argparse

FIG3_EXAMPLES = """examples:
  snnc experiments fig3 --workers 2                                  # the paper's grid: 60 trials, 100 epochs
  snnc experiments fig3 --epochs 3 --datasets mnist --workers 2      # a shorter run of the same grid
  snnc experiments fig3 --epochs 1 --limit-train 200 --noise 0,0.4 --hidden 8 --datasets mnist   # a smoke run
  snnc experiments fig3 --collect-only                               # tables and figure from finished trials
  snnc experiments fig3 --workers 0 --storage postgresql://u:pw@db/sweeps   # create; workers: snnc sweep worker

writes <out>/fig3.toml (the sweep spec), <out>/trials/<hash>/ (one folder per trained model), and from the
finished trials <out>/fig3.csv, <out>/fig3.md and <out>/fig3.png. A re-run trains only what is missing.
"""


def _floats(text: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
    if not vals:
        raise argparse.ArgumentTypeError("give at least one value")
    return vals


def _ints(text: str) -> tuple[int, ...]:
    vals = _floats(text)
    if any(v != int(v) or v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"{text!r}: hidden sizes are whole numbers >= 1")
    return tuple(int(v) for v in vals)


def _datasets(text: str) -> tuple[str, ...]:
    from experiments.fig3 import DATASETS

    vals = tuple(x.strip() for x in text.split(",") if x.strip())
    bad = [v for v in vals if v not in DATASETS]
    if bad or not vals:
        raise argparse.ArgumentTypeError(f"datasets are {', '.join(DATASETS)} (comma-separated), got {text!r}")
    return vals


def register(subparsers) -> None:
    """Add ``experiments fig3``."""
    ex = subparsers.add_parser("experiments", help="the paper's experiments (sweeps + tables and figures)",
                               description="Experiments of Comsa et al. 2021 as commands.")
    sub = ex.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")
    f = sub.add_parser("fig3", help="test MSE of SNN and ANN vs noise, hidden 8/16/32, latency 1",
                       description="Fig. 3 of Comsa et al. 2021: trains the grid as a sweep (snnc sweep), then "
                                   "writes fig3.csv, fig3.md and fig3.png from the finished trials.",
                       epilog=FIG3_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("--epochs", type=int, default=100, help="epochs per model (paper: 100)")
    f.add_argument("--limit-train", type=int, default=None, help="first N training images (default: all)")
    f.add_argument("--limit-eval", type=int, default=None, help="first N validation and test images (default: all)")
    f.add_argument("--datasets", type=_datasets, default=("mnist", "fashion-mnist"),
                   help="comma-separated (default mnist,fashion-mnist)")
    f.add_argument("--noise", type=_floats, default=(0.0, 0.2, 0.4, 0.6, 0.8),
                   help="noise levels eta, comma-separated (default 0,0.2,0.4,0.6,0.8)")
    f.add_argument("--hidden", type=_ints, default=(8, 16, 32), help="hidden sizes (default 8,16,32)")
    f.add_argument("--workers", type=int, default=1, help="local worker processes (default 1; 0: create only)")
    f.add_argument("--threads", type=int, default=1, help="threads per worker (default 1)")
    f.add_argument("--storage", default=None, help="journal file or database URL (default <out>/sweep.journal)")
    f.add_argument("--out", default="runs/experiments/fig3", help="folder (default runs/experiments/fig3)")
    f.add_argument("--collect-only", action="store_true", help="only write the tables and figure from the "
                                                               "trials finished so far")
    f.set_defaults(func=_fig3)


def _fig3(args: argparse.Namespace) -> int:
    from pathlib import Path

    from experiments.fig3 import collect_fig3, fig3_spec, spec_toml
    from experiments.sweep_run import run_sweep
    from experiments.sweep_spec import load_spec
    from toolchain.atomic import atomic_write_text, ensure_output_folder
    from toolchain.errors import SnncError

    if args.epochs < 1:
        raise SnncError(f"--epochs must be >= 1, got {args.epochs}")
    out = Path(args.out)
    spec_path = out / "fig3.toml"
    rc = 0
    if args.collect_only:
        spec = load_spec(spec_path)
    else:
        spec = fig3_spec(epochs=args.epochs, limit_train=args.limit_train, limit_eval=args.limit_eval,
                         datasets=args.datasets, noises=args.noise, hidden=args.hidden)
        ensure_output_folder(out)
        atomic_write_text(spec_path, spec_toml(spec))
        rc = run_sweep(spec_path, workers=args.workers, storage=args.storage, out=out, threads=args.threads,
                       log=lambda s: print(s, flush=True))
        if args.workers == 0:
            return rc
    res = collect_fig3(spec, out)
    print((out / "fig3.md").read_text(), end="")
    print("wrote " + ", ".join(str(p) for p in res["paths"].values()))
    return rc
