"""Hardware-in-the-loop fine-tuning of LIF (rate-coded) models with a surrogate gradient (models/finetune.py).

The model is a chain of Dense + LIF layers (Roy et al.'s autoencoder, models/rate_model.py): per step
``V = min(leak V + W a_prev, v_th)``, spike ``a = [V >= v_th]``, reset to 0 after a spike. One update on a batch
of Bernoulli-coded images (T steps, the model's p_scale):

1. compile the current float graph with the deployment options (``toolchain.steps_compiler.compile_graph``,
   every ``compile_every`` batches) and run the batch on hw_sim (``hw_sim-lif``): deployed spike trains of every
   layer;
2. the float model linearised at the deployed spikes: each layer's potential V is recomputed in float64 from the
   *deployed* spikes of the layer below, with the resets where the *deployed* neuron fired; its spikes are the
   deployed ones in the forward pass and have the authors' sigmoid surrogate derivative ``s'(V - v_th)`` in the
   backward pass (straight-through for the clamp, resets detached: models/rate_bptt.py's choices);
3. loss: the training loss of models/rate_bptt.py on the deployed output, ``sum_t 0.5 sum (mask_t (v_th x_t -
   V2_t))^2 / B`` with ``mask_t = x_t XOR a2_t`` (a2 the deployed output spikes);
4. one Adam step (eps 1e-7) on the float weights.

When the deployed spikes equal the float model's, this is exactly the gradient of ``models.rate_bptt.bptt_loss``.
Figures: z-scored MSE of the output spike-count map against the image (Roy et al.'s "MSE";
``toolchain.spike_metrics.zscore_mse``), deployed and float, on the first ``limit_eval`` images.
"""
from __future__ import annotations

import dataclasses
import time
from contextlib import nullcontext
from typing import Any

import numpy as np

from models.finetune import FinetuneError, FinetuneOptions, Log, batches, check_enough, open_target, relative
from toolchain.errors import CompileError
from toolchain.ir import Graph

DEFAULT_LR = 1e-4      # Adam step of the weights (threshold units per update)
DEFAULT_BATCH = 100    # images per update (the rate trainer's batch)


def _chain(graph: Graph) -> tuple[list[np.ndarray], list]:
    from models.rate_model import graph_weights
    from toolchain.errors import ArtifactError

    try:
        ws, pops = graph_weights(graph)
    except ArtifactError as exc:
        raise FinetuneError(f"fine-tuning of steps models covers chains of Dense + LIF layers: {exc}") from None
    for p in pops:
        if p.reset != "zero" or p.strict:
            raise FinetuneError(f"population of {p.n} neurons has reset={p.reset!r}, strict={p.strict}; "
                                f"fine-tuning supports reset to zero on V >= v_th (the rate models of snnc train)")
    return ws, pops


def _with_weights(graph: Graph, weights: list[np.ndarray], metadata: dict | None = None) -> Graph:
    """``graph`` with its Dense weights replaced (in chain order)."""
    nodes = dict(graph.nodes)
    for (syn, _), w in zip(graph.chain(), weights):
        nodes[syn] = dataclasses.replace(nodes[syn], weight=np.asarray(w, np.float64))
    return dataclasses.replace(graph, nodes=nodes, metadata=dict(graph.metadata if metadata is None else metadata))


def compile_for(graph: Graph, steps: int, compile_kw: dict, updates: int = 0):
    from toolchain.steps_compiler import compile_graph

    try:
        return compile_graph(graph, steps, **compile_kw)
    except CompileError as exc:
        if updates == 0:
            raise
        raise CompileError(f"after {updates} fine-tuning updates the model no longer compiles: {exc}; fix: lower "
                           f"--lr or use fewer --epochs") from None


def ste_loss(weights, pops, x, deployed: list[np.ndarray]):
    """Loss of the module docstring (torch scalar, differentiable wrt ``weights``) for input trains x (B, T, n_in)
    and the deployed trains of every layer [(B, T, n_l)]."""
    import torch

    b, t_steps, _ = x.shape
    src = torch.from_numpy(np.ascontiguousarray(x.transpose(1, 0, 2), dtype=np.float64))   # (T, B, n_in)
    inp = src
    v2 = None
    for w, pop, dep in zip(weights, pops, deployed):
        d = torch.from_numpy(np.ascontiguousarray(dep.transpose(1, 0, 2), dtype=np.float64))  # (T, B, n)
        cur = (src.reshape(t_steps * b, -1) @ w.T).reshape(t_steps, b, -1)
        v = torch.zeros_like(cur[0])
        spikes, pots = [], []
        for t in range(t_steps):
            v = leak_step(v, cur[t], pop)
            sg = torch.sigmoid(v - pop.v_th)
            spikes.append(d[t] + (sg - sg.detach()))        # deployed value, surrogate derivative
            pots.append(v)
            v = v * (1.0 - d[t])                              # reset where the device fired
        src = torch.stack(spikes)
        v2 = torch.stack(pots)
        a_out = d
    mask = (inp != a_out).to(inp.dtype)
    err = mask * (pops[-1].v_th * inp - v2)
    return 0.5 * (err * err).sum() / b


def leak_step(v, current, pop):
    """One float step ``min(leak v + I, v_th)`` with the clamp passed straight through (models/rate_bptt.py)."""
    v = pop.leak * v + current
    if pop.clamp:
        v = v - (v - pop.v_th).clamp(min=0).detach()
    return v


def count_mse(trains_out: np.ndarray, images: np.ndarray) -> float:
    """z-scored MSE of the output spike-count map (N, T, n) against the images (N, n)."""
    from toolchain.spike_metrics import zscore_mse

    return zscore_mse(trains_out.sum(axis=1).astype(np.float64), images)


def deployed_mse(graph: Graph, steps: int, compile_kw: dict, target: Any, images: np.ndarray, x: np.ndarray,
                 cs: Any = None) -> float:
    cs = compile_for(graph, steps, compile_kw) if cs is None else cs
    return count_mse(target.run(cs, x).trains[-1], images)


def float_mse(graph: Graph, images: np.ndarray, x: np.ndarray) -> float:
    from models.rate_model import forward_spikes

    return count_mse(forward_spikes(graph, x)[-1], images)


def finetune_lif(graph: Graph, compile_kw: dict, train_images: np.ndarray, val_images: np.ndarray,
                 test_images: np.ndarray, options: FinetuneOptions, log: Log = print, runner: Any = None
                 ) -> tuple[Graph, dict]:
    """Fine-tune a rate (Dense + LIF chain) graph through the deployed network (module docstring).

    compile_kw: ``compile_graph``'s options but ``max_steps`` (the model's T is used). Images (N, n_px) in [0, 1].
    Returns the best graph (on deployed validation MSE; the input graph included) with metadata ``finetune``, and
    the metrics (``mse_float``, ``mse_deployed_before``, ``mse_exact_after`` (float model), ``mse_deployed_after``,
    ``history``). ``runner``: a steps target object used instead of ``options.target``."""
    import torch

    from models.rate_encoding import bernoulli_encode

    if not isinstance(graph, Graph) or graph.time != "steps":
        raise FinetuneError("finetune_lif needs a steps (LIF) graph; fine-tune alpha models with "
                            "models.finetune_alpha")
    ws, pops = _chain(graph)
    meta = dict(graph.metadata)
    steps, p_scale = meta.get("steps"), meta.get("p_scale")
    if not isinstance(steps, int) or steps < 1 or not isinstance(p_scale, (int, float)) or not 0 < p_scale <= 1:
        raise FinetuneError(f"the model must record its steps per sample and p_scale (metadata 'steps', 'p_scale', "
                            f"written by `snnc train rate`); got steps={steps!r}, p_scale={p_scale!r}")
    batch = options.batch_size or DEFAULT_BATCH
    lr = options.lr or DEFAULT_LR
    check_enough(train_images.shape[0], batch)
    rng = np.random.default_rng(options.seed)
    x_val = bernoulli_encode(val_images, steps, p_scale, np.random.default_rng(options.seed + 1))
    x_test = bernoulli_encode(test_images, steps, p_scale, np.random.default_rng(options.seed + 2))
    compile_for(graph, steps, compile_kw)
    n_torch = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with (nullcontext(runner) if runner is not None else open_target("lif", options)) as target:
            before_val = deployed_mse(graph, steps, compile_kw, target, val_images, x_val)
            mse_float = float_mse(graph, test_images, x_test)
            mse_before = deployed_mse(graph, steps, compile_kw, target, test_images, x_test)
            log(f"before: test MSE (z-scored) float {mse_float:.4f}, deployed {mse_before:.4f} "
                f"({relative(mse_before, mse_float):+.2%}); validation deployed {before_val:.4f}")
            params = [torch.tensor(w, dtype=torch.float64, requires_grad=True) for w in ws]
            opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-7)
            best = (before_val, 0, graph, 0)
            history, updates = [], 0

            def checkpoint(epoch: int, loss_sum: float, n_batches: int, t0: float) -> None:
                """Validate the current weights on the deployed network; keep them if they are the best."""
                nonlocal best
                cur_w = [p.detach().numpy().copy() for p in params]
                if not all(np.all(np.isfinite(w)) for w in cur_w):
                    raise FinetuneError(f"fine-tuning diverged in epoch {epoch} (non-finite weights); lower --lr")
                cur = _with_weights(graph, cur_w)
                val_dep = deployed_mse(cur, steps, compile_kw, target, val_images, x_val,
                                       compile_for(cur, steps, compile_kw, updates))
                val_float = float_mse(cur, val_images, x_val)
                secs = time.perf_counter() - t0
                history.append({"epoch": epoch, "updates": updates, "train_loss": loss_sum / max(1, n_batches),
                                "val_mse_deployed": val_dep, "val_mse_float": val_float, "seconds": secs})
                log(f"epoch {epoch}/{options.epochs}, {updates} updates: loss/sample "
                    f"{loss_sum / max(1, n_batches):.3f}, validation deployed {val_dep:.4f} / float {val_float:.4f} "
                    f"({secs:.1f} s)")
                if val_dep < best[0]:
                    best = (val_dep, epoch, cur, updates)

            for epoch in range(1, options.epochs + 1):
                t0 = time.perf_counter()
                loss_sum, n_batches = 0.0, 0
                cs = None
                for k, idx in enumerate(batches(train_images.shape[0], batch, rng)):
                    x = bernoulli_encode(train_images[idx], steps, p_scale, rng)
                    cur = _with_weights(graph, [p.detach().numpy() for p in params])
                    if cs is None or k % options.compile_every == 0:
                        cs = compile_for(cur, steps, compile_kw, updates)
                    deployed = target.run(cs, x).trains
                    opt.zero_grad()
                    loss = ste_loss(params, pops, x, deployed)
                    loss.backward()
                    opt.step()
                    updates += 1
                    loss_sum += float(loss.detach())
                    n_batches += 1
                    if options.eval_every and updates % options.eval_every == 0:
                        checkpoint(epoch, loss_sum, n_batches, t0)
                if not (options.eval_every and updates % options.eval_every == 0):
                    checkpoint(epoch, loss_sum, n_batches, t0)
            best_graph = best[2]
            mse_float_after = float_mse(best_graph, test_images, x_test)
            mse_after = deployed_mse(best_graph, steps, compile_kw, target, test_images, x_test)
    finally:
        torch.set_num_threads(n_torch)
    log(f"after (epoch {best[1]}, {best[3]} updates): test MSE float {mse_float_after:.4f}, deployed {mse_after:.4f} "
        f"({relative(mse_after, mse_float_after):+.2%} vs its float; {relative(mse_after, mse_float):+.2%} vs the "
        f"input model's float)")
    metrics = {
        "family": "lif", "options": options.as_dict(),
        "compile_options": {k: v for k, v in compile_kw.items() if k != "calibration_spikes"},
        "lr": lr, "batch_size": batch, "steps": steps, "p_scale": float(p_scale),
        "n_train": int(train_images.shape[0]), "n_val": int(val_images.shape[0]),
        "n_test": int(test_images.shape[0]), "best_epoch": best[1], "best_updates": best[3],
        "val_mse_deployed_before": before_val,
        "mse_float": mse_float, "mse_deployed_before": mse_before, "mse_exact_after": mse_float_after,
        "mse_deployed_after": mse_after, "history": history, "updates": updates,
    }
    meta["finetune"] = dict(metrics)
    return _with_weights(best_graph, _chain(best_graph)[0], meta), metrics


__all__ = ["DEFAULT_BATCH", "DEFAULT_LR", "deployed_mse", "finetune_lif", "float_mse", "ste_loss"]
