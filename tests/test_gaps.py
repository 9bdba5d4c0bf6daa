"""Gaps read from LookupEvents by the CloudTrail pollers: every event of the gap once, and a
gap half read when the process dies resumes from what was saved, skipping nothing."""

from __future__ import annotations

import copy
import time

from collectors.cloudtrail import RateLimiter, RegionPoller
from collectors.gaps import Gaps, LookupFill
from metrics.normalise import Unreadable
from tests.cloudtrail_endpoint import DEFAULT_ACCOUNT, CloudTrailEndpoint
from tests.conftest import make_record
from tests.test_cloudtrail_collector import client

REGIONS = ("us-east-1", "eu-west-1")


def iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def filler(endpoint):
    def make(start, end, saved):
        pollers = [
            RegionPoller(DEFAULT_ACCOUNT, r, client(endpoint, r), RateLimiter(50), backfill_pages=1) for r in REGIONS
        ]
        return LookupFill(pollers, start, end, settle=1.0, saved=saved)

    return make


def ids(records) -> set[str]:
    return {r["eventID"] for r in records if not isinstance(r, Unreadable)}


def run_until(condition, gaps: Gaps, kept: set, seconds: float = 60.0):
    """Takes and ingests what the gap thread reads until ``condition()``; returns the state
    saved after the last ingest (as the collector's save would write it)."""
    saved = copy.deepcopy(gaps.checkpoints())
    deadline = time.time() + seconds
    while not condition() and time.time() < deadline:
        kept |= ids(gaps.take())
        gaps.ingested()
        saved = copy.deepcopy(gaps.checkpoints())
        time.sleep(0.05)
    assert condition()
    return saved


def test_a_gap_half_read_when_the_process_dies_resumes_from_its_saved_state_and_misses_nothing():
    now = time.time()
    history = [make_record(f"g{i:04d}", iso(now - 3500 + i * 5), awsRegion=REGIONS[i % 2]) for i in range(600)]
    with CloudTrailEndpoint(rate_per_second=None) as endpoint:
        endpoint.add(history)
        first = Gaps(filler(endpoint), [])
        first.open_gap(now - 3600, now, "first start")
        first.start()
        saved_events: set[str] = set()
        saved = run_until(lambda: len(saved_events) >= 200, first, saved_events)
        lost_in_flight = ids(first.take())  # read and handed over, never ingested: the process dies
        first.close()
        assert first.open() and saved[0]["filler"]["phase"] == "history"

        second = Gaps(filler(endpoint), saved)
        assert second.open() and second.progress() > 0  # it does not start over
        second.start()
        run_until(lambda: not second.open(), second, saved_events)
        saved_events |= ids(second.take())
        second.close()
    assert saved_events == ids(history)
    assert lost_in_flight <= saved_events  # read again in the second life
    closed = second.rows()[0]
    assert closed["state"] == "closed" and closed["progress"] == 1.0 and closed["closed_at"] >= now


def test_a_gap_that_nothing_can_fill_is_shown_and_holds_nothing_up():
    gaps = Gaps(None, [])
    gaps.open_gap(100.0, 200.0, "first start")
    gaps.start()
    assert not gaps.open() and gaps.progress() is None
    assert gaps.rows()[0]["state"] == "not filled"
    assert gaps.checkpoints()[0]["start"] == 100.0  # still remembered after a restart


def test_a_gap_is_read_from_the_trails_s3_files_and_closes_once_every_file_can_have_arrived(monkeypatch):
    import gzip
    import json

    import boto3
    from moto import mock_aws

    from collectors.gaps import S3Fill
    from collectors.s3 import DELIVERY_WINDOW, S3TrailSource, trail_key

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    start, end = 1_796_000_000.0, 1_796_003_600.0
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="trail")
        written = []
        for i in range(6):
            when = start + 600 * i + 300
            records = [make_record(f"s{i}-{j}", iso(when - 60 * (j + 1))) for j in range(3)]
            body = gzip.compress(json.dumps({"Records": records}).encode())
            s3.put_object(Bucket="trail", Key=trail_key(DEFAULT_ACCOUNT, "us-east-1", when), Body=body)
            written += records
        fill = S3Fill(S3TrailSource(s3, "trail", start=start, end=end), end)
        got = []
        for _ in range(5):
            got += fill.step(end + 60)
        assert ids(got) == ids(written)
        assert not fill.done(end + 60)  # files of the gap's last minutes may still be on their way
        assert fill.done(end + DELIVERY_WINDOW + 1)
        assert fill.progress() == 1.0 and len(fill.state()["seen"]) == 6
