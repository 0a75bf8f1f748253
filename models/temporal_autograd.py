"""PyTorch autograd for exact alpha layers: forward = the float64 event-driven kernel, backward = exact gradients.

``alpha_layer(x, weights, pulse_times, pulse_weights, tau, theta)`` returns first-spike times equal (bitwise)
to ``models.exact.layer_forward``; ``loss.backward()`` then yields the exact derivatives of Comsa et al. 2021
(equations 4 and 5) for the weights, pulse weights, pulse times and the input times. The computation runs on
the CPU in float64 whatever the tensors' device; results come back on the input's device and dtype.

Options of the authors' training that are not derivatives of a loss are explicit arguments: ``clip`` (absolute
clip of each local derivative, <= 0 disables) and ``penalty`` (subtracted from the gradient of every weight
into a neuron that did not spike, once per sample; it is a number in the units of your loss's gradient).
"""
from __future__ import annotations

import numpy as np
import torch

from models.network import AlphaLayer, TemporalNetwork
from models.temporal_backprop import layer_backward, layer_forward


def _np(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().to("cpu", torch.float64).numpy())


class AlphaLayerFunction(torch.autograd.Function):
    """Exact once-spiking alpha layer (see module docstring). Use :func:`alpha_layer`."""

    @staticmethod
    def forward(ctx, in_times, weights, pulse_times, pulse_weights, tau, theta, clip, penalty):
        w_all = np.hstack([_np(weights), _np(pulse_weights)])
        state = layer_forward(_np(in_times), w_all, _np(pulse_times), float(tau), float(theta))
        ctx.state = state
        ctx.w_all = w_all
        ctx.consts = (float(tau), float(clip), float(penalty))
        return torch.from_numpy(state.t_out).to(device=in_times.device, dtype=in_times.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        tau, clip, penalty = ctx.consts
        need_x = bool(ctx.needs_input_grad[0])
        g = _np(grad_out)
        g[~np.isfinite(ctx.state.t_out)] = 0.0  # silent neurons: inf - target gives nan upstream; ignored
        grads = layer_backward(ctx.state, ctx.w_all, g, tau, clip, penalty, need_input_grad=need_x)
        n_in = ctx.w_all.shape[1] - ctx.state.n_pulses
        dev, dt = grad_out.device, grad_out.dtype

        def out(a):
            return None if a is None else torch.from_numpy(np.ascontiguousarray(a)).to(device=dev, dtype=dt)

        return (out(grads.in_times) if need_x else None, out(grads.weights_all[:, :n_in]), out(grads.pulse_times),
                out(grads.weights_all[:, n_in:]), None, None, None, None)


def alpha_layer(in_times: torch.Tensor, weights: torch.Tensor, pulse_times: torch.Tensor,
                pulse_weights: torch.Tensor, tau: float, theta: float, clip: float = 0.0,
                penalty: float = 0.0) -> torch.Tensor:
    """First-spike times (N, n_out), time units, inf = no spike; differentiable (exact derivatives).

    in_times (N, n_in) with inf = no spike; weights (n_out, n_in); pulse_times (P,) >= 0;
    pulse_weights (n_out, P); tau in 1 / time unit; theta dimensionless.
    """
    return AlphaLayerFunction.apply(in_times, weights, pulse_times, pulse_weights, tau, theta, clip, penalty)


class TorchTemporalNetwork(torch.nn.Module):
    """Trainable parameters of a :class:`TemporalNetwork` as float64 ``torch.nn.Parameter`` s."""

    def __init__(self, net: TemporalNetwork):
        super().__init__()
        self.tau, self.theta, self.latency = net.tau, net.theta, net.latency
        self.encoding = net.encoding
        self.weights = torch.nn.ParameterList([torch.nn.Parameter(torch.tensor(l.weights)) for l in net.layers])
        self.pulse_times = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.tensor(l.pulse_times)) for l in net.layers])
        self.pulse_weights = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.tensor(l.pulse_weights)) for l in net.layers])

    def forward(self, input_times: torch.Tensor, clip: float = 0.0, penalty: float = 0.0) -> list[torch.Tensor]:
        """Spike times of every layer [(N, n_l)], time units, inf = no spike."""
        x = input_times
        outs = []
        for w, pt, pw in zip(self.weights, self.pulse_times, self.pulse_weights):
            x = alpha_layer(x, w, pt, pw, self.tau, self.theta, clip, penalty)
            outs.append(x)
        return outs

    def to_network(self, metadata: dict | None = None) -> TemporalNetwork:
        """Back to the plain-data IR (float64 numpy)."""
        layers = tuple(AlphaLayer(_np(w), _np(pt), _np(pw))
                       for w, pt, pw in zip(self.weights, self.pulse_times, self.pulse_weights))
        return TemporalNetwork(layers, self.tau, self.theta, self.latency, self.encoding, dict(metadata or {}))
