"""The events behind a chart click, the explorer's and a detection's, served by Athena when the
app holds only windows (``INSIGHTS_SOURCE=athena``): a small query over just the day, region
and account partitions the filter names, with a row limit, its records normalised here and
filtered exactly as the buffer's would be (``metrics.explore.matching``).

Answers are kept for a minute per filter, so that a page re-running under the user does not
start (and bill) the same query again.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime, timedelta

import orjson
import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError

from collectors.athena import AthenaRunner, QueryFailed
from metrics.buffer import EventBuffer
from metrics.engines import latest_seconds
from metrics.explore import EventFilter, matching
from metrics.normalise import Rejects, normalise_all
from metrics.query import parse, required_text
from metrics.selection import Ordered, Selection, select
from metrics.sql import _quote, events_sql

ROW_LIMIT = 1000
CACHE_SECONDS = 60.0
CACHED_ANSWERS = 32
QUERY_TIMEOUT = 120.0  # a page waits for it


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
    """``events(flt)`` for the pages, from Athena; ``raw_records(ids)`` for the record dialog."""

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
    ):
        self.runner = runner
        self.table = table
        self.regions = tuple(regions)
        self.accounts = tuple(accounts)
        self.span_seconds = span_seconds  # how far back a filter without a start looks
        self.limit = limit
        self.clock = clock
        self.rejects = Rejects()
        self._answers: OrderedDict[EventFilter, tuple[float, pd.DataFrame, EventBuffer]] = OrderedDict()
        self._lock = threading.Lock()

    def query(self, flt: EventFilter, now: float) -> str:
        where = partitions(flt, now, self.span_seconds, regions=self.regions, accounts=self.accounts)
        source = f"(SELECT record FROM {self.table} WHERE {' AND '.join(where)}) AS trail"
        needles = required_text(parse(flt.text)) if flt.text.strip() else []
        return events_sql(flt, source, latest_seconds(int(now * 1_000_000_000)), self.limit, needles)

    def events(self, flt: EventFilter) -> pd.DataFrame:
        """The events matching ``flt``, oldest first; ``attrs["limit"]`` is set when Athena
        returned as many records as the row limit (there may be more), ``attrs["error"]`` when
        the query failed (no events then)."""
        now = self.clock()
        with self._lock:
            cached = self._answers.get(flt)
            if cached is not None and now - cached[0] < CACHE_SECONDS:
                return cached[1]
        try:
            rows = self.runner.run(self.query(flt, now), timeout=QUERY_TIMEOUT)
        except (QueryFailed, ClientError, BotoCoreError) as error:
            # The page shows why and stays up; nothing is kept, so the next run asks again.
            failed = EventBuffer(retention_seconds=None).snapshot().frame()
            failed.attrs["error"] = str(error)
            return failed
        records = []
        for text in rows["record"].tolist() if len(rows) else []:
            try:
                records.append(orjson.loads(text))
            except (orjson.JSONDecodeError, TypeError):
                self.rejects.add("unreadable JSON", "athena", text)
        buffer = EventBuffer(retention_seconds=None)
        buffer.append(normalise_all(records, self.rejects, origin="athena"))
        frame = matching(buffer.snapshot().frame(*flt.bounds_ns), flt, raws=buffer.raw_records)
        if len(rows) >= self.limit:
            frame.attrs["limit"] = self.limit
        with self._lock:
            self._answers[flt] = (now, frame, buffer)
            while len(self._answers) > CACHED_ANSWERS:
                self._answers.popitem(last=False)
        return frame

    def select(self, flt: EventFilter) -> tuple[Selection, dict]:
        """``events(flt)`` as the pages' selection of events, with its ``attrs`` (limit, error)."""
        frame = self.events(flt)
        with self._lock:
            held = self._answers.get(flt)
        buffer = held[2] if held is not None and held[1] is frame else EventBuffer(retention_seconds=None)
        return select(Ordered.of(buffer.snapshot()), flt, buffer.raw_texts), dict(frame.attrs)

    def raw_records(self, event_ids: list[str]) -> list[bytes | None]:
        """The raw JSON of events of the answers held, None for one no answer holds."""
        with self._lock:
            buffers = [buffer for _, _, buffer in self._answers.values()]
        found: dict[str, bytes] = {}
        for buffer in buffers:
            for event_id, raw in zip(event_ids, buffer.raw_records(event_ids)):
                if raw is not None:
                    found.setdefault(event_id, raw)
        return [found.get(i) for i in event_ids]
