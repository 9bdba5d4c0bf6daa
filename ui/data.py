"""Reads for the pages: metric frames and events for the chosen view, from the shared engine.

Without a region or account scope the running pump state answers; with one, the same
aggregation routine runs over that subset of the buffer.
"""

from __future__ import annotations

import threading

import pandas as pd

from metrics.buffer import EventColumns
from metrics.engine import ANOMALY, Engine
from metrics.explore import EventFilter, matching, rebin, scope_mask, scoped_metric, subset
from metrics.pumps import PUMPS_BY_NAME
from ui.view import View

LONG_RANGE_SECONDS = 86_400
# A source that holds windows but no events (Athena) serves them on demand: an object with
# ``events(flt)`` and ``raw_records(ids)``, set by the runtime.
on_demand = None
_scoped_cache: dict[tuple, EventColumns] = {}
_scoped_lock = threading.Lock()


def _scoped_columns(engine: Engine, view: View) -> EventColumns:
    """The buffer's columns within the view's scope, kept while the buffer is unchanged."""
    snapshot = engine.buffer.snapshot()
    key = (id(engine), snapshot.version, view.regions, view.accounts)
    with _scoped_lock:
        if key not in _scoped_cache:
            columns = snapshot.columns()
            _scoped_cache.clear()
            _scoped_cache[key] = subset(columns, scope_mask(columns, view.regions, view.accounts))
        return _scoped_cache[key]


def metric(engine: Engine, name: str, view: View, now: int) -> pd.DataFrame:
    """One metric's rows for the windows of the view; dense series run to ``now``."""
    start, end = view.bounds(now)
    dense_until = min(now, end - 1)
    # Over a long range the vectorised aggregation of the events beats walking the running
    # state window by window (bench.pages: about ten times over four months).
    if name == ANOMALY or (not view.scoped and end - start <= LONG_RANGE_SECONDS):
        return engine.metric_frame(name, start, end, dense_until=dense_until)
    return scoped_metric(_scoped_columns(engine, view), PUMPS_BY_NAME[name], start, end, dense_until)


def binned(engine: Engine, name: str, view: View, now: int, seconds: int) -> pd.DataFrame:
    """A dense metric in bins of ``seconds`` for the view: from the running per-window totals
    without a scope, else from the scope's events."""
    if not view.scoped and PUMPS_BY_NAME[name].dense:
        start, end = view.bounds(now)
        return engine.binned_totals(name, start, end, seconds, dense_until=min(now, end - 1))
    return rebin(metric(engine, name, view, now), seconds)


def events(engine: Engine, flt: EventFilter) -> pd.DataFrame:
    """Events matching ``flt``, oldest first."""
    if on_demand is not None:
        return on_demand.events(flt)
    start_ns, end_ns = flt.bounds_ns
    return matching(engine.buffer.snapshot().frame(start_ns, end_ns), flt, raws=engine.buffer.raw_records)


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
    """Regions and accounts held in the buffer, for the sidebar."""
    labels = engine.buffer.snapshot().labels
    return sorted(labels["awsRegion"]), sorted(labels["account"])
