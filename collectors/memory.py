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
M_ARENA_MAX = -8  # glibc's malloc.h
ARENAS = 2


def _glibc():
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _libc.malloc_trim  # noqa: B018 - glibc only
            _libc.mallopt  # noqa: B018
        except (OSError, AttributeError):
            _libc = False
    return _libc


def trim() -> bool:
    """Collects garbage and returns the free heap to the system; whether it could."""
    gc.collect()
    libc = _glibc()
    if not libc:
        return False
    libc.malloc_trim(0)
    return True


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Caps glibc's heaps at ``arenas``; whether it could. Streamlit runs every script and
    fragment run on a thread of its own, and glibc gives threads their own heaps (up to eight per
    core), each keeping its freed memory. The same as MALLOC_ARENA_MAX, set from within; measured
    with ``bench.soak`` (the README's soak section)."""
    libc = _glibc()
    return bool(libc) and libc.mallopt(M_ARENA_MAX, arenas) == 1
