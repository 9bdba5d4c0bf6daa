"""The events table's downloads: exact JSON, spreadsheet-safe CSV, raw records."""

import io

import orjson
import pandas as pd

from metrics.engine import Engine
from tests.conftest import batch_of, make_record
from ui.tables import raw_json, rows, spreadsheet_safe, to_csv, to_json
from ui.view import View

HOSTILE = '=HYPERLINK("http://203.0.113.9/x","click")'


def table():
    return pd.DataFrame({"User agent": [HOSTILE, "+1", "-2+3", "@SUM(A1)", "aws-cli/2", None], "Calls": range(6)})


def test_csv_defuses_cells_a_spreadsheet_would_run_as_formulas():
    safe = spreadsheet_safe(table())
    assert safe["User agent"].tolist()[:5] == ["'" + HOSTILE, "'+1", "'-2+3", "'@SUM(A1)", "aws-cli/2"]
    assert safe["Calls"].tolist() == list(range(6))  # numbers are left alone
    back = pd.read_csv(io.BytesIO(to_csv(table())))
    assert back["User agent"][0] == "'" + HOSTILE


def test_json_keeps_every_value_exact():
    assert orjson.loads(to_json(table()))[0] == {"User agent": HOSTILE, "Calls": 0}
    assert orjson.loads(to_json(table()))[5]["User agent"] is None


def test_rows_are_newest_first_with_readable_columns_and_raw_records_follow():
    engine = Engine(retention_seconds=None)
    engine.ingest(batch_of([make_record(f"id-{i}", f"2024-08-02T08:30:0{i}Z", userAgent=HOSTILE) for i in range(5)]))
    frame = engine.buffer.snapshot().frame()
    shown = rows(frame, View("Last hour", None, (), (), "UTC"), limit=3)
    assert shown["Event ID"].tolist() == ["id-4", "id-3", "id-2"]
    assert shown["Time"][0] == "2024-08-02 08:30:04"
    assert shown["Service"][0] == "sts"
    assert shown["User agent"][0] == HOSTILE
    records = orjson.loads(raw_json(engine, shown["Event ID"].tolist() + ["gone"]))["Records"]
    assert [r["eventID"] for r in records] == ["id-4", "id-3", "id-2"]


def test_local_time_shows_the_zone_wall_clock():
    engine = Engine(retention_seconds=None)
    engine.ingest(batch_of([make_record("a", "2024-08-02T08:30:00Z")]))
    frame = engine.buffer.snapshot().frame()
    shown = rows(frame, View("Last hour", None, (), (), "Europe/Paris"), limit=10)
    assert shown["Time"][0] == "2024-08-02 10:30:00"  # CEST, UTC+2 in August


def test_csv_defuses_formulas_in_every_column_whatever_its_dtype():
    frame = pd.DataFrame(
        {
            "with a gap": pd.Series(["=1+1", None], dtype=object),
            "categorical": pd.Series(["+cmd", "@x"], dtype="category"),
            "text": pd.Series(["-2", "\tx"], dtype="str"),
            "number": [1, 2],
        }
    )
    back = pd.read_csv(io.BytesIO(to_csv(frame)), dtype=str, keep_default_na=False)
    assert back.to_dict("list") == {
        "with a gap": ["'=1+1", ""],
        "categorical": ["'+cmd", "'@x"],
        "text": ["'-2", "'\tx"],
        "number": ["1", "2"],
    }


def test_every_cell_of_every_csv_download_of_hostile_records_is_defused():
    engine = Engine(retention_seconds=None, seed=0)
    fields = {"userAgent": "=cmd|' /C calc'!A0", "sourceIPAddress": "+1+1", "errorCode": "@SUM(1)"}
    records = [make_record("=evt-1", "2024-08-02T08:30:00Z", **fields), make_record("-evt-2", "2024-08-02T08:30:01Z")]
    records[0]["userIdentity"]["userName"] = "-alice"
    engine.ingest(batch_of(records))
    shown = rows(engine.buffer.snapshot().frame(), View("Last hour", None, (), (), "UTC"), limit=10)
    back = pd.read_csv(io.BytesIO(to_csv(shown)), dtype=str, keep_default_na=False)
    assert set(back.columns) == set(shown.columns)
    cells = [cell for column in back.columns for cell in back[column]]
    assert not [cell for cell in cells if cell.startswith(("=", "+", "-", "@", "\t", "\r"))]
    assert "'=cmd|' /C calc'!A0" in cells and "'-alice" in cells and "'=evt-1" in cells


def test_downloads_carry_each_time_with_its_utc_offset():
    engine = Engine(retention_seconds=None)
    engine.ingest(batch_of([make_record("a", "2024-08-02T08:30:00Z"), make_record("b", "2024-12-02T08:30:00Z")]))
    frame = engine.buffer.snapshot().frame()
    paris = rows(frame, View("Last hour", None, (), (), "Europe/Paris"), for_file=True)
    assert paris["Time"].tolist() == ["2024-12-02T09:30:00+01:00", "2024-08-02T10:30:00+02:00"]
    utc = rows(frame, View("Last hour", None, (), (), "UTC"), for_file=True)
    assert utc["Time"].tolist() == ["2024-12-02T08:30:00+00:00", "2024-08-02T08:30:00+00:00"]
    back = pd.read_csv(io.BytesIO(to_csv(paris)))
    assert pd.to_datetime(back["Time"], utc=True).tolist() == pd.to_datetime(frame["eventTime"][::-1]).tolist()
