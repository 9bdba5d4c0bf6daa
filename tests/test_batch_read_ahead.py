"""``metrics.ingest.read_ahead``, the batch reading's: the next piece is made on a thread, and nothing else changes."""

import threading

import pytest

from metrics.ingest import read_ahead


def test_the_items_come_in_their_order_each_made_on_the_one_reading_thread():
    makers = []

    def items():
        for i in range(50):
            makers.append(threading.current_thread().name)
            yield i

    assert list(read_ahead(items())) == list(range(50))
    assert len(set(makers)) == 1 and makers[0].startswith("read-ahead")
    assert list(read_ahead(iter(()))) == []


def test_an_error_is_raised_at_the_item_it_stopped_after_the_items_before_it():
    def items():
        yield 1
        yield 2
        raise ValueError("a bad piece")

    got = []
    with pytest.raises(ValueError, match="a bad piece"):
        for item in read_ahead(items()):
            got.append(item)
    assert got == [1, 2]


def test_a_caller_that_stops_early_closes_the_items_after_at_most_one_more_is_made():
    made, closed = [], threading.Event()

    def items():
        try:
            for i in range(1000):
                made.append(i)
                yield i
        finally:
            closed.set()

    ahead = read_ahead(items())
    assert [next(ahead), next(ahead)] == [0, 1]
    ahead.close()
    assert closed.is_set() and made in ([0, 1], [0, 1, 2])


def test_it_is_one_ahead_the_next_item_is_made_while_the_caller_holds_this_one():
    started = threading.Event()

    def items():
        yield "first"
        started.set()
        yield "second"

    ahead = read_ahead(items())
    assert next(ahead) == "first"
    assert started.wait(5)  # made before the caller asked for it
    assert list(ahead) == ["second"]
