"""The EventBridge source against moto's SQS server through real botocore, proved against
ground truth: events delivered out of order, twice, among poison messages, through restarts
and a kill -9, end in the buffer exactly once."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import boto3
import pytest

from collectors import eventbridge
from collectors.collector import Collector
from collectors.eventbridge import SqsSource, parse_message
from collectors.state import StateStore
from metrics.engine import Engine
from metrics.normalise import Unreadable
from tests.cloudtrail_endpoint import moto_server
from tests.conftest import make_record

ROOT = Path(__file__).parent.parent
REGIONS = ("us-east-1", "eu-west-1", "ap-northeast-1")


def iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def envelope(record: dict, *, region: str | None = None, account: str = "111122223333", kind: str = "") -> str:
    """An EventBridge event as its SQS target receives it."""
    return json.dumps(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": kind or "AWS API Call via CloudTrail",
            "source": "aws.sts",
            "account": account,
            "time": record.get("eventTime"),
            "region": region or record.get("awsRegion", "us-east-1"),
            "resources": [],
            "detail": record,
        }
    )


def workload(seed: int, count: int, now: float) -> list[dict]:
    """``count`` records in the last 30 minutes, in three regions."""
    rng = random.Random(seed)
    return [
        make_record(f"ev-{seed}-{i:05d}", iso(now - rng.uniform(5, 1800)), awsRegion=REGIONS[i % 3])
        for i in range(count)
    ]


POISON = [
    "this is not JSON {",
    json.dumps({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}),
    json.dumps([1, 2, 3]),
]


def send(client, url: str, bodies: list[str]) -> None:
    for first in range(0, len(bodies), 10):
        entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[first : first + 10])]
        assert not client.send_message_batch(QueueUrl=url, Entries=entries).get("Failed")


def counts(client, url: str) -> tuple[int, int]:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    found = client.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return int(found[names[0]]), int(found[names[1]])


@pytest.fixture
def sqs(monkeypatch):
    with moto_server() as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", url)
        for name, value in {
            "AWS_ACCESS_KEY_ID": "AKIDTEST",
            "AWS_SECRET_ACCESS_KEY": "x",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(name, value)
        yield boto3.client("sqs", region_name="us-east-1", endpoint_url=url)


def make_queue(client, name: str = "insights", *, visibility: int = 900, max_receives: int = 3) -> tuple[str, str]:
    """A queue with a dead-letter queue; returns both URLs."""
    dead = client.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    arn = client.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": str(max_receives)})
    url = client.create_queue(
        QueueName=name, Attributes={"VisibilityTimeout": str(visibility), "RedrivePolicy": redrive}
    )["QueueUrl"]
    return url, dead


def source_for(client, url: str, **options) -> SqsSource:
    options = {"lookback": 0, "wait_seconds": 1, **options}
    return SqsSource(eventbridge.make_client(url), url, **options)


def drain(collector: Collector, until, timeout: float = 180.0) -> None:
    """Polls until ``until()``; moto's queue is slow on a loaded machine, hence the long timeout."""
    deadline = time.time() + timeout
    while not until() and time.time() < deadline:
        collector.poll_once()
    assert until(), "the collector did not get there in time"


def held_ids(engine: Engine) -> set[str]:
    return set(engine.buffer.snapshot().frame()["eventID"])


def assert_exactly(engine: Engine, expected: set[str]) -> None:
    held = held_ids(engine)
    assert held == expected, (len(expected - held), len(held - expected))
    assert int(engine.metric_frame("TotalCalls")["value"].sum()) == len(expected)


# -- the message ----------------------------------------------------------------------------------
def test_the_record_is_the_envelopes_detail_with_its_account_and_region_as_fallbacks():
    record = make_record("e1", "2026-11-30T10:00:00Z", awsRegion=..., recipientAccountId=...)
    parsed = parse_message(envelope(record, region="eu-west-3", account="444455556666"))
    assert parsed["eventID"] == "e1"
    assert (parsed["awsRegion"], parsed["recipientAccountId"]) == ("eu-west-3", "444455556666")
    own = parse_message(envelope(make_record("e2", "2026-11-30T10:00:00Z", awsRegion="us-west-2"), region="x-1"))
    assert own["awsRegion"] == "us-west-2"  # the record's own region wins


def test_console_sign_in_and_service_events_are_cloudtrail_events_too():
    for kind in ("AWS Console Sign In via CloudTrail", "AWS Service Event via CloudTrail"):
        assert isinstance(parse_message(envelope(make_record("e", "2026-11-30T10:00:00Z"), kind=kind)), dict)


def test_messages_that_are_not_json_or_not_cloudtrail_events_are_rejects_with_a_sample():
    reasons = [parse_message(body) for body in POISON]
    assert all(isinstance(r, Unreadable) for r in reasons)
    assert [r.reason for r in reasons] == ["invalid JSON", "not a CloudTrail event", "not a CloudTrail event"]
    assert reasons[0].sample == POISON[0]


def test_the_queue_region_comes_from_its_url():
    assert eventbridge.region_of_queue("https://sqs.eu-west-1.amazonaws.com/123456789012/q") == "eu-west-1"
    assert eventbridge.region_of_queue("http://127.0.0.1:5000/123456789012/q") is None


# -- against the queue ----------------------------------------------------------------------------
def test_out_of_order_duplicated_and_poison_deliveries_end_in_exactly_the_truth(sqs):
    url, dead = make_queue(sqs)
    now = time.time()
    records = workload(1, 150, now)
    bodies = [envelope(r) for r in records]
    bodies += [envelope(r) for r in random.Random(2).sample(records, 30)]  # at-least-once: some twice
    broken = make_record("no-time", iso(now), eventTime=...)  # a CloudTrail event the normaliser rejects
    bodies += [*POISON, envelope(broken)]
    random.Random(3).shuffle(bodies)  # out of order
    send(sqs, url, bodies)

    engine = Engine(retention_seconds=None)
    source = source_for(sqs, url, receivers=4)
    collector = Collector(source, engine)  # no state folder: deleted once ingested
    drain(collector, lambda: len(engine.buffer) == len(records) and collector.health.rejects.total == 4)
    source.close()  # waits for the deletes
    assert_exactly(engine, {r["eventID"] for r in records})
    assert collector.health.duplicates >= 30  # the queue itself may deliver a message twice too
    assert dict(collector.health.rejects.summary()) == {
        "invalid JSON": 1,
        "not a CloudTrail event": 2,
        "missing eventTime": 1,
    }
    origins = [s["origin"] for s in collector.health.rejects.latest()]
    assert sum(o.startswith("eventbridge: message ") for o in origins) == 3  # which message, for the unparsable
    assert counts(sqs, url) == (0, 0)  # every message deleted, the poison ones included
    assert counts(sqs, dead) == (0, 0)
    assert source.counts["deleted"] >= len(bodies)


def test_a_message_is_deleted_only_once_its_events_are_in_a_saved_snapshot(sqs, tmp_path):
    url, _ = make_queue(sqs, visibility=60)
    records = workload(4, 30, time.time())
    send(sqs, url, [envelope(r) for r in records])
    engine = Engine(retention_seconds=None)
    source = source_for(sqs, url, save_every=3600)
    collector = Collector(source, engine, store=StateStore(tmp_path, "eventbridge"), save_every=3600)
    drain(collector, lambda: len(engine.buffer) == len(records))
    assert source.counts["deleted"] == 0
    assert counts(sqs, url) == (0, len(records))  # in flight: received, invisible, not deleted
    collector.save()
    source.close()
    assert counts(sqs, url) == (0, 0)
    assert StateStore(tmp_path, "eventbridge").checkpoints()["alive_until"] is not None


def test_a_short_visibility_timeout_is_warned_about_and_saves_come_early(sqs, tmp_path):
    url, _ = make_queue(sqs, visibility=6)
    records = workload(5, 20, time.time())
    send(sqs, url, [envelope(r) for r in records])
    engine = Engine(retention_seconds=None)
    source = source_for(sqs, url, save_every=300)
    store = StateStore(tmp_path, "eventbridge")
    collector = Collector(source, engine, store=store, save_every=300)
    drain(collector, lambda: len(engine.buffer) == len(records))
    assert "visibility timeout (6 s)" in source.warning and "360 s" in source.warning
    drain(collector, lambda: store.last_saved is not None, timeout=15)  # within seconds, not after 300
    drain(collector, lambda: counts(sqs, url) == (0, 0), timeout=60)  # a slow machine may see some twice
    source.close()
    assert_exactly(engine, {r["eventID"] for r in records})
    long_enough, _ = make_queue(sqs, "patient", visibility=900)
    patient = source_for(sqs, long_enough, save_every=300)
    patient.poll(time.time())
    patient.close()
    assert patient.warning == ""


def test_receiving_pauses_while_a_save_is_due_and_resumes_once_it_deleted_the_messages(sqs):
    url, _ = make_queue(sqs, visibility=6)  # a save is due once a message waited 3 s
    send(sqs, url, [envelope(r) for r in workload(11, 5, time.time())])
    source = source_for(sqs, url)
    records = []
    deadline = time.time() + 30
    while len(records) < 5 and time.time() < deadline:
        records += source.poll(time.time())
    mark = source.ingested()  # in the buffer, never saved
    assert len(records) == 5
    deadline = time.time() + 5
    while not source.waiting_for_save and time.time() < deadline:  # the receive in flight ends first
        time.sleep(0.05)
    assert source.needs_save() and source.waiting_for_save
    send(sqs, url, [envelope(r) for r in workload(12, 5, time.time())])
    time.sleep(1.0)  # a receiver would have taken them within this
    assert source.counts["received"] == 5
    assert source.details()["receiving"] == "paused until the next save"
    source.acknowledge(mark)  # the save is done: its messages are deleted
    deadline = time.time() + 30
    while source.counts["received"] < 10 and time.time() < deadline:
        time.sleep(0.1)
    source.close()
    assert source.counts["received"] >= 10 and not source.waiting_for_save


def test_a_message_whose_events_cannot_be_ingested_goes_to_the_dead_letter_queue(sqs):
    class BrokenEngine(Engine):
        def ingest(self, batch, now_ns=None):
            raise OSError("no space left on device")

    url, dead = make_queue(sqs, visibility=1, max_receives=2)
    send(sqs, url, [envelope(r) for r in workload(6, 3, time.time())])
    source = source_for(sqs, url)
    collector = Collector(source, BrokenEngine(retention_seconds=None))
    deadline = time.time() + 40
    while counts(sqs, dead)[0] < 3 and time.time() < deadline:
        with contextlib.suppress(OSError):
            collector.poll_once()
    source.close()
    assert counts(sqs, dead)[0] == 3  # the redrive policy moved them: never deleted, never lost
    assert source.counts["deleted"] == 0
    assert source.details()["dead-letter queue"].endswith(":insights-dlq")


DRIVER = textwrap.dedent(
    """
    import json, os, sys, time
    import settings
    from collectors.collector import Collector
    from collectors.state import StateStore
    from metrics.engine import Engine
    from ui.runtime import make_source

    values = settings.load()
    store = StateStore(os.path.join(values["state_dir"], "collector"), "eventbridge")
    engine = Engine(retention_seconds=None)
    restored = store.restore(engine)
    source = make_source(values, store.checkpoints())
    collector = Collector(source, engine, store=store, save_every=values["save_minutes"] * 60).start()
    expected = int(os.environ["EXPECTED"])
    import boto3

    queue = boto3.client("sqs")

    def queue_empty():
        # Every event held is not enough: the redelivered duplicates may still wait in the queue.
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        found = queue.get_queue_attributes(QueueUrl=values["sqs_queue_url"], AttributeNames=names)["Attributes"]
        return all(found[name] == "0" for name in names)

    deadline = time.time() + 60
    while time.time() < deadline:
        time.sleep(0.1)
        print(len(engine.buffer), source.counts["deleted"], flush=True)
        if (
            len(engine.buffer) >= expected
            and source.details()["in the buffer, deleted at the next save"] == "0"
            and queue_empty()
        ):
            break
    collector.stop()
    source.close()
    held = sorted(engine.buffer.snapshot().frame()["eventID"])
    total = int(engine.metric_frame("TotalCalls")["value"].sum())
    print(json.dumps({"held": held, "total": total, "restored": restored}), flush=True)
    """
)


def test_a_kill_9_mid_drain_and_a_restart_lose_nothing_and_count_nothing_twice(sqs, tmp_path):
    # A 3 s visibility forces redeliveries; ten receives before dead-lettering, because on a loaded
    # machine (the full suite beside it) a message was received three times before the second life
    # could save it, and the queue, as configured, dead-lettered it: the policy's doing, not a loss.
    url, dead = make_queue(sqs, visibility=3, max_receives=10)
    records = workload(7, 150, time.time())
    bodies = [envelope(r) for r in records] + [envelope(r) for r in records[:20]]
    random.Random(8).shuffle(bodies)
    # Two waves: the first life is killed once it has deleted some of the first, with the second
    # just sent. A queue drained in one receive (a fast machine) left nothing to kill it amid.
    first_wave, second_wave = bodies[:85], bodies[85:]
    send(sqs, url, first_wave)
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT),
        "AWS_ENDPOINT_URL_SQS": os.environ["AWS_ENDPOINT_URL_SQS"],
        "AWS_ACCESS_KEY_ID": "AKIDTEST",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
        "INSIGHTS_SOURCE": "eventbridge",
        "INSIGHTS_SQS_QUEUE_URL": url,
        "INSIGHTS_STATE_DIR": str(tmp_path),
        "INSIGHTS_SAVE_MINUTES": "0.01",
        "INSIGHTS_LOOKBACK_HOURS": "0",
        "INSIGHTS_EVENTBRIDGE_BACKFILL": "none",
        "EXPECTED": str(len(records)),
    }
    first = subprocess.Popen(
        [sys.executable, "-c", DRIVER], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        for line in first.stdout:  # kill it once some messages are deleted and most are not
            held, deleted = map(int, line.split()[:2])
            if deleted >= 20:
                break
        send(sqs, url, second_wave)
        os.kill(first.pid, signal.SIGKILL)
    finally:
        first.wait(30)
    assert 0 < held < len(records)
    second = subprocess.run(
        [sys.executable, "-c", DRIVER], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240
    )
    assert second.returncode == 0, second.stderr[-2000:]
    result = json.loads(second.stdout.splitlines()[-1])
    assert result["restored"] > 0  # the first life's saved snapshot
    missing = {r["eventID"] for r in records} - set(result["held"])
    # (One event was missing in a full-suite run with the queue empty and two messages
    # dead-lettered at three receives: what the queue holds tells in flight, dead-lettered and
    # deleted unsaved apart.)
    left = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert not missing, (sorted(missing), second.stdout.splitlines()[-4:-1], left, counts(sqs, dead))
    assert len(result["held"]) == len(records) and result["total"] == len(records)
    # Nothing went to the dead-letter queue. Whether the last duplicates are deleted within the driver's
    # minute is left out: moto sometimes keeps a redelivered message in flight past it (seen once in three runs).
    assert counts(sqs, dead) == (0, 0)


def test_the_hour_before_the_queue_is_filled_from_lookupevents_and_status_shows_the_gap_close(
    sqs, start_app, monkeypatch
):
    from tests.cloudtrail_endpoint import CloudTrailEndpoint
    from ui.runtime import runtime

    now = time.time()
    history = [make_record(f"h{i:03d}", iso(now - 3500 + i * 20)) for i in range(170)]  # to 100 s ago
    live = [make_record(f"q{i:03d}", iso(now - 30 + i)) for i in range(20)]
    url, _ = make_queue(sqs)
    send(sqs, url, [envelope(r) for r in live + history[-5:]])  # the queue has nothing older than 200 s
    with CloudTrailEndpoint(rate_per_second=None) as endpoint:
        endpoint.add(history)
        moto = os.environ["AWS_ENDPOINT_URL_SQS"]
        for name, value in {
            "AWS_ENDPOINT_URL_CLOUDTRAIL": endpoint.url,
            "AWS_ENDPOINT_URL_EC2": moto,
            "AWS_ENDPOINT_URL_STS": moto,
            "AWS_EC2_METADATA_DISABLED": "true",
        }.items():
            monkeypatch.setenv(name, value)
        settings = {"sqs_queue_url": url, "lookback_hours": 1, "regions": "us-east-1", "overlap_minutes": 0.5}
        settings["poll_seconds"] = 1  # keeps polling: start_app otherwise polls once an hour
        at = start_app("status", source="eventbridge", **settings)
        assert not at.exception
        source = runtime().collector.source

        def wait(condition, seconds=90):
            deadline = time.time() + seconds
            while not condition() and time.time() < deadline:
                time.sleep(0.2)
            assert condition()

        def gaps_table():
            return next(d.value for d in at.dataframe if "Why" in d.value.columns)

        wait(lambda: source.gaps is not None and source.gaps.items)
        at.run()
        gap = gaps_table().iloc[0]
        assert (gap["Why"], gap["State"]) == ("first start", "open")  # open for the 30 s of late events at least
        assert any("being read from cloudtrail" in w.value for w in at.warning)

        engine = runtime().engine
        wait(lambda: not source.gaps.open() and len(engine.buffer) == len(history) + len(live))
        at.run()
        assert gaps_table().iloc[0]["State"] == "closed"
        assert not any("being read" in w.value for w in at.warning)
        fresh = next(d.value for d in at.dataframe if "p95 lag (s)" in d.value.columns)
        assert set(fresh["Region"]) == {"us-east-1", "all"}
        at.switch_page("pages/overview.py").run()
        tiles = {m.label: m.value for m in at.metric}
        assert tiles["Delivery lag, p95"].endswith(" s")  # the queue's freshness, not the newest event's lag
    assert_exactly(engine, {r["eventID"] for r in history + live})


def test_an_outage_longer_than_the_queues_retention_opens_a_gap_from_the_last_saved_receive(sqs):
    url = sqs.create_queue(QueueName="short", Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
    now = time.time()
    source = source_for(sqs, url, checkpoint={"alive_until": now - 600}, settle=300)
    source.poll(now)
    source.close()
    (gap,) = source.gaps.rows()
    assert (gap["start"], gap["end"], gap["state"]) == (now - 900, now, "not filled")
    assert gap["why"] == "outage longer than the queue's retention"
    assert "not filled" in gap["error"]  # no backfill source: shown, not hidden


def test_an_outage_shorter_than_the_retention_opens_no_gap(sqs):
    url, _ = make_queue(sqs)
    now = time.time()
    source = source_for(sqs, url, checkpoint={"alive_until": now - 600})
    source.poll(now)
    source.close()
    assert source.gaps.rows() == []


def test_the_command_line_drains_the_queue_to_json_lines_each_event_once(sqs, tmp_path):
    url, dead = make_queue(sqs)
    records = workload(9, 40, time.time())
    send(sqs, url, [envelope(r) for r in records + records[:10]] + POISON)
    out = tmp_path / "events.jsonl"
    env = {k: v for k, v in os.environ.items() if k.startswith("AWS_")} | {"PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "collectors", "eventbridge", "--queue-url", url, "--out", str(out), "--idle-exit", "3"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    ids = [json.loads(line)["eventID"] for line in out.read_text().splitlines()]
    assert sorted(ids) == sorted(r["eventID"] for r in records)  # each once
    assert "wrote 40 events" in done.stderr and "3 messages that were not CloudTrail events" in done.stderr
    assert counts(sqs, url) == (0, 0) and counts(sqs, dead) == (0, 0), done.stderr


def test_events_of_other_regions_are_left_out_and_their_messages_deleted(sqs):
    url, _ = make_queue(sqs)
    records = workload(10, 9, time.time())  # three in each region
    send(sqs, url, [envelope(r) for r in records])
    engine = Engine(retention_seconds=None)
    source = source_for(sqs, url, regions=("eu-west-1",))
    collector = Collector(source, engine)
    drain(collector, lambda: source.counts["filtered"] == 6 and len(engine.buffer) == 3)
    source.close()
    assert_exactly(engine, {r["eventID"] for r in records if r["awsRegion"] == "eu-west-1"})
    assert counts(sqs, url) == (0, 0)


def test_status_warns_of_a_short_visibility_timeout_and_of_a_failing_receive(sqs, start_app, monkeypatch):
    from ui.runtime import runtime

    from_settings = eventbridge.from_settings

    def short_polls(values, checkpoint):  # so the receive after the queue is gone comes within a second
        source = from_settings(values, checkpoint)
        source.wait_seconds = 1
        return source

    monkeypatch.setattr(eventbridge, "from_settings", short_polls)

    url = sqs.create_queue(QueueName="brief", Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    settings = {"sqs_queue_url": url, "lookback_hours": 0, "eventbridge_backfill": "none", "save_minutes": 5}
    at = start_app("status", source="eventbridge", **settings)
    assert not at.exception
    source = runtime().collector.source
    assert any("visibility timeout (30 s) is shorter" in w.value and "360 s" in w.value for w in at.warning)
    assert not any("The queue failed" in w.value for w in at.warning)

    def wait(condition, seconds=30):
        deadline = time.time() + seconds
        while not condition() and time.time() < deadline:
            time.sleep(0.1)
        assert condition()

    send(sqs, url, [envelope(make_record("only", iso(time.time())))])  # ends the receive's long poll at once
    wait(lambda: source.counts["received"] == 1)
    sqs.delete_queue(QueueUrl=url)  # so the next receive fails
    wait(lambda: source.counts["receive_errors"] >= 1)
    at.run()
    failed = [w.value for w in at.warning if "The queue failed in the last 5 minutes" in w.value]
    assert len(failed) == 1 and "receive:" in failed[0] and "NonExistentQueue" in failed[0], failed
