"""The S3 trail source: day-prefix listing, each object read once, live following, errors per prefix."""

import gzip
import json
import re
from collections import Counter
from datetime import UTC, datetime

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from collectors import s3 as s3_module
from collectors.collector import Collector
from collectors.s3 import DELIVERY_WINDOW, S3TrailSource, trail_key
from metrics.normalise import Rejects, Unreadable, normalise_all
from tests.conftest import make_record, stratus

BUCKET = "trail-bucket"
ACCOUNTS = ("111122223333", "444455556666")
REGIONS = ("us-east-1", "eu-west-1")
ORG, ORG_ACCOUNT, ORG_REGION = "o-exampleorg1", "777788889999", "us-west-2"
DAYS = ("2024-07-31", "2024-08-01", "2024-08-02")


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


START, END = ts("2024-07-31T06:00"), ts("2024-08-03T00:00")
NOW = ts("2024-08-05T12:00")
TECHNIQUE = "aws.credential-access."


@pytest.fixture
def client(monkeypatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield boto3.client("s3", region_name="us-east-1")


def put(client, key: str, content, *, gz: bool = True, bucket: str = BUCKET) -> None:
    """Writes records as a trail file (or raw bytes as they are)."""
    if not isinstance(content, bytes):
        content = json.dumps({"Records": content}).encode()
        content = gzip.compress(content) if gz else content
    client.put_object(Bucket=bucket, Key=key, Body=content)


def records_before(name: str, when: float, count: int = 2) -> list[dict]:
    """``count`` records a few minutes before a file's name time, as CloudTrail writes them."""
    return [make_record(f"{name}-{i}", iso(when - 60 * (3 + 4 * i))) for i in range(count)]


@pytest.fixture
def trail(client):
    """A bucket with 2 accounts x 2 regions x 3 days, an organisation trail, bad files and files out of
    the range [START, END); returns the records written, by key."""
    client.create_bucket(Bucket=BUCKET)
    written: dict[str, list[dict]] = {}

    def add(key, records, **kw):
        put(client, key, records, **kw)
        written[key] = records

    for account in ACCOUNTS:
        for region in REGIONS:
            for day in DAYS:
                for hour in ("09:05", "21:35"):
                    when = ts(f"{day}T{hour}")
                    add(trail_key(account, region, when), records_before(f"{account}-{region}-{when:.0f}", when))
    one, two = ACCOUNTS
    add(trail_key(one, "us-east-1", ts("2024-07-31T12:40")), stratus(TECHNIQUE + "secretsmanager-retrieve-secrets"))
    add(trail_key(two, "eu-west-1", ts("2024-08-02T08:30")), stratus(TECHNIQUE + "ec2-steal-instance-credentials"))
    add(
        trail_key(ORG_ACCOUNT, ORG_REGION, ts("2024-08-01T15:30"), org=ORG),
        stratus(TECHNIQUE + "ssm-retrieve-securestring-parameters"),
    )
    plain = trail_key(one, "eu-west-1", ts("2024-08-01T12:00"), suffix="plain").removesuffix(".gz")
    add(plain, records_before("plain", ts("2024-08-01T12:00")), gz=False)
    add(trail_key(two, "us-east-1", ts("2024-08-01T13:00"), suffix="corrupt"), b"\x1f\x8b\x08\x00" + b"not gzip" * 8)
    add(trail_key(two, "us-east-1", ts("2024-08-02T14:00"), suffix="notjson"), gzip.compress(b"this is not JSON\n"))
    # Just inside the margins: a file named 10 minutes before START, one just after END with an event before it.
    add(trail_key(one, "us-east-1", ts("2024-07-31T05:50")), records_before("margin-early", ts("2024-07-31T05:50")))
    add(trail_key(one, "us-east-1", ts("2024-08-03T00:05")), [make_record("late-in-range", "2024-08-02T23:58:00Z")])
    # Outside: skipped by name, or in days never listed.
    add(trail_key(one, "us-east-1", ts("2024-07-31T03:00")), records_before("too-early", ts("2024-07-31T03:00")))
    add(trail_key(one, "us-east-1", ts("2024-08-03T01:00")), records_before("too-late", ts("2024-08-03T01:00")))
    add(trail_key(one, "us-east-1", ts("2024-07-29T12:00")), records_before("old-day", ts("2024-07-29T12:00")))
    add(trail_key(two, "eu-west-1", ts("2024-08-05T08:00")), records_before("new-day", ts("2024-08-05T08:00")))
    # Not trail files: digests and a folder that is not an account.
    stray = [make_record("stray", "2024-08-01T00:00:00Z")]
    put(client, f"AWSLogs/{one}/CloudTrail-Digest/us-east-1/2024/08/01/digest.json.gz", stray)
    put(client, "AWSLogs/readme/CloudTrail/us-east-1/2024/08/01/x.json.gz", stray)
    return written


def in_range(written: dict[str, list]) -> Counter:
    return Counter(
        r["eventID"]
        for records in written.values()
        if isinstance(records, list)
        for r in records
        if START <= ts(r["eventTime"].removesuffix("Z")) < END
    )


class Calls:
    """Records the ListObjectsV2 and GetObject requests of a client; listing a denied prefix fails."""

    def __init__(self, client, deny=(), deny_exact=()):
        self.lists: list[dict] = []
        self.gets: list[str] = []
        self.deny = set(deny)
        self.deny_exact = set(deny_exact)
        client.meta.events.register("before-parameter-build.s3.ListObjectsV2", self._list)
        client.meta.events.register("before-parameter-build.s3.GetObject", self._get)

    def _list(self, params, **kwargs):
        self.lists.append(dict(params))
        prefix = params.get("Prefix", "")
        if prefix in self.deny_exact or any(prefix.startswith(denied) for denied in self.deny):
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "ListObjectsV2")

    def _get(self, params, **kwargs):
        self.gets.append(params["Key"])

    def day_prefixes(self) -> list[str]:
        return [call["Prefix"] for call in self.lists if "Delimiter" not in call]


def drain(source, now: float, limit: int = 100) -> tuple[list[object], int]:
    """Polls until the source has caught up; returns what it delivered and the number of polls."""
    delivered: list[object] = []
    for polls in range(1, limit + 1):
        delivered += source.poll(now)
        if source.watermark(now) is not None:
            return delivered, polls
    raise AssertionError(f"not caught up after {limit} polls: {source.progress}")


def ids(delivered) -> Counter:
    return Counter(r["eventID"] for r in delivered if isinstance(r, dict))


def test_every_record_of_the_range_comes_out_exactly_once(client, trail):
    source = S3TrailSource(client, BUCKET, start=START, end=END, max_objects_per_poll=4)
    delivered, _ = drain(source, NOW)
    for step in range(1, 4):  # later polls, after the relist interval too, bring nothing again
        delivered += source.poll(NOW + step * 61)
    counts = ids(delivered)
    expected = in_range(trail)
    assert "late-in-range" in expected and len(expected) > 100
    assert all(counts[event_id] == 1 for event_id in expected)
    assert max(counts.values()) == 1
    assert not {"too-early-0", "too-late-0", "old-day-0", "new-day-0", "stray"} & set(counts)
    assert "margin-early-0" in counts  # named within 15 minutes before START: read


def test_bad_files_become_unreadable_markers_not_exceptions(client, trail):
    source = S3TrailSource(client, BUCKET, start=START, end=END)
    delivered, _ = drain(source, NOW)
    markers = [r for r in delivered if isinstance(r, Unreadable)]
    assert sorted(m.origin.rsplit("_", 1)[-1] for m in markers) == ["corrupt.json.gz", "notjson.json.gz"]
    assert all(m.origin.startswith(f"s3://{BUCKET}/AWSLogs/444455556666/") for m in markers)
    assert {"plain-0", "plain-1"} <= set(ids(delivered))  # a plain JSON file is read as well
    rejects = Rejects()
    normalise_all(delivered, rejects)
    reasons = dict(rejects.summary())
    assert reasons["invalid JSON"] == 1
    assert sum(n for reason, n in reasons.items() if reason.startswith("unreadable gzip")) == 1
    assert source.progress["unreadable"] == 2
    assert source.progress["errors"] == {}


def test_only_the_day_prefixes_of_the_range_are_listed(client, trail):
    calls = Calls(client)
    source = S3TrailSource(client, BUCKET, start=START, end=END)
    drain(source, NOW)
    discovery = sorted(call["Prefix"] for call in calls.lists if call.get("Delimiter") == "/")
    assert discovery == sorted(
        ["AWSLogs/", f"AWSLogs/{ORG}/", f"AWSLogs/{ORG}/{ORG_ACCOUNT}/CloudTrail/"]
        + [f"AWSLogs/{account}/CloudTrail/" for account in ACCOUNTS]
    )
    folders = [f"AWSLogs/{a}/CloudTrail/{r}/" for a in ACCOUNTS for r in REGIONS]
    folders.append(f"AWSLogs/{ORG}/{ORG_ACCOUNT}/CloudTrail/{ORG_REGION}/")
    days = ("2024/07/31/", "2024/08/01/", "2024/08/02/", "2024/08/03/")  # START-15 min to END+15 min
    assert sorted(calls.day_prefixes()) == sorted(f + d for f in folders for d in days)
    first_day = [call for call in calls.lists if call["Prefix"].endswith("2024/07/31/")]
    assert all(call["StartAfter"].endswith("_20240731T0545Z") for call in first_day)
    assert source.progress["days_done"] == source.progress["days_total"] == len(folders) * len(days)
    assert source.progress["folders"] == len(folders)


def test_given_accounts_and_regions_skip_region_discovery(client, trail):
    calls = Calls(client)
    source = S3TrailSource(client, BUCKET, start=START, end=END, accounts=(ACCOUNTS[0],), regions=("eu-west-1",))
    delivered, _ = drain(source, NOW)
    # the organisation folder is still listed, since the account could be in it
    assert [call["Prefix"] for call in calls.lists if "Delimiter" in call] == ["AWSLogs/", f"AWSLogs/{ORG}/"]
    assert {p.rsplit("/", 4)[0] for p in calls.day_prefixes()} == {f"AWSLogs/{ACCOUNTS[0]}/CloudTrail/eu-west-1"}
    assert {r["awsRegion"] for r in delivered} == {"us-east-1"}  # make_record's region: the folder is eu-west-1
    assert len(ids(delivered)) == 2 * 2 * 3 + 2  # 2 files a day for 3 days, and the plain file


def test_objects_are_read_once_across_polls_and_restarts(client, trail):
    calls = Calls(client)
    seen: set[str] = set()
    first = S3TrailSource(client, BUCKET, start=START, end=END, seen=seen, max_objects_per_poll=2)
    delivered, polls = drain(first, NOW)
    for step in range(1, 6):
        delivered += first.poll(NOW + step * 61)
    assert polls > 10 and first.seen is seen
    assert sorted(calls.gets) == sorted(seen) and len(set(calls.gets)) == len(calls.gets)
    assert first.progress["objects_read"] == len(seen) == first.progress["objects_listed"]
    read = len(calls.gets)
    restarted = S3TrailSource(client, BUCKET, start=START, end=END, seen=set(seen))
    again, _ = drain(restarted, NOW + 3600)
    assert again == [] and len(calls.gets) == read


def test_new_files_are_picked_up_while_following(client):
    client.create_bucket(Bucket=BUCKET)
    account = ACCOUNTS[0]
    for hour in ("10:00", "11:00"):
        when = ts(f"2024-08-02T{hour}")
        put(client, trail_key(account, "us-east-1", when), records_before(f"h{hour}", when))
    calls = Calls(client)
    now = ts("2024-08-02T23:40")
    source = S3TrailSource(client, BUCKET, start=ts("2024-08-02T09:00"))
    assert source.watermark(now) is None
    delivered, _ = drain(source, now)
    assert set(ids(delivered)) == {"h10:00-0", "h10:00-1", "h11:00-0", "h11:00-1"}
    assert source.watermark(now) == now - DELIVERY_WINDOW

    when = ts("2024-08-02T23:45")
    put(client, trail_key(account, "us-east-1", when), records_before("2345", when))
    listed = len(calls.lists)
    assert source.poll(now + 30) == [] and len(calls.lists) == listed  # within relist_seconds: no listing
    assert set(ids(source.poll(now + 61))) == {"2345-0", "2345-1"}
    assert calls.lists[listed]["StartAfter"].endswith("_20240802T2240Z")  # an hour before the last listing

    when = ts("2024-08-03T00:05")  # past midnight: a new day folder
    put(client, trail_key(account, "us-east-1", when), records_before("0005", when))
    listed = len(calls.lists)
    assert set(ids(source.poll(ts("2024-08-03T00:10")))) == {"0005-0", "0005-1"}
    assert [c["Prefix"][-11:] for c in calls.lists[listed:]] == ["2024/08/02/", "2024/08/03/"]

    when = ts("2024-08-03T00:30")  # a region that starts logging is found at the next discovery
    put(client, trail_key(account, "eu-west-1", when), records_before("eu", when))
    assert source.poll(ts("2024-08-03T00:35")) == []
    assert set(ids(source.poll(ts("2024-08-03T00:45")))) == {"eu-0", "eu-1"}
    assert source.progress["folders"] == 2
    assert not [p for p in calls.day_prefixes() if not p.endswith(("2024/08/02/", "2024/08/03/"))]


def test_max_objects_per_poll_spreads_the_backlog_and_progress_reports_it(client, trail):
    source = S3TrailSource(client, BUCKET, start=START, end=END, max_objects_per_poll=3)
    assert source.poll(NOW) and source.watermark(NOW) is None
    progress = source.progress
    assert progress["objects_read"] == 3 and not progress["caught_up"]
    assert 0 < progress["days_done"] < progress["days_total"] == 20
    assert re.fullmatch(r"AWSLogs/.*/CloudTrail/.*/2024/07/31/", progress["current_prefix"])
    read = [3]
    while source.watermark(NOW) is None:
        source.poll(NOW)
        read.append(source.progress["objects_read"])
    assert all(b - a <= 3 for a, b in zip(read, read[1:]))
    progress = source.progress
    assert progress["objects_read"] == len(source.seen) == progress["objects_listed"]
    readable = [k for k, v in trail.items() if isinstance(v, list) and k in source.seen]
    assert progress["records"] == sum(len(trail[k]) for k in readable)
    sizes = {o["Key"]: o["Size"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert progress["bytes_read"] == sum(sizes[k] for k in source.seen)
    assert progress["days_done"] == progress["days_total"] and progress["objects_pending"] == 0
    assert progress["caught_up"] and source.watermark(NOW) == NOW - 15 * 60


def test_access_denied_on_one_prefix_leaves_the_others_working(client, trail):
    denied_day = f"AWSLogs/{ACCOUNTS[1]}/CloudTrail/eu-west-1/2024/08/01/"
    denied_org = f"AWSLogs/{ORG}/"
    calls = Calls(client, deny=(denied_day, denied_org))
    source = S3TrailSource(client, BUCKET, start=START, end=END)
    delivered, _ = drain(source, NOW)
    errors = source.progress["errors"]
    assert set(errors) == {denied_day, denied_org}
    assert all(message.startswith("AccessDenied") for message in errors.values())
    missing = {r["eventID"] for k, v in trail.items() if k.startswith((denied_day, denied_org)) for r in v}
    assert set(in_range(trail)) - set(ids(delivered)) == missing and missing
    assert source.watermark(NOW) is not None  # a denied prefix does not hold the others back

    retries = len(calls.lists)
    assert source.poll(NOW + 1) == []  # retried on the next poll, still denied: no exception
    assert {c["Prefix"] for c in calls.lists[retries:]} == {denied_day, denied_org}
    calls.deny.clear()
    delivered += source.poll(NOW + 2)
    assert set(in_range(trail)) <= set(ids(delivered)) and max(ids(delivered).values()) == 1
    assert source.progress["errors"] == {} and source.progress["error_count"] == 4


def test_a_missing_bucket_raises_so_the_collector_backs_off(client, engine):
    collector = Collector(S3TrailSource(client, "no-such-bucket", start=START), engine, clock=lambda: NOW)
    with pytest.raises(ClientError, match="NoSuchBucket") as raised:
        collector.poll_once()
    assert collector.record_error(raised.value) > 0
    assert "NoSuchBucket" in collector.health.last_error


def test_a_denied_bucket_listing_raises_until_something_can_be_listed(client, trail):
    calls = Calls(client, deny=("AWSLogs/",))
    source = S3TrailSource(client, BUCKET, start=START, end=END)
    with pytest.raises(ClientError, match="AccessDenied"):
        source.poll(NOW)
    calls.deny.clear()
    assert source.poll(NOW + 1)


def test_an_object_over_the_size_limit_is_refused_unread(client, monkeypatch):
    client.create_bucket(Bucket=BUCKET)
    when = ts("2024-08-02T10:00")
    key = trail_key(ACCOUNTS[0], "us-east-1", when)
    put(client, key, records_before("big", when, count=20))
    monkeypatch.setattr(s3_module, "MAX_OBJECT_BYTES", 100)
    calls = Calls(client)
    source = S3TrailSource(client, BUCKET, start=when - 3600, end=when + 3600)
    delivered, _ = drain(source, when + 7200)
    assert [(m.reason, m.origin) for m in delivered] == [("object too large", f"s3://{BUCKET}/{key}")]
    assert calls.gets == [] and key in source.seen


def test_trail_key_follows_cloudtrail_naming():
    when = ts("2024-08-02T08:30:59")
    assert trail_key("111122223333", "eu-west-1", when, prefix="logs", org="o-abcdefghij", suffix="x1") == (
        "logs/AWSLogs/o-abcdefghij/111122223333/CloudTrail/eu-west-1/2024/08/02/"
        "111122223333_CloudTrail_eu-west-1_20240802T0830Z_x1.json.gz"
    )
    assert trail_key("111122223333", "eu-west-1", when, prefix="logs/") == trail_key(
        "111122223333", "eu-west-1", when, prefix="logs"
    )


def test_a_key_prefix_is_followed(client):
    client.create_bucket(Bucket=BUCKET)
    when = ts("2024-08-02T10:00")
    put(client, trail_key(ACCOUNTS[0], "us-east-1", when, prefix="org-trail"), records_before("p", when))
    put(client, trail_key(ACCOUNTS[0], "us-east-1", when), records_before("no-prefix", when))
    source = S3TrailSource(client, BUCKET, "org-trail", start=when - 3600)
    delivered, _ = drain(source, when + 600)
    assert set(ids(delivered)) == {"p-0", "p-1"}


class FlakyReads:
    """A client whose GetObject fails for one key; everything else goes to the real client."""

    def __init__(self, client, key):
        self.client, self.key, self.failures = client, key, 0

    def __getattr__(self, name):
        return getattr(self.client, name)

    def get_object(self, **params):
        if params["Key"] == self.key:
            self.failures += 1
            raise ClientError(
                {"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}}, "GetObject"
            )
        return self.client.get_object(**params)


def test_an_object_that_cannot_be_downloaded_is_retried_then_marked_unreadable(client):
    client.create_bucket(Bucket=BUCKET)
    when = ts("2024-08-02T10:00")
    keys = [trail_key(ACCOUNTS[0], "us-east-1", when + 300 * i, suffix=f"k{i}") for i in range(2)]
    for i, key in enumerate(keys):
        put(client, key, records_before(f"k{i}", when + 300 * i))
    flaky = FlakyReads(client, keys[0])
    source = S3TrailSource(flaky, BUCKET, start=when - 3600)
    first = source.poll(when + 600)
    assert set(ids(first)) == {"k1-0", "k1-1"} and source.watermark(when + 600) is None
    assert source.progress["errors"] == {keys[0]: "SlowDown: Please reduce your request rate."}
    assert source.poll(when + 602) == []
    [marker] = source.poll(when + 604)
    assert marker.reason == "unreadable object" and marker.origin.endswith(keys[0])
    assert flaky.failures == s3_module.READ_ATTEMPTS and keys[0] in source.seen
    assert source.watermark(when + 604) is not None


def test_given_accounts_are_read_when_the_logs_folder_cannot_be_listed(client, trail):
    calls = Calls(client, deny_exact=("AWSLogs/",))  # a policy that allows only the accounts' folders
    source = S3TrailSource(client, BUCKET, start=START, end=END, accounts=(ACCOUNTS[0],))
    delivered, _ = drain(source, NOW)
    folder = f"AWSLogs/{ACCOUNTS[0]}/CloudTrail/"
    assert source.seen == set(calls.gets) and all(key.startswith(folder) for key in source.seen)
    expected = in_range({key: records for key, records in trail.items() if key.startswith(folder)})
    assert len(expected) > 30 and set(expected) <= set(ids(delivered))
    assert list(source.progress["errors"]) == ["AWSLogs/"]


def test_the_collector_counts_every_record_once(client, trail, engine):
    source = S3TrailSource(client, BUCKET, start=START, end=END, max_objects_per_poll=10)
    collector = Collector(source, engine, clock=lambda: NOW)
    while source.watermark(NOW) is None:
        collector.poll_once(NOW)
    read = [records for key, records in trail.items() if key in source.seen and isinstance(records, list)]
    expected = {r["eventID"] for records in read for r in records}
    assert collector.health.events == len(expected) and collector.health.duplicates == 0
    assert collector.health.rejects.total == 2  # the corrupt gzip and the file that is not JSON


def test_a_large_poll_read_the_columnar_way_counts_the_same_events_rejects_and_progress(client, trail, monkeypatch):
    import functools

    import collectors.collector as collector_module
    from metrics.engine import Engine

    def collect(fast_bytes):
        monkeypatch.setattr(
            collector_module,
            "normalise_documents",
            functools.partial(collector_module.normalise_documents.func, fast_bytes=fast_bytes)
            if isinstance(collector_module.normalise_documents, functools.partial)
            else functools.partial(collector_module.normalise_documents, fast_bytes=fast_bytes),
        )
        source = S3TrailSource(client, BUCKET, start=START, end=END, max_objects_per_poll=10)
        collector = Collector(source, Engine(), clock=lambda: NOW)
        while source.watermark(NOW) is None:
            collector.poll_once(NOW)
        frame = collector.engine.buffer.snapshot().frame()
        progress = {k: source.progress[k] for k in ("records", "unreadable", "objects_read")}
        return sorted(frame["eventID"]), dict(collector.health.rejects.counts), progress

    assert collect(0) == collect(float("inf"))
