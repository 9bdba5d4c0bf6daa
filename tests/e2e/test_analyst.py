"""What an analyst expects at 1440 px in headless Chromium: the view in the URL (a reload keeps
it, a link opened signed out comes back after sign-in), and the screens they read.

The tests share one server and run in file order, like ``test_browser.py``.
"""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.e2e.conftest import SHOTS
from tests.e2e.test_browser import NEW_PASSWORD, TIMEOUT, change_first_password, settle, sign_in

WIDTH = 1440
expect.set_options(timeout=TIMEOUT)  # a loaded machine renders a page in more than 5 s
shared: dict = {}


def wide_page(browser, cookies=None) -> Page:
    context = browser.new_context(viewport={"width": WIDTH, "height": 1800})
    if cookies:
        context.add_cookies(cookies)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    return page


def test_first_sign_in_at_1440_px(server, browser):
    page = wide_page(browser)
    page.goto(server.url)
    page.wait_for_function("() => /Sign in to Account Activity Insights/.test(document.body.innerText)")
    password = server.logged_password()
    sign_in(page, server.url, "admin", password)
    expect(page.get_by_text("Choose a new password")).to_be_visible()
    settle(page)
    change_first_password(page, password)
    shared["page"] = page
    shared["cookies"] = page.context.cookies()


def test_a_reload_keeps_the_range_and_the_explorer_search(server):
    page: Page = shared["page"]
    page.goto(f"{server.url}/explorer?range=6h&q=hostile-0001")
    settle(page)
    expect(page.get_by_text(re.compile(r"^1 matching event\."))).to_be_visible()
    page.get_by_role("textbox", name="Search").fill("hostile-0002")
    page.keyboard.press("Enter")
    settle(page)
    page.wait_for_function("() => location.search.includes('q=hostile-0002')")
    reloaded = page.url
    page.reload()
    settle(page)
    # CI failed here once (an empty search after the reload) and no rerun here repeated it: the
    # addresses before and after tell whether the browser or the new session lost the search.
    try:
        expect(page.get_by_role("textbox", name="Search")).to_have_value("hostile-0002")
    except AssertionError as error:
        raise AssertionError(f"reloaded {reloaded}, now at {page.url}") from error
    expect(page.get_by_text(re.compile(r"^1 matching event\."))).to_be_visible()
    assert "range=6h" in page.url
    page.screenshot(path=SHOTS / "explorer-1440.png")


def test_a_link_opened_signed_out_comes_back_after_sign_in(server, browser):
    page = wide_page(browser)
    page.goto(f"{server.url}/explorer?q=hostile-0003&range=24h")
    page.wait_for_function("() => /Sign in to Account Activity Insights/.test(document.body.innerText)")
    settle(page)
    # Streamlit says the page is not found while only the sign-in page exists: close that notice.
    page.keyboard.press("Escape")
    page.wait_for_timeout(500)
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    settle(page)
    expect(page.get_by_role("heading", name="Events explorer")).to_be_visible()
    expect(page.get_by_role("textbox", name="Search")).to_have_value("hostile-0003")
    expect(page.get_by_text(re.compile(r"^1 matching event\."))).to_be_visible()
    page.context.close()
