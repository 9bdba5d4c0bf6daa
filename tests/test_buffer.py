import threading

import orjson
import pandas as pd

from metrics.buffer import NS_PER_SECOND, EventBuffer
from tests.conftest import batch_of, make_record

T0 = 1_722_587_400  # 2024-08-02T08:30:00Z


def at(seconds: int) -> str:
    return pd.Timestamp(seconds, unit="s", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def records(n: int, start: int = T0, prefix: str = "e", **fields) -> list[dict]:
    return [make_record(f"{prefix}{i}", at(start + i), **fields) for i in range(n)]


def test_an_event_seen_twice_is_stored_once():
    buffer = EventBuffer(None)
    first = buffer.append(batch_of(records(3)))
    again = buffer.append(batch_of(records(3) + records(1, prefix="new")))
    assert (len(first.added), first.duplicates) == (3, 0)
    assert (len(again.added), again.duplicates) == (1, 3)
    assert len(buffer) == 4
    assert len(buffer.snapshot().frame()) == 4


def test_duplicates_within_one_batch_count_once():
    buffer = EventBuffer(None)
    result = buffer.append(batch_of(records(2) + records(2)))
    assert (len(result.added), result.duplicates, buffer.duplicates) == (2, 2, 2)


def test_events_older_than_the_retention_are_refused_and_counted():
    buffer = EventBuffer(retention_seconds=3600)
    now = (T0 + 7200) * NS_PER_SECOND
    result = buffer.append(batch_of(records(2, start=T0) + records(2, start=T0 + 5000, prefix="fresh")), now_ns=now)
    assert (len(result.added), result.expired) == (2, 2)
    assert buffer.snapshot().frame()["eventID"].tolist() == ["fresh0", "fresh1"]


def test_old_events_are_evicted_as_time_passes_and_their_ids_forgotten():
    buffer = EventBuffer(retention_seconds=600)
    buffer.append(batch_of(records(100, start=T0)), now_ns=(T0 + 100) * NS_PER_SECOND)
    assert len(buffer) == 100
    evicted = buffer.evict((T0 + 650) * NS_PER_SECOND)  # cutoff T0 + 50
    assert evicted == 50
    assert len(buffer) == 50
    assert sum(len(c.index.hashes) for c in buffer._chunks) == 50
    assert buffer.snapshot().frame()["eventID"].iloc[0] == "e50"
    assert buffer.raw_record("e10") is None


def test_appending_evicts_once_the_stale_part_is_worth_a_scan():
    buffer = EventBuffer(retention_seconds=1000)
    buffer.append(batch_of(records(10, start=T0)), now_ns=T0 * NS_PER_SECOND)
    buffer.append(batch_of(records(1, start=T0 + 2000, prefix="late")), now_ns=(T0 + 2000) * NS_PER_SECOND)
    assert buffer.snapshot().frame()["eventID"].tolist() == ["late0"]


def test_a_snapshot_never_changes_after_it_is_taken():
    buffer = EventBuffer(None)
    buffer.append(batch_of(records(5)))
    snapshot = buffer.snapshot()
    before = snapshot.frame()
    buffer.append(batch_of(records(5, prefix="more", userAgent="another agent")))
    assert len(snapshot) == 5
    pd.testing.assert_frame_equal(snapshot.frame(), before)
    assert len(buffer.snapshot()) == 10
    assert buffer.snapshot().version > snapshot.version


def test_frame_has_compact_types_and_is_sorted_by_time():
    buffer = EventBuffer(None)
    buffer.append(batch_of(records(3, start=T0 + 10)))
    buffer.append(batch_of(records(2, start=T0, prefix="early", readOnly=...)))
    frame = buffer.snapshot().frame()
    assert frame["eventID"].tolist() == ["early0", "early1", "e0", "e1", "e2"]
    assert str(frame["eventTime"].dtype) == "datetime64[ns, UTC]"
    assert frame["eventTime"].iloc[0] == pd.Timestamp(at(T0))
    for column in ("eventSource", "eventName", "user", "sourceIPAddress", "errorCode"):
        assert isinstance(frame[column].dtype, pd.CategoricalDtype), column
    assert frame["readOnly"].tolist()[:3] == [pd.NA, pd.NA, True]
    assert frame["errorCode"].isna().all()


def test_frame_selects_a_time_range():
    buffer = EventBuffer(None)
    buffer.append(batch_of(records(10)))
    frame = buffer.snapshot().frame((T0 + 3) * NS_PER_SECOND, (T0 + 6) * NS_PER_SECOND)
    assert frame["eventID"].tolist() == ["e3", "e4", "e5"]


def test_the_raw_record_of_an_event_is_returned_as_it_was_read():
    buffer = EventBuffer(None)
    originals = records(3000)  # more than one compressed block
    buffer.append(batch_of(originals))
    for i in (0, 2047, 2048, 2999):
        assert orjson.loads(buffer.raw_record(f"e{i}")) == originals[i]
    assert buffer.raw_record("absent") is None


def test_chunks_stay_few_however_many_batches_arrive():
    buffer = EventBuffer(None)
    for b in range(200):
        buffer.append(batch_of(records(5, start=T0 + 5 * b, prefix=f"b{b}-")))
    assert len(buffer) == 1000
    assert len(buffer._chunks) <= 10
    frame = buffer.snapshot().frame()
    assert frame["eventID"].is_unique and len(frame) == 1000


def test_dictionaries_forget_strings_no_event_uses_any_more():
    buffer = EventBuffer(retention_seconds=10_000)
    agents = [make_record(f"old{i}", at(T0 + i), userAgent=f"agent-{i}") for i in range(5000)]
    buffer.append(batch_of(agents), now_ns=T0 * NS_PER_SECOND)
    buffer.append(batch_of(records(10, start=T0 + 20_000, prefix="new")), now_ns=(T0 + 20_000) * NS_PER_SECOND)
    assert len(buffer.dictionaries["userAgent"].values) == 1
    frame = buffer.snapshot().frame()
    assert frame["userAgent"].tolist() == ["aws-cli/2.22.4"] * 10


def test_readers_get_consistent_snapshots_while_a_writer_appends():
    buffer = EventBuffer(None)
    errors, done = [], threading.Event()

    def write():
        for b in range(150):
            buffer.append(batch_of(records(20, start=T0 + b * 20, prefix=f"w{b}-", userAgent=f"agent {b % 7}")))
        done.set()

    def read():
        try:
            while not done.is_set():
                snapshot = buffer.snapshot()
                frame = snapshot.frame()
                assert len(frame) == len(snapshot)
                assert frame["eventID"].is_unique
                assert not frame["userAgent"].isna().any()
                assert frame["eventTime"].is_monotonic_increasing
        except Exception as error:  # surfaced below
            errors.append(error)

    readers = [threading.Thread(target=read) for _ in range(3)]
    writer = threading.Thread(target=write)
    for thread in [*readers, writer]:
        thread.start()
    for thread in [writer, *readers]:
        thread.join(30)
    assert not errors
    assert len(buffer.snapshot().frame()) == 3000


def test_small_batches_fill_whole_compressed_blocks():
    buffer = EventBuffer(None)
    originals = records(5000)
    for start in range(0, 5000, 50):  # LookupEvents pages
        buffer.append(batch_of(originals[start : start + 50]))
    assert len(buffer.raw.blocks) == 2  # two full blocks sealed, the rest still filling
    for i in (0, 2047, 2048, 4095, 4096, 4999):
        assert orjson.loads(buffer.raw_record(f"e{i}")) == originals[i]


def test_raw_records_of_evicted_events_are_released():
    buffer = EventBuffer(retention_seconds=10_000)
    buffer.append(batch_of(records(4096, start=T0)), now_ns=T0 * NS_PER_SECOND)
    buffer.append(batch_of(records(10, start=T0 + 50_000, prefix="new")), now_ns=(T0 + 50_000) * NS_PER_SECOND)
    assert buffer.raw.blocks == {}  # both sealed blocks held only evicted events
    assert orjson.loads(buffer.raw_record("new3"))["eventID"] == "new3"


def test_distinct_events_whose_id_hashes_collide_are_all_kept(monkeypatch):
    import numpy as np

    import metrics.buffer

    # Every id hashes alike: only comparing the ids themselves can tell them apart.
    monkeypatch.setattr(metrics.buffer, "id_hashes", lambda ids: np.zeros(len(ids), dtype=np.uint64))
    buffer = EventBuffer(None)
    first = buffer.append(batch_of(records(3)))
    again = buffer.append(batch_of(records(4) + records(2, prefix="other") + records(1, prefix="other")))
    assert (len(first.added), first.duplicates) == (3, 0)
    assert (len(again.added), again.duplicates) == (3, 4)  # e3, other0, other1 new; e0-e2 and other0 again
    assert sorted(buffer.snapshot().frame()["eventID"]) == ["e0", "e1", "e2", "e3", "other0", "other1"]
    assert orjson.loads(buffer.raw_record("other1"))["eventID"] == "other1"
    assert buffer.raw_records(["e2", "absent", "e0"])[1] is None


def test_ids_that_differ_only_past_a_nul_or_in_case_are_distinct_events():
    buffer = EventBuffer(None)
    ids = ["a", "a\x00", "A", "a ", "é", "e\u0301"]
    result = buffer.append(batch_of([make_record(i, at(T0)) for i in ids]))
    assert len(result.added) == len(ids) and result.duplicates == 0
    assert sorted(buffer.snapshot().frame()["eventID"]) == sorted(ids)
    assert buffer.append(batch_of([make_record(i, at(T0)) for i in ids])).duplicates == len(ids)
