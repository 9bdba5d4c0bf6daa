from pathlib import Path

import pytest

from settings import SETTINGS, SettingsError, load

README = Path(__file__).parent.parent / "README.md"


def test_defaults_need_no_environment():
    values = load({})
    assert values == {s.name: s.default for s in SETTINGS}
    assert values["source"] == "demo"


def test_values_come_from_insights_variables():
    values = load(
        {"INSIGHTS_RETENTION_HOURS": "6", "INSIGHTS_DEMO_INCIDENTS": "off", "INSIGHTS_ANOMALY_ENGINE": "rrcf"}
    )
    assert values["retention_hours"] == 6.0
    assert values["demo_incidents"] is False
    assert values["anomaly_engine"] == "rrcf"


@pytest.mark.parametrize(
    ("variable", "text", "message"),
    [
        ("INSIGHTS_RETENTION_HOURS", "-1", "positive"),
        ("INSIGHTS_RETENTION_HOURS", "a day", "could not convert"),
        ("INSIGHTS_SCORE_DELAY_SECONDS", "-5", "non-negative"),
        ("INSIGHTS_ANOMALY_ENGINE", "magic", "must be one of"),
        ("INSIGHTS_DEMO_INCIDENTS", "sometimes", "true or false"),
    ],
)
def test_a_bad_value_names_its_variable(variable, text, message):
    with pytest.raises(SettingsError, match=message) as error:
        load({variable: text})
    assert variable in str(error.value)


def test_every_setting_is_documented_in_the_readme():
    readme = README.read_text()
    for setting in SETTINGS:
        assert f"`{setting.variable}`" in readme, setting.variable
