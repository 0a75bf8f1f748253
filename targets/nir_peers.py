"""``snntorch-nir`` and ``norse-nir``: run a steps graph in snnTorch or Norse through *their own* NIR importers.

The graph is exported with :func:`toolchain.nir_export.graph_to_nir`, written to an in-memory NIR HDF5 file and
read back with ``nir.read`` (the file format is part of the path), then handed to ``snntorch.import_nir.
import_from_nir`` or ``norse.torch.from_nir``; the module they build runs the input spike trains step by step, and
forward hooks on the population modules record their spikes. Step t of every train is model step t (neither
importer adds a delay), so ``RunResult.trains`` compare spike by spike with the float model (toolchain/
lif_reference.py).

Conventions each peer needs (measured, docs/nir.md):

- snnTorch 1.0.0 assumes dt = 1e-4 s whatever the file says; we export with dt = 1e-4 s, so its beta = 1 - dt/tau
  is our leak and its input scale r dt / tau is 1. Its LIF nodes become ``snn.Leaky`` (reset to zero, threshold
  test v > v_th). Reset by subtraction is not reproduced (the importer hard-codes reset to zero).
- Norse 1.1.0's ``from_nir`` ignores ``r`` on LIF nodes (its LIFBox integrates dt/tau (I - v): a potential scaled
  by 1 - leak), so for Norse we export LIF populations in the CubaLIF form (tau_syn = dt, r = tau/dt), which it
  reads with r, at its default dt = 1e-3 s.
- Conv graphs are written in the "maps" layout (every synapse a NIR Conv2d, no Flatten; toolchain/nir_export.py)
  and run batched. In the "flat" layout (``conv_layout="flat"``) they hold Flatten nodes, which both importers run
  as ``torch.nn.Flatten(start_dim, ...)`` with NIR's start_dim (counted without the batch dimension) as torch's
  (counted with it); such graphs run one sample at a time without a batch dimension, where the two agree.
- Neither importer reads NIR's LI or I nodes: a Readout population (leak < 1) runs in the peer as a neuron with
  threshold +inf and the same Euler step (never spiking, as a Readout never spikes); its potential, converted to
  NIR units (snnTorch: times r dt / tau, which its importer folds into the threshold), is the trace A reported in
  ``RunResult.potentials`` (``info["readouts_never_spiking"]`` names them). Readouts without leak are refused.

``precision``: "float64" (default; modules and inputs in double, so that only conventions, not float32 rounding,
can make spikes differ; Norse keeps its parameters in float32, promoted when used) or "float32" (the importers'
own dtype).
"""
from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from typing import Any

import numpy as np

from targets.base import RunResult, check_input_trains, steps_graph, steps_result
from toolchain.errors import TargetError
from toolchain.ir import LIF, Graph


BATCH = 500       # samples per batched run (bounds the memory of the recorded spikes)


class _NirPeer:
    """Shared driver: export, read back, import with the peer, run step by step, record population spikes."""

    name = "nir-peer"
    dt_s = 1e-3
    lif_form = "lif"
    package = ""

    def __init__(self, precision: str = "float64", dt_s: float | None = None, lif_form: str | None = None,
                 conv_layout: str | None = None) -> None:
        if precision not in ("float64", "float32"):
            raise TargetError(f"{self.name}: precision must be 'float64' or 'float32', got {precision!r}")
        self.precision = precision
        if dt_s is not None:       # options to reproduce the convention mismatches of docs/nir.md
            dt = float(dt_s)
            if not (np.isfinite(dt) and dt > 0):
                raise TargetError(f"{self.name}: dt_s must be a positive number of seconds, got {dt_s!r}")
            self.dt_s = dt
        if lif_form is not None:
            if lif_form not in ("lif", "cuba"):
                raise TargetError(f"{self.name}: lif_form must be 'lif' or 'cuba', got {lif_form!r}")
            self.lif_form = lif_form
        if conv_layout not in (None, "maps", "flat"):
            raise TargetError(f"{self.name}: conv_layout must be 'maps' or 'flat', got {conv_layout!r}")
        self.conv_layout = conv_layout

    # -- peer specific -------------------------------------------------------------------------------------------
    def _import(self, ng):  # pragma: no cover - overridden
        raise NotImplementedError

    def _step(self, module, x, state):  # pragma: no cover - overridden
        raise NotImplementedError

    def _reset(self, module) -> None:
        """Clear hidden state kept inside the modules (snnTorch); Norse passes state explicitly."""

    def _potential(self, sub, out, node) -> Any:
        """The potential (NIR units) of a never-spiking Readout module after a step (``out``: its forward
        output, ``node``: the NIR node the peer imported)."""
        raise NotImplementedError  # pragma: no cover - overridden

    # -- shared ----------------------------------------------------------------------------------------------------
    def _check(self, graph: Graph) -> None:
        for name, node in graph.nodes.items():
            if isinstance(node, LIF) and node.reset == "subtract" and not node.clamp:
                logging.getLogger(__name__).warning(
                    "%s: %s resets by subtraction; the %s importer resets to zero", self.name, name, self.package)

    def _never_spiking(self, ng) -> list[str]:
        """Replace the LI nodes of Readout populations (which neither importer reads) by neurons with threshold
        +inf and the same Euler step: the peer runs them, they never spike (as a Readout never does), and their
        potential is the Readout's trace A (recorded into ``RunResult.potentials``). Returns the names replaced."""
        import nir

        done = []
        for name, node in list(ng.nodes.items()):
            if isinstance(node, nir.LI):
                inf, zero = np.full(node.tau.shape, np.inf), np.zeros(node.tau.shape)
                if self.lif_form == "cuba":
                    ng.nodes[name] = nir.CubaLIF(tau_syn=np.full(node.tau.shape, self.dt_s), tau_mem=node.tau,
                                                 r=node.r, v_leak=zero, v_threshold=inf, v_reset=zero.copy(),
                                                 w_in=np.ones(node.tau.shape))
                else:
                    ng.nodes[name] = nir.LIF(tau=node.tau, r=node.r, v_leak=zero, v_threshold=inf,
                                             v_reset=zero.copy())
                done.append(name)
            elif isinstance(node, nir.I):
                raise TargetError(f"{self.name}: Readout {name!r} has no leak (NIR I node); the {self.package} "
                                  "importer has no exact form for it (its IF is leaky or unscaled): run readouts "
                                  "with leak < 1 on this target")
        return done

    def _module(self, graph: Graph):
        """(the peer's torch module, the NIR graph it was built from)."""
        import nir
        import torch

        from toolchain.nir_export import graph_to_nir

        buf = io.BytesIO()
        nir.write(buf, graph_to_nir(graph, self.dt_s, self.lif_form, self.conv_layout))
        buf.seek(0)
        ng = nir.read(buf, type_check=False)   # nir 1.0.8 mistypes non-square kernels (toolchain/nir_export.py)
        self._readouts = self._never_spiking(ng)
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)   # Norse 1.1 calls the deprecated nirtorch.load
            module = self._import(ng)                             # (snnTorch prints progress lines)
        if self.precision == "float64":
            module = module.double()
            # snnTorch's spike function returns float32 ((v > 0).float()); spikes are 0/1, exact in any dtype, so
            # synapses cast their input to their own (double) weights
            for sub in module.modules():
                if isinstance(getattr(sub, "weight", None), torch.Tensor) and sub is not module:
                    sub.register_forward_pre_hook(lambda mod, args: (args[0].to(mod.weight.dtype),) + args[1:])
        return module.eval(), ng

    def run(self, net: Any, inputs: np.ndarray) -> RunResult:
        import torch

        graph = steps_graph(net)
        x = check_input_trains(graph, inputs)
        self._check(graph)
        t0 = time.perf_counter()
        module, ng = self._module(graph)
        pops = graph.populations()
        in_shape = tuple(int(d) for d in np.asarray(ng.nodes[graph.input_name].input_type["input"]).reshape(-1))
        batched = not any(type(v).__name__ == "Flatten" for v in ng.nodes.values())
        dtype = torch.float64 if self.precision == "float64" else torch.float32
        n, t_steps = x.shape[0], x.shape[1]
        rec: dict[str, list] = {p: [] for p in pops}
        pot: dict[str, list] = {p: [] for p in self._readouts}
        hooks = []
        for p in pops:
            try:
                sub = module.get_submodule(_torch_name(p))
            except AttributeError:
                raise TargetError(f"{self.name}: the {self.package} module has no submodule for population {p!r} "
                                  f"(looked for {_torch_name(p)!r}); report this as an snnc bug") from None
            hooks.append(sub.register_forward_hook(
                lambda mod, args, out, p=p: rec[p].append((out[0] if isinstance(out, tuple) else out).detach())))
            if p in pot:
                hooks.append(sub.register_forward_hook(
                    lambda mod, args, out, p=p: pot[p].append(self._potential(mod, out, ng.nodes[p]).detach())))
        out = {p: np.zeros((n, t_steps, graph.nodes[p].n_out), dtype=np.uint8) for p in pops}
        pots = {p: np.zeros((n, t_steps, graph.nodes[p].n_out)) for p in pot}
        xt = torch.as_tensor(x, dtype=dtype)
        try:
            with torch.no_grad():
                size = BATCH if batched else 1
                groups = [slice(s, min(s + size, n)) for s in range(0, n, size)]
                for sl in groups:
                    self._reset(module)
                    state = None
                    for t in range(t_steps):
                        step_in = xt[sl, t].reshape((sl.stop - sl.start,) + in_shape)
                        if not batched:
                            step_in = step_in[0]
                        state = self._step(module, step_in, state)
                    for p in pops:
                        z = torch.stack(rec[p], dim=0).reshape(t_steps, sl.stop - sl.start, -1)
                        out[p][sl] = (z.transpose(0, 1).numpy() != 0)
                        rec[p].clear()
                    for p in pot:
                        v = torch.stack(pot[p], dim=0).reshape(t_steps, sl.stop - sl.start, -1)
                        pots[p][sl] = v.transpose(0, 1).double().numpy()
                        pot[p].clear()
        except (RuntimeError, ValueError, TypeError) as exc:
            raise TargetError(f"{self.name}: the {self.package} module failed ({type(exc).__name__}: {exc})") from None
        finally:
            for h in hooks:
                h.remove()
        return steps_result(self.name, [out[p] for p in pops], time.perf_counter() - t0,
                            {"package": self.package, "version": _version(self.package), "dt_s": self.dt_s,
                             "lif_form": self.lif_form, "precision": self.precision, "batched": batched,
                             "populations": pops, "readouts_never_spiking": self._readouts},
                            [pots.get(p) for p in pops] if pots else None)


def _torch_name(name: str) -> str:
    """The submodule name nirtorch gives NIR node ``name`` (dots -> underscores, Python keywords prefixed)."""
    import keyword

    name = name.replace(".", "_")
    return "nir_node_" + name if keyword.iskeyword(name) else name


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


class SnntorchNirTarget(_NirPeer):
    """snnTorch 1.0's ``import_from_nir`` (dt fixed at 1e-4 s by the importer)."""

    name = "snntorch-nir"
    dt_s = 1e-4
    lif_form = "lif"
    package = "snntorch"

    def _import(self, ng):
        try:
            from snntorch.import_nir import import_from_nir
        except ImportError as exc:
            raise TargetError(f"snntorch-nir needs snntorch (pip install snntorch): {exc}") from None
        return import_from_nir(ng)

    def _reset(self, module) -> None:
        for sub in module.modules():
            if hasattr(sub, "reset_mem") and hasattr(sub, "mem"):
                sub.reset_mem()

    def _step(self, module, x, state):
        module(x)
        return None

    def _potential(self, sub, out, node):
        # snn.Leaky integrates the unscaled input and divides the threshold by w_scale = r dt / tau instead:
        # the NIR potential is w_scale * mem
        return sub.mem * float(np.unique(node.r * self.dt_s / node.tau)[0])


class NorseNirTarget(_NirPeer):
    """Norse 1.1's ``norse.torch.from_nir`` at dt = 1e-3 s, LIF populations in the CubaLIF form (see module doc)."""

    name = "norse-nir"
    dt_s = 1e-3
    lif_form = "cuba"
    package = "norse"

    def _import(self, ng):
        try:
            from norse.torch import from_nir
        except ImportError as exc:
            raise TargetError(f"norse-nir needs norse (pip install norse): {exc}") from None
        return from_nir(ng, dt=self.dt_s)

    def _step(self, module, x, state):
        _, state = module(x, state)
        return state

    def _potential(self, sub, out, node):
        st = out[1]                      # CubaLIF wrapper: (synapse state, LIF box state); LIFBoxCell: its state
        return (st[1] if isinstance(st, tuple) and not hasattr(st, "v") else st).v
