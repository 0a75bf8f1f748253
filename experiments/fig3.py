"""Fig. 3 of Comsa et al. 2021: test MSE per pixel of the spiking (SNN) and ANN autoencoders vs input noise, for
hidden sizes 8/16/32 at target latency 1, on MNIST and Fashion-MNIST.

:func:`fig3_spec` is the grid as a sweep spec (trainer temporal|ann x dataset x noise x hidden; the SNN at
``--latency 1``, each trainer with the tuned row of its condition; the ANN with that row's batch size and learning
rate; ``metric = test_mse`` of the best-on-validation epoch). :func:`collect_fig3` reads the finished trials of
such a sweep and writes ``fig3.csv`` (one row per trial), ``fig3.md`` (a table per dataset, noise across, plus
the SNN/ANN ratio the paper's claim "similar reconstruction loss" is about) and ``fig3.png`` (one panel per
dataset; colour = hidden size, solid = SNN, dashed = ANN). Configs without a finished trial are listed as missing.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from experiments.sweep_spec import SweepSpec, spec_from_dict
from experiments.sweep_state import TRIAL_JSON, trial_dir
from toolchain.atomic import atomic_write_bytes, atomic_write_text, ensure_output_folder
from toolchain.errors import SnncError

NOISES = (0.0, 0.2, 0.4, 0.6, 0.8)
HIDDEN = (8, 16, 32)
DATASETS = ("mnist", "fashion-mnist")
MODEL_NAMES = {"temporal": "snn", "ann": "ann"}
CSV_FIELDS = ("dataset", "model", "hidden", "noise", "latency", "epochs", "n_train", "data_source", "test_mse",
              "val_mse", "best_epoch", "trial_wall_s", "hash")


def fig3_spec(*, epochs: int = 100, limit_train: int | None = None, limit_eval: int | None = None,
              datasets: tuple[str, ...] = DATASETS, noises: tuple[float, ...] = NOISES,
              hidden: tuple[int, ...] = HIDDEN, name: str = "fig3") -> SweepSpec:
    """The Fig. 3 grid as a validated sweep spec (the paper: 100 epochs, full datasets)."""
    args: dict = {"epochs": epochs, "temporal": {"latency": 1}}
    if limit_train is not None:
        args["limit-train"] = limit_train
    if limit_eval is not None:
        args["limit-eval"] = limit_eval
    return spec_from_dict({"name": name, "metric": "test_mse", "args": args,
                           "grid": {"trainer": ["temporal", "ann"], "dataset": list(datasets),
                                    "noise": list(noises), "hidden": list(hidden)}}, origin="fig3")


def spec_toml(spec: SweepSpec) -> str:
    """The spec as a TOML file (what ``snnc experiments fig3`` writes next to its results)."""
    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return repr(v)

    d = spec.to_dict()
    lines = [f"{k} = {val(v)}" for k, v in d.items() if not isinstance(v, dict)]
    args = d.get("args", {})
    lines += ["", "[args]"] + [f"{k} = {val(v)}" for k, v in args.items() if not isinstance(v, dict)]
    for t, a in args.items():
        if isinstance(a, dict):
            lines += ["", f"[args.{t}]"] + [f"{k} = {val(v)}" for k, v in a.items()]
    lines += ["", "[grid]"] + [f"{k} = {val(v)}" for k, v in d["grid"].items()]
    return "\n".join(lines) + "\n"


def fig3_rows(spec: SweepSpec, out: str | Path) -> tuple[list[dict], list[str]]:
    """(one row per finished trial of the grid, labels of the configs without a finished trial)."""
    rows, missing = [], []
    for cfg in spec.configs():
        d = trial_dir(out, cfg.hash)
        args = dict(cfg.args)
        try:
            rec = json.loads((d / TRIAL_JSON).read_text())
            metrics = json.loads((d / "metrics.json").read_text())
        except (OSError, ValueError):
            missing.append(cfg.label(("trainer", "dataset", "hidden", "noise")))
            continue
        rows.append({"dataset": args["dataset"], "model": MODEL_NAMES.get(cfg.trainer, cfg.trainer),
                     "hidden": int(args["hidden"]), "noise": float(args["noise"]),
                     "latency": args.get("latency", 1), "epochs": int(args["epochs"]),
                     "n_train": metrics.get("n_train"), "data_source": metrics.get("data_source"),
                     "test_mse": float(metrics["test_mse"]), "val_mse": metrics.get("val_mse"),
                     "best_epoch": metrics.get("best_epoch"), "trial_wall_s": round(float(rec["wall_s"]), 2),
                     "hash": cfg.hash})
    return rows, missing


def _csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    return buf.getvalue()


def _markdown(rows: list[dict], missing: list[str], spec: SweepSpec) -> str:
    noises = sorted({r["noise"] for r in rows})
    lines = ["# Fig. 3: test MSE per pixel vs input noise (latency 1)", ""]
    sources = sorted({f"{r['dataset']} {r['data_source']} ({r['n_train']} training images)" for r in rows})
    epochs = sorted({r["epochs"] for r in rows})
    lines.append(f"{len(rows)} trials, {', '.join(map(str, epochs))} epoch(s), data: {'; '.join(sources)}; "
                 f"best-on-validation epoch tested; summed trial time {sum(r['trial_wall_s'] for r in rows):.0f} s.")
    for ds in [d for d in DATASETS if any(r["dataset"] == d for r in rows)]:
        lines += ["", f"## {ds}", "", "| model | hidden | " + " | ".join(f"noise {n:g}" for n in noises) + " |",
                  "|---|---|" + "---|" * len(noises)]
        cells = {(r["model"], r["hidden"], r["noise"]): r["test_mse"] for r in rows if r["dataset"] == ds}
        for h in sorted({k[1] for k in cells}):
            for m in ("snn", "ann"):
                if any(k[:2] == (m, h) for k in cells):
                    vals = [cells.get((m, h, n)) for n in noises]
                    lines.append(f"| {m} | {h} | " + " | ".join("-" if v is None else f"{v:.4f}" for v in vals)
                                 + " |")
        ratios = [cells[("snn", h, n)] / cells[("ann", h, n)] for (m, h, n) in cells
                  if m == "snn" and ("ann", h, n) in cells and cells[("ann", h, n)] > 0]
        if ratios:
            lines += ["", f"SNN / ANN test MSE over the {len(ratios)} conditions with both: median "
                          f"{sorted(ratios)[len(ratios) // 2]:.2f}, range {min(ratios):.2f}-{max(ratios):.2f} "
                          f"(paper's claim: similar)."]
    if missing:
        lines += ["", f"Missing ({len(missing)} configs without a finished trial): " + "; ".join(missing)]
    return "\n".join(lines) + "\n"


def _figure_png(rows: list[dict]) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    datasets = [d for d in DATASETS if any(r["dataset"] == d for r in rows)]
    fig = Figure(figsize=(5.0 * len(datasets), 3.8))
    FigureCanvasAgg(fig)
    colours = {8: "tab:blue", 16: "tab:orange", 32: "tab:green"}
    for i, ds in enumerate(datasets):
        ax = fig.add_subplot(1, len(datasets), i + 1)
        for h in sorted({r["hidden"] for r in rows}):
            for m, style in (("snn", "-"), ("ann", "--")):
                pts = sorted((r["noise"], r["test_mse"]) for r in rows
                             if r["dataset"] == ds and r["hidden"] == h and r["model"] == m)
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o", ms=3,
                            color=colours.get(h), label=f"{m} {h}")
        ax.set_title(ds)
        ax.set_xlabel("noise eta (time units)")
        ax.set_ylabel("test MSE per pixel")
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def collect_fig3(spec: SweepSpec, out: str | Path, results: str | Path | None = None) -> dict:
    """Write fig3.csv, fig3.md and fig3.png into ``results`` (default ``out``) from the finished trials in
    ``out``; returns {"rows", "missing", "paths"}. SnncError when no trial has finished."""
    rows, missing = fig3_rows(spec, out)
    if not rows:
        raise SnncError(f"no finished Fig. 3 trial in {out}; run `snnc experiments fig3` (or its sweep) first")
    folder = ensure_output_folder(Path(results) if results is not None else Path(out))
    rows.sort(key=lambda r: (r["dataset"], r["model"], r["hidden"], r["noise"]))
    paths = {"csv": folder / "fig3.csv", "md": folder / "fig3.md", "png": folder / "fig3.png"}
    png = _figure_png(rows)
    atomic_write_text(paths["csv"], _csv_text(rows))
    atomic_write_text(paths["md"], _markdown(rows, missing, spec))
    atomic_write_bytes(paths["png"], png)
    return {"rows": rows, "missing": missing, "paths": paths}
