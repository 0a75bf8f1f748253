"""How far the one-epoch outcome of the online rule moves under perturbations far below float32 rounding.

For every seed and every perturbation, one epoch of the online rule exactly as ``snnc train rate`` runs it (same
seeded initial weights, permutation and Bernoulli batches; the validation pass is skipped: it draws from its own
seed and changes nothing), then the trainer's test metrics (z-scored Spike-MSE and MSE, test inputs drawn from
seed + 2). Perturbations: ``--ulps K`` moves every float32 initial weight of W1 K units in the last place up
(K = 0: the plain run, which equals ``snnc train rate``'s figures); ``--lr-scales`` multiplies the learning
rate (0.9999934 is what the float32 constants 1 - b = float32(1 - 0.999) of the wave-4 regression amounted to,
docs/training.md). The spread of these runs against the spread over seeds says whether a difference between two
implementations is a change or the rule's chaos.

    SNNC_DATA=/path/to/datasets python benchmarks/rate_online_spread.py --preset fmnist-1024 --seeds 0,1 \\
        --ulps 0,1 --limit-eval 2000 --threads 1

Each run prints a JSON row; the last line is JSON with ``runs`` and, per seed, the ``spread`` (max - min Spike-MSE).
One Fashion-1024 run costs one training epoch (~5-10 CPU minutes).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # as train_speed_rate.py: before torch loads
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def one_run(cfg, train, test, ulps: int, lr_scale: float) -> dict:
    """One epoch (the trainer's data pipeline for cfg.seed) with W1 moved ``ulps`` float32 ulps up and lr scaled;
    returns the trainer's test metrics, the mean training loss and the CPU seconds."""
    import numpy as np
    import torch

    from models.rate_encoding import bernoulli_encode
    from models.rate_model import make_graph
    from models.rate_online import OnlineRule, online_batch
    from models.rate_trainer import evaluate_graph, init_weights, model_metadata

    rng = np.random.default_rng(cfg.seed)
    w1, w2 = init_weights(cfg, rng)
    tw1, tw2 = torch.tensor(w1, dtype=torch.float32), torch.tensor(w2, dtype=torch.float32)
    a = tw1.numpy()
    for _ in range(ulps):
        a[:] = np.nextafter(a, np.float32(np.inf))
    rule = OnlineRule(lr=cfg.lr * lr_scale, n_shrink=float(cfg.arch[0]))
    n_batches = len(train) // cfg.batch_size
    perm = rng.permutation(len(train))
    c0, loss = time.process_time(), 0.0
    for b in range(n_batches):
        idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
        x = bernoulli_encode(train.images[idx], cfg.steps, cfg.p_scale, rng)
        loss += online_batch(tw1, tw2, torch.from_numpy(np.ascontiguousarray(x.transpose(1, 0, 2))), rule)["loss"]
    cpu = time.process_time() - c0
    g = make_graph(tw1.numpy().astype(np.float64), tw2.numpy().astype(np.float64), model_metadata(cfg))
    tm, _ = evaluate_graph(g, test.images, cfg.steps, cfg.p_scale, cfg.seed + 2)
    return {"seed": cfg.seed, "ulps": ulps, "lr_scale": lr_scale, "test_spike_mse": tm["spike_mse"],
            "test_pixel_mse": tm["pixel_mse"], "train_loss": loss / max(1, n_batches), "cpu_seconds": round(cpu, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="fmnist-1024", help="a rate preset (mnist-196, fmnist-512, fmnist-1024)")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds")
    ap.add_argument("--ulps", default="0,1", help="comma-separated float32 ulps added to the initial W1")
    ap.add_argument("--lr-scales", default="1", help="comma-separated factors of the learning rate")
    ap.add_argument("--limit-train", type=int, default=None, help="first N training images (default all)")
    ap.add_argument("--limit-eval", type=int, default=None, help="first N test images (default all)")
    ap.add_argument("--threads", type=int, default=1, help="torch and numba threads (default 1)")
    args = ap.parse_args(argv)
    try:
        seeds, ulps, scales = _ints(args.seeds), _ints(args.ulps), _floats(args.lr_scales)
    except ValueError:
        ap.error("--seeds and --ulps take integers, --lr-scales numbers, comma-separated")
    if not seeds or not ulps or not scales or min(ulps) < 0 or min(scales) <= 0 or args.threads < 1:
        ap.error("give at least one seed, ulps >= 0, lr scales > 0 and --threads >= 1")

    import numba
    import torch

    from models.datasets import load_dataset
    from models.rate_trainer import resolve_config
    from toolchain.errors import SnncError

    torch.set_num_threads(args.threads)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    try:
        base = resolve_config(preset=args.preset, limit_train=args.limit_train, limit_eval=args.limit_eval)
    except SnncError as e:
        ap.error(str(e))
    train = load_dataset(base.dataset, "train", limit=base.limit_train)
    test = load_dataset(base.dataset, "test", limit=base.limit_eval)
    runs = []
    for seed in seeds:
        cfg = resolve_config(preset=args.preset, seed=seed, limit_train=args.limit_train,
                             limit_eval=args.limit_eval)
        for u in ulps:
            for s in scales:
                row = one_run(cfg, train, test, u, s)
                print(json.dumps(row), flush=True)
                runs.append(row)
    spread = {str(sd): max(r["test_spike_mse"] for r in runs if r["seed"] == sd)
              - min(r["test_spike_mse"] for r in runs if r["seed"] == sd) for sd in seeds}
    print(json.dumps({"preset": args.preset, "data_source": train.source, "n_train": len(train),
                      "n_test": len(test), "runs": runs, "spread": spread}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
