"""Where an Optuna study lives: a SQLite file beside its sweep by default, any database SQLAlchemy reaches, or
Optuna's journal file (one appended file, which tolerates NFS). The sweep, each trial's job (in whatever process
or machine runs it) and `dlx study` open the same storage from the same string.

optuna is imported inside the functions: the CLI imports this module before it knows whether it searches."""

import os
import warnings
from pathlib import Path
from typing import Any

from dlx.errors import DlxError, require

STUDY_FILE = "study.db"  # the default storage, in the sweep folder


def storage_url(storage: str | None, sweep_dir: str | os.PathLike) -> str:
    """The storage a study's sweep, its jobs and `dlx study` all open: the configured one, or SQLite in the
    sweep folder. Relative file names are made absolute, so that jobs running elsewhere find the same file."""
    if not storage:
        return f"sqlite:///{Path(sweep_dir).resolve() / STUDY_FILE}"
    if storage.startswith("sqlite:///") and not storage.startswith("sqlite:////"):
        return f"sqlite:///{Path(storage.removeprefix('sqlite:///')).resolve()}"
    if is_journal(storage):
        return str(Path(storage).expanduser().resolve())
    return storage


def is_journal(storage: str) -> bool:
    """A plain file name (no URL scheme): Optuna's journal file storage."""
    return "://" not in storage


def describe(url: str) -> str:
    """The storage for people: the file it is, or the database URL without its password."""
    if url.startswith("sqlite:///"):
        return url.removeprefix("sqlite:///")
    if is_journal(url):
        return f"{url} (journal file)"
    scheme, _, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    return f"{scheme}://{credentials.partition(':')[0]}:***@{host}" if at and ":" in credentials else url


def check_storage_creatable(url: str) -> None:
    """A SQLite or journal file that does not exist yet must be creatable where it is named (its folder made
    as needed): checked before anything else is written, so that a bad name changes nothing."""
    path = sqlite_path(url) if url.startswith("sqlite:") else Path(url) if is_journal(url) else None
    if path is None or path.exists():
        return
    existing = path.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        problem = "is a file, not a folder" if not existing.is_dir() else "is not writable"
        raise DlxError(f"Cannot create the study's storage {path}: {existing} {problem}. Pass another "
                       "hydra.sweeper.storage (a file in a folder you can write, or sqlite:///PATH), or leave it "
                       "null to keep the study in its sweep folder.")


def sqlite_path(url: str) -> Path | None:
    file = url.removeprefix("sqlite:///")
    return None if not url.startswith("sqlite:///") or file in ("", ":memory:") else Path(file)


def open_storage(url: str) -> Any:
    """The Optuna storage at `url`, opened (created when it is a new SQLite or journal file). A storage that
    cannot be opened (no such server, a driver missing, a file that is not a study) is a DlxError."""
    optuna = require("optuna", "sweep", "An Optuna study")
    check_storage_creatable(url)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if is_journal(url):
                from optuna.storages.journal import JournalFileBackend

                Path(url).parent.mkdir(parents=True, exist_ok=True)
                return optuna.storages.JournalStorage(JournalFileBackend(url))
            path = sqlite_path(url)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            # Parallel trials write to one SQLite file from several processes: wait for the lock, not fail.
            engine = {"connect_args": {"timeout": 60}} if path is not None else {}
            return optuna.storages.RDBStorage(url, engine_kwargs=engine)
    except Exception as err:  # sqlalchemy's OperationalError, ArgumentError, ModuleNotFoundError of a driver...
        reason = str(err).strip().splitlines()[0].rstrip(".") if str(err).strip() else type(err).__name__
        raise DlxError(f"Cannot open the study's storage {describe(url)}: {reason}. hydra.sweeper.storage takes a "
                       "SQLAlchemy URL (sqlite:///PATH, postgresql://USER@HOST/DB with its driver installed) or "
                       "the name of a journal file; null keeps the study in study.db in its sweep folder.") from err
