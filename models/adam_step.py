"""One step of a ``torch.optim.Adam`` done by a numba kernel on the tensors' memory (CPU, float64).

At the preset batch of 7 an epoch is ~7,700 optimiser steps on ~58,000 parameters, and torch's per-step
overhead was a large part of it (measured on a busy 2-core machine: fused torch Adam ~320 us per step, this
kernel ~130 us). :func:`adam_step` updates the parameters and the optimiser's own state tensors (``step``,
``exp_avg``, ``exp_avg_sq``) exactly as ``torch.optim.Adam`` documents it (L2 ``weight_decay`` added to the
gradient, bias-corrected moments, ``eps`` added after the square root), so ``opt.state_dict()`` and
``opt.load_state_dict()`` keep working and a run can mix both. Values agree with torch to rounding (~1e-16
relative per step: the kernel multiplies by 1 / sqrt(bias correction 2) where torch divides, and torch's fused
kernel contracts some products into FMAs), so trained weights are not bitwise those of ``opt.step()``. Anything this kernel does not
cover (amsgrad, maximize, capturable, differentiable, a non-CPU or non-float64 tensor, a tensor learning rate
or a sparse gradient) falls back to ``opt.step()``.
"""
from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True, error_model="numpy")
def _adam_update(p, g, m, v, lr, beta1, beta2, eps, weight_decay, step):
    """In place on flat float64 arrays: Adam's moments m, v and parameters p after gradient g; step >= 1."""
    bias1 = 1.0 - beta1 ** step
    inv_bias2_sqrt = 1.0 / math.sqrt(1.0 - beta2 ** step)  # one division per element fewer than torch
    step_size = lr / bias1
    w1 = 1.0 - beta1
    w2 = 1.0 - beta2
    for i in range(p.shape[0]):
        gi = g[i] + weight_decay * p[i] if weight_decay != 0.0 else g[i]
        mi = m[i] + w1 * (gi - m[i])  # torch's lerp(m, g, 1 - beta1) for a weight below 0.5
        vi = beta2 * v[i] + w2 * gi * gi
        m[i] = mi
        v[i] = vi
        p[i] -= step_size * (mi / (math.sqrt(vi) * inv_bias2_sqrt + eps))


def _supported(opt, group: dict, p, need_grad: bool = True) -> bool:
    import torch

    if any(group.get(k) for k in ("amsgrad", "maximize", "capturable", "differentiable")):
        return False
    if isinstance(group["lr"], torch.Tensor) or not (0.0 <= 1.0 - group["betas"][0] <= 0.5):
        return False
    if p.device.type != "cpu" or p.dtype != torch.float64 or not p.is_contiguous():
        return False
    g = p.grad
    if g is None:
        return not need_grad
    if g.is_sparse or not g.is_contiguous() or g.device.type != "cpu" or g.dtype != torch.float64:
        return False
    st = opt.state.get(p)
    if st:
        return (all(isinstance(st.get(k), torch.Tensor) and st[k].device.type == "cpu"
                    for k in ("step", "exp_avg", "exp_avg_sq"))
                and all(st[k].dtype == torch.float64 and st[k].is_contiguous() and st[k].shape == p.shape
                        for k in ("exp_avg", "exp_avg_sq")))
    return True


def _state(opt, p) -> dict:
    """The optimiser state of p, created as torch creates it (so that state_dict / load_state_dict round-trip)."""
    import torch

    st = opt.state[p]
    if not st:
        dt = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
        st["step"] = torch.tensor(0.0, dtype=dt)
        st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    return st


def _plan_key(opt) -> list:
    """What a cached plan depends on: the parameter and state tensors (by identity) and the group settings."""
    out = []
    for grp in opt.param_groups:
        for p in grp["params"]:
            st = opt.state.get(p, {})
            out.append((id(p), id(st.get("exp_avg")), id(st.get("exp_avg_sq")), id(st.get("step")), grp["lr"],
                        grp["betas"], grp["eps"], grp["weight_decay"]))
    return out


def _plan(opt) -> list:
    """Per parameter (tensor, numpy views of it and of its state tensors, hyperparameters), cached on the
    optimiser and rebuilt whenever a parameter, a state tensor or a group setting changed (e.g. after
    load_state_dict). Empty when some parameter or option is outside what the kernel covers."""
    cached = getattr(opt, "_snnc_adam_plan", None)
    if cached is not None and cached[0] == _plan_key(opt):
        return cached[1]
    plan = []
    ok = all(_supported(opt, grp, p, need_grad=False) for grp in opt.param_groups for p in grp["params"])
    for grp in opt.param_groups if ok else ():
        for p in grp["params"]:
            st = _state(opt, p)
            plan.append((p, p.detach().numpy().reshape(-1), st["exp_avg"].numpy().reshape(-1),
                         st["exp_avg_sq"].numpy().reshape(-1), st["step"].numpy(), float(grp["lr"]),
                         float(grp["betas"][0]), float(grp["betas"][1]), float(grp["eps"]),
                         float(grp["weight_decay"])))
    opt._snnc_adam_plan = (_plan_key(opt), plan)  # the views keep the state tensors (and so their ids) alive
    return plan


def adam_step(opt) -> None:
    """``opt.step()`` for a ``torch.optim.Adam`` whose parameters are float64 CPU tensors with ``.grad`` set.

    Same update and same optimiser state as torch (see the module docstring); falls back to ``opt.step()``
    when any parameter or option is outside what the kernel covers.
    """
    import torch

    plan = _plan(opt)
    if not plan:
        opt.step()
        return
    grads = []
    for entry in plan:
        g = entry[0].grad
        if (g is None or g.dtype != torch.float64 or g.device.type != "cpu" or g.is_sparse
                or not g.is_contiguous()):
            opt.step()
            return
        grads.append(g.numpy().reshape(-1))
    for (p, p_np, m_np, v_np, step_np, lr, beta1, beta2, eps, wd), g in zip(plan, grads):
        step_np += 1
        _adam_update(p_np, g, m_np, v_np, lr, beta1, beta2, eps, wd, float(step_np))
