"""Roy, Panda & Roy 2019's online training rule, exactly as the authors' MATLAB code runs it
(purdue-nrl/SpikingAutoencoder, ``auto_encoder.m``: ``code``, ``decode``, ``calculate_loss``,
``calculate_gradients``, ``apply_gradients``; ``ae_train.m``: one Adam update per time step).

Per batch of B samples (moments, potentials and traces start at 0), for every step t = 1 .. T with input spikes
x[t] (B, n_in) in {0, 1} (units: potentials and weights in threshold units, V_th = 1):

    V1 = min(leak V1 + x W1^T, V_th);  sig1 = s'(V1 - V_th), s'(u) = e^-u / (1 + e^-u)^2
    tr1 = leak tr1' + x                         (eligibility trace of W1 per sample, (B, n_in))
    a1 = V1 >= V_th;  V1 = 0 where a1;  tr1' = tr1 * (1 - sum(a1) / n_shrink)   (per sample)
    V2 = min(leak V2 + a1 W2^T, V_th);  tr2 = leak tr2' + a1
    a2 = V2 >= V_th;  V2pre = V2;  V2 = 0 where a2;  tr2' = tr2 * (1 - sum(a2) / n_shrink)
    E  = (V_th x - V2pre) * (x XOR a2);  loss = 0.5 sum E^2
    g2 = (-E)^T tr2 / B;  g1 = (((-E) W2) * sig1)^T tr1 / B     (W2 before this step's update)
    Adam (beta1, beta2, eps) with bias correction by t; W -= lr m_hat / (sqrt(v_hat) + eps)

``n_shrink`` is 784 in the authors' code for both layers (the trace shrink that stands in for the paper's
"reset the derivative of a neuron that spiked"). The gradient of step t uses the trace before the shrink.
``OnlineRule.trace_reset`` (an option; "authors" is the default): "layer" shrinks each trace by the spikes of the
layer it feeds over that layer's own size (hidden: H, output: n_out) instead of 784 - the mean-field version of a
per-neuron reset; "neuron" is the paper's text, exact: the eligibility of weight (i, j) restarts when neuron i
spikes (models/rate_trace_reset.py; about twice the cost per step); "none" never shrinks the traces.

Sparsity: the columns of W1 whose pixel never spikes in the batch get a zero gradient at every step, so their Adam
moments stay 0 and their update is exactly 0; only the active columns are computed (bitwise the same result).
Per step (models/rate_kernels.py, numba, in the weights' dtype): the input current sums one row of W1^T per input
spike; (-E) W2 sums only the rows of W2 whose output has a masked error; g2 is computed from those sparse errors
inside the fused Adam pass over W2; a1 W2^T and tr1^T delta are BLAS (torch). Subnormal hidden errors are
flushed to 0 (see ``hidden_error``). Results equal the dense torch version (tests/reference_rate.py) to float
rounding. Tensors live on the CPU; numba's thread count applies to the kernels, torch's to the products.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-7
# How a neuron's eligibility forgets after spikes (OnlineRule.trace_reset); "authors" is the authors' code.
TRACE_RESETS = ("authors", "layer", "neuron", "none")


@dataclass(frozen=True)
class OnlineRule:
    """Settings of the online rule (defaults: the authors' code). lr: Adam step size per time step."""

    lr: float = 5e-4
    leak: float = 0.9
    v_th: float = 1.0
    beta1: float = ADAM_BETAS[0]
    beta2: float = ADAM_BETAS[1]
    eps: float = ADAM_EPS
    n_shrink: float = 784.0
    trace_reset: str = "authors"

    def __post_init__(self) -> None:
        from toolchain.errors import SnncError

        if self.trace_reset not in TRACE_RESETS:
            raise SnncError(f"unknown trace reset {self.trace_reset!r}; choose one of {', '.join(TRACE_RESETS)}")
        if not self.n_shrink > 0:
            raise SnncError(f"n_shrink must be > 0 (a number of neurons), got {self.n_shrink}")

    def inverse_shrinks(self, n_hidden: int, n_out: int) -> tuple[float, float]:
        """(1 / n1, 1 / n2): each trace is multiplied by (1 - spikes of the layer it feeds / n) after a step.
        authors: n = n_shrink (784 in the authors' code) for both; layer: the size of the layer the trace feeds
        (n_hidden for the input trace, n_out for the hidden trace); neuron, none: no shrink (0)."""
        if self.trace_reset == "authors":
            return 1.0 / self.n_shrink, 1.0 / self.n_shrink
        if self.trace_reset == "layer":
            return 1.0 / n_hidden, 1.0 / n_out
        return 0.0, 0.0


class PartTimer:
    """Adds the CPU seconds (``time.process_time``: all threads of the process) since the previous call to
    ``parts[name]``; does nothing when ``parts`` is None. Used by ``online_batch`` / ``bptt_grads(profile=...)``
    and ``benchmarks/train_speed_rate.py --profile`` to say where the time goes."""

    def __init__(self, parts: dict | None):
        self.parts = parts
        self.t = time.process_time() if parts is not None else 0.0

    def __call__(self, name: str) -> None:
        if self.parts is not None:
            now = time.process_time()
            self.parts[name] = self.parts.get(name, 0.0) + now - self.t
            self.t = now


def sigmoid_derivative(u):
    """s'(u) = e^-u / (1 + e^-u)^2 (torch tensor or numpy array), the authors' surrogate of dA/dV at u = V - V_th.

    s' is even, so it is computed as e^-|u| / (1 + e^-|u|)^2: the same value without overflow for very negative
    potentials (float32 exp overflows beyond 88; the authors' float64 MATLAB beyond 709)."""
    try:
        import torch

        if isinstance(u, torch.Tensor):
            e = torch.exp(-torch.abs(u))
            return e / (1.0 + e) ** 2
    except ModuleNotFoundError:  # pragma: no cover - torch is a dependency of the trainers
        pass
    e = np.exp(-np.abs(u))
    return e / (1.0 + e) ** 2


def check_batch(w1, w2, x) -> None:
    """Refuse what the kernels cannot train (DataError naming the fix): weights that are not float32/float64 CPU
    tensors of one dtype without autograd, shapes that do not chain (w1 (H, n_in), w2 (n_out, H), x (T, B, n_in)
    with n_out = n_in), or spikes other than 0/1."""
    import torch

    from toolchain.errors import DataError

    for name, w in (("w1", w1), ("w2", w2)):
        if not isinstance(w, torch.Tensor) or w.dtype not in (torch.float32, torch.float64) or w.device.type != "cpu":
            raise DataError(f"{name} must be a float32 or float64 CPU torch tensor; convert it with "
                            f"torch.as_tensor({name}, dtype=torch.float32)")
        if w.requires_grad:
            raise DataError(f"{name} requires grad; pass {name}.detach() (the rule updates it in place)")
    if w1.dtype != w2.dtype:
        raise DataError(f"w1 and w2 must have one dtype, got {w1.dtype} and {w2.dtype}")
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or w1.dim() != 2 or w2.dim() != 2:
        raise DataError("x must be a (T, B, n_in) torch tensor of spikes, w1 (H, n_in) and w2 (n_out, H)")
    h, n_in = w1.shape
    if w2.shape != (n_in, h) or x.shape[2] != n_in:
        raise DataError(f"shapes do not chain: w1 {tuple(w1.shape)}, w2 {tuple(w2.shape)} (expected "
                        f"{(n_in, h)}), x {tuple(x.shape)} (expected (T, B, {n_in}))")
    if x.numel() and not bool(((x == 0) | (x == 1)).all()):
        raise DataError("input spikes must be 0 or 1 (encode images with models.rate_encoding.bernoulli_encode)")


def online_batch(w1, w2, x, rule: OnlineRule = OnlineRule(), profile: dict | None = None) -> dict:
    """Train on one batch in place: w1 (H, n_in), w2 (n_out, H) torch tensors (float32 or float64), x (T, B, n_in)
    spikes (any torch dtype, 0/1); CPU tensors. Returns {"loss": sum over steps of 0.5 sum E^2 / B,
    "out_spikes": (B, n_out) output spike counts, "hid_spikes": hidden spikes summed over batch and steps}.
    ``profile``: a dict to which the CPU seconds of each part are added (see :class:`PartTimer`)."""
    import torch

    from models import rate_kernels as K

    tick = PartTimer(profile)
    check_batch(w1, w2, x)
    t_steps, b, n_in = x.shape
    dt = w1.dtype
    npdt = np.float32 if dt == torch.float32 else np.float64
    c = np.dtype(npdt).type
    h, n_out = w1.shape[0], w2.shape[0]
    x_np = x.numpy() if x.dtype == torch.uint8 else (x != 0).to(torch.uint8).numpy()
    cols = np.flatnonzero(x_np.any(axis=(0, 1)))           # input pixels that spike in this batch
    xa = K.take_columns(x_np, cols)                        # (T, B, n_active)
    ptr, idx = K.spike_lists(xa)
    xa_f = xa.astype(npdt)
    x_f = x_np.astype(npdt)
    w1t = np.ascontiguousarray(w1.numpy()[:, cols].T)      # (n_active, H): the rows that can change
    w2c = w2.contiguous()
    w2n = w2c.numpy()
    m1, s1 = np.zeros_like(w1t), np.zeros_like(w1t)
    m2, s2 = np.zeros_like(w2n), np.zeros_like(w2n)
    v1 = np.zeros((b, h), npdt)
    e1, a1, delta = np.zeros_like(v1), np.zeros_like(v1), np.zeros_like(v1)
    tr2, tr2p = np.zeros_like(v1), np.zeros_like(v1)
    v2 = np.zeros((b, n_out), npdt)
    err, out_counts, cur2 = np.zeros_like(v2), np.zeros_like(v2), np.zeros_like(v2)
    tr1, tr1p = np.zeros((b, cols.size), npdt), np.zeros((b, cols.size), npdt)
    g1t = np.zeros_like(w1t)
    hid_n, sq_n = np.zeros(b, npdt), np.zeros(b, npdt)
    e1_t, a1_t = torch.from_numpy(e1), torch.from_numpy(a1)
    cur2_t, w2_t = torch.from_numpy(cur2), torch.from_numpy(w2n)
    tr1_t, delta_t, g1t_t = torch.from_numpy(tr1), torch.from_numpy(delta), torch.from_numpy(g1t)
    r = rule
    leak, v_th, one, zero = c(r.leak), c(r.v_th), c(1.0), c(0.0)
    inv_shrink1, inv_shrink2 = (c(v) for v in r.inverse_shrinks(h, n_out))
    reset = r.trace_reset == "neuron"
    if reset:                                             # trace history and last spike step per neuron
        from models import rate_trace_reset as R

        hist1, hist2 = np.zeros((t_steps, b, cols.size), npdt), np.zeros((t_steps, b, h), npdt)
        last1, last2 = np.full((b, h), -1, np.int32), np.full((b, n_out), -1, np.int32)
        corr, prev_counts = np.zeros((h, cols.size), npdt), np.zeros_like(out_counts)
        leak_pow = (np.float64(r.leak) ** np.arange(t_steps + 1)).astype(npdt)
    g_scale = c(1.0 / b)
    tiny = c(np.finfo(npdt).tiny)
    loss, hid = 0.0, 0.0
    tick("setup")
    for t in range(t_steps):
        K.layer1_step(ptr, idx, t * b, w1t, xa_f[t], v1, e1, a1, tr1, tr1p, hid_n, leak, v_th, one, zero,
                      inv_shrink1)
        if reset:
            hist1[t] = tr1
        hid += float(hid_n.sum())
        tick("input current (gathers) + hidden LIF")
        e1_t.exp_()                                       # e^(V1 - v_th)
        tick("exp")
        torch.mm(a1_t, w2_t.T, out=cur2_t)
        tick("a1 W2^T (BLAS)")
        K.layer2_step(cur2, x_f[t], a1, v2, tr2, tr2p, err, out_counts, sq_n, leak, v_th, one, zero, inv_shrink2)
        if reset:
            hist2[t] = tr2
        loss += 0.5 * float(sq_n.sum()) / b
        tick("output LIF + masked error")
        K.hidden_error(err, w2n, e1, delta, one, zero, tiny)       # uses w2 before this step's update
        tick("hidden error (-E) W2 (gathers)")
        torch.mm(tr1_t.T, delta_t, out=g1t_t)             # g1^T * B, (n_active, H)
        tick("tr1^T delta (BLAS)")
        if reset:
            R.subtract_reset_part(g1t, delta, last1, hist1, leak_pow, t, corr)
            tick("per-neuron reset of g1")
        K.adam_update(w1t, g1t, m1, s1, r.lr, r.beta1, r.beta2, t + 1, r.eps, g_scale=1.0 / b)
        tick("Adam W1")
        consts = K.adam_consts(npdt, r.lr, r.beta1, r.beta2, t + 1, r.eps)
        if reset:
            R.adam_output_layer_reset(w2n, m2, s2, err, tr2, hist2, last2, leak_pow, t, g_scale, *consts, zero)
            R.note_spikes(last1, a1, last2, out_counts, prev_counts, t)
        else:
            K.adam_output_layer(w2n, m2, s2, err, tr2, g_scale, *consts, zero)
        tick("g2 + Adam W2")
    w1.numpy()[:, cols] = w1t.T
    if w2c.data_ptr() != w2.data_ptr():
        w2.copy_(w2c)
    tick("setup")
    return {"loss": loss, "out_spikes": torch.from_numpy(out_counts), "hid_spikes": hid}
