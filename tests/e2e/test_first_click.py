"""The first click on "Log in" signs in, even when the cookie component's first message comes
right after it (as on a slow start, when the component's frame loads late)."""

from __future__ import annotations

from playwright.sync_api import expect
from streamlit.proto.BackMsg_pb2 import BackMsg

from auth import users
from tests.e2e.test_browser import TIMEOUT, new_page

PASSWORD = "first click passphrase 7"


def _widgets(message) -> list:
    if not isinstance(message, bytes):
        return []
    back = BackMsg()
    try:
        back.ParseFromString(message)
    except Exception:  # not a BackMsg: forwarded as it is
        return []
    return list(back.rerun_script.widget_states.widgets) if back.HasField("rerun_script") else []


def test_one_click_signs_in_when_the_cookie_component_reruns_right_after_it(server, browser):
    def add_user(config):
        entry = users.new_user("quick", PASSWORD)
        entry["must_change_password"] = False
        config["credentials"]["usernames"]["quick"] = entry

    users.update(str(server.folder / "state" / "users.yaml"), add_user, create=True)
    page = new_page(browser)
    held_frames, held = [], {}

    # The cookie component's frame loads only when the test lets it.
    page.route("**/component/**cookie_manager**", lambda frame: held_frames.append(frame))

    def route(ws):
        upstream = ws.connect_to_server()
        upstream.on_message(lambda message: ws.send(message))

        def from_page(message):
            widgets = _widgets(message)
            if any(w.trigger_value for w in widgets):
                held["click"] = message  # sent once the component's message is there too
            elif "click" in held and any(w.HasField("json_value") for w in widgets):
                held["component"] = message
            else:
                upstream.send(message)

        ws.on_message(from_page)
        held["upstream"] = upstream

    page.route_web_socket("**/_stcore/stream", route)
    page.goto(server.url)
    button = page.get_by_role("button", name="Log in")
    expect(button).to_be_visible(timeout=TIMEOUT)
    page.get_by_label("Username").fill("quick")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    button.click()
    page.wait_for_function("() => true")  # let the click's message reach the route
    for frame in held_frames:
        frame.continue_()
    page.route("**/component/**cookie_manager**", lambda r: r.continue_())
    for _ in range(100):
        if "component" in held:
            break
        page.wait_for_timeout(50)
    assert "click" in held and "component" in held, "the test did not see both messages"
    # The reported sequence: the click's run starts, then the component's message reruns it.
    held["upstream"].send(held["click"])
    page.wait_for_timeout(30)
    held["upstream"].send(held["component"])
    expect(page.get_by_role("heading", name="Overview")).to_be_visible(timeout=TIMEOUT)
    page.context.close()
