import time

from collectors.collector import Collector
from collectors.demo import DemoSource
from metrics.engine import Engine
from metrics.windows import iso
from tests.conftest import make_record

T0 = 1_722_587_400


class ListSource:
    """Serves prepared answers, one per poll; an exception in the list is raised."""

    name = "test"

    def __init__(self, answers):
        self.answers = list(answers)
        self.polls = 0

    def poll(self, now):
        self.polls += 1
        answer = self.answers.pop(0) if self.answers else []
        if isinstance(answer, Exception):
            raise answer
        return answer

    def watermark(self, now):
        return None


def test_a_poll_feeds_the_engine_and_records_health():
    engine = Engine(retention_seconds=None)
    source = ListSource([[make_record("a", iso(T0)), make_record("b", iso(T0 + 5)), {"eventID": "broken"}]])
    collector = Collector(source, engine, clock=lambda: T0 + 65)
    collector.poll_once()
    health = collector.health
    assert len(engine.buffer) == 2
    assert (health.polls, health.events, health.last_batch) == (1, 2, 2)
    assert health.rejects.summary() == [("missing eventTime", 1)]
    assert health.lag_seconds == 60
    assert health.as_dict()["rejected"] == 1


def test_a_failing_poll_is_recorded_retried_and_never_ends_the_thread():
    engine = Engine(retention_seconds=None)
    source = ListSource([RuntimeError("endpoint down"), [make_record("a", iso(T0))]])
    collector = Collector(source, engine, interval=0.01).start()
    deadline = time.time() + 10
    # The health is written once the poll is done, after the events are in the buffer.
    while collector.health.polls < 1 and time.time() < deadline:
        time.sleep(0.01)
    try:
        assert collector.alive
        assert len(engine.buffer) == 1
        assert collector.health.errors == 1
        assert collector.health.last_error == "RuntimeError: endpoint down"
        assert collector.health.consecutive_errors == 0
    finally:
        collector.stop()
    assert not collector.alive


def test_the_demo_source_fills_an_hour_then_the_forest_learns_up_to_its_watermark():
    now = 1_789_948_800 + 14 * 3600
    engine = Engine()
    collector = Collector(DemoSource(seed=1), engine, clock=lambda: now)
    collector.poll_once()
    assert collector.health.events > 5000
    totals = engine.metric_frame("TotalCalls", now - 3600, now, dense_until=now)
    assert len(totals) == 360
    learned_until = engine.scorer.next
    assert learned_until is not None and learned_until <= now - 15 * 60


def test_repeated_failed_polls_log_one_line_each_not_a_traceback_each(caplog, capsys):
    collector = Collector(ListSource([RuntimeError("down")] * 3), Engine())
    for _ in range(3):
        try:
            collector.poll_once(T0)
        except RuntimeError as error:
            collector.record_error(error)
    assert capsys.readouterr().err == ""  # nothing printed past the logging configuration
    messages = [r for r in caplog.records if r.name == "collectors.collector"]
    assert [r.getMessage() for r in messages] == [
        f"poll of test failed ({n} in a row): RuntimeError: down" for n in (1, 2, 3)
    ]
    assert [r.exc_info is not None for r in messages] == [True, False, False]
