"""The shared view: ranges, window-aligned drill filters that count what the charts count."""

import pandas as pd
import pytest

from metrics.engine import Engine
from metrics.explore import matching
from tests.conftest import batch_of, make_record
from ui import data
from ui.view import View, capped_range

T0 = 1_722_587_400  # a multiple of 60


def stamp(offset: int) -> str:
    return pd.Timestamp(T0 + offset, unit="s", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def engine():
    engine = Engine(retention_seconds=None)
    records = [make_record(f"e{i}", stamp(i * 7), eventName=("ListBuckets", "GetObject")[i % 2]) for i in range(600)]
    engine.ingest(batch_of(records))
    return engine


@pytest.mark.parametrize("now_offset", [3600, 3603, 3655, 4000])
@pytest.mark.parametrize(("metric", "step"), [("CallsPerAPI", 10), ("CallsPerUniqueIp", 60)])
def test_a_drill_over_the_range_lists_exactly_the_events_the_chart_counts(engine, now_offset, metric, step):
    view = View("Last hour", None, (), (), "UTC")
    now = T0 + now_offset
    counted = data.metric(engine, metric, view, now)["value"].sum()
    events = matching(engine.buffer.snapshot().frame(), view.filter(now=now, step=step))
    assert len(events) == counted


def test_live_and_custom_ranges():
    live = View("Last 15 minutes", None, ("eu-west-1",), (), "UTC")
    assert live.bounds(1000) == (100, 1001)
    assert live.scoped and live.live
    assert live.label() == "last 15 minutes"
    custom = View("Custom range", (T0, T0 + 7200), (), (), "UTC")
    assert custom.bounds(0) == (T0, T0 + 7200)
    assert custom.label() == "02 Aug 2024 08:30 to 02 Aug 2024 10:30 UTC"  # not this year: the year shows
    assert custom.filter().start == T0


def test_local_time_is_the_zone_wall_clock_and_named_with_its_offset():
    view = View("Last hour", None, (), (), "Asia/Tokyo")
    times = pd.Series(pd.to_datetime([T0], unit="s", utc=True))
    assert view.wall(times).iloc[0] == pd.Timestamp("2024-08-02 17:30:00", tz="UTC")
    assert view.zone_title == "Asia/Tokyo, UTC+09:00"


def test_a_custom_range_is_cut_at_now_and_at_the_retention_with_a_message():
    now, day = 1_800_000_000, 86400
    assert capped_range(now - 3600, now, now, day) == (now - 3600, now, None)
    start, end, note = capped_range(now - 365 * day, now + 30 * day, now, day)
    assert (start, end) == (now + 1 - day, now + 1)
    assert note == (
        "The range was shortened: it ends now: no event comes from the future; "
        "it covers at most the 24 h of events kept in memory."
    )


def test_a_custom_range_is_labelled_in_the_zone_it_is_shown_in():
    tokyo = View("Custom range", (T0, T0 + 7200), (), (), "Asia/Tokyo")
    assert tokyo.label() == "02 Aug 2024 17:30 to 02 Aug 2024 19:30 JST"  # the year: not this one
    assert tokyo.text(T0) == "2024-08-02 17:30:00"
