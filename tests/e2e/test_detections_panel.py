"""The Detections page in Chromium: selecting a hit opens its panel at once, not after some
other widget changes (the table lives in a refreshing fragment, the panel outside it)."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.e2e.conftest import SHOTS
from tests.e2e.test_browser import NEW_PASSWORD, new_page, settle, sign_in


def test_selecting_a_detection_opens_its_panel_at_once(server, browser):
    page = new_page(browser)
    page.goto(server.url)  # the first visit creates admin and logs the one-time password
    page.get_by_label("Username").wait_for()
    password = server.logged_password()
    sign_in(page, server.url, "admin", password)
    page.get_by_label("Current password").fill(password)
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat new password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    settle(page)
    page.wait_for_function("() => document.cookie.includes('account_activity_insights_auth')")
    page.goto(f"{server.url}/detections")
    settle(page)
    expect(page.get_by_role("heading", name="Detections", exact=True)).to_be_visible()
    table = page.locator('[data-testid="stDataFrame"]').first
    table.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    box = table.bounding_box()
    assert page.get_by_role("heading", name="The selected detection").count() == 0
    page.mouse.click(box["x"] + 14, box["y"] + 35 + 17)  # the first row's selection cell
    settle(page)
    expect(page.get_by_role("heading", name="The selected detection")).to_be_visible(timeout=5_000)
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=SHOTS / "detections-selected.png", full_page=True)
