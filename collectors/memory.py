"""Giving freed heap back to the system after a large read.

Parsing a backlog makes and drops millions of small objects; glibc keeps the freed arenas, so
resident memory stayed gigabytes above what the app holds. ``malloc_trim`` returns them.
Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc

_libc = None


def trim() -> bool:
    """Collects garbage and returns the free heap to the system; whether it could."""
    global _libc
    gc.collect()
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _libc.malloc_trim  # noqa: B018 - glibc only
        except (OSError, AttributeError):
            _libc = False
    if not _libc:
        return False
    _libc.malloc_trim(0)
    return True
