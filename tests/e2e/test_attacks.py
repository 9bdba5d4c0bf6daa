"""What an attacker can send a running server without a browser, through a raw Streamlit
websocket client (``bench/raw_client.py``), and what must hold against it.

The server reads a folder of records and alerts to a webhook this module runs, so that the
alerts it sends can be counted from outside.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from bench.raw_client import RawClient
from tests.e2e.conftest import ROOT, Server
from tests.e2e.test_browser import new_page, settle

REFUSED = re.compile(r"Wrong user name or password|Too many failed sign-ins")
COOLDOWN = re.compile(r"Too many failed sign-ins")


class Webhook:
    """A local Slack-compatible webhook that keeps every body it receives."""

    def __init__(self):
        self.bodies: list[dict] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def mentioning(self, text: str) -> list[dict]:
        return [body for body in self.bodies if text in json.dumps(body)]

    def stop(self):
        self.server.shutdown()


@pytest.fixture(scope="module")
def webhook():
    hook = Webhook()
    yield hook
    hook.stop()


@pytest.fixture(scope="module")
def attacked(tmp_path_factory, webhook):
    running = Server(
        tmp_path_factory.mktemp("attacks"),
        env={"INSIGHTS_ALERT_WEBHOOK_URL": webhook.url, "INSIGHTS_ALERT_MIN_SEVERITY": "critical"},
    )
    yield running
    running.stop()


def failed_sign_in(page, url: str, name: str = "admin") -> str:
    """Opens the sign-in page, waits until it is live, tries a wrong password; the refusal."""
    page.goto(url)
    settle(page)
    refusal = page.get_by_text(REFUSED)
    for _ in range(5):  # the cookie component's first message reruns the page and can eat a click
        page.get_by_label("Username").fill(name)
        page.get_by_label("Password", exact=True).fill("wrong password")
        page.get_by_role("button", name="Log in").click()
        try:
            refusal.wait_for(timeout=10_000)
            return refusal.inner_text()
        except PlaywrightTimeout:
            continue
    raise AssertionError("the sign-in form never answered")


def wait_for(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.3)


def fresh_record(technique: str, event_id: str) -> dict:
    """The first record of a Stratus Red Team technique, made to happen now."""
    path = ROOT / "tests" / "data" / "stratus-red-team" / f"aws.defense-evasion.{technique}.json"
    record = json.loads(path.read_text())[0]
    record["eventID"] = event_id
    record["eventTime"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return record


def drop_record(server: Server, name: str, record: dict) -> None:
    path = server.folder / "records" / f"{name}.jsonl"
    path.write_text(json.dumps(record) + "\n")


def test_anonymous_clear_cache_messages_leave_the_runtime_the_throttle_and_alerts_alone(attacked, webhook, browser):
    page = new_page(browser)
    refusals = [failed_sign_in(page, attacked.url) for _ in range(6)]
    assert COOLDOWN.search(refusals[-1]), refusals  # five failures start a cooldown for this name and client

    drop_record(attacked, "before", fresh_record("cloudtrail-stop", "before-clear-cache"))
    wait_for(lambda: webhook.mentioning("before-clear-cache"))
    with RawClient(attacked.url) as client:
        client.run()
        time.sleep(2)
        threads = attacked.threads()
        for _ in range(3):
            client.clear_cache()
            client.run()  # a run after each: a cleared runtime would be built again here
        time.sleep(4)
        assert attacked.threads() <= threads

    after = fresh_record("cloudtrail-stop", "after-clear-cache")
    # Another principal: the same one's second stop within minutes joins its first hit (one action, one hit).
    account = after["recipientAccountId"]
    after["userIdentity"] = {
        "type": "IAMUser",
        "userName": "second-admin",
        "principalId": "AIDASECONDADMIN00000",
        "arn": f"arn:aws:iam::{account}:user/second-admin",
        "accountId": account,
    }
    drop_record(attacked, "after", after)
    wait_for(lambda: webhook.mentioning("after-clear-cache"))
    time.sleep(6)  # a second collector or alerter would have sent its copy by now
    assert len(webhook.mentioning("after-clear-cache")) == 1
    assert len(webhook.mentioning("before-clear-cache")) == 1

    assert COOLDOWN.search(failed_sign_in(page, attacked.url))
    page.context.close()


def status(url: str, method: str = "GET", data: bytes | None = None) -> int:
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def test_the_metrics_endpoint_is_off_and_uploads_are_refused(attacked):
    assert status(f"{attacked.url}/_stcore/health") == 200
    assert status(f"{attacked.url}/_stcore/metrics") == 404
    with RawClient(attacked.url) as client:
        client.run()
        target = f"{attacked.url}/_stcore/upload_file/{client.session_id}/file-1"
        body = (
            b"--x\r\nContent-Disposition: form-data; name=file; filename=a.bin\r\n\r\n" + b"0" * 1024 + b"\r\n--x--\r\n"
        )
        assert status(target, "PUT", body) == 403


@pytest.fixture(scope="module")
def with_metrics(tmp_path_factory):
    running = Server(tmp_path_factory.mktemp("metrics"), env={"INSIGHTS_METRICS_ENDPOINT": "true"})
    yield running
    running.stop()


def cache_counters(server: Server) -> list[str]:
    """The figures of every st.cache_data and st.cache_resource (session state, also reported,
    follows how many sessions are open)."""
    with urllib.request.urlopen(f"{server.url}/_stcore/metrics", timeout=10) as answer:
        lines = answer.read().decode().splitlines()
    return [line for line in lines if line.startswith("cache_") and "st_session_state" not in line]


def test_no_counter_tells_whether_a_user_name_exists(with_metrics, browser):
    page = new_page(browser)
    failed_sign_in(page, with_metrics.url, "admin")
    known = cache_counters(with_metrics)
    failed_sign_in(page, with_metrics.url, "nobody-by-this-name")
    failed_sign_in(page, with_metrics.url, "nobody-else")
    assert cache_counters(with_metrics) == known
    page.context.close()


def test_a_known_session_id_without_its_cookie_takes_over_nothing(with_metrics, browser):
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    page = new_page(browser)
    ids = []

    def watch(socket):
        def frame(payload):
            if isinstance(payload, bytes):
                message = ForwardMsg()
                message.ParseFromString(payload)
                if message.HasField("new_session") and message.new_session.initialize.session_id:
                    ids.append(message.new_session.initialize.session_id)

        socket.on("framereceived", frame)

    page.on("websocket", watch)
    page.goto(with_metrics.url)
    settle(page)
    password = with_metrics.logged_password()
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in").click()
    page.get_by_text("Choose a new password").first.wait_for()
    with RawClient(with_metrics.url, session_id=ids[-1]) as intruder:
        intruder.run()
        shown = intruder.texts()
    assert "Choose a new password" not in shown
    assert "Sign in to Account Activity Insights" in shown
    page.context.close()
