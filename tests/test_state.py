"""What survives a restart, and what keeps the collector alive."""

from __future__ import annotations

import threading
import time

import pytest

from collectors.collector import Collector
from collectors.state import StateStore
from metrics.engine import Engine
from settings import load
from tests.conftest import batch_of, make_record
from ui.runtime import build


class Source:
    name = "test"

    def __init__(self, records=(), checkpoints=None):
        self.records, self._checkpoints = list(records), checkpoints or {}

    def poll(self, now):
        records, self.records = self.records, []
        return records

    def watermark(self, now):
        return None

    def checkpoints(self):
        return dict(self._checkpoints)


def test_state_round_trips_events_and_checkpoints(tmp_path):
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    engine = Engine()
    source = Source([make_record(f"e{i}", stamp) for i in range(5)], {"acct/us-east-1": {"live_until": 5.0}})
    collector = Collector(source, engine, store=StateStore(tmp_path, "test"), save_every=0)
    collector.poll_once()
    again = StateStore(tmp_path, "test")
    restored = Engine()
    assert again.restore(restored) == 5
    assert again.checkpoints() == {"acct/us-east-1": {"live_until": 5.0}}
    assert StateStore(tmp_path, "other").checkpoints() == {}  # another source's progress is not ours
    assert restored.buffer.raw_record("e3") == engine.buffer.raw_record("e3")


def test_a_damaged_snapshot_or_checkpoint_file_is_reported_not_fatal(tmp_path):
    (tmp_path / "buffer.parquet").write_bytes(b"PAR1 not really")
    (tmp_path / "checkpoints.json").write_text("{not json")
    store = StateStore(tmp_path, "test")
    assert store.restore(Engine()) == 0
    assert "snapshot unreadable" in store.last_error
    assert store.checkpoints() == {}
    assert "checkpoints unreadable" in store.last_error


def test_a_failed_save_is_shown_and_collection_goes_on(tmp_path):
    blocker = tmp_path / "collector"
    blocker.write_text("a file where the folder should be")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    collector = Collector(Source([make_record("a", stamp)]), Engine(), store=StateStore(blocker, "test"), save_every=0)
    collector.poll_once()
    assert collector.store.last_error
    assert len(collector.engine.buffer) == 1


class Failing(Source):
    def poll(self, now):
        raise FileNotFoundError("no such folder")


class Fatal(BaseException):
    pass


class Dying(Source):
    def poll(self, now):
        raise Fatal("out of memory, say")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the death we cause
def test_a_dead_collector_thread_is_started_again_and_counted():
    collector = Collector(Dying(), Engine(), interval=0.01)
    collector.start()
    collector._thread.join(5)
    assert not collector.alive
    assert collector.health.last_death == "Fatal: out of memory, say"
    assert collector.ensure_running() is True
    assert collector.health.restarts == 1
    collector.stop()
    assert collector.ensure_running() is False  # stopped on purpose: left alone


def test_cloudtrail_without_credentials_is_a_failed_poll_not_a_crash(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    values = load({"INSIGHTS_SOURCE": "cloudtrail", "INSIGHTS_STATE_DIR": str(tmp_path)})
    shared = build(values)
    with pytest.raises(Exception, match="credentials"):
        shared.collector.poll_once()
    shared.collector.record_error(RuntimeError("Unable to locate credentials"))
    assert shared.collector.health.consecutive_errors == 1
    assert shared.collector.source.region_health() == []


def test_the_warm_up_and_first_poll_run_in_the_thread_and_readiness_follows_them(tmp_path):
    from collectors.readiness import Readiness

    release = threading.Event()
    readiness = Readiness(tmp_path / "ready.json")
    readiness.write(ready=False)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    collector = Collector(
        Source([make_record("a", stamp)]),
        Engine(),
        interval=3600,
        warm_up=lambda c: release.wait(10),
        on_ready=lambda: readiness.write(ready=True),
    )
    began = time.monotonic()
    collector.start()
    assert time.monotonic() - began < 1  # nothing slow before the thread
    assert collector.starting in ("Starting the collector", "Restoring the saved history")
    assert not collector.ready.is_set()
    assert readiness.check() == (False, "starting: restoring the saved history and reading the first events")
    release.set()
    assert collector.wait_ready(10)
    assert collector.starting is None and len(collector.engine.buffer) == 1  # the first poll is in
    assert readiness.check() == (True, "ready")
    collector.stop()


def test_a_readiness_file_left_by_another_process_is_not_ready(tmp_path):
    from collectors.readiness import Readiness, main

    path = tmp_path / "ready.json"
    path.write_text('{"ready": true, "pid": 999999999, "started": "1", "at": 0}')  # no such process
    ready, why = Readiness(path).check()
    assert not ready and "is gone" in why
    assert main(["--state-dir", str(tmp_path / "nowhere")]) == 1


def test_a_failing_first_poll_still_makes_the_collector_ready_and_is_counted():
    collector = Collector(Failing(), Engine(), interval=3600)
    collector.start()
    assert collector.wait_ready(10)
    assert collector.health.errors == 1 and "no such folder" in collector.health.last_error
    collector.stop()


def test_a_restart_restores_the_saved_events_and_the_detections_baseline_in_the_thread(tmp_path):
    from ui.runtime import build

    values = load(
        {"INSIGHTS_SOURCE": "files", "INSIGHTS_FILES_PATH": str(tmp_path / "in"), "INSIGHTS_STATE_DIR": str(tmp_path)}
    )
    (tmp_path / "in").mkdir()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 120))
    first = build(values)
    first.engine.ingest(batch_of([make_record(f"e{i}", stamp) for i in range(3)]))
    first.collector.store.save(first.engine, first.collector.source)
    again = build(values)
    assert len(again.engine.buffer) == 0  # built without reading the snapshot
    again.collector.start()
    assert again.collector.wait_ready(30)
    assert len(again.engine.buffer) == 3
    assert again.detector.observe([make_record("e1", stamp)]) == []  # already seen in the baseline
    assert (tmp_path / "ready.json").exists()
    again.collector.stop()


def test_a_restart_gives_the_detections_the_same_hits_from_the_restored_columns(tmp_path):
    from metrics.detections import Detector

    values = load(
        {"INSIGHTS_SOURCE": "files", "INSIGHTS_FILES_PATH": str(tmp_path / "in"), "INSIGHTS_STATE_DIR": str(tmp_path)}
    )
    (tmp_path / "in").mkdir()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 120))
    records = [make_record(f"e{i}", stamp) for i in range(3)]
    records.append(make_record("stop", stamp, eventSource="cloudtrail.amazonaws.com", eventName="StopLogging"))
    records.append(make_record("delete", stamp, eventSource="cloudtrail.amazonaws.com", eventName="DeleteTrail"))
    first = build(values)
    first.engine.ingest(batch_of(records))
    first.collector.store.save(first.engine, first.collector.source)
    again = build(values)
    again.collector.start()
    assert again.collector.wait_ready(30)
    deadline = time.monotonic() + 30  # the rules read the restored events behind the charts
    while again.detections.waiting and time.monotonic() < deadline:
        time.sleep(0.05)
    again.collector.stop()
    assert again.detections.waiting == 0
    expected = Detector(again.detector.rules)
    expected.observe(records)
    restored = [(h.id, h.rule_id, tuple(h.event_ids)) for h in again.detector.hits()]
    assert restored == [(h.id, h.rule_id, tuple(h.event_ids)) for h in expected.hits()]
    assert {"cloudtrail-stopped"} <= {rule for _, rule, _ in restored}


def test_a_restart_over_last_years_files_keeps_them(tmp_path):
    """The files source counts the retention back from the newest event read; so must a
    restore, or a restart drops a folder of last year's trail that the first start showed."""
    import json

    from ui.runtime import build

    values = load(
        {"INSIGHTS_SOURCE": "files", "INSIGHTS_FILES_PATH": str(tmp_path / "in"), "INSIGHTS_STATE_DIR": str(tmp_path)}
    )
    (tmp_path / "in").mkdir()
    last_year = time.time() - 400 * 86400
    stamps = [time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(last_year + i * 3600)) for i in range(30)]
    records = [make_record(f"e{i}", stamp) for i, stamp in enumerate(stamps)]  # 30 hours: 24 are kept
    (tmp_path / "in" / "old.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    first = build(values)
    first.collector.start()
    assert first.collector.wait_ready(30)
    first.collector.stop()  # saves, as a shutdown does
    held = len(first.engine.buffer)
    assert 24 <= held < 30
    again = build(values)
    again.collector.start()
    assert again.collector.wait_ready(30)
    again.collector.poll_once()  # a poll that brings nothing new evicts nothing either
    again.collector.stop()
    assert len(again.engine.buffer) == held
    assert again.collector.retention_reference == first.collector.retention_reference
