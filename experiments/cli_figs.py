"""``snnc experiments fig4|fig5|fig6|fig7|fig8-10|fig11`` (Comsa et al. 2021) and ``snnc report experiments DIR``.

Every figure command makes sure its models exist (a sweep of ``snnc train`` runs in ``--runs``, default Fig. 3's
folder, so models Fig. 3 trained with the same settings are reused), then writes ``<out>/figN.png``, ``.csv`` and
``.md``. ``--workers 0`` trains nothing and uses only the finished models. Heavy imports happen inside the commands.
"""
from __future__ import annotations

import argparse

from experiments.cli_experiments import _datasets, _floats, _ints

FIGURES = {
    "fig4": "one test digit reconstructed at each noise level (SNN hidden 32, latency 1)",
    "fig5": "t-SNE of the SNN's hidden spike-time embeddings per noise and hidden size",
    "fig6": "interpolation between four test items in embedding vs pixel space (hidden 32, noise 0)",
    "fig7": "RBF-SVM accuracy on SNN/ANN embeddings vs the original images per noise and hidden size",
    "fig8-10": "spike-time distributions, output potentials, weight distributions at latency 1 vs 16",
    "fig11": "inverted-brightness images: SNN vs ReLU-sigmoid and Gaussian-Gaussian ANNs (hidden 32)",
}
EPILOG = """examples:
  snnc experiments {fig} --epochs 3 --workers 2          # train what is missing (3 epochs), then the figure
  snnc experiments {fig} --epochs 1 --limit-train 200 --limit-eval 100   # a smoke run on few images
  snnc experiments {fig} --epochs 3 --workers 0          # only models already trained with these settings

models: <runs>/trials/<hash>/ (a sweep folder, default runs/experiments/fig3: the same settings reuse Fig. 3's
models); outputs: <out>/{stem}.png, {stem}.csv, {stem}.md (written as one set).
"""


def register_figures(sub) -> None:
    """Add the figure commands to ``snnc experiments``."""
    for fig, help_text in FIGURES.items():
        stem = fig.replace("-", "_")
        p = sub.add_parser(fig, help=help_text, description=f"{fig} of Comsa et al. 2021: {help_text}.",
                           epilog=EPILOG.format(fig=fig, stem=stem),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--epochs", type=int, default=100, help="epochs per model (paper: 100)")
        p.add_argument("--limit-train", type=int, default=None, help="first N training images (default: all)")
        p.add_argument("--limit-eval", type=int, default=None,
                       help="first N validation and test images, for training and for the figure (default: all)")
        p.add_argument("--workers", type=int, default=1, help="local sweep workers for missing models (default 1; "
                                                              "0: use finished models only)")
        p.add_argument("--threads", type=int, default=1, help="threads per worker (default 1)")
        p.add_argument("--storage", default=None, help="journal file or database URL (default <runs>/sweep.journal)")
        p.add_argument("--runs", default="runs/experiments/fig3", help="models (sweep) folder "
                                                                        "(default runs/experiments/fig3)")
        p.add_argument("--out", default=f"runs/experiments/{stem}", help=f"output folder (default "
                                                                         f"runs/experiments/{stem})")
        p.add_argument("--seed", type=int, default=0, help="seed of input noise and t-SNE (default 0)")
        if fig in ("fig4", "fig5", "fig7", "fig11"):
            p.add_argument("--noise", type=_floats, default=(0.0, 0.2, 0.4, 0.6, 0.8),
                           help="noise levels eta, comma-separated (default 0,0.2,0.4,0.6,0.8)")
        if fig in ("fig5", "fig7"):
            p.add_argument("--hidden", type=_ints, default=(8, 16, 32), help="hidden sizes (default 8,16,32)")
        if fig == "fig4":
            p.add_argument("--index", type=int, default=0, help="the test digit shown (default 0)")
        if fig == "fig5":
            p.add_argument("--points", type=int, default=1000, help="test images in the t-SNE (default 1000)")
        if fig == "fig6":
            p.add_argument("--datasets", type=_datasets, default=("mnist", "fashion-mnist"),
                           help="comma-separated (default mnist,fashion-mnist)")
            p.add_argument("--steps", type=int, default=7, help="grid points per side of the interpolation "
                                                                "(default 7)")
        if fig == "fig7":
            p.add_argument("--svm-train", type=int, default=2000, help="training images the SVM is fitted on "
                                                                       "(default 2000)")
        if fig == "fig8-10":
            p.add_argument("--latencies", type=_floats, default=(1.0, 16.0), help="target latencies (default 1,16)")
        p.set_defaults(func=_run_figure, figure=fig)


def register_report(subparsers) -> None:
    """Add ``snnc report experiments DIR``."""
    r = subparsers.add_parser("report", help="collect finished results into one page",
                              description="Collect finished results into one markdown + HTML page.")
    sub = r.add_subparsers(dest="report_kind", required=True, metavar="KIND")
    e = sub.add_parser("experiments", help="every figure (figN.md + png) under DIR into report.md / report.html",
                       description="Collect the finished figure outputs under DIR (fig3.md, fig4.md, ... with "
                                   "their PNGs, any depth) into DIR/report.md and DIR/report.html.")
    e.add_argument("dir", help="folder holding figure outputs, e.g. runs/experiments")
    e.add_argument("--out", default=None, help="folder for report.md/html (default DIR)")
    e.set_defaults(func=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    from experiments.report import write_report

    paths = write_report(args.dir, args.out)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _run_figure(args: argparse.Namespace) -> int:
    from experiments.paper_common import TrainSettings, ensure_models

    settings = TrainSettings(args.epochs, args.limit_train, args.limit_eval)
    settings.check()
    fig = args.figure
    if fig == "fig4":
        from experiments.fig4 import collect_fig4 as collect, fig4_spec

        spec, kw = fig4_spec(settings, args.noise), {"index": args.index}
    elif fig == "fig5":
        from experiments.fig5 import collect_fig5 as collect, fig5_spec

        spec, kw = fig5_spec(settings, args.noise, args.hidden), {"points": args.points}
    elif fig == "fig6":
        from experiments.fig6 import collect_fig6 as collect, fig6_spec

        spec, kw = fig6_spec(settings, args.datasets), {"steps": args.steps}
    elif fig == "fig7":
        from experiments.fig7 import collect_fig7 as collect, fig7_spec

        spec, kw = fig7_spec(settings, args.noise, args.hidden), {"svm_train": args.svm_train}
    elif fig == "fig8-10":
        from experiments.fig8_10 import collect_fig8_10 as collect, fig8_10_spec

        spec, kw = fig8_10_spec(settings, args.latencies), {}
    else:
        from experiments.fig11 import collect_fig11 as collect, fig11_spec

        spec, kw = fig11_spec(settings, args.noise), {"workers": args.workers}
    rc = ensure_models(spec, args.runs, workers=args.workers, threads=args.threads, storage=args.storage,
                       log=lambda s: print(s, flush=True))
    res = collect(spec, args.runs, args.out, settings, seed=args.seed, **kw)
    md = next(p for name, p in res["paths"].items() if name.endswith(".md"))
    print(md.read_text(), end="")
    print("wrote " + ", ".join(str(p) for p in res["paths"].values()))
    return rc
