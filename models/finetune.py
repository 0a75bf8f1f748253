"""Hardware-in-the-loop quantization-aware fine-tuning (``snnc finetune``, issue [I] section 2): shared parts.

The forward pass of every batch runs on the *deployed* integer network (``hw_sim``, or the ``hil`` loopback
device: targets/hw_sim.py, targets/hil.py, hw_sim/server.py), compiled from the current float parameters with the
same compiler options the model will be deployed with; the loss is computed on the deployed output. The backward
pass is the float model's, linearised at the deployed spikes (straight-through): each layer's Jacobian is evaluated
with its inputs set to the spikes the device produced in the layer below. The float parameters are the master
copy; the model is re-compiled every ``compile_every`` batches (default every batch), so the next forward uses the
new integers. The result is an ordinary model file (same format and family as the input) that compiles and
verifies as before; the run's figures are stored in its metadata under ``finetune``.

Family specifics: alpha (temporal) models in models/finetune_alpha.py (exact Lambert-W gradients), LIF (rate)
models in models/finetune_lif.py (surrogate gradient). This module holds the options, the device runner and the
checks that both use. Units: times in model time units (alpha) or steps (LIF); MSE per pixel in [0, 1] units
(alpha) or z-scored (LIF).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator

from toolchain.errors import SnncError, TargetError

TARGETS = ("hw_sim", "hil")
FAMILIES = ("alpha", "lif")
# the registry name each fine-tuning target runs for each family (None: not available)
TARGET_NAMES = {("alpha", "hw_sim"): "hw_sim", ("alpha", "hil"): "hil",
                ("lif", "hw_sim"): "hw_sim-lif", ("lif", "hil"): None}


class FinetuneError(SnncError):
    """Bad fine-tuning input (options, model, target); the message names the problem and the fix."""


@dataclass(frozen=True)
class FinetuneOptions:
    """Options of one fine-tuning run (both families).

    target:        "hw_sim" or "hil" (the device the forward passes run on)
    epochs:        passes over the training images (>= 1)
    lr:            Adam step size for the weights (None: the family's default, see the family module)
    batch_size:    images per update (None: the family's default)
    compile_every: batches between re-compilations (1 = every batch)
    limit_train:   first N training images (None: all)
    limit_eval:    first N validation / test images used to pick the best epoch and to report before/after
    seed:          shuffling and input-encoding seed
    eval_every:    also validate (and keep the best model) every N updates, not only after each epoch
    target_options: keyword options of the target (e.g. {"port": 7341} for a running hil device)
    """

    target: str = "hw_sim"
    epochs: int = 1
    lr: float | None = None
    batch_size: int | None = None
    compile_every: int = 1
    limit_train: int | None = None
    limit_eval: int = 1000
    seed: int = 0
    eval_every: int | None = None
    target_options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise FinetuneError(f"unknown fine-tuning target {self.target!r}; choose one of {', '.join(TARGETS)} "
                                f"(the deployed integer network runs there)")
        for name, low in (("epochs", 1), ("compile_every", 1), ("limit_eval", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise FinetuneError(f"{name.replace('_', '-')} must be a whole number >= {low}, got {v!r}")
        for name in ("batch_size", "limit_train", "eval_every"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise FinetuneError(f"{name.replace('_', '-')} must be a whole number >= 1, got {v!r}")
        if self.lr is not None and not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr)
                                        and self.lr > 0):
            raise FinetuneError(f"lr must be a finite number > 0 (Adam step size), got {self.lr!r}")
        if not isinstance(self.target_options, dict):
            raise FinetuneError(f"target options must be a dict of keyword options, got {self.target_options!r}")

    def as_dict(self) -> dict:
        return asdict(self)


def target_name(family: str, target: str) -> str:
    """The registry name that runs ``family`` models on ``target``; FinetuneError when there is none."""
    if target not in TARGETS:
        raise FinetuneError(f"unknown fine-tuning target {target!r}; choose one of {', '.join(TARGETS)}")
    name = TARGET_NAMES.get((family, target))
    if name is None:
        raise FinetuneError(f"--target {target} has no {family} (steps) implementation: the hil device runs alpha "
                            f"(temporal) models only; fine-tune LIF models with --target hw_sim")
    return name


@contextmanager
def open_target(family: str, options: FinetuneOptions) -> Iterator[Any]:
    """The target object the forward passes run on (``run(net, inputs) -> RunResult``); a hil target's private
    device (started on first use) is stopped when the block ends, whatever happens."""
    from targets.registry import get_target

    name = target_name(family, options.target)
    try:
        target = get_target(name, **options.target_options)
    except TypeError as exc:
        raise TargetError(f"bad option for target {name}: {exc}; fix: pass only options that "
                          f"targets/{name.replace('-', '_')}.py accepts") from None
    try:
        yield target
    finally:
        close = getattr(target, "close", None)
        if close is not None:
            close()


def batches(n: int, batch_size: int, rng) -> Iterator[Any]:
    """Index arrays of one epoch: a fresh permutation of ``n`` items cut into full batches (a short last batch
    is dropped, as the trainers do)."""
    perm = rng.permutation(n)
    for b in range(n // batch_size):
        yield perm[b * batch_size:(b + 1) * batch_size]


def check_enough(n_train: int, batch_size: int) -> None:
    if n_train < batch_size:
        raise FinetuneError(f"{n_train} training images is fewer than one batch of {batch_size}; raise "
                            f"--limit-train or lower --batch-size")


def relative(a: float, b: float) -> float:
    """a / b - 1 (signed relative change), nan when b is 0."""
    return a / b - 1.0 if b else float("nan")


Log = Callable[[str], None]
