"""Hardware-in-the-loop: results, protocol, and faults (killed device, slow device, garbled reply, DRC error).

Loopback only; every device process started here is stopped and reaped; every wait is bounded.
"""
from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

from hw_sim.emulator import simulate
from hw_sim.energy import counters_from_dict, estimate
from hw_sim.protocol import ProtocolError, encode_arrays, encode_network
from targets.hil import DeviceClient, DeviceDisconnected, DeviceTimeout, HilTarget, LocalDevice
from toolchain.errors import ArtifactError, DeviceError, DRCError


def test_device_matches_in_process_emulator(device_target, small_net, inputs):
    """Every device returns exactly what hw_sim computes in-process, batch by batch, with its counters."""
    res = device_target.run(small_net, inputs)
    ref = simulate(small_net, small_net.input_columns(inputs))
    assert res.target in ("hil", "loihi2")
    for layer, (got, want, t) in enumerate(zip(res.columns, ref.columns, res.times)):
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(t, small_net.columns_to_times(want, layer))
    assert sum(int((c >= 0).sum()) for c in res.columns) > 0
    if isinstance(device_target, HilTarget):
        assert res.info["batches"] == 3 and res.info["batches_reused"] == 0
        for name, want in ref.counters().items():
            np.testing.assert_array_equal(device_target.last_counters[name], want)
        e_dev = estimate(small_net, counters_from_dict(device_target.last_counters))
        e_ref = estimate(small_net, ref.activity())
        np.testing.assert_allclose(e_dev.energy_pj, e_ref.energy_pj)
        again = device_target.run(small_net, inputs)      # a completed run is not cached: it runs again
        assert again.info["batches_reused"] == 0
        for a, b in zip(res.columns, again.columns):
            np.testing.assert_array_equal(a, b)


def test_protocol_commands(hw_sim_device, small_net):
    c = DeviceClient(hw_sim_device.host, hw_sim_device.port, timeout=30)
    try:
        c.request("reset")
        ping = c.request("ping")[0]
        assert ping["device"] == "hw_sim" and ping["network"] is None and ping["pid"] == hw_sim_device.proc.pid
        with pytest.raises(DeviceError, match="no network loaded"):
            c.request("run", {"batch": "b"}, encode_arrays({"input_columns": np.zeros((1, 12), np.int64)}))
        with pytest.raises(ArtifactError):
            c.request("load", {}, b"not a compiled network")
        reply = c.request("load", {}, encode_network(small_net))[0]
        assert reply["resources"]["cores"] == 2 and reply["resources"]["neurons"] == 10
        with pytest.raises(DeviceError, match=r"needs \(N, 12\) integers"):
            c.request("run", {"batch": "b"}, encode_arrays({"input_columns": np.zeros((1, 5), np.int64)}))
        with pytest.raises(DeviceError, match="not on the device"):
            c.request("read", {"batch": "never"})
        with pytest.raises(DeviceError, match="unknown command"):
            c.request("fly")
        c.request("run", {"batch": "b"}, encode_arrays({"input_columns": np.full((2, 12), 3, np.int64)}))
        assert c.request("ping")[0]["batches"] == ["b"]
        c.request("reset")
        assert c.request("ping")[0]["network"] is None and c.request("ping")[0]["batches"] == []
    finally:
        c.close()


def test_network_that_does_not_fit_is_a_drc_error_from_the_device(hw_sim_device, small_net, inputs):
    from compiled_factory import make_compiled

    big = make_compiled((4100, 2), seed=1)   # 4100 inputs + 1 pulse > 4096 input axons per core
    with HilTarget(host=hw_sim_device.host, port=hw_sim_device.port, timeout=30) as t:
        ok = t.run(small_net, inputs[:3])
        with pytest.raises(DRCError, match=r"device: layer 'layer0': fan-in of 4101 axons .* by 5"):
            t.run(big, np.zeros((1, 4100)))
        again = t.run(small_net, inputs[:3])      # the device and client carry on
        assert again.info["batches_reused"] == 0
        for a, b in zip(ok.columns, again.columns):
            np.testing.assert_array_equal(a, b)


def test_device_killed_mid_batch_then_reconnect(small_net, inputs):
    slow = LocalDevice(extra_args=("--test-delay-s", "0.6"))
    port = slow.port
    t = HilTarget(host="127.0.0.1", port=port, batch_size=2, retries=0, timeout=30)
    fresh = None
    try:
        first = t.run(small_net, inputs[:2])

        def kill_after_first_batch() -> None:   # the 2nd batch is then in flight (0.6 s device delay)
            deadline = time.monotonic() + 20
            while slow.log_tail(100000).count("read id=") < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            slow.kill()

        killer = threading.Thread(target=kill_after_first_batch, daemon=True)
        killer.start()
        t0 = time.monotonic()
        with pytest.raises(DeviceDisconnected,
                           match=r"(?s)lost during 'run'.*batch 2 of 2.*1 earlier batches are kept"):
            t.run(small_net, inputs[:4])
        assert time.monotonic() - t0 < 10
        killer.join(20)
        assert not slow.alive
        with pytest.raises(DeviceError, match="cannot connect"):
            t.run(small_net, inputs[:4])
        fresh = LocalDevice(port=port)       # same address: the client reconnects by itself
        res = t.run(small_net, inputs[:4])
        assert res.info["batches_reused"] == 1 and not t._done   # resumed at batch 2; nothing left pending
        ref4 = simulate(small_net, small_net.input_columns(inputs[:4])).columns
        for a, b, ref in zip(first.columns, res.columns, ref4):
            np.testing.assert_array_equal(a, b[:2])
            np.testing.assert_array_equal(b, ref)
        fresh.stop()                          # restarted behind the client's back: its socket is stale
        fresh = LocalDevice(port=port)
        t.retries = 1
        res = t.run(small_net, inputs[4:6])   # one transparent reconnect + reload
        np.testing.assert_array_equal(res.columns[-1],
                                      simulate(small_net, small_net.input_columns(inputs[4:6])).columns[-1])
    finally:
        t.close()
        slow.stop()
        if fresh is not None:
            fresh.stop()
    assert not slow.alive and (fresh is None or not fresh.alive)


def test_owned_device_is_restarted_after_a_crash_and_stopped_on_close(small_net, inputs):
    with HilTarget(retries=1, timeout=30) as t:
        a = t.run(small_net, inputs[:3])
        first = t.device
        pid = t.ping()["pid"]
        first.kill()
        b = t.run(small_net, inputs[3:6])               # reconnects to a freshly started device
        assert t.ping()["pid"] != pid and t.device is not first and t.device.alive
        second = t.device
    assert not first.alive and not second.alive and t.device is None
    for x, y in zip(a.columns + b.columns, simulate(small_net, small_net.input_columns(inputs[:3])).columns
                    + simulate(small_net, small_net.input_columns(inputs[3:6])).columns):
        np.testing.assert_array_equal(x, y)


def test_slow_device_times_out_then_recovers(small_net, inputs):
    dev = LocalDevice(extra_args=("--test-delay-s", "1.0"))
    try:
        t = HilTarget(host=dev.host, port=dev.port, timeout=0.3, batch_size=8)
        t0 = time.monotonic()
        with pytest.raises(DeviceTimeout, match=r"did not answer 'run' within 0.3 s.*raise the hil option timeout"):
            t.run(small_net, inputs[:3])
        assert time.monotonic() - t0 < 3
        t.timeout = 20.0
        res = t.run(small_net, inputs[:3])
        np.testing.assert_array_equal(res.columns[-1],
                                      simulate(small_net, small_net.input_columns(inputs[:3])).columns[-1])
        t.close()
    finally:
        dev.stop()
    assert not dev.alive


def test_garbled_reply_from_device_then_recovers(small_net, inputs):
    dev = LocalDevice(extra_args=("--test-garble-once",))
    try:
        with HilTarget(host=dev.host, port=dev.port, timeout=20) as t:
            with pytest.raises(ProtocolError, match="not valid UTF-8 JSON.*garbled"):
                t.run(small_net, inputs[:2])
            res = t.run(small_net, inputs[:2])
            np.testing.assert_array_equal(res.columns[0],
                                          simulate(small_net, small_net.input_columns(inputs[:2])).columns[0])
    finally:
        dev.stop()


@pytest.mark.parametrize("garbage, words", [
    (b"\xff\xff\xff\xff", "outside 1.."),
    (b"\x00\x00\x00\x0b{\"proto\":1}", "expected 'snnc-hil/1'"),
    (b"\x00\x00\x00\x02{}", "expected 'snnc-hil/1'"),
    (b"\x00\x00\x00\x40{\"trunc", "connection closed by the peer while reading the header"),
])
def test_non_device_peer_gives_protocol_errors(garbage, words, small_net):
    """A peer that is not an snnc device (or corrupts replies) is reported, never trusted."""
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
                conn.recv(65536)
                conn.sendall(garbage)
            except OSError:
                pass

    th = threading.Thread(target=answer, daemon=True)
    th.start()
    try:
        with pytest.raises(ProtocolError, match=words):
            DeviceClient("127.0.0.1", srv.getsockname()[1], timeout=5).request("ping")
    finally:
        th.join(6)
        srv.close()
    assert not th.is_alive()


def test_loopback_only():
    from hw_sim.server import DeviceServer
    from toolchain.cli import main

    for host in ("0.0.0.0", "192.168.1.5", "example.com"):
        with pytest.raises(DeviceError, match="loopback only"):
            DeviceServer(host, 0)
        with pytest.raises(DeviceError, match="loopback only"):
            HilTarget(host=host, port=7341)
    assert main(["device", "serve", "--host", "10.1.2.3", "--port", "0"]) == 2
    srv = DeviceServer("127.0.0.1", 0)
    try:
        assert srv.port > 0
    finally:
        srv.sock.close()


def test_network_hash_ignores_zip_timestamps(small_net):
    import io
    import zipfile

    from hw_sim.protocol import content_digest

    data = encode_network(small_net)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            info.date_time = (2001, 2, 3, 4, 5, 6)
            zout.writestr(info, zin.read(info.filename))
    assert out.getvalue() != data
    assert content_digest(out.getvalue()) == content_digest(data) == content_digest(encode_network(small_net))
    with pytest.raises(ProtocolError, match="not a readable .npz"):
        content_digest(b"PK\x03\x04garbage")


def test_snnc_run_on_the_hil_target_with_cli_options(hw_sim_device, tmp_path, monkeypatch):
    """`snnc run compiled.npz --target hil -o hil.host=... -o hil.port=...` equals hw_sim in-process."""
    from models.datasets import load_dataset
    from models.encoding import latency_encode
    from models.network import AlphaLayer, TemporalNetwork
    from toolchain.cli import main
    from toolchain.compiled_io import save_compiled
    from toolchain.compiler import compile_network

    monkeypatch.delenv("SNNC_DATA", raising=False)         # the bundled subset
    rng = np.random.default_rng(0)
    layers = (AlphaLayer(rng.normal(0.05, 0.1, (8, 784)), np.array([0.1]), rng.normal(0.5, 0.1, (8, 1))),
              AlphaLayer(rng.normal(0.4, 0.5, (784, 8)), np.array([0.9]), rng.normal(0.5, 0.1, (784, 1))))
    cn = compile_network(TemporalNetwork(layers, tau=2.0, theta=1.0, latency=1.0), steps_per_unit=8)
    path = tmp_path / "net.compiled.npz"
    save_compiled(cn, path)
    out = tmp_path / "spikes.npz"
    rc = main(["run", str(path), "--target", "hil", "--dataset", "mnist", "--limit", "5", "--out", str(out),
               "-o", f"hil.host={hw_sim_device.host}", "-o", f"hil.port={hw_sim_device.port}",
               "-o", "hil.batch_size=2"])
    assert rc == 0
    images = load_dataset("mnist", "test", limit=5).images
    ref = simulate(cn, cn.input_columns(latency_encode(np.asarray(images, np.float64))))
    assert all((c >= 0).any() for c in ref.columns)
    with np.load(out) as z:
        for i, want in enumerate(ref.columns):
            np.testing.assert_array_equal(z[f"layer{i}.columns"], want)
        assert '"batches": 3' in str(z["meta"])


@pytest.mark.parametrize("opts, words", [
    (dict(host="127.0.0.1"), "without port"),
    (dict(port="seven"), "port an integer"),
    (dict(port=70000), "port an integer"),
    (dict(timeout=0), "timeout > 0"),
    (dict(batch_size=0), "batch_size an integer >= 1"),
    (dict(retries=-1), "retries an integer >= 0"),
])
def test_bad_hil_options_are_clear_errors(opts, words):
    from toolchain.verifier import make_target

    with pytest.raises(DeviceError, match=words):
        make_target("hil", **opts)
    assert HilTarget(port=7341).host == "127.0.0.1"


def test_device_exits_when_its_parent_is_gone(tmp_path):
    """A device started with --parent-pid stops by itself when that process dies (no orphan left behind)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    script = (
        "import os, subprocess, sys\n"
        "p = subprocess.Popen([sys.executable, '-m', 'toolchain.cli', 'device', 'serve', '--port', '0',\n"
        "                      '--parent-pid', str(os.getpid())], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)\n"
        "line = p.stdout.readline().decode()\n"
        "print(p.pid, line.strip(), flush=True)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         cwd=str(tmp_path), env=dict(os.environ, PYTHONPATH=root))
    pid_text, _, ready = out.stdout.strip().partition(" ")
    assert ready.startswith("snnc device listening on 127.0.0.1:"), out
    pid = int(pid_text)

    def running() -> bool:
        try:
            with open(f"/proc/{pid}/status") as f:
                return "\nState:\tZ" not in f.read()
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 10
    while running() and time.monotonic() < deadline:
        time.sleep(0.1)
    gone = not running()
    if not gone:
        os.kill(pid, 9)
    assert gone, "the orphaned device did not exit within 10 s"


def test_local_device_that_cannot_start_is_a_clear_error():
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        with pytest.raises(DeviceError, match=r"(?s)exited with code 2 before it was ready.*cannot listen on "
                                              r"127.0.0.1:\d+"):
            LocalDevice(port=busy.getsockname()[1])
    finally:
        busy.close()
    with pytest.raises(DeviceError, match=r"(?s)exited with code 2.*invalid choice: 'nope'"):
        LocalDevice(extra_args=("--chip", "nope"))
