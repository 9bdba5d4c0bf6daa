"""Private files written whole, for everything the app keeps in its state folder (users,
sessions, saved events, checkpoints, decisions, sent alerts): a lock per file, atomic
replacement, owner-only modes. A reader sees the old file or the new one, never half."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import threading
from collections.abc import Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: threads of this process only
    fcntl = None

_FALLBACK = threading.Lock()


class LooseFolderError(PermissionError):
    pass


def ensure_private_dir(folder: str) -> None:
    """Creates ``folder`` (and its parents) if missing; the folder itself owner-only (0700).

    An existing folder that others may read is tightened to 0700 when it is ours; a shared one
    (someone else's, or sticky like /tmp) is refused with ``LooseFolderError``, which says what
    to do. The working directory (an empty ``folder``) is left as it is."""
    if not folder:
        return
    if not os.path.isdir(folder):
        os.makedirs(folder, mode=0o700, exist_ok=True)
        os.chmod(folder, 0o700)
        return
    info = os.stat(folder)
    if not info.st_mode & 0o077:
        return
    if info.st_uid != os.geteuid() or info.st_mode & stat.S_ISVTX:
        raise LooseFolderError(
            f"the state folder {folder} is open to other users (mode {stat.S_IMODE(info.st_mode):04o}) and is not "
            f"this app's own: choose a private folder (INSIGHTS_STATE_DIR), or run chmod 700 {folder}"
        )
    os.chmod(folder, 0o700)


@contextlib.contextmanager
def locked(path: str) -> Iterator[None]:
    """Holds an exclusive lock on ``path`` (through ``path.lock``) against other threads and
    processes, for a read-modify-write of the file."""
    ensure_private_dir(os.path.dirname(path))
    if fcntl is None:  # pragma: no cover
        with _FALLBACK:
            yield
        return
    # flock locks belong to the open file, so two threads opening it exclude each other too.
    descriptor = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock


@contextlib.contextmanager
def replacing(path: str | os.PathLike, mode: str = "w") -> Iterator:
    """A private (0600) temporary file beside ``path`` to write; on success it is flushed,
    synced and put in place of ``path`` at once; on failure it is removed."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    ensure_private_dir(folder)
    descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _sync_dir(folder)


def write_private(path: str | os.PathLike, data: str | bytes) -> None:
    """Replaces ``path`` with ``data`` at once, mode 0600."""
    with replacing(path, "wb" if isinstance(data, bytes) else "w") as file:
        file.write(data)


def _sync_dir(folder: str) -> None:
    """Makes the rename itself durable, where the platform allows syncing a folder."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
