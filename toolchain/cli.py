"""The ``snnc`` command. Each room registers its own subcommands (``register(subparsers)``):

    models/cli_train.py      train temporal|ann|rate|conv|audio
    models/cli_eval.py       eval
    toolchain/cli_deploy.py  compile, run, verify, deploy (steps models through toolchain/cli_steps.py)
    toolchain/cli_nir.py     export nir, import nir, verify --nir-peers
    hw_sim/cli_device.py     device serve
    hw_sim/cli_resources.py  resources
    toolchain/cli_demo.py    demo
    models/cli_audio.py      audio2image
    models/cli_finetune.py   finetune (hardware-in-the-loop fine-tuning)
    experiments/cli_sweep.py        sweep run|worker|status
    experiments/cli_experiments.py  experiments fig3 .. fig11, report experiments
    (experiments/ sits above models/ and toolchain/ and may import both; it is imported here only by name, when
    the parser is built, like every room above; nothing else imports it)

Heavy imports (torch, lava, brian2) happen inside the command functions, so ``snnc --help`` is fast.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading

from toolchain.errors import SnncError

COMMAND_MODULES = (
    "models.cli_train",
    "models.cli_eval",
    "toolchain.cli_deploy",
    "toolchain.cli_nir",       # after cli_deploy: adds --nir-peers to verify
    "hw_sim.cli_device",
    "hw_sim.cli_resources",
    "toolchain.cli_demo",
    "experiments.cli_sweep",
    "experiments.cli_experiments",
    "models.cli_audio",
    "models.cli_finetune",
)

EXAMPLES = """examples:
  snnc demo                                             # train, export, compile, deploy, verify on bundled data
  snnc train temporal --preset noise=0,latency=1,hidden=32 --dataset fashion-mnist --epochs 3 --out runs/fm32
  snnc train ann --hidden 32 --dataset mnist --epochs 3 --out runs/ann32
  snnc eval runs/fm32/model.onnx --dataset fashion-mnist
  snnc compile runs/fm32/model.onnx --steps-per-unit 32 --out runs/fm32/compiled.npz
  snnc verify runs/fm32/model.onnx --targets lava-fixed,lava-float,brian2,hw_sim --dataset fashion-mnist --limit 100
  snnc deploy runs/fm32/model.onnx --target hw_sim --dataset fashion-mnist --limit 10000
  snnc device serve --port 7341

datasets are read from $SNNC_DATA (or --data-dir); without either the bundled subset is used.
"""


def version_text() -> str:
    """'snnc X.Y.Z' plus the backends' versions (lava-nc, brian2, numpy, python)."""
    from toolchain.verifier import tool_versions

    v = tool_versions()
    rest = ", ".join(f"{k} {v[k] or 'not installed'}" for k in ("lava-nc", "brian2", "numpy", "python"))
    return f"snnc {v['snnc'] or 'unknown'} ({rest})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="snnc",
        description="Train spiking autoencoders, compile them for Loihi-style hardware, run and verify them.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print the versions of snnc and its backends")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # room not built yet
                continue
            raise
        module.register(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt so that every ``finally`` runs (Lava
    runs are stopped, device processes terminated, temporary files removed)."""


def _sigterm_handler(owner_pid: int):
    def on_sigterm(signum, frame):
        if os.getpid() != owner_pid:   # a forked child (a Lava process) inherited this handler: die as by default
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise Terminated(f"signal {signum} (SIGTERM)")

    return on_sigterm


def main(argv: list[str] | None = None) -> int:
    """Run ``snnc``; returns the exit code: 0 ok, 2 error (SnncError), 130 Ctrl-C, 143 SIGTERM.

    While a command runs (in the main thread), SIGTERM is handled like Ctrl-C (:class:`Terminated`); the previous
    handler is restored afterwards."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--version"]:  # before the subcommand is required
        print(version_text())
        return 0
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _sigterm_handler(os.getpid()))
    try:
        return int(args.func(args) or 0)
    except SnncError as exc:
        print(f"snnc: error: {exc}", file=sys.stderr)
        return 2
    except Terminated:
        print("snnc: terminated (SIGTERM); cleaned up", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("snnc: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
