"""Sign-in in front of every page: the gate, the forced password change, logout.

streamlit-authenticator 0.4.2 checks passwords, keeps the session state (``username``,
``authentication_status``...) and writes the re-authentication cookie. This module adds what the
library lacks: the form is ours so that a throttled attempt is refused before any password check;
a login counts only while its key is in the server's session registry (``auth.sessions``), so
logout and password changes end sessions for good; a one-time password must be replaced first.

The cookie is read on the server (``st.context.cookies``) but written and deleted by the
library's custom component (extra-streamlit-components' CookieManager), which takes effect only
once its frame has loaded in the browser; every mount of it then sends a value, which starts a
new run. On a slow start that message can come right after a click on "Log in" or "Change
password" and cut the click's run short before it reads the button: the new run would see the
button unclicked and drop the click. A run can be cut short at any Streamlit call, reading or
writing ``st.session_state`` included. So the forms' buttons only mark the form submitted in a
plain dict of this session (the "form box"), in a callback that makes no Streamlit call; the gate
of whichever run comes next checks the submission and writes its outcome to the box, again
without a Streamlit call, and the mark is removed only with that outcome. A login found good is
registered at once and applied to the session state until a run has applied it all, and its
cookie is rendered on every run until the component reports it written: no cut-short run loses
a click, a login or its cookie. "Log out" goes through the same box.

The callback itself runs only if the click's run gets that far: with Streamlit's
``runner.fastReruns`` on, the next message stopped the click's run before its callbacks, and the
click was gone. ``.streamlit/config.toml`` turns it off, so that the two requests merge and the
click's trigger reaches the callback (tests/e2e/test_first_click.py replays both orders).
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import math
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable

import streamlit as st
import streamlit_authenticator as stauth
from streamlit.errors import StreamlitAPIException
from streamlit.runtime.scriptrunner import get_script_run_ctx
from streamlit_authenticator.utilities import CredentialsError, ResetError

from auth import sso, users
from auth.sessions import SessionRegistry, connection_may_resume, make_cookie, read_cookie, session_key
from auth.throttle import SignInThrottle, client_key
from ui import configuration
from ui.server import requesting_session

SIGN_IN_TITLE = "Sign in to Account Activity Insights"
CHANGE_TITLE = "Choose a new password"
WRONG_CREDENTIALS = "Wrong user name or password."
ACCESS_REFUSED = (
    "This account may not see this dashboard: it is not on the allow-list. Ask the app's administrator to add "
    "your e-mail address, domain or group to INSIGHTS_SSO_ALLOW."
)

FORM_WIDTH = 440  # pixels: a sign-in form as wide as the page is hard to read at 1440 px

# Our keys in st.session_state; the library owns name, username, authentication_status, email,
# roles, logout and password_hint.
_FILE = "auth_file"
_KEY = "auth_session_key"
_SET_COOKIE = "auth_set_cookie"
_DELETE_COOKIE = "auth_delete_cookie"
_ENDED = "auth_session_ended"
_TRUSTED = "auth_trusted_proxies"
_SSO_RULES = "auth_sso_rules"
_BOUND = "auth_connection"
_FORM_BOX = "auth_form_box"  # a plain dict: "submitted", "signed_in", "logged_out", "message" (module doc)
_COOKIE_WRITER = "auth_cookie_writer"  # the cookie component that writes the login's cookie: True once it has
_FIELDS = {  # each form's fields, by session-state key
    "login": ("auth_login_name", "auth_login_password"),
    "change_password": ("auth_current_password", "auth_new_password", "auth_repeat_password"),
    "logout": (),
}


class _NewPasswordRule(stauth.Validator):
    """The library's validator with our rule for new passwords (its own wants 8 to 20 characters
    of four kinds)."""

    def validate_password(self, password: str) -> bool:
        return users.password_problem(password) is None

    def diagnose_password(self, password: str) -> str:
        return users.password_problem(password) or ""


# Process-wide, never in st.cache_resource: any client can clear that with one message, which
# would reset every cooldown.
_throttles: dict[str, SignInThrottle] = {}
_process_lock = threading.Lock()
_decoy: list[str] = []


def _throttle(path: str) -> SignInThrottle:
    """One throttle per server process (and user file)."""
    with _process_lock:
        return _throttles.setdefault(path, SignInThrottle())


def _decoy_hash() -> str:
    """A hash to check unknown names against, so that timing does not tell who exists."""
    with _process_lock:
        if not _decoy:
            _decoy.append(users.hash_password(users.new_password()))
        return _decoy[0]


def _plain(text: str) -> str:
    """``text`` with Markdown's special characters escaped, to show it as is."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|~<>$:])", r"\\\1", text)


def _client() -> str:
    headers = st.context.headers
    trusted = st.session_state.get(_TRUSTED, ())
    return client_key(headers.get_all("X-Forwarded-For"), st.context.ip_address, trusted)


def _save(path: str, name: str, before: dict | None, entry: dict | None, **extra) -> None:
    """Writes to the user file what the library changed in ``entry`` (and ``extra``), and only
    that, so that a concurrent change of another field (a reset from the command line) stays."""
    if entry is None:
        return
    changes = {key: value for key, value in entry.items() if (before or {}).get(key) != value}
    changes.update(extra)
    if changes:
        users.update_user(path, name, changes)


def _only_page(page, url_paths: Iterable[str]) -> None:
    """Shows ``page`` as the app's only page, at the root and at each of ``url_paths`` (the
    app's pages), then stops the run. A link to a page opened signed out thus finds a page at
    its address (Streamlit would say "page not found" first), and keeps it for after sign-in."""
    pages = [st.Page(page, title="Sign in", icon=":material/lock:", default=True)]
    pages += [st.Page(page, title="Sign in", icon=":material/lock:", url_path=path) for path in url_paths if path]
    st.navigation(pages, position="hidden").run()
    st.stop()


def _keys(name: str, client: str) -> tuple[str, str]:
    """What a failed attempt counts against: the user name and the client."""
    return (name, client)


def _cooldown_message(throttle: SignInThrottle, keys: tuple[str, str]) -> str | None:
    """Why an attempt must be refused unchecked, with how long to wait; None if it may be checked."""
    wait = throttle.wait(*keys)
    return f"Too many failed sign-ins. Try again in {math.ceil(wait)} s." if wait > 0 else None


def _record_submission(box: dict, form: str) -> None:
    """The forms' button callback: marks ``form`` submitted, with no Streamlit call."""
    box["submitted"] = form


def _form_box() -> dict:
    box = st.session_state.get(_FORM_BOX)
    if box is None:
        box = st.session_state[_FORM_BOX] = {"lock": threading.Lock()}
    return box


# Sessions whose identity-provider login was ended by "Log out", for the download callables,
# which run outside the session and cannot read st.user.
_sso_ended: set[str] = set()


def _sso_configured() -> bool:
    """Whether ``secrets.toml`` configures an OpenID Connect provider for ``st.login``."""
    try:
        section = st.secrets.get("auth")
    except (FileNotFoundError, StreamlitAPIException, st.errors.StreamlitSecretNotFoundError):
        return False
    if not section:
        return False
    return "client_id" in section or any(hasattr(value, "get") and "client_id" in value for value in section.values())


def _sso_provider() -> str | None:
    """The named provider (``[auth.NAME]``), or None for one configured in ``[auth]`` itself."""
    section = st.secrets.get("auth")
    if "client_id" in section:
        return None
    return next(name for name, value in section.items() if hasattr(value, "get") and "client_id" in value)


def _sso_claims() -> dict:
    return dict(st.user.to_dict()) if st.user.is_logged_in else {}


def _sso_user() -> str | None:
    """The signed-in identity if the provider's token is unexpired and on the allow-list."""
    claims = _sso_claims()
    rules, groups_claim = st.session_state.get(_SSO_RULES, (sso.AllowList(), "groups"))
    if not claims or sso.expired(claims) or not sso.allowed(claims, rules, groups_claim):
        return None
    return sso.identity(claims)


def _sso_button(label: str = "Sign in with your identity provider") -> None:
    if st.button(label, type="primary", icon=":material/passkey:", key="auth_sso_login"):
        st.login(_sso_provider()) if _sso_provider() else st.login()


def _sso_refused_page() -> None:
    """For an identity the provider signed in that may not see the dashboard, or whose token
    has expired: says which, and offers to sign out or in again."""
    claims = _sso_claims()
    st.title(SIGN_IN_TITLE)
    if sso.expired(claims):
        st.info("Your sign-in with the identity provider has expired. Please sign in again.")
        _sso_button("Sign in again")
    else:
        st.error(ACCESS_REFUSED)
        st.text(f"Signed in as {sso.identity(claims)}")
    if st.button("Log out", key="auth_sso_refused_logout", icon=":material/logout:"):
        st.logout()


def _connection():
    """The websocket connection serving this run (None under AppTest, which has none)."""
    from streamlit import runtime

    ctx = get_script_run_ctx()
    if ctx is None or not runtime.exists() or type(runtime.get_instance()) is not runtime.Runtime:
        return None
    return runtime.get_instance().get_client(ctx.session_id)


def _bind_connection() -> None:
    """Ties the signed-in session to the connection that signed it in."""
    client = _connection()
    st.session_state[_BOUND] = weakref.ref(client) if client is not None else None


def _connection_allowed(user: str | None, key: str | None, cookie: dict | None) -> bool:
    """Whether this run's connection may act for the signed-in session. Streamlit lets a new
    websocket resume a session by presenting its id: only the connection that signed in, or
    one whose cookie carries this very login (a browser reconnecting), may; the latter is bound
    from then on. Checked on every run."""
    client = _connection()
    if client is None:
        return True  # no websocket (AppTest)
    bound = st.session_state.get(_BOUND)
    if bound is not None and bound() is client:
        return True
    if connection_may_resume(user, key, cookie):
        st.session_state[_BOUND] = weakref.ref(client)
        return True
    return False


def gate(settings: dict, url_paths: Iterable[str] = ()) -> str:
    """Returns the signed-in user name. For an anonymous session (or one with a pending password
    change) it renders the sign-in (or change) form as the only page, at the root and at each
    of ``url_paths`` (the app's pages), and stops the run.

    Creates the user file on first use, printing the one-time ``admin`` password to the log."""
    try:
        path = configuration.user_file(settings)
        config = users.read(path)
    except (OSError, users.UserFileError) as error:
        st.error(f"The user file cannot be used: {error}")
        st.stop()
    state = st.session_state
    state[_FILE] = path
    state[_TRUSTED] = settings["trusted_proxies"]
    state[_SSO_RULES] = (settings["sso_allow"], settings["sso_groups_claim"])
    if _sso_configured() and st.user.is_logged_in:
        user = _sso_user()
        if user is not None:
            return user
        _only_page(_sso_refused_page, url_paths)
    credentials = config["credentials"]
    cookie_key = config["cookie"]["key"]
    authenticator = stauth.Authenticate(
        credentials,
        config["cookie"]["name"],
        cookie_key,
        cookie_expiry_days=settings["session_days"],
        validator=_NewPasswordRule(),
        auto_hash=False,
    )
    usernames = credentials["usernames"]
    registry = SessionRegistry(users.sessions_path(path))
    cookies = authenticator.cookie_controller

    box = _form_box()
    if box.get("submitted"):
        form = box["submitted"]
        values = [state.get(key) or "" for key in _FIELDS[form]]
        signed_in, user, session = bool(state.get("authentication_status")), state.get("username"), state.get(_KEY)
        client = _client()
        # From here until the box holds the outcome, no Streamlit call: nothing can cut it short.
        # The lock: a run cut short can still be finishing in its thread while the next starts
        # (Streamlit then drops that run's output). If it took the submission, this run read
        # the user file before it was changed: it starts again.
        with box["lock"]:
            taken = box.get("submitted") != form
            if not taken:
                if form == "login" and not signed_in:
                    outcome = _check_login(path, usernames, registry, settings, client, *values)
                elif form == "change_password" and signed_in:
                    outcome = _change_password(path, authenticator, registry, user, session, client, *values)
                elif form == "logout" and signed_in:
                    registry.revoke(user, session or "")
                    outcome = {"logged_out": True}
                else:
                    outcome = {}
                box.pop("message", None)
                box.update(outcome)
                box.pop("submitted", None)
        if taken:
            st.rerun()
    if login := box.get("signed_in"):
        _apply_login(path, authenticator, usernames, login)
        box.pop("signed_in", None)
    if box.get("logged_out"):
        _apply_logout(path, authenticator)  # clears the session state, the box with it

    if state.get("authentication_status"):
        user = state.get("username")
        if state.get(_SET_COOKIE) is not None:
            if state.get(_COOKIE_WRITER) is True:
                state.pop(_SET_COOKIE)  # the browser has it
            elif user in usernames:
                _write_cookie(cookies.cookie_model, user, cookie_key, settings, state[_SET_COOKIE])
        cookie = read_cookie(st.context.cookies.get(cookies.cookie_model.cookie_name), cookie_key)
        if not _connection_allowed(user, state.get(_KEY), cookie):
            state[_BOUND] = None  # a connection that took over the session id: it gets nothing
            registry_valid = False
        else:
            registry_valid = registry.valid(user, state.get(_KEY))
        if user not in usernames or not registry_valid:
            # Logged out elsewhere, password changed or reset, user removed, or expired.
            entry = usernames.get(user)
            before = copy.deepcopy(entry)
            authenticator.authentication_controller.logout()  # also stops cookie logins in this session
            _save(path, user, before, entry)
            state.pop(_KEY, None)
            state.pop(_SET_COOKIE, None)
            state[_DELETE_COOKIE] = True
            state[_ENDED] = True
    else:
        token = (
            None
            if state.get("logout")
            else read_cookie(st.context.cookies.get(cookies.cookie_model.cookie_name), cookie_key)
        )
        if token:
            user, key = token.get("username"), session_key(token["exp_date"])
            if user in usernames and registry.valid(user, key):
                entry = usernames[user]
                before = copy.deepcopy(entry)
                authenticator.authentication_controller.login(token=token)
                _save(path, user, before, entry)
                state[_KEY] = key
                _bind_connection()
            else:
                state[_DELETE_COOKIE] = True  # revoked: of no use any more

    if state.pop(_DELETE_COOKIE, False):
        # As cookies.delete_cookie() does, without its print of the KeyError on the server's
        # terminal when this browser had no such cookie yet.
        model = cookies.cookie_model
        with contextlib.suppress(KeyError):
            model.cookie_manager.delete(model.cookie_name)

    if state.get("authentication_status"):
        user = state["username"]
        if not usernames[user].get("must_change_password"):
            return user

        _only_page(_change_password_page, url_paths)
    _only_page(_sign_in_page, url_paths)


def _write_cookie(model, user: str, cookie_key: str, settings: dict, expires: float) -> None:
    """Renders the component that writes the re-authentication cookie (SameSite strict; Secure
    when the app is served over HTTPS, ``INSIGHTS_COOKIE_SECURE``), expiring when the registry
    ends the login. The same arguments on every run until it is written: one frame, one write."""
    model.exp_date = expires  # what the library's logout and checks read
    model.cookie_manager.set(
        model.cookie_name,
        make_cookie(user, expires, cookie_key),
        key=_COOKIE_WRITER,
        expires_at=dt.datetime.fromtimestamp(expires),
        secure=bool(settings["cookie_secure"]),
        same_site="strict",
    )


def _check_login(
    path: str, usernames: dict, registry: SessionRegistry, settings: dict, client: str, name, password
) -> dict:
    """The outcome of a submitted login, for the form box: ``signed_in`` (user, session key,
    expiry), registered at once, or the ``message`` that says why not. No Streamlit call."""
    name = name.strip().lower()
    if not name or not password:
        return {"message": "Enter your user name and password."}
    throttle, keys = _throttle(path), _keys(name, client)
    if message := _cooldown_message(throttle, keys):
        return {"message": message}
    entry = usernames.get(name)
    decoy = _decoy_hash()  # drawn at the first attempt whatever the name, so that no first time tells
    # The same check whether the name exists or not, so that timing does not tell who exists;
    # never a password beyond bcrypt's length (the library would log a bcrypt error for it).
    hashed = entry.get("password") if entry else None
    password = password.strip()  # as the library's login does
    good = users.check_password(password, hashed or decoy) and bool(hashed)
    if len(password.encode()) > users.MAX_PASSWORD_BYTES:
        good = False
    if not good:
        throttle.failed(*keys)
        return {"message": WRONG_CREDENTIALS}
    throttle.succeeded(*keys)
    expires = time.time() + settings["session_days"] * 86400
    key = session_key(expires)
    registry.register(name, key, expires)
    return {"signed_in": (name, key, expires)}


def _apply_login(path: str, authenticator: stauth.Authenticate, usernames: dict, login: tuple) -> None:
    """Puts a checked login into the session state: the library's keys, the session key, the
    connection, the cookie to write. Runs again in full if a run is cut short in it."""
    state = st.session_state
    user, key, expires = login
    entry = usernames.get(user)
    before = copy.deepcopy(entry)
    authenticator.authentication_controller.login(token={"username": user, "exp_date": expires})
    _save(path, user, before, entry)
    state[_KEY] = key
    _bind_connection()
    state[_SET_COOKIE] = expires
    state["logout"] = None


def _apply_logout(path: str, authenticator: stauth.Authenticate) -> None:
    """Ends in the session state a login the registry no longer honours ("Log out"): the
    library's keys, then everything this session held; the cookie is deleted by this run. Runs
    again in full if a run is cut short in it (the box goes only with the session state)."""
    state = st.session_state
    user = state.get("username")
    entry = authenticator.authentication_controller.authentication_model.credentials["usernames"].get(user)
    before = copy.deepcopy(entry)
    authenticator.authentication_controller.logout()
    _save(path, user, before, entry)
    state.clear()
    state["logout"] = True  # the library's flag: no cookie login in this session
    state[_DELETE_COOKIE] = True


def _change_password(
    path: str,
    authenticator,
    registry: SessionRegistry,
    user: str,
    session: str | None,
    client: str,
    current,
    new,
    repeat,
) -> dict:
    """Replaces the one-time password of ``user`` if the submitted change is valid (other
    sessions of ``user`` end); for the form box, the ``message`` that says why not. No Streamlit
    call."""
    throttle, keys = _throttle(path), _keys(user, client)
    if message := _cooldown_message(throttle, keys):
        return {"message": message}
    controller = authenticator.authentication_controller
    entry = controller.authentication_model.credentials["usernames"].get(user)
    if entry is None:
        return {}  # removed meanwhile: the gate ends the session
    before = copy.deepcopy(entry)
    try:
        controller.reset_password(user, current.strip(), new.strip(), repeat.strip())
    except CredentialsError:
        _save(path, user, before, entry)
        throttle.failed(*keys)
        return {"message": "The current password is wrong."}
    except ResetError as error:
        return {"message": str(error)}
    entry["must_change_password"] = False  # this very run goes on to the app
    _save(path, user, before, entry)
    throttle.succeeded(*keys)
    registry.revoke_user(user, keep=session)
    return {}


def _sign_in_page() -> None:
    state = st.session_state
    st.title(SIGN_IN_TITLE)
    if state.pop(_ENDED, False):
        st.info("Your session has ended. Please sign in again.")
    if _sso_configured():
        _sso_button()
        st.caption("Or with a local account:")
    # The same words whatever the state of the install: an anonymous visitor must not learn
    # that admin still has its one-time password.
    st.caption(
        f"On a new install, the one-time password of the user `{users.BOOTSTRAP_USER}` is in the server's log, "
        "on the line containing `password:`; you choose your own right after signing in with it."
    )
    with st.form("login", width=FORM_WIDTH):
        name_key, password_key = _FIELDS["login"]
        st.text_input("Username", key=name_key, autocomplete="username")
        st.text_input("Password", type="password", key=password_key, autocomplete="current-password")
        st.form_submit_button("Log in", type="primary", on_click=_record_submission, args=(_form_box(), "login"))
    if message := _form_box().get("message"):
        st.error(message)


def _change_password_page() -> None:
    st.title(CHANGE_TITLE)
    st.write(
        f"You signed in with a one-time password. Choose your own before going on: at least "
        f"{users.MIN_PASSWORD_LENGTH} characters, and different from the current one."
    )
    current_key, new_key, repeat_key = _FIELDS["change_password"]
    with st.form("change_password", width=FORM_WIDTH):
        st.text_input("Current password", type="password", key=current_key, autocomplete="current-password")
        st.text_input(
            "New password",
            type="password",
            key=new_key,
            autocomplete="new-password",
            help=f"At least {users.MIN_PASSWORD_LENGTH} characters.",
        )
        st.text_input("Repeat new password", type="password", key=repeat_key, autocomplete="new-password")
        st.form_submit_button(
            "Change password", type="primary", on_click=_record_submission, args=(_form_box(), "change_password")
        )
    if message := _form_box().get("message"):
        st.error(message)


def _current_user() -> str | None:
    """The user of this session if it is signed in, its login still registered and no password
    change pending; else None."""
    state = st.session_state
    if _sso_configured() and st.user.is_logged_in:
        return _sso_user()
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


class DownloadRefused(PermissionError):
    pass


def guarded_download(build: Callable[[], bytes], owner: str | None, still_valid: Callable[[], bool]):
    """``build`` as a download callable that produces data only for the session ``owner`` that
    rendered the button, and only while ``still_valid()`` (its login is still honoured). A
    download id redeemed by another session, or after logout, gets nothing."""

    def download() -> bytes:
        if owner is None or requesting_session.get() != owner:
            raise DownloadRefused("this download belongs to another session")
        if not still_valid():
            raise DownloadRefused("the session that offered this download has ended")
        return build()

    return download


def download(build: Callable[[], bytes]):
    """``build`` guarded for this session and its login: what every download button is given."""
    state = st.session_state
    ctx = get_script_run_ctx()
    owner = ctx.session_id if ctx else None
    if _sso_configured() and st.user.is_logged_in:
        claims = _sso_claims()

        def still_valid() -> bool:
            return owner not in _sso_ended and not sso.expired(claims)

        return guarded_download(build, owner, still_valid)
    user, key, path = state.get("username"), state.get(_KEY), state.get(_FILE)

    def still_valid() -> bool:
        return bool(path) and SessionRegistry(users.sessions_path(path)).valid(user, key)

    return guarded_download(build, owner, still_valid)


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


def sidebar_account() -> None:
    """In the sidebar: who is signed in, and a "Log out" button that ends the session on the
    server, deletes the cookie and clears the session state (the next gate does it)."""
    state = st.session_state
    if _sso_configured() and st.user.is_logged_in:
        with st.sidebar:
            st.caption(f"Signed in as {_plain(sso.identity(_sso_claims()))}")
            if st.button("Log out", key="auth_logout", icon=":material/logout:"):
                ctx = get_script_run_ctx()
                if ctx is not None:
                    _sso_ended.add(ctx.session_id)
                st.logout()
        return
    user = state.get("username")
    if not user:
        return
    with st.sidebar:
        st.caption(f"Signed in as {_plain(user)}")
        # Marked in the form box like the forms' buttons, so that a run cut short after the
        # click still logs out: the gate of the next run ends the session.
        st.button(
            "Log out",
            key="auth_logout",
            icon=":material/logout:",
            on_click=_record_submission,
            args=(_form_box(), "logout"),
        )
