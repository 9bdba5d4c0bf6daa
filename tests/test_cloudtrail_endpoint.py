"""The local CloudTrail endpoint behaves like LookupEvents as seen by real boto3 clients."""

import contextlib
import json
import threading
import time
import urllib.error
import urllib.request

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

from tests.cloudtrail_endpoint import (
    DEFAULT_ACCOUNT,
    CloudTrailEndpoint,
    ManualClock,
    busiest_window,
    epoch,
    moto_server,
)
from tests.conftest import all_stratus, make_record

NOW = epoch("2024-08-02T09:00:00Z")


def client(endpoint, region="us-east-1", *, key="AKIDTEST", attempts=1, **config):
    """A real boto3 CloudTrail client for the endpoint; ``attempts=1`` disables retries (botocore's
    ``max_attempts`` counts retries only: ``{"max_attempts": 1}`` still retries once)."""
    return boto3.client(
        "cloudtrail",
        region_name=region,
        endpoint_url=endpoint.url,
        aws_access_key_id=key,
        aws_secret_access_key="x",
        config=Config(retries={"total_max_attempts": attempts, "mode": "standard"}, **config),
    )


def minute_records(*minutes, prefix="e"):
    """One record per minute past 08:00 on 2024-08-02, eventID ``e<minute>``."""
    return [make_record(f"{prefix}{m:02d}", f"2024-08-02T08:{m:02d}:00Z") for m in minutes]


def ids(events):
    return [event["EventId"] for event in events]


def error_of(excinfo):
    response = excinfo.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


@pytest.fixture
def endpoint():
    with CloudTrailEndpoint(ManualClock(NOW), rate_per_second=None) as endpoint:
        yield endpoint


def test_paginator_returns_every_visible_record_once_newest_first_50_a_page():
    records = all_stratus()
    with CloudTrailEndpoint(rate_per_second=None) as endpoint:  # the real clock: every record is past
        endpoint.add(records, region="us-east-1", account=DEFAULT_ACCOUNT)

        pages = list(client(endpoint).get_paginator("lookup_events").paginate())
        visible = endpoint.visible(DEFAULT_ACCOUNT, "us-east-1")

    assert [len(page["Events"]) for page in pages] == [50] * 6 + [len(records) - 300]
    events = [event for page in pages for event in page["Events"]]
    newest_first = sorted(records, key=lambda r: (epoch(r["eventTime"]), r["eventID"]), reverse=True)
    assert ids(events) == [r["eventID"] for r in newest_first]
    assert [json.loads(e["CloudTrailEvent"]) for e in events] == newest_first
    assert visible == newest_first
    assert "NextToken" not in pages[-1]


def test_events_have_the_lookup_events_fields(endpoint):
    identity = {"type": "IAMUser", "userName": "alice", "accessKeyId": "AKIAALICE", "accountId": DEFAULT_ACCOUNT}
    user = make_record("e1", "2024-08-02T08:30:00Z", userIdentity=identity, readOnly=False)
    role = next(r for r in all_stratus() if r["userIdentity"]["type"] == "AssumedRole")
    endpoint.add([user])
    endpoint.add([role], region="us-east-1", account=DEFAULT_ACCOUNT)

    events = {e["EventId"]: e for e in client(endpoint).lookup_events()["Events"]}

    event = events["e1"]
    assert {name: event[name] for name in event if name not in ("EventTime", "CloudTrailEvent")} == {
        "EventId": "e1",
        "EventName": "GetCallerIdentity",
        "ReadOnly": "false",
        "AccessKeyId": "AKIAALICE",
        "EventSource": "sts.amazonaws.com",
        "Username": "alice",
        "Resources": [],
    }
    assert event["EventTime"].timestamp() == epoch("2024-08-02T08:30:00Z")
    assert json.loads(event["CloudTrailEvent"]) == user
    assert events[role["eventID"]]["Username"] == role["userIdentity"]["arn"].rsplit("/", 1)[-1]


def test_start_and_end_time_are_both_inclusive(endpoint):
    endpoint.add(minute_records(0, 1, 2, 3))

    events = client(endpoint).lookup_events(
        StartTime=epoch("2024-08-02T08:01:00Z"), EndTime=epoch("2024-08-02T08:02:00Z")
    )["Events"]

    assert ids(events) == ["e02", "e01"]


def test_start_time_after_end_time_is_an_invalid_time_range(endpoint):
    with pytest.raises(ClientError) as excinfo:
        client(endpoint).lookup_events(StartTime=NOW, EndTime=NOW - 60)

    assert error_of(excinfo) == ("InvalidTimeRangeException", 400)


def test_late_events_stay_invisible_until_their_delay_passes():
    clock = ManualClock(epoch("2024-08-02T08:02:30Z"))
    with CloudTrailEndpoint(clock, rate_per_second=None) as endpoint:
        endpoint.add(minute_records(0))
        endpoint.add(minute_records(1), visible_after=300)
        endpoint.add(minute_records(2, 3), visible_after=lambda record: 900 if record["eventID"] == "e02" else 0)
        lookup = client(endpoint).lookup_events

        assert ids(lookup()["Events"]) == ["e00"]  # e03 lies in the future
        clock.now = epoch("2024-08-02T08:06:00Z")
        assert ids(lookup()["Events"]) == ["e03", "e01", "e00"]
        clock.advance(660)
        assert ids(lookup()["Events"]) == ["e03", "e02", "e01", "e00"]
        earlier = endpoint.visible(DEFAULT_ACCOUNT, "us-east-1", now=epoch("2024-08-02T08:06:00Z"))
        assert [record["eventID"] for record in earlier] == ["e03", "e01", "e00"]


def test_next_page_continues_after_the_last_event_even_when_new_ones_appear():
    clock = ManualClock(NOW)
    with CloudTrailEndpoint(clock, rate_per_second=None) as endpoint:
        endpoint.add(minute_records(10, 20, 30, 40))
        endpoint.add(minute_records(50), visible_after=7200)  # newer than page 1
        endpoint.add(minute_records(15), visible_after=7200)  # older than page 1's last event
        lookup = client(endpoint).lookup_events

        first = lookup(MaxResults=2)
        clock.advance(7200)
        second = lookup(MaxResults=2, NextToken=first["NextToken"])
        third = lookup(MaxResults=2, NextToken=second["NextToken"])

    assert ids(first["Events"]) == ["e40", "e30"]
    assert ids(second["Events"]) == ["e20", "e15"]
    assert ids(third["Events"]) == ["e10"]
    assert "NextToken" not in third


def test_a_garbage_or_reused_next_token_is_invalid(endpoint):
    endpoint.add(minute_records(1, 2, 3))
    token = client(endpoint).lookup_events(MaxResults=1, StartTime=NOW - 7200)["NextToken"]

    attempts = [
        (client(endpoint), {"NextToken": "garbage"}),
        (client(endpoint), {"NextToken": token[:-1] + ("0" if token[-1] != "0" else "1")}),
        (client(endpoint), {"NextToken": token, "StartTime": NOW - 3600}),  # other parameters
        (client(endpoint, "eu-west-1"), {"NextToken": token, "StartTime": NOW - 7200}),  # other region
    ]
    for lookup_client, parameters in attempts:
        with pytest.raises(ClientError) as excinfo:
            lookup_client.lookup_events(MaxResults=1, **parameters)
        assert error_of(excinfo) == ("InvalidNextTokenException", 400)
    assert ids(client(endpoint).lookup_events(MaxResults=1, StartTime=NOW - 7200, NextToken=token)["Events"]) == ["e02"]


def test_lookup_attributes_filter_on_one_attribute(endpoint):
    records = [
        make_record("e1", "2024-08-02T08:01:00Z", eventName="StopLogging", readOnly=False),
        make_record("e2", "2024-08-02T08:02:00Z"),
        make_record("e3", "2024-08-02T08:03:00Z", eventName="StopLogging", readOnly=False),
    ]
    endpoint.add(records)
    lookup = client(endpoint).lookup_events

    def matching(key, value):
        return ids(lookup(LookupAttributes=[{"AttributeKey": key, "AttributeValue": value}])["Events"])

    assert matching("EventName", "StopLogging") == ["e3", "e1"]
    assert matching("ReadOnly", "true") == ["e2"]
    assert matching("EventId", "e1") == ["e1"]
    assert matching("Username", "alice") == ["e3", "e2", "e1"]
    with pytest.raises(ClientError) as excinfo:
        lookup(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "x"}] * 2)
    assert error_of(excinfo) == ("InvalidLookupAttributesException", 400)


def test_page_size_caps_max_results_and_more_than_50_is_refused():
    with CloudTrailEndpoint(ManualClock(NOW), page_size=3, rate_per_second=None) as endpoint:
        endpoint.add(minute_records(*range(10)))

        pages = list(client(endpoint).get_paginator("lookup_events").paginate())
        assert [len(page["Events"]) for page in pages] == [3, 3, 3, 1]
        assert len(client(endpoint).lookup_events(MaxResults=2)["Events"]) == 2
        with pytest.raises(ClientError) as excinfo:
            client(endpoint).lookup_events(MaxResults=51)
        assert error_of(excinfo) == ("InvalidMaxResultsException", 400)


def test_third_request_within_a_second_is_throttled_while_another_region_is_not():
    with CloudTrailEndpoint(ManualClock(NOW)) as endpoint:
        east, west = client(endpoint, "us-east-1"), client(endpoint, "eu-west-1")
        east.lookup_events()
        east.lookup_events()
        with pytest.raises(ClientError) as excinfo:
            east.lookup_events()
        west.lookup_events()

        assert error_of(excinfo) == ("ThrottlingException", 400)
        assert excinfo.value.response["Error"]["Message"] == "Rate exceeded"
        assert [(r.region, r.status, r.error) for r in endpoint.requests] == [
            ("us-east-1", 200, None),
            ("us-east-1", 200, None),
            ("us-east-1", 400, "ThrottlingException"),
            ("eu-west-1", 200, None),
        ]


def test_a_throttled_region_is_served_again_as_the_bucket_refills():
    with CloudTrailEndpoint(ManualClock(NOW)) as endpoint:
        east = client(endpoint)
        for _ in range(2):
            east.lookup_events()
        with pytest.raises(ClientError):
            east.lookup_events()
        time.sleep(0.55)  # 2 per second: one token back after 0.5 s

        east.lookup_events()

        assert [r.status for r in endpoint.requests] == [200, 200, 400, 200]


def test_the_rate_limit_holds_against_a_client_that_ignores_it():
    with CloudTrailEndpoint(ManualClock(NOW), rate_per_second=10.0) as endpoint:
        east = client(endpoint)
        started = time.monotonic()
        # Enough requests to outrun the bucket, however slow this machine is today.
        while (time.monotonic() - started < 0.5 or len(endpoint.requests) < 40) and time.monotonic() - started < 10:
            with contextlib.suppress(ClientError):
                east.lookup_events()
        served = [r for r in endpoint.requests if r.status == 200]

        assert len(endpoint.requests) > len(served) >= 3
        assert len(served) <= 2 + 10 * (served[-1].time - endpoint.requests[0].time) + 1


@pytest.mark.parametrize(
    ("fault", "code", "status"),
    [("throttle", "ThrottlingException", 400), ("500", "InternalFailure", 500), ("503", "ServiceUnavailable", 503)],
)
def test_injected_errors_reach_a_client_without_retries(endpoint, fault, code, status):
    endpoint.inject(fault, count=1)

    with pytest.raises(ClientError) as excinfo:
        client(endpoint).lookup_events()

    assert error_of(excinfo) == (code, status)
    assert endpoint.requests[-1].fault == fault
    client(endpoint).lookup_events()  # the fault was used up


@pytest.mark.parametrize("fault", ["throttle", "500", "503", "drop"])
def test_standard_retry_mode_recovers_from_transient_faults(endpoint, fault):
    endpoint.add(minute_records(1))
    endpoint.inject(fault, count=1)

    events = client(endpoint, attempts=3).lookup_events()["Events"]

    assert ids(events) == ["e01"]
    assert [(r.fault, r.status) for r in endpoint.requests] == [
        (fault, None if fault == "drop" else 400 if fault == "throttle" else int(fault)),
        (None, 200),
    ]


def test_a_dropped_connection_is_a_connection_closed_error(endpoint):
    endpoint.inject("drop")

    with pytest.raises(ConnectionClosedError):
        client(endpoint).lookup_events()


def test_a_slow_answer_times_out_a_client_with_a_short_read_timeout(endpoint):
    endpoint.inject("slow", count=1, seconds=5.0)
    started = time.monotonic()

    with pytest.raises(ReadTimeoutError):
        client(endpoint, read_timeout=0.2).lookup_events()
    client(endpoint, read_timeout=1.0).lookup_events()

    assert time.monotonic() - started < 3


def test_a_slow_answer_arrives_after_the_delay(endpoint):
    endpoint.inject("slow", count=1, seconds=0.3)
    started = time.monotonic()

    client(endpoint).lookup_events()

    assert time.monotonic() - started >= 0.3
    assert [(r.fault, r.status) for r in endpoint.requests] == [("slow", 200)]


def test_malformed_fault_breaks_the_cloudtrail_event_of_one_event_in_the_page(endpoint):
    endpoint.add(minute_records(*range(10)))
    endpoint.inject("malformed", count=1)

    events = client(endpoint).lookup_events()["Events"]

    broken = []
    for event in events:
        try:
            json.loads(event["CloudTrailEvent"])
        except ValueError:
            broken.append(event["EventId"])
    assert len(events) == 10 and len(broken) == 1
    assert endpoint.requests[-1].fault == "malformed"
    assert all(json.loads(e["CloudTrailEvent"]) for e in client(endpoint).lookup_events()["Events"])


def test_faults_drawn_with_a_probability_are_reproducible_from_the_seed():
    def run():
        with CloudTrailEndpoint(ManualClock(NOW), rate_per_second=None, seed=7) as endpoint:
            endpoint.inject("500", probability=0.5)
            lookup = client(endpoint).lookup_events
            for _ in range(20):
                with contextlib.suppress(ClientError):
                    lookup()
            return [r.status for r in endpoint.requests]

    statuses = run()
    assert statuses == run()
    assert set(statuses) == {200, 500}


def test_faults_can_be_limited_to_a_region_and_cleared(endpoint):
    endpoint.inject("503", region="eu-west-1")

    client(endpoint, "us-east-1").lookup_events()
    with pytest.raises(ClientError):
        client(endpoint, "eu-west-1").lookup_events()
    endpoint.clear_faults()
    client(endpoint, "eu-west-1").lookup_events()


@pytest.mark.parametrize(
    ("error", "code"), [("OptInRequired", "UnrecognizedClientException"), ("AccessDenied", "AccessDeniedException")]
)
def test_a_failed_region_answers_every_call_with_its_error(endpoint, error, code):
    endpoint.fail_region("ap-east-1", error)

    for _ in range(3):
        with pytest.raises(ClientError) as excinfo:
            client(endpoint, "ap-east-1", attempts=3).lookup_events()
        assert error_of(excinfo) == (code, 400)
    client(endpoint, "us-east-1").lookup_events()
    assert {(r.region, r.fault) for r in endpoint.requests} == {("ap-east-1", error), ("us-east-1", None)}


def test_an_unreachable_region_drops_the_connection_until_restored(endpoint):
    endpoint.fail_region("ap-east-1", "unreachable")

    with pytest.raises(ConnectionClosedError):
        client(endpoint, "ap-east-1").lookup_events()
    endpoint.restore_region("ap-east-1")
    client(endpoint, "ap-east-1").lookup_events()

    assert [(r.fault, r.status) for r in endpoint.requests] == [("unreachable", None), (None, 200)]


def test_the_account_comes_from_the_access_key_and_unknown_keys_are_refused():
    accounts = {"AKIDALPHA": "111111111111", "AKIDBETA": "222222222222"}
    with CloudTrailEndpoint(ManualClock(NOW), rate_per_second=None, accounts=accounts) as endpoint:
        endpoint.add(minute_records(1, prefix="alpha"), account="111111111111")
        endpoint.add([make_record("beta01", "2024-08-02T08:01:00Z", recipientAccountId="222222222222")])

        assert ids(client(endpoint, key="AKIDALPHA").lookup_events()["Events"]) == ["alpha01"]
        assert ids(client(endpoint, key="AKIDBETA").lookup_events()["Events"]) == ["beta01"]
        with pytest.raises(ClientError) as excinfo:
            client(endpoint, key="AKIDGAMMA").lookup_events()
        assert error_of(excinfo) == ("UnrecognizedClientException", 400)
        assert [r.account for r in endpoint.requests] == ["111111111111", "222222222222", None]


def test_busiest_window_counts_the_most_times_within_any_window():
    assert busiest_window([]) == 0
    assert busiest_window([0.0, 0.5, 0.99, 1.0, 1.2, 5.0]) == 4  # 0.5 .. 1.2
    assert busiest_window([0.0, 1.0, 2.0]) == 1
    assert busiest_window([0.0, 1.0, 2.0], window=2.5) == 3


def test_max_rate_counts_every_request_for_one_account_and_region():
    with CloudTrailEndpoint(ManualClock(NOW)) as endpoint:
        east = client(endpoint)
        for _ in range(4):
            with contextlib.suppress(ClientError):
                east.lookup_events()
        client(endpoint, "eu-west-1").lookup_events()

        assert endpoint.max_rate(DEFAULT_ACCOUNT, "us-east-1") == 4  # throttled ones included
        assert endpoint.max_rate(DEFAULT_ACCOUNT, "eu-west-1") == 1
        assert endpoint.max_rate(DEFAULT_ACCOUNT, "ap-east-1") == 0
        assert endpoint.max_rate("999999999999", "us-east-1") == 0


def test_concurrent_clients_each_get_their_own_region_in_full(endpoint):
    regions = [f"test-region-{n}" for n in range(8)]
    for region in regions:
        endpoint.add([make_record(f"{region}-{n:03d}", "2024-08-02T08:00:00Z") for n in range(120)], region=region)
    results = {}

    def read(region):
        pages = client(endpoint, region).get_paginator("lookup_events").paginate()
        results[region] = [event["EventId"] for page in pages for event in page["Events"]]

    threads = [threading.Thread(target=read, args=(region,)) for region in regions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for region in regions:
        assert results[region] == [f"{region}-{n:03d}" for n in reversed(range(120))]
    assert len(endpoint.requests) == 8 * 3


def test_the_endpoint_can_come_from_the_standard_environment_variable(endpoint, monkeypatch):
    endpoint.add(minute_records(1))
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDTRAIL", endpoint.url)
    monkeypatch.delenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", raising=False)

    trail = boto3.client("cloudtrail", region_name="eu-west-1", aws_access_key_id="AKIDTEST", aws_secret_access_key="x")

    assert ids(trail.lookup_events()["Events"]) == []
    assert endpoint.requests[-1].region == "eu-west-1"


def test_retention_hides_events_older_than_it():
    with CloudTrailEndpoint(ManualClock(NOW), rate_per_second=None, retention=90 * 86400) as endpoint:
        endpoint.add([make_record("old", "2024-05-01T00:00:00Z"), make_record("new", "2024-07-01T00:00:00Z")])

        assert ids(client(endpoint).lookup_events()["Events"]) == ["new"]


def test_requests_that_are_not_signed_lookup_events_calls_are_refused(endpoint):
    def post(headers):
        request = urllib.request.Request(endpoint.url, data=b"{}", headers=headers, method="POST")
        with pytest.raises(urllib.error.HTTPError) as excinfo:
            urllib.request.urlopen(request, timeout=5)
        return excinfo.value.code, json.loads(excinfo.value.read())["__type"]

    scope = "AWS4-HMAC-SHA256 Credential=AKIDTEST/20240802/us-east-1/cloudtrail/aws4_request, Signature=0"
    target = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.DescribeTrails"
    assert post({}) == (400, "MissingAuthenticationTokenException")
    assert post({"Authorization": scope, "X-Amz-Target": target}) == (400, "UnknownOperationException")


def test_stop_closes_the_endpoint():
    endpoint = CloudTrailEndpoint(ManualClock(NOW)).start()
    trail = client(endpoint)
    trail.lookup_events()

    endpoint.stop()

    with pytest.raises((EndpointConnectionError, ConnectionClosedError)):
        trail.lookup_events()


@pytest.fixture(scope="module")
def moto_url():
    with moto_server() as url:
        yield url


def aws(service, url, region="us-east-1", **credentials):
    credentials = credentials or {"aws_access_key_id": "AKIDTEST", "aws_secret_access_key": "x"}
    return boto3.client(service, region_name=region, endpoint_url=url, **credentials)


def test_moto_describe_regions_lists_regions_with_their_opt_in_status(moto_url):
    regions = {r["RegionName"]: r["OptInStatus"] for r in aws("ec2", moto_url).describe_regions()["Regions"]}

    assert regions["us-east-1"] == "opt-in-not-required"
    assert regions["ap-east-1"] == "not-opted-in"
    assert {"opt-in-not-required", "not-opted-in"} == set(regions.values())
    assert aws("ec2", moto_url).describe_regions(AllRegions=True)["Regions"] == [
        {
            "RegionName": name,
            "OptInStatus": status,
            "Endpoint": f"ec2.{name}.amazonaws.com" + ".cn" * name.startswith("cn-"),
        }
        for name, status in regions.items()
    ]


def test_moto_sts_assumes_a_role_whose_credentials_name_its_account(moto_url, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_url)
    monkeypatch.delenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", raising=False)
    sts = aws("sts", None)

    assert sts.get_caller_identity()["Account"] == "123456789012"
    role = sts.assume_role(RoleArn="arn:aws:iam::222233334444:role/reader", RoleSessionName="insights")
    keys = role["Credentials"]
    assumed = aws(
        "sts",
        None,
        aws_access_key_id=keys["AccessKeyId"],
        aws_secret_access_key=keys["SecretAccessKey"],
        aws_session_token=keys["SessionToken"],
    )

    identity = assumed.get_caller_identity()
    assert (identity["Account"], identity["Arn"]) == (
        "222233334444",
        "arn:aws:sts::222233334444:assumed-role/reader/insights",
    )
