"""What survives a restart, and what keeps the collector alive."""

from __future__ import annotations

import time

import pytest

from collectors.collector import Collector
from collectors.state import StateStore
from metrics.engine import Engine
from settings import load
from tests.conftest import make_record
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
