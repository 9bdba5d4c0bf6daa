"""Gaps in a pushed stream, read from the pull sources: the EventBridge queue carries only what
happened after its rule existed and what the queue still retains, so the stretch before the
first start, or of an outage longer than the retention, is read from LookupEvents (the
CloudTrail pollers, same rate limits) or the trail's S3 files.

A gap is read in a thread of its own so that the live stream never waits for a rate-limited
backfill. What it read goes to the collector with the gap's state at that point; the state
is saved only once the collector has ingested those records (``ingested``), so a restart
resumes a half-read gap without skipping anything.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from collectors.cloudtrail import Checkpoint, describe

MAX_BACKOFF = 300.0


@dataclass
class Gap:
    start: float
    end: float
    why: str
    opened_at: float
    closed_at: float | None = None
    progress: float = 0.0
    error: str = ""
    filler: dict = field(default_factory=dict)  # the filler's own resumable state

    @property
    def closed(self) -> bool:
        return self.closed_at is not None


class Gaps:
    """The gaps of one source: opened at start, read one after the other, closed when read."""

    def __init__(self, make_filler: Callable | None, saved: list[dict] = (), *, clock=time.time, keep_closed: int = 5):
        self._make_filler = make_filler
        self.clock = clock
        self.keep_closed = keep_closed
        self.items = [Gap(**g) for g in saved]
        self._saved = [dict(g) for g in saved]  # what the ingested records justify
        self._taken: list[dict] | None = None
        self._out: queue.Queue = queue.Queue(maxsize=2)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def open_gap(self, start: float, end: float, why: str) -> None:
        if end > start:
            gap = Gap(start, end, why, opened_at=self.clock())
            if self._make_filler is None:
                gap.error = "not filled: no backfill source is configured (INSIGHTS_EVENTBRIDGE_BACKFILL=none)"
            self.items.append(gap)
            self._saved = [asdict(g) for g in self.items]

    def open(self) -> bool:
        """Whether a gap is being read (one that nothing can fill does not hold anything up)."""
        return self._make_filler is not None and any(not g.closed for g in self.items)

    def start(self) -> None:
        if self._make_filler is not None and self.open():
            self._thread = threading.Thread(target=self._run, name="gap-fill", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()

    # -- the collector's side ---------------------------------------------------------------------
    def take(self) -> list:
        """The records read since the last call."""
        records = []
        while True:
            try:
                found, states = self._out.get_nowait()
            except queue.Empty:
                break
            records.extend(found)
            self._taken = states
        return records

    def ingested(self) -> None:
        if self._taken is not None:
            self._saved, self._taken = self._taken, None

    def checkpoints(self) -> list[dict]:
        closed = [g for g in self._saved if g.get("closed_at") is not None][-self.keep_closed :]
        return [g for g in self._saved if g.get("closed_at") is None] + closed

    def progress(self) -> float | None:
        open_gaps = [g for g in self.items if not g.closed]
        if not open_gaps or self._make_filler is None:
            return None
        return sum(g.progress for g in open_gaps) / len(open_gaps)

    def rows(self) -> list[dict]:
        unfilled = "open" if self._make_filler is not None else "not filled"
        return [asdict(g) | {"state": "closed" if g.closed else unfilled} for g in self.items]

    # -- the thread -------------------------------------------------------------------------------
    def _run(self) -> None:
        failures = 0
        for gap in [g for g in self.items if not g.closed]:
            filler = None
            while not self._stop.is_set() and not gap.closed:
                try:
                    if filler is None:
                        filler = self._make_filler(gap.start, gap.end, gap.filler or None)
                    records = filler.step(self.clock())
                    done = filler.done(self.clock())
                    gap.error, failures = "", 0
                except Exception as error:  # shown on Status; the gap stays open and is retried
                    failures += 1
                    gap.error = describe(error)
                    self._stop.wait(min(MAX_BACKOFF, 2.0 * 2 ** min(failures, 8)))
                    continue
                gap.progress = 1.0 if done else filler.progress()
                gap.filler = filler.state()
                if done:
                    gap.closed_at = self.clock()
                self._hand_over(records)
                if not records and not done:
                    self._stop.wait(1.0)  # waiting for late events to become visible

    def _hand_over(self, records: list) -> None:
        states = [asdict(g) for g in self.items]
        while not self._stop.is_set():
            try:
                self._out.put((records, states), timeout=1.0)
                return
            except queue.Full:
                continue


class LookupFill:
    """A gap read from LookupEvents by the CloudTrail pollers: [start, end] newest first, then,
    once CloudTrail has made late events visible (``settle`` after ``end``), the last
    ``settle`` seconds before ``end`` once more. The buffer drops what it already holds."""

    def __init__(self, pollers: list, start: float, end: float, settle: float, saved: dict | None = None):
        saved = saved or {}
        self.pollers, self.start, self.end, self.settle = pollers, start, end, settle
        self.phase = saved.get("phase", "history")
        points = saved.get("pollers", {})
        for poller in pollers:
            poller.overlap = 0  # each step reads the gap's end second only; the settle phase re-reads late events
            first = start if self.phase == "history" else end - settle
            poller.checkpoint = (
                Checkpoint(**points[poller.key])
                if poller.key in points
                else Checkpoint(backfill_start=first, backfill_end=end, live_until=end)
            )

    def step(self, now: float) -> list:
        if self.phase == "settle" and now < self.end + self.settle:
            return []
        records = []
        for poller in self.pollers:
            if poller.retry_at <= now and not poller.checkpoint.backfill_complete:
                try:
                    records.extend(poller.step(self.end))
                except Exception as error:  # one region failing never stops the others
                    poller.failed(error, now)
        if all(p.checkpoint.backfill_complete for p in self.pollers):
            if self.phase == "history" and self.settle > 0:
                self.phase = "settle"
                for poller in self.pollers:
                    poller.checkpoint = Checkpoint(backfill_start=self.end - self.settle, backfill_end=self.end)
                    poller.checkpoint.live_until = self.end
            else:
                self.phase = "done"
        failing = [p for p in self.pollers if p.health.state == "degraded"]
        if failing and not records:
            raise RuntimeError(f"{failing[0].key}: {failing[0].health.reason}")
        return records

    def done(self, now: float) -> bool:
        return self.phase == "done"

    def progress(self) -> float:
        share = sum(p.health.backfill_done for p in self.pollers) / max(1, len(self.pollers))
        return share * (0.9 if self.phase == "history" else 1.0)

    def state(self) -> dict:
        return {"phase": self.phase, "pollers": {p.key: asdict(p.checkpoint) for p in self.pollers}}


class S3Fill:
    """A gap read from the trail's S3 files: closed once every file that can hold an event of
    the gap has been delivered (S3's delivery window after ``end``) and read."""

    def __init__(self, source, end: float):
        self.source, self.end = source, end

    def step(self, now: float) -> list:
        return self.source.poll(now)

    def done(self, now: float) -> bool:
        mark = self.source.watermark(now)
        return mark is not None and mark >= self.end

    def progress(self) -> float:
        figures = self.source.progress
        total = figures.get("days_total") or 0
        return min(1.0, figures.get("days_done", 0) / total) if total else 0.0

    def state(self) -> dict:
        return {"seen": sorted(self.source.seen)}


def filler_for(values: dict) -> Callable | None:
    """What fills a gap under these settings: LookupEvents, the trail's S3 files, or nothing."""
    via = values["eventbridge_backfill"]
    if via == "none":
        return None
    from collectors import cloudtrail

    def lookup(start: float, end: float, saved: dict | None) -> LookupFill:
        sessions = cloudtrail.sessions_for(values["role_arns"])
        pollers = cloudtrail.build_pollers(sessions, regions=values["regions"], overlap=0)
        return LookupFill(pollers, start, end, values["overlap_minutes"] * 60, saved)

    def trail_files(start: float, end: float, saved: dict | None) -> S3Fill:
        from collectors import s3

        client = cloudtrail.sessions_for(values["role_arns"])[0].client("s3", config=cloudtrail.RETRY_CONFIG)
        source = s3.S3TrailSource(
            client,
            values["s3_bucket"],
            values["s3_prefix"],
            start=start,
            end=end,
            regions=values["regions"],
            seen=set((saved or {}).get("seen", [])),
        )
        return S3Fill(source, end)

    return trail_files if via == "s3" else lookup
