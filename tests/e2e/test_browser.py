"""The app in headless Chromium against ``streamlit run``, in the order a first user meets it:
a fresh server, the first sign-in, every page, drill-down, hostile records, logout, throttling.

The tests share one server and run in file order (each builds on the state the previous left).
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import MARK, PAYLOADS, SHOTS

PAGES = {  # url path: (title, charts at least)
    "": ("Overview", 2),
    "services": ("Services", 1),
    "apis": ("APIs", 1),
    "users": ("Users", 1),
    "ips": ("Source IPs", 2),
    "ec2": ("EC2", 1),
    "explorer": ("Events explorer", 0),
    "status": ("Status", 0),
    "detections": ("Detections", 0),
}
NEW_PASSWORD = "a long new passphrase 42"
TIMEOUT = 30_000
shared: dict = {}


def new_page(browser, cookies=None) -> Page:
    context = browser.new_context(viewport={"width": 1400, "height": 2000})
    if cookies:
        context.add_cookies(cookies)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.dialogs = dialogs
    return page


def settle(page: Page) -> None:
    """Waits until Streamlit has finished the current run."""
    page.wait_for_selector('[data-testid="stMain"] [data-testid="stElementContainer"]')
    page.wait_for_timeout(600)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"] button')"
        " && document.querySelectorAll('[data-stale=\"true\"]').length === 0",
        timeout=TIMEOUT,
    )
    page.wait_for_timeout(400)


def no_script_ran(page: Page) -> None:
    assert page.dialogs == []
    for frame in page.frames:
        assert frame.evaluate(f"() => {MARK}") is None, frame.url


ANSWERED = (
    '() => !document.querySelector(\'[data-testid="stForm"] input[aria-label="Username"]\')'
    " || document.querySelector('[data-testid=\"stAlertContentError\"]')"
)


def change_first_password(page: Page, password: str) -> None:
    """Replaces the one-time ``password`` with ``NEW_PASSWORD`` and waits for the Overview and its cookie."""
    page.get_by_label("Current password").fill(password)
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat new password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    settle(page)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    page.wait_for_function("() => document.cookie.includes('account_activity_insights_auth')")


def sign_in(page: Page, url: str, user: str, password: str) -> None:
    page.goto(url)
    settle(page)
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in").click()  # once: the first click always counts (test_first_click)
    page.wait_for_function(ANSWERED)
    settle(page)


def test_a_fresh_server_logs_the_one_time_password_before_anyone_visits(server):
    # Made at the server's start, not by the first visitor's run: the admin reads the password
    # in the log before opening the page, and the first sign-in form waits for no hash.
    assert len(server.logged_password()) >= 12


def test_a_fresh_server_refuses_every_page_url_to_an_anonymous_visitor(server, browser):
    # The first visit of the server's life is a page's address: it is app.py's sign-in form there
    # too, not the page's file run on its own under a list of file names.
    for path in ["services", "apis", "users", "ips", "ec2", "explorer", "status", "overview", ""]:
        page = new_page(browser)
        page.goto(f"{server.url}/{path}")
        expect(page.get_by_role("heading", name="Sign in to Account Activity Insights")).to_be_visible()
        settle(page)
        body = page.inner_text("body")
        assert page.get_by_role("link", name="apis").count() == 0, path
        assert page.locator('[data-testid="stVegaLiteChart"]').count() == 0, path
        assert page.locator('[data-testid="stDataFrame"]').count() == 0, path
        assert "111122223333" not in body and "Events in memory" not in body, path
        page.context.close()


def test_first_sign_in_uses_the_logged_password_and_forces_a_change(server, browser):
    password = server.logged_password()
    page = new_page(browser)
    sign_in(page, server.url, "admin", "not the password")
    expect(page.get_by_text("Wrong user name or password.")).to_be_visible()
    sign_in(page, server.url, "admin", password)
    expect(page.get_by_text("Choose a new password")).to_be_visible()
    assert page.locator('[data-testid="stVegaLiteChart"]').count() == 0
    change_first_password(page, password)
    shared["page"] = page
    shared["cookies"] = page.context.cookies()


def test_a_link_opened_signed_out_shows_the_sign_in_form_at_its_address_then_its_page_and_view(server, browser):
    page = new_page(browser)
    page.goto(f"{server.url}/apis?range=6h")
    expect(page.get_by_role("button", name="Log in")).to_be_visible(timeout=TIMEOUT)
    settle(page)
    assert "Page not found" not in page.inner_text("body")  # the notice Streamlit shows for an unknown page
    assert page.get_by_role("dialog").count() == 0
    assert page.url.startswith(f"{server.url}/apis")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="APIs", exact=True)).to_be_visible(timeout=TIMEOUT)
    settle(page)
    assert "range=6h" in page.url
    expect(page.get_by_text("Top 10 API calls, last 6 hours")).to_be_visible(timeout=TIMEOUT)
    page.context.close()


@pytest.mark.parametrize("path", list(PAGES))
def test_every_page_renders_its_charts_without_an_error(server, path):
    page: Page = shared["page"]
    title, charts = PAGES[path]
    page.goto(f"{server.url}/{path}")  # a new Streamlit session: signed in again by the cookie
    settle(page)
    expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible()
    if charts:
        page.wait_for_function(
            f"() => document.querySelectorAll('[data-testid=\"stVegaLiteChart\"]').length >= {charts}"
        )
    assert page.locator('[data-testid="stException"]').count() == 0
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=SHOTS / f"{path or 'overview'}.png", full_page=True)
    no_script_ran(page)


def test_clicking_a_bar_lists_the_matching_events(server):
    page: Page = shared["page"]
    page.goto(f"{server.url}/apis")
    settle(page)
    chart = page.locator('[data-testid="stVegaLiteChart"]').first
    chart.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    box = chart.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.7, box["y"] + 16)  # the top bar is the widest
    settle(page)
    expect(page.get_by_role("heading", name="Events behind your click")).to_be_visible()
    expect(
        page.get_by_text(
            re.compile(r"^Calls to .+ of .+\.amazonaws\.com, \d{4}-\d\d-\d\d \d\d:\d\d:\d\d to .+ \(UTC\)$")
        )
    ).to_be_visible()
    assert page.locator('[data-testid="stDataFrame"]').count() >= 1
    page.screenshot(path=SHOTS / "apis-drill.png", full_page=True)
    no_script_ran(page)


def test_charts_refresh_in_place_and_keep_what_the_user_opened(server):
    page: Page = shared["page"]  # still on the APIs page, the click's events open
    caption = page.get_by_text(re.compile(r"^Data as of the last poll"))
    before = caption.inner_text()
    page.wait_for_function(
        "(before) => [...document.querySelectorAll('p')].some("
        "p => p.innerText.startsWith('Data as of the last poll') && p.innerText !== before)",
        arg=before,
        timeout=20_000,
    )
    expect(page.get_by_role("heading", name="Events behind your click")).to_be_visible()
    assert page.locator('[data-testid="stVegaLiteChart"]').count() == 1


def test_hostile_strings_are_shown_as_text_and_never_run(server):
    page: Page = shared["page"]
    page.goto(f"{server.url}/explorer")
    settle(page)
    page.get_by_role("textbox", name="Search").fill("hostile-0001")
    page.keyboard.press("Enter")
    settle(page)
    expect(page.get_by_text(re.compile(r"^1 matching event\."))).to_be_visible()
    grid = page.locator('[data-testid="stDataFrame"]').last  # the events table, below the top values
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 12, box["y"] + 35 + 17)  # the row's selection box
    settle(page)
    dialog = page.get_by_role("dialog")  # the record opens in view, over the table
    expect(dialog.get_by_text("Full record")).to_be_visible()
    record = dialog.locator('[data-testid="stJson"]').inner_text()
    for payload in (PAYLOADS["user"], PAYLOADS["userAgent"]):
        assert payload.split("=")[0] in record  # the markup is there, as text
    assert page.locator("b", has_text="bold").count() == 0  # and was not turned into elements
    page.screenshot(path=SHOTS / "explorer-record.png", full_page=True)
    no_script_ran(page)


def test_logout_ends_the_session_and_the_old_cookie_is_refused(server, browser):
    cookies = shared["cookies"]
    before = new_page(browser, cookies)
    before.goto(server.url)
    settle(before)
    expect(before.get_by_role("heading", name="Overview")).to_be_visible()  # the cookie works...
    before.context.close()

    page: Page = shared["page"]
    page.goto(server.url)
    settle(page)
    page.get_by_role("button", name="Log out").click()
    settle(page)
    expect(page.get_by_role("button", name="Log in")).to_be_visible()

    after = new_page(browser, cookies)  # ...until logout: the same cookie, replayed
    after.goto(server.url)
    settle(after)
    expect(after.get_by_role("button", name="Log in")).to_be_visible()
    assert after.locator('[data-testid="stVegaLiteChart"]').count() == 0
    after.goto(f"{server.url}/status")
    settle(after)
    assert "Events in memory" not in after.inner_text("body")
    after.context.close()


def test_repeated_wrong_passwords_are_slowed_down(server, browser):
    page = new_page(browser)
    for _ in range(6):
        sign_in(page, server.url, "admin", "wrong password")
    expect(page.get_by_text(re.compile(r"Too many failed sign-ins\. Try again in \d+ s\."))).to_be_visible()
    sign_in(page, server.url, "admin", NEW_PASSWORD)  # even the right password waits
    expect(page.get_by_text(re.compile(r"Too many failed sign-ins"))).to_be_visible()
    assert page.locator('[data-testid="stVegaLiteChart"]').count() == 0
    page.screenshot(path=SHOTS / "throttled.png", full_page=True)
