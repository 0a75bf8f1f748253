"""Training speed of the spiking conv autoencoder (Hübotter et al. 2021): seconds per epoch, extrapolated.

For each preset (``cpu``: T = 20, 5,000 training images; ``paper``: T = 100, 54,000 images; both batch 40) a
seeded network (the code's init) runs ``--warmup`` untimed batches, then ``--batches`` timed training batches
(Bernoulli encoding, forward, regularisers of the "dense" preset, backward, clipping, Adam step), scaled to the
preset's batches per epoch. Wall and CPU time (process_time) are both reported: on a busy machine CPU time /
threads is the figure to compare. ``--compare`` also times the same batch (cpu preset's T) on two other paths:
``numba_channels_last`` (numba LIF kernels, models/conv_lif_kernels.py, and channels_last convolutions) and
``per_step_autograd`` (a per-step autograd LIF: a graph node per elementwise op and step). The default path: the
LIF as a torch loop in one autograd Function, NCHW convolutions, one-pass readout trace.

    SNNC_DATA=/path/to/datasets python benchmarks/train_speed_conv.py [--threads 2] [--batches 3] [--compare]

Last line: JSON with ``seconds_per_epoch`` and ``cpu_seconds_per_epoch`` per preset (and the comparison).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PRESETS = {"cpu": (20, 5_000), "paper": (100, 54_000)}  # steps, training images per epoch
BATCH = 40


def _autograd_lif_factory():
    """models.conv_model.autograd_lif behind LIFSequence.apply's call signature."""
    from models.conv_model import autograd_lif

    class Naive:
        @staticmethod
        def apply(current, leak, v_th, slope, code=False, clamp=False):
            return autograd_lif(current, leak, v_th, slope)

    return Naive


def _time_batches(model, images, steps, n_warm, n_timed, gen):
    import torch

    from models.conv_model import bernoulli_spikes
    from models.conv_regularisers import PRESETS as REG, regulariser_loss

    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    wall = cpu = 0.0
    for i in range(n_warm + n_timed):
        img = images[(i * BATCH) % (len(images) - BATCH):][:BATCH]
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        o = model(bernoulli_spikes(img, steps, 0.2, gen))
        loss = ((o["image"] - img) ** 2).sum() / BATCH + regulariser_loss(o["spikes"], o["final"], REG["dense"])
        loss.backward()
        torch.nn.utils.clip_grad_value_(model.parameters(), 50.0)
        opt.step()
        if i >= n_warm:
            wall += time.perf_counter() - t0
            cpu += time.process_time() - c0
    return wall / n_timed, cpu / n_timed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    ap.add_argument("--batches", type=int, default=3, help="timed batches per preset (default 3)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed batches first (default 1)")
    ap.add_argument("--presets", default="cpu,paper", help="comma-separated: cpu, paper")
    ap.add_argument("--compare", action="store_true", help="also time a per-step autograd LIF (cpu preset's T)")
    args = ap.parse_args(argv)
    if args.batches < 1 or args.warmup < 0 or args.threads < 1:
        ap.error("--batches and --threads must be >= 1, --warmup >= 0")

    import numpy as np
    import torch

    from models.conv_model import ConvArch, SpikingConvAE, init_weights
    from models.datasets import load_dataset

    from models.conv_lif_kernels import set_threads

    torch.set_num_threads(args.threads)
    set_threads(args.threads)
    data = load_dataset("mnist", "train", limit=2000)
    images = torch.from_numpy(data.images)
    arch = ConvArch()
    res, cpu_res, per_batch = {}, {}, {}
    for name in args.presets.split(","):
        if name not in PRESETS:
            ap.error(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
        steps, n_img = PRESETS[name]
        model = SpikingConvAE(arch, init_weights(arch, np.random.default_rng(0)))
        wall, cpu = _time_batches(model, images, steps, args.warmup, args.batches, torch.Generator().manual_seed(0))
        n_b = n_img // BATCH
        res[name], cpu_res[name] = wall * n_b, cpu * n_b
        per_batch[name] = {"steps": steps, "images": n_img, "wall_s_per_batch": wall, "cpu_s_per_batch": cpu}
        print(f"{name}: T={steps}, {n_img} images: {wall:.2f} s/batch wall, {cpu:.2f} s CPU -> {res[name]:.0f} s "
              f"per epoch wall ({res[name] / 3600:.2f} h), {cpu_res[name]:.0f} s CPU", flush=True)
    out = {"bench": "train_speed_conv", "threads": args.threads, "batch": BATCH, "timed_batches": args.batches,
           "macs_per_sample_step": arch.macs_per_step(), "seconds_per_epoch": res, "cpu_seconds_per_epoch": cpu_res,
           "per_batch": per_batch, "torch": torch.__version__, "machine": platform.machine(),
           "data_source": data.source}
    if args.compare:
        steps = PRESETS["cpu"][0]
        cmp = {}
        for kind in ("default", "numba_channels_last", "per_step_autograd"):
            kw = {"lif_backend": "auto", "channels_last": True} if kind == "numba_channels_last" else {}
            model = SpikingConvAE(arch, init_weights(arch, np.random.default_rng(0)), **kw)
            if kind == "per_step_autograd":
                model._lif = _autograd_lif_factory()
            wall, cpu = _time_batches(model, images, steps, args.warmup, args.batches,
                                      torch.Generator().manual_seed(0))
            cmp[kind] = {"wall_s_per_batch": wall, "cpu_s_per_batch": cpu}
            print(f"{kind} (T={steps}): {wall:.2f} s/batch wall, {cpu:.2f} s CPU", flush=True)
        out["compare"] = cmp
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
