from collections import Counter

import pytest

from collectors.demo import ACCOUNTS, MAX_DELAY, REGIONS, DemoSource
from metrics.normalise import Rejects, normalise_all

DAY0 = 1_789_948_800  # a Monday, 00:00 UTC
HOUR = 3600


@pytest.fixture(scope="module")
def day():
    return DemoSource(seed=7).records(DAY0, DAY0 + 24 * HOUR)


def test_the_same_seed_gives_the_same_events():
    a = DemoSource(seed=5).records(DAY0, DAY0 + 600)
    b = DemoSource(seed=5).records(DAY0, DAY0 + 600)
    assert a == b
    assert [r["eventID"] for r in DemoSource(seed=6).records(DAY0, DAY0 + 600)] != [r["eventID"] for r in a]


def test_events_do_not_depend_on_how_the_range_is_asked_for():
    source = DemoSource(seed=5)
    whole = source.records(DAY0 + 3, DAY0 + 1003)
    parts = DemoSource(seed=5).records(DAY0 + 3, DAY0 + 500) + DemoSource(seed=5).records(DAY0 + 500, DAY0 + 1003)
    assert [r["eventID"] for r in whole] == [r["eventID"] for r in parts]


def test_every_record_takes_the_normaliser_path_without_a_reject(day):
    rejects = Rejects()
    batch = normalise_all(day, rejects)
    assert rejects.total == 0
    assert len(batch) == len(day)
    assert len(set(batch.column("eventID"))) == len(day)


def test_the_demo_covers_accounts_regions_identities_and_call_kinds(day):
    assert {r["recipientAccountId"] for r in day} == set(ACCOUNTS.values())
    assert {r["awsRegion"] for r in day} == set(REGIONS)
    types = Counter(r["userIdentity"].get("type") for r in day)
    assert {"IAMUser", "AssumedRole", "Root", "AWSService", "FederatedUser", None} <= set(types)
    assert {r["readOnly"] for r in day} == {True, False}
    assert {"AwsApiCall", "AwsServiceEvent", "AwsConsoleSignIn"} <= {r["eventType"] for r in day}
    sessions = {
        r["userIdentity"]["arn"].rsplit("/", 1)[-1] for r in day if r["userIdentity"].get("type") == "AssumedRole"
    }
    assert {"alice@example.com", "billing-export"} <= sessions
    assert all(
        r["awsRegion"] == "us-east-1" for r in day if r["eventSource"] in ("iam.amazonaws.com", "signin.amazonaws.com")
    )


def test_errors_are_a_small_share_with_realistic_codes(day):
    codes = Counter(r.get("errorCode") for r in day)
    share = 1 - codes[None] / len(day)
    assert 0.005 < share < 0.05
    assert {"AccessDenied", "Client.UnauthorizedOperation", "ThrottlingException"} <= set(codes)


def test_traffic_follows_a_daily_rhythm(day):
    by_hour = Counter((int(r["eventTime"][11:13])) for r in day)
    assert by_hour[14] > 2 * by_hour[2]


def minute(record) -> int:
    return int(record["eventTime"][14:16])


def test_hourly_incidents_are_staged(day):
    hour = [r for r in day if r["eventTime"][11:13] == "14"]
    per_minute = Counter(minute(r) for r in hour)
    typical = sorted(per_minute.values())[len(per_minute) // 2]
    assert per_minute[17] > 3 * typical  # enumeration burst
    denied = Counter(minute(r) for r in hour if r.get("errorCode") == "AccessDenied")
    assert denied[37] + denied[38] > 10 * max(1, denied[20])  # AccessDenied spike
    logins = [r for r in hour if r["eventName"] == "ConsoleLogin"]
    assert any(r["additionalEventData"]["MFAUsed"] == "No" and minute(r) == 47 for r in logins)
    bob = [r for r in hour if r["userIdentity"].get("userName") == "bob"]
    new_ips = {r["sourceIPAddress"] for r in bob if minute(r) == 52} - {
        r["sourceIPAddress"] for r in bob if minute(r) != 52
    }
    assert new_ips


def test_incidents_can_be_turned_off():
    calm = DemoSource(seed=7, incidents=False).records(DAY0 + 14 * HOUR, DAY0 + 15 * HOUR)
    assert not [r for r in calm if r["eventName"] == "ConsoleLogin"]
    assert not [r for r in calm if r["userIdentity"].get("userName") in ("svc-backup", "dave")]


def test_first_poll_fills_the_last_hour_then_polls_bring_only_new_deliveries():
    source = DemoSource(seed=2)
    now = DAY0 + 10 * HOUR
    first = source.poll(now)
    times = {r["eventTime"] for r in first}
    assert min(times) >= "2026-09-21T09:00:00Z" and max(times) < "2026-09-21T10:00:00Z"
    later = source.poll(now + 30) + source.poll(now + 600) + source.poll(now + MAX_DELAY + 60)
    ids = [r["eventID"] for r in first + later]
    assert len(ids) == len(set(ids))
    # Delays stay under MAX_DELAY, so by the last poll every event before now + 120 was delivered.
    expected = {r["eventID"] for r in DemoSource(seed=2).records(now - HOUR, now + 120)}
    assert expected <= set(ids)
    assert source.watermark(now) == now - MAX_DELAY


def test_polls_deliver_some_events_late():
    source = DemoSource(seed=2)
    now = DAY0 + 10 * HOUR
    source.poll(now)
    late = [r for r in source.poll(now + 120) if r["eventTime"] < "2026-09-21T10:00:00Z"]
    assert late
