"""The 75 tuned settings of Comsa et al. 2021 (models/data/comsa2021-hyperparameters.csv) as presets.

A preset is named by its condition, ``noise=0,latency=1,hidden=32``; every field can then be overridden
(``--batch-size 64``...). Units: ``latency`` and pulse times in model time units, ``decay_rate_tau`` in
1 / time unit, ``noise`` in time units (eta of t + eta * N(mean, 1)); the rest is dimensionless.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from toolchain.errors import SnncError

PRESET_CSV = Path(__file__).resolve().parent / "data" / "comsa2021-hyperparameters.csv"
DEFAULT_PRESET = "noise=0,latency=1,hidden=32"
_KEYS = ("noise", "latency", "hidden")


@dataclass(frozen=True)
class Hyperparameters:
    """One training condition (a row of the table, possibly with overrides)."""

    noise: float
    latency: float
    hidden: int
    batch_size: int
    clip_derivative: float
    decay_rate_tau: float
    threshold_theta: float
    lr_weights: float
    lr_pulses: float
    n_pulses: int
    weight_mean_multiplier: float
    penalty_no_spike: float
    pulse_weight_mean_multiplier: float

    def __post_init__(self) -> None:
        problems = []
        if not self.noise >= 0:
            problems.append(f"noise={self.noise} (must be >= 0)")
        if not self.latency >= 0:
            problems.append(f"latency={self.latency} (must be >= 0)")
        for name in ("hidden", "batch_size"):
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)} (must be >= 1)")
        if self.n_pulses < 0:
            problems.append(f"n_pulses={self.n_pulses} (must be >= 0)")
        for name in ("decay_rate_tau", "threshold_theta", "lr_weights", "lr_pulses"):
            if not getattr(self, name) > 0:
                problems.append(f"{name}={getattr(self, name)} (must be > 0)")
        for name in ("clip_derivative", "penalty_no_spike"):
            if not getattr(self, name) >= 0:
                problems.append(f"{name}={getattr(self, name)} (must be >= 0)")
        if problems:
            raise SnncError("invalid hyperparameters: " + "; ".join(problems) + "; fix the flag(s) or the preset")

    @property
    def name(self) -> str:
        """The preset spec of the condition, e.g. 'noise=0,latency=1,hidden=32'."""
        return f"noise={self.noise:g},latency={self.latency:g},hidden={self.hidden}"

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


FIELDS = tuple(f.name for f in dataclasses.fields(Hyperparameters))
_INT_FIELDS = ("hidden", "batch_size", "n_pulses")


def parse_spec(spec: str) -> tuple[float, float, int]:
    """'noise=0,latency=1,hidden=32' -> (0.0, 1.0, 32)."""
    if not isinstance(spec, str) or not spec.strip():
        raise SnncError(f"empty preset; write e.g. --preset {DEFAULT_PRESET}")
    vals: dict[str, float] = {}
    for part in (p.strip() for p in spec.split(",")):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in _KEYS:
            raise SnncError(f"bad preset item {part!r} in {spec!r}; a preset names noise, latency and hidden, "
                            f"e.g. --preset {DEFAULT_PRESET}")
        try:
            vals[key] = float(value)
        except ValueError:
            raise SnncError(f"preset value {value.strip()!r} for {key} is not a number; e.g. {key}=1") from None
    missing = [k for k in _KEYS if k not in vals]
    if missing:
        raise SnncError(f"preset {spec!r} lacks {', '.join(missing)}; write e.g. --preset {DEFAULT_PRESET}")
    if vals["hidden"] != int(vals["hidden"]):
        raise SnncError(f"preset hidden={vals['hidden']:g} is not a whole number of neurons; use 8, 16 or 32")
    return vals["noise"], vals["latency"], int(vals["hidden"])


def load_table(path: str | Path = PRESET_CSV) -> list[Hyperparameters]:
    """All rows of the hyperparameter table."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise SnncError(f"preset table {path} cannot be read ({exc}); reinstall snnc") from None
    out = []
    for row in rows:
        try:
            out.append(Hyperparameters(**{k: (int(float(row[k])) if k in _INT_FIELDS else float(row[k]))
                                          for k in FIELDS}))
        except (KeyError, ValueError) as exc:
            raise SnncError(f"preset table {path} is malformed ({exc}); reinstall snnc") from None
    return out


def get_preset(spec: str = DEFAULT_PRESET) -> Hyperparameters:
    """The table row for a preset spec; SnncError naming the available values if there is none."""
    noise, latency, hidden = parse_spec(spec)
    table = load_table()
    for hp in table:
        if abs(hp.noise - noise) < 1e-9 and abs(hp.latency - latency) < 1e-9 and hp.hidden == hidden:
            return hp

    def avail(key):
        return "/".join(f"{v:g}" for v in sorted({getattr(h, key) for h in table}))

    raise SnncError(f"no preset {spec!r}: the table has noise {avail('noise')}, latency {avail('latency')}, "
                    f"hidden {avail('hidden')}; pick one of those and override single fields with their flags "
                    f"(e.g. --hidden 64)")


def with_overrides(hp: Hyperparameters, **overrides) -> Hyperparameters:
    """``hp`` with the given fields replaced (None values are ignored)."""
    unknown = set(overrides) - set(FIELDS)
    if unknown:
        raise SnncError(f"unknown hyperparameter(s) {', '.join(sorted(unknown))}; known: {', '.join(FIELDS)}")
    changes = {k: (int(v) if k in _INT_FIELDS else float(v)) for k, v in overrides.items() if v is not None}
    return dataclasses.replace(hp, **changes)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_preset_args(parser: argparse.ArgumentParser) -> None:
    """--preset plus one override flag per field (--batch-size, --decay-rate-tau, ...)."""
    parser.add_argument("--preset", default=DEFAULT_PRESET,
                        help=f"condition of Comsa et al. 2021 whose tuned settings to use (default {DEFAULT_PRESET})")
    group = parser.add_argument_group("preset overrides (default: the preset's value)")
    helps = {"noise": "input noise eta, time units", "latency": "target output latency, time units",
             "decay_rate_tau": "tau, 1 / time unit", "threshold_theta": "firing threshold theta",
             "hidden": "hidden neurons", "n_pulses": "synchronisation pulses per layer"}
    for name in FIELDS:
        typ = int if name in _INT_FIELDS else float
        group.add_argument(_flag(name), dest=name, type=typ, default=None, help=helps.get(name))


def hyperparameters_from_args(args: argparse.Namespace) -> Hyperparameters:
    """The preset named by ``args.preset`` with the override flags applied."""
    hp = get_preset(args.preset)
    return with_overrides(hp, **{k: getattr(args, k, None) for k in FIELDS})
