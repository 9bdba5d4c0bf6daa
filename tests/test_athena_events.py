"""Drill-down at organisation scale: a chart click's, the explorer's and a detection's events come
from a small Athena query over the partitions the filter names, with a row limit, and are the
events the in-process buffer would give for the same filter."""

import boto3
import pytest
import requests
import sqlglot
from moto import mock_aws

from bench.trail_layout import demo_trail
from collectors.athena import AthenaRunner
from collectors.athena_events import AthenaEvents, partitions
from metrics.buffer import EventBuffer
from metrics.explore import EventFilter, matching
from metrics.normalise import Rejects, normalise_all
from metrics.records import iter_paths
from tests.athena_duck import TABLE, DuckRunner, trail_table
from tests.conftest import make_record
from tests.edge_records import write_edge_trail

START = 1_722_587_400  # 2024-08-02T08:30:00Z
NOW = START + 3600


@pytest.fixture(scope="module")
def trail(tmp_path_factory):
    root = tmp_path_factory.mktemp("drill")
    files = demo_trail(root, START, 1200, rate=2) + write_edge_trail(root, org="o-edgecases01")[:2]
    buffer = EventBuffer(retention_seconds=None)
    buffer.append(normalise_all((r for _, r in iter_paths(files)), Rejects()))
    return DuckRunner(trail_table(root, "b")), buffer.snapshot().frame()


def ids(frame):
    return sorted(frame["eventID"].tolist())


def test_every_kind_of_drill_gives_the_events_the_buffer_would(trail):
    runner, held = trail
    source = AthenaEvents(runner, TABLE, clock=lambda: NOW, limit=100_000)
    busiest_api = held["eventName"].value_counts().index[0]
    user = held.loc[held["session"].notna(), "user"].iloc[0]
    session = held.loc[held["session"].notna(), "session"].iloc[0]
    filters = [
        EventFilter(start=START + 300, end=START + 310),  # a click on one 10-second window
        EventFilter(start=START, end=START + 1200, apis=(busiest_api,)),
        EventFilter(start=START, end=START + 1200, users=(user,), sessions=(session,)),
        EventFilter(start=START, end=START + 1200, error_codes=(None,), regions=("eu-west-1",)),
        EventFilter(start=START, end=START + 1200, outcome="failed", excluded=(("users", user),)),
        EventFilter(event_ids=tuple(held["eventID"].iloc[::97].tolist())),  # a detection's events
        EventFilter(start=START, end=START + 1200, text="deploy-role"),  # the explorer's search
        EventFilter(start=START, end=START + 1200, accounts=("111122223333",), users=("root",)),
    ]
    for flt in filters:
        expected = matching(held, flt)
        assert len(expected), flt
        assert ids(source.events(flt)) == ids(expected), flt
    assert "strpos(lower(record), 'deploy-role') > 0" in runner.queries[6]


def test_a_drill_stops_at_the_row_limit_and_says_so_and_is_not_queried_twice(trail):
    runner, held = trail
    source = AthenaEvents(runner, TABLE, clock=lambda: NOW, limit=5)
    before = len(runner.queries)
    flt = EventFilter(start=START, end=START + 1200)
    frame = source.events(flt)
    assert len(frame) == 5 and frame.attrs["limit"] == 5
    assert frame["eventTime"].is_monotonic_increasing
    assert source.events(flt) is frame and len(runner.queries) == before + 1  # kept for a minute
    raw = source.raw_records([frame["eventID"].iloc[0], "not-held"])
    assert raw[0] is not None and raw[1] is None
    narrow = source.events(EventFilter(start=START + 300, end=START + 301))
    assert "limit" not in narrow.attrs


def test_the_query_reads_only_the_partitions_the_filter_names():
    flt = EventFilter(start=START - 86_400, end=START + 10, regions=("eu-west-1",), accounts=("1", "2"))
    assert partitions(flt, NOW, 86_400, accounts=("2", "3")) == [
        "\"timestamp\" IN ('2024/08/01', '2024/08/02')",
        "region IN ('eu-west-1')",
        "account IN ('2')",
    ]
    # A detection's events have no range: the retention's days; no accounts configured: no account partition.
    assert partitions(EventFilter(event_ids=("e",)), NOW, 3600, regions=("us-east-1",)) == [
        "\"timestamp\" IN ('2024/08/02')",
        "region IN ('us-east-1')",
    ]
    source = AthenaEvents(None, "db.t", clock=lambda: NOW)
    sqlglot.parse_one(source.query(EventFilter(start=START, end=NOW, users=("bob", None)), NOW), read="trino")


@mock_aws
def test_the_pages_read_athenas_events_when_the_source_is_athena():
    from metrics.engine import Engine
    from tests.test_athena import cells
    from ui import data

    record = make_record("from-athena", "2024-08-02T08:30:01Z")
    import orjson

    seeded = {"results": [{"rows": [cells("record"), cells(orjson.dumps(record).decode()), cells("{broken")]}]}
    assert requests.post("http://motoapi.amazonaws.com/moto-api/static/athena/query-results", json=seeded).ok
    client = boto3.client("athena", region_name="us-east-1")
    runner = AthenaRunner(client, workgroup="primary", database="default", output_location="s3://r/")
    engine = Engine(retention_seconds=None)  # holds windows only: no events
    data.on_demand = AthenaEvents(runner, "default.t", clock=lambda: NOW)
    try:
        frame = data.events(engine, EventFilter(start=START, end=START + 10))
        assert frame["eventID"].tolist() == ["from-athena"]
        selection, notes = data.select_noted(engine, EventFilter(start=START, end=START + 10))
        assert selection.event_ids() == ["from-athena"] and notes == {}  # the drill-down's and explorer's view
        assert data.raw_records(engine, ["from-athena"])[0] is not None
        assert data.on_demand.rejects.total == 1  # the unreadable row is counted, not raised
        query = client.get_query_execution(QueryExecutionId=runner.stats.last.query_id)["QueryExecution"]["Query"]
        assert "\"timestamp\" IN ('2024/08/02')" in query and "LIMIT 1000" in query
    finally:
        data.on_demand = None


def test_a_failed_events_query_gives_no_events_and_its_reason_and_is_asked_again():
    from botocore.stub import Stubber

    from tests.test_athena import execution

    client = boto3.client("athena", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    runner = AthenaRunner(client, workgroup="wg", database="db", sleep=lambda s: None)
    source = AthenaEvents(runner, "db.t", clock=lambda: NOW)
    stub = Stubber(client)
    stub.add_response("start_query_execution", {"QueryExecutionId": "q1"})
    stub.add_response("get_query_execution", execution("FAILED", 0, "TABLE_NOT_FOUND: db.t"))
    stub.add_response("start_query_execution", {"QueryExecutionId": "q1"})
    stub.add_response("get_query_execution", execution("FAILED", 0, "TABLE_NOT_FOUND: db.t"))
    flt = EventFilter(start=START, end=START + 10)
    with stub:
        frame = source.events(flt)
        assert frame.empty and "TABLE_NOT_FOUND" in frame.attrs["error"] and "eventID" in frame.columns
        source.events(flt)  # not kept: asked again
    stub.assert_no_pending_responses()


def other_total(engine, metric, start, end):
    counts = engine.states[metric].counts(start, end)
    return int(counts.count[counts.category == "(other)"].sum())


def test_a_click_on_other_lists_each_windows_events_outside_its_top_k(trail):
    from collectors.athena import AthenaWindows
    from metrics.engine import Engine
    from metrics.sql import top_k_pumps

    runner, held = trail
    engine = Engine(retention_seconds=None, pumps=top_k_pumps())
    AthenaWindows(runner, TABLE, pumps=top_k_pumps(), top_k=3, lookback=7200).refresh(engine, NOW)
    source = AthenaEvents(runner, TABLE, clock=lambda: NOW, limit=100_000, engine=engine)
    start, end = START + 120, START + 600
    users = source.events(EventFilter(start=start, end=end, users=("(other)",)))
    assert 0 < len(users) == other_total(engine, "CallsPerUser", start, end)
    apis = source.events(EventFilter(start=start, end=end, services=("(other)",), apis=("",)))
    assert 0 < len(apis) == other_total(engine, "CallsPerAPI", start, end)
    # Each listed event is outside its own minute's three named rows, by hand from the engine's windows.
    named = engine.states["CallsPerUser"].counts(start, end)
    top = {(w, c, s or "") for w, c, s in zip(named.window, named.category, named.subcategory) if c != "(other)"}
    minutes = users["eventTime"].astype("int64") // 10**9 // 60 * 60
    pairs = zip(minutes, users["user"].astype(object), users["session"].astype(object).fillna(""))
    assert not any((int(m), u, s) in top for m, u, s in pairs)
    assert "other_windows" not in users.attrs


def test_a_click_on_other_over_more_windows_than_a_query_holds_says_how_many_it_covers(trail):
    from collectors import athena_events
    from collectors.athena import AthenaWindows
    from metrics.engine import Engine
    from metrics.sql import top_k_pumps

    runner, _ = trail
    engine = Engine(retention_seconds=None, pumps=top_k_pumps())
    AthenaWindows(runner, TABLE, pumps=top_k_pumps(), top_k=3, lookback=7200).refresh(engine, NOW)
    state = engine.states["CallsPerUser"]
    condition, covered, windows = athena_events.outside_top(state.counts(START, START + 1200), ("user", "session"), 60)
    assert covered == windows == 20 and condition.count("event_seconds >=") == 20
    counts = state.counts(START, START + 1200)
    short = athena_events.outside_top(counts, ("user", "session"), 60, budget=len(condition) // 4)
    assert 1 <= short[1] < 20 and short[2] == 20
    assert f"event_seconds >= {START} AND event_seconds < {START + 60}" in short[0]  # the oldest first
    source = AthenaEvents(runner, TABLE, clock=lambda: NOW, limit=100_000, engine=engine)
    source.other_query_chars = len(condition) // 4
    frame = source.events(EventFilter(start=START, end=START + 1200, users=("(other)",)))
    assert frame.attrs["other_windows"] == (short[1], 20)
    assert len(frame) == other_total(engine, "CallsPerUser", START, START + 60 * short[1])


def test_the_drill_down_queries_cost_is_counted_per_day_with_the_last_few_and_their_failures():
    import time
    from datetime import UTC, datetime

    from botocore.stub import Stubber

    from tests.test_athena import cells, execution

    client = boto3.client("athena", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    runner = AthenaRunner(client, workgroup="wg", database="db", sleep=lambda s: None)
    source = AthenaEvents(runner, "db.t", clock=lambda: NOW)
    stub = Stubber(client)
    stub.add_response("start_query_execution", {"QueryExecutionId": "q1"})
    stub.add_response("get_query_execution", execution("SUCCEEDED", 3_000_000_000))
    stub.add_response("get_query_results", {"ResultSet": {"Rows": [cells("record")]}})
    stub.add_response("start_query_execution", {"QueryExecutionId": "q1"})
    stub.add_response("get_query_execution", execution("FAILED", 20_000_000, "HIVE_CURSOR_ERROR: bad file"))
    stub.add_client_error("start_query_execution", "AccessDeniedException", "not allowed to start queries")
    today = datetime.fromtimestamp(time.time(), UTC).strftime("%Y-%m-%d")
    with stub:
        assert source.events(EventFilter(start=START, end=START + 10)).empty
        assert "HIVE_CURSOR_ERROR" in source.events(EventFilter(start=START, end=START + 20)).attrs["error"]
        assert "not allowed" in source.events(EventFilter(start=START, end=START + 30)).attrs["error"]
    status = source.status()
    assert status["queries"] == 2 and status["failures"] == 2 and "not allowed" in status["last_error"]
    assert status["bytes_scanned"] == 3_020_000_000
    cost = 3e9 / 1e12 * 5 + 20e6 / 1e12 * 5  # $5 per TB, both above the 10 MB minimum
    assert status["cost_dollars"] == pytest.approx(cost)
    [(day, queries, scanned, dollars, failed)] = status["per_day"]
    assert (day, queries, scanned, failed) == (today, 2, 3_020_000_000, 1) and dollars == pytest.approx(cost)
    assert [q["state"] for q in status["recent"]] == ["FAILED", "SUCCEEDED"]  # newest first
    assert status["recent"][0]["reason"] == "HIVE_CURSOR_ERROR: bad file" and status["recent"][1]["bytes"] == 3e9


def test_status_page_shows_the_drill_down_queries(start_app, monkeypatch):
    import time

    import orjson

    from tests.cloudtrail_endpoint import moto_server
    from tests.test_athena import athena_on_moto, cells, result_rows
    from ui import data

    with moto_server() as url:
        athena_on_moto(monkeypatch, url)
        now = int(time.time())
        record = make_record("clicked", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 65)))
        windows = {"rows": result_rows([("TotalCalls", now - now % 10 - 60, "", "", 1)])}
        records = {"rows": [cells("record"), cells(orjson.dumps(record).decode())]}
        assert requests.post(f"{url}/moto-api/static/athena/query-results", json={"results": [windows, records]}).ok
        at = start_app("status", source="athena", athena_output_location="s3://results/")
        assert not at.exception
        assert data.events(None, EventFilter(start=now - 120, end=now))["eventID"].tolist() == ["clicked"]
        at.run()
        assert not at.exception
        assert "Athena drill-down queries" in [h.value for h in at.subheader]
        days = next(d.value for d in at.dataframe if "Day (UTC)" in d.value.columns)
        assert days["Queries"].tolist() == ["1", "1"] and days["Cost estimate"].tolist() == ["$0.0001", "$0.0001"]
        recent = next(d.value for d in at.dataframe if "Took" in d.value.columns)
        assert recent["State"].tolist() == ["SUCCEEDED"]
