"""hw_sim as a device in its own process: a loopback TCP server speaking snnc-hil/1 (docs/hil-protocol.md).

Clients are served concurrently, one thread per connection, at most ``max_clients`` at a time (a client beyond
that gets a "device is busy" error reply). Each connection has its own loaded network (checked by the grid
contract of targets/grid_contract.py, the same check hw_sim and lava-fixed run, and by the design rules of
hw_sim/resources.py) and answers its requests in order. A connection that sends nothing for ``idle_timeout_s``
seconds (between messages or in the middle of one) is dropped, so a stalled client never holds up others.

Finished batches are kept device-wide, keyed by (network hash, batch id), until read with ``release`` or evicted
(oldest first) beyond ``max_batches``, so a client that lost its connection can reconnect, load the same network
and read a finished batch again.

A malformed request (unknown command, field of the wrong type, unreadable payload) gets an error reply and the
connection keeps being served; a message that breaks the framing (bad length, header that is not a JSON object,
wrong ``proto``) gets an error reply, then the connection is closed (the byte stream cannot be trusted any more).
The server keeps serving other and new connections in every case.
"""
from __future__ import annotations

import os
import select
import socket
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from hw_sim.protocol import (COMMANDS, PROTO, ProtocolError, check_loopback, content_digest, decode_arrays,
                             decode_network, encode_arrays, recv_message, send_message)
from hw_sim.resources import LOIHI2, ChipSpec, partition
from toolchain.errors import DeviceError, SnncError

POLL_S = 0.5                 # accept/recv poll interval: how quickly the server notices its parent is gone
IDLE_TIMEOUT_S = 30.0        # default: a connection silent this long (between or within messages) is dropped
MAX_CLIENTS = 8              # default: connections served at the same time
MAX_BATCH_ID = 256           # characters of a batch id


@dataclass
class Session:
    """What one connection holds between its requests: the loaded network."""

    net: object = None
    packed: object = None
    net_hash: str | None = None
    resources: dict | None = None

    def clear(self) -> None:
        """Forget the loaded network."""
        self.net = self.packed = self.net_hash = self.resources = None


class ResultStore:
    """Finished batches of every connection, keyed by (network hash, batch id); the newest ``max_batches`` are
    kept. Thread-safe."""

    def __init__(self, max_batches: int):
        self.max_batches = int(max_batches)
        self._items: OrderedDict[tuple[str, str], dict[str, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, net_hash: str, batch: str, arrays: dict[str, np.ndarray]) -> None:
        with self._lock:
            self._items[(net_hash, batch)] = arrays
            self._items.move_to_end((net_hash, batch))
            while len(self._items) > self.max_batches:
                self._items.popitem(last=False)

    def take(self, net_hash: str, batch: str, release: bool) -> dict[str, np.ndarray] | None:
        """The arrays of a batch (None when absent); ``release`` drops them from the store."""
        with self._lock:
            if release:
                return self._items.pop((net_hash, batch), None)
            return self._items.get((net_hash, batch))

    def ids(self, net_hash: str | None) -> list[str]:
        """Batch ids stored for one network, oldest first."""
        with self._lock:
            return [b for h, b in self._items if h == net_hash]

    def drop(self, net_hash: str | None) -> None:
        """Forget every batch of one network."""
        with self._lock:
            for key in [k for k in self._items if k[0] == net_hash]:
                del self._items[key]


def _log(msg: str) -> None:
    print(f"[snnc device {os.getpid()}] {msg}", file=sys.stderr, flush=True)


def _show(value, limit: int = 60) -> str:
    """Type and (cut) repr of a client-supplied value, for error messages."""
    text = repr(value)
    text = text if len(text) <= limit else text[:limit - 3] + "..."
    return f"{type(value).__name__} {text}"


def _echo(header: dict | None) -> dict:
    """The ``id`` and ``cmd`` of a request as its reply echoes them: only when they are an int / a string (a
    peer's NaN, list or huge object is not sent back), else null."""
    header = header if isinstance(header, dict) else {}
    rid, cmd = header.get("id"), header.get("cmd")
    return {"id": rid if isinstance(rid, int) and not isinstance(rid, bool) else None,
            "cmd": cmd if isinstance(cmd, str) and len(cmd) <= 64 else None}


def _batch_id(header: dict, cmd: str) -> str:
    batch = header.get("batch")
    if not isinstance(batch, str) or not batch or len(batch) > MAX_BATCH_ID:
        raise DeviceError(f"'{cmd}' needs 'batch': a non-empty string of at most {MAX_BATCH_ID} characters in its "
                          f"header, got {_show(batch)}; send e.g. {{\"batch\": \"b1\"}}")
    return batch


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
    """The device.

    idle_timeout_s: a connection that sends nothing for this long (between messages, or in the middle of one)
    is closed; max_clients: connections served at once; max_batches: finished batches kept device-wide;
    parent_pid: exit when this process is no longer the parent. Fault injection for tests only:
    ``test_delay_s`` sleeps before answering each ``run``; ``test_garble_once`` sends one corrupt reply to the
    first ``read``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, chip: ChipSpec = LOIHI2,
                 test_delay_s: float = 0.0, max_batches: int = 64, parent_pid: int | None = None,
                 test_garble_once: bool = False, idle_timeout_s: float = IDLE_TIMEOUT_S,
                 max_clients: int = MAX_CLIENTS):
        self.host = check_loopback(host)
        if not 0 < float(idle_timeout_s) < 1e6:
            raise DeviceError(f"idle timeout must be > 0 s and finite, got {idle_timeout_s!r}; pass e.g. "
                              f"--idle-timeout 30")
        if int(max_clients) < 1:
            raise DeviceError(f"max clients must be >= 1, got {max_clients!r}; pass e.g. --max-clients 8")
        if int(max_batches) < 1:
            raise DeviceError(f"max batches must be >= 1, got {max_batches!r}; pass e.g. --max-batches 64")
        self.chip = chip
        self.test_delay_s = float(test_delay_s)
        self.test_garble_once = bool(test_garble_once)
        self.max_batches = int(max_batches)
        self.idle_timeout_s = float(idle_timeout_s)
        self.max_clients = int(max_clients)
        self.parent_pid = parent_pid
        self.results = ResultStore(self.max_batches)
        self.started = time.time()
        self._slots = threading.BoundedSemaphore(self.max_clients)      # connections being served
        self._refusals = threading.BoundedSemaphore(self.max_clients)   # busy replies being sent
        self._stopping = threading.Event()
        self._lock = threading.Lock()                                    # test_garble_once, _threads
        self._threads: set[threading.Thread] = set()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError as exc:
            self.sock.close()
            raise DeviceError(f"cannot listen on {host}:{port} ({exc}); choose another --port or stop the "
                              f"process using it") from None
        self.sock.listen(max(8, 2 * self.max_clients))
        self.sock.settimeout(POLL_S)
        self.port = self.sock.getsockname()[1]

    # ---- request handlers (each gets the connection's Session) ----------------------------------------------
    def handle(self, session: Session, header: dict, payload: bytes) -> tuple[dict, bytes]:
        """Answer one request -> (reply fields, payload); SnncError for a request that cannot be served."""
        rid = header.get("id")
        if isinstance(rid, bool) or not isinstance(rid, int):
            raise DeviceError(f"request 'id' must be an integer chosen by the client, got {_show(rid)}")
        cmd = header.get("cmd")
        if not isinstance(cmd, str) or cmd not in COMMANDS:
            raise DeviceError(f"unknown command {_show(cmd)}; the device understands: {', '.join(COMMANDS)}")
        return getattr(self, f"cmd_{cmd}")(session, header, payload)

    def cmd_ping(self, session: Session, header: dict, payload: bytes) -> tuple[dict, bytes]:
        return {"device": "hw_sim", "pid": os.getpid(), "uptime_s": time.time() - self.started,
                "chip": self.chip.name, "network": session.net_hash,
                "batches": self.results.ids(session.net_hash) if session.net_hash else []}, b""

    def cmd_reset(self, session: Session, header: dict, payload: bytes) -> tuple[dict, bytes]:
        if session.net_hash is not None:
            self.results.drop(session.net_hash)
        session.clear()
        return {}, b""

    def cmd_load(self, session: Session, header: dict, payload: bytes) -> tuple[dict, bytes]:
        from hw_sim.emulator import pack
        from targets.grid_contract import check_grid_network

        session.clear()                   # a failed load leaves no network loaded, never a stale one
        net = decode_network(payload)        # ArtifactError
        check_grid_network(net, "hil", fixed=True)   # TargetError: exactly what hw_sim and lava-fixed refuse
        report = partition(net, self.chip)   # DRCError
        packed = pack(net)                   # checks the network once; runs skip the packing
        session.net, session.packed = net, packed
        session.net_hash = content_digest(payload)
        session.resources = report.to_dict()
        return {"network": session.net_hash, "resources": session.resources}, b""

    def cmd_run(self, session: Session, header: dict, payload: bytes) -> tuple[dict, bytes]:
        if session.net is None:
            raise DeviceError("no network loaded on this connection; send 'load' with a compiled network first "
                              "(each connection loads its own)")
        batch = _batch_id(header, "run")
        arrays = decode_arrays(payload)
        if "input_columns" not in arrays:
            raise DeviceError("'run' payload lacks the array 'input_columns' (N, n_in) int64")
        cols = arrays["input_columns"]
        n_in = session.net.layers[0].n_in
        if cols.ndim != 2 or cols.shape[1] != n_in or cols.dtype.kind not in "iu":
            raise DeviceError(f"input_columns has shape {cols.shape} and dtype {cols.dtype}; the loaded network "
                              f"needs (N, {n_in}) integers (-1 = no spike)")
        if self.test_delay_s > 0:
            time.sleep(self.test_delay_s)
        t0 = time.perf_counter()
        result = sim_arrays(session.packed, cols.astype(np.int64))
        wall = time.perf_counter() - t0
        self.results.put(session.net_hash, batch, result)
        return {"batch": batch, "samples": int(cols.shape[0]), "wall_s": wall, "network": session.net_hash}, b""

    def cmd_read(self, session: Session, header: dict, payload: bytes) -> tuple[dict, bytes]:
        batch = _batch_id(header, "read")
        release = header.get("release", False)
        if not isinstance(release, bool):
            raise DeviceError(f"'read' field 'release' must be true or false, got {_show(release)}")
        if session.net_hash is None:
            raise DeviceError("no network loaded on this connection; load the network whose batch you want to "
                              "read (results are kept per network)")
        arrays = self.results.take(session.net_hash, batch, release)
        if arrays is None:
            raise DeviceError(f"batch {batch!r} is not on the device (never run with this network, released, or "
                              f"evicted after {self.max_batches} newer batches); run it again")
        layers = sum(1 for k in arrays if k.startswith("columns_"))
        return {"batch": batch, "layers": layers, "network": session.net_hash}, encode_arrays(arrays)

    # ---- serving --------------------------------------------------------------------------------------------
    def _parent_gone(self) -> bool:
        return self.parent_pid is not None and os.getppid() != self.parent_pid

    def _should_stop(self) -> bool:
        return self._stopping.is_set() or self._parent_gone()

    @staticmethod
    def _refuse_and_close(conn: socket.socket, header: dict | None, exc: Exception) -> None:
        """Best effort: tell the peer why its message is refused, then end the connection gracefully (our FIN
        first, then drain what the peer still sends for up to 1 s, so that the kernel does not answer unread
        bytes with a reset that could destroy the error reply before the peer reads it)."""
        reply = {"ok": False, "error": type(exc).__name__ if isinstance(exc, SnncError) else "DeviceError",
                 "message": str(exc), **_echo(header)}
        if reply["error"] == "ProtocolError":
            reply["error"] = "DeviceError"
        try:
            conn.settimeout(5.0)
            send_message(conn, reply)
            conn.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + 1.0
            drained = 0
            while drained < (1 << 20) and (left := deadline - time.monotonic()) > 0:
                conn.settimeout(left)
                chunk = conn.recv(65536)
                if not chunk:
                    break
                drained += len(chunk)
        except (OSError, SnncError):
            pass

    def _answer(self, session: Session, header: dict, payload: bytes) -> tuple[dict, bytes]:
        try:
            reply, out = self.handle(session, header, payload)
            reply = dict(reply, ok=True)
        except SnncError as exc:
            reply, out = {"ok": False, "error": type(exc).__name__, "message": str(exc)}, b""
            if reply["error"] == "ProtocolError":     # an unreadable payload: the request is at fault, not the stream
                reply["error"] = "DeviceError"
        except Exception as exc:  # noqa: BLE001 - a device reports its internal failures, it does not die
            reply, out = {"ok": False, "error": "DeviceError",
                          "message": f"internal device error in {header.get('cmd')!r}: "
                                     f"{type(exc).__name__}: {exc}"}, b""
        reply.update(_echo(header))
        return reply, out

    def serve_session(self, conn: socket.socket, peer: str = "client") -> None:
        """Answer requests on one connection until the client closes it, is idle or stalls for
        ``idle_timeout_s``, or breaks the framing. Closes ``conn``."""
        session = Session()
        conn.settimeout(self.idle_timeout_s)
        last = time.monotonic()
        with conn:
            while not self._should_stop():
                left = self.idle_timeout_s - (time.monotonic() - last)
                if left <= 0:
                    _log(f"{peer}: dropped after {self.idle_timeout_s:g} s without a request (--idle-timeout)")
                    return
                ready, _, _ = select.select([conn], [], [], min(POLL_S, left))
                if not ready:
                    continue
                try:
                    header, payload = recv_message(conn)
                except ConnectionAbortedError:
                    return
                except TimeoutError:
                    _log(f"{peer}: dropped: stalled for {self.idle_timeout_s:g} s in the middle of a message "
                         f"(--idle-timeout)")
                    return
                except ProtocolError as exc:
                    _log(f"{peer}: closing after a malformed message: {exc}")
                    self._refuse_and_close(conn, exc.header, exc)
                    return
                except OSError as exc:
                    _log(f"{peer}: connection error: {exc}")
                    return
                reply, out = self._answer(session, header, payload)
                _log(f"{peer}: {reply['cmd']} id={reply['id']} ok={reply['ok']}")
                try:
                    with self._lock:
                        garble = self.test_garble_once and reply["cmd"] == "read"
                        self.test_garble_once = self.test_garble_once and not garble
                    if garble:                              # fault injection (tests only): one corrupt reply
                        conn.sendall(b"\x00\x00\x00\x10#garbled-reply!!" + out[:64])
                    else:
                        send_message(conn, reply, out)
                except OSError as exc:
                    _log(f"{peer}: went away before the reply: {exc}")
                    return
                last = time.monotonic()

    def _refuse(self, conn: socket.socket, peer: str) -> None:
        """Read the first request of a connection beyond ``max_clients`` and answer it 'busy'."""
        with conn:
            conn.settimeout(min(self.idle_timeout_s, 5.0))
            try:
                header, _ = recv_message(conn)
            except ProtocolError as exc:
                header = exc.header
            except OSError:
                return
            _log(f"{peer}: refused: {self.max_clients} clients connected (--max-clients)")
            self._refuse_and_close(conn, header, DeviceError(
                f"the device is busy: it serves at most {self.max_clients} clients at a time and all are "
                f"connected; retry later, close idle connections, or start the device with a larger "
                f"--max-clients"))

    def _spawn(self, target, conn: socket.socket, peer: str, slots: threading.BoundedSemaphore) -> None:
        def run() -> None:
            try:
                target(conn, peer)
            except Exception as exc:  # noqa: BLE001 - one connection's failure never stops the device
                _log(f"{peer}: internal error, connection closed: {type(exc).__name__}: {exc}")
            finally:
                slots.release()
                with self._lock:
                    self._threads.discard(threading.current_thread())

        th = threading.Thread(target=run, name=f"snnc-device-{peer}", daemon=True)
        with self._lock:
            self._threads.add(th)
        th.start()

    def serve_forever(self) -> None:
        """Accept clients (each served by its own thread) until :meth:`stop`, or until the parent is gone."""
        _log(f"{PROTO} serving on {self.host}:{self.port} (chip {self.chip.name}, up to {self.max_clients} "
             f"clients, idle timeout {self.idle_timeout_s:g} s)")
        try:
            while not self._should_stop():
                try:
                    conn, addr = self.sock.accept()
                except TimeoutError:
                    continue
                except OSError as exc:
                    if self._stopping.is_set():
                        break
                    _log(f"accept failed ({exc}); retrying")     # e.g. out of file descriptors: keep serving
                    time.sleep(POLL_S)
                    continue
                peer = f"client {addr[0]}:{addr[1]}"
                conn.setblocking(True)
                if self._slots.acquire(blocking=False):
                    self._spawn(self.serve_session, conn, peer, self._slots)
                elif self._refusals.acquire(blocking=False):
                    self._spawn(self._refuse, conn, peer, self._refusals)
                else:
                    _log(f"{peer}: closed at once: too many clients")
                    conn.close()
            if self._parent_gone():
                _log("parent process gone; exiting")
        finally:
            self._stopping.set()
            self.sock.close()
            with self._lock:
                threads = list(self._threads)
            for th in threads:                      # they notice the stop within POLL_S (a run may take longer)
                th.join(2 * POLL_S)

    def stop(self) -> None:
        """Ask :meth:`serve_forever` (in another thread) to return; connections close within ``POLL_S``."""
        self._stopping.set()
