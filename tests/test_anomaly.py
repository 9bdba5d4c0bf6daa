"""The anomaly detectors' contract (after River's detector tests) and the scorer's streaming."""

import doctest

import numpy as np
import pytest

import metrics.anomaly
from metrics.anomaly import ENGINES, SEED_PARAMETERS, AnomalyScorer, make_detector
from metrics.buffer import NS_PER_SECOND
from metrics.engine import Engine
from metrics.windows import iso
from tests.conftest import batch_of, make_record

STEP = 10


def steady_series(n: int, burst_at: int, seed: int = 4) -> list[int]:
    counts = np.random.default_rng(seed).poisson(50, n)
    counts[burst_at] = 400
    return counts.tolist()


def scores_of(detector, series: list[int]) -> list[float]:
    scorer = AnomalyScorer(detector, step=STEP)
    scorer.advance(lambda w: series[w // STEP] if 0 <= w // STEP < len(series) else 0, 0, len(series) * STEP)
    return [scorer.scores[w * STEP] for w in range(len(series))]


class Spy:
    """A detector that records what it is given."""

    def __init__(self):
        self.learned, self.scored = [], []

    def score_one(self, x):
        self.scored.append(list(x))
        return float(sum(x))

    def learn_one(self, x):
        self.learned.append(list(x))


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_score_before_any_learn_is_zero(engine):
    assert make_detector(engine, seed=1).score_one([5.0] * 20) == 0.0


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_score_one_is_pure(engine):
    scored, untouched = make_detector(engine, seed=2), make_detector(engine, seed=2)
    points = [np.full(20, float(v)) for v in np.random.default_rng(0).poisson(30, 60)]
    for point in points:
        scored.learn_one(point)
        untouched.learn_one(point)
    probe = [30.0] * 19 + [90.0]
    first = scored.score_one(probe)
    assert scored.score_one(probe) == first
    assert scored.score_one([0.0] * 20) == untouched.score_one([0.0] * 20)


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_reproducibility(engine):
    series = steady_series(60, 50)

    def run():
        return scores_of(make_detector(engine, seed=9), series)

    assert run() == run()


def test_burst_in_a_steady_series_gets_the_top_score_with_krcf():
    series = steady_series(600, 500)
    scores = scores_of(make_detector("krcf", seed=1), series)
    assert int(np.argmax(scores)) == 500
    assert scores[500] > 2 * np.percentile(scores[100:500], 99)


def test_burst_in_a_steady_series_gets_the_top_scores_with_rrcf():
    series = steady_series(110, 100)  # rrcf is slow: a short series
    scores = scores_of(make_detector("rrcf", seed=1), series)
    # Collusive displacement stays high while the burst is anywhere in the shingle, so the
    # top scores are exactly the windows whose shingle holds it.
    top = set(np.argsort(scores)[-10:].tolist())
    assert top == set(range(100, 110))
    assert min(scores[100:]) > 3 * max(scores[:100])


def test_the_seed_parameters_are_the_default():
    assert SEED_PARAMETERS == {"num_trees": 100, "sample_size": 256, "time_decay": 100_000, "shingle_size": 20}
    forest = make_detector("krcf")
    assert forest.options["num_trees"] == 100
    assert forest.options["sample_size"] == 256
    assert forest.options["lambda"] == pytest.approx(1e-5)
    assert forest.options["dimensions"] == 20


def test_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="unknown anomaly engine"):
        make_detector("isolation-forest")


def test_the_docstring_example_runs():
    result = doctest.testmod(metrics.anomaly)
    assert result.attempted > 0 and result.failed == 0


def test_first_windows_without_a_full_shingle_score_zero_and_are_not_learned():
    spy = Spy()
    series = list(range(1, 31))
    scores = scores_of(spy, series)
    assert scores[:19] == [0.0] * 19
    assert len(spy.learned) == 11
    assert spy.learned[0] == [float(v) for v in series[:20]]  # oldest first


T0 = 1_722_587_400


def test_quiet_windows_go_into_the_forest_as_zeros():
    spy = Spy()
    engine = Engine(retention_seconds=None, detector=spy)
    engine.ingest(batch_of([make_record("a", iso(T0)), make_record("b", iso(T0 + 300))]))
    engine.finish()
    assert len(engine.scorer.scores) == 31  # every window from T0 to T0 + 300
    assert len(spy.learned) == 31 - 19
    assert spy.learned[-1] == [0.0] * 19 + [1.0]


def test_windows_after_the_watermark_are_scored_but_not_learned():
    spy = Spy()
    engine = Engine(retention_seconds=None, detector=spy)
    engine.ingest(batch_of([make_record(f"e{i}", iso(T0 + 10 * i)) for i in range(40)]))
    learned = engine.advance((T0 + 300) * NS_PER_SECOND)
    assert learned == 30
    assert len(spy.learned) == 30 - 19
    frame = engine.metric_frame("AnomalyScore")
    assert len(frame) == 40
    assert len(spy.learned) == 11  # reading provisional scores learned nothing
    assert frame["value"].iloc[-1] == 20.0  # the spy's score: the shingle's sum


def test_advance_can_take_a_backlog_in_steps():
    spy = Spy()
    engine = Engine(retention_seconds=None, detector=spy)
    engine.ingest(batch_of([make_record(f"e{i}", iso(T0 + 10 * i)) for i in range(100)]))
    steps = [engine.advance((T0 + 1000) * NS_PER_SECOND, limit=30) for _ in range(5)]
    assert steps == [30, 30, 30, 10, 0]


def test_provisional_scores_are_recomputed_only_when_their_shingle_or_the_forest_changes():
    spy = Spy()
    engine = Engine(retention_seconds=None, detector=spy)
    engine.ingest(batch_of([make_record(f"e{i}", iso(T0 + 10 * i)) for i in range(40)]))
    engine.advance((T0 + 300) * NS_PER_SECOND)
    engine.metric_frame("AnomalyScore")
    scored = len(spy.scored)
    engine.metric_frame("AnomalyScore")
    assert len(spy.scored) == scored  # nothing changed: nothing scored again
    engine.ingest(batch_of([make_record("late", iso(T0 + 395))]))  # changes windows 390 .. 390+190
    assert engine.metric_frame("AnomalyScore")["value"].iloc[-1] == 21.0
    assert len(spy.scored) == scored + 1
