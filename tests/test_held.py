"""Keyed widgets are drawn with the session's value as their default (``ui/held.py``): the
browser falls back on the default whenever it forgot the widget, so the two must agree."""

from __future__ import annotations

import datetime as dt

from streamlit.testing.v1 import AppTest


def _sidebar():
    from ui import view

    view.sidebar(["eu-west-1", "us-east-1", "us-west-2"], ["111111111111", "222222222222"])


def test_the_sidebars_widgets_default_to_what_the_session_holds():
    app = AppTest.from_function(_sidebar)
    app.session_state["view_range"] = "Last 6 hours"
    app.session_state["view_regions"] = ["us-west-2", "eu-west-1"]
    app.session_state["view_accounts"] = ["222222222222", "999999999999"]  # one not held any more
    app.session_state["view_local_time"] = False
    app.run()
    assert not app.exception
    assert app.selectbox(key="view_range").proto.default == 2
    regions = app.multiselect(key="view_regions")
    assert [regions.options[i] for i in regions.proto.default] == ["us-west-2", "eu-west-1"]
    accounts = app.multiselect(key="view_accounts")
    assert [accounts.options[i] for i in accounts.proto.default] == ["222222222222"]
    assert app.toggle(key="view_local_time").proto.default is False


def test_a_custom_ranges_inputs_default_to_the_range_held():
    app = AppTest.from_function(_sidebar)
    app.session_state["view_range"] = "Custom range"
    app.session_state["view_from_day"], app.session_state["view_from_time"] = dt.date(2024, 3, 1), dt.time(9, 30)
    app.session_state["view_to_day"], app.session_state["view_to_time"] = dt.date(2024, 3, 2), dt.time(17, 45)
    app.run()
    assert not app.exception
    assert [d.value for d in app.date_input] == [dt.date(2024, 3, 1), dt.date(2024, 3, 2)]
    assert list(app.date_input[0].proto.default) == ["2024-03-01"]
    assert [t.proto.default for t in app.time_input] == ["09:30", "17:45"]


def test_with_nothing_held_the_widgets_keep_their_usual_defaults():
    app = AppTest.from_function(_sidebar)
    app.run()
    assert app.selectbox(key="view_range").value == "Last hour"
    assert app.selectbox(key="view_range").proto.default == 1
    assert list(app.multiselect(key="view_regions").proto.default) == []
    assert app.toggle(key="view_local_time").value is True
