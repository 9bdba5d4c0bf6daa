"""Private files written whole: a lock per file, atomic replacement, owner-only modes."""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: threads of this process only
    fcntl = None

_FALLBACK = threading.Lock()


def ensure_private_dir(folder: str) -> None:
    """Creates ``folder`` (and its parents) if missing; the folder itself owner-only (0700)."""
    folder = folder or "."
    if not os.path.isdir(folder):
        os.makedirs(folder, mode=0o700, exist_ok=True)
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


def write_private(path: str, text: str) -> None:
    """Replaces ``path`` with ``text`` at once (a temporary file, then ``os.replace``), mode 0600:
    a reader sees the old file or the new one, never half of one."""
    folder = os.path.dirname(path) or "."
    ensure_private_dir(folder)
    descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
