"""Wire format of the hardware-in-the-loop device (docs/hil-protocol.md), shared by server and client.

One message = ``u32 big-endian header length | UTF-8 JSON header | payload bytes``; the header's
``payload_bytes`` gives the payload length (0 = none). Payloads are ``.npz`` archives (``numpy.savez``, no
pickles: ``allow_pickle=False`` on read). Every header carries ``proto`` (= :data:`PROTO`) and the request
``id``; replies echo the ``id`` and carry ``ok`` (and ``error`` + ``message`` when not ok).

Any violation (bad length, bad JSON, wrong ``proto``, unreadable payload, connection closed mid-message) raises
:class:`ProtocolError`, a :class:`toolchain.errors.DeviceError`.
"""
from __future__ import annotations

import io
import ipaddress
import json
import socket
import struct
import tempfile
from pathlib import Path

import numpy as np

from toolchain.errors import DeviceError

PROTO = "snnc-hil/1"
COMMANDS = ("ping", "load", "run", "read", "reset")
MAX_HEADER_BYTES = 1 << 20          # 1 MiB
MAX_PAYLOAD_BYTES = 1 << 30         # 1 GiB
_LEN = struct.Struct(">I")


class ProtocolError(DeviceError):
    """The peer sent something that is not a valid snnc-hil message (garbled, truncated, wrong version).

    ``header`` is the message's header when it was readable (so that a server can echo the request ``id`` in its
    error reply), else None."""

    def __init__(self, message: str, header: dict | None = None):
        super().__init__(message)
        self.header = header


def check_loopback(host: str) -> str:
    """Return ``host`` if it names a loopback address, else raise DeviceError (the device is local only)."""
    if host == "localhost":
        return host
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise DeviceError(f"device address {host!r} is not an IP address or 'localhost'; the device serves "
                          f"loopback only: use 127.0.0.1, ::1 or localhost") from None
    if not ip.is_loopback:
        raise DeviceError(f"refusing non-loopback address {host!r}: the device serves loopback only "
                          f"(no authentication); use 127.0.0.1, ::1 or localhost")
    return host


def encode_arrays(arrays: dict[str, np.ndarray]) -> bytes:
    """Named arrays -> .npz bytes (uncompressed)."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def decode_arrays(data: bytes) -> dict[str, np.ndarray]:
    """.npz bytes -> named arrays; ProtocolError when unreadable."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:  # zipfile/ValueError/OSError: all mean a garbled payload
        raise ProtocolError(f"payload is not a readable .npz archive ({exc}); the peer is not speaking "
                            f"{PROTO}, or the data was corrupted: restart the device and retry") from None


def content_digest(data: bytes) -> str:
    """sha256 of an .npz payload's arrays (names, dtypes, shapes, values), independent of zip timestamps."""
    import hashlib

    h = hashlib.sha256()
    for name, a in sorted(decode_arrays(data).items()):
        a = np.ascontiguousarray(a)
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def encode_network(net) -> bytes:
    """CompiledNetwork -> bytes in the compiled.npz format of toolchain/compiled_io.py."""
    from toolchain.compiled_io import save_compiled

    with tempfile.TemporaryDirectory(prefix="snnc-hil-") as d:
        path = Path(d) / "compiled.npz"
        save_compiled(net, path)
        return path.read_bytes()


def decode_network(data: bytes):
    """Bytes in the compiled.npz format -> CompiledNetwork (ArtifactError when malformed)."""
    from toolchain.compiled_io import load_compiled

    with tempfile.TemporaryDirectory(prefix="snnc-hil-") as d:
        path = Path(d) / "compiled.npz"
        path.write_bytes(data)
        return load_compiled(path)


def send_message(sock: socket.socket, header: dict, payload: bytes = b"") -> None:
    """Send one message (header gets ``proto`` and ``payload_bytes``)."""
    header = dict(header, proto=PROTO, payload_bytes=len(payload))
    try:
        raw = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise DeviceError(f"message header {_short(header)} cannot be sent as JSON ({exc}); use plain str, int, "
                          f"float, bool, list and dict values (no numpy scalars, NaN or inf)") from None
    if len(raw) > MAX_HEADER_BYTES:
        raise ProtocolError(f"header of {len(raw)} bytes exceeds {MAX_HEADER_BYTES}; send data as payload")
    sock.sendall(_LEN.pack(len(raw)) + raw + payload)


def _short(value, limit: int = 80) -> str:
    """repr of a (possibly huge, peer-supplied) value, cut to ``limit`` characters for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _recv_exact(sock: socket.socket, n: int, what: str) -> bytes:
    chunks = []
    left = n
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise ProtocolError(f"connection closed by the peer while reading the {what} ({n - left} of {n} "
                                f"bytes); the device stopped or crashed: restart it and retry")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def recv_message(sock: socket.socket) -> tuple[dict, bytes]:
    """Receive one message -> (header, payload). Raises ProtocolError on anything malformed.

    A clean close before the first byte raises ``ConnectionAbortedError`` (the server uses it to end a session).
    Socket timeouts propagate as ``TimeoutError``.
    """
    first = sock.recv(_LEN.size)
    if not first:
        raise ConnectionAbortedError("peer closed the connection")
    if len(first) < _LEN.size:
        first += _recv_exact(sock, _LEN.size - len(first), "length prefix")
    (n,) = _LEN.unpack(first)
    if n == 0 or n > MAX_HEADER_BYTES:
        raise ProtocolError(f"header length {n} is outside 1..{MAX_HEADER_BYTES} bytes: the reply is garbled "
                            f"or the peer is not an snnc device; check host/port and restart the device")
    raw = _recv_exact(sock, n, "header")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"header is not valid UTF-8 JSON ({exc}): garbled message; restart the device "
                            f"and retry") from None
    if not isinstance(header, dict) or header.get("proto") != PROTO:
        got = header.get("proto") if isinstance(header, dict) else type(header).__name__
        raise ProtocolError(f"header protocol is {_short(got)}, expected {PROTO!r}; client and device versions "
                            f"differ or the message is garbled: use the same snnc version on both sides",
                            header if isinstance(header, dict) else None)
    size = header.get("payload_bytes", 0)
    if isinstance(size, bool) or not isinstance(size, int) or size < 0 or size > MAX_PAYLOAD_BYTES:
        raise ProtocolError(f"payload_bytes {_short(size)} is not an integer in 0..{MAX_PAYLOAD_BYTES}: garbled "
                            f"header; restart the device and retry", header)
    payload = _recv_exact(sock, size, "payload") if size else b""
    return header, payload
