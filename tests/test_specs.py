"""Chart specs shared between sessions: built once for equal arguments, never for unequal ones."""

import threading
import time

import pandas as pd
import pytest

from ui import charts, specs
from ui.specs import SharedSpecs, Spec, fingerprint
from ui.view import View


def utc_view(zone: str = "UTC") -> View:
    return View("1h", None, (), (), zone)


def frame(values) -> pd.DataFrame:
    times = pd.to_datetime([1722587400 + 10 * i for i in range(len(values))], unit="s", utc=True)
    return pd.DataFrame(
        {"metric": "TotalCalls", "window_start": times, "category": "", "subcategory": "", "value": values}
    )


@pytest.fixture
def fresh(monkeypatch):
    cache = SharedSpecs()
    monkeypatch.setattr(specs, "SPECS", cache)
    return cache


def test_a_shared_spec_is_what_streamlit_would_send_for_the_chart_and_equal_arguments_reuse_it(fresh):
    totals, scores = frame([3, 0, 5]), frame([0.5, 2.5, 0.0])
    options = dict(threshold=1.8, step=10, span=(1722587400, 1722587430), wall=utc_view().wall)
    first = specs.shared(charts.activity, totals, scores, **options)
    again = specs.shared(charts.activity, totals.copy(), scores.copy(), **options)
    assert again is first and (fresh.built, fresh.reused) == (1, 1)
    assert first == specs.spec_of(charts.activity(totals, scores, **options))
    assert first.zoomable and isinstance(next(iter(first.spec["datasets"].values())), bytes)  # Arrow, as sent


@pytest.mark.parametrize(
    "change",
    [
        lambda a: {**a, "totals": frame([3, 0, 6])},  # one value
        lambda a: {**a, "totals": frame([3, 0, 5]).astype({"value": "float64"})},  # its type
        lambda a: {**a, "totals": frame([3, 0, 5]).rename(columns={"category": "kind"})},  # a column
        lambda a: {**a, "totals": frame([3, 0, 5]).set_axis([1, 2, 3])},  # the index
        lambda a: {**a, "threshold": 1.9},
        lambda a: {**a, "span": (1722587400, 1722587440)},
        lambda a: {**a, "wall": utc_view("Europe/Paris").wall},  # another zone's clock
        lambda a: {**a, "detections": pd.DataFrame({"when": [], "severity": [], "title": []})},
    ],
)
def test_any_difference_in_the_arguments_builds_the_chart_again(fresh, change):
    base = dict(totals=frame([3, 0, 5]), scores=frame([0.5, 2.5, 0.0]), threshold=1.8, span=(1722587400, 1722587430))
    base["wall"] = utc_view().wall
    specs.shared(charts.activity, **base)
    specs.shared(charts.activity, **change(base))
    assert (fresh.built, fresh.reused) == (2, 0)


def test_a_value_it_cannot_fingerprint_leaves_the_chart_unshared(fresh):
    odd = pd.DataFrame({"category": [["a", "b"]], "value": [1]})  # a list in a cell
    with pytest.raises(TypeError):
        fingerprint(odd)
    with pytest.raises(TypeError):
        fingerprint(object())
    built = specs.shared(lambda frame: charts.top_bars(frame.assign(category="a"), "category", "User"), odd)
    assert isinstance(built, Spec) and (fresh.built, fresh.reused) == (0, 0)


def test_sessions_asking_at_once_wait_for_one_build_and_a_failed_build_is_not_kept():
    cache, calls, started = SharedSpecs(), [], threading.Event()

    def slow():
        calls.append(1)
        started.set()
        time.sleep(0.2)
        return Spec({"mark": "bar"}, False)

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get(("k",), slow))) for _ in range(4)]
    threads[0].start()
    started.wait()
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len({id(r) for r in results}) == 1

    def broken():
        raise ValueError("no chart")

    with pytest.raises(ValueError):
        cache.get(("bad",), broken)
    assert cache.get(("bad",), slow).spec == {"mark": "bar"}  # built again, not the failure kept


def test_only_the_latest_specs_are_kept():
    cache = SharedSpecs(kept=2)
    for key in ("a", "b", "a", "c"):
        cache.get((key,), lambda: Spec({}, False))
    cache.get(("b",), lambda: Spec({}, False))  # the least recently used, dropped for c
    assert (cache.built, cache.reused) == (4, 1)
