"""The files source: follows a folder, reads an appended file from where it was, a changed
document again, waits for files being written, and resumes from its checkpoints."""

import gzip
import json
import os
import time

from collectors.collector import Collector
from collectors.files import FileSource, RegionFilter
from metrics.engine import Engine
from tests.conftest import make_record


def write(path, records, age=5.0):
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    old = time.time() - age
    os.utime(path, (old, old))


def test_new_and_changed_files_are_read_and_duplicates_dropped(tmp_path):
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60))
    write(tmp_path / "a.jsonl", [make_record("a1", stamp), make_record("a2", stamp)])
    nested = tmp_path / "AWSLogs" / "111122223333"
    nested.mkdir(parents=True)
    (nested / "b.json.gz").write_bytes(gzip.compress(json.dumps({"Records": [make_record("b1", stamp)]}).encode()))
    os.utime(nested / "b.json.gz", (now - 5, now - 5))
    (tmp_path / ".hidden.json").write_text("not read")
    engine = Engine()
    collector = Collector(FileSource(tmp_path), engine)
    collector.poll_once(now)
    assert len(engine.buffer) == 3
    collector.poll_once(now + 2)  # nothing changed: nothing read
    assert collector.health.duplicates == 0
    write(tmp_path / "a.jsonl", [make_record("a1", stamp), make_record("a2", stamp), make_record("a3", stamp)])
    collector.poll_once(now + 4)
    assert len(engine.buffer) == 4
    assert collector.health.duplicates == 0  # read from where it was: only the new line


def test_a_file_still_being_written_waits_for_the_next_poll(tmp_path):
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60))
    (tmp_path / "fresh.json").write_text('{"Records": [' + json.dumps(make_record("f1", stamp)))  # half written
    source = FileSource(tmp_path)
    assert source.poll(now) == []
    (tmp_path / "fresh.json").write_text(json.dumps({"Records": [make_record("f1", stamp)]}))
    assert [r["eventID"] for r in source.poll(time.time() + 2)] == ["f1"]


def test_a_missing_folder_is_an_error_the_collector_reports(tmp_path):
    collector = Collector(FileSource(tmp_path / "nowhere"), Engine())
    wait = None
    try:
        collector.poll_once()
    except FileNotFoundError as error:
        wait = collector.record_error(error)
    assert wait is not None and wait > 0
    assert "FileNotFoundError" in collector.health.last_error
    assert collector.health.consecutive_errors == 1


def test_region_filter_keeps_only_the_chosen_regions(tmp_path):
    stamp = "2024-08-02T08:30:00Z"
    write(tmp_path / "r.jsonl", [make_record("x", stamp, awsRegion="eu-west-1"), make_record("y", stamp)])
    source = RegionFilter(FileSource(tmp_path), ("eu-west-1",))
    assert [r["eventID"] for r in source.poll(time.time())] == ["x"]
    assert source.name == "files"


def lines(records) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def ids(records) -> list[str]:
    return [r["eventID"] for r in records]


def test_a_restart_from_the_checkpoints_reads_nothing_twice_and_an_appended_file_only_its_new_lines(tmp_path):
    stamp = "2024-08-02T08:30:00Z"
    path = tmp_path / "a.jsonl"
    path.write_text(lines([make_record("a1", stamp), make_record("a2", stamp)]))
    first = FileSource(tmp_path, settle_seconds=0)
    assert ids(first.poll(time.time())) == ["a1", "a2"]
    again = FileSource(tmp_path, settle_seconds=0, checkpoints=json.loads(json.dumps(first.checkpoints())))
    assert again.poll(time.time()) == []  # the restart: nothing read again
    with open(path, "a") as out:
        out.write(lines([make_record("a3", stamp)]))
    assert ids(again.poll(time.time())) == ["a3"]
    assert again.replaced == 0


def test_a_line_still_being_written_waits_and_bad_lines_keep_their_line_numbers(tmp_path):
    stamp = "2024-08-02T08:30:00Z"
    path = tmp_path / "a.jsonl"
    path.write_text(lines([make_record("a1", stamp)]) + "{not json}\n" + json.dumps(make_record("a2", stamp))[:40])
    source = FileSource(tmp_path, settle_seconds=3600)  # just written: the last line may grow
    got = source.poll(time.time())
    assert ids(got[:1]) == ["a1"] and got[1].reason == "invalid JSON" and got[1].origin.endswith("a.jsonl:2")
    path.write_text(path.read_text()[:-40] + lines([make_record("a2", stamp)]))
    assert ids(source.poll(time.time())) == ["a2"]


def test_a_truncated_or_replaced_file_is_detected_and_read_from_its_start(tmp_path):
    stamp = "2024-08-02T08:30:00Z"
    path = tmp_path / "a.jsonl"
    path.write_text(lines([make_record(f"a{i}", stamp) for i in range(3)]))
    source = FileSource(tmp_path, settle_seconds=0)
    assert len(source.poll(time.time())) == 3
    path.write_text(lines([make_record("b1", stamp)]))  # truncated and rewritten: shorter
    assert ids(source.poll(time.time())) == ["b1"]
    assert source.replaced == 1
    other = tmp_path / "new.jsonl"
    other.write_text(lines([make_record("c1", stamp), make_record("c2", stamp)]))
    os.replace(other, path)  # another file under the same name, longer than what was read
    assert ids(source.poll(time.time())) == ["c1", "c2"]
    assert source.replaced == 2
    path.write_text(lines([make_record("d1", stamp), make_record("d2", stamp)]))  # same inode, other first bytes
    assert ids(source.poll(time.time())) == ["d1", "d2"]
    assert source.replaced == 3


def test_a_large_file_is_read_in_bounded_batches_with_its_progress(tmp_path, monkeypatch):
    import collectors.files as files

    monkeypatch.setattr(files, "READ_BYTES", 2048)  # a few records per read
    stamp = "2024-08-02T08:30:00Z"
    (tmp_path / "big.jsonl").write_text(lines([make_record(f"e{i}", stamp) for i in range(25)]))
    source = FileSource(tmp_path, settle_seconds=0, batch_records=10)
    sizes, shares = [], []
    while True:
        sizes.append(len(source.poll(time.time())))
        if not source.more:
            break
        shares.append(source.progress())
    assert sum(sizes) == 25 and len(sizes) >= 3 and max(sizes) < 10 + 5  # a read may pass the bound a little
    assert shares == sorted(shares) and all(0 < share < 1 for share in shares)
    assert source.progress() is None  # nothing left to read


def test_history_from_files_keeps_the_retention_before_its_newest_event_not_before_now(tmp_path):
    # Three records of August 2024: two within a day of the newest, one three days older.
    write(
        tmp_path / "old.jsonl",
        [
            make_record("new", "2024-08-05T12:00:00Z"),
            make_record("hours-before", "2024-08-05T01:00:00Z"),
            make_record("days-before", "2024-08-02T12:00:00Z"),
        ],
    )
    engine = Engine(retention_seconds=24 * 3600)
    collector = Collector(FileSource(tmp_path), engine, retain_from_newest=True)
    collector.poll_once(time.time())
    assert len(engine.buffer) == 2
    assert collector.health.expired == 1
    assert collector.retention_reference == 1_722_859_200  # 2024-08-05T12:00:00Z, the newest event
    # The forest learns up to the newest event, not the years of silence since.
    assert engine.scorer.next <= 1_722_859_200 + 10


def test_a_live_source_still_counts_the_retention_back_from_now(tmp_path):
    write(tmp_path / "old.jsonl", [make_record("new", "2024-08-05T12:00:00Z")])
    engine = Engine(retention_seconds=24 * 3600)
    collector = Collector(FileSource(tmp_path), engine)
    collector.poll_once(time.time())
    assert len(engine.buffer) == 0 and collector.health.expired == 1
    assert collector.retention_reference is None
