"""Running counts of one pump, updated batch by batch.

Adding a batch costs time in proportion to the batch's groups; reading costs time in
proportion to the windows asked for. A late event simply adds to its own window, which is
never emitted twice: readers always see the current count.
"""

from __future__ import annotations

import numpy as np

from metrics.pumps import Pump, WindowCounts, counts_frame
from metrics.windows import window_start


class WindowedCounts:
    def __init__(self, pump: Pump):
        self.pump = pump
        self.windows: dict[int, dict[tuple, int]] = {}
        self.first: int | None = None
        self.last: int | None = None

    def add(self, counts: WindowCounts) -> None:
        windows = self.windows
        for w, cat, sub, n in zip(
            counts.window.tolist(), counts.category.tolist(), counts.subcategory.tolist(), counts.count.tolist()
        ):
            bucket = windows.get(w)
            if bucket is None:
                bucket = windows[w] = {}
            key = (cat, sub)
            bucket[key] = bucket.get(key, 0) + n
        if len(counts):
            low, high = int(counts.window.min()), int(counts.window.max())
            self.first = low if self.first is None else min(self.first, low)
            self.last = high if self.last is None else max(self.last, high)

    def replace_range(self, start: int, end: int, counts: WindowCounts) -> None:
        """Windows starting in [start, end) become exactly ``counts`` (a re-query's answer)."""
        for w in [w for w in self.windows if start <= w < end]:
            del self.windows[w]
        self.first = min(self.windows, default=None)
        self.last = max(self.windows, default=None)
        self.add(counts)

    def total(self, window: int) -> int:
        bucket = self.windows.get(window)
        return sum(bucket.values()) if bucket else 0

    def evict_before(self, seconds: int) -> None:
        """Drop every window that starts before ``seconds``: one that straddles it has lost
        some of its events from the buffer, and a partial count would be wrong."""
        for w in [w for w in self.windows if w < seconds]:
            del self.windows[w]
        self.first = min(self.windows, default=None)
        if self.first is None:
            self.last = None

    def counts(self, start: int | None = None, end: int | None = None) -> WindowCounts:
        """The counts of windows starting in [start, end) seconds (None: unbounded)."""
        step = self.pump.step
        if self.first is None:
            selected = []
        elif start is None and end is None:
            selected = sorted(self.windows)
        else:
            low = self.first if start is None else max(self.first, window_start(start, step))
            high = self.last + step if end is None else min(self.last + step, end)
            selected = [w for w in range(low, high, step) if w in self.windows]
        rows = [(w, c, s, n) for w in selected for (c, s), n in self.windows[w].items()]
        window, cat, sub, count = zip(*rows) if rows else ((), (), (), ())
        return WindowCounts(
            np.array(window, dtype=np.int64),
            np.array(cat, dtype=object),
            np.array(sub, dtype=object),
            np.array(count, dtype=np.int64),
        )

    def frame(self, start: int | None = None, end: int | None = None, dense_span: tuple[int, int] | None = None):
        """Rows of ``FRAME_COLUMNS`` for windows starting in [start, end) seconds; a dense pump
        gets a row for every window of ``dense_span`` (first, last), zero where quiet."""
        if self.pump.dense:
            if dense_span is None:
                return counts_frame(self.pump, WindowCounts.empty())
            return counts_frame(self.pump, self.counts(*dense_span_bounds(dense_span, self.pump.step)), dense_span)
        return counts_frame(self.pump, self.counts(start, end))


def dense_span_bounds(span: tuple[int, int], step: int) -> tuple[int, int]:
    return window_start(span[0], step), span[1] + 1
