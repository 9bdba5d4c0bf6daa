"""In a browser: a keyed widget keeps the session's value after a run that ended without it.

Streamlit's browser forgets a widget missing from a finished run and, when it comes back,
draws its default and sends that at the next rerun. A script with the app's ``ui.held``
defaults, whose second button stops a run before the widget, shows that the value survives.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ROOT, free_port

SCRIPT = textwrap.dedent(
    """
    import streamlit as st
    from ui import held

    state = st.session_state
    state.setdefault("choice", "B")
    if st.button("Set C"):
        state["choice"] = "C"
    st.button("Rerun")
    if st.button("Stop before the widget"):
        st.stop()
    options = ["A", "B", "C"]
    st.selectbox("Choice", options, index=held.index("choice", options), key="choice")
    st.multiselect("Several", options, default=held.chosen("several", options), key="several")
    st.write(f"held: {state['choice']} / {', '.join(state['several'])}")
    """
)


@pytest.fixture(scope="module")
def script_url(tmp_path_factory):
    folder = tmp_path_factory.mktemp("held")
    (folder / "script.py").write_text(SCRIPT)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(folder / "script.py"), "--server.port", str(port)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).close()
            break
        except OSError:
            time.sleep(0.3)
    yield url
    process.terminate()
    process.wait(10)


def test_a_widget_keeps_the_sessions_value_after_a_run_without_it(script_url, browser):
    page = browser.new_page()
    page.goto(script_url)
    page.get_by_role("button", name="Set C").click()
    expect(page.get_by_text("held: C /")).to_be_visible(timeout=20_000)
    page.get_by_role("combobox", name="Several").click()
    page.get_by_role("option", name="A", exact=True).click()
    page.keyboard.press("Escape")
    expect(page.get_by_text("held: C / A")).to_be_visible(timeout=20_000)
    page.get_by_role("button", name="Stop before the widget").click()
    expect(page.get_by_role("combobox", name="Choice")).to_have_count(0, timeout=20_000)
    page.get_by_role("button", name="Rerun").click()  # the widgets again, nothing set through the session
    expect(page.get_by_role("combobox", name="Choice")).to_match_aria_snapshot('- combobox "Choice": C')
    expect(page.get_by_test_id("stMultiSelect")).to_contain_text("A")
    page.get_by_role("button", name="Rerun").click()  # the browser sends what it shows
    expect(page.get_by_text("held: C / A")).to_be_visible(timeout=20_000)
    page.wait_for_timeout(500)
    assert page.get_by_text("held: C / A").count() == 1
    page.close()
