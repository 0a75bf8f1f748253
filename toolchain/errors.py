"""Error types. Every message names the problem and the fix; the CLI prints it and exits 2."""
from __future__ import annotations


class SnncError(Exception):
    """Base class: a user-facing error whose message says what is wrong and how to fix it."""


class DataError(SnncError):
    """A dataset is missing, corrupt or of the wrong shape."""


class ArtifactError(SnncError):
    """A model artifact (ONNX) or compiled-network file is malformed."""


class CompileError(SnncError):
    """The network cannot be compiled as asked (range overflow, bad grid, ...)."""


class DRCError(CompileError):
    """A hardware design rule is violated (the network does not fit the chip)."""


class TargetError(SnncError):
    """A backend failed or timed out."""


class DeviceError(TargetError):
    """The hardware-in-the-loop device failed (disconnected, slow, garbled reply)."""


class OutputError(SnncError):
    """An output path cannot be written (a folder where a file is expected, a read-only folder, ...)."""
