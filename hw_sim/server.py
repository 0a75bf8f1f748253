"""hw_sim as a device in its own process: a loopback TCP server speaking snnc-hil/1 (docs/hil-protocol.md).

One client at a time; requests are answered in order. State: the loaded network (after the design-rule check
of hw_sim/resources.py) and the results of recent batches (kept until read with ``release`` or evicted, oldest
first, beyond ``max_batches``), so a client that lost its connection can read a finished batch again.
"""
from __future__ import annotations

import os
import select
import socket
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from hw_sim.protocol import (COMMANDS, PROTO, ProtocolError, check_loopback, content_digest, decode_arrays,
                             decode_network, encode_arrays, recv_message, send_message)
from hw_sim.resources import LOIHI2, ChipSpec, partition
from toolchain.errors import DeviceError, SnncError

POLL_S = 0.5               # accept/recv poll interval: how quickly the server notices its parent is gone
MESSAGE_TIMEOUT_S = 60.0   # a started message must keep arriving; a client stalled longer is dropped


@dataclass
class DeviceState:
    """What the device holds between requests."""

    net: object = None
    packed: object = None
    net_hash: str | None = None
    resources: dict | None = None
    batches: OrderedDict = field(default_factory=OrderedDict)


def _log(msg: str) -> None:
    print(f"[snnc device {os.getpid()}] {msg}", file=sys.stderr, flush=True)


def sim_arrays(packed, columns: np.ndarray) -> dict[str, np.ndarray]:
    """Run hw_sim on a batch of input columns -> named arrays: ``columns_<l>`` and ``counter_<name>``
    (the emulator's per-sample counters, ``hw_sim.emulator.SimResult.counters``)."""
    from hw_sim.emulator import simulate

    res = simulate(packed, columns)
    out = {f"columns_{i}": np.asarray(c, dtype=np.int64) for i, c in enumerate(res.columns)}
    for name, value in res.counters().items():
        out[f"counter_{name}"] = np.asarray(value)
    return out


def warm_up() -> float:
    """Compile hw_sim's kernels (numba) on a 1-neuron network so that no request pays for it; returns seconds."""
    from hw_sim.emulator import simulate
    from models.network import AlphaLayer, TemporalNetwork
    from toolchain.compiled import CompiledLayer, CompiledNetwork

    t0 = time.perf_counter()
    one = np.ones((1, 1))
    src = TemporalNetwork((AlphaLayer(one, np.zeros(1), one),), tau=1.0, theta=1.0, latency=1.0)
    layer = CompiledLayer("warmup", np.full((1, 1), 2, np.int32), np.full((1, 1), 2, np.int32),
                          np.zeros(1, np.int64), 0, 255, 256, 1, True, one, one, 0.06, 0.06, 1.0)
    simulate(CompiledNetwork(16, 4, (layer,), src), np.zeros((2, 1), np.int64))
    return time.perf_counter() - t0


class DeviceServer:
    """The device. Fault injection for tests only: ``test_delay_s`` sleeps before answering each ``run``;
    ``test_garble_once`` sends one corrupt reply to the first ``read``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, chip: ChipSpec = LOIHI2,
                 test_delay_s: float = 0.0, max_batches: int = 64, parent_pid: int | None = None,
                 test_garble_once: bool = False):
        self.host = check_loopback(host)
        self.chip = chip
        self.test_delay_s = float(test_delay_s)
        self.test_garble_once = bool(test_garble_once)
        self.max_batches = int(max_batches)
        self.parent_pid = parent_pid
        self.state = DeviceState()
        self.started = time.time()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError as exc:
            self.sock.close()
            raise DeviceError(f"cannot listen on {host}:{port} ({exc}); choose another --port or stop the "
                              f"process using it") from None
        self.sock.listen(4)
        self.sock.settimeout(POLL_S)
        self.port = self.sock.getsockname()[1]

    # ---- request handlers -----------------------------------------------------------------------------------
    def handle(self, header: dict, payload: bytes) -> tuple[dict, bytes]:
        cmd = header.get("cmd")
        if cmd not in COMMANDS:
            raise DeviceError(f"unknown command {cmd!r}; the device understands: {', '.join(COMMANDS)}")
        return getattr(self, f"cmd_{cmd}")(header, payload)

    def cmd_ping(self, header: dict, payload: bytes) -> tuple[dict, bytes]:
        return {"device": "hw_sim", "pid": os.getpid(), "uptime_s": time.time() - self.started,
                "chip": self.chip.name, "network": self.state.net_hash,
                "batches": list(self.state.batches)}, b""

    def cmd_reset(self, header: dict, payload: bytes) -> tuple[dict, bytes]:
        self.state = DeviceState()
        return {}, b""

    def cmd_load(self, header: dict, payload: bytes) -> tuple[dict, bytes]:
        self.state = DeviceState()           # a failed load leaves no network loaded, never a stale one
        net = decode_network(payload)
        report = partition(net, self.chip)   # DRCError -> error reply
        from hw_sim.emulator import pack

        self.state.net = net
        self.state.packed = pack(net)        # checks the network once; runs skip the packing
        self.state.net_hash = content_digest(payload)
        self.state.resources = report.to_dict()
        return {"network": self.state.net_hash, "resources": self.state.resources}, b""

    def cmd_run(self, header: dict, payload: bytes) -> tuple[dict, bytes]:
        if self.state.net is None:
            raise DeviceError("no network loaded on the device; send 'load' with a compiled network first")
        batch = header.get("batch")
        if not isinstance(batch, str) or not batch:
            raise DeviceError("'run' needs a non-empty string 'batch' id in its header")
        arrays = decode_arrays(payload)
        if "input_columns" not in arrays:
            raise DeviceError("'run' payload lacks the array 'input_columns' (N, n_in) int64")
        cols = arrays["input_columns"]
        n_in = self.state.net.layers[0].n_in
        if cols.ndim != 2 or cols.shape[1] != n_in or cols.dtype.kind not in "iu":
            raise DeviceError(f"input_columns has shape {cols.shape} and dtype {cols.dtype}; the loaded network "
                              f"needs (N, {n_in}) integers (-1 = no spike)")
        if self.test_delay_s > 0:
            time.sleep(self.test_delay_s)
        t0 = time.perf_counter()
        result = sim_arrays(self.state.packed, cols.astype(np.int64))
        wall = time.perf_counter() - t0
        self.state.batches[batch] = result
        self.state.batches.move_to_end(batch)
        while len(self.state.batches) > self.max_batches:
            self.state.batches.popitem(last=False)
        return {"batch": batch, "samples": int(cols.shape[0]), "wall_s": wall, "network": self.state.net_hash}, b""

    def cmd_read(self, header: dict, payload: bytes) -> tuple[dict, bytes]:
        batch = header.get("batch")
        if batch not in self.state.batches:
            raise DeviceError(f"batch {batch!r} is not on the device (never run, released, or evicted after "
                              f"{self.max_batches} newer batches); run it again")
        arrays = self.state.batches[batch]
        if header.get("release"):
            del self.state.batches[batch]
        layers = sum(1 for k in arrays if k.startswith("columns_"))
        return {"batch": batch, "layers": layers, "network": self.state.net_hash}, encode_arrays(arrays)

    # ---- serving --------------------------------------------------------------------------------------------
    def _parent_gone(self) -> bool:
        return self.parent_pid is not None and os.getppid() != self.parent_pid

    def serve_session(self, conn: socket.socket) -> None:
        """Answer requests on one connection until the client closes it (or stalls mid-message)."""
        conn.settimeout(MESSAGE_TIMEOUT_S)
        while not self._parent_gone():
            ready, _, _ = select.select([conn], [], [], POLL_S)
            if not ready:
                continue
            try:
                header, payload = recv_message(conn)
            except ConnectionAbortedError:
                return
            except TimeoutError:
                _log(f"dropping client: stalled for {MESSAGE_TIMEOUT_S:g} s in the middle of a message")
                return
            except ProtocolError as exc:
                _log(f"dropping client: {exc}")
                return
            except OSError as exc:
                _log(f"connection error: {exc}")
                return
            rid = header.get("id")
            try:
                reply, out = self.handle(header, payload)
                reply = dict(reply, ok=True)
            except SnncError as exc:
                reply, out = {"ok": False, "error": type(exc).__name__, "message": str(exc)}, b""
            except Exception as exc:  # noqa: BLE001 - a device reports its internal failures, it does not die
                reply, out = {"ok": False, "error": "DeviceError",
                              "message": f"internal device error in {header.get('cmd')!r}: "
                                         f"{type(exc).__name__}: {exc}"}, b""
            reply["id"] = rid
            reply["cmd"] = header.get("cmd")
            _log(f"{header.get('cmd')} id={rid} ok={reply['ok']}")
            try:
                if self.test_garble_once and header.get("cmd") == "read":
                    self.test_garble_once = False      # fault injection (tests only): one corrupt reply
                    conn.sendall(b"\x00\x00\x00\x10#garbled-reply!!" + out[:64])
                else:
                    send_message(conn, reply, out)
            except OSError as exc:
                _log(f"client went away before the reply: {exc}")
                return

    def serve_forever(self) -> None:
        """Accept clients one after another until interrupted or the parent process is gone."""
        _log(f"{PROTO} serving on {self.host}:{self.port} (chip {self.chip.name})")
        try:
            while not self._parent_gone():
                try:
                    conn, _ = self.sock.accept()
                except TimeoutError:
                    continue
                with conn:
                    self.serve_session(conn)
            _log("parent process gone; exiting")
        finally:
            self.sock.close()
