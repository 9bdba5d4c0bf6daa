"""The engine: one event buffer, the running state of every pump, and the anomaly scorer,
kept consistent under one lock.

Sources call ``ingest`` with normalised batches and ``advance`` with their watermark (the
time before which they have delivered everything); readers call ``metric_frames`` or take a
buffer snapshot. Time always comes in as an argument.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import pandas as pd

from metrics.anomaly import PROVISIONAL_WINDOWS, AnomalyScorer, make_detector
from metrics.buffer import DAY_SECONDS, NS_PER_SECOND, EventBuffer, id_hashes
from metrics.events import Batch
from metrics.pumps import FRAME_COLUMNS, PUMPS, WindowCounts, aggregate
from metrics.state import WindowedCounts
from metrics.windows import to_timestamps, window_range, window_start

ANOMALY = "AnomalyScore"
TOTAL = "TotalCalls"
METRIC_NAMES = tuple(sorted([ANOMALY, *(p.name for p in PUMPS)]))


@dataclass(frozen=True)
class IngestResult:
    added: int
    duplicates: int
    expired: int
    columns: object = None  # the added events' EventColumns, for analyses beside the pumps
    # Positions in the batch of the events new to the engine: added, or too old to keep (expired;
    # the rule detections still learn from history). Each eventID once, duplicates left out.
    positions: np.ndarray | None = None


def _new_positions(batch: Batch, held, left_out: int) -> np.ndarray:
    """The positions of a batch's first occurrences of eventIDs that none of the ``held`` chunks
    (the buffer before the batch went in) holds: what the buffer did not count as duplicates.
    ``left_out``: the duplicates and expired events the buffer counted (none: every row)."""
    if not left_out:
        return np.arange(len(batch))
    ids = np.asarray(batch.column("eventID"), dtype=object)
    fresh = ~pd.Index(ids).duplicated(keep="first")
    hashes = id_hashes(ids)
    for chunk in held:
        wanted, rows = chunk.indexed().index.candidates(hashes)
        if len(wanted):
            stored = np.array(chunk.id_list(rows), dtype=object)
            fresh[wanted[stored == ids[wanted]]] = False
    return np.flatnonzero(fresh)


class Engine:
    def __init__(
        self,
        *,
        retention_seconds: float | None = DAY_SECONDS,
        anomaly_engine: str = "krcf",
        seed: int = 0,
        pumps=PUMPS,
        detector=None,
    ):
        self.buffer = EventBuffer(retention_seconds)
        self.pumps = pumps
        self.states = {p.name: WindowedCounts(p) for p in pumps}
        self.totals = self.states[TOTAL]
        self.scorer = AnomalyScorer(detector or make_detector(anomaly_engine, seed), step=self.totals.pump.step)
        self._lock = threading.RLock()

    def ingest(self, batch: Batch, now_ns: int | None = None) -> IngestResult:
        """Add a batch of normalised events; duplicates by eventID and events older than the
        retention window are counted and left out."""
        with self._lock:
            held = self.buffer.snapshot().chunks if len(batch) else ()
            result = self.buffer.append(batch, now_ns)
            positions = _new_positions(batch, held, result.duplicates + result.expired)
            if len(result.added):
                for pump in self.pumps:
                    self.states[pump.name].add(aggregate(result.added, pump))
            if now_ns is not None and self.buffer.retention_ns is not None:
                self._evict((now_ns - self.buffer.retention_ns) // NS_PER_SECOND)
            return IngestResult(len(result.added), result.duplicates, result.expired, result.added, positions)

    def add_windows(self, metric: str, counts: WindowCounts) -> None:
        """Counts already aggregated elsewhere (a query engine over a trail's S3 prefix, say)
        added as if their events had been ingested."""
        with self._lock:
            self.states[metric].add(counts)

    def replace_windows(self, metric: str, counts: WindowCounts, start: int, end: int) -> None:
        """Counts aggregated elsewhere that supersede every window of ``metric`` starting in
        [start, end) seconds: a query re-run over a period gives its whole new answer, and adding
        it would count twice. Windows the forest already learned keep their learned value."""
        with self._lock:
            self.states[metric].replace_range(start, end, counts)

    def expire(self, now_ns: int) -> None:
        """Drops the windows older than the retention. Ingest does it as events arrive; a
        source of windows counted elsewhere (Athena) ingests no event and calls this instead,
        or its windows would pile up for as long as the app runs."""
        with self._lock:
            if self.buffer.retention_ns is not None:
                self._evict((now_ns - self.buffer.retention_ns) // NS_PER_SECOND)

    def _evict(self, cutoff_s: int) -> None:
        for state in self.states.values():
            if state.first is not None and state.first < cutoff_s:
                state.evict_before(cutoff_s)
        self.scorer.forget_before(window_start(cutoff_s, self.totals.pump.step))

    def advance(self, watermark_ns: int, limit: int | None = None) -> int:
        """The source has delivered every event before ``watermark_ns``: let the forest
        learn the windows that ended by then. Returns how many windows were learned."""
        step = self.totals.pump.step
        until = window_start(watermark_ns // NS_PER_SECOND, step)
        with self._lock:
            return self.scorer.advance(self.totals.total, self.totals.first, until, limit)

    def finish(self) -> None:
        """Every event is in (batch use): learn the whole series."""
        with self._lock:
            if self.totals.last is not None:
                self.advance((self.totals.last + self.totals.pump.step) * NS_PER_SECOND)

    def _dense_span(self, start: int | None, end: int | None, dense_until: int | None) -> tuple[int, int] | None:
        """The windows a dense series covers: from the first window holding any event to the
        last, or to ``dense_until`` (the live edge) when given, cut to [start, end). Never past
        the live edge: a record dated ahead of it would otherwise stretch the series with
        windows of zeros up to its date."""
        totals = self.totals
        if totals.first is None:
            return None
        step = totals.pump.step
        first, last = totals.first, window_start(dense_until, step) if dense_until else totals.last
        if start is not None:
            first = max(first, window_start(start, step))
        if end is not None:
            last = min(last, window_start(end - 1, step))
        return (first, last) if first <= last else None

    def anomaly_frame(
        self, start: int | None = None, end: int | None = None, dense_until: int | None = None
    ) -> pd.DataFrame:
        with self._lock:
            span = self._dense_span(start, end, dense_until)
            windows = window_range(*span, self.totals.pump.step) if span else np.empty(0, dtype=np.int64)
            scores = [self.scorer.score(self.totals.total, w) for w in windows.tolist()]
        return pd.DataFrame(
            {
                "metric": ANOMALY,
                "window_start": to_timestamps(windows),
                "category": "",
                "subcategory": "",
                "value": np.array(scores, dtype=float),
            },
            columns=list(FRAME_COLUMNS),
        )

    def metric_frame(
        self, name: str, start: int | None = None, end: int | None = None, dense_until: int | None = None
    ) -> pd.DataFrame:
        """One metric's rows for windows starting in [start, end) seconds. Dense series run
        to ``dense_until`` when given (the present, for a live view)."""
        if name == ANOMALY:
            return self.anomaly_frame(start, end, dense_until)
        with self._lock:
            state = self.states[name]
            span = self._dense_span(start, end, dense_until) if state.pump.dense else None
            return state.frame(start, end, span)

    def binned_totals(
        self, name: str, start: int, end: int, seconds: int, dense_until: int | None = None
    ) -> pd.DataFrame:
        """A dense pump's counts summed into bins of ``seconds`` (a multiple of its window) for
        windows starting in [start, end), zero bins where it was quiet: the same sums as
        ``rebin(metric_frame(...))`` without a row per 10-second window, so months cost what
        their bins and their non-empty windows cost."""
        with self._lock:
            state = self.states[name]
            span = self._dense_span(start, end, dense_until)
            if span is None:
                return state.frame(start, end, None)
            windows, values = state.window_totals()
        inside = (windows >= span[0]) & (windows <= span[1])
        first, last = window_start(span[0], seconds), window_start(span[1], seconds)
        bins = np.arange(first, last + seconds, seconds, dtype=np.int64)
        sums = np.bincount((windows[inside] - first) // seconds, weights=values[inside], minlength=len(bins))
        return pd.DataFrame(
            {
                "metric": name,
                "window_start": to_timestamps(bins),
                "category": "",
                "subcategory": "",
                "value": sums[: len(bins)].astype(np.int64),
            },
            columns=list(FRAME_COLUMNS),
        )

    def scored_windows(self, start: int, end: int) -> pd.DataFrame:
        """The windows in [start, end) with a score above zero, sparse: learned ones and the
        provisional ones of the live edge. Quiet stretches of months cost nothing."""
        step = self.totals.pump.step
        with self._lock:
            scorer = self.scorer
            learned = [(w, v) for w, v in scorer.scores.items() if start <= w < end and v > 0]
            if scorer.next is not None:
                # Past the provisional stretch after the learned windows, nothing is scored.
                until = scorer.next + PROVISIONAL_WINDOWS * step
                tail = range(max(window_start(start, step), scorer.next), min(end, until), step)
                learned += [(w, s) for w in tail if (s := scorer.score(self.totals.total, w)) > 0]
        learned.sort()
        windows = np.array([w for w, _ in learned], dtype=np.int64)
        return pd.DataFrame(
            {
                "metric": ANOMALY,
                "window_start": to_timestamps(windows),
                "category": "",
                "subcategory": "",
                "value": np.array([v for _, v in learned], dtype=float),
            },
            columns=list(FRAME_COLUMNS),
        )

    def metric_frames(
        self, start: int | None = None, end: int | None = None, dense_until: int | None = None
    ) -> dict[str, pd.DataFrame]:
        return {name: self.metric_frame(name, start, end, dense_until) for name in METRIC_NAMES}

    def all_metrics(self) -> pd.DataFrame:
        """Every metric's every row, sorted by metric, window_start, category, subcategory."""
        frames = [f for f in self.metric_frames().values() if len(f)]
        if not frames:
            return pd.DataFrame(columns=list(FRAME_COLUMNS))
        return pd.concat(frames, ignore_index=True).sort_values(
            ["metric", "window_start", "category", "subcategory"], kind="stable", ignore_index=True
        )
