"""A raw Streamlit websocket client: what an attacker can send without a browser.

It speaks the protocol of Streamlit's own frontend (binary ``BackMsg`` up, ``ForwardMsg``
down, on ``/_stcore/stream``), so a test can send messages no button of the app sends:
``clear_cache``, a session id to reconnect to, a deferred download id; and a benchmark can
time what the server sends apart from what a browser takes to draw it.
"""

from __future__ import annotations

import time

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from websockets.sync.client import connect


class RawClient:
    def __init__(self, url: str, *, session_id: str | None = None, cookie: str | None = None):
        # As the frontend does: the protocol, an XSRF token (none here), the session to resume.
        protocols = ["streamlit", "no-xsrf-token", session_id] if session_id else ["streamlit"]
        headers = {"Cookie": cookie} if cookie else {}
        self.socket = connect(
            url.replace("http://", "ws://") + "/_stcore/stream",
            subprotocols=protocols,
            additional_headers=headers,
            max_size=None,
            open_timeout=10,
            legacy=True,  # kept open across calls, closed by close()
        )
        self.session_id: str | None = None
        self.received: list[ForwardMsg] = []

    def send(self, message: BackMsg) -> None:
        self.socket.send(message.SerializeToString())

    def receive(self, timeout: float) -> ForwardMsg | None:
        try:
            data = self.socket.recv(timeout=timeout)
        except TimeoutError:
            return None
        message = ForwardMsg()
        message.ParseFromString(data)
        if message.HasField("new_session"):
            self.session_id = message.new_session.initialize.session_id or self.session_id
        self.received.append(message)
        return message

    def run(self, timeout: float = 60) -> list[ForwardMsg]:
        """Asks for a run of the app (as a page load does) and returns its messages."""
        message = BackMsg()
        message.rerun_script.query_string = ""
        message.rerun_script.page_script_hash = ""
        self.send(message)
        return self.until_finished(timeout)

    def until_finished(self, timeout: float = 60) -> list[ForwardMsg]:
        start, deadline = len(self.received), time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.receive(timeout=max(0.1, deadline - time.monotonic()))
            if message is not None and message.HasField("script_finished"):
                return self.received[start:]
        raise TimeoutError("the app's run did not finish")

    def rerun_fragment(self, fragment_id: str, page_script_hash: str, timeout: float = 120) -> list[ForwardMsg]:
        """Asks for one fragment's run, as the frontend's timer of a ``run_every`` fragment does."""
        message = BackMsg()
        message.rerun_script.fragment_id = fragment_id
        message.rerun_script.page_script_hash = page_script_hash
        message.rerun_script.is_auto_rerun = True
        self.send(message)
        return self.until_finished(timeout)

    def exceptions(self, messages: list[ForwardMsg] | None = None) -> int:
        """How many exception elements the app sent (in ``messages``, or in all received)."""
        return sum(
            message.HasField("delta")
            and message.delta.HasField("new_element")
            and message.delta.new_element.WhichOneof("type") == "exception"
            for message in (self.received if messages is None else messages)
        )

    def clear_cache(self) -> None:
        message = BackMsg()
        message.clear_cache = True
        self.send(message)

    def texts(self) -> list[str]:
        """Every markdown, title, caption and text the app sent, in order."""
        out = []
        for message in self.received:
            if message.HasField("delta") and message.delta.HasField("new_element"):
                element = message.delta.new_element
                kind = element.WhichOneof("type")
                if kind in ("markdown", "text", "heading", "alert"):
                    out.append(getattr(element, kind).body)
        return out

    def buttons(self) -> list[str]:
        """The labels of every button the app sent, form submit buttons included."""
        return [
            message.delta.new_element.button.label
            for message in self.received
            if message.HasField("delta")
            and message.delta.HasField("new_element")
            and message.delta.new_element.WhichOneof("type") == "button"
        ]

    def close(self) -> None:
        self.socket.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
