"""What the web server itself refuses, before Streamlit sees a request: ``server.py`` puts it in
front of the app as ASGI middleware.

- ``/_stcore/metrics`` is Streamlit's OpenMetrics endpoint, open to anyone who can reach the
  port: its counters (sessions, cache hits, per-page runs) tell an outsider what the app's users
  do. Served only when ``INSIGHTS_METRICS_ENDPOINT`` turns it on (for a scraper inside the
  network).
- ``/_stcore/upload_file`` accepts files for an uploader widget from any session, signed in or
  not, and keeps them in memory. The app has no uploader, so every upload is refused.

It also tells the download callables which session asks for them (``login.download``), and
makes a click's run apply the click before it yields to the next rerun request (see
``_apply_clicks_before_reruns``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import sys
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable, Callable], Awaitable[None]]

# The session asking for a deferred download, set around Streamlit's handler of download
# requests (which runs the callable in a thread without a script context). Kept here, not in
# ui/login.py: this module is imported before the server starts, and importing the login's
# libraries then would declare their components where the server never finds them.
requesting_session: contextvars.ContextVar[str | None] = contextvars.ContextVar("requesting_session", default=None)

METRICS_PATH = "/_stcore/metrics"
UPLOAD_PATH = "/_stcore/upload_file"


async def _refuse(send: Callable, status: int, text: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"cache-control", b"no-store")],
        }
    )
    await send({"type": "http.response.body", "body": text.encode()})


class Guard:
    """ASGI middleware: refuses uploads, and the metrics endpoint unless ``metrics`` is on."""

    def __init__(self, app: ASGIApp, metrics: bool = False):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            path = scope.get("path", "")
            if UPLOAD_PATH in path:
                return await _refuse(send, 403, "This app accepts no uploads.")
            if path.rstrip("/").endswith(METRICS_PATH) and not self.metrics:
                return await _refuse(send, 404, "Not found.")
        return await self.app(scope, receive, send)


_installed: list[bool] = []


def installed() -> bool:
    """Whether this process serves the app through ``server.py``."""
    return bool(_installed)


def browser_connected() -> bool:
    """Whether this run serves a browser's websocket (AppTest's runs serve none)."""
    from streamlit import runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None or not runtime.exists() or type(runtime.get_instance()) is not runtime.Runtime:
        return False  # AppTest stands a mock in for the runtime
    return runtime.get_instance().get_client(ctx.session_id) is not None


def _tell_downloads_who_asks() -> None:
    """Streamlit's handler of deferred downloads knows which session asks but runs the callable
    without saying so; this sets ``login.requesting_session`` around it (the callable's thread
    inherits the context), so that a download id works only in the session it was given to."""
    from streamlit.runtime.backend_operation_handler import DeferredFileHandler

    original = DeferredFileHandler.handle
    if getattr(original, "tells_session", False):
        return

    async def handle(self, request, session_id):
        token = requesting_session.set(session_id)
        try:
            return await original(self, request, session_id)
        finally:
            requesting_session.reset(token)

    handle.tells_session = True
    DeferredFileHandler.handle = handle


def _apply_clicks_before_reruns() -> None:
    """A click's run applies the click before it takes the next rerun request.

    Streamlit 1.67's ``SafeSessionState.on_script_will_rerun`` checks for a pending rerun
    *before* it applies the run's widget states and calls their callbacks: a message that
    arrives between the runner taking a click's request and that check (a cookie component's,
    right after "Log in" on a slow start) replaced the click's run with its own, whose states
    hold no trigger, and the click was lost. Without that first check the callbacks run, and
    the check Streamlit makes right after them takes the pending request (keeping the run's
    widget values). With ``runner.fastReruns`` off (``.streamlit/config.toml``) the request
    waits for that check instead of stopping the run's thread before it gets there."""
    from streamlit.runtime.state.safe_session_state import SafeSessionState

    if getattr(SafeSessionState.on_script_will_rerun, "applies_first", False):
        return

    def on_script_will_rerun(self, fresh_widget_states, **options) -> None:
        with self._lock:
            self._state.on_script_will_rerun(fresh_widget_states, **options)

    on_script_will_rerun.applies_first = True
    SafeSessionState.on_script_will_rerun = on_script_will_rerun


def _pages_only_through_navigation() -> None:
    """``pages/`` is ``app.py``'s, run only through its ``st.navigation``.

    Streamlit 1.67 takes a ``pages`` folder beside the main script for a multipage app of its
    first version until a run calls ``st.navigation``: on a freshly started server, a link to
    ``/apis`` opened before anyone loaded ``/`` ran ``pages/apis.py`` on its own, under a
    sidebar listing the file names, instead of ``app.py``'s sign-in form at that address."""
    from streamlit.runtime.pages_manager import PagesManager

    PagesManager.uses_pages_directory = False


def middleware() -> list:
    """The middleware for ``st.App``, configured from the app's settings (metrics stay off while
    the settings are invalid: the app then explains the problem on every page)."""
    from starlette.middleware import Middleware

    import settings as app_settings
    from auth.__main__ import _secrets

    try:
        metrics = bool(app_settings.load(secrets=_secrets())["metrics_endpoint"])
    except app_settings.SettingsError:
        metrics = False
    _tell_downloads_who_asks()
    _apply_clicks_before_reruns()
    _pages_only_through_navigation()
    _installed.append(True)
    return [Middleware(Guard, metrics=metrics)]


def _start_runtime() -> None:
    # Imported here, in this thread: the server answers first. Not the sign-in page's modules:
    # Streamlit registers a custom component (the login's cookie manager) only when it is
    # declared from a script run, and importing them here would declare it from none.
    from settings import SettingsError
    from ui.configuration import load_settings

    try:
        _ensure_user_file(load_settings())
        from ui.runtime import runtime

        runtime()  # the same module-level runtime app.py uses: the script runs in this process
    except SettingsError as error:  # the pages show it; the readiness check stays not ready
        print(f"Account Activity Insights: the app's settings are not valid: {error}", file=sys.stderr)


def _ensure_user_file(values: dict) -> None:
    """A first start's user file, made before the runtime's modules are imported: it hashes the
    one-time password (0.4 s) that the first sign-in form would otherwise wait for, and the
    password is in the log before anyone visits. A failure is the gate's to show.

    (Importing pandas first instead, which Streamlit imports to call the form's cookie
    component, made the first form slower: ``bench.startup --sign-in-form``, 2.7 to 3.0 s
    against 1.9 to 2.3 s.)"""
    from ui.configuration import user_file

    with contextlib.suppress(OSError):
        user_file(values)


STOP_SECONDS = 20  # for the collector's poll in progress, before the save (ECS waits 30 s by default)


def _stop_runtime() -> None:
    from ui import runtime

    shared = runtime._runtime
    if shared is not None:
        shared.collector.stop(timeout=STOP_SECONDS)  # saves the state


@contextlib.asynccontextmanager
async def lifespan(app):
    """Starts the runtime (restore and first poll run in the collector's thread) with the server,
    and saves its state when the server shuts down (SIGTERM): the ``atexit`` hook the runtime
    registers never ran under ``streamlit run server.py``, so a stopped server restarted from
    its last periodic save and read the rest again."""
    threading.Thread(target=_start_runtime, name="start-runtime", daemon=True).start()
    yield None
    await asyncio.to_thread(_stop_runtime)
