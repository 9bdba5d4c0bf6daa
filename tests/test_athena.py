"""The Athena path: the table DDL, a query's life (QUEUED, RUNNING, SUCCEEDED) against moto
with seeded results, and FAILED, pagination and throttling through botocore's Stubber; the
windows replace the engine's latest ones instead of adding to them."""

import boto3
import pytest
import requests
import sqlglot
from botocore.stub import Stubber
from moto import mock_aws
from moto.moto_api import state_manager

from collectors.__main__ import main as collectors_main
from collectors.athena import AthenaRunner, AthenaWindows, QueryFailed, table_ddl, window_query
from metrics.engine import Engine
from metrics.pumps import WindowCounts
from tests.conftest import batch_of, make_record

NOW = 1_722_588_000  # 2024-08-02T08:40:00Z
HEADER = ["metric", "window_start", "category", "subcategory", "value"]


def cells(*values) -> dict:
    return {"Data": [{"VarCharValue": str(v)} for v in values]}


def result_rows(rows) -> list[dict]:
    return [cells(*HEADER)] + [cells(*row) for row in rows]


def athena_on_moto(monkeypatch, url: str) -> None:
    """Points the app's Athena and S3 clients at a moto server, with test credentials."""
    for name, value in {
        "AWS_ENDPOINT_URL_ATHENA": url,
        "AWS_ENDPOINT_URL_S3": url,
        "AWS_ACCESS_KEY_ID": "AKIDTEST",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)


def no_sleep(seconds):
    no_sleep.calls.append(seconds)


def test_ddl_for_an_organisation_trail_projects_account_region_and_day(capsys):
    assert (
        collectors_main(
            ["athena-ddl", "--bucket", "trail-bucket", "--org", "o-abc123", "--regions", "us-east-1,eu-west-1"]
        )
        == 0
    )
    ddl = capsys.readouterr().out
    assert "LOCATION 's3://trail-bucket/AWSLogs/o-abc123/'" in ddl
    assert (
        "'storage.location.template'='s3://trail-bucket/AWSLogs/o-abc123/${account}/CloudTrail/${region}/${timestamp}'"
        in ddl
    )
    assert "'projection.account.type'='injected'" in ddl and "'projection.region.values'='us-east-1,eu-west-1'" in ddl
    assert "'projection.timestamp.format'='yyyy/MM/dd'" in ddl
    assert "com.amazon.emr.cloudtrail.CloudTrailInputFormat" in ddl


def test_ddl_for_one_account_needs_that_account():
    ddl = table_ddl("b", database="d", table="t", accounts=["111122223333"], prefix="logs/")
    assert "LOCATION 's3://b/logs/AWSLogs/111122223333/'" in ddl and "account string" not in ddl
    with pytest.raises(ValueError):
        table_ddl("b", database="d", table="t")


def test_window_query_reads_only_the_days_it_needs_and_is_valid_trino():
    sql = window_query("db.records", NOW - 1200, NOW + 86400, regions=["us-east-1"], accounts=["1"])
    assert "\"timestamp\" IN ('2024/08/02', '2024/08/03')" in sql and "region IN ('us-east-1')" in sql
    assert f"event_seconds >= {NOW - 1200}" in sql
    sqlglot.parse_one(sql, read="trino")
    from metrics.sql import top_k_pumps, transpile

    top = window_query("db.records", NOW - 1200, NOW, pumps=top_k_pumps(), top_k=5)
    assert "place <= 5" in top and "event_seconds - event_seconds % 60 AS w_60" in top
    sqlglot.parse_one(top, read="trino")
    sqlglot.parse_one(transpile(top, "spark"), read="spark")


@mock_aws
def test_a_query_runs_through_running_to_succeeded_and_its_windows_replace_the_latest():
    state_manager.set_transition(model_name="athena::execution", transition={"progression": "manual", "times": 2})
    client = boto3.client("athena", region_name="us-east-1")
    client.create_work_group(Name="insights", Configuration={"ResultConfiguration": {"OutputLocation": "s3://r/"}})
    rows = [("TotalCalls", NOW - 600, "", "", 5), ("CallsPerAPI", NOW - 600, "sts.amazonaws.com", "AssumeRole", 5)]
    seeded = {"results": [{"rows": result_rows(rows), "column_info": []}]}
    assert requests.post("http://motoapi.amazonaws.com/moto-api/static/athena/query-results", json=seeded).ok

    engine = Engine(retention_seconds=None)
    # Already counted: 2 calls in the re-queried window (to be replaced), one well before it (kept).
    engine.ingest(batch_of([make_record(f"e{i}", "2024-08-02T08:30:01Z") for i in range(2)]))
    engine.ingest(batch_of([make_record("old", "2024-08-02T07:00:00Z")]))
    no_sleep.calls = []
    windows = AthenaWindows(AthenaRunner(client, workgroup="insights", database="default", sleep=no_sleep), "t")
    assert windows.refresh(engine, NOW) == 2
    assert no_sleep.calls  # it waited while the query was QUEUED and RUNNING
    assert engine.totals.total(NOW - 600) == 5
    assert engine.totals.total(1_722_582_000) == 1
    api = engine.states["CallsPerAPI"].counts(NOW - 600, NOW - 590)
    assert list(zip(api.category.tolist(), api.subcategory.tolist(), api.count.tolist())) == [
        ("sts.amazonaws.com", "AssumeRole", 5)
    ]
    status = windows.status(NOW)
    assert status["last_state"] == "SUCCEEDED" and status["queries"] == 1 and status["failures"] == 0
    assert status["cost_dollars"] == pytest.approx(10 * 1024**2 / 1e12 * 5)  # Athena's 10 MB minimum
    assert status["lag_seconds"] == 600
    state_manager.unset_transition("athena::execution")


def stubbed_runner():
    client = boto3.client("athena", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    no_sleep.calls = []
    return client, Stubber(client), AthenaRunner(client, workgroup="wg", database="db", sleep=no_sleep)


def execution(state: str, scanned: int = 0, reason: str = "") -> dict:
    status = {"State": state}
    if reason:
        status["StateChangeReason"] = reason
    return {
        "QueryExecution": {"QueryExecutionId": "q1", "Status": status, "Statistics": {"DataScannedInBytes": scanned}}
    }


def test_a_failed_query_raises_its_reason_and_is_counted():
    _, stub, runner = stubbed_runner()
    stub.add_response("start_query_execution", {"QueryExecutionId": "q1"})
    stub.add_response("get_query_execution", execution("RUNNING"))
    stub.add_response("get_query_execution", execution("FAILED", 2_000_000_000, "HIVE_BAD_DATA: bad record"))
    with stub, pytest.raises(QueryFailed, match="HIVE_BAD_DATA"):
        runner.run("SELECT 1")
    assert runner.stats.failures == 1 and runner.stats.bytes_scanned == 2_000_000_000
    assert runner.stats.cost_dollars == pytest.approx(0.01)  # 2 GB at $5 per TB


def test_results_are_read_page_after_page_and_throttling_waits():
    _, stub, runner = stubbed_runner()
    stub.add_client_error("start_query_execution", service_error_code="ThrottlingException", http_status_code=400)
    stub.add_response("start_query_execution", {"QueryExecutionId": "q1"})
    stub.add_response("get_query_execution", execution("SUCCEEDED", 50_000_000))
    first = {"ResultSet": {"Rows": result_rows([("TotalCalls", NOW, "", "", 3)])}, "NextToken": "page-2"}
    stub.add_response("get_query_results", first, {"QueryExecutionId": "q1", "MaxResults": 1000})
    stub.add_client_error("get_query_results", service_error_code="TooManyRequestsException", http_status_code=400)
    second = {"ResultSet": {"Rows": [cells("TotalCalls", NOW + 10, "", "", 4)]}}
    stub.add_response(
        "get_query_results", second, {"QueryExecutionId": "q1", "MaxResults": 1000, "NextToken": "page-2"}
    )
    with stub:
        frame = runner.run("SELECT 1")
    assert frame.values.tolist() == [["TotalCalls", str(NOW), "", "", "3"], ["TotalCalls", str(NOW + 10), "", "", "4"]]
    assert runner.stats.throttles == 2 and len(no_sleep.calls) == 2
    stub.assert_no_pending_responses()


def test_replacing_windows_twice_counts_once():
    import numpy as np

    engine = Engine(retention_seconds=None)
    counts = WindowCounts(np.array([NOW], dtype=np.int64), np.array([None]), np.array([None]), np.array([7]))
    engine.replace_windows("TotalCalls", counts, NOW - 60, NOW + 60)
    engine.replace_windows("TotalCalls", counts, NOW - 60, NOW + 60)
    assert engine.totals.total(NOW) == 7


def test_the_collector_hands_athena_windows_to_the_engine_at_most_once_a_minute():
    import pandas as pd

    from collectors.collector import Collector

    class Runner:
        stats = AthenaRunner(None, workgroup="w", database="d").stats

        def __init__(self):
            self.queries = []

        def run(self, sql):
            self.queries.append(sql)
            return pd.DataFrame([[str(v) for v in ("TotalCalls", NOW - 60, "", "", 9)]], columns=HEADER)

    runner = Runner()
    engine = Engine(retention_seconds=None)
    collector = Collector(AthenaWindows(runner, "db.t"), engine, clock=lambda: NOW)
    collector.poll_once(NOW)
    collector.poll_once(NOW + 30)  # too soon: no second billed query
    assert len(runner.queries) == 1 and engine.totals.total(NOW - 60) == 9
    assert collector.health.polls == 2 and collector.health.lag_seconds == 90  # the newest window, 90 s ago
    collector.poll_once(NOW + 60)
    assert len(runner.queries) == 2 and engine.totals.total(NOW - 60) == 9  # replaced, not added


def test_status_page_shows_the_athena_queries(start_app, monkeypatch):
    import time

    from tests.cloudtrail_endpoint import moto_server

    with moto_server() as url:
        athena_on_moto(monkeypatch, url)
        now = int(time.time())
        seeded = {"results": [{"rows": result_rows([("TotalCalls", now - now % 10 - 60, "", "", 4)])}]}
        assert requests.post(f"{url}/moto-api/static/athena/query-results", json=seeded).ok
        at = start_app("status", source="athena", athena_output_location="s3://results/")
        assert not at.exception
        from ui.runtime import runtime

        deadline = time.time() + 20
        while runtime().collector.health.polls < 1 and time.time() < deadline:
            time.sleep(0.1)
        at.run()
        assert not at.exception
        assert "Athena queries" in [h.value for h in at.subheader]
        athena = next(d.value for d in at.dataframe if "Cost estimate" in d.value.columns)
        assert athena["Last state"].iloc[0] == "SUCCEEDED" and athena["Queries"].iloc[0] == "1"
        assert athena["Cost estimate"].iloc[0] == "$0.0001"
        assert runtime().engine.totals.total(now - now % 10 - 60) == 4
        assert runtime().engine.states["CallsPerUser"].pump.step == 60  # top-K per minute (INSIGHTS_ATHENA_TOP_K)


def test_the_iam_policy_allows_exactly_the_athena_calls_the_source_makes():
    import json
    import re
    from pathlib import Path

    root = Path(__file__).parent.parent
    policy = json.loads((root / "deploy" / "iam-policy-athena.json").read_text())
    allowed = {a for s in policy["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    code = "".join(p.read_text() for p in (root / "collectors").glob("athena*.py"))

    def actions(service, calls):
        # A batch delete is allowed by sqs:DeleteMessage.
        return {f"{service}:" + "".join(part.title() for part in c.removesuffix("_batch").split("_")) for c in calls}

    assert {a for a in allowed if a.startswith("athena:")} == actions("athena", re.findall(r'_call\(\s*"(\w+)"', code))
    assert {a for a in allowed if a.startswith("sqs:")} == actions("sqs", re.findall(r"self\.sqs\.(\w+)\(", code))


@mock_aws
def test_a_large_result_is_read_from_its_csv_in_s3_and_a_small_one_page_by_page():
    import io

    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="results")
    rows = [("CallsPerAPI", NOW + 10 * i, "s3.amazonaws.com", f"Get{i}", i + 1) for i in range(3000)]
    rows.append(("CallsPerUser", NOW, 'bob, "the" builder', "", 7))  # commas and quotes survive
    text = io.StringIO()
    text.write(",".join(f'"{h}"' for h in HEADER) + "\n")
    for row in rows:
        text.write(",".join('"' + str(v).replace('"', '""') + '"' for v in row) + "\n")
    s3.put_object(Bucket="results", Key="athena/q1.csv", Body=text.getvalue().encode())
    s3.put_object(Bucket="results", Key="athena/q2.csv", Body=b'"metric"\n"TotalCalls"\n')

    client, stub, runner = stubbed_runner()
    runner.s3, runner.csv_above_bytes = s3, 64 * 1024
    done = execution("SUCCEEDED", 1)
    done["QueryExecution"]["ResultConfiguration"] = {"OutputLocation": "s3://results/athena/q1.csv"}
    stub.add_response("start_query_execution", {"QueryExecutionId": "q1"})
    stub.add_response("get_query_execution", done)
    with stub:  # no GetQueryResults stubbed: calling it would fail
        frame = runner.run("SELECT 1")
    assert len(frame) == 3001 and runner.stats.csv_reads == 1
    assert frame.iloc[0].tolist() == ["CallsPerAPI", str(NOW), "s3.amazonaws.com", "Get0", "1"]
    assert frame.iloc[-1].tolist() == ["CallsPerUser", str(NOW), 'bob, "the" builder', "", "7"]

    small = execution("SUCCEEDED", 1)
    small["QueryExecution"]["ResultConfiguration"] = {"OutputLocation": "s3://results/athena/q2.csv"}
    stub.add_response("start_query_execution", {"QueryExecutionId": "q1"})
    stub.add_response("get_query_execution", small)
    stub.add_response("get_query_results", {"ResultSet": {"Rows": result_rows([("TotalCalls", NOW, "", "", 3)])}})
    with stub:
        frame = runner.run("SELECT 1")
    assert frame.values.tolist() == [["TotalCalls", str(NOW), "", "", "3"]] and runner.stats.csv_reads == 1
    stub.assert_no_pending_responses()


def test_windows_from_athena_older_than_the_retention_are_dropped_as_time_passes():
    import pandas as pd

    from collectors.collector import Collector

    clock = [NOW]

    class Runner:
        stats = AthenaRunner(None, workgroup="w", database="d").stats

        def run(self, sql):  # each answer: 9 calls in the minute before the query
            return pd.DataFrame([[str(v) for v in ("TotalCalls", clock[0] - 60, "", "", 9)]], columns=HEADER)

    engine = Engine(retention_seconds=3600)
    collector = Collector(AthenaWindows(Runner(), "db.t"), engine, clock=lambda: clock[0])
    collector.poll_once(NOW)
    assert engine.totals.total(NOW - 60) == 9
    clock[0] = NOW + 7200
    collector.poll_once(clock[0])
    assert engine.totals.total(NOW + 7200 - 60) == 9
    assert engine.totals.total(NOW - 60) == 0 and engine.totals.first >= NOW + 7200 - 3600
