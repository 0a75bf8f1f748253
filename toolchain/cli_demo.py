"""``snnc demo``: the whole pipeline on the bundled MNIST subset, no dataset or network needed.

train (exact gradients, ~1 min) -> evaluate + reconstruction PNG -> model.onnx -> compile (resource table)
-> deploy to lava-fixed, brian2 and hw_sim -> verify against the exact model -> energy table.
Always uses the bundled subset (even when $SNNC_DATA is set) so that it runs the same everywhere.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

DEFAULT_OUT = "runs/demo"
DEMO_TARGETS = ("lava-fixed", "brian2", "hw_sim")


def run_demo(out: Path, epochs: int, limit_train: int, limit_verify: int, targets: tuple[str, ...]) -> int:
    """Run every stage and print where the results are. Returns 0 when every stage ran: the verification
    verdict is printed (a failed gate is a finding the demo shows, not a failure of the demo; `snnc verify`
    is the command whose exit code gates)."""
    import numpy as np

    from hw_sim.energy import counters_from_dict, estimate, format_energy_table
    from models.datasets import load_dataset
    from models.encoding import decode, latency_encode, reconstruction_mse
    from models.exact import exact_forward
    from models.plots import save_reconstruction_png
    from models.presets import DEFAULT_PRESET, get_preset
    from models.temporal_trainer import TrainConfig, train_temporal
    from targets.registry import get_target
    from toolchain.artifact import load_onnx
    from toolchain.cli_deploy import compile_summary, resource_table_hook
    from toolchain.compiled_io import save_compiled
    from toolchain.compiler import compile_file
    from toolchain.report import write_report
    from toolchain.verifier import verify

    t_start = time.perf_counter()
    print(f"[1/5] training 784-32-784 temporal autoencoder on the bundled MNIST subset ({limit_train} images, "
          f"{epochs} epochs, preset {DEFAULT_PRESET})")
    cfg = TrainConfig(hp=get_preset(DEFAULT_PRESET), dataset="mnist", preset=DEFAULT_PRESET, epochs=epochs,
                      limit_train=limit_train, source="bundled")
    metrics = train_temporal(cfg, out / "train", progress=False)
    model_path = out / "train" / "model.onnx"

    print("[2/5] evaluating the exact float64 model on the bundled test images")
    test = load_dataset("mnist", "test", source="bundled")
    images = np.asarray(test.images, dtype=np.float64)
    net = load_onnx(model_path)
    t_out = exact_forward(net, latency_encode(images))[-1]
    mse = reconstruction_mse(t_out, images, net.latency)
    png = out / "reconstructions.png"
    save_reconstruction_png(images, decode(t_out, net.latency), png, title=f"exact model, test MSE {mse:.4f}")
    print(f"      test MSE per pixel {mse:.5f} ({images.shape[0]} images); best val MSE {metrics['val_mse']:.5f}")

    print("[3/5] compiling for Loihi-style fixed point")
    cn = compile_file(model_path)
    save_compiled(cn, out / "compiled.npz")
    print(compile_summary(cn))
    table = resource_table_hook(cn)
    if table:
        print(table)

    print(f"[4/5] deploying {', '.join(targets)} and verifying {limit_verify} test images against the exact model")
    sub = images[:limit_verify]
    times = latency_encode(sub)
    results = {}
    if "hw_sim" in targets:
        results["hw_sim"] = get_target("hw_sim").run(cn, times)
    rep = verify(cn, times, sub, list(targets), results=results)
    report = write_report(rep, out / "verify")
    for t in rep.targets:
        p99 = max((s.dt_p99_steps for s in t.layers), default=0.0)
        print(f"      {t.target:<11} {'PASS' if t.passed else 'FAIL'}  MSE {t.mse:.5f}  worst-layer p99 |dt| "
              f"{p99:.3g} steps  {t.wall_s / max(rep.n_samples, 1):.4g} s/sample")
    for g in rep.failed_gates():
        print(f"      gate failed: {g}")

    if "hw_sim" in results:
        print("[5/5] activity, NeuroBench metrics and energy estimate (hw_sim counters)")
        print(format_energy_table(estimate(cn, counters_from_dict(results["hw_sim"].info["counters"]))))

    print(f"\ndone in {time.perf_counter() - t_start:.0f} s")
    print(f"  model:           {model_path}")
    print(f"  reconstructions: {png}")
    print(f"  compiled:        {out / 'compiled.npz'}")
    print(f"  report:          {report} (+ report.md and plots beside it)")
    print(f"verification: {'PASS' if rep.passed else 'FAIL (see the failed gates above and the report)'}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    return run_demo(Path(args.out), args.epochs, args.limit_train, args.limit_verify, targets)


def register(subparsers) -> None:
    """Add ``demo`` to the snnc CLI."""
    p = subparsers.add_parser("demo", help="train, export, compile, deploy and verify on the bundled data",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    p.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    p.add_argument("--limit-train", type=int, default=1800, help="training images from the bundled subset")
    p.add_argument("--limit-verify", type=int, default=20, help="test images deployed and verified per target")
    p.add_argument("--targets", default=",".join(DEMO_TARGETS), help="targets to deploy to")
    p.set_defaults(func=_cmd_demo)
