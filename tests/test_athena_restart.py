"""An Athena source restarted: in queue mode the windows it added and the files it counted come
back from the state folder, so a restart at any point (even between writing a query's windows
and deleting its messages) loses no file and counts none twice; without a queue the first query
after the start re-counts the retention, so every window shown before is shown again."""

import time
from types import SimpleNamespace

import boto3
import pandas as pd
import pytest
from moto import mock_aws

from bench.trail_layout import demo_trail
from collectors.athena import AthenaWindows
from collectors.athena_files import NewFileWindows
from collectors.athena_state import WindowLog
from metrics.engine import Engine
from metrics.pumps import PUMPS
from tests.athena_duck import TABLE, DuckRunner, trail_table
from tests.test_athena_files import BUCKET, NOW, START, held, in_process, queue_depth


class Killed(Exception):
    """The process ending where it raises."""


def s3_queue():
    s3 = boto3.client("s3", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="new-log-files")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_notification_configuration(
        Bucket=BUCKET,
        NotificationConfiguration={"QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]},
    )
    return s3, sqs, url


@mock_aws
def test_a_restart_between_writing_a_querys_windows_and_deleting_its_messages_loses_and_repeats_nothing(tmp_path):
    root = tmp_path / "trail"
    files = demo_trail(root, START, 900, rate=2)
    s3, sqs, url = s3_queue()
    runner = DuckRunner(trail_table(root, BUCKET))
    state = tmp_path / "state" / "athena-windows"
    thirds = [files[: len(files) // 3], files[len(files) // 3 : 2 * len(files) // 3], files[2 * len(files) // 3 :]]

    def deliver(paths):
        for path in paths:
            s3.put_object(Bucket=BUCKET, Key=path.relative_to(root).as_posix(), Body=path.read_bytes())

    before = Engine(retention_seconds=None)
    first = NewFileWindows(runner, TABLE, sqs, url, state_dir=state, visibility_timeout=1)
    deliver(thirds[0])
    assert first.refresh(before, NOW) > 0 and queue_depth(sqs, url) == 0
    deliver(thirds[1])

    def killed(**kwargs):
        raise Killed("the process ends before the messages are deleted")

    first.sqs = SimpleNamespace(receive_message=sqs.receive_message, delete_message_batch=killed)
    with pytest.raises(Killed):
        first.refresh(before, NOW + 60)
    deliver(thirds[2])  # more files while the app is down

    after = Engine(retention_seconds=None)
    restarted = NewFileWindows(runner, TABLE, sqs, url, state_dir=state, visibility_timeout=1)
    time.sleep(1.2)  # the second third's messages come back after their visibility timeout
    assert restarted.refresh(after, NOW + 120) > 0
    assert queue_depth(sqs, url) == 0
    assert restarted.stats.files == len(thirds[2]) and restarted.stats.repeated == len(thirds[1])
    status = restarted.status(NOW + 120)["new_files"]
    assert status["restored_files"] == len(thirds[0]) + len(thirds[1]) and status["state_error"] == ""
    expected = in_process(root)
    for pump in PUMPS:
        assert held(after, pump.name) == held(expected, pump.name), pump.name


@mock_aws
def test_a_query_whose_windows_cannot_be_written_keeps_its_messages_and_adds_nothing(tmp_path):
    root = tmp_path / "trail"
    files = demo_trail(root, START, 300, rate=2)
    s3, sqs, url = s3_queue()
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the state folder should be")
    source = NewFileWindows(DuckRunner(trail_table(root, BUCKET)), TABLE, sqs, url, state_dir=blocked)
    for path in files:
        s3.put_object(Bucket=BUCKET, Key=path.relative_to(root).as_posix(), Body=path.read_bytes())
    engine = Engine(retention_seconds=None)
    with pytest.raises(OSError):
        source.refresh(engine, NOW)
    assert engine.totals.first is None and queue_depth(sqs, url) == len(files)
    assert source.stats.waiting == len(files) and source.stats.files == 0


def windows(*rows):
    return pd.DataFrame(rows, columns=["metric", "window_start", "category", "subcategory", "value"])


def test_the_window_log_sums_its_deltas_and_compacts_them_without_counting_twice(tmp_path):
    log = WindowLog(tmp_path, retention_seconds=100, remembered=2, compact_every=3)
    log.append(windows(("TotalCalls", 1000, "", "", 2), ("CallsPerAPI", 1000, "s3", "GetObject", 2)), ["a"], 1000)
    log.append(windows(("TotalCalls", 1000, "", "", 3), ("TotalCalls", 1010, "", "", 1)), ["b", "c"], 1010)
    loaded, files = log.load()
    assert sorted(map(tuple, loaded.values.tolist())) == [
        ("CallsPerAPI", 1000, "s3", "GetObject", 2),
        ("TotalCalls", 1000, "", "", 5),
        ("TotalCalls", 1010, "", "", 1),
    ]
    assert files == ["a", "b", "c"]
    # The third delta compacts: windows older than the retention (100 s before 1105) go, the last two files stay.
    log.append(windows(("TotalCalls", 1100, "", "", 4)), ["d"], 1105)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["base-000000000003.parquet"]
    loaded, files = WindowLog(tmp_path).load()
    assert sorted(map(tuple, loaded.values.tolist())) == [
        ("TotalCalls", 1010, "", "", 1),
        ("TotalCalls", 1100, "", "", 4),
    ]
    assert files == ["c", "d"]
    # A crash after the base was written but before the deltas went: the base supersedes them.
    restarted = WindowLog(tmp_path, compact_every=10)
    restarted.append(windows(("TotalCalls", 1110, "", "", 7)), ["e"], 1115)
    (tmp_path / "delta-000000000002.parquet").write_bytes((tmp_path / "delta-000000000004.parquet").read_bytes())
    loaded, files = restarted.load()
    assert loaded["value"].sum() == 12 and files == ["c", "d", "e"]


def test_a_damaged_part_is_skipped_and_said(tmp_path):
    log = WindowLog(tmp_path)
    log.append(windows(("TotalCalls", 1000, "", "", 2)), ["a"], 1000)
    log.append(windows(("TotalCalls", 1010, "", "", 3)), ["b"], 1010)
    (tmp_path / "delta-000000000001.parquet").write_bytes(b"not parquet")
    loaded, files = log.load()
    assert loaded["value"].tolist() == [3] and files == ["b"]
    assert "delta-000000000001.parquet unreadable" in log.last_error


def test_without_a_queue_the_first_query_after_a_restart_shows_every_window_shown_before(tmp_path):
    files = demo_trail(tmp_path, START, 900, rate=2)
    assert files
    runner = DuckRunner(trail_table(tmp_path, BUCKET))
    before = Engine(retention_seconds=None)
    first = AthenaWindows(runner, TABLE, retention=86_400)
    first.refresh(before, START + 600)
    first.refresh(before, START + 1500)  # re-queries its last 20 minutes only
    assert f"event_seconds >= {START + 1500 - 1200 - (START + 1500 - 1200) % 10}" in runner.queries[-1]

    after = Engine(retention_seconds=None)
    restarted = AthenaWindows(runner, TABLE, retention=86_400)
    restarted.refresh(after, START + 1560)
    assert f"event_seconds >= {START + 1560 - 86_400}" in runner.queries[-1]
    for pump in PUMPS:
        assert held(after, pump.name) == held(before, pump.name), pump.name
    assert held(before, "TotalCalls")[0][0] < START + 1560 - 1200  # older than the lookback
    restarted.refresh(after, START + 1620)
    assert f"event_seconds >= {START + 1620 - 1200}" in runner.queries[-1]  # then the lookback again


def test_windows_saved_under_another_top_k_come_back_in_todays_window_length(tmp_path):
    from metrics.sql import top_k_pumps

    WindowLog(tmp_path).append(
        windows(
            ("CallsPerUser", 1020, "bob", "", 2), ("CallsPerUser", 1030, "bob", "", 3), ("TotalCalls", 1030, "", "", 5)
        ),
        ["s3://b/AWSLogs/111122223333/CloudTrail/us-east-1/2024/08/02/f.json.gz"],
        1100,
    )
    engine = Engine(retention_seconds=None, pumps=top_k_pumps())  # CallsPerUser in 60-s windows now
    empty = SimpleNamespace(receive_message=lambda **request: {"Messages": []})
    source = NewFileWindows(None, TABLE, empty, "queue", state_dir=tmp_path)
    assert source.refresh(engine, 1200) == 0  # nothing new: the restored windows only
    assert held(engine, "CallsPerUser") == [(1020 - 1020 % 60, "bob", None, 5)]
    assert held(engine, "TotalCalls") == [(1030, None, None, 5)]
    assert source.restored == {"windows": 3, "files": 1}


def test_a_compaction_that_fails_keeps_the_deltas_and_the_append_succeeds(tmp_path, monkeypatch):
    log = WindowLog(tmp_path, compact_every=2)
    log.append(windows(("TotalCalls", 1000, "", "", 2)), ["a"], 1000)

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(log, "compact", full)
    log.append(windows(("TotalCalls", 1010, "", "", 3)), ["b"], 1010)  # does not raise: the delta is on disk
    assert "No space left" in log.last_error
    loaded, files = WindowLog(tmp_path).load()
    assert loaded["value"].tolist() == [2, 3] and files == ["a", "b"]
