"""Downloads are produced only for the session that was offered them, while it is signed in."""

import asyncio
import time

import pytest
from streamlit.proto.BackMsg_pb2 import BackendOperationRequest
from streamlit.runtime.backend_operation_handler import DeferredFileHandler

from auth.sessions import SessionRegistry, session_key
from ui import server
from ui.login import DownloadRefused, guarded_download
from ui.server import requesting_session


@pytest.fixture
def registry(tmp_path):
    return SessionRegistry(str(tmp_path / "sessions.json"))


def offered(registry, owner="session-a"):
    expires = time.time() + 3600
    key = session_key(expires)
    registry.register("analyst", key, expires)
    build = guarded_download(lambda: b"events", owner, lambda: registry.valid("analyst", key))
    return build, key


def asked_by(session, build):
    token = requesting_session.set(session)
    try:
        return build()
    finally:
        requesting_session.reset(token)


def test_the_session_that_was_offered_a_download_gets_it_while_signed_in(registry):
    build, _ = offered(registry)
    assert asked_by("session-a", build) == b"events"


def test_after_logout_an_open_tab_gets_no_download(registry):
    build, key = offered(registry)
    registry.revoke("analyst", key)
    with pytest.raises(DownloadRefused):
        asked_by("session-a", build)


def test_a_download_id_redeemed_from_another_session_gets_nothing(registry):
    build, _ = offered(registry)
    with pytest.raises(DownloadRefused):
        asked_by("session-b", build)
    with pytest.raises(DownloadRefused):
        build()  # nobody said who asks


def test_the_server_hook_tells_the_callable_which_session_asks(monkeypatch):
    seen = []

    class Manager:
        def execute_deferred(self, file_id):
            seen.append((file_id, requesting_session.get()))
            return "/media/x.csv"

    monkeypatch.setattr(DeferredFileHandler, "handle", DeferredFileHandler.handle)
    server._tell_downloads_who_asks()
    request = BackendOperationRequest(request_id="1")
    request.deferred_file.file_id = "file-1"
    answer = asyncio.run(DeferredFileHandler(lambda: Manager()).handle(request, "session-a"))
    assert answer.deferred_file.url == "/media/x.csv"
    assert seen == [("file-1", "session-a")]
    assert requesting_session.get() is None
