"""The CloudTrail pollers against the local LookupEvents endpoint, proved against ground
truth: every event once, whatever the throttling, faults, late delivery or restarts."""

from __future__ import annotations

import calendar
import json
import random
import subprocess
import sys
import time

import boto3
import pytest

from collectors import cloudtrail
from collectors.cloudtrail import Checkpoint, CloudTrailSource, RateLimiter, RegionPoller
from collectors.collector import Collector
from collectors.state import StateStore
from metrics.engine import Engine
from tests.cloudtrail_endpoint import DEFAULT_ACCOUNT, CloudTrailEndpoint, ManualClock, moto_server
from tests.conftest import make_record

T0 = 1_796_000_000.0  # the first poll; the look-back reaches an hour before
REGIONS = ("us-east-1", "eu-west-1", "ap-northeast-1")
FAST = 25.0  # requests per second for the tests that are not about the rate limit


FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def iso(seconds: float) -> str:
    return time.strftime(FORMAT, time.gmtime(seconds))


def workload(seed: int = 1, per_region: int = 220) -> list[dict]:
    """Events from 70 minutes before T0 to 40 minutes after, in three regions."""
    rng = random.Random(seed)
    records = []
    for region in REGIONS:
        for i in range(per_region):
            when = T0 - 4200 + rng.uniform(0, 6600)
            records.append(make_record(f"{region}-{i:04d}", iso(when), awsRegion=region))
    return records


def late(seed: int = 2):
    """CloudTrail's delivery: most events within 5 minutes, some up to 15."""
    rng = random.Random(seed)
    return lambda record: rng.choice([30, 90, 200, 300, 600, 900])


def truth(records: list[dict], start: float, end: float) -> set[str]:
    """The eventIDs with start <= eventTime <= end."""
    return {r["eventID"] for r in records if start <= calendar.timegm(time.strptime(r["eventTime"], FORMAT)) <= end}


def client(endpoint: CloudTrailEndpoint, region: str):
    return boto3.client(
        "cloudtrail",
        region_name=region,
        endpoint_url=endpoint.url,
        aws_access_key_id="AKIDTEST",
        aws_secret_access_key="secret",
        config=cloudtrail.RETRY_CONFIG,
    )


def pollers(endpoint, clock, *, rate=FAST, checkpoints=None, backfill_pages=3, regions=REGIONS):
    checkpoints = checkpoints or {}
    made = []
    for region in regions:
        saved = checkpoints.get(f"{DEFAULT_ACCOUNT}/{region}")
        made.append(
            RegionPoller(
                DEFAULT_ACCOUNT,
                region,
                client(endpoint, region),
                RateLimiter(rate),
                lookback=3600,
                checkpoint=Checkpoint(**saved) if saved else None,
                backfill_pages=backfill_pages,
                clock=clock,
            )
        )
    return made


def run(collector: Collector, clock: ManualClock, until: float, step: float = 120.0) -> None:
    while clock() < until:
        collector.poll_once(clock())
        clock.advance(step)


@pytest.fixture
def endpoint():
    with CloudTrailEndpoint(ManualClock(T0), rate_per_second=FAST, burst=2) as running:
        yield running


def collect_all(endpoint, records, *, end=T0 + 2400 + 1200, **options) -> tuple[Engine, Collector]:
    clock = endpoint.clock
    engine = Engine(retention_seconds=None)
    source = CloudTrailSource(pollers(endpoint, clock, **options), clock=clock)
    collector = Collector(source, engine, clock=clock)
    run(collector, clock, end)
    source.close()
    return engine, collector


def assert_exactly(engine: Engine, expected: set[str]) -> None:
    held = set(engine.buffer.snapshot().frame()["eventID"])
    assert held == expected, (len(expected - held), len(held - expected))
    assert len(engine.buffer) == len(expected)
    assert int(engine.metric_frame("TotalCalls")["value"].sum()) == len(expected)


def test_backfill_and_live_polling_read_every_event_once_even_15_minutes_late(endpoint):
    records = workload()
    endpoint.add(records, visible_after=late())
    engine, collector = collect_all(endpoint, records)
    assert_exactly(engine, truth(records, T0 - 3600, T0 + 2400))
    rows = collector.source.region_health()
    assert {r["state"] for r in rows} == {"live"}
    assert all(r["backfill_done"] == 1.0 for r in rows)
    lags = [r["lag_p50_p95_max"] for r in rows]
    assert all(lag is not None and 0 < lag[2] <= 900 + 120 for lag in lags), lags  # delay plus one poll step
    assert collector.source.watermark(endpoint.clock()) is not None


def test_no_event_is_lost_or_doubled_under_30_percent_throttling(endpoint):
    records = workload(3)
    endpoint.add(records, visible_after=late(4))
    endpoint.inject("throttle", probability=0.3)
    engine, collector = collect_all(endpoint, records)
    assert_exactly(engine, truth(records, T0 - 3600, T0 + 2400))
    throttled = [r for r in endpoint.requests if r.error == "ThrottlingException"]
    assert len(throttled) > 20
    assert sum(r["throttles"] for r in collector.source.region_health()) == len(throttled)


def test_no_event_is_lost_under_5xx_bursts_and_dropped_connections(endpoint):
    records = workload(5)
    endpoint.add(records, visible_after=late(6))
    endpoint.inject("500", probability=0.15)
    endpoint.inject("503", probability=0.1)
    endpoint.inject("drop", probability=0.05)
    engine, collector = collect_all(endpoint, records)
    assert_exactly(engine, truth(records, T0 - 3600, T0 + 2400))
    faults = {r.fault for r in endpoint.requests if r.fault}
    assert {"500", "503", "drop"} <= faults
    assert sum(r["retries"] for r in collector.source.region_health()) > 0


def test_a_malformed_record_is_counted_and_the_rest_kept(endpoint):
    records = workload(7, per_region=60)
    endpoint.add(records)
    endpoint.inject("malformed", count=1, region="eu-west-1")
    engine, collector = collect_all(endpoint, records, end=T0 + 600)
    assert collector.health.rejects.total == 1
    assert collector.health.rejects.summary()[0][0] == "invalid JSON"
    held, expected = set(engine.buffer.snapshot().frame()["eventID"]), truth(records, T0 - 3600, T0 + 600)
    # The damaged copy is rejected; an overlap re-read may bring that event back whole later.
    assert held <= expected and len(expected - held) <= 1


def test_a_kill_mid_backfill_and_a_restart_leave_no_gap_and_no_duplicate(endpoint, tmp_path):
    records = workload(8)
    endpoint.add(records, visible_after=late(9))
    clock = endpoint.clock
    state = tmp_path / "collector"

    # First life: one page of backfill per poll, saved after every poll, then killed (no stop).
    engine = Engine(retention_seconds=None)
    source = CloudTrailSource(pollers(endpoint, clock, backfill_pages=1), clock=clock)
    collector = Collector(source, engine, clock=clock, store=StateStore(state, "cloudtrail"), save_every=0)
    run(collector, clock, T0 + 240)
    first_life = len(engine.buffer)
    assert 0 < source.progress() < 1  # killed mid-backfill
    source.close()
    del collector, source, engine

    # Second life: history from the snapshot, pollers from the checkpoints.
    store = StateStore(state, "cloudtrail")
    engine = Engine(retention_seconds=None)
    assert store.restore(engine) == first_life
    saved = store.checkpoints()
    assert set(saved) == {f"{DEFAULT_ACCOUNT}/{r}" for r in REGIONS}
    source = CloudTrailSource(pollers(endpoint, clock, checkpoints=saved), clock=clock)
    collector = Collector(source, engine, clock=clock, store=store, save_every=0)
    run(collector, clock, T0 + 2400 + 1200)
    source.close()
    assert_exactly(engine, truth(records, T0 - 3600, T0 + 2400))
    assert collector.health.duplicates > 0  # the overlap re-read what the first life had; eventIDs dropped it


def test_one_failing_region_does_not_stop_the_others_and_recovers(endpoint):
    records = workload(10, per_region=80)
    endpoint.add(records)
    endpoint.fail_region("eu-west-1", "AccessDenied")
    clock = endpoint.clock
    engine = Engine(retention_seconds=None)
    source = CloudTrailSource(pollers(endpoint, clock), clock=clock)
    collector = Collector(source, engine, clock=clock)
    run(collector, clock, T0 + 600)
    states = {r["region"]: r for r in source.region_health()}
    assert states["eu-west-1"]["state"] == "degraded"
    assert states["eu-west-1"]["reason"].startswith("AccessDeniedException")
    assert {states[r]["state"] for r in ("us-east-1", "ap-northeast-1")} == {"live"}
    assert source.watermark(clock()) is not None  # the healthy regions still let the forest learn
    endpoint.restore_region("eu-west-1")
    run(collector, clock, T0 + 2400 + 1200)
    source.close()
    assert source.pollers[f"{DEFAULT_ACCOUNT}/eu-west-1"].health.state == "live"
    assert_exactly(engine, truth(records, T0 - 3600, T0 + 2400))


def test_requests_never_exceed_two_per_second_per_account_region_retries_included():
    clock = ManualClock(T0)
    with CloudTrailEndpoint(clock, rate_per_second=2.0, burst=2, page_size=5) as endpoint:
        endpoint.add([make_record(f"r{i}", iso(T0 - 60 - i)) for i in range(40)])
        endpoint.inject("500", probability=0.25)
        shared = cloudtrail.limiter_for("rate-test", "us-east-1")
        two = [
            RegionPoller(
                DEFAULT_ACCOUNT, "us-east-1", client(endpoint, "us-east-1"), shared, lookback=3600, clock=clock
            )
            for _ in range(2)
        ]  # two callers of one account-region share its limiter
        source = CloudTrailSource(two, clock=clock)
        source.poll(clock())
        source.close()
        log = endpoint.requests
        assert len(log) >= 12
        assert endpoint.max_rate(DEFAULT_ACCOUNT, "us-east-1", 1.0) <= 2
        assert not [r for r in log if r.error == "ThrottlingException"]


def test_build_pollers_finds_the_enabled_regions_and_the_account(monkeypatch):
    with moto_server() as url:
        for name in ("EC2", "STS"):
            monkeypatch.setenv(f"AWS_ENDPOINT_URL_{name}", url)
        session = boto3.Session(aws_access_key_id="AKIDTEST", aws_secret_access_key="x", region_name="us-east-1")
        found = cloudtrail.build_pollers([session])
        regions = {p.region for p in found}
        assert "us-east-1" in regions and "eu-west-1" in regions
        assert not [r for r in regions if r.startswith(("us-gov-", "cn-"))]
        assert "ap-east-1" not in regions  # an opt-in region that is not enabled
        assert {p.account for p in found} == {"123456789012"}
        only = cloudtrail.build_pollers([session], regions=("eu-west-1",))
        assert [p.region for p in only] == ["eu-west-1", "us-east-1"]  # us-east-1: the global services
        role = cloudtrail.assumed_session(session, "arn:aws:iam::222233334444:role/reader", "ext-1")
        assert cloudtrail.account_of(role) == "222233334444"


def test_the_command_line_writes_each_event_once_as_json_lines(tmp_path, monkeypatch):
    now = time.time()
    records = [make_record(f"c{i:03d}", iso(now - 3000 + i * 20), awsRegion=REGIONS[i % 3]) for i in range(120)]
    with CloudTrailEndpoint(rate_per_second=None) as endpoint, moto_server() as url:
        endpoint.add(records)
        env = {
            "AWS_ENDPOINT_URL_CLOUDTRAIL": endpoint.url,
            "AWS_ENDPOINT_URL_EC2": url,
            "AWS_ENDPOINT_URL_STS": url,
            "AWS_ACCESS_KEY_ID": "AKIDTEST",
            "AWS_SECRET_ACCESS_KEY": "x",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        out = tmp_path / "events.jsonl"
        start, end = iso(now - 2400), iso(now - 600)
        done = subprocess.run(
            [sys.executable, "-m", "collectors", "cloudtrail", "--regions", ",".join(REGIONS),
             "--start", start, "--end", end, "--out", str(out)],
            env={**env, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=120,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    written = [json.loads(line) for line in out.read_text().splitlines()]
    ids = [r["eventID"] for r in written]
    assert len(ids) == len(set(ids))
    bounds = [calendar.timegm(time.strptime(t, FORMAT)) for t in (start, end)]
    assert set(ids) == truth(records, bounds[0], bounds[1] - 1)  # [start, end)
    assert "backfill 100%" in done.stderr and "wrote" in done.stderr
