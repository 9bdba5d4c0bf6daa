"""Every metric against hand-computed expectations, then the properties that keep them right:
late events, duplicates, empty windows, malformed input, and incremental == full recompute."""

import duckdb
import numpy as np
import pandas as pd
import pytest

from collectors.demo import DemoSource
from metrics.buffer import NS_PER_SECOND, EventColumns
from metrics.engine import METRIC_NAMES, Engine
from metrics.normalise import Rejects, normalise_all
from metrics.pumps import PUMPS, PUMPS_BY_NAME, WindowCounts, aggregate, compute_all
from metrics.records import iter_paths
from metrics.sql import pump_sql
from metrics.windows import iso, window_start
from tests.conftest import DATA, STRATUS, batch_of, make_record

FIXTURE = [STRATUS / "aws.defense-evasion.organizations-leave.json", DATA / "cli" / "extra.jsonl"]
ROLE, ROLE_SESSION = "stratus-red-team-leave-org-role", "aws-go-sdk-1722587398902687000"
EC2_ROLE, EC2_SESSION = "stratus-red-team-ec2lui-role-idtzskbvtd", "aws-go-sdk-1722511821294449000"


def rows(frame: pd.DataFrame) -> list[tuple]:
    return [
        (iso(int(t.timestamp())), c, s, v)
        for t, c, s, v in zip(frame["window_start"], frame["category"], frame["subcategory"], frame["value"])
    ]


@pytest.fixture(scope="module")
def fixture_engine():
    rejects = Rejects()
    engine = Engine(retention_seconds=None)
    for _, group in pd.DataFrame(list(iter_paths(FIXTURE)), columns=["origin", "record"]).groupby("origin", sort=False):
        engine.ingest(normalise_all(group["record"], rejects))
    engine.finish()
    assert rejects.summary() == [("invalid JSON", 1), ("missing eventTime", 1)]
    assert engine.buffer.duplicates == 1
    return engine


# The fixture: 08:29:59 AssumeRole (christophe, ok); 08:30:00 AssumeRole (christophe, ok);
# 08:30:00 LeaveOrganization (leave-org role, AccessDenied); 08:30:07 RunInstances (ec2 role,
# Client.UnauthorizedOperation) from 06.237.252.245; the others from 252.5.222.230.
EXPECTED = {
    "TotalCalls": [("2024-08-02T08:29:50Z", "", "", 1), ("2024-08-02T08:30:00Z", "", "", 3)],
    "NumberOfSuccessfulCalls": [("2024-08-02T08:29:50Z", "", "", 1), ("2024-08-02T08:30:00Z", "", "", 1)],
    "CallsPerUniqueIp": [
        ("2024-08-02T08:29:00Z", "252.5.222.230", "", 1),
        ("2024-08-02T08:30:00Z", "06.237.252.245", "", 1),
        ("2024-08-02T08:30:00Z", "252.5.222.230", "", 2),
    ],
    "CallsPerAPI": [
        ("2024-08-02T08:29:50Z", "sts.amazonaws.com", "AssumeRole", 1),
        ("2024-08-02T08:30:00Z", "ec2.amazonaws.com", "RunInstances", 1),
        ("2024-08-02T08:30:00Z", "organizations.amazonaws.com", "LeaveOrganization", 1),
        ("2024-08-02T08:30:00Z", "sts.amazonaws.com", "AssumeRole", 1),
    ],
    "CallsPerServiceType": [
        ("2024-08-02T08:29:50Z", "sts.amazonaws.com", "", 1),
        ("2024-08-02T08:30:00Z", "organizations.amazonaws.com", "", 1),
        ("2024-08-02T08:30:00Z", "sts.amazonaws.com", "", 1),
    ],
    "EC2Calls": [("2024-08-02T08:30:00Z", "ec2.amazonaws.com", "Client.UnauthorizedOperation", 1)],
    "CallsPerUser": [
        ("2024-08-02T08:29:50Z", "christophe", "", 1),
        ("2024-08-02T08:30:00Z", "christophe", "", 1),
        ("2024-08-02T08:30:00Z", EC2_ROLE, EC2_SESSION, 1),
        ("2024-08-02T08:30:00Z", ROLE, ROLE_SESSION, 1),
    ],
    "AnomalyScore": [("2024-08-02T08:29:50Z", "", "", 0.0), ("2024-08-02T08:30:00Z", "", "", 0.0)],
}


@pytest.mark.parametrize("metric", sorted(EXPECTED))
def test_metric_matches_hand_computed_rows(fixture_engine, metric):
    assert rows(fixture_engine.metric_frame(metric)) == EXPECTED[metric]


def test_every_metric_has_a_hand_computed_expectation():
    assert set(EXPECTED) == set(METRIC_NAMES)


def test_full_recompute_gives_the_same_rows(fixture_engine):
    full = compute_all(fixture_engine.buffer.snapshot().columns())
    for name, frame in full.items():
        assert rows(frame) == EXPECTED[name], name


def test_windows_are_aligned_to_the_epoch():
    assert window_start(1_722_587_399, 10) == 1_722_587_390
    assert window_start(1_722_587_399, 60) == 1_722_587_340
    assert window_start(0, 10) == 0


def at(seconds: int) -> str:
    return iso(seconds)


T0 = 1_722_587_400


def test_a_late_event_adds_to_its_own_window_which_is_never_emitted_twice(engine):
    engine.ingest(batch_of([make_record("a", at(T0)), make_record("b", at(T0 + 30))]))
    engine.ingest(batch_of([make_record("late", at(T0 + 5))]))  # arrives after a newer window
    assert rows(engine.metric_frame("TotalCalls")) == [
        (at(T0), "", "", 2),
        (at(T0 + 10), "", "", 0),
        (at(T0 + 20), "", "", 0),
        (at(T0 + 30), "", "", 1),
    ]
    api = engine.metric_frame("CallsPerAPI")
    assert rows(api) == [
        (at(T0), "sts.amazonaws.com", "GetCallerIdentity", 2),
        (at(T0 + 30), "sts.amazonaws.com", "GetCallerIdentity", 1),
    ]


def test_an_event_earlier_than_everything_extends_the_dense_series(engine):
    engine.ingest(batch_of([make_record("a", at(T0 + 20))]))
    engine.ingest(batch_of([make_record("early", at(T0 - 10))]))
    assert [r[3] for r in rows(engine.metric_frame("TotalCalls"))] == [1, 0, 0, 1]


def test_a_duplicate_changes_no_count(engine):
    records = [make_record("a", at(T0)), make_record("b", at(T0 + 1))]
    engine.ingest(batch_of(records))
    before = engine.all_metrics()
    result = engine.ingest(batch_of(records))
    assert (result.added, result.duplicates) == (0, 2)
    pd.testing.assert_frame_equal(engine.all_metrics(), before)


def test_empty_windows_are_zero_in_dense_series_and_absent_elsewhere(engine):
    engine.ingest(batch_of([make_record("a", at(T0)), make_record("b", at(T0 + 60), errorCode="AccessDenied")]))
    totals = rows(engine.metric_frame("TotalCalls"))
    assert [r[3] for r in totals] == [1, 0, 0, 0, 0, 0, 1]
    assert [r[3] for r in rows(engine.metric_frame("NumberOfSuccessfulCalls"))] == [1, 0, 0, 0, 0, 0, 0]
    assert len(engine.metric_frame("CallsPerAPI")) == 2
    assert len(engine.metric_frame("AnomalyScore")) == 7


def test_an_engine_with_no_events_has_empty_metrics(engine):
    for name in METRIC_NAMES:
        assert engine.metric_frame(name).empty, name
    assert engine.all_metrics().empty


def test_malformed_records_change_no_count(engine):
    rejects = Rejects()
    good = make_record("a", at(T0))
    batch = normalise_all([good, make_record("b", "soon"), {"eventID": "c"}, 7], rejects)
    engine.ingest(batch)
    assert rejects.total == 3
    assert rows(engine.metric_frame("TotalCalls")) == [(at(T0), "", "", 1)]


def test_ec2_calls_split_success_from_each_error_code(engine):
    ec2 = {"eventSource": "ec2.amazonaws.com", "eventName": "DescribeInstances"}
    engine.ingest(
        batch_of(
            [
                make_record("ok1", at(T0), **ec2),
                make_record("ok2", at(T0 + 1), **ec2),
                make_record("denied", at(T0 + 2), errorCode="Client.UnauthorizedOperation", **ec2),
                make_record("other", at(T0 + 3)),
            ]
        )
    )
    assert rows(engine.metric_frame("EC2Calls")) == [
        (at(T0), "ec2.amazonaws.com", "", 2),
        (at(T0), "ec2.amazonaws.com", "Client.UnauthorizedOperation", 1),
    ]
    assert rows(engine.metric_frame("CallsPerServiceType")) == [(at(T0), "sts.amazonaws.com", "", 1)]


def test_a_record_without_event_source_is_counted_in_totals_only_where_sql_would(engine):
    engine.ingest(batch_of([make_record("a", at(T0), eventSource=...)]))
    assert rows(engine.metric_frame("TotalCalls")) == [(at(T0), "", "", 1)]
    assert engine.metric_frame("CallsPerServiceType").empty  # NULL <> 'ec2...' is not true
    assert engine.metric_frame("EC2Calls").empty
    assert rows(engine.metric_frame("CallsPerAPI")) == [(at(T0), "", "GetCallerIdentity", 1)]


def test_calls_per_ip_use_one_minute_windows(engine):
    engine.ingest(batch_of([make_record(f"e{i}", at(T0 + 20 * i)) for i in range(4)]))
    assert rows(engine.metric_frame("CallsPerUniqueIp")) == [
        (at(T0), "198.51.100.7", "", 3),
        (at(T0 + 60), "198.51.100.7", "", 1),
    ]


def test_reading_a_range_returns_only_its_windows(engine):
    engine.ingest(batch_of([make_record(f"e{i}", at(T0 + 10 * i)) for i in range(10)]))
    frame = engine.metric_frame("CallsPerAPI", T0 + 20, T0 + 50)
    assert [r[0] for r in rows(frame)] == [at(T0 + 20), at(T0 + 30), at(T0 + 40)]
    dense = engine.metric_frame("TotalCalls", T0 + 80, T0 + 200, dense_until=T0 + 130)
    assert [r[3] for r in rows(dense)] == [1, 1, 0, 0, 0, 0]


def test_retention_drops_old_windows_from_every_metric():
    engine = Engine(retention_seconds=100)
    engine.ingest(
        batch_of([make_record(f"e{i}", at(T0 + 10 * i)) for i in range(20)]), now_ns=(T0 + 190) * NS_PER_SECOND
    )
    engine.ingest(batch_of([make_record("new", at(T0 + 300))]), now_ns=(T0 + 300) * NS_PER_SECOND)
    assert engine.buffer.expired == 9  # e0..e8 were already older than 100 s when they came
    # Windows before T0 + 200 are gone; T0 + 200 .. T0 + 290 were quiet, so the series starts at T0 + 300.
    assert rows(engine.metric_frame("TotalCalls")) == [(at(T0 + 300), "", "", 1)]
    assert rows(engine.metric_frame("CallsPerUniqueIp")) == [(at(T0 + 300), "198.51.100.7", "", 1)]
    assert len(engine.buffer) == 1


def test_pre_aggregated_windows_add_to_the_counts(engine):
    engine.ingest(batch_of([make_record("a", at(T0))]))
    counts = WindowCounts(
        window=np.array([T0, T0 + 10]),
        category=np.array(["sts.amazonaws.com", "s3.amazonaws.com"], dtype=object),
        subcategory=np.array(["GetCallerIdentity", "ListBuckets"], dtype=object),
        count=np.array([5, 2]),
    )
    engine.add_windows("CallsPerAPI", counts)
    assert rows(engine.metric_frame("CallsPerAPI")) == [
        (at(T0), "sts.amazonaws.com", "GetCallerIdentity", 6),
        (at(T0 + 10), "s3.amazonaws.com", "ListBuckets", 2),
    ]


@pytest.fixture(scope="module")
def demo_batches():
    """Four hours of demo traffic, incidents included, split into uneven batches."""
    records = DemoSource(seed=3, rate=6).records(T0, T0 + 4 * 3600)
    batches, start = [], 0
    for size in [5000, 1, 999, 20_000, 3]:
        batches.append(records[start : start + size])
        start += size
    batches.append(records[start:])
    return [batch_of(b) for b in batches]


def test_incremental_updates_equal_a_full_recompute(demo_batches):
    engine = Engine(retention_seconds=None)
    for batch in demo_batches:
        engine.ingest(batch)
    full = compute_all(engine.buffer.snapshot().columns())
    for pump in PUMPS:
        pd.testing.assert_frame_equal(engine.metric_frame(pump.name), full[pump.name], check_dtype=False)


def test_our_pumps_equal_duckdb_running_the_same_sql(demo_batches):
    engine = Engine(retention_seconds=None)
    for batch in demo_batches:
        engine.ingest(batch)
    frame = engine.buffer.snapshot().frame()
    ours = compute_all(EventColumns.from_frame(frame))
    connection = duckdb.connect()
    connection.register("events", frame)
    for pump in PUMPS:
        theirs = connection.execute(pump_sql(pump) + " ORDER BY window_start, category, subcategory").fetchdf()
        mine = ours[pump.name]
        assert len(mine) > 0, pump.name
        assert theirs["window_start"].tolist() == [int(t.timestamp()) for t in mine["window_start"]], pump.name
        assert theirs["category"].tolist() == mine["category"].tolist(), pump.name
        assert theirs["subcategory"].tolist() == mine["subcategory"].tolist(), pump.name
        assert theirs["value"].tolist() == mine["value"].tolist(), pump.name


def test_aggregation_of_nothing_is_empty():
    engine = Engine(retention_seconds=None)
    columns = engine.buffer.snapshot().columns()
    for pump in PUMPS:
        assert len(aggregate(columns, pump)) == 0
    assert PUMPS_BY_NAME["EC2Calls"].where.value == "ec2.amazonaws.com"


def test_counts_stay_right_when_an_append_also_compacts_the_dictionaries():
    engine = Engine(retention_seconds=10_000)
    old = [make_record(f"old{i}", at(T0 + i), sourceIPAddress=f"192.0.2.{i % 250}.{i}") for i in range(5000)]
    engine.ingest(batch_of(old), now_ns=(T0 + 5000) * NS_PER_SECOND)
    new = [make_record("new", at(T0 + 20_000), sourceIPAddress="203.0.113.9")]
    engine.ingest(batch_of(new), now_ns=(T0 + 20_000) * NS_PER_SECOND)
    assert len(engine.buffer.dictionaries["sourceIPAddress"].values) == 1
    assert rows(engine.metric_frame("CallsPerUniqueIp")) == [(at(T0 + 19_980), "203.0.113.9", "", 1)]


def test_late_batches_read_between_adds_equal_a_full_recompute_over_any_range(demo_batches, monkeypatch):
    import metrics.state

    monkeypatch.setattr(metrics.state, "PENDING_ROWS", 64)  # merges on adds as well as on reads
    records = DemoSource(seed=5, rate=3).records(T0, T0 + 2 * 3600)
    order = np.random.default_rng(1).permutation(len(records))  # late and early events mixed
    engine = Engine(retention_seconds=None)
    for number, low in enumerate(range(0, len(records), 700)):
        engine.ingest(batch_of([records[i] for i in order[low : low + 700]]))
        if number % 3 == 0:
            engine.metric_frames(T0 + 600, T0 + 3000)  # a page refresh between two batches
    full = compute_all(engine.buffer.snapshot().columns())
    start, end = pd.Timestamp(T0 + 1805, unit="s", tz="UTC"), pd.Timestamp(T0 + 4000, unit="s", tz="UTC")
    for pump in PUMPS:
        pd.testing.assert_frame_equal(engine.metric_frame(pump.name), full[pump.name], check_dtype=False)
        if not pump.dense:
            expected = full[pump.name]
            expected = expected[(expected.window_start >= start.floor(f"{pump.step}s")) & (expected.window_start < end)]
            got = engine.metric_frame(pump.name, T0 + 1805, T0 + 4000)
            pd.testing.assert_frame_equal(got, expected.reset_index(drop=True), check_dtype=False)


def test_a_record_ahead_of_the_live_edge_never_stretches_a_dense_series_past_it(engine):
    engine.ingest(batch_of([make_record("now", at(T0)), make_record("ahead", at(T0 + 12 * 3600))]))
    for name in ("TotalCalls", "NumberOfSuccessfulCalls", "AnomalyScore"):
        frame = engine.metric_frame(name, T0 - 3600, T0 + 365 * 86400, dense_until=T0 + 30)
        assert len(frame) == 4, name  # T0 .. T0 + 30, not 4,320 windows up to the record ahead
