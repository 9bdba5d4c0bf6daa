"""Random Cut Forest scores per dimension: per service, per principal, per error code.

The total's forest (``metrics.anomaly``) follows the account as one series, where a burst
from one principal can be lost among everyone else's calls. Here each of the busiest keys of
a dimension gets a small forest of its own over its own series: calls per 1-minute window
(10-second counts of one key are too sparse to score), dense from the key's first window
(quiet windows are zeros), shingled and learned like the total once the watermark has passed.
A high score means this key's recent calls are unlike its own past; 0 means its forest has not
learned enough yet (a shingle, then the forest's warm-up: with krcf, a quarter of the sample
size, 64 windows by default).

The tracked keys of a dimension are its ``top_n`` busiest by calls over the last hour among
those with at least ``min_calls`` (a key calling a few times an hour is mostly zeros, and any
call of it looks rare), chosen again every ``reselect_every`` windows (empty places are filled
as soon as a window closes; a tracked key quiet for the last hour keeps its place while there
is room). A key chosen late still learns its series from its first window. A key that drops
out learns no window after that and keeps its forest for ``LINGER_SECONDS``; back within that
time it catches up on the windows it missed, later it starts again.

>>> import pandas as pd
>>> minutes = [m for m in range(180) for _ in range(60 if m == 150 else 5)]
>>> events = pd.DataFrame({
...     "eventTime": pd.to_datetime([60 * m for m in minutes], unit="s", utc=True),
...     "user": "alice",
... })
>>> dims = DimensionAnomalies(seed=1)
>>> dims.add(EventColumns.from_frame(events))
>>> dims.advance(180 * 60)  # every window before minute 180 is complete: points learned
180
>>> dims.top(0, 180 * 60, n=1)[["dimension", "key", "window_start", "calls"]].values.tolist()
[['principal', 'alice', Timestamp('1970-01-01 02:30:00+0000', tz='UTC'), 60]]

``contributors`` explains a high score from the events themselves: which APIs, addresses and
users of that key called more in that window than in an average window of the hour before.

Thread-safety: one lock. The collector calls ``add`` (or ``observe``) and ``advance``; pages
call ``scores``, ``top`` and ``contributors``. A long backlog is learned in steps, releasing
the lock between them, so readers never wait long.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from metrics.anomaly import ENGINES, AnomalyScorer, KrcfForest, make_detector
from metrics.buffer import DAY_SECONDS, EventColumns
from metrics.pumps import Pump, aggregate
from metrics.windows import NS_PER_SECOND, to_timestamps, window_start

DIMENSIONS = {"service": "eventSource", "principal": "user", "error": "errorCode"}
# What ``contributors`` breaks a window down by (less the dimension's own column).
CONTRIBUTOR_FIELDS = ("eventName", "sourceIPAddress", "user")
SELECTION_SECONDS = 3600  # keys are ranked by their calls over this long before the watermark
BASELINE_SECONDS = 3600  # a contributor's usual level: its mean per window over this long
LINGER_SECONDS = 3600  # a key that drops out keeps its forest this long
LEARN_CHUNK = 500  # points learned per hold of the lock
SWEEP_SLACK = 0.01  # forgotten windows are dropped once this share of the retention is stale

SCORE_COLUMNS = ["window_start", "key", "score", "calls"]
TOP_COLUMNS = ["dimension", "key", "window_start", "score", "calls"]
CONTRIBUTOR_COLUMNS = ["field", "value", "calls", "usual", "increase"]


@dataclass
class _Series:
    """One key's forest and where it stands."""

    scorer: AnomalyScorer
    first: int  # the key's first window: its dense series starts here
    dropped_at: int | None = None  # when it stopped being tracked (None: tracked)


class DimensionAnomalies:
    """Per-key anomaly scores for each of ``DIMENSIONS``.

    ``add`` takes new events' columns (late ones count in their own window), ``advance`` learns
    every closed window before the watermark, ``scores`` and ``top`` read final scores for
    learned windows and provisional ones (from the forest as it stands) after them. Windows
    older than ``retention_seconds`` before the watermark are forgotten (None keeps all).
    """

    def __init__(
        self,
        *,
        top_n: int = 10,
        step: int = 60,
        shingle_size: int = 10,
        anomaly_engine: str = "krcf",
        trees: int = 50,
        sample_size: int = 256,
        seed: int = 0,
        reselect_every: int = 60,
        retention_seconds: float | None = DAY_SECONDS,
        min_calls: int = 60,
    ) -> None:
        if anomaly_engine not in ENGINES:
            raise ValueError(f"unknown anomaly engine {anomaly_engine!r}; choose one of {sorted(ENGINES)}")
        if top_n < 1 or step < 1 or shingle_size < 1 or reselect_every < 1:
            raise ValueError("top_n, step, shingle_size and reselect_every must be positive")
        self.top_n = top_n
        self.step = step
        self.shingle_size = shingle_size
        self.anomaly_engine = anomaly_engine
        self.trees = trees
        self.sample_size = sample_size
        self.seed = seed
        self.reselect_every = reselect_every
        self.retention_seconds = retention_seconds
        self.min_calls = max(1, min_calls)
        self._pumps = {dim: Pump(f"dimension:{dim}", step, column) for dim, column in DIMENSIONS.items()}
        # Per dimension: window start -> key -> calls.
        self._counts: dict[str, dict[int, dict[str, int]]] = {dim: {} for dim in DIMENSIONS}
        # Per dimension: every key with a forest, tracked or lingering.
        self._series: dict[str, dict[str, _Series]] = {dim: {} for dim in DIMENSIONS}
        self._last: int | None = None  # the newest window holding any event
        self._until: int | None = None  # windows before this one are closed
        self._selected_at: int | None = None  # ``_until`` at the last full selection
        self._cutoff: int | None = None  # windows before this one are forgotten
        self._swept: int | None = None  # the cutoff when they were last dropped
        self._lock = threading.RLock()

    # -- writing (the collector) ---------------------------------------------------------

    def add(self, columns: EventColumns) -> None:
        """Count new events per window and key; each lands in the window of its eventTime."""
        if columns is None or not len(columns):
            return
        # Aggregation is pure: done before taking the lock.
        counted = {dim: aggregate(columns, pump) for dim, pump in self._pumps.items() if pump.category in columns.codes}
        newest = int(columns.times.max()) // NS_PER_SECOND
        with self._lock:
            cutoff = self._cutoff
            for dim, counts in counted.items():
                windows = self._counts[dim]
                for w, key, n in zip(counts.window.tolist(), counts.category.tolist(), counts.count.tolist()):
                    if key is None or (cutoff is not None and w < cutoff):
                        continue  # no value (errorCode: the call succeeded), or too old to keep
                    bucket = windows.get(w)
                    if bucket is None:
                        bucket = windows[w] = {}
                    bucket[key] = bucket.get(key, 0) + n
            last = window_start(newest, self.step)
            self._last = last if self._last is None else max(self._last, last)

    def observe(self, records: Sequence[dict], columns: EventColumns | None) -> None:
        """The collector's analysis hook: the new events' columns are all it needs."""
        if columns is not None:
            self.add(columns)

    def advance(self, watermark_s: int, limit: int | None = None) -> int:
        """Every event before ``watermark_s`` is in: learn each tracked key's windows that
        ended by then. Returns the points learned (at most ``limit`` when given)."""
        until = window_start(int(watermark_s), self.step)
        with self._lock:
            if self._until is None or until > self._until:
                self._until = until
                self._forget(until)
                self._select(until)
        learned = 0
        while limit is None or learned < limit:
            chunk = LEARN_CHUNK if limit is None else min(LEARN_CHUNK, limit - learned)
            with self._lock:
                done = self._learn(chunk)
            learned += done
            if done < chunk:
                break
        return learned

    def _learn(self, limit: int) -> int:
        learned = 0
        for dim in DIMENSIONS:
            for key, series in sorted(self._series[dim].items()):
                # A key that dropped out still learns the windows from before it did.
                until = self._until if series.dropped_at is None else min(self._until, series.dropped_at)
                if series.scorer.next is not None and series.scorer.next >= until:
                    continue
                learned += series.scorer.advance(self._counter(dim, key), series.first, until, limit - learned)
                if learned >= limit:
                    return learned
        return learned

    def _counter(self, dim: str, key: str) -> Callable[[int], int]:
        windows = self._counts[dim]

        def calls(w: int) -> int:
            bucket = windows.get(w)
            return bucket.get(key, 0) if bucket else 0

        return calls

    def _forget(self, until: int) -> None:
        if self.retention_seconds is None:
            return
        cutoff = window_start(until - int(self.retention_seconds), self.step)
        if self._cutoff is not None and cutoff <= self._cutoff:
            return
        self._cutoff = cutoff  # readers and ``add`` ignore older windows from now on
        # Dropping them scans every window and score, so it waits for a share of the retention.
        slack = max(self.step, int(self.retention_seconds * SWEEP_SLACK))
        if self._swept is not None and cutoff - self._swept < slack:
            return
        self._swept = cutoff
        for dim in DIMENSIONS:
            windows = self._counts[dim]
            for w in [w for w in windows if w < cutoff]:
                del windows[w]
            for series in self._series[dim].values():
                series.scorer.forget_before(cutoff)

    def _select(self, until: int) -> None:
        """Track each dimension's busiest keys: all afresh when a selection is due, else only
        into empty places."""
        due = self._selected_at is None or until - self._selected_at >= self.reselect_every * self.step
        if due:
            self._selected_at = until
        for dim in DIMENSIONS:
            series = self._series[dim]
            tracked = {k for k, s in series.items() if s.dropped_at is None}
            if due or len(tracked) < self.top_n:
                busiest = self._busiest(dim, until)
                if due:
                    # Keys quiet for the last hour keep their place while there is room.
                    quiet = sorted(tracked.difference(busiest))
                    chosen = busiest + quiet[: self.top_n - len(busiest)]
                    for key in quiet[self.top_n - len(busiest) :]:
                        series[key].dropped_at = until
                else:
                    chosen = [k for k in busiest if k not in tracked][: self.top_n - len(tracked)]
                for key in chosen:
                    if key in series:
                        series[key].dropped_at = None
                    else:
                        series[key] = self._start_series(dim, key)
            for key in [k for k, s in series.items() if s.dropped_at is not None]:
                if until - series[key].dropped_at >= LINGER_SECONDS:
                    del series[key]

    def _busiest(self, dim: str, until: int) -> list[str]:
        windows = self._counts[dim]
        calls: dict[str, int] = {}
        for w in range(window_start(until - SELECTION_SECONDS, self.step), until, self.step):
            for key, n in windows.get(w, {}).items():
                calls[key] = calls.get(key, 0) + n
        ranked = sorted((k for k, n in calls.items() if n >= self.min_calls), key=lambda k: (-calls[k], k))
        return ranked[: self.top_n]

    def _start_series(self, dim: str, key: str) -> _Series:
        windows = self._counts[dim]
        cutoff = self._cutoff
        first = min(w for w, bucket in windows.items() if key in bucket and (cutoff is None or w >= cutoff))
        # A stable seed per key, so that results do not depend on the order keys appear in.
        seed = (self.seed * 1_000_003 + zlib.crc32(f"{dim}\0{key}".encode())) % 2**31
        detector = make_detector(
            self.anomaly_engine,
            seed,
            num_trees=self.trees,
            sample_size=self.sample_size,
            shingle_size=self.shingle_size,
        )
        if isinstance(detector, KrcfForest):
            # A small forest is cheaper on one thread than spread over several (about a third
            # less CPU on two cores), and thirty of them must not crowd the collector's machine.
            detector.options["parallel_execution_enabled"] = False
        return _Series(AnomalyScorer(detector, step=self.step, shingle_size=self.shingle_size), first)

    # -- reading (the pages) -------------------------------------------------------------

    def tracked(self, dimension: str) -> list[str]:
        """The keys of ``dimension`` whose forests are learning, sorted by name."""
        _column_check(dimension)
        with self._lock:
            return sorted(k for k, s in self._series[dimension].items() if s.dropped_at is None)

    def scores(self, dimension: str, start: int, end: int) -> pd.DataFrame:
        """One row per key with a forest and window starting in [start, end) seconds, from the
        key's first window: ``window_start`` (UTC), ``key``, ``score``, ``calls``, sorted by
        window and key. Learned windows have their final score; windows after the watermark, up
        to the newest one holding any event, a provisional one (a key that dropped out has
        none). While ``advance`` is still learning a backlog, windows it has not reached score 0.
        """
        _column_check(dimension)
        rows_w: list[int] = []
        rows_k: list[str] = []
        rows_s: list[float] = []
        rows_c: list[int] = []
        with self._lock:
            low = window_start(int(start), self.step)
            high = window_start(int(end) - 1, self.step)
            if self._cutoff is not None:
                low = max(low, self._cutoff)
            for key, series in sorted(self._series[dimension].items()):
                scorer = series.scorer
                if scorer.start is None or self._last is None:
                    continue
                last = self._last if series.dropped_at is None else scorer.next - self.step
                calls = self._counter(dimension, key)
                for w in range(max(low, scorer.start), min(high, max(last, scorer.next - self.step)) + 1, self.step):
                    rows_w.append(w)
                    rows_k.append(key)
                    rows_s.append(self._score(scorer, calls, w))
                    rows_c.append(calls(w))
        frame = pd.DataFrame(
            {
                "window_start": to_timestamps(rows_w),
                "key": pd.Series(rows_k, dtype=object),
                "score": np.array(rows_s, dtype=float),
                "calls": np.array(rows_c, dtype=np.int64),
            },
            columns=SCORE_COLUMNS,
        )
        return frame.sort_values(["window_start", "key"], kind="stable", ignore_index=True)

    def _score(self, scorer: AnomalyScorer, calls: Callable[[int], int], w: int) -> float:
        if w < scorer.next:
            return scorer.scores.get(w, 0.0)  # learned: final
        if w < self._until:
            return 0.0  # complete but not learned yet: a backlog is being learned in steps
        return scorer.score(calls, w)  # provisional, cached by the scorer until it changes

    def top(self, start: int, end: int, n: int = 10, threshold: float | None = None) -> pd.DataFrame:
        """The ``n`` highest (dimension, key, window) scores in [start, end) across dimensions,
        at least ``threshold`` when given: highest first (ties: earlier window, then dimension
        and key)."""
        frames = [self.scores(dim, start, end).assign(dimension=dim) for dim in DIMENSIONS]
        frame = pd.concat([f for f in frames if len(f)] or [frames[0]], ignore_index=True)[TOP_COLUMNS]
        if threshold is not None:
            frame = frame[frame["score"] >= threshold]
        frame = frame.sort_values(
            ["score", "window_start", "dimension", "key"], ascending=[False, True, True, True], kind="stable"
        )
        return frame.head(n).reset_index(drop=True)

    def contributors(
        self,
        frame_of_events: pd.DataFrame,
        dimension: str,
        key: str,
        window_start: int | pd.Timestamp,
        n: int = 5,
        baseline_seconds: int = BASELINE_SECONDS,
    ) -> pd.DataFrame:
        """What rose in one window of one key: per value of each of ``CONTRIBUTOR_FIELDS`` but
        the dimension's own column, its ``calls`` in the window against its ``usual`` level
        (mean calls per window over the ``baseline_seconds`` before it), and the ``increase``.

        ``frame_of_events`` holds the events (``BufferSnapshot.frame``) of at least
        [window - baseline, window + step); the usual level divides by the baseline's whole
        number of windows. Only values that rose are listed, at most ``n`` per field, sorted
        by increase (ties: field, then value)."""
        column = _column_check(dimension)
        at = _seconds(window_start)
        at -= at % self.step
        empty = pd.DataFrame(columns=CONTRIBUTOR_COLUMNS)
        if frame_of_events.empty or column not in frame_of_events:
            return empty
        times = frame_of_events["eventTime"].astype("datetime64[ns, UTC]").array.asi8 // NS_PER_SECOND
        mine = np.asarray(frame_of_events[column].isin([key]), dtype=bool)
        in_window = mine & (times >= at) & (times < at + self.step)
        in_baseline = mine & (times >= at - baseline_seconds) & (times < at)
        baseline_windows = max(1, baseline_seconds // self.step)
        rows = []
        for field in CONTRIBUTOR_FIELDS:
            if field == column or field not in frame_of_events:
                continue
            values = frame_of_events[field]
            now = _value_counts(values[in_window])
            before = _value_counts(values[in_baseline])
            found = []
            for value, calls in now.items():
                usual = before.get(value, 0) / baseline_windows
                if calls > usual:
                    found.append((field, value, calls, usual, calls - usual))
            found.sort(key=lambda row: (-row[4], row[1]))
            rows.extend(found[:n])
        if not rows:
            return empty
        result = pd.DataFrame(rows, columns=CONTRIBUTOR_COLUMNS)
        result["field"] = pd.Categorical(result["field"], categories=list(CONTRIBUTOR_FIELDS), ordered=True)
        result = result.sort_values(["increase", "field", "value"], ascending=[False, True, True], kind="stable")
        result["field"] = result["field"].astype(object)
        result["calls"] = result["calls"].astype(np.int64)
        return result.reset_index(drop=True)


def _column_check(dimension: str) -> str:
    try:
        return DIMENSIONS[dimension]
    except KeyError:
        raise ValueError(f"unknown dimension {dimension!r}; choose one of {sorted(DIMENSIONS)}") from None


def _seconds(value: int | pd.Timestamp) -> int:
    if isinstance(value, pd.Timestamp):
        return int(value.timestamp())
    return int(value)


def _value_counts(values: pd.Series) -> dict[str, int]:
    counts = values.value_counts(dropna=True)
    return {str(k): int(v) for k, v in counts.items() if v > 0}
