"""One click on "Log in" signs in, even when the cookie component's message comes right after the
click, as on a slow start.

The cookie component (extra-streamlit-components' CookieManager, which streamlit-authenticator
renders on every run) sends its value once its frame has loaded, and that message starts a new run.
On a slow start the frame loads late: the click's run has begun when the component's message
arrives, the click's run is cut short before it reads the button, and the new run sees the button
unclicked. The test makes that order certain: it holds the component's frames until after the
click, holds the click's message and the component's next one, then sends them 30 ms apart.
"""

from __future__ import annotations

import time

from playwright.sync_api import expect
from streamlit.proto.BackMsg_pb2 import BackMsg

from tests.e2e.test_browser import TIMEOUT, new_page

COMPONENT_FRAMES = "**/component/**cookie_manager**"
GAP_MS = 30  # the click's run starts, then the component's message reruns it (issue: 88 ms apart)


def _reruns(message) -> bool:
    if not isinstance(message, bytes):
        return False
    back = BackMsg()
    try:
        back.ParseFromString(message)
    except Exception:  # not a BackMsg: forwarded as it is
        return False
    return back.HasField("rerun_script")


def _clicks(message) -> bool:
    back = BackMsg()
    back.ParseFromString(message)
    return any(widget.trigger_value for widget in back.rerun_script.widget_states.widgets)


class SlowComponent:
    """Between the page and the server: the cookie component's frames load only when let, and
    the click's rerun and the next one are held until ``replay``."""

    def __init__(self, page):
        self.page = page
        self.frames: list = []
        self.holding = True
        self.held: dict = {}
        self.upstream = None
        page.route(COMPONENT_FRAMES, self._frame)
        page.route_web_socket("**/_stcore/stream", self._socket)

    def _frame(self, route):
        if self.holding:
            self.frames.append(route)
        else:
            route.continue_()

    def _socket(self, ws):
        upstream = ws.connect_to_server()
        upstream.on_message(lambda message: ws.send(message))
        self.upstream = upstream

        def from_page(message):
            if "click" not in self.held and _reruns(message) and _clicks(message):
                self.held["click"] = message
            elif "click" in self.held and "component" not in self.held and _reruns(message):
                self.held["component"] = message
            else:
                upstream.send(message)

        ws.on_message(from_page)

    def release(self) -> None:
        self.holding = False
        for frame in self.frames:
            frame.continue_()
        self.frames = []

    def click_then_component(self, button) -> None:
        """Clicks once, lets the component's frames load, then replays the click's rerun and,
        ``GAP_MS`` later, the component's. Frames the runs after it render wait again."""
        self.held = {}
        button.click()
        deadline = time.monotonic() + 10
        while "click" not in self.held and time.monotonic() < deadline:
            self.page.wait_for_timeout(20)
        assert "click" in self.held, "the click's rerun did not reach the test"
        self.release()
        while "component" not in self.held and time.monotonic() < deadline:
            self.page.wait_for_timeout(20)
        assert "component" in self.held, "the cookie component sent nothing after the click"
        self.holding = True
        self.upstream.send(self.held["click"])
        self.page.wait_for_timeout(GAP_MS)
        self.upstream.send(self.held["component"])


def test_one_click_signs_in_when_the_cookie_component_reruns_right_after_it(server, browser):
    page = new_page(browser)
    slow = SlowComponent(page)
    page.goto(server.url)
    button = page.get_by_role("button", name="Log in")
    expect(button).to_be_visible(timeout=TIMEOUT)
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password", exact=True).fill(server.logged_password())
    slow.click_then_component(button)
    expect(page.get_by_text("Choose a new password")).to_be_visible(timeout=TIMEOUT)
    slow.release()
    page.context.close()
