"""A link's view is applied until a signed-in run reaches its end."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ui import link, view


class _Params(dict):
    def get_all(self, name):
        return list(self.get(name, []))

    def from_dict(self, params):
        self.clear()
        self.update({k: v if isinstance(v, list) else [v] for k, v in params.items()})


@pytest.fixture
def fake_st(monkeypatch):
    fake = SimpleNamespace(session_state={}, query_params=_Params(), switch_page=lambda *a, **k: None)
    monkeypatch.setattr(link, "st", fake)
    monkeypatch.setattr(view, "browser_zone", lambda: "UTC")
    return fake


def test_a_run_stopped_before_its_end_applies_the_link_again(fake_st):
    state = fake_st.session_state
    state[link.WANTED] = ("apis", {"range": ["6h"]}, 0)
    link.apply_request({"apis": object()}, "apis")
    assert state["view_range"] == "Last 6 hours"
    del state["view_range"]  # what a run cut short by a queued rerun left of it
    link.apply_request({"apis": object()}, "apis")
    assert state["view_range"] == "Last 6 hours"
    link.write("apis")  # the run's end
    assert link.WANTED not in state and state["link_applied"]
    assert fake_st.query_params == {"range": ["6h"]}
    state["view_range"] = "Last 24 hours"  # the analyst's own choice from then on
    link.apply_request({"apis": object()}, "apis")
    assert state["view_range"] == "Last 24 hours"


def test_a_page_that_always_stops_early_does_not_pin_the_links_view(fake_st):
    state = fake_st.session_state
    state[link.WANTED] = ("apis", {"range": ["6h"]}, 0)
    for _ in range(link.APPLY_TRIES):
        link.apply_request({"apis": object()}, "apis")
    state["view_range"] = "Last 24 hours"
    link.apply_request({"apis": object()}, "apis")  # given up: the choice stays
    assert state["view_range"] == "Last 24 hours" and link.WANTED not in state
