"""ANN rows of Roy et al. 2019's Table 1: n-H-n ReLU autoencoders (models/rate_ann.py), 1 epoch, plain SGD (lr 0.1
MNIST / 5e-3 Fashion-MNIST, weight decay 1e-4) and Adam, scored like the SNN's MSE (z-scored per image) on the
test split. One JSON line per run, then one with all of them.

    SNNC_DATA=/path/to/datasets python benchmarks/rate_ann_table1.py [--limit-train N]

Paper (Table 1): ANN 0.226 / 0.416 / 0.418, ANN + Adam 0.122 / 0.300 / 0.387 (MNIST 196, Fashion 512, 1024).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RUNS = (("mnist", 196), ("fashion-mnist", 512), ("fashion-mnist", 1024))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit-train", type=int, default=None)
    ap.add_argument("--limit-eval", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--adam-lr", type=float, default=None, help="Adam step size (default models.rate_ann.ADAM_LR)")
    args = ap.parse_args(argv)

    from models.datasets import load_dataset
    from models.rate_ann import RateAnnConfig, train_rate_ann

    rows = []
    for dataset, hidden in RUNS:
        tr = load_dataset(dataset, "train", limit=args.limit_train)
        te = load_dataset(dataset, "test", limit=args.limit_eval)
        for opt in ("sgd", "adam"):
            cfg = RateAnnConfig(dataset=dataset, hidden=hidden, optimizer=opt, epochs=args.epochs,
                                lr=args.adam_lr if opt == "adam" else None)
            r = train_rate_ann(cfg, tr.images, te.images)
            row = {"dataset": dataset, "hidden": hidden, "optimizer": opt, "lr": r["lr"],
                   "weight_decay": r["weight_decay"], "epochs": args.epochs, "n_train": len(tr), "n_test": len(te),
                   "data_source": tr.source, "test_pixel_mse": round(r["pixel_mse"], 4),
                   "cpu_seconds": round(r["cpu_seconds"], 1)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    print(json.dumps({"rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
