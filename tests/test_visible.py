"""Bidi controls in record text are shown as escapes wherever record text is shown."""

import doctest

import pandas as pd

from collectors.alerts import alert_for_hit, slack_payload
from metrics import visible as visible_module
from metrics.detections import Detector
from metrics.visible import visible, visible_frame
from tests.conftest import make_record

RLO = "\u202e"


def test_docstring_examples_hold():
    assert doctest.testmod(visible_module).failed == 0


def test_every_bidi_and_zero_width_control_is_shown_as_its_escape():
    assert visible(f"ad{RLO}nimda") == "ad\\u202enimda"
    assert visible("a\u2066b\u200fc\u200bd") == "a\\u2066b\\u200fc\\u200bd"
    assert visible("ordinary-user@example.com") == "ordinary-user@example.com"


def test_a_displayed_table_shows_escapes_and_keeps_numbers():
    frame = pd.DataFrame({"User": [f"x{RLO}y", None], "Calls": [1, 2], "Read-only": [True, False]})
    shown = visible_frame(frame)
    assert shown["User"][0] == "x\\u202ey" and pd.isna(shown["User"][1])
    assert shown["Calls"].tolist() == [1, 2] and shown["Read-only"].tolist() == [True, False]
    assert frame["User"][0] == f"x{RLO}y"  # the values themselves are untouched


def test_alert_text_shows_bidi_controls_as_escapes():
    record = make_record(
        "rlo-1", "2024-08-02T08:30:00Z", eventSource="cloudtrail.amazonaws.com", eventName="StopLogging"
    )
    record["userIdentity"]["userName"] = f"admin{RLO}gpj.exe"
    record["userIdentity"]["arn"] = f"arn:aws:iam::111122223333:user/admin{RLO}gpj.exe"
    hits = Detector(learning_seconds=0).observe([record])
    assert hits
    payload = str(slack_payload(alert_for_hit(hits[0])))
    assert RLO not in payload
    assert "\\\\u202e" in payload or "\\u202e" in payload
