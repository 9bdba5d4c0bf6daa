"""The events behind a chart click, the explorer's and a detection's, served by Athena when the
app holds only windows (``INSIGHTS_SOURCE=athena``): a small query over just the day, region
and account partitions the filter names, with a row limit, its records normalised here and
filtered exactly as the buffer's would be (``metrics.explore.matching``).

Answers are kept for a minute per filter, so that a page re-running under the user does not
start (and bill) the same query again.

A click on a top-K metric's "(other)" row lists the events of each of its windows whose user
(and session) or API is not among that window's K rows the engine holds: a condition per
window, the oldest windows first, as many as a query's text can hold (``OTHER_QUERY_CHARS``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import orjson
import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError

from collectors.athena import SCOPE_PUMP, AthenaRunner, QueryFailed, windows_of_results
from metrics.buffer import EventBuffer
from metrics.engine import Engine
from metrics.engines import latest_seconds, windows_from_frame
from metrics.explore import EventFilter, matching
from metrics.normalise import Rejects, normalise_all
from metrics.query import parse, required_text
from metrics.selection import Ordered, Selection, select
from metrics.sql import OTHER, PUMP_COLUMNS, _quote, events_sql, trail_sql

ROW_LIMIT = 1000
CACHE_SECONDS = 60.0
CACHED_ANSWERS = 32
QUERY_TIMEOUT = 120.0  # a page waits for it
OTHER_QUERY_CHARS = 200_000  # of the per-window conditions: Athena takes a query of up to 256 KB
# The top-K metric whose "(other)" row a filter names, the criteria that name it, the row's columns.
OTHER_ROWS = {
    "users": ("CallsPerUser", ("users", "sessions"), ("user", "session")),
    "services": ("CallsPerAPI", ("services", "apis"), ("eventSource", "eventName")),
}


def other_row(flt: EventFilter):
    """(metric, criteria, columns) when ``flt`` is a click on a top-K "(other)" row, else None."""
    for criterion, found in OTHER_ROWS.items():
        if getattr(flt, criterion) == (OTHER,):
            return found
    return None


def outside_top(counts, columns: tuple[str, str], step: int, budget: int = OTHER_QUERY_CHARS) -> tuple[str, int, int]:
    """The SQL condition "in a window with an (other) row, and not one of that window's named
    rows", over the windows of ``counts`` (a top-K metric's ``WindowCounts``), oldest first
    while the text fits ``budget``; with how many windows it covers and how many have an
    (other) row. ``FALSE`` when none does."""
    category, subcategory = (f"coalesce({PUMP_COLUMNS[c]}, '')" for c in columns)
    windows = counts.window.tolist()
    names: dict[int, dict[str, list[str]]] = {}
    others = []
    for window, first, second in zip(windows, counts.category.tolist(), counts.subcategory.tolist()):
        if first == OTHER:
            others.append(window)
        else:
            names.setdefault(window, {}).setdefault(first or "", []).append(second or "")
    parts, size = [], 0
    for window in others:
        named = " OR ".join(
            f"({category} = {_quote(c)} AND {subcategory} IN ({', '.join(map(_quote, subs))}))"
            for c, subs in names.get(window, {}).items()
        )
        part = f"(event_seconds >= {window} AND event_seconds < {window + step} AND NOT ({named or 'FALSE'}))"
        if parts and size + len(part) > budget:
            break
        parts.append(part)
        size += len(part) + 4
    return ("(" + " OR ".join(parts) + ")") if parts else "FALSE", len(parts), len(others)


def partitions(flt: EventFilter, now: float, span_seconds: float, *, regions=(), accounts=()) -> list[str]:
    """The partition conditions of the table for ``flt``: its days (the last ``span_seconds``
    when it has no start, as a detection's events), its regions, and its accounts when the table
    has an account partition (``accounts`` configured)."""
    end = now if flt.end is None else min(flt.end, now + 86_400)
    start = end - span_seconds if flt.start is None else flt.start
    first, last = datetime.fromtimestamp(start, UTC).date(), datetime.fromtimestamp(max(start, end - 1), UTC).date()
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    where = ['"timestamp" IN (' + ", ".join(f"'{d:%Y/%m/%d}'" for d in days) + ")"]
    wanted = [r for r in flt.regions if r is not None] or list(regions)
    if wanted:
        where.append("region IN (" + ", ".join(map(_quote, wanted)) + ")")
    if accounts:
        chosen = [a for a in flt.accounts if a is not None and a in accounts] or list(accounts)
        where.append("account IN (" + ", ".join(map(_quote, chosen)) + ")")
    return where


class AthenaEvents:
    """``events(flt)`` for the pages, from Athena; ``raw_records(ids)`` for the record dialog.
    ``engine`` (the windows' engine) names each window's top K for a click on "(other)"."""

    def __init__(
        self,
        runner: AthenaRunner,
        table: str,
        *,
        regions=(),
        accounts=(),
        span_seconds: float = 86_400.0,
        limit: int = ROW_LIMIT,
        clock=time.time,
        engine=None,
        top_k: int | None = None,
    ):
        self.runner = runner
        self.table = table
        self.regions = tuple(regions)
        self.accounts = tuple(accounts)
        self.span_seconds = span_seconds  # how far back a filter without a start looks
        self.limit = limit
        self.clock = clock
        self.engine = engine
        self.top_k = top_k  # the windows' K, for a scope's windows counted as the engine's are
        self._scopes: OrderedDict[tuple, tuple[float, int, int, Engine]] = OrderedDict()
        self.scope_errors: dict[tuple, str] = {}
        self.other_query_chars = OTHER_QUERY_CHARS
        self.failed_calls = 0  # drills whose API calls failed before Athena ran a query
        self.last_error = ""
        self.rejects = Rejects()
        # filter -> (when, events, their buffer, the filter the events answer)
        self._answers: OrderedDict[EventFilter, tuple[float, pd.DataFrame, EventBuffer, EventFilter]] = OrderedDict()
        self._lock = threading.Lock()

    def query(self, flt: EventFilter, now: float, conditions=()) -> str:
        where = partitions(flt, now, self.span_seconds, regions=self.regions, accounts=self.accounts)
        source = f"(SELECT record FROM {self.table} WHERE {' AND '.join(where)}) AS trail"
        needles = required_text(parse(flt.text)) if flt.text.strip() else []
        return events_sql(flt, source, latest_seconds(int(now * 1_000_000_000)), self.limit, needles, conditions)

    def scope_query(self, regions, accounts, start: int, now: float) -> str:
        """The pump query over a scope's partitions and records, from ``start`` on."""
        flt = EventFilter(start=start, end=int(now) + 1, regions=tuple(regions), accounts=tuple(accounts))
        where = partitions(flt, now, self.span_seconds, regions=self.regions, accounts=self.accounts)
        if regions:  # the region folder is the record's region; the record says it exactly
            where.append(f"json_extract_scalar(record, '$.awsRegion') IN ({', '.join(map(_quote, regions))})")
        if accounts:
            account = (
                "coalesce(nullif(json_extract_scalar(record, '$.recipientAccountId'), ''), "
                "nullif(json_extract_scalar(record, '$.userIdentity.accountId'), ''))"
            )
            where.append(f"{account} IN ({', '.join(map(_quote, accounts))})")
        source = f"(SELECT record FROM {self.table} WHERE {' AND '.join(where)}) AS trail"
        latest = latest_seconds(int(now * 1_000_000_000))
        return trail_sql(latest, self.engine.pumps, source, earliest_seconds=start, top_k=self.top_k)

    def scoped_engine(self, regions, accounts, start: int, end: int) -> Engine:
        """The windows of every pump for the regions and accounts chosen, over [start, end): one
        pump query of their own (the engine's windows count every region and account), kept a
        minute for a range that moves with the clock. A failed query gives no windows and
        leaves its reason in ``scope_errors``."""
        key = (tuple(regions), tuple(accounts))
        now = self.clock()
        step = max(p.step for p in self.engine.pumps)
        first = start - start % step
        with self._lock:
            held = self._scopes.get(key)
            if held is not None and now - held[0] < CACHE_SECONDS and held[1] <= first and end <= held[2]:
                return held[3]
        scoped = Engine(retention_seconds=None, pumps=self.engine.pumps)
        try:
            frame = windows_of_results(self.runner.run(self.scope_query(*key, first, now), timeout=QUERY_TIMEOUT))
        except (QueryFailed, ClientError, BotoCoreError) as error:
            self.failed_calls += not isinstance(error, QueryFailed)
            self.last_error = self.scope_errors[key] = str(error)
            return scoped
        for metric, counts in windows_from_frame(frame).items():
            scoped.add_windows(metric, counts)
        with self._lock:
            self.scope_errors.pop(key, None)
            # A live range's end moves on: the answer serves until the next minute's.
            self._scopes[key] = (now, first, max(end, int(now) + 1) + int(CACHE_SECONDS), scoped)
            while len(self._scopes) > CACHED_ANSWERS:
                self._scopes.popitem(last=False)
        return scoped

    def scope_options(self) -> tuple[list[str], list[str]]:
        """The regions and accounts of the engine's windows (``collectors.athena.SCOPE_PUMP``)."""
        state = self.engine.states.get(SCOPE_PUMP.name) if self.engine is not None else None
        if state is None:
            return [], []
        counts = state.counts()
        regions = {r for r in counts.category.tolist() if r}
        accounts = {a for a in counts.subcategory.tolist() if a}
        return sorted(regions), sorted(accounts)

    def _plan(self, flt: EventFilter) -> tuple[EventFilter, tuple[str, ...], dict]:
        """The filter to query and match, more SQL conditions, and notes for the panel: a click
        on "(other)" becomes its other criteria and the windows' conditions (``outside_top``)."""
        found = other_row(flt)
        if found is None or self.engine is None or found[0] not in self.engine.states:
            return flt, (), {}
        metric, criteria, columns = found
        windows = self.engine
        if flt.regions or flt.accounts:  # the chart clicked drew the scope's own windows
            with self._lock:
                held = self._scopes.get((flt.regions, flt.accounts))
            windows = held[3] if held is not None else windows
        state = windows.states[metric]
        counts = state.counts(flt.start, flt.end)
        condition, covered, windows = outside_top(counts, columns, state.pump.step, self.other_query_chars)
        notes = {}
        if covered < windows:
            notes["other_windows"] = (covered, windows)
        return replace(flt, **dict.fromkeys(criteria, ())), (condition,), notes

    def events(self, flt: EventFilter) -> pd.DataFrame:
        """The events matching ``flt``, oldest first; ``attrs["limit"]`` is set when Athena
        returned as many records as the row limit (there may be more), ``attrs["error"]`` when
        the query failed (no events then), ``attrs["other_windows"]`` (covered, all) when a
        click on "(other)" had more windows than one query can name."""
        return self._answer(flt)[0]

    def _answer(self, flt: EventFilter) -> tuple[pd.DataFrame, EventBuffer, EventFilter]:
        now = self.clock()
        with self._lock:
            cached = self._answers.get(flt)
            if cached is not None and now - cached[0] < CACHE_SECONDS:
                return cached[1:]
        asked, conditions, notes = self._plan(flt)
        buffer = EventBuffer(retention_seconds=None)
        try:
            rows = self.runner.run(self.query(asked, now, conditions), timeout=QUERY_TIMEOUT)
        except (QueryFailed, ClientError, BotoCoreError) as error:
            # The page shows why and stays up; nothing is kept, so the next run asks again.
            self.failed_calls += not isinstance(error, QueryFailed)  # a failed query the runner counts
            self.last_error = str(error)
            failed = buffer.snapshot().frame()
            failed.attrs["error"] = str(error)
            return failed, buffer, asked
        records = []
        for text in rows["record"].tolist() if len(rows) else []:
            try:
                records.append(orjson.loads(text))
            except (orjson.JSONDecodeError, TypeError):
                self.rejects.add("unreadable JSON", "athena", text)
        buffer.append(normalise_all(records, self.rejects, origin="athena"))
        frame = matching(buffer.snapshot().frame(*asked.bounds_ns), asked, raws=buffer.raw_records)
        if len(rows) >= self.limit:
            frame.attrs["limit"] = self.limit
        frame.attrs.update(notes)
        with self._lock:
            self._answers[flt] = (now, frame, buffer, asked)
            while len(self._answers) > CACHED_ANSWERS:
                self._answers.popitem(last=False)
        return frame, buffer, asked

    def select(self, flt: EventFilter) -> tuple[Selection, dict]:
        """``events(flt)`` as the pages' selection of events, with its ``attrs`` (limit, error)."""
        frame, buffer, asked = self._answer(flt)
        return select(Ordered.of(buffer.snapshot()), asked, buffer.raw_texts), dict(frame.attrs)

    def status(self, recent: int = 5) -> dict:
        """What the Status page shows of the drill-down queries: totals, per UTC day, the last few."""
        stats = self.runner.stats
        return {
            "queries": stats.queries,
            "failures": stats.failures + self.failed_calls,
            "bytes_scanned": stats.bytes_scanned,
            "cost_dollars": stats.cost_dollars,
            "last_error": self.last_error,
            "per_day": [(day, *stats.per_day[day]) for day in sorted(stats.per_day, reverse=True)],
            "recent": [
                {
                    "at": q.at,
                    "state": q.state,
                    "bytes": q.bytes_scanned,
                    "cost": q.cost_dollars,
                    "seconds": q.seconds,
                    "reason": q.reason,
                }
                for q in reversed(stats.recent[-recent:])
            ],
        }

    def raw_records(self, event_ids: list[str]) -> list[bytes | None]:
        """The raw JSON of events of the answers held, None for one no answer holds."""
        with self._lock:
            buffers = [answer[2] for answer in self._answers.values()]
        found: dict[str, bytes] = {}
        for buffer in buffers:
            for event_id, raw in zip(event_ids, buffer.raw_records(event_ids)):
                if raw is not None:
                    found.setdefault(event_id, raw)
        return [found.get(i) for i in event_ids]
