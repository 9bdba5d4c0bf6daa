"""The pumps of the original Kinesis Data Analytics application, as data, and the one
windowed-aggregation routine that runs them.

Each ``Pump`` counts events per epoch-aligned window of its own ``step``, grouped by up to
two columns, after an optional filter. ``aggregate`` turns event columns into window
counts; the running metric state adds those counts batch by batch, and a full recompute is
the same routine over the whole buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from metrics.buffer import EventColumns
from metrics.windows import NS_PER_SECOND, to_timestamps, window_range, window_starts_ns

FRAME_COLUMNS = ("metric", "window_start", "category", "subcategory", "value")


@dataclass(frozen=True)
class Condition:
    """A filter on one column: ``eq``/``ne`` a value (SQL semantics: a missing value
    matches neither), or ``missing``."""

    column: str
    op: str
    value: str | None = None

    def mask(self, columns: EventColumns) -> np.ndarray:
        codes = columns.codes[self.column]
        if self.op == "missing":
            return codes < 0
        code = columns.code_of(self.column, self.value)
        if self.op == "eq":
            return codes == code if code is not None else np.zeros(len(codes), dtype=bool)
        if self.op == "ne":
            present = codes >= 0
            return present & (codes != code) if code is not None else present
        raise ValueError(f"unknown operator {self.op!r}")


@dataclass(frozen=True)
class Pump:
    name: str
    step: int  # window length in seconds
    category: str | None = None
    subcategory: str | None = None
    where: Condition | None = None
    dense: bool = False  # a row for every window, zero when quiet
    title: str = ""


EC2 = "ec2.amazonaws.com"

PUMPS: tuple[Pump, ...] = (
    Pump("TotalCalls", 10, dense=True, title="All API calls"),
    Pump("CallsPerUniqueIp", 60, "sourceIPAddress", title="Calls per source IP"),
    Pump("CallsPerAPI", 10, "eventSource", "eventName", title="Calls per API"),
    Pump(
        "CallsPerServiceType",
        10,
        "eventSource",
        where=Condition("eventSource", "ne", EC2),
        title="Calls per service, EC2 excluded",
    ),
    Pump(
        "EC2Calls",
        10,
        "eventSource",
        "errorCode",
        where=Condition("eventSource", "eq", EC2),
        title="EC2 calls by error code (empty: success)",
    ),
    Pump("CallsPerUser", 10, "user", "session", title="Calls per user and session"),
    Pump(
        "NumberOfSuccessfulCalls",
        10,
        where=Condition("errorCode", "missing"),
        dense=True,
        title="Calls without an error code",
    ),
)
PUMPS_BY_NAME = {p.name: p for p in PUMPS}


@dataclass(frozen=True)
class WindowCounts:
    """Counts per (window, category, subcategory): parallel arrays, labels None if missing."""

    window: np.ndarray  # int64 window start, seconds
    category: np.ndarray  # object
    subcategory: np.ndarray  # object
    count: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.window)

    @classmethod
    def empty(cls) -> WindowCounts:
        labels = np.empty(0, dtype=object)
        return cls(np.empty(0, dtype=np.int64), labels, labels, np.empty(0, dtype=np.int64))


def aggregate(columns: EventColumns, pump: Pump) -> WindowCounts:
    """Count the events of ``columns`` per window and group of ``pump``."""
    windows = window_starts_ns(columns.times, pump.step)
    cats = _codes(columns, pump.category)
    subs = _codes(columns, pump.subcategory)
    if pump.where is not None:
        keep = pump.where.mask(columns)
        windows, cats, subs = windows[keep], cats[keep], subs[keep]
    if len(windows) == 0:
        return WindowCounts.empty()

    first = int(windows.min())
    slots = (windows - first) // pump.step
    # Shift codes by one so that "missing" (-1) is a group of its own.
    n_cat = int(cats.max()) + 2
    n_sub = int(subs.max()) + 2
    key = (slots * n_cat + (cats + 1)) * n_sub + (subs + 1)
    span = (int(slots.max()) + 1) * n_cat * n_sub
    if span <= 4 * len(key) + 65_536:
        counts = np.bincount(key, minlength=span)
        groups = np.flatnonzero(counts)
        counts = counts[groups]
    else:
        codes, groups = pd.factorize(key, sort=True)
        counts = np.bincount(codes, minlength=len(groups))
    sub_codes = groups % n_sub - 1
    rest = groups // n_sub
    cat_codes = rest % n_cat - 1
    window = first + (rest // n_cat) * pump.step
    return WindowCounts(
        window.astype(np.int64),
        _decode(cat_codes, columns, pump.category),
        _decode(sub_codes, columns, pump.subcategory),
        counts.astype(np.int64),
    )


def _codes(columns: EventColumns, name: str | None) -> np.ndarray:
    if name is None:
        return np.full(len(columns), -1, dtype=np.int64)
    return columns.codes[name].astype(np.int64, copy=False)


def _decode(codes: np.ndarray, columns: EventColumns, name: str | None) -> np.ndarray:
    out = np.full(len(codes), None, dtype=object)
    if name is None:
        return out
    labels = columns.labels[name]
    present = codes >= 0
    wanted = codes[present]
    if len(wanted) * 8 < len(labels):
        out[present] = [labels[c] for c in wanted.tolist()]
    else:
        out[present] = np.asarray(labels, dtype=object)[wanted]
    return out


def counts_frame(
    pump: Pump, counts: WindowCounts, dense_range: tuple[int, int] | None = None, *, presorted: bool = False
) -> pd.DataFrame:
    """Window counts as rows of ``FRAME_COLUMNS``, sorted; missing labels become "".

    A dense pump gets a zero row for each window in ``dense_range`` (first, last) that has none.
    ``presorted``: the counts are already in that order (sorting strings is most of the cost).
    """
    window, category, subcategory, value = counts.window, counts.category, counts.subcategory, counts.count
    if pump.dense and dense_range is not None:
        every = window_range(dense_range[0], dense_range[1], pump.step)
        totals = dict(zip(window.tolist(), value.tolist()))
        window = every
        value = np.array([totals.get(w, 0) for w in every.tolist()], dtype=np.int64)
        category = subcategory = np.full(len(every), None, dtype=object)
    frame = pd.DataFrame(
        {
            "metric": pump.name,
            "window_start": to_timestamps(window),
            "category": pd.Series(category, dtype=object).fillna(""),
            "subcategory": pd.Series(subcategory, dtype=object).fillna(""),
            "value": value,
        },
        columns=list(FRAME_COLUMNS),
    )
    if presorted:
        return frame
    return frame.sort_values(["window_start", "category", "subcategory"], kind="stable", ignore_index=True)


def compute_all(columns: EventColumns, pumps: tuple[Pump, ...] = PUMPS) -> dict[str, pd.DataFrame]:
    """Full recompute of every pump over ``columns``: one frame per metric name.

    Dense pumps span from the first to the last window holding any event.
    """
    span = None
    if len(columns):
        span = (int(columns.times.min()) // NS_PER_SECOND, int(columns.times.max()) // NS_PER_SECOND)
    return {pump.name: counts_frame(pump, aggregate(columns, pump), span) for pump in pumps}
