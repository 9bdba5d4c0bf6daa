"""The pages' columnar reads give what the frame-based ones gave: the explorer's selection and
search against ``matching``, and the per-group sums against ``rebin`` of the metric frames."""

import threading
import time

import pandas as pd
import pytest

from collectors.demo import DemoSource
from metrics.engine import Engine
from metrics.explore import EventFilter, matching, pump_rows, rebin, scope_mask, subset, sum_groups
from metrics.pumps import PUMPS_BY_NAME
from metrics.query import QueryError
from metrics.selection import Ordered, select
from tests.conftest import batch_of, make_record

T0 = 1_722_585_600  # 2024-08-02T08:00:00Z
TRICKY = [
    # A word only in a key, in an escape, in a literal, a number, and the user behind a role.
    make_record("t1", "2024-08-02T08:10:00Z", requestParameters={"accessDeniedFlag": "no"}),
    make_record("t2", "2024-08-02T08:10:01Z", errorMessage="line one\nline two", requestID='quote"inside'),
    make_record("t3", "2024-08-02T08:10:02Z", requestParameters={"count": 12345, "dryRun": False, "note": None}),
    make_record(
        "t4",
        "2024-08-02T08:10:03Z",
        userIdentity={
            "type": "AssumedRole",
            "arn": "arn:aws:sts::111122223333:assumed-role/deployer/ci-run-7",
            "sessionContext": {"sessionIssuer": {"userName": "deployer"}},
        },
        errorCode="AccessDenied",
    ),
]


@pytest.fixture(scope="module")
def engine():
    engine = Engine(retention_seconds=None, seed=0)
    records = DemoSource(seed=5, rate=1.0).records(T0, T0 + 3600)
    engine.ingest(batch_of(records[: len(records) // 2]))
    engine.ingest(batch_of(records[len(records) // 2 :] + TRICKY))  # the last block stays open
    return engine


SEARCHES = [
    "",
    "AccessDenied",
    "accessdenied",
    "accessDeniedFlag",  # a key only: no match
    "nline",  # across an escape: no match
    "line two",
    "12345",
    "false",
    "null",
    "deployer",  # the user column, derived from the role
    "errorCode:AccessDenied",
    "errorCode:Access*",
    "eventName:Describe* OR eventName:List*",
    "NOT errorCode:AccessDenied AND s3",
    "userIdentity.type:AssumedRole",
    "Describe*",
    "errorCode:*",
    '"quote\\"inside"',
    "ec2 AND NOT Describe*",
]


@pytest.mark.parametrize("text", SEARCHES)
def test_the_selection_finds_what_matching_finds(engine, text):
    snapshot = engine.buffer.snapshot()
    flt = EventFilter(start=T0 + 600, end=T0 + 3000, text=text)
    expected = matching(snapshot.frame(), flt, raws=engine.buffer.raw_records)["eventID"].tolist()
    got = select(Ordered.of(snapshot), flt, engine.buffer.raw_texts)
    assert got.event_ids() == expected
    assert got.frame()["eventID"].tolist() == expected


def test_the_selection_applies_every_criterion_as_matching_does(engine):
    snapshot = engine.buffer.snapshot()
    frame = snapshot.frame()
    user = frame["user"].value_counts().index[0]
    for flt in (
        EventFilter(users=(user,), outcome="succeeded"),
        EventFilter(error_codes=(None, "AccessDenied"), regions=("us-east-1",)),
        EventFilter(excluded=(("users", user), ("error_codes", None))),
        EventFilter(event_ids=("t1", "t3", "nope")),
        EventFilter(sessions=(None,), outcome="failed"),
    ):
        expected = matching(frame, flt)["eventID"].tolist()
        assert select(Ordered.of(snapshot), flt, engine.buffer.raw_texts).event_ids() == expected, flt


def test_a_page_of_the_newest_and_the_commonest_values_come_from_the_codes(engine):
    snapshot = engine.buffer.snapshot()
    chosen = select(Ordered.of(snapshot), EventFilter(), engine.buffer.raw_texts)
    frame = snapshot.frame()
    assert chosen.newest(0, 5)["eventID"].tolist() == frame["eventID"].tolist()[-5:]
    assert chosen.newest(5, 5)["eventID"].tolist() == frame["eventID"].tolist()[-10:-5]
    counts = frame["eventName"].value_counts()
    assert chosen.counts("eventName", 1) == [(counts.index[0], int(counts.iloc[0]))]
    assert dict(chosen.counts("errorCode", missing=True))[None] == int(frame["errorCode"].isna().sum())


def test_an_unreadable_search_raises_for_the_page_to_explain(engine):
    with pytest.raises(QueryError):
        select(Ordered.of(engine.buffer.snapshot()), EventFilter(text="(x"), engine.buffer.raw_texts)


@pytest.mark.parametrize("name", ["CallsPerAPI", "CallsPerUser", "CallsPerUniqueIp", "EC2Calls"])
@pytest.mark.parametrize("seconds", [60, 600])
def test_binned_sums_equal_the_rebinned_frames_from_the_state_and_from_a_scope(engine, name, seconds):
    start, end = T0 + 300, T0 + 3300
    expected = rebin(engine.metric_frame(name, start, end), seconds).reset_index(drop=True)
    got = sum_groups(engine.states[name].grouped(start, end), name, seconds)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    columns = engine.buffer.snapshot().columns()
    pd.testing.assert_frame_equal(
        sum_groups(pump_rows(columns, PUMPS_BY_NAME[name], start, end), name, seconds), expected, check_dtype=False
    )
    east = subset(columns, scope_mask(columns, ("us-east-1",), ()))
    mine = sum_groups(pump_rows(east, PUMPS_BY_NAME[name], start, end), name, seconds)
    assert mine["value"].sum() < expected["value"].sum()


def test_group_totals_hold_each_groups_sum_first_and_last_window(engine):
    start, end = T0, T0 + 3600
    frame = engine.metric_frame("CallsPerUser", start, end)
    got = sum_groups(engine.states["CallsPerUser"].grouped(start, end), "CallsPerUser").set_index(
        ["category", "subcategory"]
    )
    expected = frame.groupby(["category", "subcategory"]).agg(
        value=("value", "sum"), first=("window_start", "min"), last=("window_start", "max")
    )
    pd.testing.assert_frame_equal(got.sort_index(), expected.sort_index(), check_dtype=False, check_index_type=False)
    assert got["value"].is_monotonic_decreasing


def test_a_repeated_search_finds_the_events_written_since_into_the_open_and_new_blocks():
    engine = Engine(retention_seconds=None, seed=0)
    records = DemoSource(seed=6, rate=1.0).records(T0, T0 + 3600)

    def found() -> list[str]:
        return select(Ordered.of(engine.buffer.snapshot()), EventFilter(text="AccessDenied"), engine.buffer.raw_texts)

    engine.ingest(batch_of(records[: len(records) // 3]))
    first = found().event_ids()
    engine.ingest(batch_of(records[len(records) // 3 :]))
    expected = matching(engine.buffer.snapshot().frame(), EventFilter(text="AccessDenied"), engine.buffer.raw_records)
    assert found().event_ids() == expected["eventID"].tolist()
    assert len(expected) > len(first) > 0


@pytest.mark.parametrize("name", ["TotalCalls", "NumberOfSuccessfulCalls"])
def test_a_scopes_dense_bins_equal_its_rebinned_dense_frame_zeros_included(engine, name):
    from ui import data
    from ui.view import View

    scoped = View("Custom range", (T0 - 600, T0 + 4200), ("us-east-1",), (), "UTC")
    now = T0 + 3900
    expected = rebin(data.metric(engine, name, scoped, now), 300).reset_index(drop=True)
    got = data.binned(engine, name, scoped, now, 300)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert (got["value"] == 0).any()  # the quiet bins before the first event are there


def test_a_search_past_its_deadline_leaves_the_oldest_records_for_the_next_run_and_then_ends():
    from metrics import search

    engine = Engine(retention_seconds=None, seed=0)
    records = DemoSource(seed=6, rate=3.0).records(T0, T0 + 3600)
    for part in range(0, len(records), 2000):  # four blocks
        engine.ingest(batch_of(records[part : part + 2000]))
    search._HITS.clear()
    ordered, flt = Ordered.of(engine.buffer.snapshot()), EventFilter(text="AccessDenied")
    expected = matching(engine.buffer.snapshot().frame(), flt, engine.buffer.raw_records)["eventID"].tolist()
    runs, partial = [], None
    while partial is None or partial.unsearched:
        partial = select(ordered, flt, engine.buffer.raw_texts, deadline=0.0)  # long past: one block a run
        runs.append(partial)
    assert len(runs) > 2
    assert runs[0].unsearched > runs[1].unsearched > 0
    assert set(runs[0].event_ids()) <= set(expected)
    assert runs[-1].event_ids() == expected


@pytest.fixture(scope="module")
def indexed_engine():
    from metrics import search

    engine = Engine(retention_seconds=None, seed=0)
    records = DemoSource(seed=5, rate=1.0).records(T0, T0 + 3600)
    engine.ingest(batch_of(TRICKY + records))  # the tricky records in the first, full block
    assert search.index_blocks(engine.buffer) == len(engine.buffer.raw.blocks) >= 1
    return engine


@pytest.mark.parametrize("text", SEARCHES)
def test_with_its_full_blocks_indexed_the_selection_still_finds_what_matching_finds(indexed_engine, text):
    snapshot = indexed_engine.buffer.snapshot()
    flt = EventFilter(start=T0 + 600, end=T0 + 3000, text=text)
    expected = matching(snapshot.frame(), flt, raws=indexed_engine.buffer.raw_records)["eventID"].tolist()
    assert select(Ordered.of(snapshot), flt, indexed_engine.buffer.raw_texts).event_ids() == expected


def test_a_word_search_over_indexed_blocks_decompresses_only_the_block_being_filled(indexed_engine):
    from metrics import search

    buffer, read = indexed_engine.buffer, []

    def raw_texts(blocks):
        for block, offsets, text in buffer.raw_texts(blocks):
            yield block, offsets, lambda text=text, block=block: read.append(block) or text()

    raw_texts.__self__ = buffer  # what the search's caches are kept by
    search._HITS.clear()
    found = select(Ordered.of(buffer.snapshot()), EventFilter(text="ci-run-7"), raw_texts)
    assert found.event_ids() == ["t4"]
    assert read == [buffer.raw._open_id]


def test_the_index_forgets_evicted_blocks():
    from metrics import search

    engine = Engine(retention_seconds=600, seed=0)
    records = DemoSource(seed=6, rate=3.0).records(T0, T0 + 3600)
    engine.ingest(batch_of(records))
    assert search.index_blocks(engine.buffer) >= 2
    held = search.indexed_bytes(engine.buffer)
    assert engine.buffer.evict((T0 + 3600) * 1_000_000_000) > 0  # older than T0 + 3000
    assert search.index_blocks(engine.buffer) == 0
    assert 0 < search.indexed_bytes(engine.buffer) < held


def test_a_block_the_index_cannot_read_is_searched_as_text_and_not_read_again(monkeypatch):
    from metrics import search

    engine = Engine(retention_seconds=None, seed=0)
    engine.ingest(batch_of(DemoSource(seed=6, rate=1.0).records(T0, T0 + 3600)))
    calls = []

    def broken(text, offsets):
        calls.append(1)
        raise ValueError("not JSON")

    with monkeypatch.context() as patch:
        patch.setattr(search.BlockIndex, "of", broken)
        assert search.index_blocks(engine.buffer) == 0
        assert search.index_blocks(engine.buffer) == 0
    assert len(calls) == len(engine.buffer.raw.blocks)  # tried once each
    assert search.indexed_bytes(engine.buffer) == 0
    flt = EventFilter(text="AccessDenied")
    expected = matching(engine.buffer.snapshot().frame(), flt, engine.buffer.raw_records)["eventID"].tolist()
    assert select(Ordered.of(engine.buffer.snapshot()), flt, engine.buffer.raw_texts).event_ids() == expected


def test_the_background_index_waits_while_a_backlog_is_read():
    from metrics import search

    engine = Engine(retention_seconds=None, seed=0)
    engine.ingest(batch_of(DemoSource(seed=6, rate=3.0).records(T0, T0 + 3600)))
    reading = threading.Event()
    reading.set()
    search.keep_indexed(engine.buffer, interval=0.02, wait=reading.is_set)
    time.sleep(0.3)
    assert search.indexed_bytes(engine.buffer) == 0  # not while the backlog is read
    reading.clear()
    deadline = time.monotonic() + 10
    while not search.indexed_bytes(engine.buffer) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert search.indexed_bytes(engine.buffer) > 0


def test_an_episodes_leaders_are_counted_once_and_again_when_a_late_event_lands_in_it():
    from ui import data

    engine = Engine(retention_seconds=None, seed=0)
    early = [make_record(f"a{i}", f"2024-08-02T08:00:0{i}Z", eventName="ListBuckets") for i in range(3)]
    engine.ingest(batch_of(early))
    start, end = T0, T0 + 10
    tops = {"eventName": 1}
    first = data.leading(engine, start, end, 3, tops)
    assert first == {"eventName": [("ListBuckets", 3)]}
    assert data.leading(engine, start, end, 3, tops) is first  # another session: the same answer, not a count

    late = [make_record(f"b{i}", f"2024-08-02T08:00:0{i}Z", eventName="GetObject") for i in range(4)]
    engine.ingest(batch_of(late))
    assert data.leading(engine, start, end, 7, tops) == {"eventName": [("GetObject", 4)]}
