"""The ``files`` source over the Spark job's windows (Parquet or CSV part files): the engine holds
what ``python -m metrics --windows`` would, a job run again is not counted twice, and Spark's
bookkeeping files are not read."""

import os

import pandas as pd
import pytest

from collectors.collector import Collector
from collectors.window_files import WindowFiles, holds_windows
from metrics.engine import Engine
from metrics.engines import duckdb_windows, engine_of_windows, record_files
from tests.edge_records import write_edge_trail

START = 1_722_587_400  # 2024-08-02T08:30:00Z


@pytest.fixture(scope="module")
def windows(tmp_path_factory):
    root = tmp_path_factory.mktemp("edge")
    write_edge_trail(root)
    return duckdb_windows(record_files([root]))


def collected(path) -> tuple[Engine, Collector]:
    engine = Engine(retention_seconds=None)
    collector = Collector(WindowFiles(path), engine, clock=lambda: START + 7200)
    collector.poll_once()
    while collector.catch_up():
        pass
    return engine, collector


def test_the_engine_holds_the_windows_the_cli_would_load_anomaly_scores_included(windows, tmp_path):
    out = tmp_path / "windows"
    out.mkdir()
    windows.to_parquet(out / "part-00000-a.snappy.parquet")
    (out / "_SUCCESS").write_text("")
    engine, collector = collected(out)
    expected = engine_of_windows(windows).all_metrics()
    pd.testing.assert_frame_equal(engine.all_metrics(), expected)
    assert collector.health.newest_event == int(windows["window_start"].max())


def test_a_job_run_again_replaces_its_windows_instead_of_adding_them(windows, tmp_path):
    out = tmp_path / "windows"
    out.mkdir()
    windows.to_csv(out / "part-00000-first.csv", index=False)
    source = WindowFiles(out)
    engine = Engine(retention_seconds=None)
    assert source.refresh(engine, START) == len(windows)
    total = int(engine.totals.counts().count.sum())
    assert source.refresh(engine, START + 60) == 0  # nothing changed: nothing read
    # The job overwrites its output (new part names) while writing into _temporary first.
    (out / "_temporary" / "0").mkdir(parents=True)
    windows.to_csv(out / "_temporary" / "0" / "part-00000-half.csv", index=False)
    (out / ".part-00000-first.csv.crc").write_text("crc")
    os.rename(out / "part-00000-first.csv", out / "part-00000-second.csv")
    assert source.refresh(engine, START + 120) == len(windows)
    assert int(engine.totals.counts().count.sum()) == total
    # Another day range written beside it adds its windows.
    later = windows.assign(window_start=windows["window_start"] + 86_400)
    later.to_parquet(out / "part-00000-next-day.parquet")
    source.refresh(engine, START + 180)
    assert int(engine.totals.counts().count.sum()) == 2 * total
    assert source.parts == 2


def test_windows_of_an_unknown_metric_are_refused(tmp_path):
    row = {"metric": "Bogus", "window_start": START, "category": "", "subcategory": "", "value": 1}
    pd.DataFrame([row]).to_parquet(tmp_path / "part-0.parquet")
    with pytest.raises(ValueError, match="Bogus"):
        WindowFiles(tmp_path).refresh(Engine(retention_seconds=None), START)


def test_the_files_setting_picks_windows_or_trail_files_by_what_the_folder_holds(windows, tmp_path):
    import settings
    from collectors.files import FileSource
    from ui.runtime import make_source

    trail, parts = tmp_path / "trail", tmp_path / "parts"
    write_edge_trail(trail)
    parts.mkdir()
    windows.to_parquet(parts / "part-0.parquet")
    assert holds_windows(parts) and not holds_windows(trail)
    values = settings.load({"INSIGHTS_SOURCE": "files", "INSIGHTS_FILES_PATH": str(parts)}, {})
    assert isinstance(make_source(values), WindowFiles)
    values = settings.load({"INSIGHTS_SOURCE": "files", "INSIGHTS_FILES_PATH": str(trail)}, {})
    assert isinstance(make_source(values), FileSource)
