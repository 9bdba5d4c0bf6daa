"""Nothing cut off at 1440 px in headless Chromium: no table wider than its place (the grid
would scroll sideways and hide its last column), no metric label or caption ellipsised, on the
Overview with a custom range of dates, on the explorer with its top values and on the Users
page's sessions table.

The tests share one server and run in file order.
"""

from __future__ import annotations

import re
import time

from playwright.sync_api import Page, expect

from tests.e2e.conftest import ROOT, SHOTS
from tests.e2e.test_browser import TIMEOUT, change_first_password, settle, sign_in

WIDTH = 1440
expect.set_options(timeout=TIMEOUT)
shared: dict = {}

# Per element: whether its content is wider than its box. A data grid's scroller overflows
# sideways when its columns are wider than the table; a label overflows when it is ellipsised.
CLIPPED = """() => {
  const out = [];
  for (const grid of document.querySelectorAll('[data-testid="stDataFrame"] .dvn-scroller')) {
    if (grid.scrollWidth > grid.clientWidth + 1) out.push('table: ' + grid.scrollWidth + ' > ' + grid.clientWidth);
  }
  for (const label of document.querySelectorAll('[data-testid="stMetricLabel"] *, [data-testid="stMetricValue"] *')) {
    if (label.children.length === 0 && label.scrollWidth > label.clientWidth + 1) out.push('label: ' + label.innerText);
  }
  return out;
}"""


# Per text in the named column of the first grid that has it: its width in the grid's cell font.
CELL_WIDTHS = """(column) => {
  const context = document.createElement('canvas').getContext('2d');
  context.font = '14px "Source Sans", sans-serif';
  for (const grid of document.querySelectorAll('[data-testid="stDataFrame"]')) {
    const heads = [...grid.querySelectorAll('th')].map(h => h.textContent);
    const at = heads.indexOf(column);
    if (at < 0) continue;
    const out = {};
    for (const row of grid.querySelectorAll('tbody tr')) {
      const cell = row.querySelectorAll('td')[at];
      if (cell) out[cell.textContent] = context.measureText(cell.textContent).width;
    }
    return out;
  }
  return {};
}"""
CELL_PADDING = 8  # the grid's horizontal padding on each side of a cell's text


def test_sign_in_at_1440_px(server, browser):
    context = browser.new_context(viewport={"width": WIDTH, "height": 1600})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    page.goto(server.url)
    page.wait_for_function("() => /Sign in to Account Activity Insights/.test(document.body.innerText)")
    password = server.logged_password()  # written when the first page asks for it
    sign_in(page, server.url, "admin", password)
    expect(page.get_by_text("Choose a new password")).to_be_visible()
    settle(page)
    change_first_password(page, password)
    shared["page"] = page


def test_the_overview_tiles_show_a_custom_range_of_dates_uncut(server):
    page: Page = shared["page"]
    end = int(time.time()) // 60 * 60
    page.goto(f"{server.url}/?range=custom&start={_iso(end - 26 * 3600)}&end={_iso(end)}")
    settle(page)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.get_by_text("API calls, ")).to_be_visible()
    page.wait_for_timeout(1000)  # the grids lay out their columns after they appear
    page.screenshot(path=SHOTS / "overview-custom-1440.png", full_page=True)
    assert page.evaluate(CLIPPED) == []


def test_the_explorer_table_and_its_top_values_show_every_column_uncut(server):
    page: Page = shared["page"]
    page.goto(f"{server.url}/explorer?range=1h")
    settle(page)
    expect(page.get_by_text("Top values of the matches")).to_be_visible()
    expect(page.locator('[data-testid="stDataFrame"]').first).to_be_visible()
    page.wait_for_timeout(1000)  # the grids lay out their columns after they appear
    page.screenshot(path=SHOTS / "explorer-columns-1440.png", full_page=True)
    assert page.evaluate(CLIPPED) == []


def test_the_users_sessions_table_shows_every_column_uncut_over_a_day(server):
    page: Page = shared["page"]
    page.goto(f"{server.url}/users?range=24h")  # first and last calls with their dates
    settle(page)
    expect(page.get_by_role("heading", name="Sessions of the top users")).to_be_visible()
    expect(page.locator('[data-testid="stDataFrame"]').first).to_be_visible()
    page.wait_for_timeout(1000)  # the grids lay out their columns after they appear
    page.screenshot(path=SHOTS / "users-sessions-1440.png", full_page=True)
    assert page.evaluate(CLIPPED) == []
    # The grid draws on a canvas, which cuts a long cell without a sign: each name as shown (the
    # grid's hidden accessible table holds the text) must fit its column, measured in its font.
    source = (ROOT / "pages" / "users.py").read_text()
    for column in ("User", "Session"):
        width = int(re.search(rf'TextColumn\("{column}", width=(\d+)', source)[1])
        widths = page.evaluate(CELL_WIDTHS, column)
        assert widths and max(widths.values()) + 2 * CELL_PADDING <= width, (column, widths)


def _iso(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def test_a_drag_across_the_overview_chart_zooms_every_page_to_that_range(server):
    page: Page = shared["page"]
    page.goto(f"{server.url}/?range=1h")
    settle(page)
    expect(page.get_by_role("heading", name="API calls and anomaly score")).to_be_visible()
    chart = page.locator('[data-testid="stVegaLiteChart"]').first
    expect(chart).to_be_visible()
    page.wait_for_timeout(1000)  # Vega draws after the element appears
    box = chart.bounding_box()
    y = box["y"] + box["height"] * 0.4
    page.mouse.move(box["x"] + box["width"] * 0.35, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=8)
    page.mouse.move(box["x"] + box["width"] * 0.65, y, steps=8)
    page.mouse.up()
    settle(page)
    page.wait_for_function("() => location.search.includes('range=custom')")
    chosen = page.get_by_role("combobox", name="Time range")
    expect(chosen).to_match_aria_snapshot('- combobox "Time range": Custom range')
    page.get_by_role("link", name="APIs").click()  # every page: the range goes with the session
    settle(page)
    expect(page.get_by_role("heading", name="APIs")).to_be_visible()
    expect(chosen).to_match_aria_snapshot('- combobox "Time range": Custom range')
    assert "range=custom" in page.url
