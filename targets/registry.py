"""Name -> target class. Adding a backend: one module in targets/ and one line here.

Entries are imported lazily so that, e.g., ``exact`` works without importing Lava or Brian2.
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
}


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
