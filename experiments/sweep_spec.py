"""Sweep spec: a grid or a search space of training runs, read from TOML or JSON, validated, hashed per config.

A spec names a trainer (``snnc train <trainer>``: temporal, ann, rate, ... whatever the CLI has), the flags every
trial gets (``[args]``, plus ``[args.<trainer>]`` for one trainer only), and either a grid (``[grid]``: flag ->
list of values, Optuna's GridSampler runs the product) or a search space (``[search]``: flag -> {low, high, log}
or {choices}, Optuna's TPE sampler runs ``n_trials``). ``trainer`` itself may be a grid dimension. Example::

    name = "fig3-small"
    trainer = "temporal"
    metric = "test_mse"        # key of the trainer's metrics.json that is the trial's value
    [args]
    dataset = "mnist"
    epochs = 1
    limit-train = 100
    [grid]
    noise = [0.0, 0.4]
    hidden = [8, 16]

Flag names are the trainers' long options without ``--`` (``limit-train`` or ``limit_train``); ``true`` passes a
switch, ``false`` leaves it out. ``out``, ``force`` and ``resume`` are the sweep's own business and refused.
Every config of a grid (and both ends of every search range) is parsed by the trainer's own argument parser when
the spec is loaded, so a misspelt flag or a bad value fails before any training.

A config (trainer + flags) has a hash (:meth:`TrialConfig.hash`, sha256 of its canonical JSON, 16 hex digits):
trial folders are named by it and a finished config is never trained twice. Numbers are canonical (``0`` and
``0.0`` are the same config). The environment (``$SNNC_DATA``) is not part of the hash: put ``data-dir`` in
``[args]`` to pin the data.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import io
import itertools
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolchain.errors import SnncError

SAMPLERS = ("grid", "tpe")
DIRECTIONS = ("minimize", "maximize")
RESERVED_FLAGS = ("out", "force", "resume")
_TOP_KEYS = ("name", "trainer", "sampler", "metric", "direction", "n_trials", "seed", "heartbeat_interval",
             "grace_period", "max_retry", "out", "order", "args", "grid", "search")
ORDERS = ("longest-first", "sampler")
HASH_LEN = 16


class SpecError(SnncError):
    """A sweep spec is malformed (unknown key, bad value, a flag the trainer does not have)."""


def _flag(name: str) -> str:
    return str(name).strip().lstrip("-").replace("_", "-")


def canonical_value(value: Any, where: str) -> bool | int | float | str:
    """A flag value in canonical form: bools and strings as they are, integral floats as ints, finite floats."""
    if isinstance(value, bool) or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SpecError(f"{where}: {value} is not a finite number; use a finite value")
        return int(value) if value.is_integer() else float(value)
    raise SpecError(f"{where}: value {value!r} of type {type(value).__name__} is not a flag value; use a number, "
                    f"a string or true/false")


@dataclass(frozen=True)
class TrialConfig:
    """One training run: ``snnc train <trainer>`` with ``args`` (flag name without dashes -> canonical value)."""

    trainer: str
    args: tuple[tuple[str, bool | int | float | str], ...]

    def as_dict(self) -> dict:
        return {"trainer": self.trainer, "args": dict(self.args)}

    @property
    def hash(self) -> str:
        """sha256 of the canonical JSON of trainer and flags, first 16 hex digits (the trial folder's name)."""
        text = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:HASH_LEN]

    def argv(self, out: str | Path | None = None, extra: dict | None = None) -> list[str]:
        """``["train", trainer, --flag value ...]`` (+ ``--out out``); ``extra`` flags are added unless set."""
        flags = dict(self.args)
        for k, v in (extra or {}).items():
            flags.setdefault(k, v)
        argv = ["train", self.trainer]
        for k in sorted(flags):
            v = flags[k]
            if v is True:
                argv.append(f"--{k}")
            elif v is not False:
                argv += [f"--{k}", repr(v) if isinstance(v, float) else str(v)]
        if out is not None:
            argv += ["--out", str(out)]
        return argv

    def label(self, keys: tuple[str, ...] | None = None) -> str:
        """'trainer=temporal hidden=8 noise=0.4' (only ``keys`` when given)."""
        d = {"trainer": self.trainer, **dict(self.args)}
        return " ".join(f"{k}={d[k]}" for k in (keys or tuple(d)) if k in d)


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep (see the module docstring for the file format).

    ``heartbeat_interval`` and ``grace_period`` are seconds: a running trial records a heartbeat every interval,
    and one without a heartbeat for ``grace_period`` is failed (its worker died) and retried up to ``max_retry``
    times."""

    name: str
    trainer: str | None = None
    sampler: str = "grid"
    metric: str = "val_mse"
    direction: str = "minimize"
    args: dict = field(default_factory=dict)
    trainer_args: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    search: dict = field(default_factory=dict)
    n_trials: int | None = None
    seed: int = 0
    heartbeat_interval: int = 30
    grace_period: int = 120
    max_retry: int = 1
    out: str | None = None
    order: str = "longest-first"

    def to_dict(self) -> dict:
        """Plain JSON-able form (what :func:`spec_from_dict` reads back; stored in the Optuna study)."""
        d = dataclasses.asdict(self)
        args = dict(d.pop("args"))
        for t, a in d.pop("trainer_args").items():
            args[t] = dict(a)
        d["args"] = args
        return {k: v for k, v in d.items() if v is not None and v != {}}

    @property
    def params(self) -> tuple[str, ...]:
        """The swept dimensions, sorted."""
        return tuple(sorted(self.grid if self.sampler == "grid" else self.search))

    def config(self, params: dict) -> TrialConfig:
        """The trial config for one point of the grid / search space."""
        params = {_flag(k): canonical_value(v, f"parameter {k}") for k, v in params.items()}
        trainer = params.pop("trainer", self.trainer)
        if trainer is None:
            raise SpecError("the spec names no trainer; set trainer = \"temporal\" (or make trainer a grid "
                            "dimension)")
        flags = dict(self.args)
        flags.update(self.trainer_args.get(trainer, {}))
        flags.update(params)
        return TrialConfig(str(trainer), tuple(sorted(flags.items())))

    def grid_points(self) -> list[dict]:
        """Every point of the grid (sorted dimension order), as {flag: value}."""
        if self.sampler != "grid":
            raise SpecError(f"spec {self.name!r} is a {self.sampler} search, it has no grid")
        keys = self.params
        return [dict(zip(keys, combo)) for combo in itertools.product(*(self.grid[k] for k in keys))]

    def configs(self) -> list[TrialConfig]:
        """The configs of the grid (duplicates removed, first occurrence kept)."""
        seen, out = set(), []
        for p in self.grid_points():
            c = self.config(p)
            if c.hash not in seen:
                seen.add(c.hash)
                out.append(c)
        return out

    def total(self) -> int:
        """Trials the sweep needs: the grid's distinct configs, or ``n_trials`` of a search."""
        return len(self.configs()) if self.sampler == "grid" else int(self.n_trials or 0)


def _req_int(d: dict, key: str, lo: int, default: int | None) -> int | None:
    v = d.get(key, default)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise SpecError(f"{key} must be a whole number >= {lo}, got {v!r}")
    return v


def _search_dim(name: str, dist: Any) -> dict:
    where = f"[search] {name}"
    if not isinstance(dist, dict):
        raise SpecError(f"{where} must be a table: {{low = 1e-4, high = 1e-2, log = true}} or {{choices = [...]}}")
    unknown = set(dist) - {"low", "high", "log", "step", "int", "choices"}
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; use low/high/log/step/int or "
                        f"choices")
    if "choices" in dist:
        if set(dist) != {"choices"} or not isinstance(dist["choices"], list) or not dist["choices"]:
            raise SpecError(f"{where}: choices must be a non-empty list and stand alone")
        return {"choices": [canonical_value(v, where) for v in dist["choices"]]}
    if "low" not in dist or "high" not in dist:
        raise SpecError(f"{where} needs low and high (or choices)")
    lo, hi = dist["low"], dist["high"]
    for v in (lo, hi):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise SpecError(f"{where}: low and high must be finite numbers, got {lo!r}, {hi!r}")
    if not lo < hi:
        raise SpecError(f"{where}: low {lo} must be below high {hi}")
    log = dist.get("log", False)
    if not isinstance(log, bool) or (log and lo <= 0):
        raise SpecError(f"{where}: log must be true/false, and a log range needs low > 0")
    out = {"low": lo, "high": hi, "log": log}
    if "step" in dist:
        if log or isinstance(dist["step"], bool) or not dist["step"] > 0:
            raise SpecError(f"{where}: step must be > 0 and cannot be combined with log")
        out["step"] = dist["step"]
    whole = isinstance(lo, int) and isinstance(hi, int) and isinstance(out.get("step", 1), int)
    is_int = dist.get("int", whole)
    if not isinstance(is_int, bool) or (is_int and not whole):
        raise SpecError(f"{where}: int = true needs whole-number low, high and step")
    out["int"] = is_int
    return out


def spec_from_dict(d: dict, *, origin: str = "spec") -> SweepSpec:
    """Validate a spec given as a dict (from TOML/JSON or from a study); SpecError names the problem and fix."""
    if not isinstance(d, dict):
        raise SpecError(f"{origin}: a sweep spec is a table of keys, got {type(d).__name__}")
    unknown = set(d) - set(_TOP_KEYS)
    if unknown:
        raise SpecError(f"{origin}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(_TOP_KEYS)}")
    name = d.get("name")
    if not isinstance(name, str) or not name.strip() or any(c in name for c in "/\\\0") or name.startswith("."):
        raise SpecError(f"{origin}: name must be a non-empty study name without slashes, got {name!r}")
    sampler = d.get("sampler", "grid")
    if sampler not in SAMPLERS:
        raise SpecError(f"{origin}: sampler {sampler!r} is unknown; use one of {', '.join(SAMPLERS)}")
    direction = d.get("direction", "minimize")
    if direction not in DIRECTIONS:
        raise SpecError(f"{origin}: direction {direction!r} is unknown; use minimize or maximize")
    metric = d.get("metric", "val_mse")
    if not isinstance(metric, str) or not metric:
        raise SpecError(f"{origin}: metric must be the name of a metrics.json key, e.g. \"val_mse\"")
    trainer = d.get("trainer")
    if trainer is not None and not isinstance(trainer, str):
        raise SpecError(f"{origin}: trainer must be a string such as \"temporal\", got {trainer!r}")

    raw_args = d.get("args", {})
    if not isinstance(raw_args, dict):
        raise SpecError(f"{origin}: [args] must be a table of flag = value")
    args, trainer_args = {}, {}
    for k, v in raw_args.items():
        if isinstance(v, dict):  # [args.<trainer>]
            trainer_args[str(k)] = {_flag(kk): canonical_value(vv, f"[args.{k}] {kk}") for kk, vv in v.items()}
        else:
            args[_flag(k)] = canonical_value(v, f"[args] {k}")

    grid, search = d.get("grid", {}), d.get("search", {})
    if not isinstance(grid, dict) or not isinstance(search, dict):
        raise SpecError(f"{origin}: [grid] and [search] must be tables")
    if sampler == "grid":
        if search:
            raise SpecError(f"{origin}: [search] needs sampler = \"tpe\"; a grid spec lists values under [grid]")
        if not grid:
            raise SpecError(f"{origin}: a grid spec needs a [grid] table, e.g. hidden = [8, 16]")
        clean = {}
        for k, vals in grid.items():
            if not isinstance(vals, list) or not vals:
                raise SpecError(f"{origin}: [grid] {k} must be a non-empty list of values")
            clean[_flag(k)] = [canonical_value(v, f"[grid] {k}") for v in vals]
        grid = clean
        if d.get("n_trials") is not None:
            raise SpecError(f"{origin}: n_trials is for searches; a grid runs each of its points once")
        n_trials = None
    else:
        if grid:
            raise SpecError(f"{origin}: [grid] needs sampler = \"grid\"; a tpe search lists ranges under [search]")
        if not search:
            raise SpecError(f"{origin}: a tpe spec needs a [search] table, e.g. lr-weights = "
                            f"{{low = 1e-4, high = 1e-2, log = true}}")
        search = {_flag(k): _search_dim(k, v) for k, v in search.items()}
        n_trials = _req_int(d, "n_trials", 1, None)
        if n_trials is None:
            raise SpecError(f"{origin}: a tpe search needs n_trials (how many trials to run), e.g. n_trials = 20")
    swept = set(grid) | set(search)
    for k in set(args) | swept | {kk for a in trainer_args.values() for kk in a}:
        if k in RESERVED_FLAGS:
            raise SpecError(f"{origin}: --{k} is set by the sweep itself (each trial trains into its own folder); "
                            f"remove it from the spec")
    if trainer is None and "trainer" not in swept:
        raise SpecError(f"{origin}: name the trainer (trainer = \"temporal\") or sweep it ([grid] trainer = "
                        f"[\"temporal\", \"ann\"])")
    if "trainer" in args:
        raise SpecError(f"{origin}: trainer is a top-level key, not a flag under [args]")
    out = d.get("out")
    if out is not None and (not isinstance(out, str) or not out):
        raise SpecError(f"{origin}: out must be a folder path")
    order = d.get("order", "longest-first")
    if order not in ORDERS or (order != "longest-first" and sampler != "grid"):
        raise SpecError(f"{origin}: order {order!r} is unknown; a grid takes \"longest-first\" (the default: "
                        f"queued by estimated cost) or \"sampler\" (GridSampler's shuffled order)")
    heartbeat = _req_int(d, "heartbeat_interval", 1, 30)
    grace = _req_int(d, "grace_period", 1, max(120, 4 * heartbeat))
    if grace <= heartbeat:
        raise SpecError(f"{origin}: grace_period ({grace} s) must exceed heartbeat_interval ({heartbeat} s), "
                        f"e.g. 4x")
    return SweepSpec(name=name.strip(), trainer=trainer, sampler=sampler, metric=metric, direction=direction,
                     args=args, trainer_args=trainer_args, grid=grid, search=search, n_trials=n_trials,
                     seed=_req_int(d, "seed", 0, 0), heartbeat_interval=heartbeat, grace_period=grace,
                     max_retry=_req_int(d, "max_retry", 0, 1), out=out, order=order)


def load_spec(path: str | Path, *, check_flags: bool = True) -> SweepSpec:
    """Read and validate a spec file (.toml or .json); with ``check_flags`` every config is parsed by its
    trainer's argument parser (:func:`check_spec_flags`)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"cannot read the sweep spec {path} ({exc.strerror or exc}); pass the path of a .toml or "
                        f".json spec") from None
    try:
        if path.suffix.lower() == ".json":
            d = json.loads(raw.decode("utf-8"))
        else:
            d = tomllib.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise SpecError(f"sweep spec {path} is not valid {kind} ({exc}); fix the file") from None
    spec = spec_from_dict(d, origin=str(path))
    if check_flags:
        check_spec_flags(spec)
    return spec


def trainer_parsers() -> dict[str, argparse.ArgumentParser]:
    """``snnc train``'s subcommands: trainer name -> its argument parser (built from the real CLI)."""
    from toolchain.cli import build_parser

    def subs(p: argparse.ArgumentParser) -> dict:
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                return dict(a.choices)
        return {}

    train = subs(build_parser()).get("train")
    if train is None:
        raise SnncError("this snnc has no `train` command; reinstall snnc with its models package")
    return subs(train)


def parse_trainer_argv(argv: list[str], parsers: dict | None = None) -> argparse.Namespace:
    """Parse ``["train", trainer, ...]`` with the trainer's own parser; SpecError carries argparse's message."""
    parsers = trainer_parsers() if parsers is None else parsers
    trainer = argv[1]
    if trainer not in parsers:
        raise SpecError(f"unknown trainer {trainer!r}; `snnc train` has {', '.join(sorted(parsers))}")
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return parsers[trainer].parse_args(argv[2:])
    except SystemExit:
        msg = err.getvalue().strip().splitlines()
        raise SpecError(f"`snnc {' '.join(argv)}` is refused by the trainer: {msg[-1] if msg else 'bad arguments'}; "
                        f"fix the flag in the spec") from None


def check_spec_flags(spec: SweepSpec) -> None:
    """Parse every grid config (for a search: each range's low and high, each choice) with the trainer's parser."""
    parsers = trainer_parsers()
    if spec.sampler == "grid":
        configs = spec.configs()
    else:
        fixed_trainer = spec.search.get("trainer", {}).get("choices", [spec.trainer])
        configs = []
        for t in fixed_trainer:
            for name, dist in spec.search.items():
                if name == "trainer":
                    continue
                values = dist["choices"] if "choices" in dist else [dist["low"], dist["high"]]
                configs += [spec.config({"trainer": t, name: v}) for v in values]
    for c in configs:
        parse_trainer_argv(c.argv(out="/nonexistent"), parsers)
