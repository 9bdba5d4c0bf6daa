"""What the collector runs beside the pumps on each poll: rule detections (with alerts for
new hits) and alerts for unusual total volume. Each is an object with
``observe(records, columns)`` and ``advance(watermark_s)``; one that also has
``observe_batch(batch, positions)`` gets the poll's normalised ``Batch`` and the positions of
the rows the engine took as new instead."""

from __future__ import annotations

import time

from metrics.engine import Engine

ALERT_MAX_AGE = 3600  # hits from older history (a backfill, a restore) are shown, not alerted


class Detections:
    def __init__(self, detector, triage, alerter=None, clock=time.time):
        self.detector, self.triage, self.alerter, self.clock = detector, triage, alerter, clock

    def observe(self, records, columns) -> None:
        self._alert(self.detector.observe(records))

    def observe_batch(self, batch, positions) -> None:
        """The rules over the events the engine took as new (it drops the duplicates, so the
        detector keeps no eventIDs of its own), read from the batch's columns."""
        self._alert(self.detector.observe_batch(batch, positions))

    def _alert(self, hits) -> None:
        if self.alerter is None:
            return
        recent = self.clock() - ALERT_MAX_AGE
        for hit in hits:
            if hit.time >= recent and not self.triage.is_suppressed(hit):
                self.alerter.submit_hit(hit)

    def advance(self, watermark_s: int) -> None:
        pass


class ScoreAlerts:
    """Alerts once per window when the total's final anomaly score reaches the threshold."""

    def __init__(self, engine: Engine, alerter, clock=time.time):
        self.engine, self.alerter, self.clock = engine, alerter, clock
        self._checked: int | None = None

    def observe(self, records, columns) -> None:
        pass

    def advance(self, watermark_s: int) -> None:
        scorer = self.engine.scorer
        if scorer.next is None:
            return
        start = self._checked if self._checked is not None else scorer.next - ALERT_MAX_AGE
        for window in range(max(start, scorer.start or start), scorer.next, scorer.step):
            score = scorer.scores.get(window)
            if score is not None:
                self.alerter.submit_score("TotalCalls", window, score)
        self._checked = scorer.next
