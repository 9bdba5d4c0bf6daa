"""The analyst's questions over the buffer: filters, scoped metrics, bins, standouts."""

import pandas as pd
import pytest

from metrics.engine import Engine
from metrics.explore import (
    NO_ERROR,
    EventFilter,
    bin_seconds,
    busiest_per_window,
    episodes,
    leading,
    matching,
    rebin,
    scope_mask,
    scoped_metric,
    subset,
)
from metrics.pumps import PUMPS_BY_NAME
from tests.conftest import batch_of, make_record

T0 = 1_722_587_400  # 2024-08-02T08:30:00Z, a multiple of 60


def at(offset: int) -> str:
    return pd.Timestamp(T0 + offset, unit="s", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def identity(user: str, account: str = "111122223333") -> dict:
    return {"type": "IAMUser", "arn": f"arn:aws:iam::{account}:user/{user}", "accountId": account, "userName": user}


RECORDS = [
    make_record("e1", at(1), eventName="ListBuckets", eventSource="s3.amazonaws.com", userIdentity=identity("alice")),
    make_record("e2", at(5), eventName="ListBuckets", eventSource="s3.amazonaws.com", userIdentity=identity("bob")),
    make_record(
        "e3",
        at(12),
        eventName="RunInstances",
        eventSource="ec2.amazonaws.com",
        errorCode="UnauthorizedOperation",
        errorMessage="You are not authorized to perform this operation.",
        awsRegion="eu-west-1",
        userIdentity=identity("bob", "444455556666"),
        recipientAccountId="444455556666",
    ),
    make_record("e4", at(25), sourceIPAddress="203.0.113.9", userAgent="Boto3/1.35 <script>x</script>"),
    make_record("e5", at(70), eventName="GetObject", eventSource="s3.amazonaws.com", userIdentity=identity("alice")),
]


@pytest.fixture
def loaded():
    engine = Engine(retention_seconds=None, seed=0)
    engine.ingest(batch_of(RECORDS))
    return engine


@pytest.fixture
def frame(loaded):
    return loaded.buffer.snapshot().frame()


def ids(frame) -> list[str]:
    return frame["eventID"].tolist()


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ({}, ["e1", "e2", "e3", "e4", "e5"]),
        ({"start": T0 + 5, "end": T0 + 25}, ["e2", "e3"]),  # start included, end excluded
        ({"users": ("alice",)}, ["e1", "e4", "e5"]),
        ({"users": ("bob",)}, ["e2", "e3"]),
        ({"services": ("s3.amazonaws.com",), "apis": ("ListBuckets",)}, ["e1", "e2"]),
        ({"regions": ("eu-west-1",)}, ["e3"]),
        ({"accounts": ("444455556666",)}, ["e3"]),
        ({"ips": ("203.0.113.9",)}, ["e4"]),
        ({"error_codes": ("UnauthorizedOperation",)}, ["e3"]),
        ({"error_codes": (NO_ERROR,)}, ["e1", "e2", "e4", "e5"]),
        ({"outcome": "failed"}, ["e3"]),
        ({"outcome": "succeeded"}, ["e1", "e2", "e4", "e5"]),
        ({"text": "not AUTHORIZED"}, ["e3"]),  # case-insensitive words, in the error message
        ({"text": "<script>"}, ["e4"]),  # plain substring, not a pattern
        ({"text": "e5"}, ["e5"]),  # the eventID
        ({"text": "nothing like this"}, []),
        ({"users": ("carol",)}, []),
    ],
)
def test_filters_select_exactly_the_matching_events(frame, criteria, expected):
    assert ids(matching(frame, EventFilter(**criteria))) == expected


def test_none_in_a_criterion_stands_for_a_missing_field(frame):
    assert ids(matching(frame, EventFilter(sessions=(None,)))) == ["e1", "e2", "e3", "e4", "e5"]


def test_scoped_metric_equals_the_running_state_without_a_scope(loaded):
    columns = loaded.buffer.snapshot().columns()
    everything = scope_mask(columns, (), ())
    assert everything.all()
    for name in ("TotalCalls", "CallsPerAPI", "CallsPerUser", "EC2Calls", "NumberOfSuccessfulCalls"):
        pump = PUMPS_BY_NAME[name]
        expected = loaded.metric_frame(name, T0, T0 + 120, dense_until=T0 + 119)
        got = scoped_metric(columns, pump, T0, T0 + 120, dense_until=T0 + 119)
        pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def test_scoped_metric_counts_only_the_chosen_region(loaded):
    columns = loaded.buffer.snapshot().columns()
    part = subset(columns, scope_mask(columns, ("eu-west-1",), ()))
    totals = scoped_metric(part, PUMPS_BY_NAME["TotalCalls"], T0, T0 + 40, dense_until=T0 + 39)
    assert totals["value"].tolist() == [0, 1, 0, 0]  # dense: quiet windows are zeros
    assert scope_mask(columns, ("nowhere-1",), ()).sum() == 0


def test_rebin_adds_counts_and_keeps_the_largest_score():
    frame = pd.DataFrame(
        {
            "metric": "TotalCalls",
            "window_start": pd.to_datetime([T0, T0 + 10, T0 + 60, T0 + 70], unit="s", utc=True),
            "category": "",
            "subcategory": "",
            "value": [1, 2, 3, 4],
        }
    )
    summed = rebin(frame, 60)
    assert summed["value"].tolist() == [3, 7]
    assert summed["window_start"].tolist() == list(pd.to_datetime([T0, T0 + 60], unit="s", utc=True))
    assert rebin(frame.assign(value=[0.5, 2.5, 1.0, 0.2]), 60, "max")["value"].tolist() == [2.5, 1.0]
    assert rebin(frame.iloc[:0], 60).empty


@pytest.mark.parametrize(("span", "expected"), [(901, 10), (3601, 10), (6 * 3600 + 1, 60), (86401, 300)])
def test_bins_keep_charts_within_400_points(span, expected):
    assert bin_seconds(span, 10) == expected
    assert bin_seconds(span, 60) == max(expected, 60)


def test_busiest_per_window_names_the_address_and_breaks_ties_by_name():
    frame = pd.DataFrame(
        {
            "window_start": pd.to_datetime([T0, T0, T0, T0 + 60], unit="s", utc=True),
            "category": ["198.51.100.7", "203.0.113.9", "192.0.2.1", "192.0.2.1"],
            "value": [5, 9, 9, 2],
        }
    )
    peaks = busiest_per_window(frame)
    assert list(zip(peaks["category"], peaks["value"])) == [("192.0.2.1", 9), ("192.0.2.1", 2)]


def test_episodes_merge_nearby_high_windows_and_rank_by_peak():
    times = pd.to_datetime([T0 + 10 * k for k in range(30)], unit="s", utc=True)
    values = [0.5] * 30
    values[2], values[3], values[7] = 2.0, 3.0, 1.9  # one run (gaps up to 60 s merge)...
    values[20] = 2.5  # ...and another
    scores = pd.DataFrame({"window_start": times, "value": values})
    totals = pd.DataFrame({"window_start": times, "value": range(30)})
    found = episodes(scores, totals, 1.8, step=10, gap=60)
    assert found[["start", "end", "peak_at"]].values.tolist() == [
        [T0 + 20, T0 + 80, T0 + 30],
        [T0 + 200, T0 + 210, T0 + 200],
    ]
    assert found["peak"].tolist() == [3.0, 2.5]
    assert found["calls"].tolist() == [sum(range(2, 8)), 20]  # every window of the run counts
    assert episodes(scores, totals, 5.0).empty


def test_leading_counts_the_most_frequent_values(frame):
    assert leading(frame, "user", 2) == [("alice", 3), ("bob", 2)]
    assert leading(frame, "eventName", 1) == [("ListBuckets", 2)]
    assert leading(frame.iloc[:0], "user") == []


def test_an_episode_starts_where_the_shingle_of_its_first_high_window_starts():
    # A burst of 500 calls at window 5; the score lags it and first crosses the threshold at
    # window 8 (exactly at the threshold: it counts), staying high until window 12.
    times = pd.to_datetime([T0 + 10 * k for k in range(40)], unit="s", utc=True)
    calls = [2] * 40
    calls[5] = 500
    values = [0.5] * 40
    values[8:13] = [1.8, 4.0, 3.0, 2.5, 2.0]
    values[30] = 2.2  # a later run, its look-back overlapping nothing
    scores = pd.DataFrame({"window_start": times, "value": values})
    totals = pd.DataFrame({"window_start": times, "value": calls})
    found = episodes(scores, totals, 1.8, step=10, gap=60, lookback=40)
    assert found[["start", "end", "peak", "peak_at"]].values.tolist() == [
        [T0 + 40, T0 + 130, 4.0, T0 + 90],  # windows 4 to 12: the burst included
        [T0 + 260, T0 + 310, 2.2, T0 + 300],
    ]
    assert found["calls"].tolist() == [500 + 8 * 2, 5 * 2]


def test_episodes_whose_look_back_overlaps_the_previous_one_merge():
    times = pd.to_datetime([T0 + 10 * k for k in range(20)], unit="s", utc=True)
    values = [0.5] * 20
    values[3], values[12] = 2.0, 3.0  # 90 s apart: two runs, but the second looks back 100 s
    scores = pd.DataFrame({"window_start": times, "value": values})
    totals = pd.DataFrame({"window_start": times, "value": [1] * 20})
    found = episodes(scores, totals, 1.8, step=10, gap=60, lookback=100)
    assert found[["start", "end", "peak", "peak_at", "calls"]].values.tolist() == [
        [T0 - 70, T0 + 130, 3.0, T0 + 120, 13]
    ]
