"""The forest of a batch run learns in its own process while the events are read, and its
scores are exactly those of a forest that learned the final series: whatever order the events
came in, however wrong its guesses of which windows were complete."""

import random

import numpy as np
import pytest

from metrics import batch_forest
from metrics.anomaly import AnomalyScorer, make_detector
from metrics.batch_forest import BatchForest, _Learner
from metrics.engine import Engine
from metrics.ingest import feed
from metrics.normalise import Rejects
from metrics.output import csv_bytes
from tests.conftest import make_record

STEP = 10
START = 1_722_587_400


def final_scores(first: int, series: list[int]) -> list[float]:
    """What ``Engine.finish()`` gives: one forest learning the final series in time order."""
    scorer = AnomalyScorer(make_detector("krcf", 0), step=STEP)
    totals = {first + i * STEP: v for i, v in enumerate(series)}
    scorer.advance(lambda w: totals.get(w, 0), first, first + len(series) * STEP)
    return [scorer.scores[first + i * STEP] for i in range(len(series))]


def a_series(length: int, seed: int = 3) -> list[int]:
    values = np.random.default_rng(seed).poisson(20, length)
    values[length // 2] = 400  # a burst, so that scores differ clearly
    return values.tolist()


@pytest.fixture
def small_checkpoints(monkeypatch):
    monkeypatch.setattr(batch_forest, "CHECKPOINT_WINDOWS", 8)
    monkeypatch.setattr(batch_forest, "MAX_CHECKPOINTS", 3)


def learned(series: list[int], offered: list[int], first: int = START) -> list[float]:
    learner = _Learner("krcf", 0, STEP)
    learner.first, learner.series = first, list(offered)
    learner.learn()
    return learner.final(first, np.array(series, dtype=np.int64))


def test_a_forest_that_guessed_right_keeps_its_scores(small_checkpoints):
    series = a_series(120)
    assert learned(series, series[:100]) == final_scores(START, series)


@pytest.mark.parametrize("changed", [0, 5, 37, 64, 99])
def test_a_window_that_changed_after_it_was_learned_sends_the_forest_back_to_a_checkpoint(small_checkpoints, changed):
    series = a_series(120)
    offered = list(series[:100])
    offered[changed] -= 1  # a late event arrived in this window after the forest learned it
    assert learned(series, offered) == final_scores(START, series)


def test_an_event_before_the_first_window_offered_starts_the_forest_again(small_checkpoints):
    series = a_series(120)
    assert learned(series, series[3:100], first=START + 3 * STEP) == final_scores(START, series)


def test_checkpoints_stay_few_however_long_the_series(small_checkpoints):
    learner = _Learner("krcf", 0, STEP)
    learner.first, learner.series = START, a_series(200)
    learner.learn()
    assert len(learner.checkpoints) <= 3
    assert [done for done, _ in learner.checkpoints] == sorted(done for done, _ in learner.checkpoints)


class Totals:
    """The part of an engine's TotalCalls state the reader's side reads."""

    def __init__(self):
        self.counts: dict[int, int] = {}
        self.first = self.last = None

    def add(self, window: int, n: int = 1) -> None:
        self.counts[window] = self.counts.get(window, 0) + n
        self.first = window if self.first is None else min(self.first, window)
        self.last = window if self.last is None else max(self.last, window)

    def total(self, window: int) -> int:
        return self.counts.get(window, 0)


def fed_through_the_worker(windows: list[int], piece: int) -> tuple[list[float], Totals, BatchForest]:
    totals, forest = Totals(), BatchForest("krcf", step=STEP)
    try:
        for start in range(0, len(windows), piece):
            part = windows[start : start + piece]
            for window in part:
                totals.add(window)
            forest.offer(totals, min(part) * 10**9, max(part) * 10**9)
        forest.send_final(totals)
        return forest.scores(), totals, forest
    finally:
        forest.close()


def test_the_worker_scores_time_ordered_input_as_one_forest_would():
    # Two hours of events, a few per window, in time order: offered as the reading goes.
    rng = random.Random(1)
    windows = sorted(START + STEP * rng.randrange(720) for _ in range(3000))
    scores, totals, forest = fed_through_the_worker(windows, 250)
    series = [totals.total(w) for w in range(totals.first, totals.last + 1, STEP)]
    assert forest.sent is not None and forest.ordered
    assert scores == final_scores(totals.first, series)


def test_the_worker_scores_shuffled_input_as_one_forest_would():
    rng = random.Random(2)
    windows = sorted(START + STEP * rng.randrange(720) for _ in range(3000))
    # Ordered for a while, then an account's events from the start again (the S3 layout).
    windows = windows[:1500] + windows[:1500]
    scores, totals, forest = fed_through_the_worker(windows, 250)
    series = [totals.total(w) for w in range(totals.first, totals.last + 1, STEP)]
    assert not forest.ordered
    assert scores == final_scores(totals.first, series)


def test_a_worker_that_fails_gives_no_scores_and_says_why():
    totals, forest = Totals(), BatchForest("no-such-forest", step=STEP)
    totals.add(START)
    forest.send_final(totals)
    assert forest.scores() is None
    assert "exit status" in forest.failure
    forest.close()


def lines_file(tmp_path, records) -> str:
    import orjson

    path = tmp_path / "records.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return str(path)


def test_counting_without_holding_events_gives_every_metric_of_an_ingest(tmp_path, monkeypatch):
    monkeypatch.setattr("metrics.ingest.COUNT_PIECE_RECORDS", 7)
    rng = random.Random(5)
    records = []
    for i in range(60):
        second = START + rng.randrange(600)
        time = f"2024-08-02T{second // 3600 % 24:02d}:{second // 60 % 60:02d}:{second % 60:02d}Z"
        fields = {"eventSource": rng.choice(["ec2.amazonaws.com", "s3.amazonaws.com"])}
        if rng.random() < 0.3:
            fields["errorCode"] = "AccessDenied"
        records.append(make_record(f"id-{i}", time, **fields))
    # Duplicates within a piece and across pieces, one with other content: the first one read wins.
    records += [records[3], records[40], make_record("id-1", "2024-08-02T08:35:00Z", eventSource="x.amazonaws.com")]
    path = lines_file(tmp_path, records)

    held, counted = Engine(retention_seconds=None), Engine(retention_seconds=None)
    by_ingest = feed(held, [path], Rejects())
    by_counting = feed(counted, [path], Rejects(), hold=False)
    assert (by_counting.added, by_counting.duplicates) == (by_ingest.added, by_ingest.duplicates) == (60, 3)
    assert len(counted.buffer) == 0
    for name in held.states:
        assert csv_bytes(counted.metric_frame(name)) == csv_bytes(held.metric_frame(name)), name


def test_the_ingest_hook_sees_the_span_of_each_piece(tmp_path, monkeypatch):
    import orjson

    monkeypatch.setattr("metrics.ingest.COUNT_PIECE_RECORDS", 4)
    for part, seconds in enumerate([(0, 4), (4, 8), (8, 10)]):
        records = [make_record(f"id-{i}", f"2024-08-02T08:30:{i:02d}Z") for i in range(*seconds)]
        (tmp_path / f"part-{part}.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    spans = []
    feed(Engine(retention_seconds=None), [tmp_path], Rejects(), hold=False, after_ingest=lambda *s: spans.append(s))
    assert [(low // 10**9 - START, high // 10**9 - START) for low, high in spans] == [(0, 3), (4, 7), (8, 9)]


def test_the_command_writes_the_same_bytes_for_shuffled_input_as_the_engine_does_in_one_process(tmp_path, monkeypatch):
    import io
    import sys

    from metrics.__main__ import main
    from metrics.output import write_csv

    rng = random.Random(7)
    records = []
    for i in range(1500):
        second = rng.randrange(2 * 3600)
        time = f"2024-08-02T{8 + second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}Z"
        records.append(make_record(f"id-{i}", time))
    records.sort(key=lambda r: r["eventTime"])
    engine = Engine(retention_seconds=None)
    feed(engine, [lines_file(tmp_path, records)], Rejects())
    expected = io.BytesIO()
    write_csv(engine, expected)  # the forest on a thread, from the final series only

    monkeypatch.setattr("metrics.ingest.PIECE_RECORDS", 100)  # many pieces, many offers
    monkeypatch.setattr("metrics.ingest.COUNT_PIECE_RECORDS", 100)
    sent = []
    send = BatchForest._send
    monkeypatch.setattr(BatchForest, "_send", lambda self, kind, *rest: sent.append(kind) or send(self, kind, *rest))
    for order in ("sorted", "shuffled"):
        if order == "shuffled":
            rng.shuffle(records)
        path = lines_file(tmp_path, records)
        out = io.TextIOWrapper(io.BytesIO())
        monkeypatch.setattr(sys, "stdout", out)
        assert main([path]) == 0
        out.flush()
        assert out.buffer.getvalue() == expected.getvalue(), order
        assert sent[-1] == b"F"
        if order == "sorted":
            assert sent.count(b"O") > 3 and b"U" not in sent
        else:
            assert b"U" in sent
        sent.clear()
