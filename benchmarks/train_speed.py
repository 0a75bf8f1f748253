"""Training speed of the exact temporal trainer: seconds per 54,000-example epoch of 784-32-784, 10 pulses.

For each batch size (the preset's, 7, then ``--large-batch``, 256) a fresh network (seeded) first trains on
``--warmup`` examples (untimed: loads the compiled kernels and brings the network towards its spiking regime),
then ``--examples`` examples are timed and the time is SCALED to 54,000 examples (a fraction of an epoch is
timed; the output says how many examples). ``seconds_per_epoch`` is the wall time scaled,
``cpu_seconds_per_epoch`` the process CPU time (all threads) scaled, ``seconds_per_epoch_median_batch`` the
median batch time scaled, which other processes on a shared machine disturb least.

Data: the full training set from ``$SNNC_DATA`` (or ``--data-dir``). Without it the bundled subset is used
and its images are CYCLED (reused in order, reshuffled each pass) to reach warm-up + timed examples; the
output says so (``data_source``, ``data_images``, ``data_cycled``); ``--no-cycle`` refuses instead.

Threads: ``--threads`` (default: every core this process may use) is numba's thread count. As in the trainer
each batch's kernels run in 1 or ``--threads`` threads, chosen from measured batch times
(``models.threads.AdaptiveThreads``; ``--policy fixed`` always uses ``--threads``); each configuration reports
how many timed batches ran with each thread count. ``--busy N`` starts N competing busy-loop
processes for the timed part (to measure how training degrades on a loaded machine) and stops them after.

The last line printed is one JSON object: ``seconds_per_epoch`` (preset batch), ``seconds_per_epoch_by_batch``
({"7": ..., "256": ...}), threads, data source, and every configuration. About 1-2 minutes on a quiet 2-core
machine with the defaults.

    SNNC_DATA=/path/to/datasets python benchmarks/train_speed.py [--threads 2] [--examples 5000] [--busy 1]

Reference: the authors' C++ (2 threads) takes 47-52 s per epoch (~0.9 ms per example).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

EPOCH = 54_000


def training_order(n_images: int, n_needed: int, rng, cycle: bool) -> "np.ndarray":  # noqa: F821
    """Image indices for n_needed training examples: a permutation of the images, repeated (each pass
    reshuffled) when there are fewer images than examples and ``cycle`` is set; otherwise a SystemExit.
    ``rng`` None only checks."""
    import numpy as np

    if n_needed > n_images and not cycle:
        raise SystemExit(f"train_speed: {n_needed} examples needed but the data has only {n_images} images; "
                         f"set SNNC_DATA to the full datasets, lower --examples/--warmup, or drop --no-cycle")
    if rng is None:
        return np.empty(0, dtype=np.int64)
    passes = -(-n_needed // n_images)
    return np.concatenate([rng.permutation(n_images) for _ in range(passes)])[:n_needed]


def start_busy(n: int) -> list[subprocess.Popen]:
    """n busy-loop processes competing for the CPUs (stopped by :func:`stop_busy`)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop_busy(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def time_config(ds, base, batch: int, args, threads: int) -> dict:
    """Warm up then time one batch size; returns its JSON record."""
    import numpy as np

    from models.encoding import latency_encode, target_times
    from models.presets import with_overrides
    from models.temporal_trainer import Learner, init_network

    hp = with_overrides(base, batch_size=batch)
    rng = np.random.default_rng(0)
    learner = Learner(init_network(hp, ds.images.shape[1], rng), hp, "cpu")
    if args.policy == "fixed":
        learner.threads = threads  # every batch with --threads threads (no adaptation)
    n_warm = max(1, args.warmup // batch) * batch
    n_timed = max(1, args.examples // batch) * batch
    idx = training_order(len(ds), n_warm + n_timed, rng, not args.no_cycle)
    x = latency_encode(ds.images[idx], hp.noise, 1.0, rng)
    y = target_times(ds.images[idx])
    for b0 in range(0, n_warm, batch):
        learner.train_batch(x[b0:b0 + batch], y[b0:b0 + batch])
    used = dict(learner.threads.batches) if args.policy == "adaptive" else {}
    busy = start_busy(args.busy)
    try:
        time.sleep(0.2 if busy else 0.0)
        t0, c0 = time.perf_counter(), time.process_time()
        sq = 0.0
        per_batch = []
        for b0 in range(n_warm, n_warm + n_timed, batch):
            tb = time.perf_counter()
            sq += learner.train_batch(x[b0:b0 + batch], y[b0:b0 + batch])
            per_batch.append(time.perf_counter() - tb)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        stop_busy(busy)
    return {
        "batch_size": batch, "examples": n_timed, "warmup_examples": n_warm,
        "policy": args.policy, "busy_processes": args.busy,
        # batches of the timed part per kernel thread count
        "batches_by_threads": ({str(k): v - used.get(k, 0) for k, v in learner.threads.batches.items()
                                if v > used.get(k, 0)} if args.policy == "adaptive" else {str(threads): n_timed // batch}),
        "seconds_per_epoch": round(wall / n_timed * EPOCH, 3),
        "cpu_seconds_per_epoch": round(cpu / n_timed * EPOCH, 3),
        "seconds_per_epoch_median_batch": round(float(np.median(per_batch)) / batch * EPOCH, 3),
        "ms_per_example": round(wall / n_timed * 1e3, 4),
        "train_mse_timed": round(sq / (n_timed * ds.images.shape[1]), 5),
    }


def main(argv: list[str] | None = None) -> int:
    from models.threads import check_threads, default_threads

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="fashion-mnist", choices=("mnist", "fashion-mnist"))
    ap.add_argument("--data-dir", default=None, help="folder with the full datasets (default $SNNC_DATA)")
    ap.add_argument("--preset", default="noise=0,latency=1,hidden=32")
    ap.add_argument("--large-batch", type=int, default=256)
    ap.add_argument("--examples", type=int, default=5000, help="timed examples per configuration")
    ap.add_argument("--warmup", type=int, default=3000, help="untimed training examples before timing")
    ap.add_argument("--threads", type=int, default=None,
                    help=f"numba threads (default: the cores this process may use, here {default_threads()})")
    ap.add_argument("--policy", choices=("adaptive", "fixed"), default="adaptive",
                    help="kernel threads per batch: adaptive = the trainer's (models/threads.AdaptiveThreads), "
                         "fixed = always --threads")
    ap.add_argument("--busy", type=int, default=0, help="competing busy-loop processes while timing (default 0)")
    ap.add_argument("--no-cycle", action="store_true",
                    help="refuse (instead of reusing images) when the data has fewer images than needed")
    args = ap.parse_args(argv)
    if min(args.examples, args.warmup + 1, args.large_batch, args.busy + 1) < 1:
        ap.error("--examples and --large-batch must be >= 1, --warmup and --busy >= 0")

    import numba
    import torch

    from models.datasets import load_dataset
    from models.presets import get_preset

    threads = check_threads(args.threads) if args.threads is not None else default_threads()
    numba.set_num_threads(threads)
    torch.set_num_threads(threads)  # as the trainer does
    base = get_preset(args.preset)
    batches = (base.batch_size, args.large_batch)
    n_max = max(max(1, args.warmup // b) * b + max(1, args.examples // b) * b for b in batches)
    ds = load_dataset(args.dataset, "train", data_dir=args.data_dir, limit=n_max)
    cycled = n_max > len(ds)
    training_order(len(ds), n_max, None, not args.no_cycle)  # --no-cycle: refuse now, before any timing
    print(f"data: {args.dataset} train, {ds.source} ({len(ds)} images"
          + (f", cycled to {n_max} examples: {ds.source} subset is smaller than warm-up + timed)" if cycled else ")")
          + f"; threads {threads}; timing {args.examples} examples per batch size, scaled to {EPOCH}",
          file=sys.stderr, flush=True)
    results = []
    for batch in batches:
        res = time_config(ds, base, batch, args, threads)
        results.append(res)
        print(json.dumps(res), flush=True)
    first = results[0]
    summary = {
        "benchmark": "train_speed", "network": f"784-{base.hidden}-784", "n_pulses": base.n_pulses,
        "preset": args.preset, "dataset": args.dataset, "data_source": ds.source, "data_images": len(ds),
        "data_cycled": cycled, "device": "cpu", "threads": threads, "threading_layer": _threading_layer(),
        "busy_processes": args.busy, "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "seconds_per_epoch": first["seconds_per_epoch"], "batch_size": first["batch_size"],
        "seconds_per_epoch_by_batch": {str(r["batch_size"]): r["seconds_per_epoch"] for r in results},
        "cpu_seconds_per_epoch_by_batch": {str(r["batch_size"]): r["cpu_seconds_per_epoch"] for r in results},
        "note": f"per batch size: timed {args.examples} examples (rounded down to whole batches) after "
                f"{args.warmup} untimed, scaled to {EPOCH}",
        "configs": results,
    }
    print(json.dumps(summary), flush=True)
    return 0


def _threading_layer() -> str:
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # no parallel region ran (every batch was below the threshold)
        return "none used"


if __name__ == "__main__":
    sys.exit(main())
