"""The soak benchmark still runs (a small day, half a minute), with a Chromium session and
websocket sessions side by side; its figures are for people, not assertions."""

import os
import subprocess
import sys

import pytest

from tests.e2e.conftest import ROOT, chromium_path


def test_the_soak_runs_browser_and_websocket_sessions_and_reports_no_error(tmp_path):
    if chromium_path() is None:
        if os.environ.get("INSIGHTS_REQUIRE_BROWSER") == "1":
            pytest.fail("INSIGHTS_REQUIRE_BROWSER=1 but no chromium on PATH (apt-get install chromium)")
        pytest.skip("no chromium on PATH")
    command = [sys.executable, "-m", "bench.soak", "--events", "2000", "--sessions", "2", "--browsers", "1"]
    command += ["--minutes", "0.4", "--rate", "5", "--folder", str(tmp_path)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = {}
    for line in result.stdout.splitlines():
        name, _, value = line.strip().rpartition(" ")
        figures[name.strip()] = value
    assert figures["websocket sessions that failed"] == "0", result.stdout
    assert int(figures["fragment runs websocket sessions, during the soak"]) >= 1, result.stdout
    assert "fragment p95 s websocket sessions, during the soak" in figures, result.stdout
    assert figures["exceptions on the pages"] == "0" and figures["tracebacks in the server log"] == "0"


def test_the_start_up_benchmark_times_the_sign_in_form_drawn_in_chromium(tmp_path):
    if chromium_path() is None:
        if os.environ.get("INSIGHTS_REQUIRE_BROWSER") == "1":
            pytest.fail("INSIGHTS_REQUIRE_BROWSER=1 but no chromium on PATH (apt-get install chromium)")
        pytest.skip("no chromium on PATH")
    command = [sys.executable, "-m", "bench.startup", "--sign-in-form", "2", "--browser", "--events", "2000"]
    command += ["--folder", str(tmp_path)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count(", app: sign-in form drawn") == 2, result.stdout
    assert result.stdout.count(", bare form: sign-in form drawn") == 2, result.stdout
    assert "median sign-in form drawn: app" in result.stdout and "bare Streamlit form" in result.stdout
