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

Along the epoch (rows with ``"probe"`` / ``"compare"``):
* ``--probe-every N``: every N batches the Spike-MSE, MSE and hidden firing (fraction of neurons per step) on
  ``--probe-images`` fixed test images (Bernoulli draws of seed 123): the curve the one-epoch figure is read from.
* ``--impl-file F``: train with the ``online_batch`` of the Python file F instead of models.rate_online's (F's
  folder goes on sys.path, so F may import a sibling module). E.g. the previous implementation (wave 4/6):
  ``git show 7c08753:models/rate_online.py > /tmp/prev/prev_online.py``, ``git show 7c08753:models/rate_kernels.py
  > /tmp/prev/prev_kernels.py`` and in prev_online.py import ``adam_update`` from ``prev_kernels``.
* ``--compare-file F --compare-every N``: every N batches, F's ``online_batch`` also runs the batch from the same
  state (on a copy); the row gives the rms weight difference of the two results against the rms of the batch's
  update, the signed projection of the difference onto the update (> 0: F moved further), and both runs' loss,
  hidden and output spike counts.
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


def load_impl(path: str):
    """``online_batch`` of the Python file ``path`` (its folder put on sys.path for sibling imports)."""
    import importlib.util

    p = Path(path).resolve()
    if not p.is_file():
        raise SystemExit(f"{path}: no such file (give a Python file that defines online_batch)")
    sys.path.insert(0, str(p.parent))
    spec = importlib.util.spec_from_file_location(f"snnc_impl_{p.stem}", p)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod                  # dataclasses in the file look their module up there
    spec.loader.exec_module(mod)
    if not hasattr(mod, "online_batch"):
        raise SystemExit(f"{path} defines no online_batch")
    return mod.online_batch


def _probe(cfg, tw1, tw2, probe) -> dict:
    """Spike-MSE, MSE and hidden firing of the current weights on the fixed probe images."""
    import numpy as np

    from models.rate_metrics import rate_metrics
    from models.rate_model import forward_spikes, make_graph
    from models.rate_trainer import model_metadata

    images, x = probe
    g = make_graph(tw1.numpy().astype(np.float64), tw2.numpy().astype(np.float64), model_metadata(cfg))
    hid, out = forward_spikes(g, x)
    m = rate_metrics(images, x.sum(1, dtype=np.int64), out.sum(1, dtype=np.int64))
    return {"spike_mse": round(m["spike_mse"], 5), "mse": round(m["pixel_mse"], 5), "hid_frac": round(float(hid.mean()), 4)}


def _compare(tw1, tw2, x, rule, step, other) -> dict:
    """Run ``step`` (in place) and ``other`` (on copies) on one batch from the same state; their differences."""
    s1, s2, c1, c2 = tw1.clone(), tw2.clone(), tw1.clone(), tw2.clone()
    ro = other(c1, c2, x, rule)
    rn = step(tw1, tw2, x, rule)
    row = {}
    for name, wo, wn, ws in (("w1", c1, tw1, s1), ("w2", c2, tw2, s2)):
        d, u = (wo - wn).double(), (wn - ws).double()
        row[name + "_rms_diff"] = float(d.pow(2).mean().sqrt())
        row[name + "_rms_update"] = float(u.pow(2).mean().sqrt())
        row[name + "_projection"] = float((d * u).sum() / (u * u).sum().clamp_min(1e-300))
    row.update(loss=rn["loss"], loss_other=ro["loss"], hid_spikes=rn["hid_spikes"], hid_spikes_other=ro["hid_spikes"],
               out_spikes=float(rn["out_spikes"].sum()), out_spikes_other=float(ro["out_spikes"].sum()))
    return row, rn


def one_run(cfg, train, test, ulps: int, lr_scale: float, step=None, probe=None, probe_every: int = 0,
            other=None, compare_every: int = 0) -> dict:
    """One epoch (the trainer's data pipeline for cfg.seed) with W1 moved ``ulps`` float32 ulps up and lr scaled;
    returns the trainer's test metrics, the mean training loss and the CPU seconds. ``step``: the online_batch to
    train with (default models.rate_online's); probe rows every ``probe_every`` batches, comparison rows against
    ``other`` every ``compare_every`` batches (printed as they come)."""
    import numpy as np
    import torch

    from models.rate_encoding import bernoulli_encode
    from models.rate_model import make_graph
    from models.rate_online import OnlineRule, online_batch
    from models.rate_trainer import evaluate_graph, init_weights, model_metadata

    step = step or online_batch

    rng = np.random.default_rng(cfg.seed)
    w1, w2 = init_weights(cfg, rng)
    tw1, tw2 = torch.tensor(w1, dtype=torch.float32), torch.tensor(w2, dtype=torch.float32)
    a = tw1.numpy()
    for _ in range(ulps):
        a[:] = np.nextafter(a, np.float32(np.inf))
    rule = OnlineRule(lr=cfg.lr * lr_scale, n_shrink=float(cfg.arch[0]))
    n_batches = len(train) // cfg.batch_size
    perm = rng.permutation(len(train))
    c0, loss, extra = time.process_time(), 0.0, 0.0
    tag = {"seed": cfg.seed, "ulps": ulps, "lr_scale": lr_scale}
    for b in range(n_batches):
        idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
        x = bernoulli_encode(train.images[idx], cfg.steps, cfg.p_scale, rng)
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(1, 0, 2)))
        if other is not None and compare_every and b % compare_every == 0:
            e0 = time.process_time()
            row, r = _compare(tw1, tw2, xt, rule, step, other)
            print(json.dumps({**tag, "compare": b + 1, **row}), flush=True)
            extra += time.process_time() - e0
        else:
            r = step(tw1, tw2, xt, rule)
        loss += r["loss"]
        if probe is not None and probe_every and ((b + 1) % probe_every == 0 or b + 1 == n_batches):
            e0 = time.process_time()
            print(json.dumps({**tag, "probe": b + 1, **_probe(cfg, tw1, tw2, probe)}), flush=True)
            extra += time.process_time() - e0
    cpu = time.process_time() - c0 - extra
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
    ap.add_argument("--probe-every", type=int, default=0, help="probe rows every N batches (default 0: none)")
    ap.add_argument("--probe-images", type=int, default=500, help="fixed test images of the probe (default 500)")
    ap.add_argument("--impl-file", default=None, help="train with this file's online_batch")
    ap.add_argument("--compare-file", default=None, help="compare every --compare-every batches with this file's")
    ap.add_argument("--compare-every", type=int, default=10, help="batches between comparisons (default 10)")
    args = ap.parse_args(argv)
    try:
        seeds, ulps, scales = _ints(args.seeds), _ints(args.ulps), _floats(args.lr_scales)
    except ValueError:
        ap.error("--seeds and --ulps take integers, --lr-scales numbers, comma-separated")
    if not seeds or not ulps or not scales or min(ulps) < 0 or min(scales) <= 0 or args.threads < 1:
        ap.error("give at least one seed, ulps >= 0, lr scales > 0 and --threads >= 1")
    if args.probe_every < 0 or args.probe_images < 1 or args.compare_every < 1:
        ap.error("--probe-every >= 0, --probe-images >= 1 and --compare-every >= 1")
    step = load_impl(args.impl_file) if args.impl_file else None
    other = load_impl(args.compare_file) if args.compare_file else None

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
    probe = None
    if args.probe_every:
        import numpy as np

        from models.rate_encoding import bernoulli_encode

        pimg = load_dataset(base.dataset, "test", limit=args.probe_images).images
        probe = (pimg, bernoulli_encode(pimg, base.steps, base.p_scale, np.random.default_rng(123)))
    runs = []
    for seed in seeds:
        cfg = resolve_config(preset=args.preset, seed=seed, limit_train=args.limit_train,
                             limit_eval=args.limit_eval)
        for u in ulps:
            for s in scales:
                row = one_run(cfg, train, test, u, s, step=step, probe=probe, probe_every=args.probe_every,
                              other=other, compare_every=args.compare_every if other else 0)
                row["impl"] = args.impl_file or "models/rate_online.py"
                print(json.dumps(row), flush=True)
                runs.append(row)
    spread = {str(sd): max(r["test_spike_mse"] for r in runs if r["seed"] == sd)
              - min(r["test_spike_mse"] for r in runs if r["seed"] == sd) for sd in seeds}
    print(json.dumps({"preset": args.preset, "data_source": train.source, "n_train": len(train),
                      "n_test": len(test), "runs": runs, "spread": spread}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
