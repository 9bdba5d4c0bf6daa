"""The soak's websocket sessions behave as the frontend does: they keep reading the socket while
no fragment is due, so that a whole run the server starts on its own (the start-up bar's rerun
of the app once the history is in) gives them the Overview's timers. Without that, the nine
websocket sessions of a 1M-event soak sat idle for the whole run. And a fragment's own run
begins with a new_session too (tagged with the fragment's id): it keeps the timers, as in the
frontend; taking it for a whole run left the sessions without timers after their first refresh.
A session the cookie did not sign in is a failure, not a quiet idle one."""

import threading
import time

from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

import bench.raw_client
from bench.soak import SocketSession


def _message(kind: str, **fields) -> ForwardMsg:
    message = ForwardMsg()
    if kind == "new_session":
        message.new_session.page_script_hash = "overview"
        message.metadata.run.fragment_ids.extend(fields.get("fragments", ()))
    elif kind == "auto_rerun":
        message.auto_rerun.fragment_id = fields["fragment"]
        message.auto_rerun.interval = fields["every"]
    elif kind == "script_finished":
        message.script_finished = ForwardMsg.FINISHED_SUCCESSFULLY
    return message


class _StartingServer:
    """The first run is the start-up page (no refreshing fragment); 0.3 s later the server reruns
    the app on its own and the Overview declares a fragment refreshed every 0.2 s."""

    def __init__(self, *args, **kwargs):
        self.received: list[ForwardMsg] = []
        self.pending: list[ForwardMsg] = []
        self.began = time.monotonic()
        self.fragment_runs: list[str] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def run(self, timeout: float = 60):
        self.received += [_message("new_session"), _message("script_finished")]
        self.pending = [_message("new_session"), _message("auto_rerun", fragment="charts", every=0.2)]
        return list(self.received)

    def receive(self, timeout: float):
        if self.pending and time.monotonic() - self.began > 0.3:
            message = self.pending.pop(0)
            self.received.append(message)
            return message
        time.sleep(min(timeout, 0.05))
        return None

    def rerun_fragment(self, fragment_id: str, page_script_hash: str, timeout: float = 120):
        self.fragment_runs.append(fragment_id)
        messages = [_message("new_session", fragments=[fragment_id]), _message("script_finished")]
        self.received += messages  # as the real client keeps every message it reads
        return messages

    def exceptions(self, messages=None) -> int:
        return 0

    def buttons(self) -> list[str]:
        return ["Log out"]  # signed in by the cookie


class _RefusingServer(_StartingServer):
    """A server that does not take the cookie: its first run is the sign-in form."""

    def buttons(self) -> list[str]:
        return ["Log in"]


def _serving(monkeypatch, server: type[_StartingServer]) -> list[_StartingServer]:
    """The clients the sessions open, each a fake ``server``."""
    clients: list[_StartingServer] = []

    def client(*args, **kwargs):
        clients.append(server())
        return clients[-1]

    monkeypatch.setattr(bench.raw_client, "RawClient", client)
    return clients


def test_a_websocket_session_refreshes_the_fragments_of_a_run_the_server_started(monkeypatch):
    clients = _serving(monkeypatch, _StartingServer)
    durations: list[float] = []
    stop = threading.Event()
    session = SocketSession("http://127.0.0.1:1", "cookie", durations, stop)
    session.start()
    time.sleep(1.5)
    stop.set()
    session.join(5)
    assert session.error is None
    assert clients[0].fragment_runs.count("charts") >= 3, clients[0].fragment_runs
    assert len(durations) == len(clients[0].fragment_runs)


def test_a_websocket_session_the_cookie_did_not_sign_in_fails_visibly(monkeypatch):
    # A cookie read before the browser stored the sign-in's left sessions on the sign-in form,
    # idle for a whole 30-minute soak that reported no failure.
    clients = _serving(monkeypatch, _RefusingServer)
    durations: list[float] = []
    session = SocketSession("http://127.0.0.1:1", "cookie", durations, threading.Event())
    session.start()
    session.join(5)
    assert session.error is not None and "sign-in form" in session.error
    assert clients[0].fragment_runs == [] and durations == []
