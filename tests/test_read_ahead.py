"""The collector reads a backlog's next batch while the engine takes the current one."""

from __future__ import annotations

import json
import os
import time

from collectors.collector import Collector
from collectors.files import FileSource
from collectors.state import StateStore
from metrics.engine import Engine
from tests.conftest import make_record

STAMP = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 600))


def _folder(tmp_path, files: int = 4, per_file: int = 50):
    folder = tmp_path / "in"
    folder.mkdir()
    for n in range(files):
        path = folder / f"part-{n}.jsonl"
        path.write_text("".join(json.dumps(make_record(f"f{n}-e{i}", STAMP)) + "\n" for i in range(per_file)))
        os.utime(path, (time.time() - 60, time.time() - 60))  # settled
    return folder


def test_a_backlog_is_read_one_batch_ahead_and_every_event_arrives_once(tmp_path):
    source = FileSource(_folder(tmp_path), batch_records=50)
    collector = Collector(source, Engine(retention_seconds=None), retain_from_newest=True)
    collector.poll_once()
    assert collector.more and collector._ahead is not None  # the second file is being read meanwhile
    polls = 1
    while collector.more:
        collector.poll_once()
        polls += 1
    assert polls == 4 and len(collector.engine.buffer) == 200
    assert collector.health.events == 200 and collector.health.duplicates == 0


def test_a_save_during_the_backlog_records_only_the_batches_in_the_buffer(tmp_path):
    folder = _folder(tmp_path)
    store = StateStore(tmp_path / "state", "files")
    collector = Collector(FileSource(folder, batch_records=50), Engine(retention_seconds=None), store=store)
    collector.poll_once()  # part-0 in the buffer, part-1 read ahead
    collector._ahead.result()  # (the read-ahead has moved the source's offsets past part-1)
    collector.save()  # what a SIGTERM during the backlog does
    saved = StateStore(tmp_path / "state", "files").checkpoints()["files"]
    assert sorted(name.rsplit("/", 1)[-1] for name in saved) == ["part-0.jsonl"]

    again = StateStore(tmp_path / "state", "files")
    engine = Engine(retention_seconds=None)
    assert again.restore(engine) == 50
    restarted = Collector(FileSource(folder, checkpoints=again.checkpoints(), batch_records=50), engine, store=again)
    restarted.poll_once()
    while restarted.more:
        restarted.poll_once()
    assert len(engine.buffer) == 200 and restarted.health.duplicates == 0  # nothing lost, nothing read twice


class _FailsSecond:
    """A files source whose second read fails once."""

    def __init__(self, source):
        self.source, self.reads = source, 0

    def __getattr__(self, name):
        return getattr(self.source, name)

    def poll_documents(self, now):
        self.reads += 1
        if self.reads == 2:
            raise OSError("the disk went away")
        return self.source.poll_documents(now)


def test_a_read_ahead_that_fails_is_a_failed_poll_and_the_next_poll_goes_on(tmp_path):
    source = _FailsSecond(FileSource(_folder(tmp_path), batch_records=50))
    collector = Collector(source, Engine(retention_seconds=None))
    collector.poll_once()
    try:
        collector.poll_once()
    except OSError as error:
        collector.record_error(error)  # what the collector's loop does with it
    assert collector.health.errors == 1 and "the disk went away" in collector.health.last_error
    while collector.more:
        collector.poll_once()
    assert len(collector.engine.buffer) == 200


def test_the_start_up_bar_stays_until_the_batch_read_ahead_is_in(tmp_path):
    from types import SimpleNamespace

    from ui.startup import _state

    source = FileSource(_folder(tmp_path, files=2), batch_records=50)
    collector = Collector(source, Engine(retention_seconds=None))
    collector.starting = None  # (the start-up bar's own wording while starting is not this test's)
    shared = SimpleNamespace(collector=collector)
    collector.poll_once()  # part-0 in, part-1 read ahead: the source has read everything
    collector._ahead.result()
    assert not source.more and source.progress() is None
    share, text = _state(shared)
    assert share < 1 and text.startswith("Reading the history:") and "Charts fill in" in text
    collector.poll_once()
    assert _state(shared) is None and len(collector.engine.buffer) == 100
