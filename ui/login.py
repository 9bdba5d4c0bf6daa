"""Sign-in in front of every page: the gate, the forced password change, logout.

streamlit-authenticator 0.4.2 checks passwords, keeps the session state (``username``,
``authentication_status``...) and writes the re-authentication cookie. This module adds what the
library lacks: the form is ours so that a throttled attempt is refused before any password check;
a login counts only while its key is in the server's session registry (``auth.sessions``), so
logout and password changes end sessions for good; a one-time password must be replaced first.

The cookie is written and deleted by a custom component, which only takes effect in the
browser if the run that renders it is not cut short by ``st.rerun``. So a sign-in or logout
reruns at once and the next run, which renders the whole page, sets or deletes the cookie.
"""

from __future__ import annotations

import copy
import math
import os
import re

import streamlit as st
import streamlit_authenticator as stauth
from streamlit.errors import StreamlitAPIException
from streamlit.runtime.scriptrunner import get_script_run_ctx
from streamlit_authenticator.utilities import CredentialsError, ResetError

import settings as app_settings
from auth import users
from auth.sessions import SessionRegistry, session_key
from auth.throttle import Throttle, client_key

SIGN_IN_TITLE = "Sign in to Account Activity Insights"
CHANGE_TITLE = "Choose a new password"
WRONG_CREDENTIALS = "Wrong user name or password."
FORM_WIDTH = 440  # pixels: a sign-in form as wide as the page is hard to read at 1440 px

# Our keys in st.session_state; the library owns name, username, authentication_status, email,
# roles, logout and password_hint.
_FILE = "auth_file"
_KEY = "auth_session_key"
_SET_COOKIE = "auth_set_cookie"
_DELETE_COOKIE = "auth_delete_cookie"
_ENDED = "auth_session_ended"
_AUTHENTICATOR = "auth_authenticator"


class _NewPasswordRule(stauth.Validator):
    """The library's validator with our rule for new passwords (its own wants 8 to 20 characters
    of four kinds)."""

    def validate_password(self, password: str) -> bool:
        return users.password_problem(password) is None

    def diagnose_password(self, password: str) -> str:
        return users.password_problem(password) or ""


@st.cache_resource(show_spinner=False)
def _throttle(path: str) -> Throttle:
    """One throttle per server process (and user file)."""
    return Throttle()


@st.cache_resource(show_spinner=False)
def _created_here() -> set[str]:
    """User files this server process created, so that the sign-in page can say where the
    one-time password went."""
    return set()


@st.cache_resource(show_spinner=False)
def _decoy_hash() -> str:
    return users.hash_password(users.new_password())


def _plain(text: str) -> str:
    """``text`` with Markdown's special characters escaped, to show it as is."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|~<>$:])", r"\\\1", text)


def _client() -> str:
    headers = st.context.headers
    return client_key(headers.get_all("X-Forwarded-For"), st.context.ip_address)


def _save(path: str, name: str, before: dict | None, entry: dict | None, **extra) -> None:
    """Writes to the user file what the library changed in ``entry`` (and ``extra``), and only
    that, so that a concurrent change of another field (a reset from the command line) stays."""
    if entry is None:
        return
    changes = {key: value for key, value in entry.items() if (before or {}).get(key) != value}
    changes.update(extra)
    if changes:
        users.update_user(path, name, changes)


def _only_page(page) -> None:
    """Shows ``page`` as the app's only page, then stops the run."""
    st.navigation([st.Page(page, title="Sign in", icon=":material/lock:")], position="hidden").run()
    st.stop()


def _keys(name: str) -> tuple[str, str]:
    """What a failed attempt counts against: the user name and the client."""
    return (f"user:{name}", f"client:{_client()}")


def _cooling_down(throttle: Throttle, keys: tuple[str, str]) -> bool:
    """Whether an attempt must be refused unchecked; says for how long."""
    wait = throttle.wait(keys)
    if wait > 0:
        st.error(f"Too many failed sign-ins. Try again in {math.ceil(wait)} s.")
    return wait > 0


def gate(settings: dict) -> str:
    """Returns the signed-in user name. For an anonymous session (or one with a pending password
    change) it renders the sign-in (or change) form as the only page and stops the run.

    Creates the user file on first use, printing the one-time ``admin`` password to the log."""
    path = os.path.abspath(app_settings.auth_file(settings))
    try:
        if users.bootstrap(path, expiry_days=settings["session_days"]) is not None:
            _created_here().add(path)
        config = users.read(path)
    except (OSError, users.UserFileError) as error:
        st.error(f"The user file cannot be used: {error}")
        st.stop()
    state = st.session_state
    state[_FILE] = path
    credentials = config["credentials"]
    authenticator = stauth.Authenticate(
        credentials,
        config["cookie"]["name"],
        config["cookie"]["key"],
        cookie_expiry_days=settings["session_days"],
        validator=_NewPasswordRule(),
        auto_hash=False,
    )
    state[_AUTHENTICATOR] = authenticator  # for sidebar_account, later in this run
    usernames = credentials["usernames"]
    registry = SessionRegistry(users.sessions_path(path))
    cookies = authenticator.cookie_controller

    if state.get("authentication_status"):
        user = state.get("username")
        if state.pop(_SET_COOKIE, False) and user in usernames:
            cookies.set_cookie()
            exp_date = cookies.cookie_model.exp_date
            state[_KEY] = session_key(exp_date)
            registry.register(user, state[_KEY], exp_date)
        if user not in usernames or not registry.valid(user, state.get(_KEY)):
            # Logged out elsewhere, password changed or reset, user removed, or expired.
            entry = usernames.get(user)
            before = copy.deepcopy(entry)
            authenticator.authentication_controller.logout()  # also stops cookie logins in this session
            _save(path, user, before, entry)
            state.pop(_KEY, None)
            state[_DELETE_COOKIE] = True
            state[_ENDED] = True
    else:
        token = cookies.get_cookie()
        if token:
            user, key = token.get("username"), session_key(token["exp_date"])
            if user in usernames and registry.valid(user, key):
                entry = usernames[user]
                before = copy.deepcopy(entry)
                authenticator.authentication_controller.login(token=token)
                _save(path, user, before, entry)
                state[_KEY] = key
            else:
                state[_DELETE_COOKIE] = True  # revoked: of no use any more

    if state.pop(_DELETE_COOKIE, False):
        cookies.delete_cookie()

    if state.get("authentication_status"):
        user = state["username"]
        if not usernames[user].get("must_change_password"):
            return user

        def change_password():
            _change_password_page(path, authenticator, registry, user)

        _only_page(change_password)

    def sign_in():
        _sign_in_page(path, authenticator, usernames)

    _only_page(sign_in)


def _sign_in_page(path: str, authenticator: stauth.Authenticate, usernames: dict) -> None:
    state = st.session_state
    st.title(SIGN_IN_TITLE)
    if state.pop(_ENDED, False):
        st.info("Your session has ended. Please sign in again.")
    admin = usernames.get(users.BOOTSTRAP_USER) or {}
    if path in _created_here() and admin.get("must_change_password"):
        st.info(
            f"First start: the one-time password of the user `{users.BOOTSTRAP_USER}` is in the server's log, "
            "on the line containing `password:`. You will choose a new password right after signing in.",
            icon=":material/key:",
        )
    with st.form("login", width=FORM_WIDTH):
        name = st.text_input("Username", autocomplete="username")
        password = st.text_input("Password", type="password", autocomplete="current-password")
        submitted = st.form_submit_button("Log in", type="primary")
    if not submitted:
        return
    name = name.strip().lower()
    if not name or not password:
        st.error("Enter your user name and password.")
        return
    throttle, keys = _throttle(path), _keys(name)
    if _cooling_down(throttle, keys):
        return
    entry = usernames.get(name)
    if entry is None:  # take as long as a real check, so that timing does not tell who exists
        users.check_password(password, _decoy_hash())
    before = copy.deepcopy(entry)
    if len(password.strip().encode()) > users.MAX_PASSWORD_BYTES:
        signed_in = False  # never a password here; the library would log a bcrypt error for it
    else:
        signed_in = authenticator.authentication_controller.login(name, password)
    _save(path, name, before, entry)
    if signed_in:
        throttle.succeeded(keys[:1])
        state[_SET_COOKIE] = True
        state["logout"] = None
        st.rerun()
    throttle.failed(keys)
    st.error(WRONG_CREDENTIALS)


def _change_password_page(path: str, authenticator: stauth.Authenticate, registry: SessionRegistry, user: str) -> None:
    state = st.session_state
    st.title(CHANGE_TITLE)
    st.write(
        f"You signed in with a one-time password. Choose your own before going on: at least "
        f"{users.MIN_PASSWORD_LENGTH} characters, and different from the current one."
    )
    with st.form("change_password", width=FORM_WIDTH):
        current = st.text_input("Current password", type="password", autocomplete="current-password")
        new = st.text_input(
            "New password",
            type="password",
            autocomplete="new-password",
            help=f"At least {users.MIN_PASSWORD_LENGTH} characters.",
        )
        repeat = st.text_input("Repeat new password", type="password", autocomplete="new-password")
        submitted = st.form_submit_button("Change password", type="primary")
    if not submitted:
        return
    throttle, keys = _throttle(path), _keys(user)
    if _cooling_down(throttle, keys):
        return
    controller = authenticator.authentication_controller
    entry = controller.authentication_model.credentials["usernames"][user]
    before = copy.deepcopy(entry)
    try:
        controller.reset_password(user, current.strip(), new.strip(), repeat.strip())
    except CredentialsError:
        _save(path, user, before, entry)
        throttle.failed(keys)
        st.error("The current password is wrong.")
        return
    except ResetError as error:
        st.error(str(error))
        return
    _save(path, user, before, entry, must_change_password=False)
    throttle.succeeded(keys[:1])
    registry.revoke_user(user, keep=state.get(_KEY))
    st.rerun()


def _current_user() -> str | None:
    """The user of this session if it is signed in, its login still registered and no password
    change pending; else None."""
    state = st.session_state
    user, path = state.get("username"), state.get(_FILE)
    if not (state.get("authentication_status") and user and path):
        return None
    if not SessionRegistry(users.sessions_path(path)).valid(user, state.get(_KEY)):
        return None
    try:
        entry = users.read(path)["credentials"]["usernames"].get(user)
    except (OSError, users.UserFileError):
        return None
    if not entry or entry.get("must_change_password"):
        return None
    return user


def session_still_valid() -> bool:
    """Whether this session may still see the app: for fragments that refresh on their own
    (``st.rerun(scope="app")`` when it is not, and the gate shows the sign-in form)."""
    return _current_user() is not None


def _link_to_sign_in() -> None:
    """A link to the main script, which shows the sign-in form: a page link where the script is
    a page (a file of ``pages/`` served on its own), else a plain link to the app's root."""
    ctx = get_script_run_ctx()
    try:
        st.page_link(ctx.main_script_path, label="Go to the sign-in page", icon=":material/login:")
    except (AttributeError, StreamlitAPIException):
        st.markdown("[Go to the sign-in page](./)")


def require_user() -> str:
    """The signed-in user; stops the run for anyone else. The first line of every page module."""
    user = _current_user()
    if user is None:
        st.warning("Please sign in.")
        _link_to_sign_in()
        st.stop()
    return user


def sidebar_account(settings: dict) -> None:
    """In the sidebar: who is signed in, and a "Log out" button that ends the session on the
    server, deletes the cookie and clears the session state."""
    state = st.session_state
    user = state.get("username")
    if not user:
        return
    with st.sidebar:
        st.caption(f"Signed in as {_plain(user)}")
        if not st.button("Log out", key="auth_logout", icon=":material/logout:"):
            return
    path = os.path.abspath(app_settings.auth_file(settings))
    SessionRegistry(users.sessions_path(path)).revoke(user, state.get(_KEY) or "")
    authenticator = state.get(_AUTHENTICATOR)
    if authenticator is not None:
        entry = authenticator.authentication_controller.authentication_model.credentials["usernames"].get(user)
        before = copy.deepcopy(entry)
        authenticator.authentication_controller.logout()
        _save(path, user, before, entry)
    state.clear()
    state["logout"] = True  # the library's flag: no cookie login in this session
    state[_DELETE_COOKIE] = True  # done by the next run, which renders the sign-in page
    st.rerun()
