"""Training speed of the rate-coded LIF autoencoder (Roy et al. 2019): seconds per 60,000-image epoch.

For each network (MNIST 784-196-784 T=15 p 0.3; Fashion-MNIST 784-1024-784 T=60 p 0.5; batch 100) and each mode
(online rule, surrogate BPTT) a fresh seeded network first trains ``--warmup`` batches (untimed: brings the
weights into a trained regime, whose spike sparsity the cost depends on), then ``--batches`` batches are timed
(encoding included) and scaled to 600 batches = 60,000 images. Images come from the training split, cycled when
it is smaller than warmup + timed batches (the bundled subset holds 1,800 / 900 training images). Wall and CPU
time (process_time) are both reported: CPU time / threads is the figure to compare on a busy machine.

    SNNC_DATA=/path/to/datasets python benchmarks/train_speed_rate.py [--threads 2] [--batches 10]

``--profile`` adds to each row ``cpu_seconds_per_epoch_by_part`` (the CPU seconds of each part of the timed batches,
scaled like the total: where the time goes; the timers cost < 1 %).

``--floor`` measures instead what no implementation of the two algorithms can go below on this machine (Fashion
784-1024-784, T = 60, batch 100, 600 batches = 36,000 steps per epoch), with ``--threads`` threads, min of
``--repeats`` runs: BPTT's dense adjoint product G2 W2 ((6,000 x 784) @ (784 x 1,024) per batch, no sparsity: 54 %
of G2 is non-zero) at torch's GEMM speed; the online rule's three per-step products ((100 x 1,024) @ (1,024 x 784)
shapes: a1 W2^T, (-E) W2, tr1^T delta) plus one fused Adam pass over the 1.6 M weights per step
(models.rate_kernels.adam_update). Last line: JSON with ``floor_seconds_per_epoch`` {"bptt", "online"} and the
measured parts.

Last line (otherwise): JSON with ``seconds_per_epoch`` {network: {mode: wall seconds}} and ``cpu_seconds_per_epoch``; each
row also gives ``hidden_spike_density`` (hidden spikes per neuron and step: the cost of the sparse paths depends
on it, and it grows during training).
Reference (issue [E], quiet machine): snnTorch 1.0 BPTT 208 s (1024) / 17 s (196); dense numpy online ~5 min
(1024). Targets for the 1024 network: online <= 60 s, BPTT <= 40 s.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

# torch's OpenMP threads (its own libgomp) spin after every product and keep numba's threads off the cores: with 2
# threads on the shared 2-core machine that made the online rule 48x slower (MNIST 196: 2,308 s wall per epoch vs
# 48 s). libgomp reads this once, when torch loads, so it is set before any import of torch; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

EPOCH_IMAGES = 60_000
NETWORKS = {"mnist-196": ("mnist", 196, 15, 0.3), "fmnist-1024": ("fashion-mnist", 1024, 60, 0.5)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2,
                    help="torch intra-op threads and numba threads (default 2; numba's capped by NUMBA_NUM_THREADS)")
    ap.add_argument("--batches", type=int, default=10, help="timed batches per configuration")
    ap.add_argument("--warmup", type=int, default=20, help="untimed batches first")
    ap.add_argument("--networks", default=",".join(NETWORKS), help="comma-separated: " + ", ".join(NETWORKS))
    ap.add_argument("--modes", default="online,bptt")
    ap.add_argument("--profile", action="store_true", help="CPU seconds per part of each mode (per epoch)")
    ap.add_argument("--floor", action="store_true",
                    help="measure the floor of the Fashion-1024 epoch (dense products at GEMM speed, Adam) instead")
    ap.add_argument("--repeats", type=int, default=5, help="--floor: runs per measured part (the minimum counts)")
    args = ap.parse_args(argv)
    if args.batches < 1 or args.warmup < 0 or args.threads < 1:
        ap.error("--batches and --threads must be >= 1, --warmup >= 0")

    import numpy as np
    import torch

    from models.datasets import load_dataset
    from models.rate_bptt import BpttLearner
    from models.rate_encoding import bernoulli_encode
    from models.rate_online import OnlineRule, online_batch

    import numba

    torch.set_num_threads(args.threads)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))  # the online rule's fused Adam
    if args.floor:
        print(json.dumps(measure_floor(args.threads, max(1, args.repeats))))
        return 0
    batch = 100
    res: dict = {}
    cpu_res: dict = {}
    rows = []
    for net in args.networks.split(","):
        if net not in NETWORKS:
            ap.error(f"unknown network {net!r}; choose from {', '.join(NETWORKS)}")
        dataset, hidden, steps, p = NETWORKS[net]
        ds = load_dataset(dataset, "train")
        n = len(ds)
        for mode in args.modes.split(","):
            rng = np.random.default_rng(0)
            w1 = rng.uniform(-0.1, 0.1, (hidden, 784))
            w2 = rng.uniform(-0.1, 0.1, (784, hidden))
            if mode == "online":
                tw1, tw2 = torch.tensor(w1, dtype=torch.float32), torch.tensor(w2, dtype=torch.float32)
                rule = OnlineRule()
                step = lambda x, prof=None: online_batch(tw1, tw2, x, rule, profile=prof)  # noqa: E731
            elif mode == "bptt":
                lrn = BpttLearner(w1, w2)
                step = lrn.train_batch
            else:
                ap.error(f"unknown mode {mode!r}; use online and/or bptt")
            perm = rng.permutation(max(n, (args.warmup + args.batches) * batch)) % n  # cycles a small split
            times, cpus, dens = [], [], []
            parts: dict = {}
            for b in range(args.warmup + args.batches):
                t0, c0 = time.perf_counter(), time.process_time()
                idx = perm[b * batch:(b + 1) * batch]
                x = torch.from_numpy(np.ascontiguousarray(
                    bernoulli_encode(ds.images[idx], steps, p, rng).transpose(1, 0, 2)))
                r = step(x, parts if (args.profile and b >= args.warmup) else None)
                if b >= args.warmup:
                    times.append(time.perf_counter() - t0)
                    cpus.append(time.process_time() - c0)
                    dens.append(float(r["hid_spikes"]) / (batch * steps * hidden) if mode == "online"
                                else float(r["hidden_density"]))
            scale = EPOCH_IMAGES / (batch * len(times))
            row = {"network": net, "mode": mode, "hidden": hidden, "steps": steps, "batch": batch,
                   "threads": args.threads, "timed_batches": len(times), "warmup_batches": args.warmup,
                   "data_source": ds.source, "n_train_images": n,
                   "seconds_per_epoch": round(sum(times) * scale, 2),
                   "seconds_per_epoch_median_batch": round(float(np.median(times)) * EPOCH_IMAGES / batch, 2),
                   "cpu_seconds_per_epoch": round(sum(cpus) * scale, 2),
                   "hidden_spike_density": round(float(np.mean(dens)), 4)}
            if args.profile:
                row["cpu_seconds_per_epoch_by_part"] = {k: round(v * scale, 2) for k, v in
                                                        sorted(parts.items(), key=lambda kv: -kv[1])}
            print(json.dumps(row), flush=True)
            rows.append(row)
            res.setdefault(net, {})[mode] = row["seconds_per_epoch"]
            cpu_res.setdefault(net, {})[mode] = row["cpu_seconds_per_epoch"]
    print(f"extrapolated: {args.batches} timed batches of {batch} (after {args.warmup} untimed) scaled to "
          f"{EPOCH_IMAGES:,} images; wall and CPU (process) seconds, {args.threads} thread(s)", flush=True)
    print(json.dumps({"seconds_per_epoch": res, "cpu_seconds_per_epoch": cpu_res, "threads": args.threads,
                      "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                      "extrapolated_from_batches": args.batches, "epoch_images": EPOCH_IMAGES,
                      "torch": torch.__version__, "machine": platform.processor() or platform.machine()}))
    return 0


def _min_times(fn, repeats: int) -> tuple[float, float]:
    """(least wall seconds, least CPU seconds) of ``repeats`` calls of fn, after one untimed call."""
    fn()
    wall = cpu = float("inf")
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return wall, cpu


def measure_floor(threads: int, repeats: int) -> dict:
    """Floor of one Fashion-1024 epoch (600 batches of 100, T = 60) for BPTT and the online rule: the parts that
    cannot use the spikes' sparsity, each timed alone (min of ``repeats``). ``floor_seconds_per_epoch``: wall
    seconds with ``threads`` threads (the figure on a quiet machine); ``floor_cpu_seconds_per_epoch``: CPU seconds
    (all threads), whose share per core (``.../ threads``, ``floor_seconds_per_epoch_perfect_cores``) is the wall
    time ``threads`` perfectly parallel cores would need - the figure to read on a busy machine."""
    import numpy as np
    import torch

    from models.rate_kernels import adam_update

    h, n, rows, b, batches, steps = 1024, 784, 6000, 100, 600, 60
    rng = np.random.default_rng(0)
    g2 = torch.from_numpy(rng.standard_normal((rows, n), dtype=np.float32))
    w2 = torch.from_numpy(rng.standard_normal((n, h), dtype=np.float32))
    da1 = torch.empty((rows, h))
    big = _min_times(lambda: torch.mm(g2, w2, out=da1), repeats)
    a = torch.from_numpy(rng.standard_normal((b, h), dtype=np.float32))
    w2t = w2.T.contiguous()
    out = torch.empty((b, n))
    step = [t / 20 for t in _min_times(lambda: [torch.mm(a, w2t, out=out) for _ in range(20)], repeats)]
    ws = [rng.uniform(-0.1, 0.1, shp).astype(np.float32) for shp in ((h, n), (n, h))]
    gs = [rng.standard_normal(w.shape, dtype=np.float32) * 1e-3 for w in ws]
    ms = [np.zeros_like(w) for w in ws]
    vs = [np.zeros_like(w) for w in ws]

    def adam():
        for w, g, m, v in zip(ws, gs, ms, vs):
            adam_update(w, g, m, v, 5e-4, 0.9, 0.999, 2, 1e-7)

    ad = [t / 10 for t in _min_times(lambda: [adam() for _ in range(10)], repeats)]
    res: dict = {"threads": threads, "repeats": repeats}
    for kind, i in (("wall", 0), ("cpu", 1)):
        bptt = batches * big[i]
        prod = batches * steps * 3 * step[i]
        adm = batches * steps * ad[i]
        res[kind] = {"bptt_G2W2_ms_per_batch": round(big[i] * 1e3, 3),
                     "bptt_G2W2_gflops": round(2 * rows * n * h / big[i] / 1e9, 1),
                     "online_step_product_ms": round(step[i] * 1e3, 4),
                     "online_step_product_gflops": round(2 * b * n * h / step[i] / 1e9, 1),
                     "online_adam_ms_per_step": round(ad[i] * 1e3, 4),
                     "online_adam_ns_per_weight": round(ad[i] / (2 * h * n) * 1e9, 3),
                     "online_products_seconds_per_epoch": round(prod, 2),
                     "online_adam_seconds_per_epoch": round(adm, 2),
                     "bptt_seconds_per_epoch": round(bptt, 2), "online_seconds_per_epoch": round(prod + adm, 2)}
    res["floor_seconds_per_epoch"] = {"bptt": res["wall"]["bptt_seconds_per_epoch"],
                                      "online": res["wall"]["online_seconds_per_epoch"]}
    res["floor_cpu_seconds_per_epoch"] = {"bptt": res["cpu"]["bptt_seconds_per_epoch"],
                                          "online": res["cpu"]["online_seconds_per_epoch"]}
    res["floor_seconds_per_epoch_perfect_cores"] = {k: round(v / threads, 2) for k, v in
                                                    res["floor_cpu_seconds_per_epoch"].items()}
    res.update({"targets": {"bptt": 40, "online": 60}, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                "torch": torch.__version__})
    return res


if __name__ == "__main__":
    raise SystemExit(main())
