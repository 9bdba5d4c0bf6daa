"""The one window function: tumbling windows aligned to the Unix epoch.

A window is named by its start in whole seconds since the epoch; an event belongs to the
window that holds its own eventTime, however late it arrives.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

NS_PER_SECOND = 1_000_000_000


def window_start(seconds, step: int):
    """Start of the window of ``step`` seconds holding each time (int or int array)."""
    return seconds - seconds % step


def window_starts_ns(times_ns: np.ndarray, step: int) -> np.ndarray:
    return window_start(times_ns // NS_PER_SECOND, step)


def window_range(first: int, last: int, step: int) -> np.ndarray:
    """Every window start from ``first`` to ``last`` inclusive."""
    return np.arange(window_start(first, step), last + 1, step, dtype=np.int64)


def to_timestamps(seconds) -> pd.DatetimeIndex:
    return pd.to_datetime(np.asarray(seconds, dtype=np.int64), unit="s", utc=True)


def iso(seconds: int) -> str:
    """A window start as UTC text, e.g. ``2023-07-10T11:45:10Z``."""
    return pd.Timestamp(int(seconds), unit="s", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
