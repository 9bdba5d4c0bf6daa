"""Running counts of one pump, updated batch by batch.

The counts are columns: one sorted int64 key per (window, group) row, packing the window
number and a code of the (category, subcategory) group, with the counts beside it. A batch's
counts wait in a small list and are merged (one ``searchsorted`` and one insert over the
columns) when the counts are next read or the list grows; reading a range is two binary
searches and a slice, and the rows come out sorted as ``counts_frame`` wants them. The
per-window dicts this replaced were looped over in Python on every page refresh. A late event
simply adds to its own window, which is never emitted twice: readers always see the current
count.
"""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd

from metrics.pumps import Pump, WindowCounts, counts_frame
from metrics.windows import window_start

GROUP_BITS = 24  # up to 16M distinct (category, subcategory) groups per pump
GROUP_MASK = (1 << GROUP_BITS) - 1
PENDING_ROWS = 50_000  # merged at the latest when this many rows wait


class WindowedCounts:
    def __init__(self, pump: Pump):
        self.pump = pump
        self.first: int | None = None
        self.last: int | None = None
        self._groups: dict[tuple, int] = {}  # (category, subcategory) -> group code
        self._labels: list[tuple] = []  # group code -> (category, subcategory)
        self._rank: np.ndarray | None = None  # group code -> place in label order, when current
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None  # group code -> category, subcategory
        self._keys = np.empty(0, dtype=np.int64)  # sorted, unique: window number << GROUP_BITS | group
        self._counts = np.empty(0, dtype=np.int64)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        # Each window's total as well: the anomaly scorer asks for one window at a time,
        # twenty times per window scored (its shingle), so that read must cost no search.
        self._totals: dict[int, int] = {}
        self._pending_rows = 0
        self._lock = threading.Lock()  # readers merge too; the engine's lock is not always held

    # -- writing -------------------------------------------------------------------------------
    def add(self, counts: WindowCounts) -> None:
        if not len(counts):
            return
        codes = self._group_codes(counts.category, counts.subcategory)
        labels, totals = self._labels, self._totals
        windows, inverse = np.unique(counts.window, return_inverse=True)
        sums = np.bincount(inverse, weights=counts.count, minlength=len(windows)).astype(np.int64)
        for window, n in zip(windows.tolist(), sums.tolist()):
            totals[window] = totals.get(window, 0) + n
        if len(labels) > GROUP_MASK:
            raise OverflowError(f"{self.pump.name}: more than {GROUP_MASK} groups")
        keys = (counts.window // self.pump.step) << GROUP_BITS | codes
        with self._lock:
            self._pending.append((keys, counts.count.astype(np.int64)))
            self._pending_rows += len(keys)
            if self._pending_rows >= PENDING_ROWS:
                self._merge()
        low, high = int(counts.window.min()), int(counts.window.max())
        self.first = low if self.first is None else min(self.first, low)
        self.last = high if self.last is None else max(self.last, high)

    def _group_codes(self, categories: np.ndarray, subcategories: np.ndarray) -> np.ndarray:
        """The group code of each (category, subcategory) row, new groups numbered as they come:
        a loop over the batch's distinct pairs, not over its rows."""
        cat_codes, cat_values = pd.factorize(categories)  # None is -1
        sub_codes, sub_values = pd.factorize(subcategories)
        pairs, inverse = np.unique((cat_codes + 1) * (len(sub_values) + 1) + (sub_codes + 1), return_inverse=True)
        groups, labels = self._groups, self._labels
        mapped = np.empty(len(pairs), dtype=np.int64)
        width = len(sub_values) + 1
        for i, pair in enumerate(pairs.tolist()):
            c, u = divmod(pair, width)
            key = (cat_values[c - 1] if c else None, sub_values[u - 1] if u else None)
            code = groups.get(key)
            if code is None:
                code = groups[key] = len(labels)
                labels.append(key)
                self._rank = None
            mapped[i] = code
        return mapped[inverse.reshape(-1)]

    def _merge(self) -> None:
        """Folds the waiting rows into the sorted columns (the lock held)."""
        if not self._pending:
            return
        keys = np.concatenate([k for k, _ in self._pending])
        counts = np.concatenate([c for _, c in self._pending])
        self._pending, self._pending_rows = [], 0
        keys, inverse = np.unique(keys, return_inverse=True)
        counts = np.bincount(inverse, weights=counts, minlength=len(keys)).astype(np.int64)
        places = np.searchsorted(self._keys, keys)
        known = places < len(self._keys)
        known[known] = self._keys[places[known]] == keys[known]
        if known.any():
            self._counts = self._counts.copy()  # readers may hold the old array
            np.add.at(self._counts, places[known], counts[known])
        if not known.all():
            fresh = ~known
            self._keys = np.insert(self._keys, places[fresh], keys[fresh])
            self._counts = np.insert(self._counts, places[fresh], counts[fresh])

    def replace_range(self, start: int, end: int, counts: WindowCounts) -> None:
        """Windows starting in [start, end) become exactly ``counts`` (a re-query's answer)."""
        with self._lock:
            self._merge()
            low, high = self._key_of(start), self._key_of(end)
            keep = (self._keys < low) | (self._keys >= high)
            self._keys, self._counts = self._keys[keep], self._counts[keep]
            for window in [w for w in self._totals if start <= w < end]:
                del self._totals[window]
            if len(self._keys):
                self.first = int(self._keys[0] >> GROUP_BITS) * self.pump.step
                self.last = int(self._keys[-1] >> GROUP_BITS) * self.pump.step
            else:
                self.first = self.last = None
        self.add(counts)

    def evict_before(self, seconds: int) -> None:
        """Drop every window that starts before ``seconds``: one that straddles it has lost
        some of its events from the buffer, and a partial count would be wrong."""
        with self._lock:
            self._merge()
            for window in [w for w in self._totals if w < seconds]:
                del self._totals[window]
            cut = np.searchsorted(self._keys, self._key_of(seconds))
            self._keys, self._counts = self._keys[cut:], self._counts[cut:]
            if len(self._keys):
                self.first = int(self._keys[0] >> GROUP_BITS) * self.pump.step
            else:
                self.first = self.last = None

    # -- reading -------------------------------------------------------------------------------
    def _key_of(self, seconds: int) -> int:
        """The smallest key of the first window starting at or after ``seconds``."""
        return (-(-int(seconds) // self.pump.step)) << GROUP_BITS

    def _columns(self, start: int | None, end: int | None) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            self._merge()
            keys, counts = self._keys, self._counts
        low = 0 if start is None else np.searchsorted(keys, self._key_of(window_start(start, self.pump.step)))
        high = len(keys) if end is None else np.searchsorted(keys, self._key_of(end))
        return keys[low:high], counts[low:high]

    def total(self, window: int) -> int:
        return self._totals.get(window, 0)

    def window_totals(self) -> tuple[np.ndarray, np.ndarray]:
        """Every window held (its start) and its total count over all groups, in window order.
        Summed from the sorted columns rather than read from the per-window dict: over months
        that is a million windows, and a page asks several times per run."""
        keys, counts = self._columns(None, None)
        if not len(keys):
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        numbers = keys >> GROUP_BITS
        starts = np.flatnonzero(np.r_[True, numbers[1:] != numbers[:-1]])
        return numbers[starts] * self.pump.step, np.add.reduceat(counts, starts)

    def _ranks(self) -> np.ndarray:
        """Each group's place when groups are sorted by their labels as ``counts_frame`` sorts
        them (a missing label as "")."""
        rank = self._rank
        if rank is None or len(rank) < len(self._labels):
            labels = list(self._labels)
            order = sorted(range(len(labels)), key=lambda i: (labels[i][0] or "", labels[i][1] or ""))
            rank = np.empty(len(labels), dtype=np.int64)
            rank[order] = np.arange(len(labels))
            self._rank = rank
        return rank

    def counts(self, start: int | None = None, end: int | None = None) -> WindowCounts:
        """The counts of windows starting in [start, end) seconds (None: unbounded), sorted by
        window, category and subcategory."""
        keys, counts = self._columns(start, end)
        windows = (keys >> GROUP_BITS) * self.pump.step
        groups = keys & GROUP_MASK
        if len(keys) > 1:
            order = np.lexsort((self._ranks()[groups], windows))
            windows, groups, counts = windows[order], groups[order], counts[order]
        categories, subcategories = self._label_arrays()
        return WindowCounts(windows, categories[groups], subcategories[groups], counts)

    def grouped(self, start: int | None = None, end: int | None = None):
        """The counts of windows starting in [start, end) as columns, in key order (by window,
        then group code): window starts (seconds), group codes, counts, and each group code's
        category and subcategory. For sums over many windows that need no row per window."""
        keys, counts = self._columns(start, end)
        categories, subcategories = self._label_arrays()
        return (keys >> GROUP_BITS) * self.pump.step, keys & GROUP_MASK, counts, categories, subcategories

    def _label_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        cached = self._arrays
        if cached is None or len(cached[0]) < len(self._labels):
            categories = np.empty(len(self._labels), dtype=object)
            subcategories = np.empty(len(self._labels), dtype=object)
            for code, (category, subcategory) in enumerate(self._labels):
                categories[code], subcategories[code] = category, subcategory
            cached = self._arrays = (categories, subcategories)
        return cached

    def frame(self, start: int | None = None, end: int | None = None, dense_span: tuple[int, int] | None = None):
        """Rows of ``FRAME_COLUMNS`` for windows starting in [start, end) seconds; a dense pump
        gets a row for every window of ``dense_span`` (first, last), zero where quiet."""
        if self.pump.dense:
            if dense_span is None:
                return counts_frame(self.pump, WindowCounts.empty())
            return counts_frame(self.pump, self.counts(*dense_span_bounds(dense_span, self.pump.step)), dense_span)
        return counts_frame(self.pump, self.counts(start, end), presorted=True)


def dense_span_bounds(span: tuple[int, int], step: int) -> tuple[int, int]:
    return window_start(span[0], step), span[1] + 1
