"""What the collector runs beside the pumps on each poll: rule detections (with alerts for
new hits) and alerts for unusual total volume. Each is an object with
``observe(records, columns)`` and ``advance(watermark_s, limit)`` (``limit``: at most so many
windows learned, 0 while a backlog is read); one that also has
``observe_batch(batch, positions)`` gets the poll's normalised ``Batch`` and the positions of
the rows the engine took as new instead."""

from __future__ import annotations

import time

import numpy as np

from metrics.engine import Engine

ALERT_MAX_AGE = 3600  # hits from older history (a backfill, a restore) are shown, not alerted
DEFER_FROM = 5_000  # events in a batch of a backlog; fewer take the rules well under a second


class Detections:
    """The rules over each poll. With a ``spool`` (``collectors.backlog.Spool``), the batches
    of a backlog (``observe_later``: a start's large polls, a restore) wait on disk until
    ``catch_up`` reads them between polls, so that the charts do not wait for the rules; a poll
    arriving meanwhile waits behind them, so the rules see every event in the order read."""

    def __init__(self, detector, triage, alerter=None, clock=time.time, spool=None):
        self.detector, self.triage, self.alerter, self.clock = detector, triage, alerter, clock
        self.spool = spool
        self.spool_error: str | None = None  # the spool's last failure, for the Status page

    @property
    def waiting(self) -> int:
        """Events read but not through the rules yet."""
        return self.spool.events if self.spool is not None else 0

    @property
    def lost(self) -> int:
        """Events the rules never read: their batch could not be read back from the spool."""
        return self.spool.lost if self.spool is not None else 0

    def observe(self, records, columns) -> None:
        self._alert(self.detector.observe(records))

    def observe_batch(self, batch, positions) -> None:
        """The rules over the events the engine took as new (it drops the duplicates, so the
        detector keeps no eventIDs of its own), read from the batch's columns."""
        if self.waiting:
            self.observe_later(batch, positions)
        else:
            self._alert(self.detector.observe_batch(batch, positions))

    def observe_later(self, batch, positions) -> None:
        if self.spool is None or positions is None or (len(positions) < DEFER_FROM and not self.waiting):
            self._alert(self.detector.observe_batch(batch, positions))
            return
        # (Every row new, the usual case: the positions are all of them, in order.)
        new = batch if len(positions) == len(batch) else batch.select(np.asarray(positions).tolist())
        if not len(new):
            return
        try:
            self.spool.put(new)
        except OSError as error:  # a full disk: read now, later charts rather than lost events
            self.spool_error = f"{type(error).__name__}: {error}"
            self._alert(self.detector.observe_batch(new, range(len(new))))

    def catch_up(self) -> bool:
        """Reads one waiting batch; returns whether some remain."""
        if not self.waiting:
            return False
        try:
            batch = self.spool.take()
        except Exception as error:  # shown with the count: the events are in the buffer, not in the rules
            self.spool_error = f"{type(error).__name__}: {error}"
        else:
            self._alert(self.detector.observe_batch(batch, range(len(batch))))
        return bool(self.waiting)

    def _alert(self, hits) -> None:
        if self.alerter is None:
            return
        recent = self.clock() - ALERT_MAX_AGE
        for hit in hits:
            if hit.time >= recent and not self.triage.is_suppressed(hit):
                self.alerter.submit_hit(hit)

    def advance(self, watermark_s: int, limit: int | None = None) -> None:
        pass


class ScoreAlerts:
    """Alerts once per window when the total's final anomaly score reaches the threshold."""

    def __init__(self, engine: Engine, alerter, clock=time.time):
        self.engine, self.alerter, self.clock = engine, alerter, clock
        self._checked: int | None = None

    def observe(self, records, columns) -> None:
        pass

    def advance(self, watermark_s: int, limit: int | None = None) -> None:
        scorer = self.engine.scorer
        if scorer.next is None:
            return
        start = self._checked if self._checked is not None else scorer.next - ALERT_MAX_AGE
        for window in range(max(start, scorer.start or start), scorer.next, scorer.step):
            score = scorer.scores.get(window)
            if score is not None:
                self.alerter.submit_score("TotalCalls", window, score)
        self._checked = scorer.next
