"""``snnc train temporal`` (exact-gradient spiking autoencoder) and ``snnc train ann`` (baseline).

Heavy imports (torch, numba kernels) happen inside the command functions so that ``snnc --help`` stays fast.
"""
from __future__ import annotations

import argparse
import os

from models.presets import DEFAULT_PRESET, add_preset_args

DATASET_CHOICES = ("mnist", "fashion-mnist")

TEMPORAL_EXAMPLES = f"""examples:
  snnc train temporal --preset {DEFAULT_PRESET} --dataset fashion-mnist --epochs 3 --out runs/fm32
  snnc train temporal --preset noise=0.2,latency=4,hidden=16 --batch-size 32 --epochs 10 --out runs/n02
  snnc train temporal --out runs/fm32 --dataset fashion-mnist --epochs 5 --resume   # continue to epoch 5
  snnc train temporal --hidden 16 --latency 4 --out runs/h16   # the tuned row noise=0,latency=4,hidden=16
  snnc train temporal --hidden 1024 --out runs/h1024 --force   # nearest row (hidden 32), old run replaced

writes <out>/model.onnx (best-on-validation model), <out>/checkpoint.pt (every epoch) and <out>/metrics.json;
a folder that already holds a run needs --resume (continue) or --force (start over).
datasets are read from $SNNC_DATA (or --data-dir); without either the bundled subset is used.
"""

RATE_EXAMPLES = """examples:
  snnc train rate --preset mnist-196 --out runs/rate196               # 784-196-784, T=15, p 0.3, 1 epoch
  snnc train rate --arch 784-196-784 --steps 15 --dataset mnist --mode bptt --out runs/rate196-bptt
  snnc train rate --preset fmnist-1024 --threads 2 --out runs/fm1024

writes <out>/model.onnx (the IR graph, artifact format 2), <out>/checkpoint.pt, <out>/metrics.json (Spike-MSE
and MSE, both z-scored per image) and <out>/reconstructions.png; a folder that already holds a run needs --resume
or --force.
"""


CONV_EXAMPLES = """examples:
  snnc train conv --preset cpu --reg dense --out runs/conv-dense        # T=20, 5,000 images, 2 epochs
  snnc train conv --preset cpu --reg none --out runs/conv-none          # unregularised, our fast-sigmoid gradient
  snnc train conv --preset cpu --reg none --surrogate code --out runs/conv-code   # the authors' gradient: dead latent
  snnc train conv --preset cpu --model ae --out runs/conv-ae            # deterministic baseline, same shape
  snnc train conv --preset paper --reg dense --threads 2 --out runs/conv-paper   # T=100, all data, 10 epochs

writes <out>/checkpoint.pt (every epoch), <out>/metrics.json (SSE per image, MSE per pixel; SNN: dead/bursting
fractions per layer every epoch), <out>/reconstructions.png and, for the SNN, <out>/model.onnx (the IR graph,
artifact format 2) and <out>/stats.png; a folder that already holds a run needs --resume or --force.
"""


def add_conv_args(p: argparse.ArgumentParser) -> None:
    """Options of ``snnc train conv`` (None = the preset's value)."""
    from models.conv_regularisers import PRESETS as REG_PRESETS, RegWeights

    add_common_args(p, default_out="runs/conv")
    p.set_defaults(epochs=None)
    preset_help = {"epochs": "passes over the training images (preset: cpu 2, paper 10)",
                   "limit_train": "use the first N training images (preset: cpu 5,000, paper all)",
                   "limit_eval": "use the first N validation and test images (preset: cpu 1,000, paper all)"}
    for action in p._actions:
        action.help = preset_help.get(action.dest, action.help)
    p.add_argument("--preset", choices=("cpu", "paper"), default="cpu",
                   help="cpu: T=20, first 5,000 training images, 2 epochs, 1,000 val/test images; paper: T=100, "
                        "all images, 10 epochs (both: batch 40, Adam lr 5e-4, clip 50; default cpu)")
    p.add_argument("--model", choices=("snn", "ae", "vae"), default="snn",
                   help="snn: spiking conv AE; ae / vae: non-spiking baselines of the same shape (default snn)")
    p.add_argument("--steps", type=int, default=None, help="time steps T per image (preset: cpu 20, paper 100)")
    p.add_argument("--p-scale", type=float, default=None,
                   help="input spike probability per step at pixel 1 (default 0.2, the code's)")
    p.add_argument("--c1", type=int, default=None, help="channels of the first conv layer (default 16)")
    p.add_argument("--c2", type=int, default=None, help="channels of the second conv layer (default 32)")
    p.add_argument("--latent", type=int, default=None, help="latent neurons (default 100)")
    p.add_argument("--lr", type=float, default=None, help="Adam step size (default 5e-4)")
    p.add_argument("--batch-size", type=int, default=None, help="images per batch (default 40)")
    p.add_argument("--clip", type=float, default=None, help="gradient values clipped at +-this (default 50)")
    p.add_argument("--slope", type=float, default=None,
                   help="surrogate slope: dS/dV = 1 / (1 + slope |V - 1|)^2 (default 5)")
    p.add_argument("--surrogate", choices=("fast-sigmoid", "code"), default=None,
                   help="spike gradient: fast-sigmoid (default, --slope) or code (the authors' jhuebotter/SpikingVAE: "
                        "dS/dV = 1 only on steps with a spike, leak detached; a silent neuron gets no gradient)")
    p.add_argument("--clamp-negative", dest="clamp", action="store_true", default=None,
                   help="the code's V < -1 -> +1 after each input (experiments only: no model.onnx is written)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where the network trains (default cpu; cuda needs a CUDA GPU and torch build)")
    p.add_argument("--vae-beta", type=float, default=None, help="weight of the VAE's KL term (default 1)")
    p.add_argument("--burst-rate", type=float, default=None,
                   help="a neuron above this many spikes per step is counted as bursting (default 0.5)")
    p.add_argument("--reg", choices=tuple(REG_PRESETS), default="none",
                   help="regulariser weights preset of the SNN (docs/conv.md; default none)")
    for name in RegWeights.__dataclass_fields__:
        if name == "layers":
            p.add_argument("--reg-layers", dest="layers", choices=("all", "latent"), default=None,
                           help="spiking layers the lambda/beta terms cover (replaces the --reg preset's value)")
            continue
        p.add_argument(f"--{name.replace('_', '-')}", type=float, default=None,
                       help=f"regulariser weight {name} (replaces the --reg preset's value)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def train_conv_cli(args: argparse.Namespace) -> int:
    """Run ``snnc train conv`` from parsed arguments; prints progress and the test error."""
    from models.conv_regularisers import RegWeights
    from models.conv_trainer import resolve_config, train_conv
    from toolchain.errors import SnncError

    if args.weight_decay:
        raise SnncError("--weight-decay is not part of the conv trainer (the code uses Adam without it); drop it")
    overrides = {k: getattr(args, k) for k in RegWeights.__dataclass_fields__}
    cfg = resolve_config(preset=args.preset, reg_preset=args.reg, reg_overrides=overrides, c1=args.c1, c2=args.c2,
                         latent=args.latent, model=args.model, dataset=args.dataset, steps=args.steps,
                         p_scale=args.p_scale, lr=args.lr, batch_size=args.batch_size, epochs=args.epochs,
                         clip=args.clip, slope=args.slope, surrogate=args.surrogate, clamp=args.clamp,
                         vae_beta=args.vae_beta, burst_rate=args.burst_rate,
                         seed=args.seed, limit_train=args.limit_train, limit_eval=args.limit_eval)
    print(f"training conv {cfg.model} on {cfg.dataset}: T={cfg.steps}, channels {cfg.arch.c1}/{cfg.arch.c2}, latent "
          f"{cfg.arch.latent}, regularisers {cfg.reg_preset if cfg.model == 'snn' else 'n/a'}, batch "
          f"{cfg.batch_size}, lr {cfg.lr:g}, {cfg.epochs} epochs, train images {cfg.limit_train or 'all'}"
          + (f", surrogate {cfg.surrogate}{', V < -1 -> +1' if cfg.clamp else ''}" if cfg.model == "snn" else "")
          + f", device {args.device}")
    m = train_conv(cfg, args.out, data_dir=args.data_dir, resume=args.resume, force=args.force,
                   threads=args.threads, progress=not args.no_progress, device=args.device)
    print(f"test SSE/image {m['test_sse_per_image']:.3f}, MSE/pixel {m['test_mse']:.5f}")
    print(f"outputs: {args.out}")
    return 0


def add_common_args(p: argparse.ArgumentParser, *, default_out: str) -> None:
    """Options that every trainer has, with the same names, meanings and units (temporal and ann)."""
    p.add_argument("--dataset", choices=DATASET_CHOICES, default="mnist", help="dataset to train on (default mnist)")
    p.add_argument("--data-dir", default=None,
                   help="folder with mnist/ and fashion-mnist/ IDX files (default $SNNC_DATA; else bundled subset)")
    p.add_argument("--epochs", type=int, default=3, help="passes over the training images (default 3)")
    p.add_argument("--limit-train", type=int, default=None, help="use the first N training images (default: all)")
    p.add_argument("--limit-eval", type=int, default=None,
                   help="use the first N validation and test images (default: all)")
    p.add_argument("--weight-decay", type=float, default=0.0,
                   help="L2 penalty lambda >= 0 on every weight: adds lambda * w to each weight's batch-mean gradient "
                        "(lambda/2 * sum w^2 joins the loss; units: loss units per squared weight unit); keeps the "
                        "weights, and so the worst-case voltages of large models, small enough to compile "
                        "(default 0 = off)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights, shuffling and noise (default 0)")
    p.add_argument("--force", action="store_true",
                   help="replace a trained run already in --out (without it such a folder is refused)")
    p.add_argument("--out", default=default_out, help=f"output folder (default {default_out})")


def register(subparsers) -> None:
    """Add ``train`` with its ``temporal`` and ``ann`` subcommands to the snnc CLI."""
    train = subparsers.add_parser("train", help="train a spiking (temporal) or ANN autoencoder",
                                  description="Train a spiking autoencoder with exact gradients (temporal) or the "
                                              "ANN baseline (ann).")
    sub = train.add_subparsers(dest="model", required=True, metavar="MODEL")

    p = sub.add_parser("temporal", help="temporal-coding SNN autoencoder (Comsa et al. 2021), exact gradients",
                       description="Train the 784-h-784 temporal-coding spiking autoencoder of Comsa et al. 2021 "
                                   "with exact gradients (float64, event-driven).",
                       epilog=TEMPORAL_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p, default_out="runs/temporal")
    p.add_argument("--noise-mean", type=float, default=1.0,
                   help="mean of r in t + noise * r, r ~ N(mean, 1) (paper: 1)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto: where the optimiser runs "
                                                   "(spike times and gradients are computed on the CPU)")
    p.add_argument("--threads", type=int, default=None,
                   help="most CPU threads for the kernels (default: the cores this process may use); each batch "
                        "runs in 1 or this many threads, whichever its measured time favours (docs/training.md)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_preset_args(p)
    p.set_defaults(func=train_temporal_cli)

    r = sub.add_parser("rate", help="rate-coded LIF autoencoder (Roy et al. 2019), online rule or BPTT",
                       description="Train the rate-coded (Bernoulli) LIF autoencoder of Roy, Panda & Roy 2019 with "
                                   "the authors' online rule (per-step Adam, eligibility traces) or surrogate-gradient "
                                   "BPTT.", epilog=RATE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(r, default_out="runs/rate")
    r.set_defaults(dataset=None, epochs=1)
    r.add_argument("--preset", default=None, help="mnist-196, fmnist-512 or fmnist-1024 (Table 1 settings)")
    r.add_argument("--arch", default=None, help="input-hidden-output sizes, e.g. 784-196-784 (default: preset's)")
    r.add_argument("--steps", type=int, default=None, help="time steps T per image (MNIST 15, Fashion-MNIST 60)")
    r.add_argument("--p-scale", type=float, default=None,
                   help="spike probability per step at pixel 1 = dt * max_rate (MNIST 0.3, Fashion-MNIST 0.5)")
    r.add_argument("--mode", choices=("online", "bptt"), default="online",
                   help="online: the authors' eligibility-trace rule; bptt: surrogate-gradient BPTT (default online)")
    r.add_argument("--lr", type=float, default=None, help="Adam step size (online 5e-4 per step, bptt 3e-3 per batch)")
    r.add_argument("--batch-size", type=int, default=100, help="images per batch (default 100)")
    r.add_argument("--trace-reset", choices=("authors", "layer", "neuron", "none"), default="authors",
                   help="online rule: how eligibility traces forget after spikes. authors (default): shrink by "
                        "(1 - layer spikes / 784) as the authors' code; layer: by the layer's own size; neuron: "
                        "reset the trace of a neuron that spiked (the paper's text, ~2x slower); none: no shrink "
                        "(docs/training.md)")
    r.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    r.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.set_defaults(func=train_rate_cli)

    c = sub.add_parser("conv", help="deep convolutional spiking autoencoder (Hübotter et al. 2021) or its AE/VAE "
                                    "baselines",
                       description="Train the convolutional LIF autoencoder of Hübotter, Lanillos & Tomczak 2021 "
                                   "(surrogate-gradient BPTT, regularisers against dead and bursting neurons) or a "
                                   "deterministic AE / VAE of the same shape.", epilog=CONV_EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_conv_args(c)
    c.set_defaults(func=train_conv_cli)

    a = sub.add_parser("ann", help="ANN baseline autoencoder (784-h-784, same optimiser settings)",
                       description="Train the ANN baseline autoencoder with the optimiser settings of a preset.")
    try:
        from models.ann import add_ann_args
    except ModuleNotFoundError as exc:  # the baseline is optional; say why it is missing
        reason = str(exc)
        a.set_defaults(func=lambda args: _missing_ann(reason))
    else:
        add_ann_args(a)
        a.set_defaults(func=train_ann_cli)

    from models.cli_audio import add_train_audio  # audio to image (issue [G])

    add_train_audio(sub)


def _missing_ann(reason: str) -> int:
    from toolchain.errors import SnncError

    raise SnncError(f"the ANN baseline is unavailable ({reason}); reinstall snnc with its models package")


def train_ann_cli(args: argparse.Namespace) -> int:
    from models.ann import train_ann_cli as run

    return run(args)


def train_rate_cli(args: argparse.Namespace) -> int:
    """Run ``snnc train rate`` from parsed arguments; prints progress and both test metrics."""
    # torch's OpenMP threads must not spin between the numba kernels' parallel regions (48x slower with 2 threads,
    # docs/training.md); libgomp reads this when torch loads, which is below. An explicit setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from models.rate_trainer import resolve_config, train_rate
    from toolchain.errors import SnncError

    if args.weight_decay:
        raise SnncError("--weight-decay is not part of Roy et al.'s rule (Adam, no weight decay); drop it")
    cfg = resolve_config(preset=args.preset, dataset=args.dataset, arch=args.arch, steps=args.steps,
                         p_scale=args.p_scale, mode=args.mode, lr=args.lr, batch_size=args.batch_size,
                         epochs=args.epochs, seed=args.seed, limit_train=args.limit_train,
                         limit_eval=args.limit_eval, trace_reset=args.trace_reset)
    print(f"training {cfg.dataset} {'-'.join(map(str, cfg.arch))}, T={cfg.steps}, p_scale={cfg.p_scale:g}, "
          f"{cfg.mode}, lr {cfg.lr:g}, batch {cfg.batch_size}"
          + (f", trace reset {cfg.trace_reset}" if cfg.trace_reset != "authors" else ""))
    m = train_rate(cfg, args.out, data_dir=args.data_dir, resume=args.resume, force=args.force,
                   threads=args.threads, progress=not args.no_progress)
    print(f"test Spike-MSE {m['test_spike_mse']:.4f}, test MSE {m['test_pixel_mse']:.4f}")
    print(f"model: {args.out}/model.onnx")
    return 0


def train_temporal_cli(args: argparse.Namespace) -> int:
    """Run ``snnc train temporal`` from parsed arguments; prints progress and the test MSE."""
    import numba

    from models.presets import preset_from_args
    from models.temporal_trainer import TrainConfig, train_temporal
    from models.threads import check_threads, default_threads

    numba.set_num_threads(default_threads() if args.threads is None else check_threads(args.threads))
    choice = preset_from_args(args)
    hp = choice.hp
    cfg = TrainConfig(hp=hp, dataset=args.dataset, preset=choice.row, epochs=args.epochs, seed=args.seed,
                      noise_mean=args.noise_mean, limit_train=args.limit_train, limit_eval=args.limit_eval,
                      weight_decay=args.weight_decay)
    print(f"training {args.dataset} 784-{hp.hidden}-784, {hp.n_pulses} pulses/layer, {choice.describe()}"
          + (f", weight decay {args.weight_decay:g}" if args.weight_decay else ""))
    m = train_temporal(cfg, args.out, data_dir=args.data_dir, resume=args.resume, force=args.force,
                       device=args.device, progress=not args.no_progress)
    print(f"test MSE per pixel: {m['test_mse']:.6f} (best epoch {m['best_epoch']}, val {m['val_mse']:.6f})")
    print(f"model: {args.out}/model.onnx")
    return 0
