"""The login in a running app, through AppTest: ``tests/apps/login_app.py`` puts a secret page
behind ``ui.login`` the way app.py does. AppTest does not run custom components, so the
re-authentication cookie itself is not exercised here (its server side is: the session
registry)."""

import re
from pathlib import Path

import pytest
from streamlit.proto.TextInput_pb2 import TextInput
from streamlit.testing.v1 import AppTest

from auth import users
from auth.__main__ import main as auth_command
from auth.sessions import SessionRegistry
from ui import login

APPS = Path(__file__).parent / "apps"
NEW_PASSWORD = "a long new password"


@pytest.fixture(autouse=True)
def cheap_bcrypt(monkeypatch):
    import bcrypt

    gensalt = bcrypt.gensalt
    monkeypatch.setattr(bcrypt, "gensalt", lambda rounds=4, prefix=b"2b": gensalt(4, prefix))


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("INSIGHTS_AUTH_FILE", raising=False)
    monkeypatch.setenv("INSIGHTS_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.fixture
def start(state_dir):
    """A new browser session on the test app."""

    def start() -> AppTest:
        return AppTest.from_file(str(APPS / "login_app.py"), default_timeout=30).run()

    return start


@pytest.fixture
def one_time_password(start, capsys):
    """Starts the app once on an empty state folder; the admin password it printed."""
    at = start()
    return re.search(r"password: (\S+)", capsys.readouterr().err).group(1), at


def texts(at: AppTest) -> list[str]:
    return [element.value for element in at.markdown] + [element.value for element in at.caption]


def shows_secret(at: AppTest) -> bool:
    return any(text.startswith("secret") for text in texts(at))


def sign_in(at: AppTest, name: str, password: str) -> AppTest:
    at.text_input[0].set_value(name)
    at.text_input[1].set_value(password)
    return at.button[0].click().run()


def change_password(at: AppTest, current: str, new: str, repeat: str | None = None) -> AppTest:
    at.text_input[0].set_value(current)
    at.text_input[1].set_value(new)
    at.text_input[2].set_value(new if repeat is None else repeat)
    return at.button[0].click().run()


def is_sign_in_form(at: AppTest) -> bool:
    return (
        [title.value for title in at.title] == [login.SIGN_IN_TITLE]
        and [field.label for field in at.text_input] == ["Username", "Password"]
        and [button.label for button in at.button] == ["Log in"]
    )


@pytest.fixture
def signed_in(one_time_password):
    """A session signed in as admin, the one-time password already changed."""
    password, at = one_time_password
    change_password(sign_in(at, "admin", password), password, NEW_PASSWORD)
    assert shows_secret(at)
    return at


def registry(state_dir) -> SessionRegistry:
    return SessionRegistry(str(state_dir / "sessions.json"))


def test_an_anonymous_session_sees_only_the_sign_in_form(one_time_password):
    _, at = one_time_password
    assert not at.exception
    assert is_sign_in_form(at)
    assert at.text_input[1].proto.type == TextInput.PASSWORD
    assert not shows_secret(at)
    assert not at.get("vega_lite_chart") and not at.get("arrow_data_frame") and not at.metric
    assert not at.sidebar.button


def test_a_fresh_install_says_where_the_one_time_password_is(one_time_password, state_dir):
    password, at = one_time_password
    assert any("`admin`" in text and "`password:`" in text for text in texts(at))
    assert password not in (state_dir / "users.yaml").read_text()


def test_the_sign_in_page_does_not_tell_whether_admin_still_has_its_one_time_password(one_time_password, start):
    password, at = one_time_password
    while_pending = texts(at) + [info.value for info in at.info]
    change_password(sign_in(at, "admin", password), password, NEW_PASSWORD)
    later = start()
    assert is_sign_in_form(later)
    assert texts(later) + [info.value for info in later.info] == while_pending


def test_a_wrong_password_or_an_unknown_user_is_refused_alike(one_time_password):
    _, at = one_time_password
    sign_in(at, "admin", "not the password")
    assert [error.value for error in at.error] == ["Wrong user name or password."]
    sign_in(at, "nobody", "not the password")
    assert [error.value for error in at.error] == ["Wrong user name or password."]
    sign_in(at, "admin", "x" * 100)  # longer than bcrypt takes
    assert [error.value for error in at.error] == ["Wrong user name or password."]
    assert is_sign_in_form(at) and not shows_secret(at)


def test_the_one_time_password_leads_to_the_password_change_only(one_time_password):
    password, at = one_time_password
    sign_in(at, "Admin ", password)  # names are case-insensitive, as in streamlit-authenticator
    assert not at.exception
    assert [title.value for title in at.title] == [login.CHANGE_TITLE]
    assert [field.label for field in at.text_input] == ["Current password", "New password", "Repeat new password"]
    assert all(field.proto.type == TextInput.PASSWORD for field in at.text_input)
    assert [button.label for button in at.button] == ["Change password"]
    assert any("at least 12 characters" in text for text in texts(at))
    assert not shows_secret(at) and not at.sidebar.button and not at.sidebar.caption


@pytest.mark.parametrize(
    ("new", "repeat", "current", "error"),
    [
        ("short one", None, None, "at least 12 characters"),
        (NEW_PASSWORD, NEW_PASSWORD + "!", None, "do not match"),
        (None, None, None, "same"),
        (NEW_PASSWORD, None, "a wrong current password", "current password is wrong"),
    ],
)
def test_the_new_password_must_be_long_matching_and_different(one_time_password, new, repeat, current, error):
    password, at = one_time_password
    sign_in(at, "admin", password)
    change_password(at, current or password, new or password, repeat)
    assert error in at.error[0].value
    assert [title.value for title in at.title] == [login.CHANGE_TITLE]
    assert not shows_secret(at)


def test_changing_the_password_opens_the_app_and_retires_the_old_one(one_time_password, start, state_dir):
    password, at = one_time_password
    change_password(sign_in(at, "admin", password), password, NEW_PASSWORD)
    assert not at.exception
    assert shows_secret(at)
    assert [caption.value for caption in at.sidebar.caption] == ["Signed in as admin"]
    admin = users.read(str(state_dir / "users.yaml"))["credentials"]["usernames"]["admin"]
    assert admin["must_change_password"] is False
    assert sign_in(start(), "admin", password).error[0].value == "Wrong user name or password."
    assert shows_secret(sign_in(start(), "admin", NEW_PASSWORD))  # straight in, no change asked


def test_six_rapid_wrong_passwords_start_a_cooldown_that_refuses_even_the_right_one(one_time_password):
    password, at = one_time_password
    for _ in range(5):
        assert sign_in(at, "admin", "wrong").error[0].value == "Wrong user name or password."
    assert sign_in(at, "admin", "wrong").error[0].value == "Too many failed sign-ins. Try again in 30 s."
    assert sign_in(at, "admin", password).error[0].value.startswith("Too many failed sign-ins. Try again in")
    assert is_sign_in_form(at) and not shows_secret(at)


def test_logout_revokes_the_session_on_the_server(signed_in, state_dir):
    at = signed_in
    key = at.session_state["auth_session_key"]
    assert registry(state_dir).valid("admin", key)
    at.sidebar.button(key="auth_logout").click().run()
    assert not at.exception
    assert is_sign_in_form(at) and not shows_secret(at)
    assert not registry(state_dir).valid("admin", key)
    assert key not in (state_dir / "sessions.json").read_text()
    assert "auth_session_key" not in at.session_state


def test_a_session_revoked_elsewhere_ends_at_its_next_run(signed_in, state_dir):
    at = signed_in
    registry(state_dir).revoke("admin", at.session_state["auth_session_key"])  # logout in another tab
    at.run()
    assert is_sign_in_form(at) and not shows_secret(at)
    assert "session has ended" in at.info[0].value


def test_fragments_and_pages_see_a_revoked_session_at_once(signed_in, state_dir):
    at = signed_in
    at.session_state["probe"] = True
    at.run()
    assert "session still valid: True" in texts(at) and "secret page" in texts(at)
    registry(state_dir).revoke("admin", at.session_state["auth_session_key"])
    at.run()
    assert "session still valid: False" in texts(at) and "secret page" not in texts(at)
    assert [warning.value for warning in at.warning] == ["Please sign in."]


def test_a_pending_password_change_keeps_pages_closed(one_time_password):
    password, at = one_time_password
    sign_in(at, "admin", password)
    at.session_state["probe"] = True
    at.run()
    assert "session still valid: False" in texts(at) and "secret page" not in texts(at)


def test_a_reset_from_the_command_line_ends_the_session_and_forces_a_change(signed_in, state_dir, capsys):
    at = signed_in
    assert auth_command(["users", "reset", "admin"]) == 0
    password = re.search(r"password: (\S+)", capsys.readouterr().out).group(1)
    at.run()
    assert is_sign_in_form(at)
    sign_in(at, "admin", password)
    assert [title.value for title in at.title] == [login.CHANGE_TITLE]


def test_require_user_stops_an_anonymous_session():
    at = AppTest.from_file(str(APPS / "guarded_page.py")).run()
    assert not at.exception
    assert [warning.value for warning in at.warning] == ["Please sign in."]
    assert "secret page" not in texts(at)


def test_an_unusable_user_file_is_explained_not_raised(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("INSIGHTS_AUTH_FILE", str(blocker / "users.yaml"))
    at = AppTest.from_file(str(APPS / "login_app.py")).run()
    assert not at.exception
    assert at.error[0].value.startswith("The user file cannot be used")
    assert not shows_secret(at) and not at.text_input


@pytest.mark.parametrize("secure", [False, True])
def test_the_sign_in_cookie_is_strict_short_lived_and_secure_when_asked(one_time_password, monkeypatch, secure):
    import time

    import extra_streamlit_components as stx

    written = []
    monkeypatch.setattr(stx.CookieManager, "set", lambda self, name, value, **options: written.append(options))
    monkeypatch.setenv("INSIGHTS_COOKIE_SECURE", str(secure).lower())
    password, at = one_time_password
    sign_in(at, "admin", password)
    assert [(options["secure"], options["same_site"]) for options in written] == [(secure, "strict")]
    lifetime = written[0]["expires_at"].timestamp() - time.time()
    assert 12 * 3600 - 60 < lifetime <= 12 * 3600


def test_logging_out_prints_nothing_on_the_server_terminal(signed_in, capsys):
    capsys.readouterr()
    signed_in.sidebar.button(key="auth_logout").click().run()
    signed_in.run()  # the sign-in page deletes the cookie this browser may not have
    assert not signed_in.exception
    assert capsys.readouterr().out == ""


def test_a_rerun_request_waiting_when_a_clicks_run_starts_does_not_stop_it_before_the_click_is_applied(monkeypatch):
    """Streamlit 1.67 checked for a pending rerun before applying a run's widget states and
    callbacks; the server applies them first (the browser replay is tests/e2e/test_first_click)."""
    from streamlit.runtime.state.safe_session_state import SafeSessionState

    from ui import server

    monkeypatch.setattr(SafeSessionState, "on_script_will_rerun", SafeSessionState.on_script_will_rerun)
    server._apply_clicks_before_reruns()
    applied = []

    class State:
        def on_script_will_rerun(self, states, **options):
            applied.append((states, options))

    def pending_rerun():
        raise AssertionError("yielded to the next request before applying the click")

    SafeSessionState(State(), yield_callback=pending_rerun).on_script_will_rerun("click", is_history_navigation=False)
    assert applied == [("click", {"is_history_navigation": False})]


def test_a_rerun_request_waits_for_the_running_script_instead_of_stopping_it():
    """With fastReruns on, the next message stopped a click's run before its callback (the click lost)."""
    import tomllib

    config = tomllib.loads((Path(__file__).parents[1] / ".streamlit" / "config.toml").read_text())
    assert config["runner"]["fastReruns"] is False


def test_the_server_saves_the_collectors_state_when_it_shuts_down(monkeypatch):
    """SIGTERM ends ``streamlit run server.py`` through the lifespan; the runtime's atexit hook
    never ran there (a real server left no snapshot), so the lifespan stops the collector."""
    import asyncio
    from types import SimpleNamespace

    from ui import runtime, server

    stopped = []
    collector = SimpleNamespace(stop=lambda timeout: stopped.append(timeout))
    monkeypatch.setattr(runtime, "_runtime", SimpleNamespace(collector=collector))
    monkeypatch.setattr(server, "_start_runtime", lambda: None)

    async def serve_then_shut_down():
        async with server.lifespan(None):
            assert stopped == []

    asyncio.run(serve_then_shut_down())
    assert stopped == [server.STOP_SECONDS]
