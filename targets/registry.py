"""Name -> target class. Adding a backend: one module in targets/ and one line here.

Entries are imported lazily so that, e.g., ``exact`` works without importing Lava or Brian2.

Steps (LIF) graphs have their own entries where an alpha name would clash: ``float`` (the float64 reference,
counterpart of ``exact``), ``brian2-lif`` (``brian2``), ``lava-float-lif`` / ``lava-fixed-lif`` (``lava-float`` /
``lava-fixed``: stock Lava LIF + Dense) and ``hw_sim-lif`` (``hw_sim``). :func:`steps_target_name` maps an alpha
name to its steps counterpart so that callers can dispatch on the network's time kind.
"""
from __future__ import annotations

import importlib

from targets.base import Target
from toolchain.errors import TargetError

TARGETS: dict[str, str] = {
    "exact": "targets.exact:ExactTarget",
    "lava-float": "targets.lava:LavaFloatTarget",
    "lava-fixed": "targets.lava:LavaFixedTarget",
    "brian2": "targets.brian2:Brian2Target",
    "hw_sim": "targets.hw_sim:HwSimTarget",
    "hil": "targets.hil:HilTarget",
    # steps (LIF) family
    "float": "targets.lif_float:FloatStepsTarget",
    "brian2-lif": "targets.brian2_lif:Brian2LifTarget",
    "brian2-conv": "targets.brian2_conv:Brian2ConvTarget",   # conv graphs (brian2-lif hands them over)
    "lava-float-lif": "targets.lava_lif:LavaLifFloatTarget",
    "lava-fixed-lif": "targets.lava_lif:LavaLifFixedTarget",
    "hw_sim-lif": "targets.hw_sim_lif:HwSimLifTarget",
    # steps graphs run in snnTorch / Norse through their NIR importers (issue [I])
    "snntorch-nir": "targets.nir_peers:SnntorchNirTarget",
    "norse-nir": "targets.nir_peers:NorseNirTarget",
}

# alpha name -> the target that runs the same role on a steps graph
STEPS_COUNTERPART: dict[str, str] = {"exact": "float", "brian2": "brian2-lif", "lava-float": "lava-float-lif",
                                     "lava-fixed": "lava-fixed-lif", "hw_sim": "hw_sim-lif"}


def steps_target_name(name: str) -> str:
    """The registry name that runs ``name``'s role on a steps (LIF) graph ('exact' -> 'float', 'brian2' ->
    'brian2-lif'; names without a counterpart are returned unchanged)."""
    return STEPS_COUNTERPART.get(name, name)


def get_target(name: str, **options) -> Target:
    """Instantiate the target called ``name`` with backend-specific ``options``."""
    if name not in TARGETS:
        raise TargetError(f"unknown target {name!r}; choose one of: {', '.join(TARGETS)}")
    module_name, cls_name = TARGETS[name].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(**options)


def parse_target_list(text: str) -> list[str]:
    """'lava-fixed, brian2' -> ['lava-fixed', 'brian2'], checking every name."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise TargetError("no target given; e.g. --targets lava-fixed,brian2")
    for n in names:
        if n not in TARGETS:
            raise TargetError(f"unknown target {n!r} in --targets; choose from: {', '.join(TARGETS)}")
    return names
