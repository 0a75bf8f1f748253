"""``hil``: run a compiled network on a hardware-in-the-loop device over loopback TCP (docs/hil-protocol.md).

The device is hw_sim in its own process (``snnc device serve``). Without ``host``/``port`` the target starts a
local device itself and always stops it again (:meth:`HilTarget.close`, context manager, or at interpreter
exit). Inputs go to the device in batches; each batch comes back whole or the run fails with
:class:`toolchain.errors.DeviceError` (or the device's own error, e.g. ``DRCError``). The finished batches of a
failed run are kept client-side, so calling ``run`` again with the same network and inputs resumes at the failed
batch: earlier results are never lost or recomputed. A completed run keeps nothing (a repeated run runs again).
A lost connection is re-established (``retries`` times per batch; an owned device that died is restarted);
timeouts are not retried. Each connection holds its own network on the device; a connection that the device
closed for idleness (``snnc device serve --idle-timeout``) is noticed before the next batch and re-opened (and the
network loaded again) without using up a retry.
"""
from __future__ import annotations

import hashlib
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections import OrderedDict
from pathlib import Path

import numpy as np

from hw_sim.protocol import (ProtocolError, check_loopback, content_digest, decode_arrays, encode_arrays,
                             encode_network, recv_message, send_message)
from targets.base import RunResult
from targets.grid_contract import grid_input_columns
from toolchain import errors
from toolchain.compiled import CompiledNetwork
from toolchain.errors import DeviceError

_REMOTE_ERRORS = {name: getattr(errors, name) for name in
                  ("DRCError", "CompileError", "ArtifactError", "DataError", "TargetError", "DeviceError")}
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])
CACHE_BYTES = 512 << 20  # finished batches of unfinished runs kept client-side (bytes of result arrays)


class LocalDevice:
    """A ``snnc device serve`` child process on a loopback port (port 0 = any free port)."""

    def __init__(self, port: int = 0, extra_args: tuple[str, ...] = (), start_timeout: float = 300.0):
        self.host = "127.0.0.1"
        fd, self.log_path = tempfile.mkstemp(prefix="snnc-device-", suffix=".log")
        os.close(fd)
        self._log = open(self.log_path, "ab")   # O_APPEND: reading the log never moves the device's writes
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        cmd = [sys.executable, "-m", "toolchain.cli", "device", "serve", "--host", self.host, "--port", str(port),
               "--parent-pid", str(os.getpid()), *extra_args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL,
                                     env=env)
        self._finalizer = weakref.finalize(self, LocalDevice._terminate, self.proc, self._log, self.log_path)
        self.port = self._wait_ready(start_timeout)

    def _wait_ready(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        line, eof = b"", False
        while time.monotonic() < deadline and not line.endswith(b"\n"):
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, min(0.5, deadline - time.monotonic())))
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 256)
                if not chunk:
                    eof = True
                    break
                line += chunk
            elif self.proc.poll() is not None:
                break
        text = line.decode("utf-8", "replace").strip()
        if text.startswith("snnc device listening on "):
            return int(text.rsplit(":", 1)[1])
        try:
            code = self.proc.wait(timeout=5) if eof else self.proc.poll()   # stdout closed: it is exiting
        except subprocess.TimeoutExpired:
            code = None
        log = self.log_tail()
        self.stop()
        why = (f"exited with code {code} before it was ready" if code is not None
               else f"was not ready within {timeout:g} s (raise the hil option start_timeout)")
        raise DeviceError(f"the local device {why}; its log:\n{log.strip()}\n"
                          f"run 'snnc device serve --port 0' by hand to see why")

    def log_tail(self, n: int = 2000) -> str:
        """The last ``n`` characters of the device's stderr log."""
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-n:]
        except OSError:
            return ""

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the device (fault injection); the process is reaped."""
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    @staticmethod
    def _terminate(proc: subprocess.Popen, log, log_path: str) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
        log.close()
        try:
            os.unlink(log_path)
        except OSError:
            pass

    def stop(self) -> None:
        """Terminate (then kill) the device, reap it and delete its log. Idempotent."""
        self._finalizer()


class DeviceClient:
    """One connection to a device; every call is one request/reply, bounded by ``timeout`` seconds."""

    def __init__(self, host: str, port: int, timeout: float):
        self.host, self.port, self.timeout = check_loopback(host), int(port), float(timeout)
        self.sock: socket.socket | None = None
        self._next_id = 0

    def connect(self) -> None:
        self.close()
        try:
            self.sock = socket.create_connection((self.host, self.port), timeout=min(self.timeout, 5.0))
        except OSError as exc:
            raise DeviceError(f"cannot connect to the device at {self.host}:{self.port} ({exc}); start it with "
                              f"'snnc device serve --port {self.port}' or leave host/port unset to start one") from None
        self.sock.settimeout(self.timeout)

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def stale(self) -> bool:
        """True when the device has closed this connection (e.g. after its --idle-timeout) or sent something
        unasked: the next request would fail, so reconnect first. False when not connected."""
        if self.sock is None:
            return False
        try:   # readable between requests = EOF, a reset or unasked bytes: in every case the stream is unusable
            return bool(select.select([self.sock], [], [], 0)[0])
        except (OSError, ValueError):
            return True

    def request(self, cmd: str, header: dict | None = None, payload: bytes = b"") -> tuple[dict, bytes]:
        """Send one command and return its reply; the connection is closed on any failure."""
        if self.sock is None:
            self.connect()
        elif self.stale():
            self.close()
            raise DeviceDisconnected(f"the device at {self.host}:{self.port} closed the connection before "
                                     f"{cmd!r} (idle longer than its --idle-timeout, or it stopped); connect again "
                                     f"(and load the network again: each connection has its own)")
        self._next_id += 1
        rid = self._next_id
        try:
            self.sock.settimeout(self.timeout)
            send_message(self.sock, dict(header or {}, cmd=cmd, id=rid), payload)
            reply, data = recv_message(self.sock)
        except TimeoutError:
            self.close()
            raise DeviceTimeout(f"the device at {self.host}:{self.port} did not answer {cmd!r} within "
                                f"{self.timeout:g} s; raise the hil option timeout or use smaller batches") from None
        except ProtocolError:
            self.close()
            raise
        except (ConnectionAbortedError, OSError) as exc:
            self.close()
            raise DeviceDisconnected(f"connection to the device at {self.host}:{self.port} lost during {cmd!r} "
                                     f"({type(exc).__name__}: {exc}); the device stopped or crashed") from None
        if reply.get("id") is None and reply.get("ok") is False:     # refused before it could read our request
            self.close()
            cls = _REMOTE_ERRORS.get(reply.get("error"), DeviceError)
            raise cls(f"device: {reply.get('message', 'unspecified error')}")
        if reply.get("id") != rid or reply.get("cmd") != cmd:
            self.close()
            raise ProtocolError(f"reply to request {rid} ({cmd!r}) carries id {reply.get('id')!r} "
                                f"({reply.get('cmd')!r}): the stream is out of step; reconnecting next time")
        if not reply.get("ok"):
            cls = _REMOTE_ERRORS.get(reply.get("error"), DeviceError)
            raise cls(f"device: {reply.get('message', 'unspecified error')}")
        return reply, data


class DeviceTimeout(DeviceError):
    """The device did not answer in time."""


class DeviceDisconnected(DeviceError):
    """The connection dropped (device stopped or crashed)."""


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.hexdigest()


class HilTarget:
    """Target ``hil``. Options: host/port of a running device (port alone = 127.0.0.1; neither = start a
    private device), timeout (s per request), batch_size (samples per request), retries (reconnects per batch
    after a lost connection), start_timeout (s to wait for a private device, first numba compile included),
    device_args (extra ``snnc device serve`` arguments for a private device)."""

    name = "hil"

    def __init__(self, host: str | None = None, port: int | None = None, timeout: float = 60.0,
                 batch_size: int = 256, retries: int = 1, start_timeout: float = 300.0,
                 device_args: tuple[str, ...] = ()):
        if host is not None and port is None:
            raise DeviceError(f"hil: host {host!r} given without port; give the port of the running device "
                              f"(e.g. -o hil.port=7341), or neither to start a private device")
        if port is not None and host is None:
            host = "127.0.0.1"
        try:
            bad = port is not None and not (isinstance(port, int) and 1 <= port <= 65535)
            bad = bad or float(timeout) <= 0 or float(start_timeout) <= 0
            bad = bad or int(batch_size) != batch_size or batch_size < 1 or int(retries) != retries or retries < 0
        except (TypeError, ValueError):
            bad = True
        if bad:
            raise DeviceError(f"hil: bad option value: need port an integer in 1..65535, timeout > 0 s, "
                              f"start_timeout > 0 s, batch_size an integer >= 1, retries an integer >= 0; got "
                              f"port={port!r}, timeout={timeout!r}, start_timeout={start_timeout!r}, "
                              f"batch_size={batch_size!r}, retries={retries!r}")
        self.host = check_loopback(host) if host is not None else None
        self.port = port
        self.timeout, self.batch_size, self.retries = float(timeout), int(batch_size), int(retries)
        self.start_timeout, self.device_args = float(start_timeout), tuple(str(a) for a in device_args)
        self.device: LocalDevice | None = None
        self.client: DeviceClient | None = None
        self._loaded: str | None = None        # network hash the device holds (as far as we know)
        self._done: OrderedDict[str, dict] = OrderedDict()   # batch id -> arrays of finished batches
        self._done_bytes = 0
        self.last_counters: dict[str, np.ndarray] | None = None

    def _keep(self, batch_id: str, arrays: dict) -> None:
        """Keep a finished batch of a run in progress; beyond CACHE_BYTES the oldest go first."""
        self._done[batch_id] = arrays
        self._done_bytes += sum(a.nbytes for a in arrays.values())
        while self._done_bytes > CACHE_BYTES and len(self._done) > 1:
            _, old = self._done.popitem(last=False)
            self._done_bytes -= sum(a.nbytes for a in old.values())

    # ---- lifecycle ------------------------------------------------------------------------------------------
    def __enter__(self) -> "HilTarget":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Drop the connection and stop a device this target started."""
        if self.client is not None:
            self.client.close()
        if self.device is not None:
            self.device.stop()
            self.device = None
        self._loaded = None

    def _connect(self) -> DeviceClient:
        if self.host is None:
            if self.device is None or not self.device.alive:
                if self.device is not None:
                    self.device.stop()
                self.device = LocalDevice(0, self.device_args, self.start_timeout)
                self._loaded = None
            host, port = self.device.host, self.device.port
        else:
            host, port = self.host, self.port
        if self.client is None or (self.client.host, self.client.port) != (host, port):
            if self.client is not None:
                self.client.close()
            self.client = DeviceClient(host, port, self.timeout)
        self.client.timeout = self.timeout
        if self.client.stale():                # the device dropped an idle connection: open a new one
            self.client.close()
            self._loaded = None
        if self.client.sock is None:
            self.client.connect()
            reply, _ = self.client.request("ping")
            self._loaded = reply.get("network")
        return self.client

    def ping(self) -> dict:
        """Device status: pid, uptime, chip, loaded network hash, stored batches."""
        return self._connect().request("ping")[0]

    def reset(self) -> None:
        """Clear the device's network and stored batches (client-side finished batches are kept)."""
        self._connect().request("reset")
        self._loaded = None

    # ---- running --------------------------------------------------------------------------------------------
    def _batch(self, net: CompiledNetwork, net_bytes: bytes, net_hash: str, batch_id: str,
               cols: np.ndarray) -> dict:
        attempts = self.retries + 1
        for attempt in range(attempts):
            try:
                client = self._connect()
                if self._loaded != net_hash:
                    self._loaded = None                 # a failed load leaves nothing loaded on the device
                    reply, _ = client.request("load", {}, net_bytes)
                    if reply.get("network") != net_hash:
                        raise ProtocolError(f"the device loaded network {reply.get('network')!r}, expected "
                                            f"{net_hash!r}: garbled reply or a different device")
                    self._loaded = net_hash
                data = None
                if attempt > 0 and batch_id in client.request("ping")[0].get("batches", []):
                    _, data = client.request("read", {"batch": batch_id, "release": True})  # finished before
                if data is None:
                    client.request("run", {"batch": batch_id}, encode_arrays({"input_columns": cols}))
                    _, data = client.request("read", {"batch": batch_id, "release": True})
                arrays = decode_arrays(data)
                n_layers = len(net.layers)
                for i in range(n_layers):
                    c = arrays.get(f"columns_{i}")
                    if c is None or c.shape != (cols.shape[0], net.layers[i].n_out):
                        raise ProtocolError(f"device returned layer {i} columns of shape "
                                            f"{None if c is None else c.shape}, expected "
                                            f"{(cols.shape[0], net.layers[i].n_out)}: garbled reply")
                return arrays
            except DeviceDisconnected:
                self._loaded = None
                if attempt + 1 == attempts:
                    raise
        raise AssertionError("unreachable")

    def run(self, net: CompiledNetwork, input_times: np.ndarray) -> RunResult:
        t0 = time.perf_counter()
        cols = grid_input_columns(net, input_times)     # same input checks and wording as the other grid targets
        net_bytes = encode_network(net)
        net_hash = content_digest(net_bytes)
        starts = list(range(0, cols.shape[0], self.batch_size))
        parts, ids = [], []
        reused = 0
        for k, s in enumerate(starts):
            chunk = np.ascontiguousarray(cols[s:s + self.batch_size])
            bid = f"{net_hash[:16]}-{_digest(chunk.tobytes(), str(chunk.shape).encode())[:16]}"
            ids.append(bid)
            if bid not in self._done:
                try:
                    self._keep(bid, self._batch(net, net_bytes, net_hash, bid, chunk))
                except DeviceError as exc:
                    raise type(exc)(f"{exc}\nhil: batch {k + 1} of {len(starts)} (samples {s}.."
                                    f"{s + chunk.shape[0] - 1}) failed; {k} earlier batches are kept and are "
                                    f"not rerun when you call run again") from None
            else:
                reused += 1
                self._done.move_to_end(bid)
            parts.append(self._done[bid])
        for bid in set(ids):                   # the run is complete: its batches are returned, not cached
            old = self._done.pop(bid, None)
            if old is not None:
                self._done_bytes -= sum(a.nbytes for a in old.values())
        columns = [np.concatenate([p[f"columns_{i}"] for p in parts]) if parts else
                   np.zeros((0, layer.n_out), np.int64) for i, layer in enumerate(net.layers)]
        names = sorted({k[len("counter_"):] for p in parts for k in p if k.startswith("counter_")})
        self.last_counters = {n: np.concatenate([p[f"counter_{n}"] for p in parts]) for n in names} if parts else {}
        info = {"device": f"{self.client.host}:{self.client.port}" if self.client else None,
                "batches": len(starts), "batches_reused": reused, "batch_size": self.batch_size,
                "network_sha256": net_hash,
                "counter_totals": {n: int(v.sum()) for n, v in self.last_counters.items()}}
        times = [net.columns_to_times(c, l) for l, c in enumerate(columns)]
        return RunResult(self.name, times, columns, time.perf_counter() - t0, info)
