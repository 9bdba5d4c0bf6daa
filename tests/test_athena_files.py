"""Athena's new-file mode: the trail's new log files announced through SQS (S3 event
notifications and the trail's SNS notification, in moto) are each counted once by a query
restricted to them; a late file adds to its own window; messages go only once the windows are
in the engine, and poison is counted and deleted."""

import gzip

import boto3
import orjson
import pytest
from moto import mock_aws

from bench.trail_layout import demo_trail, trail_key
from collectors.athena import QueryFailed
from collectors.athena_files import NewFileWindows, Poison, log_files, new_files_query
from metrics.engine import Engine
from metrics.normalise import Rejects, normalise_all
from metrics.pumps import PUMPS
from metrics.records import iter_paths
from tests.athena_duck import TABLE, DuckRunner, trail_table
from tests.conftest import make_record

START = 1_722_587_400  # 2024-08-02T08:30:00Z
NOW = START + 3600
BUCKET = "org-trail"
ORG = "o-exampleorg1"


def held(engine, name):
    counts = engine.states[name].counts()
    return list(zip(counts.window.tolist(), counts.category.tolist(), counts.subcategory.tolist(), counts.count))


def in_process(root) -> Engine:
    engine = Engine(retention_seconds=None)
    engine.ingest(normalise_all((record for _, record in iter_paths([root])), Rejects()))
    return engine


def queue_depth(sqs, url) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


@pytest.fixture
def trail(tmp_path):
    """Half an hour of an organisation's activity, and one file delivered an hour late."""
    files = demo_trail(tmp_path, START, 1800, rate=2)
    late = tmp_path / trail_key(ORG, "111122223333", "us-east-1", START + 1800, salt="late")
    late.parent.mkdir(parents=True, exist_ok=True)
    record = make_record("late-1", "2024-08-02T07:31:05Z", recipientAccountId="111122223333")
    late.write_bytes(gzip.compress(orjson.dumps({"Records": [record]})))
    return tmp_path, files, late


@mock_aws
def test_each_announced_file_is_counted_once_and_a_late_file_lands_in_its_own_window(trail):
    root, files, late = trail
    s3 = boto3.client("s3", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    sns = boto3.client("sns", region_name="us-east-1")
    url = sqs.create_queue(QueueName="new-log-files")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_notification_configuration(
        Bucket=BUCKET,
        NotificationConfiguration={"QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]},
    )
    runner = DuckRunner(trail_table(root, BUCKET))  # Athena's table holds every file from the start
    source = NewFileWindows(runner, TABLE, sqs, url)
    engine = Engine(retention_seconds=None)

    first, second = files[: len(files) // 2], files[len(files) // 2 :]
    for path in first:  # the bucket announces each new object itself
        s3.put_object(Bucket=BUCKET, Key=path.relative_to(root).as_posix(), Body=path.read_bytes())
    assert source.refresh(engine, NOW) > 0
    assert queue_depth(sqs, url) == 0  # deleted once the windows were in
    assert source.stats.files == len(first) and source.stats.messages >= len(first)
    partial = engine.totals.counts().count.sum()

    # The trail's own SNS notification, with the rest and the late file, twice (SNS delivers at least once).
    topic = sns.create_topic(Name="trail-files")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    keys = [p.relative_to(root).as_posix() for p in [*second, late]]
    for _ in range(2):
        sns.publish(TopicArn=topic, Message=orjson.dumps({"s3Bucket": BUCKET, "s3ObjectKey": keys}).decode())
    assert source.refresh(engine, NOW + 1) == 0  # too soon: one billed query a minute
    assert source.refresh(engine, NOW + 60) > 0
    assert source.stats.files == len(files) + 1 and source.stats.repeated == len(keys)
    assert queue_depth(sqs, url) == 0 and len(runner.queries) == 2
    assert '"$path" IN (' in runner.queries[1] and "event_seconds >= 1356998400" in runner.queries[1]  # no lookback cut

    expected = in_process(root)
    for pump in PUMPS:
        assert held(engine, pump.name) == held(expected, pump.name), pump.name
    assert engine.totals.total(START - 3600 + 60) == 1  # 07:31:00, an hour before the rest
    assert engine.totals.counts().count.sum() > partial
    assert source.status(NOW + 60)["new_files"]["poison"] == 0


@mock_aws
def test_poison_is_counted_and_deleted_and_a_failed_query_keeps_its_messages(trail):
    root, files, _ = trail
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    key = files[0].relative_to(root).as_posix()
    sqs.send_message(QueueUrl=url, MessageBody="not json at all")
    sqs.send_message(QueueUrl=url, MessageBody='{"hello": "world"}')
    sqs.send_message(QueueUrl=url, MessageBody=orjson.dumps({"s3Bucket": BUCKET, "s3ObjectKey": [key]}).decode())

    class Failing(DuckRunner):
        fail = True

        def run(self, sql, timeout=600.0):
            if self.fail:
                raise QueryFailed("q1: FAILED: HIVE_BAD_DATA")
            return super().run(sql, timeout)

    runner = Failing(trail_table(root, BUCKET))
    source = NewFileWindows(runner, TABLE, sqs, url, visibility_timeout=1)
    engine = Engine(retention_seconds=None)
    with pytest.raises(QueryFailed):
        source.refresh(engine, NOW)
    status = source.status(NOW)["new_files"]
    assert status["poison"] == 2 and status["waiting"] == 1 and len(status["poison_samples"]) == 2
    assert "not JSON" in status["poison_samples"][0]
    assert engine.totals.first is None
    assert queue_depth(sqs, url) == 1  # the poison went, the file's message waits to come back

    import time

    time.sleep(1.2)  # its visibility timeout
    runner.fail = False
    assert source.refresh(engine, NOW + 60) > 0
    assert queue_depth(sqs, url) == 0 and source.stats.files == 1
    assert engine.totals.counts().count.sum() == len(orjson.loads(gzip.decompress(files[0].read_bytes()))["Records"])


def test_messages_of_every_shape_name_their_log_files():
    key = "AWSLogs/o-exampleorg1/111122223333/CloudTrail/us-east-1/2024/08/02/f.json.gz"
    created = {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {"key": key}}}
    s3_event = {"Records": [created]}
    sns = {"Type": "Notification", "Message": orjson.dumps(s3_event).decode()}
    cloudtrail = {"s3Bucket": "b", "s3ObjectKey": [key]}
    bridge = {"detail-type": "Object Created", "detail": {"bucket": {"name": "b"}, "object": {"key": key}}}
    for body in (s3_event, sns, cloudtrail, bridge):
        assert [f.path for f in log_files(orjson.dumps(body).decode())] == [f"s3://b/{key}"]
    assert log_files('{"Event": "s3:TestEvent", "Bucket": "b"}') == []
    deleted = {"Records": [{"eventName": "ObjectRemoved:Delete", "s3": {}}]}
    assert log_files(orjson.dumps(deleted).decode()) == []
    for bad in ("[1, 2]", '{"s3Bucket": "b", "s3ObjectKey": "one"}', '{"s3Bucket": 7, "s3ObjectKey": ["k"]}', "{"):
        with pytest.raises(Poison):
            log_files(bad)


def test_the_new_files_query_reads_only_their_partitions():
    keys = [
        "AWSLogs/o-exampleorg1/111122223333/CloudTrail/us-east-1/2024/08/02/a.json.gz",
        "AWSLogs/o-exampleorg1/444455556666/CloudTrail/eu-west-1/2024/08/03/b.json.gz",
    ]
    from collectors.athena_files import LogFile

    sql = new_files_query("db.t", [LogFile("b", k) for k in keys], NOW)
    assert "\"timestamp\" IN ('2024/08/02', '2024/08/03')" in sql
    assert "region IN ('eu-west-1', 'us-east-1')" in sql and "account IN ('111122223333', '444455556666')" in sql
    assert f"\"$path\" IN ('s3://b/{keys[0]}', 's3://b/{keys[1]}')" in sql
    single = new_files_query("db.t", [LogFile("b", "AWSLogs/111122223333/CloudTrail/us-east-1/2024/08/02/c.json")], NOW)
    assert "account IN" not in single  # a single-account table has no account partition


def test_status_page_shows_the_new_file_queue(start_app, monkeypatch):
    import time

    import requests

    from tests.cloudtrail_endpoint import moto_server
    from tests.test_athena import result_rows

    with moto_server() as url:
        for name, value in {
            "AWS_ENDPOINT_URL_ATHENA": url,
            "AWS_ENDPOINT_URL_S3": url,
            "AWS_ENDPOINT_URL_SQS": url,
            "AWS_ACCESS_KEY_ID": "AKIDTEST",
            "AWS_SECRET_ACCESS_KEY": "x",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }.items():
            monkeypatch.setenv(name, value)
        sqs = boto3.client("sqs", endpoint_url=url)
        queue = sqs.create_queue(QueueName="files")["QueueUrl"]
        key = "AWSLogs/o-exampleorg1/111122223333/CloudTrail/us-east-1/2024/08/02/f.json.gz"
        sqs.send_message(QueueUrl=queue, MessageBody=orjson.dumps({"s3Bucket": BUCKET, "s3ObjectKey": [key]}).decode())
        sqs.send_message(QueueUrl=queue, MessageBody="<script>alert(1)</script>")
        now = int(time.time())
        seeded = {"results": [{"rows": result_rows([("TotalCalls", now - now % 10 - 60, "", "", 4)])}]}
        assert requests.post(f"{url}/moto-api/static/athena/query-results", json=seeded).ok
        at = start_app("status", source="athena", athena_output_location="s3://results/", athena_queue_url=queue)
        assert not at.exception
        from ui.runtime import runtime

        assert runtime().engine.totals.total(now - now % 10 - 60) == 4
        files = next(d.value for d in at.dataframe if "Poison" in d.value.columns)
        assert files["Log files counted"].iloc[0] == "1" and files["Poison"].iloc[0] == "1"
        assert any("<script>" in t.value for t in at.text)  # shown as text, never as HTML
        assert queue_depth(sqs, queue) == 0
