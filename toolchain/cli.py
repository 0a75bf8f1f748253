"""The ``snnc`` command. Each room registers its own subcommands (``register(subparsers)``):

    models/cli_train.py      train temporal|ann
    models/cli_eval.py       eval
    toolchain/cli_deploy.py  compile, run, verify, deploy
    hw_sim/cli_device.py     device serve
    toolchain/cli_demo.py    demo

Heavy imports (torch, lava, brian2) happen inside the command functions, so ``snnc --help`` is fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from toolchain.errors import SnncError

COMMAND_MODULES = (
    "models.cli_train",
    "models.cli_eval",
    "toolchain.cli_deploy",
    "hw_sim.cli_device",
    "hw_sim.cli_resources",
    "toolchain.cli_demo",
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="snnc",
        description="Train spiking autoencoders, compile them for Loihi-style hardware, run and verify them.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SnncError as exc:
        print(f"snnc: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("snnc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
