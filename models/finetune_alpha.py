"""Hardware-in-the-loop fine-tuning of alpha (temporal-coding) models with exact gradients (models/finetune.py).

One update on a batch of latency-coded images (times in model time units):

1. compile the current float network with the deployment options (``toolchain.compiler.compile_network``, every
   ``compile_every`` batches) and run the batch on the target (hw_sim or the hil device): deployed first-spike
   times of every layer;
2. loss on the deployed output: the authors' reconstruction loss ``0.5 sum_k (t_k - latency - target_k)^2`` over
   the output neurons the device fired (a missing spike counts 1.0 in the reported MSE and gives no gradient);
3. backward pass: layer l's exact trace (A, B, W, causal prefix; models/temporal_backprop.py) is computed by the
   float model *with the deployed spikes of layer l - 1 as its inputs* (the network input for layer 0), and the
   exact Lambert-W derivatives of Comsa et al. 2021 chain the loss gradient back through the layers at those
   points (straight-through: the quantization itself is not differentiated);
4. one Adam step on the float master parameters (models/temporal_trainer.Learner: weights, pulse weights, pulse
   times >= 0, the model's clip and no-spike penalty).

Before the first update, after every epoch and every ``eval_every`` updates the deployed reconstruction MSE on the
first ``limit_eval`` validation images is measured; the best of these models (the input model included, so fine-tuning never returns
a model worse on validation than it started) is kept, and before/after figures are measured on test images.
"""
from __future__ import annotations

import dataclasses
import time
from contextlib import nullcontext
from typing import Any

import numpy as np

from models.finetune import FinetuneError, FinetuneOptions, Log, batches, check_enough, open_target, relative
from models.network import TemporalNetwork
from models.presets import Hyperparameters
from toolchain.errors import CompileError

LR_FACTOR = 0.1  # default fine-tuning step: this fraction of the model's training learning rates


def hyperparameters_of(net: TemporalNetwork, batch_size: int | None, lr: float | None) -> Hyperparameters:
    """The model's training hyperparameters (``snnc train`` stores them in the metadata), with the fine-tuning
    batch size and learning rates: ``lr`` for the weights (default ``LR_FACTOR`` x the training rate) and the
    pulse times scaled by the same factor."""
    raw = net.metadata.get("hyperparameters")
    if not isinstance(raw, dict):
        raise FinetuneError("the model records no training hyperparameters (metadata 'hyperparameters', written "
                            "by `snnc train temporal`); fine-tune a model trained by snnc")
    try:
        hp = Hyperparameters(**{f.name: raw[f.name] for f in dataclasses.fields(Hyperparameters)})
    except (KeyError, TypeError) as exc:
        raise FinetuneError(f"the model's hyperparameters metadata is incomplete ({exc}); retrain it with "
                            f"`snnc train temporal`") from None
    factor = LR_FACTOR if lr is None else lr / hp.lr_weights
    return dataclasses.replace(hp, batch_size=batch_size or hp.batch_size, lr_weights=hp.lr_weights * factor,
                               lr_pulses=hp.lr_pulses * factor)


def compile_for(net: TemporalNetwork, compile_kw: dict, updates: int = 0):
    """``compile_network(net, **compile_kw)``; a failure after updates names the likely cause."""
    from toolchain.compiler import compile_network

    try:
        return compile_network(net, **compile_kw)
    except CompileError as exc:
        if updates == 0:
            raise
        raise CompileError(f"after {updates} fine-tuning updates the model no longer compiles: {exc}; fix: lower "
                           f"--lr or use fewer --epochs") from None


def deployed_step(net: TemporalNetwork, cn: Any, target: Any, x: np.ndarray, tgt: np.ndarray, hp: Hyperparameters
                  ) -> tuple[float, list, np.ndarray]:
    """Forward on the deployed network, loss on its output, exact backward at the deployed spikes.

    x (N, n_in) input times, tgt (N, n_out) target times relative to the latency. Returns (summed squared error
    with a missing spike = 1.0, per-layer ``LayerGrads`` (batch means), deployed output times)."""
    from models import temporal_kernels as K
    from models.temporal_backprop import layer_backward, layer_forward

    res = target.run(cn, x)
    n = x.shape[0]
    states, prev = [], x
    for layer, deployed in zip(net.layers, res.times):
        states.append(layer_forward(prev, layer.all_weights(), layer.pulse_times, net.tau, net.theta))
        prev = np.ascontiguousarray(deployed, dtype=np.float64)   # the next layer sees the device's spikes
    sq, g = K.reconstruction_grad(prev, np.ascontiguousarray(tgt, dtype=np.float64), float(net.latency), 1.0 / n)
    grads: list = [None] * len(net.layers)
    for li in range(len(net.layers) - 1, -1, -1):
        lg = layer_backward(states[li], net.layers[li].all_weights(), g, net.tau, hp.clip_derivative,
                            hp.penalty_no_spike / n, need_input_grad=li > 0)
        grads[li] = lg
        g = lg.in_times
    return float(sq), grads, prev


def deployed_mse(net: TemporalNetwork, compile_kw: dict, target: Any, images: np.ndarray, x: np.ndarray,
                 cn: Any = None) -> float:
    """Reconstruction MSE per pixel of the deployed network (missing spike = 1.0)."""
    from models.encoding import reconstruction_mse

    cn = compile_for(net, compile_kw) if cn is None else cn
    return reconstruction_mse(target.run(cn, x).times[-1], images, net.latency)


def exact_mse(net: TemporalNetwork, images: np.ndarray, x: np.ndarray) -> float:
    from models.encoding import reconstruction_mse
    from models.temporal_trainer import output_times

    return reconstruction_mse(output_times(net, x), images, net.latency)


def finetune_alpha(net: TemporalNetwork, compile_kw: dict, train_images: np.ndarray, val_images: np.ndarray,
                   test_images: np.ndarray, options: FinetuneOptions, log: Log = print,
                   runner: Any = None) -> tuple[TemporalNetwork, dict]:
    """Fine-tune ``net`` through the deployed network (module docstring). Images are (N, n_px) in [0, 1].

    Returns the best model (metadata: the input's plus ``finetune``, the figures below) and the metrics:
    ``mse_float`` / ``mse_deployed_before`` (input model, exact and deployed, test images), ``mse_exact_after`` /
    ``mse_deployed_after`` (returned model), ``history`` per epoch (train loss on the deployed output, validation
    MSE deployed and exact, seconds) and the settings. ``runner``: a target object to use instead of
    ``options.target`` (e.g. ``targets.exact.ExactTarget()``: the same loop without a device, i.e. plain float
    fine-tuning, the control of benchmarks/finetune_gain.py)."""
    import torch

    from models.encoding import latency_encode, target_times
    from models.temporal_trainer import Learner, network_from_params

    if not isinstance(net, TemporalNetwork):
        raise FinetuneError(f"finetune_alpha needs a TemporalNetwork (alpha model), got {type(net).__name__}; "
                            f"fine-tune LIF models with models.finetune_lif")
    hp = hyperparameters_of(net, options.batch_size, options.lr)
    check_enough(train_images.shape[0], hp.batch_size)
    noise_mean = float(net.metadata.get("noise_mean", 1.0))
    rng = np.random.default_rng(options.seed)
    x_val = latency_encode(val_images)
    x_test = latency_encode(test_images)
    compile_for(net, compile_kw)                     # bad options fail here, before anything else runs
    n_torch = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with (nullcontext(runner) if runner is not None else open_target("alpha", options)) as target:
            before_val = deployed_mse(net, compile_kw, target, val_images, x_val)
            mse_float = exact_mse(net, test_images, x_test)
            mse_before = deployed_mse(net, compile_kw, target, test_images, x_test)
            log(f"before: test MSE exact {mse_float:.5f}, deployed {mse_before:.5f} "
                f"({relative(mse_before, mse_float):+.2%}); validation deployed {before_val:.5f}")
            learner = Learner(net, hp, "cpu")
            best = (before_val, 0, net, 0)
            history = []
            updates = 0

            def checkpoint(epoch: int, sq_sum: float, n_seen: int, t0: float) -> None:
                """Validate the current parameters on the deployed network; keep them if they are the best."""
                nonlocal best
                w_alls, pts = (list(map(np.copy, a)) for a in learner.numpy())
                if not all(np.all(np.isfinite(w)) for w in w_alls):
                    raise FinetuneError(f"fine-tuning diverged in epoch {epoch} (non-finite weights); lower --lr")
                cur = network_from_params(w_alls, pts, hp)
                val_dep = deployed_mse(cur, compile_kw, target, val_images, x_val, compile_for(cur, compile_kw,
                                                                                             updates))
                val_exact = exact_mse(cur, val_images, x_val)
                secs = time.perf_counter() - t0
                history.append({"epoch": epoch, "updates": updates, "train_mse_deployed": sq_sum / max(1, n_seen),
                                "val_mse_deployed": val_dep, "val_mse_exact": val_exact, "seconds": secs})
                log(f"epoch {epoch}/{options.epochs}, {updates} updates: train MSE (deployed) "
                    f"{sq_sum / max(1, n_seen):.5f}, validation deployed {val_dep:.5f} / exact {val_exact:.5f} "
                    f"({secs:.1f} s)")
                if val_dep < best[0]:
                    best = (val_dep, epoch, cur, updates)

            for epoch in range(1, options.epochs + 1):
                t0 = time.perf_counter()
                sq_sum, n_seen = 0.0, 0
                cn = None
                for k, idx in enumerate(batches(train_images.shape[0], hp.batch_size, rng)):
                    imgs = train_images[idx]
                    x = latency_encode(imgs, hp.noise, noise_mean, rng)
                    w_alls, pts = learner.numpy()
                    cur = network_from_params(w_alls, pts, hp)
                    if cn is None or k % options.compile_every == 0:
                        cn = compile_for(cur, compile_kw, updates)
                    sq, grads, _ = deployed_step(cur, cn, target, x, target_times(imgs), hp)
                    learner.step(grads)
                    updates += 1
                    sq_sum += sq
                    n_seen += imgs.size
                    if options.eval_every and updates % options.eval_every == 0:
                        checkpoint(epoch, sq_sum, n_seen, t0)
                if not (options.eval_every and updates % options.eval_every == 0):
                    checkpoint(epoch, sq_sum, n_seen, t0)
            best_net = best[2]
            mse_exact_after = exact_mse(best_net, test_images, x_test)
            mse_after = deployed_mse(best_net, compile_kw, target, test_images, x_test)
    finally:
        torch.set_num_threads(n_torch)
    log(f"after (epoch {best[1]}, {best[3]} updates): test MSE exact {mse_exact_after:.5f}, deployed {mse_after:.5f} "
        f"({relative(mse_after, mse_exact_after):+.2%} vs its exact; {relative(mse_after, mse_float):+.2%} vs the "
        f"input model's exact)")
    metrics = {
        "family": "alpha", "options": options.as_dict(),
        "compile_options": {k: v for k, v in compile_kw.items() if k != "calibration_times"},
        "lr_weights": hp.lr_weights, "lr_pulses": hp.lr_pulses, "batch_size": hp.batch_size,
        "n_train": int(train_images.shape[0]), "n_val": int(val_images.shape[0]),
        "n_test": int(test_images.shape[0]), "best_epoch": best[1], "best_updates": best[3],
        "val_mse_deployed_before": before_val,
        "mse_float": mse_float, "mse_deployed_before": mse_before, "mse_exact_after": mse_exact_after,
        "mse_deployed_after": mse_after, "history": history, "updates": updates,
    }
    meta = dict(net.metadata)
    meta["finetune"] = dict(metrics)
    return dataclasses.replace(best_net, metadata=meta), metrics


__all__ = ["LR_FACTOR", "deployed_mse", "deployed_step", "exact_mse", "finetune_alpha", "hyperparameters_of"]
