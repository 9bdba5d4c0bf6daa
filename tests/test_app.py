"""The app on its default, the demo source, through Streamlit's AppTest."""


def test_overview_shows_live_demo_metrics(start_app):
    at = start_app()
    assert not at.exception
    assert at.title[0].value == "Overview"
    assert "Demo data" in at.info[0].value
    tiles = {m.label: m.value for m in at.metric}
    assert list(tiles) == ["API calls, last hour", "Failed calls", "Events in memory", "Delivery lag of newest event"]
    assert int(tiles["Events in memory"].replace(",", "")) > 1000
    assert 0 <= float(tiles["Failed calls"].rstrip("%")) <= 100  # both sums cover the same windows
    assert len(at.get("vega_lite_chart")) == 2
    assert "What happened: the highest-scoring episodes" in [s.value for s in at.subheader]


def test_overview_explains_an_empty_hour(start_app):
    at = start_app(demo_rate="0.000000001", demo_incidents="false")
    assert not at.exception
    assert any("No events yet" in i.value for i in at.info)
    assert not at.get("vega_lite_chart")


def test_invalid_settings_are_explained_not_raised(start_app):
    at = start_app(retention_hours="forever")
    assert not at.exception
    assert "INSIGHTS_RETENTION_HOURS" in at.error[0].value
