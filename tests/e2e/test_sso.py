"""Single sign-on end to end, offline: ``streamlit run`` configured for a local OpenID Connect
provider (``oidc-provider-mock``), Chromium through the redirects. An allowed user, a refused
one, logout, and an identity token that expires."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from tests.e2e.conftest import SHOTS, Server, free_port
from tests.e2e.test_browser import new_page, settle

TOKEN_SECONDS = 45
SSO_BUTTON = "Sign in with your identity provider"


@pytest.fixture(scope="module")
def provider():
    from oidc_provider_mock import run_server_in_thread

    with run_server_in_thread(port=free_port(), access_token_max_age=timedelta(seconds=TOKEN_SECONDS)) as server:
        yield f"http://127.0.0.1:{server.server_port}"


@pytest.fixture(scope="module")
def sso_server(tmp_path_factory, provider):
    folder = tmp_path_factory.mktemp("sso")
    port = free_port()
    secrets = folder / "secrets.toml"
    secrets.write_text(
        "[auth]\n"
        f'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
        'cookie_secret = "a test secret that is long enough for signing"\n'
        'client_id = "insights-test"\n'
        'client_secret = "insights-test-secret"\n'
        f'server_metadata_url = "{provider}/.well-known/openid-configuration"\n'
    )
    running = Server(
        folder,
        env={"INSIGHTS_SSO_ALLOW": "analyst@example.com,@security.example"},
        args=("--secrets.files", str(secrets)),
        port=port,
    )
    yield running
    running.stop()


def sign_in_with_provider(page, server: Server, subject: str) -> None:
    page.goto(server.url)
    settle(page)
    for _ in range(4):  # the cookie component's first message reruns the page and can eat a click
        page.get_by_role("button", name=SSO_BUTTON).click()
        try:
            page.wait_for_url("**/oauth2/authorize**", timeout=10_000)
            break
        except PlaywrightTimeout:
            page.screenshot(path=SHOTS / "sso-click.png")
    page.get_by_placeholder("sub").fill(subject)
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(f"{server.url}/**")
    settle(page)


def test_an_allowed_user_sees_the_dashboard_and_logout_ends_it(sso_server, browser):
    page = new_page(browser)
    sign_in_with_provider(page, sso_server, "analyst@example.com")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.get_by_text("Signed in as analyst@example.com")).to_be_visible()
    settle(page)
    page.get_by_role("button", name="Log out").dispatch_event("click")  # charts refreshing keep it moving
    page.get_by_role("button", name="End session").click()  # the provider's end of the session
    page.wait_for_url(f"{sso_server.url}/**")
    page.goto(sso_server.url)
    settle(page)
    expect(page.get_by_role("button", name=SSO_BUTTON)).to_be_visible()
    assert page.get_by_role("heading", name="Overview").count() == 0
    page.context.close()


def test_a_user_off_the_allow_list_is_refused_and_shown_nothing(sso_server, browser):
    page = new_page(browser)
    sign_in_with_provider(page, sso_server, "mallory@example.com")
    expect(page.get_by_text("This account may not see this dashboard")).to_be_visible()
    assert page.locator('[data-testid="stVegaLiteChart"]').count() == 0
    assert page.get_by_role("heading", name="Overview").count() == 0
    page.goto(f"{sso_server.url}/explorer")
    settle(page)
    expect(page.get_by_text("This account may not see this dashboard")).to_be_visible()
    page.context.close()


def test_an_expired_identity_token_asks_to_sign_in_again(sso_server, browser):
    page = new_page(browser)
    sign_in_with_provider(page, sso_server, "lead@security.example")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    signed_in = time.time()
    time.sleep(max(0.0, TOKEN_SECONDS + 2 - (time.time() - signed_in)))
    page.goto(sso_server.url)
    settle(page)
    expect(page.get_by_text("Your sign-in with the identity provider has expired")).to_be_visible()
    assert page.get_by_role("heading", name="Overview").count() == 0
    page.context.close()
