"""The detections' backlog: a start's large polls are counted first and read by the rules
afterwards, from batches waiting on disk, with the same hits as reading them inline."""

from __future__ import annotations

import json
import os
import struct
import time

import pytest
import zstandard

from collectors import analyses
from collectors.analyses import Detections
from collectors.backlog import Spool
from collectors.collector import Collector
from collectors.files import FileSource
from metrics.detections import Detector
from metrics.engine import Engine
from metrics.triage import Triage
from tests.conftest import batch_of, make_record

MALLORY = {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/mallory", "userName": "mallory"}


def _records(count: int, start: float) -> list[dict]:
    """``count`` events a second apart, with a StopLogging and a DeleteTrail among them."""
    out = []
    for i in range(count):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + i))
        fields = {"userIdentity": MALLORY}
        if i % 40 == 7:
            fields.update(eventSource="cloudtrail.amazonaws.com", eventName="StopLogging", readOnly=False)
        elif i % 40 == 23:
            fields.update(eventSource="cloudtrail.amazonaws.com", eventName="DeleteTrail", readOnly=False)
        out.append(make_record(f"e{i:05d}", stamp, **fields))
    return out


def _hits(detector: Detector) -> list[tuple]:
    return [(h.id, h.rule_id, tuple(h.event_ids), h.summary) for h in detector.hits()]


def test_the_spool_gives_its_batches_back_in_order_and_forgets_a_previous_runs(tmp_path):
    (tmp_path / "00000000.batch").write_bytes(b"left by a process that stopped")
    spool = Spool(tmp_path)
    assert list(tmp_path.iterdir()) == []
    records = _records(30, time.time() - 600)
    first, second = batch_of(records[:10]), batch_of(records[10:])
    spool.put(first)
    spool.put(second)
    assert (len(spool), spool.events) == (2, 30)
    assert [spool.take().column("eventID"), spool.take().column("eventID")] == [
        first.column("eventID"),
        second.column("eventID"),
    ]
    assert spool.take() is None
    assert (len(spool), spool.events, list(tmp_path.iterdir())) == (0, 0, [])


def test_a_batch_that_cannot_be_read_back_is_counted_as_lost(tmp_path):
    spool = Spool(tmp_path)
    spool.put(batch_of(_records(5, time.time() - 600)))
    spool.put(batch_of(_records(3, time.time() - 600)))
    first, second = sorted(tmp_path.iterdir())
    first.write_bytes(b"bad")  # not even its header
    second.write_bytes(second.read_bytes()[:-10])  # the compressed records cut short
    with pytest.raises(struct.error):
        spool.take()
    with pytest.raises(zstandard.ZstdError):
        spool.take()
    assert (spool.events, spool.lost) == (0, 8)


def _detections(tmp_path, spool=True) -> Detections:
    return Detections(Detector(), Triage(tmp_path / "triage.json"), spool=Spool(tmp_path / "spool") if spool else None)


def test_batches_read_later_give_the_same_hits_as_read_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(analyses, "DEFER_FROM", 1)
    records = _records(400, time.time() - 3600)
    engine, inline = Engine(), Detector()
    waiting = _detections(tmp_path)
    for part in range(0, 400, 100):
        batch = batch_of(records[part : part + 100])
        result = engine.ingest(batch)
        inline.observe_batch(batch, result.positions)
        if part < 200:  # a backlog's polls wait; the ones after it wait behind them
            waiting.observe_later(batch, result.positions)
        else:
            waiting.observe_batch(batch, result.positions)
    assert waiting.detector.hits() == [] and waiting.waiting == 400
    steps = 0
    while waiting.catch_up():
        steps += 1
    assert (steps, waiting.waiting, waiting.lost) == (3, 0, 0)
    assert _hits(waiting.detector) == _hits(inline)
    assert {"cloudtrail-stopped", "cloudtrail-deleted"} <= {h.rule_id for h in inline.hits()}


def test_a_small_batch_is_read_at_once_and_a_duplicate_is_read_once(tmp_path):
    records = _records(50, time.time() - 600)
    engine, detections = Engine(), _detections(tmp_path)
    batch = batch_of(records)
    detections.observe_later(batch, engine.ingest(batch).positions)  # under DEFER_FROM: no wait
    assert detections.waiting == 0 and detections.detector.hits()
    again = engine.ingest(batch)  # read again: the engine takes none of it as new
    detections.observe_later(batch, again.positions)
    assert detections.waiting == 0


def test_a_disk_that_refuses_the_batch_has_the_rules_read_it_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(analyses, "DEFER_FROM", 1)
    detections = _detections(tmp_path)

    def refuse(batch):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(detections.spool, "put", refuse)
    batch = batch_of(_records(60, time.time() - 600))
    detections.observe_later(batch, range(len(batch)))
    assert detections.waiting == 0 and detections.lost == 0
    assert "No space left" in detections.spool_error
    assert detections.detector.hits()


def test_the_collector_counts_a_backlog_first_and_the_rules_read_it_between_polls(tmp_path, monkeypatch):
    monkeypatch.setattr(analyses, "DEFER_FROM", 1)
    records = _records(300, time.time() - 3600)
    folder = tmp_path / "in"
    folder.mkdir()
    for hour in range(3):  # three files of 100: a poll of 100 records each
        path = folder / f"hour-{hour}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records[hour * 100 : (hour + 1) * 100]))
        os.utime(path, (time.time() - 60, time.time() - 60))  # settled: read, not waited for
    engine = Engine()
    detections = _detections(tmp_path)
    collector = Collector(FileSource(str(folder), batch_records=100), engine, analyses=[detections])
    polls = 1
    collector.poll_once()
    while collector.more:
        collector.poll_once()
        polls += 1
    assert (polls, len(engine.buffer)) == (3, 300)  # every chart has every event
    assert detections.waiting == 300 and detections.detector.hits() == []
    while collector.catch_up():
        pass
    assert detections.waiting == 0 and collector.analysis_errors == {}
    expected = Detector()
    expected.observe(records)
    assert _hits(detections.detector) == _hits(expected)


def test_the_detections_page_says_the_rules_are_still_reading(start_app, tmp_path):
    from ui.runtime import runtime

    folder = tmp_path / "records"
    folder.mkdir()
    at = start_app("detections", source="files", files_path=folder)
    runtime().detections.spool.put(batch_of(_records(20, time.time() - 600)))
    at.run()
    assert not at.exception
    assert any("still reading the history loaded at start: 20 events to go" in i.value for i in at.info)
    at.switch_page("pages/status.py").run()
    assert any("20 events to go" in i.value for i in at.info)


def test_the_forests_learn_a_backlog_after_it_is_read_with_the_same_scores(tmp_path, monkeypatch):
    from metrics.dimensions import DimensionAnomalies

    monkeypatch.setattr(analyses, "DEFER_FROM", 1)
    start = time.time() - 6 * 3600
    records = [r for i, r in enumerate(_records(600, start)) if i % 3]  # about every 1.5 s over 15 minutes
    for i, record in enumerate(records):  # spread over six hours: windows for the forests to learn
        record["eventTime"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + i * 50))

    def run(folder_name: str, per_file: int):
        folder = tmp_path / folder_name
        folder.mkdir()
        for n, part in enumerate(range(0, len(records), per_file)):
            path = folder / f"part-{n}.jsonl"
            path.write_text("".join(json.dumps(r) + "\n" for r in records[part : part + per_file]))
            os.utime(path, (time.time() - 60, time.time() - 60))
        engine = Engine(retention_seconds=None)
        dimensions = DimensionAnomalies(top_n=3, retention_seconds=None, trees=10, sample_size=32)
        source = FileSource(str(folder), batch_records=per_file)
        collector = Collector(source, engine, analyses=[dimensions], retain_from_newest=True)
        learned_while_reading = []  # windows scored after each poll with more to read
        collector.poll_once()
        while collector.more:
            learned_while_reading.append(len(engine.scorer.scores))
            collector.poll_once()
        while collector.catch_up():
            pass
        return engine, dimensions, learned_while_reading

    backlog, backlog_dims, early = run("backlog", 100)
    whole, whole_dims, _ = run("whole", len(records))
    assert early == [0, 0, 0]  # four polls of 100: nothing learned while more of the backlog was to read
    assert backlog.scorer.scores and backlog.scorer.scores == whole.scorer.scores
    assert backlog_dims.top(0, 2**40, n=50).equals(whole_dims.top(0, 2**40, n=50))
