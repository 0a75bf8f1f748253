"""The order in which a grid's trials are handed to workers: longest first.

With N workers and trials of uneven length, the wall time of a sweep is set by the worker that finishes last. When
the long trials run first and the short ones fill the gaps at the end (the classic longest-processing-time rule),
the workers finish within about one short trial of each other; in the sampler's random order a long trial often
starts last and runs alone (8 trials on 2 workers: the last one alone is a sixth of the sweep).

:func:`estimated_cost` estimates a config's training time from the flags its trainer's own parser reads (defaults
included): epochs x training images x a per-image cost ``a + b x hidden`` per trainer (:data:`PER_IMAGE_COST`,
fitted to CPU times measured on this project's machine; trainers not listed cost ``hidden`` per image, so at least
hidden size, epochs and images order them). Only the order matters. :func:`longest_first` sorts configs by it
(ties keep the grid's order).
"""
from __future__ import annotations

from collections.abc import Sequence

from experiments.sweep_spec import SpecError, TrialConfig, parse_trainer_argv, trainer_parsers

# Images in a full training split when no --limit-train is given (MNIST and Fashion-MNIST: 60,000; the trainers
# hold 6,000 out for validation, which does not change the order).
FULL_TRAIN_IMAGES = 60_000
# CPU microseconds per training image and epoch, a + b x hidden units, per trainer (one thread; evaluation of the
# validation and test sets included): fitted to the trials of the full-data Fig. 3 slice (docs/sweeps.md, "Order
# of the trials"). The ANN's small batches make it nearly independent of the hidden size.
PER_IMAGE_COST = {"temporal": (150.0, 6.0), "ann": (170.0, 1.0)}
DEFAULT_HIDDEN = 32


def estimated_cost(config: TrialConfig, parsers: dict | None = None) -> float:
    """Relative training cost of ``config`` (arbitrary units; only comparisons between configs mean anything).
    Flags the trainer does not have count as 1 (epochs) or :data:`FULL_TRAIN_IMAGES` (training images)."""
    try:
        ns = parse_trainer_argv(config.argv(out="/nonexistent"), parsers)
    except SpecError:
        return 0.0  # a config its trainer refuses fails at once: no need to start it early
    epochs = getattr(ns, "epochs", None) or 1
    n_train = getattr(ns, "limit_train", None) or FULL_TRAIN_IMAGES
    hidden = getattr(ns, "hidden", None) or DEFAULT_HIDDEN
    if isinstance(hidden, bool) or not isinstance(hidden, (int, float)):
        hidden = DEFAULT_HIDDEN
    a, b = PER_IMAGE_COST.get(config.trainer, (0.0, 1.0))
    return float(epochs) * float(n_train) * (a + b * float(hidden))


def longest_first(configs: Sequence[TrialConfig], parsers: dict | None = None) -> list[TrialConfig]:
    """``configs`` sorted by :func:`estimated_cost`, largest first (stable: equal costs keep their order)."""
    if parsers is None:
        parsers = trainer_parsers()  # built once, not per config
    costs = {c.hash: estimated_cost(c, parsers) for c in configs}
    return sorted(configs, key=lambda c: -costs[c.hash])
