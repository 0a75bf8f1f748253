"""The order in which a grid's trials are handed to workers: longest first.

With N workers and trials of uneven length, the wall time of a sweep is set by the worker that finishes last. When
the long trials run first and the short ones fill the gaps at the end (the classic longest-processing-time rule),
the workers finish within about one short trial of each other; in the sampler's random order a long trial often
starts last and runs alone (8 trials on 2 workers: the last one alone is a sixth of the sweep).

:func:`estimated_cost` estimates a config's CPU seconds from the flags as its trainer's own parser reads them
(defaults included) and a per-trainer :class:`TrainerCost` (:data:`TRAINER_COSTS`, fitted to the CPU times of
the full-data Fig. 3 trials): per epoch, every training image costs ``per_image + per_hidden x hidden``, every
Adam step ``per_batch + per_batch_hidden x hidden`` (small batches dominate: the tuned rows use batches of 1 to 107), and every validation
image ``per_eval_image``; the test set is evaluated once. The batch size is the flag's value or the preset row's
(temporal and ANN trainers). Trainers without an entry cost ``hidden`` per training image and epoch, so hidden
size, epochs and images still order them. :func:`longest_first` sorts configs by it (ties keep the grid's order).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from experiments.sweep_spec import SpecError, TrialConfig, parse_trainer_argv, trainer_parsers

# Images of a full split when no --limit-train / --limit-eval is given (MNIST and Fashion-MNIST: 54,000 training
# images after the 6,000 held out for validation, 10,000 test images).
FULL_TRAIN_IMAGES = 54_000
FULL_VAL_IMAGES = 6_000
FULL_TEST_IMAGES = 10_000
DEFAULT_HIDDEN = 32


@dataclass(frozen=True)
class TrainerCost:
    """CPU microseconds (one thread) per training image and epoch (``per_image + per_hidden x hidden``), per Adam
    step (``per_batch + per_batch_hidden x hidden``: the update touches every weight), per evaluated image
    (``per_eval_image``), and per trial (``fixed``: data, files)."""

    per_image: float
    per_hidden: float
    per_batch: float
    per_batch_hidden: float
    per_eval_image: float
    fixed: float = 0.0


# Fitted to the 60 one-epoch full-data Fig. 3 trials (busy 2-core machine, trial CPU seconds; evaluation measured
# apart: ~1.2 s per 6,000 images; docs/sweeps.md). E.g. temporal hidden 32 batch 2: 32.3 s measured, 31 s estimated;
# hidden 8 batch 1: 24.5-27.3 s vs 26 s; hidden 32 batch 107: 14.2-15.9 s vs 15 s; ANN hidden 8 batch 1: 45 s vs
# 45 s; hidden 32 batch 107: 5.4 s vs 5.7 s.
TRAINER_COSTS = {"temporal": TrainerCost(110.0, 2.8, 150.0, 16.0, 200.0, 0.5e6),
                 "ann": TrainerCost(40.0, 0.5, 580.0, 20.0, 150.0, 0.5e6)}


def _temporal_batch(ns) -> int:
    from models.presets import hyperparameters_from_args

    return hyperparameters_from_args(ns).batch_size


def _ann_batch(ns) -> int:
    from models.ann import resolve_config

    return resolve_config(dataset=ns.dataset, preset=ns.preset, hidden=ns.hidden, noise=ns.noise,
                          batch_size=ns.batch_size).batch_size


# The batch size a trainer uses when --batch-size is not given (its preset row's).
PRESET_BATCH: dict[str, Callable] = {"temporal": _temporal_batch, "ann": _ann_batch}


def _number(ns, name: str, default: float) -> float:
    v = getattr(ns, name, None)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else float(default)


def estimated_cost(config: TrialConfig, parsers: dict | None = None) -> float:
    """Estimated CPU microseconds of training ``config`` (only comparisons between configs matter). A config its
    trainer refuses costs 0 (it fails at once)."""
    try:
        ns = parse_trainer_argv(config.argv(out="/nonexistent"), parsers)
    except SpecError:
        return 0.0
    epochs = _number(ns, "epochs", 1)
    n_train = _number(ns, "limit_train", FULL_TRAIN_IMAGES)
    hidden = _number(ns, "hidden", DEFAULT_HIDDEN)
    cost = TRAINER_COSTS.get(config.trainer)
    if cost is None:
        return epochs * n_train * hidden
    batch = getattr(ns, "batch_size", None)
    if batch is None and config.trainer in PRESET_BATCH:
        try:
            batch = PRESET_BATCH[config.trainer](ns)
        except Exception:  # the trainer refuses the condition: the trial fails at once
            return 0.0
    steps = math.ceil(n_train / batch) if batch else 0
    limit_eval = getattr(ns, "limit_eval", None)
    n_val = min(limit_eval, FULL_VAL_IMAGES) if limit_eval else FULL_VAL_IMAGES
    n_test = min(limit_eval, FULL_TEST_IMAGES) if limit_eval else FULL_TEST_IMAGES
    per_epoch = n_train * (cost.per_image + cost.per_hidden * hidden) \
        + steps * (cost.per_batch + cost.per_batch_hidden * hidden) \
        + n_val * cost.per_eval_image
    return epochs * per_epoch + n_test * cost.per_eval_image + cost.fixed


def longest_first(configs: Sequence[TrialConfig], parsers: dict | None = None) -> list[TrialConfig]:
    """``configs`` sorted by :func:`estimated_cost`, largest first (stable: equal costs keep their order)."""
    if parsers is None:
        parsers = trainer_parsers()  # built once, not per config
    costs = {c.hash: estimated_cost(c, parsers) for c in configs}
    return sorted(configs, key=lambda c: -costs[c.hash])
