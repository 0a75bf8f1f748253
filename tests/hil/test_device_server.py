"""The device as a server: concurrent clients, idle/stalled clients dropped, a bound on clients, the grid contract
checked on ``load``, and error replies (not tracebacks or a dead server) for malformed requests.

Every device here is a real ``snnc device serve`` process on 127.0.0.1; every wait is bounded.
"""
from __future__ import annotations

import dataclasses
import json
import socket
import struct
import threading
import time

import numpy as np
import pytest

from hw_sim.emulator import simulate
from hw_sim.protocol import PROTO, decode_arrays, encode_arrays, encode_network, recv_message, send_message
from targets.hil import DeviceClient, DeviceDisconnected, HilTarget, LocalDevice
from toolchain.errors import ArtifactError, DeviceError, SnncError, TargetError

IDLE_S = 3.0        # the device's --idle-timeout in this module
MAX_CLIENTS = 3


@pytest.fixture(scope="module")
def device():
    dev = LocalDevice(extra_args=("--idle-timeout", str(IDLE_S), "--max-clients", str(MAX_CLIENTS)))
    yield dev
    dev.stop()
    assert not dev.alive


def _raw(dev: LocalDevice) -> socket.socket:
    return socket.create_connection((dev.host, dev.port), timeout=IDLE_S + 10)


def _closed_by_peer_within(sock: socket.socket, limit: float) -> float:
    """Seconds until the peer closes ``sock`` (reads and discards any reply first); fails after ``limit``."""
    t0 = time.monotonic()
    sock.settimeout(limit)
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return time.monotonic() - t0
        assert time.monotonic() - t0 < limit


def _wait_until_dropped(client: DeviceClient) -> float:
    """Seconds until the device closes ``client``'s idle connection (bounded: IDLE_S + 8 s)."""
    t0 = time.monotonic()
    while not client.stale():
        assert time.monotonic() - t0 < IDLE_S + 8, "the device did not drop an idle connection"
        time.sleep(0.05)
    return time.monotonic() - t0


def _frame(header: dict) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack(">I", len(raw)) + raw


def _load_run_read(client: DeviceClient, net, cols: np.ndarray, batch: str) -> dict:
    client.request("load", {}, encode_network(net))
    client.request("run", {"batch": batch}, encode_arrays({"input_columns": cols}))
    _, data = client.request("read", {"batch": batch, "release": True})
    return decode_arrays(data)


def test_a_stalled_client_does_not_block_another(device, small_net, inputs):
    """Client A stops after 2 bytes of a length prefix; client B loads, runs and reads at once; A and an idle
    client C are dropped after the idle timeout."""
    cols = small_net.input_columns(inputs)
    stalled, idle = _raw(device), _raw(device)
    b = DeviceClient(device.host, device.port, timeout=20)
    try:
        stalled.sendall(b"\x00\x00")                         # half a length prefix, then nothing
        t0 = time.monotonic()
        got = _load_run_read(b, small_net, cols, "concurrent")
        took = time.monotonic() - t0
        assert took < IDLE_S - 0.5, f"B waited {took:.1f} s: it was blocked by the stalled client"
        for i, want in enumerate(simulate(small_net, cols).columns):
            np.testing.assert_array_equal(got[f"columns_{i}"], want)
        t_stalled = _closed_by_peer_within(stalled, IDLE_S + 8)
        t_idle = _closed_by_peer_within(idle, 8)
        assert IDLE_S - 1.5 < t_stalled + took < IDLE_S + 8
        assert t_idle < 8
        assert b.request("ping")[0]["network"] is not None    # B used it meanwhile: B is still served
    finally:
        for s in (stalled, idle):
            s.close()
        b.close()
    log = device.log_tail(100000)
    assert "stalled for 3 s in the middle of a message" in log and "without a request" in log


def test_each_connection_has_its_own_network(device, small_net, inputs):
    from compiled_factory import make_compiled

    other = make_compiled((12, 5), seed=4)
    a = DeviceClient(device.host, device.port, timeout=20)
    b = DeviceClient(device.host, device.port, timeout=20)
    try:
        ha = a.request("load", {}, encode_network(small_net))[0]["network"]
        hb = b.request("load", {}, encode_network(other))[0]["network"]
        assert ha != hb
        assert a.request("ping")[0]["network"] == ha and b.request("ping")[0]["network"] == hb
        cols = small_net.input_columns(inputs[:3])
        a.request("run", {"batch": "x"}, encode_arrays({"input_columns": cols}))
        assert a.request("ping")[0]["batches"] == ["x"] and b.request("ping")[0]["batches"] == []
        with pytest.raises(DeviceError, match="'x' is not on the device"):
            b.request("read", {"batch": "x"})
        a.close()                                   # a finished batch outlives its connection (same network)
        c = DeviceClient(device.host, device.port, timeout=20)
        try:
            c.request("load", {}, encode_network(small_net))
            _, data = c.request("read", {"batch": "x", "release": True})
            assert len(data) > 0 and c.request("ping")[0]["batches"] == []
        finally:
            c.close()
    finally:
        a.close()
        b.close()


def test_hil_target_reconnects_after_the_device_dropped_its_idle_connection(device, small_net, inputs):
    with HilTarget(host=device.host, port=device.port, timeout=20, retries=0) as t:
        first = t.run(small_net, inputs[:4])
        sock = t.client.sock
        assert IDLE_S - 1.0 < _wait_until_dropped(t.client)     # the device drops the idle connection
        again = t.run(small_net, inputs[:4])        # retries=0: no retry was needed, it reconnected first
        assert t.client.sock is not sock
        for x, y in zip(first.columns, again.columns):
            np.testing.assert_array_equal(x, y)
    raw = DeviceClient(device.host, device.port, timeout=20)
    try:
        raw.request("ping")
        _wait_until_dropped(raw)
        with pytest.raises(DeviceDisconnected, match="closed the connection before 'ping'.*idle-timeout"):
            raw.request("ping")
        assert raw.request("ping")[0]["network"] is None      # a new connection: nothing loaded
    finally:
        raw.close()


def test_clients_beyond_max_clients_get_a_busy_error(device):
    held = [DeviceClient(device.host, device.port, timeout=20) for _ in range(MAX_CLIENTS)]
    extra = DeviceClient(device.host, device.port, timeout=20)
    try:
        for c in held:
            c.request("ping")                      # each one is being served
        with pytest.raises(DeviceError, match=rf"device is busy: it serves at most {MAX_CLIENTS} clients"):
            extra.request("ping")
        held.pop().close()
        deadline = time.monotonic() + 5            # the server frees the slot within its poll interval
        while True:
            try:
                assert extra.request("ping")[0]["device"] == "hw_sim"
                break
            except DeviceError:
                assert time.monotonic() < deadline
                extra.close()
                time.sleep(0.1)
    finally:
        for c in held + [extra]:
            c.close()


def test_malformed_requests_get_error_replies_and_the_connection_is_kept(device, small_net):
    c = DeviceClient(device.host, device.port, timeout=20)
    try:
        c.request("load", {}, encode_network(small_net))
        cases = [
            ("read", {"batch": 7}, None, r"'read' needs 'batch': a non-empty string .* got int 7"),
            ("read", {"batch": ["x"]}, None, r"got list \['x'\]"),
            ("read", {"batch": {"a": 1}}, None, r"got dict"),
            ("read", {"batch": ""}, None, r"non-empty string"),
            ("read", {"batch": "b", "release": "yes"}, None, r"'release' must be true or false, got str 'yes'"),
            ("run", {"batch": None}, encode_arrays({"input_columns": np.zeros((1, 12), np.int64)}),
             r"'run' needs 'batch'"),
            ("run", {"batch": "b"}, b"not an npz", r"not a readable .npz"),
            ("run", {"batch": "b"}, encode_arrays({"other": np.zeros(1)}), r"lacks the array 'input_columns'"),
            ("run", {"batch": "b"}, encode_arrays({"input_columns": np.zeros((1, 12))}), r"needs \(N, 12\) integers"),
            ("run", {"batch": "b"}, encode_arrays({"input_columns": np.full((1, 12), 10**6, np.int64)}),
             r"input columns must lie in"),
        ]
        for cmd, header, payload, words in cases:
            with pytest.raises(TargetError, match=words):     # DeviceError, or hw_sim's own TargetError
                c.request(cmd, header, payload or b"")
            assert c.request("ping")[0]["network"] is not None, (cmd, header)   # same connection, still served
        with pytest.raises(ArtifactError, match="not a compiled network|cannot read it as npz"):
            c.request("load", {}, b"junk")
        assert c.request("ping")[0]["network"] is None         # a failed load leaves nothing loaded
        with pytest.raises(DeviceError, match=r"cannot be sent as JSON .*no numpy scalars"):
            c.request("read", {"batch": np.int64(3)})          # refused before anything is sent
        assert c.request("ping")[0]["device"] == "hw_sim"
    finally:
        c.close()
    # raw requests the client would never send: wrong field types answer with an error, the connection stays
    s = _raw(device)
    try:
        s.sendall(_frame({"proto": PROTO, "payload_bytes": 0, "id": "seven", "cmd": "ping"}))
        reply, _ = recv_message(s)
        assert reply["ok"] is False and "'id' must be an integer" in reply["message"]
        s.sendall(_frame({"proto": PROTO, "payload_bytes": 0, "id": float("nan"), "cmd": ["x"] * 1000}))
        reply, _ = recv_message(s)                             # nothing unsafe is echoed back
        assert reply["ok"] is False and reply["id"] is None and reply["cmd"] is None
        assert "'id' must be an integer" in reply["message"]
        s.sendall(_frame({"proto": PROTO, "payload_bytes": 0, "id": 2, "cmd": 5}))
        reply, _ = recv_message(s)
        assert reply["ok"] is False and reply["id"] == 2 and "unknown command int 5" in reply["message"]
        s.sendall(_frame({"proto": PROTO, "payload_bytes": 0, "id": 3, "cmd": "ping"}))
        reply, _ = recv_message(s)
        assert reply["ok"] is True and reply["id"] == 3
    finally:
        s.close()


@pytest.mark.parametrize("raw, words, echoed_id", [
    (b"\xff\xff\xff\xff", "header length 4294967295 is outside", None),
    (b"\x00\x00\x00\x00" + b"junk" * 50000, "header length 0 is outside", None),   # the reply survives the junk
    (struct.pack(">I", 2) + b"[]", "header protocol is 'list'", None),
    (struct.pack(">I", 5) + b"{\"a\":", "not valid UTF-8 JSON", None),
    (_frame({"proto": "snnc-hil/0", "id": 4, "cmd": "ping"}), "header protocol is 'snnc-hil/0'", 4),
    (_frame({"proto": PROTO, "id": 5, "cmd": "ping", "payload_bytes": "ten"}), "payload_bytes 'ten'", 5),
    (_frame({"proto": PROTO, "id": 6, "cmd": "ping", "payload_bytes": True}), "payload_bytes True", 6),
])
def test_broken_framing_gets_an_error_reply_then_the_server_carries_on(device, raw, words, echoed_id):
    s = _raw(device)
    try:
        s.sendall(raw)
        reply, _ = recv_message(s)
        assert reply["ok"] is False and reply["error"] == "DeviceError" and words in reply["message"]
        assert reply["id"] == echoed_id
        assert _closed_by_peer_within(s, 5) < 5                # the stream cannot be trusted: closed
    finally:
        s.close()
    c = DeviceClient(device.host, device.port, timeout=20)
    try:
        assert c.request("ping")[0]["device"] == "hw_sim"      # the server keeps serving
    finally:
        c.close()


def test_client_raises_the_error_of_a_reply_sent_before_its_request_was_read():
    """A device that refuses a connection answers with id null: the client raises that error, not 'out of step'."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(5)

    def answer():
        try:
            conn, _ = srv.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            try:
                recv_message(conn)
                send_message(conn, {"ok": False, "error": "DRCError", "message": "refused for a test", "id": None})
            except (OSError, SnncError):
                pass

    th = threading.Thread(target=answer, daemon=True)
    th.start()
    try:
        from toolchain.errors import DRCError

        with pytest.raises(DRCError, match="device: refused for a test"):
            DeviceClient("127.0.0.1", srv.getsockname()[1], timeout=5).request("ping")
    finally:
        th.join(6)
        srv.close()
    assert not th.is_alive()


def _contract_cases(net):
    ly = net.layers[0]
    odd = ly.weights | 1
    return [
        ("odd mantissas, exponent -1", dataclasses.replace(
            net, layers=(dataclasses.replace(ly, num_weight_bits=9, weight_exp=-1, weights=odd),) + net.layers[1:]),
         r"weight_exp=-1 needs even weight mantissas"),
        ("mantissa out of range", dataclasses.replace(
            net, layers=(dataclasses.replace(ly, weights=np.where(ly.weights > 0, 300, ly.weights).astype(np.int32)),)
            + net.layers[1:]),
         r"weights: 8-bit mixed-sign weight mantissas must be even values in \[-256, 254\].*300\]"),
        ("vth over 17 bits", dataclasses.replace(
            net, layers=(dataclasses.replace(ly, vth=np.full(ly.n_out, 1 << 17)),) + net.layers[1:]),
         r"vth\[0\]=131072 is out of range \(17 bit"),
        ("steps_per_unit 0", dataclasses.replace(net, steps_per_unit=0), r"steps_per_unit=0 must be a positive"),
    ]


_IO_WORDS = [None,   # compiled_io accepts odd 9-bit mantissas; only the grid contract knows exponent -1 needs even ones
             r"weights\[0, 0\] = 300 is outside its range",
             r"vth\[0\] = 131072 is outside its range", r"steps_per_unit = 0.0 is outside its range"]


@pytest.mark.parametrize("case", range(4))
def test_load_refuses_what_hw_sim_and_lava_fixed_refuse(device, small_net, inputs, case, monkeypatch):
    """The same grid contract as hw_sim/lava-fixed runs before 'load' says ok; the field is named over the wire.

    Our client refuses such networks already when encoding them (compiled_io validates on save); the bytes here are
    those of a client without that check, so the device's own checks are what is tested. The device may refuse
    in its loader (compiled_io's field ranges, ArtifactError) or in the grid contract (TargetError)."""
    import toolchain.compiled_io as cio
    from targets.grid_contract import check_grid_network
    from targets.hw_sim import HwSimTarget

    _, bad, words = _contract_cases(small_net)[case]
    with pytest.raises(TargetError, match=words) as local:
        check_grid_network(bad, "lava-fixed", fixed=True)           # what lava-fixed refuses before running
    with pytest.raises(TargetError, match=words):
        HwSimTarget().run(bad, inputs[:1])
    c = DeviceClient(device.host, device.port, timeout=20)
    try:
        c.request("load", {}, encode_network(small_net))
        if _IO_WORDS[case] is not None:
            with pytest.raises(ArtifactError, match=_IO_WORDS[case]):
                encode_network(bad)                                    # our client refuses to send it
        with monkeypatch.context() as m:
            m.setattr(cio, "validate_compiled", lambda *a, **k: None)
            raw = encode_network(bad)                                  # a client without that check
        with pytest.raises((TargetError, ArtifactError), match=f"{words}|{_IO_WORDS[case] or words}") as remote:
            c.request("load", {}, raw)
        if isinstance(remote.value, TargetError):
            assert str(remote.value) == f"device: {local.value}"       # identical wording
        assert c.request("ping")[0]["network"] is None                 # refused: nothing loaded
    finally:
        c.close()
    if case == 0:   # and through the public target
        with HilTarget(host=device.host, port=device.port, timeout=20) as t:
            with pytest.raises(TargetError, match=words):
                t.run(bad, inputs[:2])


def test_bad_server_options_are_clear_errors():
    from toolchain.cli import main

    assert main(["device", "serve", "--port", "0", "--idle-timeout", "0"]) == 2
    assert main(["device", "serve", "--port", "0", "--max-clients", "0"]) == 2
    from hw_sim.server import DeviceServer

    with pytest.raises(DeviceError, match="idle timeout must be > 0"):
        DeviceServer("127.0.0.1", 0, idle_timeout_s=float("inf"))
