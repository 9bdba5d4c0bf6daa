"""A real ``streamlit run`` on a free port, and headless Chromium (the Debian package) through
Playwright. Without Chromium the browser tests are skipped, unless ``INSIGHTS_REQUIRE_BROWSER=1``
(as CI sets it) makes that a failure."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from collectors.demo import DemoSource
from collectors.readiness import READY_FILE, Readiness

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
MARK = "window.__xss"
PAYLOADS = {
    "user": f'<img src=x onerror="{MARK}=1">',
    "eventName": f"<script>{MARK}=2</script>",
    "userAgent": f'<svg onload="{MARK}=3"></svg><b>bold</b>',
    "sourceIPAddress": f'"><img src=x onerror={MARK}=4>',
    "errorCode": f'<iframe srcdoc="<script>parent.{MARK}=5</script>"></iframe>',
}


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def hostile_records(now: float, count: int = 700) -> list[dict]:
    """Records whose user name, event name, user agent, source IP and EC2 error code try to run
    script; frequent enough to be in every top-10 chart."""
    records = []
    for i in range(count):
        second = now - 1800 + i * 2.5
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))
        ec2 = i % 2 == 0
        records.append(
            {
                "eventVersion": "1.10",
                "userIdentity": {
                    "type": "IAMUser",
                    "principalId": "AIDAHOSTILE",
                    "arn": f"arn:aws:iam::111122223333:user/{PAYLOADS['user']}",
                    "accountId": "111122223333",
                    "userName": PAYLOADS["user"],
                },
                "eventTime": stamp,
                "eventSource": "ec2.amazonaws.com" if ec2 else "sts.amazonaws.com",
                "eventName": PAYLOADS["eventName"],
                "awsRegion": "us-east-1",
                "sourceIPAddress": PAYLOADS["sourceIPAddress"],
                "userAgent": PAYLOADS["userAgent"],
                "errorCode": PAYLOADS["errorCode"] if ec2 else None,
                "requestParameters": {"note": PAYLOADS["user"]},
                "eventID": f"hostile-{i:04d}",
                "readOnly": True,
                "eventType": "AwsApiCall",
                "recipientAccountId": "111122223333",
            }
        )
    return records


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(
        self, folder: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = (), port: int | None = None
    ):
        self.folder = folder
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = folder / "server.log"
        records = folder / "records"
        records.mkdir()
        now = time.time()
        demo = DemoSource(seed=11).records(now - 3600, now - 60)
        with open(records / "activity.jsonl", "w") as out:
            for record in demo + hostile_records(now):
                out.write(json.dumps(record) + "\n")
        old = now - 10
        os.utime(records / "activity.jsonl", (old, old))
        env = {
            **os.environ,
            "INSIGHTS_SOURCE": "files",
            "INSIGHTS_FILES_PATH": str(records),
            "INSIGHTS_STATE_DIR": str(folder / "state"),
            "INSIGHTS_POLL_SECONDS": "2",
            # Quick refreshes, so that a test can watch one happen.
            "INSIGHTS_LINE_REFRESH_SECONDS": "4",
            "INSIGHTS_BAR_REFRESH_SECONDS": "4",
            **(env or {}),
        }
        self.log = open(self.log_path, "w")  # noqa: SIM115 - the server writes to it until stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "server.py", "--server.port", str(self.port), *args],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._wait_healthy()
        self.wait_ready()

    def threads(self) -> int:
        """How many threads the server process runs now."""
        return len(os.listdir(f"/proc/{self.process.pid}/task"))

    def _wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"streamlit did not start:\n{self.log_path.read_text()}")

    def wait_ready(self, timeout: float = 60) -> None:
        """Until the readiness check passes: the collector's first poll is in."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if Readiness(self.folder / "state" / READY_FILE).check()[0]:
                return
            time.sleep(0.3)
        raise RuntimeError(f"the app did not get ready:\n{self.log_path.read_text()}")

    def logged_password(self) -> str:
        lines = [line for line in self.log_path.read_text().splitlines() if "password:" in line]
        assert len(lines) == 1, lines
        return lines[0].split("password:", 1)[1].split()[0]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


@pytest.fixture(scope="module")
def browser():
    path = chromium_path()
    if path is None:
        if os.environ.get("INSIGHTS_REQUIRE_BROWSER") == "1":
            pytest.fail("INSIGHTS_REQUIRE_BROWSER=1 but no chromium on PATH (apt-get install chromium)")
        pytest.skip("no chromium on PATH: apt-get install chromium to run the browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = Server(tmp_path_factory.mktemp("e2e"))
    yield running
    running.stop()
