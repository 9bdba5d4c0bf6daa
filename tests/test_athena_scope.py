"""The sidebar's scope when the source is Athena: its choices come from the windows of the
region-and-account pump (the app holds no events), and a scope's charts come from one pump
query of their own over the scope's partitions and records, equal to the in-process engine's
over the scope's events; an "(other)" click under a scope uses the scope's top K."""

import time

import pytest
import requests

from bench.trail_layout import demo_trail
from collectors.athena import SCOPE_PUMP, AthenaWindows, source_pumps
from collectors.athena_events import AthenaEvents
from metrics.engine import Engine
from metrics.explore import EventFilter
from metrics.normalise import Rejects, normalise_all
from metrics.records import iter_paths
from tests.athena_duck import TABLE, DuckRunner, trail_table
from tests.edge_records import write_edge_trail
from tests.test_athena_files import held

START = 1_722_587_400  # 2024-08-02T08:30:00Z
NOW = START + 3600
K = 3


@pytest.fixture(scope="module")
def trail(tmp_path_factory):
    root = tmp_path_factory.mktemp("scope")
    files = demo_trail(root, START, 1200, rate=2) + write_edge_trail(root, org="o-edgecases01")[:2]
    records = [r for _, r in iter_paths(files)]
    return DuckRunner(trail_table(root, "b")), records


def in_process(records, keep=lambda record: True) -> Engine:
    """The in-process engine over the records ``keep`` selects."""
    engine = Engine(retention_seconds=None, pumps=source_pumps(None))
    engine.ingest(normalise_all([r for r in records if not isinstance(r, dict) or keep(r)], Rejects()))
    return engine


def account_of(record) -> str | None:
    identity = record.get("userIdentity") if isinstance(record.get("userIdentity"), dict) else {}
    return record.get("recipientAccountId") or identity.get("accountId")


def within(engine, name, start=START, end=START + 1200):
    return [row for row in held(engine, name) if start <= row[0] < end]


def athena_engine(runner) -> Engine:
    engine = Engine(retention_seconds=None, pumps=source_pumps(K))
    AthenaWindows(runner, TABLE, pumps=source_pumps(K), top_k=K, lookback=7200).refresh(engine, NOW)
    return engine


def test_the_region_and_account_windows_equal_the_in_process_engines(trail):
    runner, records = trail
    engine = athena_engine(runner)
    expected = in_process(records)
    assert held(engine, SCOPE_PUMP.name) == held(expected, SCOPE_PUMP.name)
    assert held(engine, "TotalCalls") == held(expected, "TotalCalls")
    # Every identity of the edge trail: accounts from recipientAccountId or the caller's own.
    regions, accounts = AthenaEvents(runner, TABLE, engine=engine).scope_options()
    frame = expected.buffer.snapshot().frame()
    assert regions == sorted(frame["awsRegion"].dropna().unique()) and len(regions) >= 2
    assert accounts == sorted(frame["account"].dropna().unique()) and len(accounts) >= 2


def test_a_scopes_windows_are_the_in_process_engines_over_the_scopes_events(trail):
    runner, records = trail
    engine = athena_engine(runner)
    clock = [NOW]
    source = AthenaEvents(runner, TABLE, clock=lambda: clock[0], engine=engine, top_k=K)
    region = "eu-west-1"
    scoped = source.scoped_engine((region,), (), START, START + 1200)
    expected = in_process(records, lambda r: r.get("awsRegion") == region)
    for name in ("TotalCalls", "NumberOfSuccessfulCalls", "CallsPerServiceType", "EC2Calls", SCOPE_PUMP.name):
        assert within(scoped, name) == within(expected, name), name
    assert 0 < scoped.totals.counts().count.sum() < engine.totals.counts().count.sum()
    queries = len(runner.queries)
    clock[0] += 30
    assert source.scoped_engine((region,), (), START + 30, START + 1230) is scoped  # kept a minute
    assert len(runner.queries) == queries
    account = "111122223333"
    by_account = source.scoped_engine((), (account,), START, START + 1200)
    assert within(by_account, "TotalCalls") == within(
        in_process(records, lambda r: account_of(r) == account), "TotalCalls"
    )
    # "(other)" under the scope: outside the scope's own top K of each minute.
    others = source.events(EventFilter(start=START, end=START + 600, regions=(region,), users=("(other)",)))
    counts = scoped.states["CallsPerUser"].counts(START, START + 600)
    assert 0 < len(others) == int(counts.count[counts.category == "(other)"].sum())


def test_a_failed_scope_query_gives_no_windows_and_its_reason():
    from collectors.athena import QueryFailed

    class Failing:
        stats = None

        def run(self, sql, timeout=600.0):
            raise QueryFailed("q9: FAILED: PERMISSION_DENIED on region")

    engine = Engine(retention_seconds=None, pumps=source_pumps(K))
    source = AthenaEvents(Failing(), TABLE, clock=lambda: NOW, engine=engine, top_k=K)
    assert source.scoped_engine(("eu-west-1",), (), START, START + 60).totals.first is None
    assert "PERMISSION_DENIED" in source.scope_errors[(("eu-west-1",), ())]


def test_choosing_a_scope_in_the_sidebar_draws_its_windows_from_athena(start_app, monkeypatch):
    from tests.cloudtrail_endpoint import moto_server
    from tests.test_athena import athena_on_moto, result_rows

    with moto_server() as url:
        athena_on_moto(monkeypatch, url)
        now = int(time.time())
        window = now - now % 600 - 600
        org = [
            ("TotalCalls", window, "", "", 9),
            ("NumberOfSuccessfulCalls", window, "", "", 9),
            (SCOPE_PUMP.name, window - window % 600, "eu-west-1", "111122223333", 4),
            (SCOPE_PUMP.name, window - window % 600, "us-east-1", "444455556666", 5),
        ]
        scope = [("TotalCalls", window, "", "", 4), ("NumberOfSuccessfulCalls", window, "", "", 3)]
        seeded = {"results": [{"rows": result_rows(org)}, {"rows": result_rows(scope)}]}
        assert requests.post(f"{url}/moto-api/static/athena/query-results", json=seeded).ok
        at = start_app("overview", source="athena", athena_output_location="s3://results/")
        assert not at.exception
        assert at.multiselect(key="view_regions").options == ["eu-west-1", "us-east-1"]
        assert at.multiselect(key="view_accounts").options == ["111122223333", "444455556666"]
        assert at.metric[0].value == "9"  # the whole organisation's windows
        at.multiselect(key="view_regions").select("eu-west-1").run()
        assert not at.exception
        assert at.metric[0].value == "4" and at.metric[1].value == "25.0%"  # the scope's own query
        from ui import data

        query = data.on_demand.runner.client.get_query_execution(
            QueryExecutionId=data.on_demand.runner.stats.last.query_id
        )["QueryExecution"]["Query"]
        assert "region IN ('eu-west-1')" in query and "$.awsRegion') IN ('eu-west-1')" in query
