"""Analysts' decisions on detections, kept across restarts, and the analyses the collector runs."""

from __future__ import annotations

import json
import time

from collectors.analyses import Detections, ScoreAlerts
from collectors.collector import Collector
from metrics.detections import Detector
from metrics.engine import Engine
from metrics.triage import ANY_PRINCIPAL, Triage
from tests.conftest import batch_of, make_record

ROOT = {"type": "Root", "arn": "arn:aws:iam::111122223333:root", "accountId": "111122223333"}


def stop_logging(event_id: str, when: float, user: str = "mallory") -> dict:
    identity = {"type": "IAMUser", "arn": f"arn:aws:iam::111122223333:user/{user}", "userName": user}
    return make_record(
        event_id,
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when)),
        eventSource="cloudtrail.amazonaws.com",
        eventName="StopLogging",
        userIdentity=identity,
        readOnly=False,
    )


def test_decisions_survive_a_restart_and_rule_suppressions_cover_later_hits(tmp_path):
    path = tmp_path / "detections.json"
    hits = Detector().observe([stop_logging("s1", time.time() - 60), stop_logging("s2", time.time() - 30, "eve")])
    first, second = sorted(hits, key=lambda h: h.event_ids)
    triage = Triage(path)
    triage.acknowledge(first.id, "analyst")
    triage.suppress_rule(second.rule_id, "eve", "analyst")
    again = Triage(path)
    assert again.status(first) == "acknowledged"
    assert again.status(second) == "suppressed"
    later = Detector().observe([stop_logging("s3", time.time(), "eve")])[0]
    assert again.is_suppressed(later)  # a new hit of the same rule for the same principal
    again.lift_rule(second.rule_id, "eve")
    assert Triage(path).status(second) == "new"
    again.suppress_rule(first.rule_id, ANY_PRINCIPAL, "analyst")
    assert Triage(path).is_suppressed(first) and Triage(path).is_suppressed(later)
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_an_unreadable_decisions_file_is_reported_not_fatal(tmp_path):
    path = tmp_path / "detections.json"
    path.write_text("{broken")
    triage = Triage(path)
    assert "unreadable" in triage.load_error
    assert triage.suppressed_rules == []


class Sink:
    def __init__(self):
        self.hits, self.scores = [], []

    def submit_hit(self, hit):
        self.hits.append(hit)
        return True

    def submit_score(self, metric, window, score):
        self.scores.append((metric, window, score))
        return True


class Source:
    name = "test"

    def __init__(self, batches):
        self.batches = list(batches)

    def poll(self, now):
        return self.batches.pop(0) if self.batches else []

    def watermark(self, now):
        return now


def test_the_collector_alerts_new_unsuppressed_recent_hits_once(tmp_path):
    now = time.time()
    sink = Sink()
    triage = Triage(tmp_path / "d.json")
    detector = Detector()
    old = stop_logging("old", now - 7200)
    batches = [[stop_logging("a", now - 60), old], [stop_logging("a", now - 60)], [stop_logging("b", now - 30, "eve")]]
    collector = Collector(Source(batches), Engine(), analyses=[Detections(detector, triage, sink)])
    collector.poll_once(now)
    collector.poll_once(now + 1)  # the same event again: no new hit
    rule = detector.hits()[0].rule_id
    triage.suppress_rule(rule, "eve", "analyst")
    collector.poll_once(now + 2)  # a suppressed principal: kept, not alerted
    assert [h.event_ids for h in sink.hits] == [("a",)]  # "old" is history: shown, not alerted
    assert {h.event_ids for h in detector.hits()} == {("a",), ("old",), ("b",)}
    assert collector.analysis_errors == {}


def test_final_scores_over_the_threshold_are_handed_to_the_alerter_once():
    engine = Engine(retention_seconds=None)
    sink = Sink()
    alerts = ScoreAlerts(engine, sink)
    start = 1_722_587_400
    records = [
        make_record(f"e{i}", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + i))) for i in range(0, 3000, 7)
    ]
    engine.ingest(batch_of(records))
    engine.advance((start + 3000) * 1_000_000_000)
    alerts.advance(start + 3000)
    alerts.advance(start + 3000)
    windows = [w for _, w, _ in sink.scores]
    assert len(windows) == len(set(windows)) > 0
    assert all(engine.scorer.scores[w] == s for _, w, s in sink.scores)


def test_analysis_failures_are_recorded_and_the_events_kept():
    class Broken:
        def observe(self, records, columns):
            raise ValueError("boom")

        def advance(self, watermark, limit=None):
            pass

    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    collector = Collector(Source([[make_record("x", stamp)]]), Engine(), analyses=[Broken()])
    collector.poll_once()
    assert collector.analysis_errors == {"Broken": "ValueError: boom"}
    assert len(collector.engine.buffer) == 1
    assert json.dumps(collector.health.as_dict(), default=str)


def test_a_note_and_an_assignee_per_hit_survive_a_restart_and_empty_clears_them(tmp_path):
    path = tmp_path / "detections.json"
    triage = Triage(path, clock=lambda: 1000.0)
    triage.set_note("h1", "  Key rotated, user warned.  ", "analyst")
    triage.assign("h1", "carol", "analyst")
    again = Triage(path)
    assert again.note("h1") == "Key rotated, user warned."
    assert again.assignee("h1") == "carol"
    assert again.notes["h1"] == {"text": "Key rotated, user warned.", "by": "analyst", "at": 1000.0}
    again.set_note("h1", "", "analyst")
    again.assign("h1", " ", "analyst")
    assert Triage(path).note("h1") == "" and Triage(path).assignee("h1") == ""


def test_bulk_decisions_cover_every_hit_given_in_one_write(tmp_path):
    path = tmp_path / "detections.json"
    hits = Detector().observe([stop_logging(f"s{i}", time.time() - 60 + i, f"user{i}") for i in range(3)])
    triage = Triage(path)
    triage.acknowledge_many([h.id for h in hits[:2]], "analyst")
    triage.suppress_many([hits[2].id], "analyst")
    again = Triage(path)
    assert [again.status(h) for h in hits] == ["acknowledged", "acknowledged", "suppressed"]


def test_a_decisions_file_from_before_notes_and_assignees_still_loads(tmp_path):
    path = tmp_path / "detections.json"
    path.write_text(json.dumps({"acknowledged": {"h1": {"by": "a", "at": 1}}, "suppressed_hits": {}}))
    triage = Triage(path)
    assert triage.load_error is None
    assert "h1" in triage.acknowledged and triage.note("h1") == "" and triage.assignee("h1") == ""
    triage.set_note("h1", "checked", "a")
    saved = json.loads(path.read_text())
    assert saved["acknowledged"] == {"h1": {"by": "a", "at": 1}} and saved["notes"]["h1"]["text"] == "checked"
