"""``snnc device serve``: run hw_sim as a hardware-in-the-loop device on a loopback port."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    dev = subparsers.add_parser("device", help="hardware-in-the-loop device (hw_sim over loopback TCP)",
                                description="Hardware-in-the-loop device commands (protocol: docs/hil-protocol.md).")
    dsub = dev.add_subparsers(dest="device_command", required=True, metavar="DEVICE_COMMAND")
    serve = dsub.add_parser(
        "serve", help="serve hw_sim as a device on a loopback port",
        description="Serve hw_sim as a device (loopback only). Prints 'snnc device listening on HOST:PORT' "
                    "on stdout once ready; targets/hil.py (--targets hil) connects to it.",
        epilog="example:\n  snnc device serve --port 7341\n"
               "  snnc run net.compiled.npz --target hil -o hil.port=7341 --dataset mnist --limit 100\n"
               "protocol: docs/hil-protocol.md",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--host", default="127.0.0.1",
                       help="loopback address to bind (127.0.0.1, ::1 or localhost; others are refused)")
    serve.add_argument("--port", type=int, default=7341, help="TCP port (0 = any free port; default 7341)")
    serve.add_argument("--chip", default="loihi2", choices=("loihi2", "loihi1"),
                       help="chip whose design rules a loaded network must pass (default loihi2)")
    serve.add_argument("--max-batches", type=int, default=64,
                       help="finished batches kept for reading before the oldest is dropped (default 64)")
    serve.add_argument("--idle-timeout", type=float, default=30.0, metavar="SECONDS",
                       help="drop a connection that sends nothing for this long, between requests or in the "
                            "middle of one (default 30)")
    serve.add_argument("--max-clients", type=int, default=8,
                       help="connections served at the same time, each with its own loaded network; a client "
                            "beyond that gets a 'device is busy' error (default 8)")
    serve.add_argument("--parent-pid", type=int, default=None,
                       help="exit when this process is no longer the parent (used by the hil target)")
    serve.add_argument("--test-delay-s", type=float, default=0.0, help=argparse.SUPPRESS)  # fault tests only
    serve.add_argument("--test-garble-once", action="store_true", help=argparse.SUPPRESS)  # fault tests only
    serve.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    import os
    import signal
    import sys

    from hw_sim.resources import get_chip
    from hw_sim.server import DeviceServer, warm_up
    from toolchain.errors import DeviceError

    if not 0 <= args.port <= 65535:
        raise DeviceError(f"--port {args.port} is outside 0..65535; pick a free TCP port (or 0 for any)")
    if args.max_batches < 1:
        raise DeviceError(f"--max-batches must be >= 1, got {args.max_batches}")
    if not 0 < args.idle_timeout < 1e6:
        raise DeviceError(f"--idle-timeout must be > 0 seconds (and finite), got {args.idle_timeout}; e.g. "
                          f"--idle-timeout 30")
    if args.max_clients < 1:
        raise DeviceError(f"--max-clients must be >= 1, got {args.max_clients}; e.g. --max-clients 8")
    server = DeviceServer(args.host, args.port, chip=get_chip(args.chip), test_delay_s=args.test_delay_s,
                          max_batches=args.max_batches, parent_pid=args.parent_pid,
                          test_garble_once=args.test_garble_once, idle_timeout_s=args.idle_timeout,
                          max_clients=args.max_clients)
    def _stop(*_) -> None:  # SIGTERM: close the port and exit at once (nothing is buffered: logs are flushed)
        server.sock.close()
        os._exit(0)

    signal.signal(signal.SIGTERM, _stop)
    print(f"[snnc device] hw_sim kernels ready in {warm_up():.1f} s", file=sys.stderr, flush=True)
    print(f"snnc device listening on {server.host}:{server.port}", flush=True)
    server.serve_forever()
    return 0
