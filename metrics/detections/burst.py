"""Counting matching events per key within a sliding window of event time.

A burst fires when ``threshold`` events (or distinct values) of one key fall within
``window`` seconds, the window starting at the earliest of them. Events of the key inside the
window (or arriving late, less than a window before it) join the same hit rather than making
a new one, and so do later events while the count over the trailing window stays at or above
the threshold (with a threshold above one): one sustained spike is one hit. Once it drops
below, the next burst is a new hit. Events are placed by their own eventTime, so a late event
counts in the window it belongs to. A threshold of one groups the matches of a key: one hit
per window.
"""

from __future__ import annotations

import bisect
from collections import Counter, OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field

from metrics.detections.model import SEVERITY_RANK, Burst, Event

MAX_LINKED = 10_000  # events linked to one hit; more are counted but not listed
MAX_SUMMARIES = 50
MAX_VALUES = 10_000


@dataclass
class Window:
    """A fired burst: its key, start, latest event time, and what it holds so far."""

    key: Hashable
    start: float
    first: float = float("inf")
    last: float = float("-inf")
    events: list[Event] = field(default_factory=list)
    count: int = 0
    summaries: Counter = field(default_factory=Counter)
    values: set = field(default_factory=set)
    severity: str | None = None  # the most severe of its events' own severities, if any has one
    title: str | None = None

    def add(self, event: Event, summary: str, values: tuple[str, ...], severity=None, title=None) -> None:
        if severity is not None and (
            self.severity is None or SEVERITY_RANK[severity] > SEVERITY_RANK.get(self.severity, -1)
        ):
            self.severity, self.title = severity, title
        self.count += 1
        self.first = min(self.first, event.time)
        self.last = max(self.last, event.time)
        if len(self.events) < MAX_LINKED:
            self.events.append(event)
        if summary in self.summaries or len(self.summaries) < MAX_SUMMARIES:
            self.summaries[summary] += 1
        if len(self.values) < MAX_VALUES:
            self.values.update(values)


@dataclass
class _Entry:
    time: float
    event: Event
    summary: str
    values: tuple[str, ...]
    severity: str | None = None
    title: str | None = None
    window: Window | None = None  # None: pending, not part of a fired burst


@dataclass
class _KeyState:
    times: list[float] = field(default_factory=list)  # of ``entries``, sorted
    entries: list[_Entry] = field(default_factory=list)
    fired: list[Window] = field(default_factory=list)  # sorted by start
    newest: float = float("-inf")
    latest: dict = field(default_factory=dict)  # distinct value -> its latest time


class BurstCounter:
    """The bursts of one rule. ``add`` returns the window the event fired or joined, or None.

    Memory is bounded: events older than ``horizon`` seconds before the newest event of their
    key are forgotten, as are the least recently active keys beyond ``max_keys``.
    """

    def __init__(self, burst: Burst, horizon: float = 3600, max_keys: int = 20_000, max_entries: int = 10_000):
        self.burst = burst
        self.width = float(burst.window)
        self.horizon = max(float(horizon), self.width)
        self.max_keys = max_keys
        self.max_entries = max_entries
        self._keys: OrderedDict[Hashable, _KeyState] = OrderedDict()

    def add(
        self,
        key: Hashable,
        event: Event,
        summary: str,
        values: tuple[str, ...],
        severity: str | None = None,
        title: str | None = None,
    ) -> tuple[Window, bool] | None:
        """(window, fired now) when the event fired a burst or joined a fired one. ``severity``
        and ``title``: this event's own, when it is worse than its rule says."""
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _KeyState()
            if len(self._keys) > self.max_keys:
                self._keys.popitem(last=False)
        else:
            self._keys.move_to_end(key)
        t = event.time
        state.newest = max(state.newest, t)
        for value in values:
            if state.latest.get(value, float("-inf")) < t:
                state.latest[value] = t
        entry = _Entry(t, event, summary, values, severity, title)
        position = bisect.bisect_right(state.times, t)
        state.times.insert(position, t)
        state.entries.insert(position, entry)

        result = None
        window = self._joins(state, t)
        if window is not None:
            entry.window = window
            window.add(event, summary, values, severity, title)
            result = (window, False)
        elif self._may_fire(state, t):
            window = self._fire(key, state, t)
            if window is not None:
                result = (window, True)
        self._prune(state)
        return result

    def _joins(self, state: _KeyState, t: float) -> Window | None:
        """The fired window this event belongs to: inside it, or sustaining it."""
        for window in reversed(state.fired):
            if window.first - self.width < t < window.start + self.width:
                return window  # inside it, or arriving late just before it
            if (
                self.burst.threshold > 1
                and window.start <= t < window.last + self.width
                and self._count(state, t) >= self.burst.threshold
            ):
                return window
        return None

    def _count(self, state: _KeyState, t: float) -> int:
        """Events (or distinct values) of the key in the trailing window ending at ``t``."""
        since = t - self.width
        if self.burst.distinct is None:
            return bisect.bisect_right(state.times, t) - bisect.bisect_right(state.times, since)
        return sum(1 for seen in state.latest.values() if seen > since)

    def _may_fire(self, state: _KeyState, t: float) -> bool:
        """A cheap necessary condition, so that busy keys far below the threshold cost little."""
        threshold, width = self.burst.threshold, self.width
        if threshold <= 1:
            return True
        if self.burst.distinct is None:
            times = state.times
            return bisect.bisect_left(times, t + width) - bisect.bisect_right(times, t - width) >= threshold
        if len(state.latest) < threshold:
            return False
        return sum(1 for seen in state.latest.values() if seen > t - width) >= threshold

    def _fire(self, key: Hashable, state: _KeyState, t: float) -> Window | None:
        """The earliest window holding ``t`` whose pending events reach the threshold; its
        pending events join it."""
        times, entries, width = state.times, state.entries, self.width
        threshold, distinct = self.burst.threshold, self.burst.distinct is not None
        lo = bisect.bisect_right(times, t - width)
        last_start = bisect.bisect_right(times, t)
        counts: Counter = Counter()
        events = 0
        end = lo
        best = None
        for first in range(lo, last_start):
            while end < len(times) and times[end] < times[first] + width:
                if entries[end].window is None:
                    counts.update(entries[end].values)
                    events += 1
                end += 1
            if entries[first].window is not None:
                continue
            if (len(counts) if distinct else events) >= threshold:
                best = (first, end)
                break
            for value in entries[first].values:
                counts[value] -= 1
                if not counts[value]:
                    del counts[value]
            events -= 1
        if best is None:
            return None
        first, end = best
        window = Window(key, times[first])
        for entry in entries[first:end]:
            if entry.window is None:
                entry.window = window
                window.add(entry.event, entry.summary, entry.values, entry.severity, entry.title)
        bisect.insort(state.fired, window, key=lambda w: w.start)
        return window

    def _prune(self, state: _KeyState) -> None:
        oldest = state.newest - self.horizon
        cut = bisect.bisect_left(state.times, oldest)
        cut = max(cut, len(state.times) - self.max_entries)
        if cut > 0:
            del state.times[:cut]
            del state.entries[:cut]
        while state.fired and max(state.fired[0].start, state.fired[0].last) + self.width < oldest:
            state.fired.pop(0)
        if len(state.latest) > MAX_VALUES:
            state.latest = {v: seen for v, seen in state.latest.items() if seen >= oldest}
