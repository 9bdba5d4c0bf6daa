import os
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from metrics import snapshot
from metrics.buffer import NS_PER_SECOND
from metrics.engine import Engine
from metrics.snapshot import SCHEMA, SnapshotError, batches, load, save
from tests.conftest import batch_of, make_record

T0 = 1_722_587_400  # 2024-08-02T08:30:00Z
ROOT = Path(__file__).parent.parent


def at(seconds: int) -> str:
    return pd.Timestamp(seconds, unit="s", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def varied_records(n: int, start: int = T0, prefix: str = "e") -> list[dict]:
    """Events over several windows with every kind of value: missing text, readOnly True,
    False and missing, errors on some, several users and regions."""
    records = []
    for i in range(n):
        fields = {
            "eventName": f"Call{i % 7}",
            "awsRegion": ("us-east-1", "eu-west-1", "ap-south-1")[i % 3],
            "readOnly": (True, False, ...)[i % 3],
            "userAgent": ... if i % 11 == 0 else f"agent/{i % 4}",
        }
        if i % 5 == 0:
            fields["errorCode"] = "AccessDenied"
            fields["errorMessage"] = f"User {i % 2} is not authorized"
        if i % 4 == 0:
            fields["userIdentity"] = {
                "type": "AssumedRole",
                "arn": f"arn:aws:sts::111122223333:assumed-role/role{i % 3}/session{i % 5}",
                "accountId": "111122223333",
            }
        records.append(make_record(f"{prefix}{i}", at(start + i * 13), **fields))
    return records


def filled_engine(records: list[dict], **options) -> Engine:
    engine = Engine(retention_seconds=None, seed=0, **options)
    for part in range(0, len(records), 40):  # several chunks in the buffer
        engine.ingest(batch_of(records[part : part + 40]))
    return engine


@pytest.fixture
def path(tmp_path) -> Path:
    return tmp_path / "state" / "buffer.parquet"


def test_a_loaded_snapshot_gives_the_same_metrics_and_raw_records(path):
    records = varied_records(300)
    engine = filled_engine(records)
    info = save(engine.buffer, path, row_group_events=64)  # several row groups
    assert info.events == 300
    assert info.bytes == path.stat().st_size
    assert info.seconds >= 0

    fresh = Engine(retention_seconds=None, seed=0)
    result = fresh.ingest(load(path))
    assert (result.added, result.duplicates, result.expired) == (300, 0, 0)
    engine.finish()
    fresh.finish()
    pd.testing.assert_frame_equal(fresh.all_metrics(), engine.all_metrics())
    pd.testing.assert_frame_equal(fresh.buffer.snapshot().frame(), engine.buffer.snapshot().frame())
    for record in records:
        event_id = record["eventID"]
        assert fresh.buffer.raw_record(event_id) == engine.buffer.raw_record(event_id) is not None


def test_loading_row_group_by_row_group_gives_the_same_events(path):
    save(filled_engine(varied_records(130)).buffer, path, row_group_events=50)
    parts = list(batches(path))
    assert [len(part) for part in parts] == [50, 50, 30]
    whole = load(path)
    for part in parts[1:]:
        parts[0].extend(part)
    assert (parts[0].columns, parts[0].raws) == (whole.columns, whole.raws)


def test_the_file_is_self_describing_parquet_with_dictionary_text_and_utc_times(path):
    save(filled_engine(varied_records(50)).buffer, path)
    parquet = pq.ParquetFile(path)
    assert parquet.schema_arrow.equals(SCHEMA, check_metadata=True)
    assert parquet.schema_arrow.field("eventTime").type == pa.timestamp("ns", tz="UTC")
    assert pa.types.is_dictionary(parquet.schema_arrow.field("eventName").type)
    assert parquet.metadata.row_group(0).column(0).compression == "ZSTD"
    table = pq.read_table(path)
    assert table.column("readOnly").to_pylist()[:3] == [True, False, None]


def test_a_missing_file_loads_as_an_empty_batch_the_engine_accepts(tmp_path):
    batch = load(tmp_path / "nothing-here.parquet")
    assert len(batch) == 0
    assert Engine(retention_seconds=None).ingest(batch).added == 0


def test_an_empty_buffer_saves_and_loads_as_empty(path):
    info = save(Engine(retention_seconds=None).buffer, path)
    assert info.events == 0
    assert len(load(path)) == 0


def test_loading_twice_adds_nothing_the_second_time(path):
    engine = filled_engine(varied_records(100))
    save(engine.buffer, path)
    again = engine.ingest(load(path))
    assert (again.added, again.duplicates) == (0, 100)
    fresh = Engine(retention_seconds=None)
    assert fresh.ingest(load(path)).added == 100
    assert (fresh.ingest(load(path)).duplicates, len(fresh.buffer)) == (100, 100)


def test_events_past_the_retention_when_loaded_count_as_expired(path):
    engine = filled_engine(varied_records(100))  # one every 13 s from T0
    save(engine.buffer, path)
    later = Engine(retention_seconds=3600)
    now = (T0 + 3600 + 50 * 13) * NS_PER_SECOND  # the first 50 are now past the hour
    result = later.ingest(load(path), now_ns=now)
    assert (result.added, result.expired) == (50, 50)
    assert later.buffer.raw_record("e49") is None
    assert later.buffer.raw_record("e50") == engine.buffer.raw_record("e50")


def test_the_file_is_private_and_a_new_folder_owner_only(path):
    save(filled_engine(varied_records(5)).buffer, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_a_failed_write_leaves_the_previous_snapshot_whole_and_no_temporary_file(path, monkeypatch):
    save(filled_engine(varied_records(30)).buffer, path)
    before = path.read_bytes()
    written = []
    real_table = snapshot._table

    def fail_on_the_second_row_group(*args):
        if written:
            raise OSError("disk full")
        written.append(1)
        return real_table(*args)

    monkeypatch.setattr(snapshot, "_table", fail_on_the_second_row_group)
    with pytest.raises(OSError, match="disk full"):
        save(filled_engine(varied_records(200, prefix="new")).buffer, path, row_group_events=50)
    assert written  # the failure came midway, after a row group went to the temporary file
    assert path.read_bytes() == before
    assert sorted(os.listdir(path.parent)) == ["buffer.parquet"]
    assert load(path).column("eventID") == [f"e{i}" for i in range(30)]


@pytest.mark.parametrize("keep", [0, 3, 0.5, -1], ids=["empty", "header-only", "half", "footer-cut"])
def test_a_truncated_snapshot_raises_a_snapshot_error(path, keep):
    save(filled_engine(varied_records(200)).buffer, path, row_group_events=50)
    data = path.read_bytes()
    size = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    path.write_bytes(data[:size])
    with pytest.raises(SnapshotError, match="buffer.parquet"):
        load(path)


def test_a_damaged_snapshot_raises_a_snapshot_error(path):
    save(filled_engine(varied_records(200)).buffer, path, row_group_events=50)
    column = pq.ParquetFile(path).metadata.row_group(2).column(len(SCHEMA) - 1)  # raw records
    middle = column.data_page_offset + column.total_compressed_size // 2
    data = bytearray(path.read_bytes())
    data[middle : middle + 16] = bytes(16)
    path.write_bytes(bytes(data))
    with pytest.raises(SnapshotError, match="damaged"):
        load(path)


def test_a_file_that_is_not_a_snapshot_raises_a_snapshot_error(path):
    path.parent.mkdir()
    path.write_text("not parquet at all\n" * 10)
    with pytest.raises(SnapshotError):
        load(path)
    pq.write_table(pa.table({"eventID": ["a"]}), path)
    with pytest.raises(SnapshotError, match="not a buffer snapshot"):
        load(path)


def test_appending_during_a_save_neither_waits_nor_changes_what_is_saved(path, monkeypatch):
    engine = filled_engine(varied_records(100))
    real_table = snapshot._table
    appended = []

    def append_meanwhile(*args):
        assert engine.buffer._lock.acquire(timeout=1)  # the save does not hold the lock here
        engine.buffer._lock.release()
        appended.append(engine.ingest(batch_of(varied_records(10, start=T0 + 5000, prefix=f"late{len(appended)}-"))))
        return real_table(*args)

    monkeypatch.setattr(snapshot, "_table", append_meanwhile)
    info = save(engine.buffer, path, row_group_events=30)
    assert [result.added for result in appended] == [10, 10, 10, 10]  # one per row group
    assert info.events == 100
    assert load(path).column("eventID") == [f"e{i}" for i in range(100)]


def test_events_evicted_during_a_save_are_left_out(path, monkeypatch):
    buffer = Engine(retention_seconds=3600).buffer
    buffer.append(batch_of(varied_records(3000, start=T0, prefix="e")), now_ns=T0 * NS_PER_SECOND)
    taken = buffer.snapshot()
    buffer.evict((T0 + 3600 + 3000 * 13) * NS_PER_SECOND)  # all of them; the sealed block is freed
    monkeypatch.setattr(buffer, "snapshot", lambda: taken)
    info = save(buffer, path)
    batch = load(path)
    assert 0 < info.events == len(batch) < 3000
    assert all(batch.raws)


def test_the_snapshot_benchmark_runs_and_prints_every_figure():
    result = subprocess.run(
        [sys.executable, "-m", "bench.snapshot", "--events", "3000"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for label in ("save", "file size", "longest lock wait", "memory added", "load", "ingest of the loaded batch"):
        assert label in result.stdout, label


def test_the_newest_saved_event_is_read_from_its_column(tmp_path):
    from metrics.buffer import EventBuffer
    from metrics.snapshot import newest_ns, save
    from tests.conftest import batch_of, make_record

    assert newest_ns(tmp_path / "none.parquet") is None
    buffer = EventBuffer(retention_seconds=None)
    buffer.append(batch_of([make_record("a", "2024-08-02T08:30:00Z"), make_record("b", "2024-08-03T09:00:05Z")]))
    save(buffer, tmp_path / "buffer.parquet")
    assert newest_ns(tmp_path / "buffer.parquet") == 1722675605 * 1_000_000_000
