"""Questions an analyst asks of the buffer: which events match a filter, the metrics of a
subset (one region, one account), coarser bins for long ranges, and the windows that stood out.

Pure pandas and numpy; the pages call these on a snapshot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import orjson
import pandas as pd

from metrics.buffer import EventColumns
from metrics.events import COLUMNS
from metrics.pumps import FRAME_COLUMNS, Pump, aggregate, counts_frame
from metrics.query import parse, required_text
from metrics.windows import NS_PER_SECOND, to_timestamps, window_start

# Columns of the events table a search sees beside the record (``user``, ``session``...).
TEXT_COLUMNS = tuple(c for c in COLUMNS if c not in ("eventTime", "readOnly", "eventType", "identityType"))
NO_ERROR = None  # in ``error_codes``: the calls that succeeded (no errorCode)
MISSING = None  # in any criterion: records without that field


@dataclass(frozen=True)
class EventFilter:
    """Events in [start, end) (seconds) matching every non-empty criterion; values within one
    criterion are alternatives, ``None`` standing for a record without that field."""

    start: int | None = None
    end: int | None = None
    regions: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    apis: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    sessions: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    error_codes: tuple[str | None, ...] = ()
    outcome: str = ""  # "succeeded" (no errorCode), "failed" (any errorCode) or "" (both)
    text: str = ""  # a search in ``metrics.query``'s language
    event_ids: tuple[str, ...] = ()  # exactly these events (a detection's)
    excluded: tuple[tuple[str, str | None], ...] = ()  # (criterion, value) pairs left out, e.g. ("users", "bob")

    def narrowed(self, **criteria) -> EventFilter:
        return replace(self, **criteria)

    @property
    def bounds_ns(self) -> tuple[int | None, int | None]:
        scale = NS_PER_SECOND
        return (
            None if self.start is None else self.start * scale,
            None if self.end is None else self.end * scale,
        )


CRITERIA = {
    "regions": "awsRegion",
    "accounts": "account",
    "services": "eventSource",
    "apis": "eventName",
    "users": "user",
    "sessions": "session",
    "ips": "sourceIPAddress",
}


def matching(frame: pd.DataFrame, flt: EventFilter, raws: Callable[[list[str]], list] | None = None) -> pd.DataFrame:
    """The rows of an events frame (``BufferSnapshot.frame``) that ``flt`` selects. The text
    query (``metrics.query``) searches each full record when ``raws`` gives them by eventID
    (``EventBuffer.raw_records``), else the frame's columns."""
    keep = np.ones(len(frame), dtype=bool)
    times = frame["eventTime"]
    if flt.start is not None:
        keep &= (times >= pd.Timestamp(flt.start, unit="s", tz="UTC")).to_numpy()
    if flt.end is not None:
        keep &= (times < pd.Timestamp(flt.end, unit="s", tz="UTC")).to_numpy()
    for criterion, column in {**CRITERIA, "error_codes": "errorCode"}.items():
        values = getattr(flt, criterion)
        if values:
            keep &= _one_of(frame[column], values)
    if flt.event_ids:
        keep &= frame["eventID"].isin(flt.event_ids).to_numpy()
    for criterion, value in flt.excluded:
        keep &= ~_one_of(frame[{**CRITERIA, "error_codes": "errorCode"}[criterion]], (value,))
    if flt.outcome:
        failed = frame["errorCode"].notna().to_numpy()
        keep &= failed if flt.outcome == "failed" else ~failed
    if flt.text.strip():
        narrowed = frame[keep]
        keep[np.flatnonzero(keep)] = _query_mask(narrowed, flt.text, raws)
    return frame[keep]


def _one_of(column: pd.Series, values: tuple) -> np.ndarray:
    """Rows holding any of ``values``; ``None`` among them stands for a missing value."""
    found = np.array(column.isin([v for v in values if v is not None]), dtype=bool)
    if None in values:
        found |= column.isna().to_numpy()
    return found


def _query_mask(frame: pd.DataFrame, text: str, raws: Callable[[list[str]], list] | None) -> np.ndarray:
    """Rows whose full record (its raw JSON from ``raws``, with the events table's columns such
    as ``user`` beside it) matches the query in ``text``; raises ``QueryError`` if unreadable.
    A record whose JSON lacks a required piece of text is passed over without parsing."""
    query = parse(text)
    found = np.zeros(len(frame), dtype=bool)
    if query is None or frame.empty:
        return ~found
    ids = frame["eventID"].tolist()
    stored = raws(ids) if raws is not None else [None] * len(ids)
    needles = [piece.encode() for piece in required_text(query)]
    columns = {c: frame[c].astype(object).where(frame[c].notna(), None).tolist() for c in TEXT_COLUMNS}
    for i, raw in enumerate(stored):
        if raw is not None and needles:
            lowered = raw.lower()
            if not all(needle in lowered for needle in needles):
                continue
        record = {column: values[i] for column, values in columns.items()}
        if raw is not None:
            record.update(orjson.loads(raw))
        found[i] = query.matches(record)
    return found


def subset(columns: EventColumns, keep: np.ndarray) -> EventColumns:
    return EventColumns(columns.times[keep], {k: v[keep] for k, v in columns.codes.items()}, columns.labels)


def scope_mask(columns: EventColumns, regions: tuple[str, ...], accounts: tuple[str, ...]) -> np.ndarray:
    """Events of any of ``regions`` and any of ``accounts`` (empty: all)."""
    keep = np.ones(len(columns), dtype=bool)
    for column, values in (("awsRegion", regions), ("account", accounts)):
        if values:
            codes = [columns.code_of(column, v) for v in values]
            keep &= np.isin(columns.codes[column], [c for c in codes if c is not None])
    return keep


def scoped_metric(
    columns: EventColumns, pump: Pump, start: int, end: int, dense_until: int | None = None
) -> pd.DataFrame:
    """A pump's rows for windows starting in [start, end), computed from ``columns`` (a subset
    of the buffer) by the same routine as the running state. Dense pumps cover every window
    from ``start`` to ``dense_until`` (or the last event)."""
    first, last = window_start(start, pump.step), window_start(end - 1, pump.step)
    times = columns.times
    keep = (times >= first * NS_PER_SECOND) & (times < (last + pump.step) * NS_PER_SECOND)
    part = subset(columns, keep)
    counts = aggregate(part, pump)
    span = None
    if pump.dense:
        until = (
            dense_until if dense_until is not None else (int(part.times.max()) // NS_PER_SECOND if len(part) else None)
        )
        if until is not None:
            span = (first, min(last, window_start(until, pump.step)))
            span = span if span[0] <= span[1] else None
    return counts_frame(pump, counts, span)


def rebin(frame: pd.DataFrame, seconds: int, how: str = "sum") -> pd.DataFrame:
    """Windows merged into bins of ``seconds`` (a multiple of the window): counts add up
    exactly; scores keep their ``max`` so a spike stays visible."""
    if frame.empty:
        return frame
    epoch = frame["window_start"].astype("datetime64[ns, UTC]").array.asi8 // NS_PER_SECOND
    starts = pd.to_datetime(epoch - epoch % seconds, unit="s", utc=True)
    keys = [c for c in ("metric", "category", "subcategory") if c in frame]
    grouped = frame.assign(window_start=starts).groupby(["window_start", *keys], observed=True, sort=True)
    return grouped["value"].agg(how).reset_index()[list(frame.columns)]


def bin_seconds(span_seconds: float, step: int, points: int = 400) -> int:
    """The finest round bin, a multiple of ``step``, that keeps a chart within ``points``
    bins over the span."""
    for candidate in (10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400):
        if candidate >= step and candidate % step == 0 and span_seconds / candidate <= points:
            return candidate
    return 86400


def busiest_per_window(frame: pd.DataFrame) -> pd.DataFrame:
    """Per window, the category with the largest value (ties: the first by name)."""
    if frame.empty:
        return frame
    ordered = frame.sort_values(["window_start", "value", "category"], ascending=[True, False, True], kind="stable")
    return ordered.drop_duplicates("window_start", keep="first").reset_index(drop=True)


def leading(frame: pd.DataFrame, column: str, n: int = 3) -> list[tuple[str, int]]:
    """The ``n`` most frequent values of ``column`` among some events, with their counts."""
    counts = frame[column].value_counts(dropna=True)
    counts = counts[counts > 0].head(n)
    return [(str(k), int(v)) for k, v in counts.items()]


def episodes(
    scores: pd.DataFrame,
    totals: pd.DataFrame,
    threshold: float,
    *,
    step: int = 10,
    gap: int = 60,
    n: int = 5,
    lookback: int = 0,
) -> pd.DataFrame:
    """Runs of windows scoring at least ``threshold``, merged when less than ``gap`` seconds
    apart: ``start``, ``end`` (exclusive, seconds), ``peak`` score, ``peak_at`` and ``calls``
    in the run. The ``n`` highest peaks, highest first (ties: the earlier run).

    A window's score judges the shingle ending with it, so a burst raises the scores of the
    windows after it: each run starts ``lookback`` seconds (the shingle, less one window)
    before its first high window, so that it holds the burst that made it high. Runs that then
    overlap are one episode."""
    columns = ["start", "end", "peak", "peak_at", "calls"]
    high = scores.loc[scores["value"] >= threshold, ["window_start", "value"]]
    if high.empty:
        return pd.DataFrame(columns=columns)
    starts = high["window_start"].astype("datetime64[ns, UTC]").array.asi8 // NS_PER_SECOND
    values = high["value"].to_numpy()
    order = np.argsort(starts, kind="stable")
    starts, values = starts[order], values[order]
    run = np.concatenate([[0], np.cumsum(np.diff(starts) > gap)])
    runs = []  # [start, end, peak, peak_at], in time order
    for number in np.unique(run):
        member = run == number
        first, last = int(starts[member].min()), int(starts[member].max())
        peak = int(np.argmax(values[member]))
        found = [first - lookback, last + step, float(values[member][peak]), int(starts[member][peak])]
        if runs and found[0] <= runs[-1][1]:
            merged = runs[-1]
            merged[1] = found[1]
            if found[2] > merged[2]:
                merged[2], merged[3] = found[2], found[3]
        else:
            runs.append(found)
    call_starts = totals["window_start"].astype("datetime64[ns, UTC]").array.asi8 // NS_PER_SECOND
    call_values = totals["value"].to_numpy()
    rows = [
        (start, end, peak, peak_at, int(call_values[(call_starts >= start) & (call_starts < end)].sum()))
        for start, end, peak, peak_at in runs
    ]
    found = pd.DataFrame(rows, columns=columns)
    return found.sort_values(["peak", "start"], ascending=[False, True], kind="stable").head(n).reset_index(drop=True)


# Rows of counts as columns: window starts (seconds), group codes, counts, and each group
# code's category and subcategory (None: missing).
GroupedRows = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def pump_rows(columns: EventColumns, pump: Pump, start: int, end: int) -> GroupedRows:
    """The events of ``columns`` in the windows of ``pump`` starting in [start, end), as
    ``GroupedRows`` of one event each, grouped as the pump groups them."""
    first, last = window_start(start, pump.step), window_start(end - 1, pump.step)
    times = columns.times
    keep = (times >= first * NS_PER_SECOND) & (times < (last + pump.step) * NS_PER_SECOND)
    if pump.where is not None:
        keep &= pump.where.mask(columns)
    windows = window_start(times[keep] // NS_PER_SECOND, pump.step)
    subs = columns.codes[pump.subcategory][keep].astype(np.int64) if pump.subcategory else -1
    width = len(columns.labels[pump.subcategory]) + 1 if pump.subcategory else 1
    cats = columns.codes[pump.category][keep].astype(np.int64) if pump.category else np.full(len(windows), -1)
    groups, keys = pd.factorize((cats + 1) * width + (subs + 1))
    categories = _labels_of(columns, pump.category, keys // width - 1)
    subcategories = _labels_of(columns, pump.subcategory, keys % width - 1)
    return windows, groups.astype(np.int64), np.ones(len(windows), dtype=np.int64), categories, subcategories


def _labels_of(columns: EventColumns, name: str | None, codes: np.ndarray) -> np.ndarray:
    out = np.full(len(codes), None, dtype=object)
    if name is not None:
        labels = columns.labels[name]
        for i, code in enumerate(codes.tolist()):
            if code >= 0:
                out[i] = labels[code]
    return out


def sum_groups(rows: GroupedRows, metric: str, seconds: int | None = None) -> pd.DataFrame:
    """Counts summed per group and bin of ``seconds`` (a multiple of the window): the rows of
    ``rebin(frame, seconds)``, sorted alike. Without ``seconds``, per group over the whole range:
    ``category``, ``subcategory``, ``value`` and the ``first`` and ``last`` window holding any,
    largest first. Either way without a row per window, so months cost what their events cost."""
    windows, groups, counts, categories, subcategories = rows
    if seconds is None:
        codes, used = pd.factorize(groups)
        first = np.full(len(used), np.iinfo(np.int64).max)
        last = np.full(len(used), np.iinfo(np.int64).min)
        np.minimum.at(first, codes, windows)
        np.maximum.at(last, codes, windows)
        frame = pd.DataFrame(
            {
                "category": pd.Series(categories[used], dtype=object).fillna(""),
                "subcategory": pd.Series(subcategories[used], dtype=object).fillna(""),
                "value": np.bincount(codes, weights=counts, minlength=len(used)).astype(np.int64),
                "first": to_timestamps(first),
                "last": to_timestamps(last),
            }
        )
        return frame.sort_values(["value", "category", "subcategory"], ascending=[False, True, True], ignore_index=True)
    if not len(windows):
        return pd.DataFrame(columns=list(FRAME_COLUMNS))
    bins = windows - windows % seconds
    width = int(groups.max()) + 1
    codes, keys = pd.factorize((bins // seconds) * width + groups)
    sums = np.bincount(codes, weights=counts, minlength=len(keys)).astype(np.int64)
    group = keys % width
    frame = pd.DataFrame(
        {
            "metric": metric,
            "window_start": to_timestamps((keys // width) * seconds),
            "category": pd.Series(categories[group], dtype=object).fillna(""),
            "subcategory": pd.Series(subcategories[group], dtype=object).fillna(""),
            "value": sums,
        },
        columns=list(FRAME_COLUMNS),
    )
    return frame.sort_values(["window_start", "category", "subcategory"], kind="stable", ignore_index=True)
