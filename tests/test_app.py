"""The app in-process through Streamlit's AppTest, on the demo source."""

import contextlib
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from settings import SettingsError
from ui.runtime import runtime

APP = str(Path(__file__).parent.parent / "app.py")


@pytest.fixture
def start_app(monkeypatch):
    """Runs app.py with the given settings; stops its collector afterwards."""

    def start(**settings) -> AppTest:
        monkeypatch.setenv("INSIGHTS_POLL_SECONDS", "3600")  # the first poll is enough
        for name, value in settings.items():
            monkeypatch.setenv(f"INSIGHTS_{name.upper()}", str(value))
        runtime.clear()
        return AppTest.from_file(APP, default_timeout=60).run()

    yield start
    with contextlib.suppress(SettingsError):  # bad settings: the app never started a collector
        runtime().collector.stop()
    runtime.clear()


def test_overview_shows_live_demo_metrics(start_app):
    at = start_app()
    assert not at.exception
    assert at.title[0].value == "Account activity"
    assert "Demo data" in at.info[0].value
    labels = [m.label for m in at.metric]
    assert labels == [
        "API calls, last 10 min",
        "Failed calls, last 10 min",
        "Events in memory",
        "Delivery lag of newest event",
    ]
    assert int(at.metric[2].value.replace(",", "")) > 1000
    failed_share = float(at.metric[1].value.rstrip("%"))
    assert 0 <= failed_share <= 100  # both tiles sum the same windows
    charts = at.get("vega_lite_chart")
    assert len(charts) == 3


def test_overview_explains_an_empty_hour(start_app):
    at = start_app(demo_rate="0.000000001", demo_incidents="false")
    assert not at.exception
    assert any("No events in the last hour yet" in i.value for i in at.info)
    assert not at.get("vega_lite_chart")


def test_invalid_settings_are_explained_not_raised(start_app):
    at = start_app(retention_hours="forever")
    assert not at.exception
    assert "INSIGHTS_RETENTION_HOURS" in at.error[0].value
