"""Reads for the pages: metric frames and events for the chosen view, from the shared engine.

Without a region or account scope the running pump state answers; with one, the same
aggregation routine runs over that subset of the buffer.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import numpy as np
import pandas as pd

from metrics.buffer import EventColumns
from metrics.engine import ANOMALY, Engine
from metrics.explore import (
    EventFilter,
    GroupedRows,
    pump_rows,
    rebin,
    scope_mask,
    scoped_metric,
    subset,
    sum_groups,
)
from metrics.pumps import FRAME_COLUMNS, PUMPS_BY_NAME
from metrics.selection import Ordered, Selection, select
from metrics.windows import to_timestamps, window_start
from ui.specs import SharedSpecs
from ui.view import View

LONG_RANGE_SECONDS = 86_400
# A source that holds windows but no events (Athena) serves them on demand: an object with
# ``events(flt)`` and ``raw_records(ids)``, set by the runtime.
on_demand = None
_scoped_cache: dict[tuple, EventColumns] = {}
_ordered_cache: dict[tuple, Ordered] = {}
_leaders = SharedSpecs(kept=256)  # episodes of a few views, a few rows each
_scoped_lock = threading.Lock()


def ordered(engine: Engine) -> Ordered:
    """The buffer's events in time order, made once per change of the buffer (every session
    reads the same)."""
    snapshot = engine.buffer.snapshot()
    key = (id(engine), snapshot.version)
    with _scoped_lock:
        if key not in _ordered_cache:
            _ordered_cache.clear()
            _ordered_cache[key] = Ordered.of(snapshot)
        return _ordered_cache[key]


def _scoped_columns(engine: Engine, view: View) -> EventColumns:
    """The buffer's columns within the view's scope, kept while the buffer is unchanged."""
    held = ordered(engine)
    key = (id(engine), id(held), view.regions, view.accounts)
    with _scoped_lock:
        if key not in _scoped_cache:
            columns = EventColumns(held.whole.times, held.whole.codes, held.labels)
            _scoped_cache.clear()
            _scoped_cache[key] = subset(columns, scope_mask(columns, view.regions, view.accounts))
        return _scoped_cache[key]


def _athena_scope(engine: Engine, view: View, now: int) -> tuple[Engine, View]:
    """An on-demand source (Athena) holds windows, no events: a scope's windows come from a
    query of their own (``scoped_engine``), read as unscoped windows. Anything else as given."""
    scoped = getattr(on_demand, "scoped_engine", None)
    if scoped is None or not view.scoped:
        return engine, view
    start, end = view.bounds(now)
    return scoped(view.regions, view.accounts, start, end), replace(view, regions=(), accounts=())


def scope_error(view: View) -> str:
    """Why the scope's windows could not be had (an on-demand source's failed query), or ""."""
    errors = getattr(on_demand, "scope_errors", None) or {}
    return errors.get((view.regions, view.accounts), "")


def metric(engine: Engine, name: str, view: View, now: int) -> pd.DataFrame:
    """One metric's rows for the windows of the view; dense series run to ``now``."""
    if name != ANOMALY:
        engine, view = _athena_scope(engine, view, now)
    start, end = view.bounds(now)
    dense_until = min(now, end - 1)
    # Over a long range the vectorised aggregation of the events beats walking the running
    # state window by window (bench.pages: about ten times over four months).
    if name == ANOMALY or (not view.scoped and end - start <= LONG_RANGE_SECONDS):
        return engine.metric_frame(name, start, end, dense_until=dense_until)
    return scoped_metric(_scoped_columns(engine, view), PUMPS_BY_NAME[name], start, end, dense_until)


def _rows(engine: Engine, name: str, view: View, now: int) -> GroupedRows:
    """A metric's counts for the windows of the view as columns: from the running state
    without a scope (it also holds counts aggregated elsewhere, as by Athena), else from the
    scope's events."""
    engine, view = _athena_scope(engine, view, now)
    start, end = view.bounds(now)
    if not view.scoped:
        return engine.states[name].grouped(start, end)
    return pump_rows(_scoped_columns(engine, view), PUMPS_BY_NAME[name], start, end)


def totals(engine: Engine, name: str, view: View, now: int) -> pd.DataFrame:
    """A metric summed per group over the view's range (``metrics.explore.sum_groups``): what
    a bar chart of the busiest draws, without a row per window."""
    return sum_groups(_rows(engine, name, view, now), name)


def binned_metric(engine: Engine, name: str, view: View, now: int, seconds: int) -> pd.DataFrame:
    """A metric in bins of ``seconds``: the rows of ``rebin(metric(...), seconds)``."""
    return sum_groups(_rows(engine, name, view, now), name, seconds)


def binned(engine: Engine, name: str, view: View, now: int, seconds: int) -> pd.DataFrame:
    """A dense metric in bins of ``seconds`` for the view: from the running per-window totals
    without a scope, else from the scope's events."""
    engine, view = _athena_scope(engine, view, now)
    if not view.scoped and PUMPS_BY_NAME[name].dense:
        start, end = view.bounds(now)
        return engine.binned_totals(name, start, end, seconds, dense_until=min(now, end - 1))
    start, end = view.bounds(now)
    pump = PUMPS_BY_NAME[name]
    if not pump.dense:
        return rebin(metric(engine, name, view, now), seconds)
    # A scope's dense series: its events summed per bin, then every bin of the range zero-filled
    # up to the live edge, as rebinning the dense per-window frame would give.
    found = sum_groups(pump_rows(_scoped_columns(engine, view), pump, start, end), name, seconds)
    first = window_start(start, seconds)
    last = window_start(min(end - 1, now), seconds)
    bins = to_timestamps(np.arange(first, last + 1, seconds, dtype=np.int64))
    values = found.set_index("window_start")["value"].reindex(bins, fill_value=0).to_numpy()
    return pd.DataFrame(
        {"metric": name, "window_start": bins, "category": "", "subcategory": "", "value": values},
        columns=list(FRAME_COLUMNS),
    )


def select_events(engine: Engine, flt: EventFilter, budget: float | None = None) -> Selection:
    """Events matching ``flt``, oldest first, as a selection (counted and paged without a
    frame of them all); raises ``QueryError`` when its search cannot be read. A search reads
    records for about ``budget`` seconds at most, the newest first; the selection says how
    many it left for the next call (which goes on from there)."""
    return select_noted(engine, flt, budget)[0]


def select_noted(engine: Engine, flt: EventFilter, budget: float | None = None) -> tuple[Selection, dict]:
    """``select_events``, and what an on-demand source says of its answer: ``limit`` when it
    returned as many events as its row limit, ``error`` when it could not answer."""
    if on_demand is not None:
        return on_demand.select(flt)
    deadline = None if budget is None else time.monotonic() + budget
    return select(ordered(engine), flt, engine.buffer.raw_texts, deadline), {}


def leading(engine: Engine, start: int, end: int, calls: int, tops: dict[str, int]) -> dict[str, list]:
    """The commonest values of each column in ``tops`` (column: how many) among the events of
    [start, end), shared by every session. Keyed by the span's call count: the buffer only
    gains events (and loses the oldest to retention), so an unchanged count is an unchanged set
    of events, and a late event in the span makes a new entry."""

    def count() -> dict[str, list]:
        events = select_events(engine, EventFilter(start=start, end=end))
        return {column: events.counts(column, n) for column, n in tops.items()}

    return _leaders.get((id(engine), id(on_demand), start, end, calls, tuple(tops.items())), count)


def events(engine: Engine, flt: EventFilter) -> pd.DataFrame:
    """Events matching ``flt``, oldest first, as a frame: for the few a detection holds."""
    if on_demand is not None:
        return on_demand.events(flt)
    return select_events(engine, flt).frame()


def raw_records(engine: Engine, event_ids: list[str]) -> list[bytes | None]:
    """The raw JSON of events, from the buffer or the on-demand answers."""
    return (on_demand or engine.buffer).raw_records(event_ids)


def span(engine: Engine) -> tuple[int, int] | None:
    """The first and last second of the events held (to the 10-second window), or None."""
    totals = engine.totals
    if totals.first is None:
        return None
    return totals.first, totals.last + totals.pump.step - 1


def scope_options(engine: Engine) -> tuple[list[str], list[str]]:
    """Regions and accounts held in the buffer (or an on-demand source's windows), for the sidebar."""
    options = getattr(on_demand, "scope_options", None)
    if options is not None:
        return options()
    labels = engine.buffer.snapshot().labels
    return sorted(labels["awsRegion"]), sorted(labels["account"])
