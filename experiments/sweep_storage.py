"""Optuna storage for sweeps: a journal file (default, one machine or a shared file system) or a database URL
(``postgresql://...`` for workers on many machines, ``sqlite:///...``), both with trial heartbeats.

Optuna 5's ``RDBStorage`` has heartbeats; its ``JournalStorage`` has none, so :class:`HeartbeatJournalStorage`
adds them with Optuna's own heartbeat interface (``BaseHeartbeat``): a running trial's heartbeat thread writes the
wall-clock time (seconds since the epoch) into the trial's system attribute ``snnc_heartbeat`` every interval, and
``optuna.storages.fail_stale_trials`` fails a running trial whose last heartbeat is older than the grace period
and hands it to the retry callback. Those times come from the workers' clocks, so workers sharing a journal file
on several machines need synchronised clocks (NTP); a database uses its server's clock.
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path

from toolchain.errors import SnncError

HEARTBEAT_ATTR = "snnc_heartbeat"
JOURNAL_NAME = "sweep.journal"


class StorageError(SnncError):
    """The sweep's storage cannot be opened (bad URL, server down, unreadable journal file)."""


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures are reported by the worker itself
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")


def _journal_class():
    from optuna.storages import JournalStorage
    from optuna.storages._heartbeat import BaseHeartbeat
    from optuna.trial import TrialState

    class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
        """Optuna's JournalStorage with heartbeats (see the module docstring); intervals in seconds."""

        def __init__(self, backend, heartbeat_interval: int | None, grace_period: int | None,
                     stale_callback: Callable | None) -> None:
            super().__init__(backend)
            self.heartbeat_interval = heartbeat_interval
            self.grace_period = grace_period if grace_period is not None else 2 * (heartbeat_interval or 0)
            self.stale_callback = stale_callback

        def record_heartbeat(self, trial_id: int) -> None:
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            now = time.time()
            stale = []
            for t in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
                beat = t.system_attrs.get(HEARTBEAT_ATTR)
                if beat is None:
                    continue
                # a retry carries the dead trial's system attributes, its old heartbeat among them (Optuna's
                # retry callback copies them): until the new worker's first beat, the trial's start counts
                started = t.datetime_start.timestamp() if t.datetime_start is not None else 0.0
                if now - max(float(beat), started) > self.grace_period:
                    stale.append(t._trial_id)
            return stale

        def get_heartbeat_interval(self) -> int | None:
            return self.heartbeat_interval

        def get_heartbeat_stale_trial_callback(self):
            return self.stale_callback

    return HeartbeatJournalStorage


def is_url(storage: str) -> bool:
    """A database URL (``postgresql://``, ``sqlite:///``...) rather than a journal file path."""
    return "://" in str(storage)


def default_storage(out: str | Path) -> str:
    """The journal file of a sweep whose folder is ``out``."""
    return str(Path(out) / JOURNAL_NAME)


def open_storage(storage: str, *, heartbeat_interval: int | None = None, grace_period: int | None = None,
                 max_retry: int | None = None):
    """An Optuna storage for ``storage`` (journal file path or database URL) with heartbeats every
    ``heartbeat_interval`` seconds (None: off), stale after ``grace_period`` seconds, and stale trials retried up
    to ``max_retry`` times (``RetryHeartbeatStaleTrialCallback``)."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    _quiet_optuna()
    callback = RetryHeartbeatStaleTrialCallback(max_retry=max_retry) if heartbeat_interval else None
    if is_url(storage):
        try:
            return optuna.storages.RDBStorage(database_url(storage), heartbeat_interval=heartbeat_interval,
                                              grace_period=grace_period, heartbeat_stale_trial_callback=callback,
                                              engine_kwargs={"pool_pre_ping": True})
        except Exception as exc:  # sqlalchemy / driver errors: bad URL, server down, missing driver
            raise StorageError(f"cannot open the sweep storage {redact(storage)} ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else exc}); fix: check the URL, that the "
                               f"database server runs and accepts this user") from None
    from optuna.storages.journal import JournalFileBackend

    path = Path(storage)
    if path.is_dir():
        raise StorageError(f"storage {path} is a folder; pass the journal file inside it (e.g. "
                           f"{path / JOURNAL_NAME}) or a database URL")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = JournalFileBackend(str(path))
        return _journal_class()(backend, heartbeat_interval, grace_period, callback)
    except OSError as exc:
        raise StorageError(f"cannot open the sweep journal {path} ({exc.strerror or exc}); fix: choose a writable "
                           f"--storage path") from None
    except Exception as exc:  # a corrupt journal
        raise StorageError(f"the sweep journal {path} cannot be read ({type(exc).__name__}: {exc}); fix: point "
                           f"--storage at a sweep journal or a new file") from None


def database_url(url: str) -> str:
    """``url`` with a driver SQLAlchemy can load: a bare ``postgresql://`` (SQLAlchemy 2.1 reads it as psycopg 3)
    becomes ``postgresql+psycopg2://`` when psycopg 3 is not installed (snnc depends on psycopg2-binary)."""
    scheme, sep, rest = url.partition("://")
    if scheme in ("postgresql", "postgres"):
        import importlib.util

        if importlib.util.find_spec("psycopg") is None:
            return f"postgresql+psycopg2://{rest}"
    return url


def redact(url: str) -> str:
    """The storage for messages: a URL without its password (a path as it is)."""
    if not is_url(url):
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]
