"""One click on "Log in" signs in, one on "Change password" changes it, and one on "Log out" logs
out, even when another rerun request comes right after the click (the cookie component's, as on a
slow start).

The cookie component (extra-streamlit-components' CookieManager, which streamlit-authenticator
renders on every run) sends its value once its frame has loaded, and that message starts a new run.
On a slow start the frame loads late: the click's run has begun when the component's message
arrives, the click's run is cut short before it reads the button, and the new run sees the button
unclicked. The test makes that order certain: it holds the component's frames until after the
click, holds the click's message and the component's next one, then sends them back to back. The
sign-in of 3c38c07 lost a click in 3 of 4 runs that way (Streamlit's fastReruns stopped the
click's run, or the run yielded to the next request before it applied the click: ui/server.py).

On the Overview no component sends anything after "Log out": the click's own message, without
its trigger, stands in for it. That step checks the log-out's form box; it does not catch the old
``st.button`` log-out, which passed it in 2 of 2 runs (the two requests merged before the run).
"""

from __future__ import annotations

import time

from playwright.sync_api import expect
from streamlit.proto.BackMsg_pb2 import BackMsg

from tests.e2e.test_browser import NEW_PASSWORD, TIMEOUT, new_page

COMPONENT_FRAMES = "**/component/**cookie_manager**"


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
        right behind it, the component's. Frames the runs after it render wait again."""
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
        self.upstream.send(self.held["component"])

    def click_then_rerun(self, button) -> None:
        """Clicks once, then sends the click's rerun and, right behind it, the same rerun without
        the click, as any other message would be."""
        self.held = {}
        button.click()
        deadline = time.monotonic() + 10
        while "click" not in self.held and time.monotonic() < deadline:
            self.page.wait_for_timeout(20)
        assert "click" in self.held, "the click's rerun did not reach the test"
        plain = BackMsg()
        plain.ParseFromString(self.held["click"])
        for widget in plain.rerun_script.widget_states.widgets:
            if widget.trigger_value:
                widget.trigger_value = False
        self.upstream.send(self.held["click"])
        self.upstream.send(plain.SerializeToString())


def test_one_click_signs_in_changes_the_password_and_logs_out_when_another_rerun_follows_it(server, browser):
    page = new_page(browser)
    slow = SlowComponent(page)
    page.goto(server.url)
    button = page.get_by_role("button", name="Log in")
    expect(button).to_be_visible(timeout=TIMEOUT)
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password", exact=True).fill(server.logged_password())
    slow.click_then_component(button)
    expect(page.get_by_text("Choose a new password")).to_be_visible(timeout=TIMEOUT)

    # The cookie component that writes the login's cookie, rendered with this form, loads late too.
    change = page.get_by_role("button", name="Change password")
    expect(change).to_be_visible()
    page.get_by_label("Current password").fill(server.logged_password())
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat new password").fill(NEW_PASSWORD)
    slow.click_then_component(change)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible(timeout=TIMEOUT)
    slow.release()
    # The login's cookie reached the browser: a reload is still signed in.
    page.wait_for_function("() => document.cookie.includes('account_activity_insights_auth')", timeout=TIMEOUT)

    slow.click_then_rerun(page.get_by_role("button", name="Log out"))
    expect(page.get_by_role("button", name="Log in")).to_be_visible(timeout=TIMEOUT)
    page.wait_for_function("() => !document.cookie.includes('account_activity_insights_auth')", timeout=TIMEOUT)
    page.context.close()
