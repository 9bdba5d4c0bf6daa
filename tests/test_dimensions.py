"""Per-dimension anomaly scores: detection on synthetic streams, the contributors behind a
score, key selection, dense series, determinism, late events, retention."""

import doctest
import math
import threading

import numpy as np
import pandas as pd
import pytest

import metrics.dimensions
from metrics.buffer import EventBuffer, EventColumns
from metrics.dimensions import DIMENSIONS, DimensionAnomalies
from tests.conftest import batch_of, make_record

T0 = 1_789_948_800  # a Monday, 00:00 UTC
MINUTE = 60

USERS = {"alice": 150, "bob": 120, "carol": 100, "dave": 80, "erin": 60, "frank": 40, "grace": 20, "heidi": 10}
USERS["mallory"] = 3
SERVICES = {"ec2.amazonaws.com": 250, "s3.amazonaws.com": 180, "sts.amazonaws.com": 100, "iam.amazonaws.com": 40}
SERVICES["kms.amazonaws.com"] = 5
ERRORS = {"ThrottlingException": 15, "AccessDenied": 3}
RATES = {"principal": USERS, "service": SERVICES, "error": ERRORS}


def ts(seconds: int) -> pd.Timestamp:
    return pd.Timestamp(seconds, unit="s", tz="UTC")


def stream(minutes: int = 150, burst: tuple[str, str] | None = None, at: int = 120, seed: int = 0) -> pd.DataFrame:
    """Steady Poisson traffic: each event's user, service and error code drawn independently
    by their rates per minute. ``burst`` (dimension, key) multiplies that key's calls by 20
    for 3 minutes from minute ``at``, the extra calls' other columns drawn as usual."""
    rng = np.random.default_rng(seed)
    users, user_p = list(USERS), np.array(list(USERS.values()), float) / sum(USERS.values())
    services, service_p = list(SERVICES), np.array(list(SERVICES.values()), float) / sum(SERVICES.values())
    parts = []
    for minute in range(minutes):
        n = int(rng.poisson(sum(USERS.values())))
        errors = np.full(n, None, dtype=object)
        for code, rate in ERRORS.items():
            errors[rng.choice(n, int(rng.poisson(rate)), replace=False)] = code
        columns = {"user": rng.choice(users, n, p=user_p), "eventSource": rng.choice(services, n, p=service_p)}
        columns["errorCode"] = errors
        if burst is not None and at <= minute < at + 3:
            dimension, key = burst
            k = int(rng.poisson(RATES[dimension][key] * 19))
            extra = {"user": rng.choice(users, k, p=user_p), "eventSource": rng.choice(services, k, p=service_p)}
            extra["errorCode"] = np.full(k, None, dtype=object)
            extra[DIMENSIONS[dimension]] = np.full(k, key, dtype=object)
            columns = {c: np.concatenate([columns[c], extra[c]]) for c in columns}
        count = len(columns["user"])
        times = T0 + minute * MINUTE + rng.integers(0, MINUTE, count)
        parts.append(pd.DataFrame({"eventTime": pd.to_datetime(times, unit="s", utc=True), **columns}))
    return pd.concat(parts, ignore_index=True)


def columns_of(frame: pd.DataFrame) -> EventColumns:
    return EventColumns.from_frame(frame)


def learned(frame: pd.DataFrame, until_minute: int, **settings) -> DimensionAnomalies:
    dims = DimensionAnomalies(**settings)
    dims.add(columns_of(frame))
    dims.advance(T0 + until_minute * MINUTE)
    return dims


@pytest.mark.parametrize(
    "burst",
    [("principal", "mallory"), ("service", "kms.amazonaws.com"), ("error", "AccessDenied")],
    ids=["principal", "service", "error"],
)
def test_a_20x_jump_of_one_key_gets_the_top_score_and_others_stay_low(burst):
    dimension, key = burst
    dims = learned(stream(burst=burst), 150)
    jump = {ts(T0 + m * MINUTE) for m in (120, 121, 122)}

    top = dims.top(T0, T0 + 150 * MINUTE, n=3)
    assert top["dimension"].tolist() == [dimension] * 3
    assert top["key"].tolist() == [key] * 3
    assert set(top["window_start"]) == jump

    scores = dims.scores(dimension, T0, T0 + 150 * MINUTE)
    mine = scores[scores["key"] == key]
    before = mine[(mine["window_start"] < ts(T0 + 120 * MINUTE)) & (mine["score"] > 0)]["score"]
    assert len(before) > 30  # the forest was warm well before the jump
    peak = top["score"].iloc[0]
    assert peak > 2 * np.percentile(before, 99)

    for other in DIMENSIONS:
        rest = dims.scores(other, T0 + 100 * MINUTE, T0 + 150 * MINUTE)
        rest = rest[rest["key"] != key]
        assert len(rest) > 0
        assert rest["score"].max() < peak / 2, other


def events_frame(records: list[dict]) -> pd.DataFrame:
    buffer = EventBuffer(retention_seconds=None)
    buffer.append(batch_of(records))
    return buffer.snapshot().frame()


def identity(user: str) -> dict:
    return {
        "type": "IAMUser",
        "arn": f"arn:aws:iam::111122223333:user/{user}",
        "accountId": "111122223333",
        "userName": user,
    }


def at(seconds: int) -> str:
    return ts(seconds).strftime("%Y-%m-%dT%H:%M:%SZ")


def contributor_records() -> list[dict]:
    """The hour before 01:00: alice calls ListBuckets from 10.0.0.1 twice a minute and GetObject
    from 203.0.113.9 six times in all. In 01:00-01:01: ListBuckets twice as usual, 30 GetObject
    from 203.0.113.9 and 3 DeleteObject from 198.51.100.7. Bob is busy throughout; events after
    the window are left out."""
    window = T0 + 3600
    records = []

    def call(seconds, name, ip, user="alice", source="s3.amazonaws.com"):
        records.append(
            make_record(
                f"e{len(records)}",
                at(seconds),
                eventName=name,
                eventSource=source,
                sourceIPAddress=ip,
                userIdentity=identity(user),
            )
        )

    for minute in range(60):
        base = T0 + minute * MINUTE
        call(base + 1, "ListBuckets", "10.0.0.1")
        call(base + 2, "ListBuckets", "10.0.0.1")
        call(base + 3, "GetObject", "192.0.2.1", user="bob")
    for minute in (5, 15, 25, 35, 45, 55):
        call(T0 + minute * MINUTE + 30, "GetObject", "203.0.113.9")
    call(window + 1, "ListBuckets", "10.0.0.1")
    call(window + 2, "ListBuckets", "10.0.0.1")
    for i in range(30):
        call(window + 3 + i, "GetObject", "203.0.113.9")
    for i in range(3):
        call(window + 40 + i, "DeleteObject", "198.51.100.7")
    for i in range(20):
        call(window + 5 + i, "GetObject", "192.0.2.1", user="bob")
    call(window + 60, "PutObject", "203.0.113.50")  # the next window
    return records


def test_contributors_name_the_apis_and_addresses_that_rose_with_their_counts():
    frame = events_frame(contributor_records())
    found = DimensionAnomalies().contributors(frame, "principal", "alice", T0 + 3600)
    assert found.columns.tolist() == ["field", "value", "calls", "usual", "increase"]
    rows = [(f, v, c, pytest.approx(u), pytest.approx(i)) for f, v, c, u, i in found.itertuples(index=False)]
    assert rows == [
        ("eventName", "GetObject", 30, 0.1, 29.9),  # 6 calls in the hour: 0.1 a minute
        ("sourceIPAddress", "203.0.113.9", 30, 0.1, 29.9),
        ("eventName", "DeleteObject", 3, 0.0, 3.0),
        ("sourceIPAddress", "198.51.100.7", 3, 0.0, 3.0),
    ]  # ListBuckets and 10.0.0.1 kept their usual 2 a minute; bob is someone else


def test_contributors_of_a_service_include_the_users_and_stop_at_n_per_field():
    frame = events_frame(contributor_records())
    found = DimensionAnomalies().contributors(frame, "service", "s3.amazonaws.com", ts(T0 + 3600), n=1)
    rows = [(f, v, c) for f, v, c, _, _ in found.itertuples(index=False)]
    # GetObject: alice 30 and bob 20 against (6 + 60) / 60; users: alice 35 against 2.1, bob 20 against 1
    assert rows == [("eventName", "GetObject", 50), ("user", "alice", 35), ("sourceIPAddress", "203.0.113.9", 30)]
    assert found["usual"].tolist() == pytest.approx([1.1, 2.1, 0.1])
    assert found["increase"].tolist() == pytest.approx([48.9, 32.9, 29.9])


def test_contributors_of_an_unknown_key_or_an_empty_frame_are_empty():
    frame = events_frame(contributor_records())
    dims = DimensionAnomalies()
    assert dims.contributors(frame, "principal", "nobody", T0 + 3600).empty
    assert dims.contributors(frame.iloc[:0], "principal", "alice", T0 + 3600).empty


def steady(rates: dict[str, int], minutes: range, column: str = "user") -> pd.DataFrame:
    """``rates[key]`` calls in each minute of ``minutes``, one service, no errors."""
    rows = [(T0 + m * MINUTE + i % MINUTE, key) for m in minutes for key, n in rates.items() for i in range(n)]
    times, keys = zip(*rows)
    frame = pd.DataFrame({"eventTime": pd.to_datetime(list(times), unit="s", utc=True), column: list(keys)})
    return frame


def test_the_busiest_keys_of_the_last_hour_are_tracked_and_reselected_when_due():
    dims = DimensionAnomalies(top_n=3, reselect_every=30)
    dims.add(columns_of(steady({"a": 30, "b": 20, "c": 10, "d": 5}, range(0, 120))))
    dims.add(columns_of(steady({"d": 95}, range(60, 120))))  # d: 100 a minute from 01:00
    dims.advance(T0 + 60 * MINUTE)
    assert dims.tracked("principal") == ["a", "b", "c"]
    dims.advance(T0 + 80 * MINUTE)  # d is busiest in the last hour, but no selection is due
    assert dims.tracked("principal") == ["a", "b", "c"]
    dims.advance(T0 + 90 * MINUTE)  # 30 windows on: d (3,150) a (1,800) b (1,200), not c (600)
    assert dims.tracked("principal") == ["a", "b", "d"]
    d = dims.scores("principal", T0, T0 + 120 * MINUTE)
    d = d[d["key"] == "d"]
    assert d["window_start"].iloc[0] == ts(T0)  # a new key's series starts at its first window
    assert d["calls"].iloc[[0, 60]].tolist() == [5, 100]
    c = dims.scores("principal", T0 + 80 * MINUTE, T0 + 120 * MINUTE)
    c = c[c["key"] == "c"]
    # c dropped out: it keeps its forest and final scores, and stops learning at 01:30
    assert c["window_start"].iloc[-1] == ts(T0 + 89 * MINUTE)


def test_empty_places_are_filled_without_waiting_for_a_selection():
    dims = DimensionAnomalies(top_n=5, min_calls=1)
    dims.add(columns_of(steady({"a": 3, "b": 2}, range(0, 30))))
    dims.advance(T0 + 10 * MINUTE)
    assert dims.tracked("principal") == ["a", "b"]
    dims.add(columns_of(steady({"new": 1}, range(12, 30))))
    dims.advance(T0 + 12 * MINUTE)
    assert dims.tracked("principal") == ["a", "b"]  # not a window of "new" is closed yet
    dims.advance(T0 + 13 * MINUTE)
    assert dims.tracked("principal") == ["a", "b", "new"]


def test_keys_with_fewer_than_min_calls_in_the_last_hour_are_not_chosen():
    dims = DimensionAnomalies()  # min_calls=60
    dims.add(columns_of(steady({"busy": 1, "rare": 1}, range(0, 120, 2))))  # 30 calls an hour
    dims.add(columns_of(steady({"busy": 1}, range(1, 120, 2))))  # 60 calls an hour
    dims.advance(T0 + 120 * MINUTE)
    assert dims.tracked("principal") == ["busy"]
    dims.add(columns_of(steady({"rare": 40}, range(120, 121))))
    dims.advance(T0 + 121 * MINUTE)  # 29 + 40 calls in the last hour: chosen, its series from the start
    assert dims.tracked("principal") == ["busy", "rare"]
    rare = dims.scores("principal", T0, T0 + 121 * MINUTE).query("key == 'rare'")
    assert len(rare) == 121 and rare["calls"].iloc[-1] == 40
    assert rare["score"].iloc[-1] == rare["score"].max() > 0


def test_a_key_quiet_for_an_hour_keeps_its_place_while_there_is_room():
    dims = DimensionAnomalies(top_n=2, reselect_every=30, min_calls=1)
    dims.add(columns_of(steady({"a": 3, "b": 1}, range(0, 30))))
    dims.add(columns_of(steady({"a": 3}, range(30, 200))))
    dims.advance(T0 + 30 * MINUTE)
    dims.advance(T0 + 120 * MINUTE)  # b has not called for 90 minutes
    assert dims.tracked("principal") == ["a", "b"]
    b = dims.scores("principal", T0, T0 + 120 * MINUTE).query("key == 'b'")
    assert len(b) == 120 and b["calls"].iloc[30:].eq(0).all()


def test_quiet_windows_are_learned_as_zeros_and_scores_stay_finite():
    minutes = [m for m in range(150) if not 70 <= m < 80]  # a 10-minute silence
    dims = DimensionAnomalies(seed=3)
    dims.add(columns_of(steady({"quiet": 5}, minutes)))
    assert dims.advance(T0 + 150 * MINUTE) == 150  # every window from the first, silent ones too
    scores = dims.scores("principal", T0, T0 + 150 * MINUTE)
    assert len(scores) == 150
    assert scores["calls"].iloc[70:80].tolist() == [0] * 10
    assert all(math.isfinite(s) for s in scores["score"])
    assert scores["score"].iloc[70:80].max() > scores["score"].iloc[100:150].max()  # the silence stands out


def test_a_new_key_scores_zero_until_its_shingle_and_the_forest_warm_up():
    dims = learned(steady({"x": 4}, range(100)), 100)
    scores = dims.scores("principal", T0, T0 + 100 * MINUTE)["score"].tolist()
    # windows 0-8 have no full shingle; krcf answers after 64 points (windows 9-73 learned)
    assert scores[:74] == [0.0] * 74
    assert all(s > 0 for s in scores[74:])


def test_reproducibility():
    frame = stream(minutes=130, burst=("principal", "mallory"))

    def run():
        dims = learned(frame, 125, seed=7)
        return [dims.scores(d, T0, T0 + 130 * MINUTE).values.tolist() for d in DIMENSIONS]

    assert run() == run()


def test_learning_in_steps_gives_the_same_scores_as_at_once():
    frame = stream(minutes=100)
    whole = learned(frame, 100)
    steps = DimensionAnomalies()
    steps.add(columns_of(frame))
    sizes = []
    while size := steps.advance(T0 + 100 * MINUTE, limit=700):
        sizes.append(size)
    assert sizes == [700, 700, 200]  # 16 keys, 100 windows each
    for d in DIMENSIONS:
        assert steps.scores(d, T0, T0 + 100 * MINUTE).equals(whole.scores(d, T0, T0 + 100 * MINUTE))


def test_reading_scores_leaves_the_forests_unchanged():
    frame = stream(minutes=110)
    read, unread = learned(frame, 95), learned(frame, 95)
    provisional = read.scores("service", T0, T0 + 110 * MINUTE)
    assert len(provisional) == 5 * 110
    assert (provisional["score"].iloc[-20:] > 0).all()  # windows after the watermark have provisional scores
    read.top(T0, T0 + 110 * MINUTE)
    read.advance(T0 + 110 * MINUTE)
    unread.advance(T0 + 110 * MINUTE)
    assert read.scores("service", T0, T0 + 110 * MINUTE).equals(unread.scores("service", T0, T0 + 110 * MINUTE))


def test_late_events_land_in_their_window():
    dims = learned(steady({"a": 5}, range(30)), 20)
    dims.add(columns_of(steady({"a": 2}, range(10, 11))))  # late for a learned window
    dims.add(columns_of(steady({"a": 7}, range(25, 26))))  # late for a window not yet learned
    scores = dims.scores("principal", T0, T0 + 30 * MINUTE).set_index("window_start")
    assert scores.loc[ts(T0 + 10 * MINUTE), "calls"] == 7
    assert scores.loc[ts(T0 + 25 * MINUTE), "calls"] == 12
    assert scores.loc[ts(T0 + 11 * MINUTE), "calls"] == 5


def test_windows_older_than_the_retention_are_forgotten():
    dims = DimensionAnomalies(retention_seconds=3600)
    dims.add(columns_of(steady({"a": 2}, range(180))))
    dims.advance(T0 + 180 * MINUTE)
    scores = dims.scores("principal", T0, T0 + 180 * MINUTE)
    assert scores["window_start"].iloc[0] == ts(T0 + 120 * MINUTE)
    assert len(dims._counts["principal"]) == 60
    dims.add(columns_of(steady({"a": 2}, range(100, 101))))  # older than the retention: left out
    assert len(dims._counts["principal"]) == 60
    dims.advance(T0 + 181 * MINUTE)  # dropped in sweeps, but never read past the retention
    assert dims.scores("principal", T0, T0 + 181 * MINUTE)["window_start"].iloc[0] == ts(T0 + 121 * MINUTE)
    assert len(dims._counts["principal"]) <= 61


def test_windows_of_a_backlog_not_learned_yet_score_zero():
    dims = DimensionAnomalies()
    dims.add(columns_of(steady({"a": 2}, range(150))))
    dims.add(columns_of(steady({"a": 5}, range(0, 150, 7))))
    assert dims.advance(T0 + 140 * MINUTE, limit=100) == 100
    scores = dims.scores("principal", T0, T0 + 150 * MINUTE)["score"]
    assert (scores.iloc[80:100] > 0).all()  # learned
    assert (scores.iloc[100:140] == 0).all()  # complete, still to learn
    assert (scores.iloc[140:] > 0).all()  # provisional


def test_events_reach_it_once_through_the_buffer_deduplication():
    records = [make_record(f"e{i}", at(T0 + 20 * i), errorCode="AccessDenied") for i in range(9)]
    buffer, dims = EventBuffer(retention_seconds=None), DimensionAnomalies(min_calls=1)
    dims.observe(records, buffer.append(batch_of(records)).added)
    dims.observe(records, buffer.append(batch_of(records)).added)  # an overlapping re-read
    dims.observe([], None)
    dims.advance(T0 + 3 * MINUTE)
    assert dims.scores("error", T0, T0 + 3 * MINUTE)["calls"].tolist() == [3, 3, 3]
    assert dims.scores("principal", T0, T0 + 3 * MINUTE)["key"].unique().tolist() == ["alice"]


def test_missing_columns_and_unknown_names():
    dims = learned(steady({"s3.amazonaws.com": 3}, range(20), column="eventSource"), 20)
    assert dims.tracked("service") == ["s3.amazonaws.com"]
    assert dims.scores("principal", T0, T0 + 20 * MINUTE).empty
    assert dims.top(T0, T0 + 20 * MINUTE, threshold=1e9).empty
    empty = DimensionAnomalies().top(T0, T0 + 60)
    assert empty.empty and empty.columns.tolist() == ["dimension", "key", "window_start", "score", "calls"]
    with pytest.raises(ValueError, match="unknown dimension"):
        dims.scores("region", T0, T0 + 60)
    with pytest.raises(ValueError, match="unknown anomaly engine"):
        DimensionAnomalies(anomaly_engine="isolation-forest")


def test_the_rrcf_engine_works_too():
    dims = DimensionAnomalies(anomaly_engine="rrcf", trees=5, sample_size=32, shingle_size=4)
    dims.add(columns_of(steady({"a": 3}, range(30))))
    dims.add(columns_of(steady({"a": 2}, range(0, 30, 3))))  # rrcf gives identical points no score
    assert dims.advance(T0 + 30 * MINUTE) == 30
    assert dims.scores("principal", T0, T0 + 30 * MINUTE)["score"].iloc[10:].gt(0).all()


def test_readers_and_the_collector_can_work_at_once():
    frame = stream(minutes=90)
    parts = np.array_split(np.arange(len(frame)), 30)
    dims, errors, done = DimensionAnomalies(), [], threading.Event()

    def read():
        while not done.is_set():
            try:
                dims.top(T0, T0 + 90 * MINUTE)
                dims.scores("principal", T0, T0 + 90 * MINUTE)
            except Exception as error:  # pragma: no cover - reported below
                errors.append(error)

    reader = threading.Thread(target=read)
    reader.start()
    for i, part in enumerate(parts):
        dims.add(columns_of(frame.iloc[part]))
        dims.advance(T0 + 3 * i * MINUTE)
    done.set()
    reader.join()
    assert errors == []


def test_the_docstring_example_runs():
    result = doctest.testmod(metrics.dimensions)
    assert result.attempted > 0 and result.failed == 0
