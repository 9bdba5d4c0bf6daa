"""The detector: raw CloudTrail records in, rule hits out."""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Iterable, Sequence

import numpy as np
import orjson
import pandas as pd

from metrics.detections.burst import BurstCounter, Window
from metrics.detections.columns import ColumnRecord, NeedsRecord, invoked_by, readable, shared_facts
from metrics.detections.firstseen import FirstSeenTracker
from metrics.detections.gates import ColumnView
from metrics.detections.model import Burst, Event, Hit, Outcome, Rule, hit_id
from metrics.detections.record import account_of, api_name, iac_tool, is_failed, principal_key, short, text, user_of
from metrics.detections.rules import RULES
from metrics.events import POSITION, Batch
from metrics.normalise import RejectedRecord, parse_event_time

DEFAULT_LEARNING_SECONDS = 3600
DEFAULT_MAX_HITS = 10_000
DEFAULT_MAX_SEEN = 250_000
DEFAULT_LATE_SECONDS = 3600
DEFAULT_GROUP_SECONDS = 600
_ID, _TIME = POSITION["eventID"], POSITION["eventTime"]


class _Row:
    """One record on its way through the rules: its columns until a rule needs more, then its
    parsed JSON."""

    __slots__ = ("record", "raw", "own", "shared")

    def __init__(self, record: dict, raw: bytes | None = None, shared: dict | None = None):
        self.record, self.raw = record, raw
        self.own: dict = {}  # function -> its value for this record: rules share matchers and keys
        # The same for the rows of the batch alike in all that a ColumnRecord answers from.
        self.shared = shared

    def parsed(self) -> dict:
        if self.raw is not None:
            self.record, self.raw = orjson.loads(self.raw), None
        return self.record

    def ask(self, function):
        """A pure function of the record, from the columns if they can answer it."""
        own = self.own
        if function in own:
            return own[function]
        shared = self.shared
        if shared is not None and function in shared:
            return shared[function]
        record = self.record
        if self.raw is None:
            value = own[function] = function(record)
            return value
        record.private = False
        try:
            value = function(record)
        except NeedsRecord:
            value = own[function] = function(self.parsed())
            return value
        (own if record.private or shared is None else shared)[function] = value
        return value


class _BatchRows:
    """The rows of a batch to observe, in time order (``j`` counts them), made on demand."""

    def __init__(self, columns, raws, order, usable, kinds, answers, invoked):
        self.columns, self.raws, self.order = columns, raws, order
        self.usable, self.kinds, self.answers, self.invoked = usable, kinds, answers, invoked
        self._parsed: dict[int, _Row] = {}  # rows parsed before the main pass, kept for it

    def row(self, j: int, last: bool = False) -> _Row:
        """Row ``j``; ``last``: the main pass, which asks for each row once, in order."""
        i = self.order[j]
        raw = self.raws[i]
        if self.usable[j]:
            return _Row(ColumnRecord(self.columns, i, raw, self.invoked[j]), raw, self.answers[self.kinds[j]])
        row = self._parsed.pop(j, None) if last else self._parsed.get(j)
        if row is None:
            row = _Row(orjson.loads(raw))
            if not last:
                self._parsed[j] = row
        return row

    def times(self) -> list[float]:
        times = self.columns[_TIME]
        return [times[i] / 1e9 for i in self.order]

    def event(self, j: int, row: _Row) -> _LazyEvent:
        i = self.order[j]
        return _LazyEvent(row, self.columns[_ID][i], self.columns[_TIME][i] / 1e9)


class _LazyEvent:
    """A row's ``Event``, made when a rule first needs it (most rows make no hit)."""

    __slots__ = ("row", "id", "time", "_event")

    def __init__(self, row: _Row, event_id: str, time: float):
        self.row, self.id, self.time, self._event = row, event_id, time, None

    @classmethod
    def of(cls, event: Event) -> _LazyEvent:
        lazy = cls(None, event.id, event.time)
        lazy._event = event
        return lazy

    def __call__(self) -> Event:
        if self._event is None:
            self._event = Event(self.id, self.time, *self.row.ask(_event_fields))
        return self._event


class Detector:
    """Evaluates the rule table on batches of raw CloudTrail records (dicts).

    ``observe(records)`` returns the hits that are new in this batch; ``hits()`` every hit
    kept, newest first. Records already observed (by eventID) are skipped, so feeding the same
    events twice never makes a new hit; within a batch, records are taken in eventTime order.
    A burst that already fired takes later events of its window into the same hit (same id,
    more events); ``hits()`` shows it grown. First-seen rules learn from everything observed
    (feed the history first) and alert only after ``learning_seconds`` of a principal's (or an
    account's) own event time. Memory is bounded: ``max_hits`` hits, ``max_seen`` eventIDs,
    bursts and first-seen state capped per key. Thread-safe.

    >>> detector = Detector()
    >>> hits = detector.observe([{"eventID": "1", "eventTime": "2024-08-01T12:00:00Z",
    ...     "eventSource": "cloudtrail.amazonaws.com", "eventName": "StopLogging",
    ...     "userIdentity": {"type": "IAMUser", "userName": "mallory"}}])
    >>> [(h.rule_id, h.severity, h.principal) for h in hits]
    [('cloudtrail-stopped', 'critical', 'mallory')]
    """

    def __init__(
        self,
        rules: Sequence[Rule] = RULES,
        *,
        learning_seconds: float = DEFAULT_LEARNING_SECONDS,
        max_hits: int = DEFAULT_MAX_HITS,
        max_seen: int = DEFAULT_MAX_SEEN,
        late_seconds: float = DEFAULT_LATE_SECONDS,
        group_seconds: float = DEFAULT_GROUP_SECONDS,
    ):
        self.rules = tuple(rules)
        self.group_seconds = group_seconds
        self.learning_seconds = learning_seconds
        self.max_hits = max_hits
        self.max_seen = max_seen
        self.rejected = 0  # records without a usable eventID or eventTime
        self.errors: Counter = Counter()  # rule id -> records its matcher failed on (a bug, never raised)
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._hits: dict[str, Hit] = {}
        self._by_call: dict[tuple[str, str], list[Rule]] = defaultdict(list)
        self._generic: list[Rule] = []
        self._bursts: dict[str, BurstCounter] = {}
        # Per-event rules: their matches by one principal within ``group_seconds`` are one hit.
        self._groups: dict[str, Burst] = {}
        self._first_seen: list[tuple[Rule, FirstSeenTracker]] = []
        self._correlations: list[tuple[Rule, object]] = []
        for rule in self.rules:
            if rule.first_seen is not None:
                self._first_seen.append((rule, FirstSeenTracker(rule.first_seen, learning_seconds)))
            elif rule.correlate is not None:
                self._correlations.append((rule, rule.correlate()))
            else:
                events = getattr(rule.match, "events", None)
                if events:
                    for call in events:
                        self._by_call[call].append(rule)
                else:
                    self._generic.append(rule)
                burst = rule.burst
                if burst is None and group_seconds > 0:
                    burst = self._groups[rule.id] = Burst(principal_key, int(group_seconds), 1, what="matching calls")
                if burst is not None:
                    self._bursts[rule.id] = BurstCounter(burst, horizon=burst.window + late_seconds)

    # -- public --------------------------------------------------------------------------------
    def observe(self, records: Iterable[dict | bytes]) -> list[Hit]:
        """The hits this batch made new, in time order (bursts as they stand after the batch);
        a record is a parsed dict or its raw JSON."""
        with self._lock:
            batch = []
            for record in records:
                prepared = self._prepare(record)
                if prepared is not None:
                    batch.append(prepared)
            batch.sort(key=lambda pair: pair[1].time)
            everything = (self._generic, self._first_seen, self._correlations)
            return self._run((_Row(record), _LazyEvent.of(event), everything) for record, event in batch)

    def observe_batch(self, batch: Batch, positions: Sequence[int] | None = None) -> list[Hit]:
        """``observe`` for normalised events (``metrics.events.Batch``): the same hits, read from
        the columns where they can be and from a row's raw JSON only where a rule needs more.
        ``positions`` are the rows to observe, those the engine took as new (it drops duplicates
        itself, so the detector forgets the eventIDs it kept); without them every row is observed
        once by eventID, as ``observe`` does."""
        with self._lock:
            columns, raws = batch.columns, batch.raws
            ids, times = columns[_ID], columns[_TIME]
            if positions is None:
                order = self._unseen(ids)
            else:  # the engine remembers what it has seen: eventIDs kept before (a replay) are let go
                order = [int(i) for i in positions]
                self._seen.clear()
            order.sort(key=times.__getitem__)  # stable: events of one moment keep the batch's order
            usable = np.fromiter((readable(raws[i]) for i in order), dtype=bool, count=len(order))
            view = ColumnView(columns, np.asarray(order, dtype=np.intp))
            facts = np.fromiter((shared_facts(raws[i]) for i in order), dtype=np.int64, count=len(order))
            invoked = [invoked_by(raws[i]) for i in order]
            if len(order):
                tagged = np.empty(len(order), dtype=object)
                tagged[:] = [(value,) for value in invoked]  # ABSENT and UNREAD apart from any text
                codes = pd.factorize(tagged)[0]
                facts = facts * (int(codes.max()) + 1) + codes
            kinds, count = view.kinds(facts)
            answers = [{} for _ in range(count)]
            rows = _BatchRows(columns, raws, order, usable, kinds, answers, invoked)
            first = self._first_seen_over(rows)
            return self._run(self._rows(rows, view), first)

    def _rows(self, rows: _BatchRows, view: ColumnView):
        """(row, event, the rules it may concern) of each position; first-seen is learned apart."""
        gates, concerns = self._concerns(view, rows.usable)
        for j, gate in enumerate(gates.tolist()):
            row = rows.row(j, last=True)
            yield row, rows.event(j, row), concerns[gate]

    def _first_seen_over(self, rows: _BatchRows) -> list[Hit]:
        """The first-seen rules over a batch's rows, each key and value worked out once per kind
        of row where the columns answer it (``FirstSeenTracker.learn_many``)."""
        out = []
        firsts = np.unique(rows.kinds, return_index=True)[1].tolist() if len(rows.kinds) else []
        times = rows.times()
        for rule, tracker in self._first_seen:
            spec = tracker.spec
            per_kind: dict[int, tuple] = {}  # kind -> (key, value), for the kinds whose columns answer
            for j in firsts:
                if not rows.usable[j]:
                    continue
                row = rows.row(j)
                try:
                    key = row.ask(spec.key)
                    value = row.ask(spec.value) if key else None
                except Exception:  # counted with the row below
                    continue
                if spec.key in row.shared and (not key or spec.value in row.shared):
                    per_kind[int(rows.kinds[j])] = (key, value)
            picked, keys, values = [], [], []
            for j, kind in enumerate(rows.kinds.tolist()):
                known = per_kind.get(kind)
                if known is None:
                    row = rows.row(j)
                    try:
                        key = row.ask(spec.key)
                        known = (key, row.ask(spec.value) if key else None)
                    except Exception:
                        self.errors[rule.id] += 1
                        continue
                if known[0]:
                    picked.append(j)
                    keys.append(known[0])
                    values.append(known[1])
            for i, (key, value, age), known in tracker.learn_many(keys, values, [times[j] for j in picked]):
                j = picked[i]
                summary = (
                    f"{short(key, 120)}: first {spec.what} {short(value, 100)} after {age / 3600:.1f} h"
                    f" of activity ({known - 1} known before)"
                )
                event = rows.event(j, rows.row(j))()
                out.append(self._hit(rule, hit_id(rule.id, key, value), [event], summary))
        return out

    def _concerns(self, view: ColumnView, usable: np.ndarray):
        """Per row, an index into a list of (generic rules, correlations) whose gates it passes;
        a row the columns cannot stand for passes every gate (its rules decide on the record)."""
        gated = [*(getattr(rule.match, "gate", None) for rule in self._generic)]
        gated += [getattr(correlation, "gate", None) for _, correlation in self._correlations]
        passed = np.ones((view.size, max(1, len(gated))), dtype=bool)
        for k, gate in enumerate(gated):
            if gate is not None:
                passed[:, k] = gate.mask(view) | ~usable
        kinds, inverse = np.unique(passed, axis=0, return_inverse=True)
        split = len(self._generic)
        concerns = [
            (
                [rule for rule, on in zip(self._generic, kind[:split]) if on],
                (),
                [pair for pair, on in zip(self._correlations, kind[split:]) if on],
            )
            for kind in kinds.tolist()
        ]
        return inverse.reshape(-1), concerns

    def _unseen(self, ids: list[str]) -> list[int]:
        out = []
        seen = self._seen
        for i, event_id in enumerate(ids):
            if event_id in seen:
                continue
            seen[event_id] = None
            if len(seen) > self.max_seen:
                seen.popitem(last=False)
            out.append(i)
        return out

    def _run(self, rows: Iterable[tuple[_Row, Event, tuple]], found: Iterable[Hit] = ()) -> list[Hit]:
        """Every rule over the rows, in their order (the caller's time order), and the hits
        ``found`` apart."""
        new: dict[str, None] = {}
        touched: dict[int, tuple[Rule, Window, bool]] = {}  # bursts fired or grown in this batch
        for hit in found:
            if hit.id not in self._hits:
                new[hit.id] = None
                self._hits[hit.id] = hit
        for row, event, (generic, first_seen, correlations) in rows:
            for hit in self._safely(row, event, touched, generic, first_seen, correlations):
                if hit.id not in self._hits:
                    new[hit.id] = None
                    self._hits[hit.id] = hit
        for rule, window, fired in touched.values():
            hit = self._burst_hit(rule, window)
            if hit.id in self._hits:
                self._hits[hit.id] = hit  # grown
            elif fired:  # (a grown hit that was evicted stays evicted)
                new[hit.id] = None
                self._hits[hit.id] = hit
        out = [self._hits[i] for i in new if i in self._hits]
        self._trim()
        return sorted(out, key=lambda h: (h.time, h.rule_id, h.id))

    @property
    def remembered_ids(self) -> int:
        """EventIDs kept to skip records seen before (none when the engine says what is new)."""
        return len(self._seen)

    def hits(self) -> list[Hit]:
        """Every hit kept, newest first."""
        with self._lock:
            return sorted(self._hits.values(), key=lambda h: (h.time, h.id), reverse=True)

    # -- internals -----------------------------------------------------------------------------
    def _prepare(self, record: object) -> tuple[dict, Event] | None:
        if isinstance(record, bytes | bytearray | memoryview):
            # The columnar ingest hands over the stored raw JSON, not a parsed record.
            try:
                record = orjson.loads(record)
            except orjson.JSONDecodeError:
                self.rejected += 1
                return None
        if not isinstance(record, dict):
            self.rejected += 1
            return None
        event_id = record.get("eventID")
        if not isinstance(event_id, str) or not event_id or len(event_id) > 128:
            self.rejected += 1
            return None
        if event_id in self._seen:
            return None
        try:
            time = parse_event_time(record.get("eventTime")) / 1e9
        except RejectedRecord:
            self.rejected += 1
            return None
        self._seen[event_id] = None
        if len(self._seen) > self.max_seen:
            self._seen.popitem(last=False)
        return record, Event(event_id, time, *_event_fields(record))

    def _safely(self, row: _Row, event: _LazyEvent, touched: dict, generic, first_seen, correlations) -> list[Hit]:
        """The rules' hits for one record; a rule that fails on it is counted and skipped, so
        that one odd record never stops detection. Each rule is asked with the row's columns
        first and, if they cannot answer it (``NeedsRecord``, raised before the rule changes
        any state), again with the parsed record."""
        out = []
        covered = False  # by a hit of a call-specific rule: a catch-all rule leaves the record to it
        for rule in self._by_call.get(row.ask(_call), ()):
            try:
                covered |= self._match(rule, row, event, touched, out)
            except Exception:  # counted in ``errors``; the tests keep it empty
                self.errors[rule.id] += 1
        for rule in generic:
            if covered and rule.catch_all:
                continue
            try:
                self._match(rule, row, event, touched, out)
            except Exception:
                self.errors[rule.id] += 1
        for rule, tracker in first_seen:
            try:
                out.extend(self._first(rule, tracker, row, event))
            except Exception:
                self.errors[rule.id] += 1
        for rule, correlation in correlations:
            try:
                try:
                    found_all = correlation.observe(row.record, event())
                except NeedsRecord:
                    found_all = correlation.observe(row.parsed(), event())
                for found in found_all:
                    out.append(self._hit(rule, hit_id(rule.id, found.key), found.events, found.summary, found.severity))
            except Exception:
                self.errors[rule.id] += 1
        return out

    def _match(self, rule: Rule, row: _Row, event: _LazyEvent, touched: dict, out: list[Hit]) -> bool:
        """Adds the rule's hit for the record to ``out``; True when the record is in a hit of it
        (a burst still below its threshold holds it pending: False)."""
        summary = row.ask(rule.match)
        severity = title = None
        if isinstance(summary, Outcome):
            summary, severity, title = summary
        if summary is None:
            return False
        counter = self._bursts.get(rule.id)
        if counter is None:
            out.append(self._hit(rule, hit_id(rule.id, event.id), [event()], summary, severity, title))
            return True
        burst = counter.burst
        key = row.ask(burst.key)
        if key is None:
            return False
        values = tuple(row.ask(burst.distinct)) if burst.distinct is not None else ()
        result = counter.add(key, event(), summary, values, severity, title)
        if result is None:
            return False
        window, fired_now = result
        previous = touched.get(id(window))
        touched[id(window)] = (rule, window, fired_now or (previous is not None and previous[2]))
        return True

    def _first(self, rule: Rule, tracker: FirstSeenTracker, row: _Row, event: _LazyEvent) -> list[Hit]:
        spec = tracker.spec
        key = row.ask(spec.key)
        if not key:
            return []
        seen = tracker.learn(key, row.ask(spec.value), event.time)
        if seen is None:
            return []
        key, value, age = seen
        summary = (
            f"{short(key, 120)}: first {tracker.spec.what} {short(value, 100)} after {age / 3600:.1f} h"
            f" of activity ({tracker.known(key) - 1} known before)"
        )
        return [self._hit(rule, hit_id(rule.id, key, value), [event()], summary)]

    @staticmethod
    def _hit(
        rule: Rule,
        identifier: str,
        events: list[Event],
        summary: str,
        severity: str | None = None,
        title: str | None = None,
    ) -> Hit:
        lead = events[0]
        tools = {e.iac for e in events}
        return Hit(
            identifier,
            rule.id,
            title or rule.title,
            severity or rule.severity,
            rule.technique,
            min(e.time for e in events),
            tuple(dict.fromkeys(e.id for e in events)),
            lead.user,
            lead.ip,
            lead.account,
            lead.region,
            all(e.failed for e in events),
            summary,
            "" if "" in tools else ", ".join(sorted(tools)),
            rule.tags,
        )

    def _burst_hit(self, rule: Rule, window: Window) -> Hit:
        burst = self._bursts[rule.id].burst
        counted = len(window.values) if burst.distinct is not None else window.count
        top = window.summaries.most_common(3)
        listed = "; ".join(f"{text} (x{n})" if n > 1 else text for text, n in top)
        more = len(window.summaries) - len(top)
        if more > 0:
            listed += f"; and {more} more"
        if rule.id in self._groups and window.count == 1:
            summary = listed  # one call: its own summary
        elif rule.id in self._groups:
            summary = (
                f"{window.count} {burst.what} within {_duration(burst.window)} by {short(window.key, 120)}: {listed}"
            )
        else:
            summary = f"{counted} {burst.what} within {_duration(burst.window)} ({short(window.key, 120)}): {listed}"
        events = sorted(window.events, key=lambda e: (e.time, e.id))
        return self._hit(
            rule, hit_id(rule.id, window.key, window.start), events, summary, window.severity, window.title
        )

    def _trim(self) -> None:
        if len(self._hits) <= self.max_hits:
            return
        keep = sorted(self._hits.values(), key=lambda h: (h.time, h.id), reverse=True)[: self.max_hits]
        self._hits = {h.id: h for h in keep}


def _call(record: dict) -> tuple[str, str]:
    return text(record, "eventSource"), api_name(record)


def _event_fields(record: dict) -> tuple:
    """An ``Event``'s fields after its eventID and time."""
    return (
        user_of(record),
        account_of(record),
        text(record, "sourceIPAddress"),
        text(record, "awsRegion"),
        is_failed(record),
        iac_tool(record.get("userAgent")),
    )


def _duration(seconds: float) -> str:
    if seconds % 3600 == 0:
        hours = int(seconds // 3600)
        return f"{hours} h"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)} min"
    return f"{seconds:g} s"


def false_positives(records: Iterable[dict], rules: Sequence[Rule] = RULES, **settings) -> dict[str, int]:
    """Hits per rule id (every rule, zero included) on records taken to be benign."""
    detector = Detector(rules, max_hits=10**9, **settings)
    detector.observe(records)
    counts = dict.fromkeys((rule.id for rule in detector.rules), 0)
    for hit in detector.hits():
        counts[hit.rule_id] += 1
    return counts
