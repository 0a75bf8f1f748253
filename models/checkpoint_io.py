"""Read training checkpoints safely: torch's ``weights_only`` loader (tensors and plain values, never code), one
format/version check, and messages that name the file and the fix. Used by every trainer."""
from __future__ import annotations

import pickle
from pathlib import Path

from toolchain.errors import SnncError


def load_safe_checkpoint(path: str | Path, *, kind: str, fmt: str, version: int, fix: str,
                         missing: str, version_key: str = "version", error: type[SnncError] = SnncError,
                         map_location: str = "cpu") -> dict:
    """The checkpoint dict at ``path`` after its ``format`` == ``fmt`` and ``version_key`` == ``version`` checks.

    kind:    what the file should be, for messages ("rate", "temporal", "ANN")
    fix:     the remedy for an unusable file (e.g. "start over with --force")
    missing: the message for a file that does not exist
    A file that holds anything but tensors and plain values (a crafted pickle that would run code) is refused."""
    import torch

    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise error(missing) from None
    except pickle.UnpicklingError:  # torch's own text suggests loading it unsafely: not repeated here
        raise error(f"refused to load checkpoint {path}: it holds objects other than tensors and plain values "
                    f"(loading it could run code); {fix}") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user problem
        raise error(f"checkpoint {path} is unreadable ({exc}); {fix}") from None
    if not isinstance(state, dict) or state.get("format") != fmt:
        raise error(f"{path} is not an snnc {kind} checkpoint; {fix}")
    if state.get(version_key) != version:
        raise error(f"checkpoint {path} has version {state.get(version_key)}, this snnc reads {version}; {fix}")
    return state
