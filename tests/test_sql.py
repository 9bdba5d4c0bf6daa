"""The generated query, run by DuckDB, equals the in-process engine: on the organisation
layout, on the Stratus records and on the edge cases, AnomalyScore included."""

import contextlib
import io

import pytest
import sqlglot

from bench.trail_layout import demo_trail
from metrics.__main__ import main
from metrics.engine import Engine
from metrics.engines import duckdb_windows, engine_of_windows, record_files, windows_from_frame
from metrics.normalise import Rejects, normalise_all
from metrics.pumps import PUMPS, Condition, Pump
from metrics.records import iter_paths
from metrics.sql import trail_sql, transpile
from tests.conftest import STRATUS
from tests.edge_records import write_edge_trail

START = 1_722_587_400  # 2024-08-02T08:30:00Z


def cli(*args: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert main(list(args)) == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def edge_trail(tmp_path_factory):
    root = tmp_path_factory.mktemp("edge")
    write_edge_trail(root)
    return root


@pytest.fixture(scope="module")
def org_trail(tmp_path_factory):
    root = tmp_path_factory.mktemp("org")
    files = demo_trail(root, START, 1800, rate=3)
    assert len(files) > 20
    return root


def test_edge_cases_through_duckdb_print_the_same_csv_as_the_engine(edge_trail):
    ours = cli(str(edge_trail))
    assert "CallsPerUser,2024-08-02T08:30:00Z,deploy-role,ci-run-42,1" in ours
    assert ",root,,1" in ours and "unknown,,3" in ours and "lambda.amazonaws.com,,1" in ours
    assert cli(str(edge_trail), "--engine", "duckdb") == ours


def test_organisation_trail_through_duckdb_prints_the_same_csv_as_the_engine(org_trail):
    ours = cli(str(org_trail))
    assert "AnomalyScore" in ours
    assert cli(str(org_trail), "--engine", "duckdb") == ours


def test_stratus_records_through_duckdb_give_the_same_windows_as_the_engine():
    # Four months of dense 10-second windows make scoring the whole CSV slow; the windows
    # decide the anomaly score, so equal windows are the same output.
    rejects = Rejects()
    ours = Engine(retention_seconds=None)
    ours.ingest(normalise_all((record for _, record in iter_paths([STRATUS])), rejects))
    theirs = Engine(retention_seconds=None)
    for metric, counts in windows_from_frame(duckdb_windows(record_files([STRATUS]))).items():
        theirs.add_windows(metric, counts)

    def held(engine, name):
        counts = engine.states[name].counts()
        return list(zip(counts.window.tolist(), counts.category.tolist(), counts.subcategory.tolist(), counts.count))

    for pump in PUMPS:
        assert held(theirs, pump.name) == held(ours, pump.name), pump.name
    assert held(ours, "TotalCalls")


def test_each_reject_rule_is_applied_by_the_query(edge_trail):
    frame = duckdb_windows(record_files([edge_trail]))
    total = int(frame.loc[frame["metric"] == "TotalCalls", "value"].sum())
    # 26 accepted, one duplicated three times, one JSON Lines record; every reject left out.
    assert total == 26 + 1 + 1


def test_windows_loaded_from_a_file_print_the_same_csv(edge_trail, tmp_path):
    frame = duckdb_windows(record_files([edge_trail]))
    frame.to_parquet(tmp_path / "part-0.parquet")
    assert cli("--windows", str(tmp_path)) == cli(str(edge_trail))
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    frame.to_csv(csv_dir / "part-0.csv", index=False)
    assert cli("--windows", str(csv_dir)) == cli(str(edge_trail))


def test_query_is_one_scan_with_one_grouping_set_per_pump():
    sql = trail_sql(2_000_000_000)
    tree = sqlglot.parse_one(sql, read="trino")
    group = tree.find(sqlglot.exp.GroupingSets)
    assert len(group.expressions) == len(PUMPS)
    assert sql.count("FROM trail") == 1


def test_spark_translation_keeps_every_try_safe():
    spark = transpile(trail_sql(2_000_000_000), "spark")
    assert "TRY_PARSE_JSON(record)" in spark and "TRY_CAST(eventtime AS TIMESTAMP)" in spark
    assert "GET_JSON_OBJECT" not in spark and "GROUPING_ID(" in spark
    assert " CAST(eventtime" not in spark


def test_two_pumps_with_the_same_grouping_set_are_refused():
    twins = (Pump("A", 10, "eventName"), Pump("B", 10, "eventName"))
    with pytest.raises(ValueError, match="same grouping set"):
        trail_sql(0, twins)
    trail_sql(0, (twins[0], Pump("B", 10, "eventName", where=Condition("errorCode", "missing"))))


def test_engine_of_windows_refuses_an_unknown_metric():
    import pandas as pd

    frame = pd.DataFrame([{"metric": "Bogus", "window_start": START, "category": "", "subcategory": "", "value": 1}])
    with pytest.raises(ValueError, match="unknown metric"):
        engine_of_windows(frame)


def test_top_k_per_minute_keeps_every_windows_total_exact(org_trail):
    from collections import Counter

    from metrics.sql import OTHER, TOP_K_PUMPS, top_k_pumps

    files = record_files([org_trail])
    exact = Engine(retention_seconds=None)
    exact.ingest(normalise_all((record for _, record in iter_paths(files)), Rejects()))
    frame = duckdb_windows(files, pumps=top_k_pumps(), top_k=3)
    engine = Engine(retention_seconds=None, pumps=top_k_pumps())
    for metric, counts in windows_from_frame(frame).items():
        engine.add_windows(metric, counts)
    cut = False
    for pump in PUMPS:
        ours = engine.states[pump.name].counts()
        theirs = exact.states[pump.name].counts()
        if pump.name not in TOP_K_PUMPS:
            assert ours.count.tolist() == theirs.count.tolist(), pump.name
            continue
        by_label, by_minute = Counter(), Counter()
        for window, category, subcategory, n in zip(theirs.window, theirs.category, theirs.subcategory, theirs.count):
            by_label[(window - window % 60, category, subcategory)] += int(n)
            by_minute[window - window % 60] += int(n)
        minutes = Counter()
        rows = Counter(ours.window.tolist())
        for window, category, subcategory, n in zip(ours.window, ours.category, ours.subcategory, ours.count):
            minutes[int(window)] += int(n)
            if category == OTHER:
                cut = True
            else:  # a row kept is that label's exact count in that minute
                assert by_label[(window, category, subcategory)] == n
        assert minutes == by_minute, pump.name  # totals exact, minute by minute
        assert max(rows.values()) <= 3 + 1
    assert cut  # some minute had more than three users or APIs


def test_a_trail_file_over_duckdbs_default_object_size_is_read(tmp_path):
    import gzip

    import orjson

    from tests.conftest import make_record

    # 90 records carrying 200 kB of request parameters each: one document over DuckDB's 16 MiB default.
    records = [
        make_record(f"big-{i}", f"2024-08-02T08:3{i % 10}:00Z", requestParameters={"policy": "x" * 200_000})
        for i in range(90)
    ]
    path = tmp_path / "111122223333_CloudTrail_us-east-1_20240802T0835Z_big.json.gz"
    path.write_bytes(gzip.compress(orjson.dumps({"Records": records}), compresslevel=1))
    ours = cli(str(path))
    assert "TotalCalls,2024-08-02T08:30:00Z,,,9" in ours
    assert cli(str(path), "--engine", "duckdb") == ours
