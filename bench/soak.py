"""Soak test: the real server on generated data, N signed-in browser sessions refreshing on
their own, new events arriving; prints what a user and an operator would see.

    python -m bench.soak [--events 100000] [--sessions 3] [--browsers N] [--minutes 5] [--rate 10]
                         [--post-script-gc true|false] [--folder /tmp/insights-soak]

It generates ``--events`` demo records over the last 24 h (files source, JSON Lines), starts
``streamlit run server.py`` on 127.0.0.1 with a fresh state folder and a user for the test, and
opens ``--sessions`` headless Chromium sessions (Debian's chromium, as the browser tests) on
the Overview, whose charts refresh every 10 s (with ``--browsers N``, N of them in Chromium and
the others as websocket sessions asking for the same refreshes: the server's latency without ten
browsers' drawing on the same cores). Meanwhile it appends the demo's events at a mean of
``--rate`` per second over its week (its rhythm: busiest at 14:00 UTC on weekdays, a third of
that at night and half of it at weekends, so a Sunday evening's run gets about a third of
``--rate``; the figures print the count appended) and samples the server's resident memory
and CPU every 5 s. Everything is bounded: at most 20 sessions and 120 minutes.

Prints: seconds from the start to the sign-in page, to signed in, and to every chart of the
Overview, and until the rules have read the history; resident memory at the start, peak and
end; the memory slope over the second half of the run (MiB/min); server CPU; fragment runs and
their p50/p95 (from a fragment's rerun request to its script-finished message, as the browser
sees them), during the start and during the soak apart; errors (exceptions on the
page, tracebacks in the server log).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import orjson

from auth.users import COOKIE_NAME
from bench.startup import _wait_rules_done, generate
from collectors.demo import DemoSource

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
PASSWORD = "soak test passphrase 1"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_and_cpu(pid: int) -> tuple[float, float]:
    """Resident bytes and CPU seconds (user + system) of a process."""
    rss = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return rss, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class FragmentTimer:
    """Fragment rerun requests and the script-finished messages after them, per session."""

    def __init__(self):
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        self.back, self.forward = BackMsg, ForwardMsg
        self.pending: dict[int, float] = {}
        self.durations: list[float] = []

    def attach(self, page, number: int) -> None:
        def on_socket(ws):
            ws.on("framesent", lambda payload: self._sent(number, payload))
            ws.on("framereceived", lambda payload: self._received(number, payload))

        page.on("websocket", on_socket)

    def _sent(self, number: int, payload) -> None:
        if isinstance(payload, bytes):
            message = self.back()
            message.ParseFromString(payload)
            if message.HasField("rerun_script") and message.rerun_script.fragment_id:
                self.pending[number] = time.perf_counter()

    def _received(self, number: int, payload) -> None:
        # script_finished is a few bytes; parsing every chart's frame would slow the timer down
        if isinstance(payload, bytes) and len(payload) < 256 and number in self.pending:
            message = self.forward()
            message.ParseFromString(payload)
            if message.WhichOneof("type") == "script_finished":
                self.durations.append(time.perf_counter() - self.pending.pop(number))


class SocketSession(threading.Thread):
    """A signed-in session without a browser: the Overview's run over the websocket with the
    sign-in cookie, then each auto-refreshing fragment's rerun on its own timer, as the
    frontend's timers ask for them. Timed like the browsers' (request to script-finished). It
    lists no cached messages, so the server sends every chart whole: if anything, more work
    than a browser's refresh."""

    def __init__(self, url: str, cookie: str, durations: list[float], stop: threading.Event):
        super().__init__(daemon=True)
        self.url, self.cookie, self.durations, self.stop = url, cookie, durations, stop
        self.exceptions = self.timeouts = 0
        self.error: str | None = None

    def run(self) -> None:
        from bench.raw_client import RawClient

        try:
            with RawClient(self.url, cookie=self.cookie) as client:
                self.exceptions += client.exceptions(client.run(timeout=600))
                if "Log out" not in client.buttons():  # the sign-in form: the cookie was refused
                    self.error = "not signed in by the cookie: the server sent the sign-in form"
                    return
                page = next((m.new_session.page_script_hash for m in client.received if m.HasField("new_session")), "")
                timers: dict[str, float] = {}
                due: dict[str, float] = {}
                while not self.stop.is_set():
                    for message in client.received:
                        if _whole_run(message):  # its fragments declare their timers again
                            timers.clear()
                            due.clear()
                        elif message.HasField("auto_rerun"):
                            fragment, every = message.auto_rerun.fragment_id, message.auto_rerun.interval
                            if fragment not in timers:
                                due[fragment] = time.monotonic() + every
                            timers[fragment] = every
                        elif message.HasField("stop_auto_rerun"):
                            for fragment in message.stop_auto_rerun.fragment_ids:
                                timers.pop(fragment, None)
                                due.pop(fragment, None)
                    client.received.clear()  # the charts of 30 minutes would fill this process
                    if not due:
                        # A run the server started itself (the start-up bar's rerun of the whole
                        # app) declares the timers: read the socket while waiting for them.
                        self._listen(client, 1.0)
                        continue
                    fragment = min(due, key=due.get)
                    if self._listen(client, due[fragment] - time.monotonic()):
                        continue  # messages came (a new run?): look at the timers again
                    if self.stop.is_set():
                        return
                    began = time.perf_counter()
                    try:
                        self.exceptions += client.exceptions(client.rerun_fragment(fragment, page))
                    except TimeoutError:
                        self.timeouts += 1  # counted; the timers carry on as a browser's would
                    self.durations.append(time.perf_counter() - began)
                    late, every = time.monotonic() - due[fragment], timers[fragment]
                    due[fragment] += every * max(1, -(-late // every))  # the timer's next tick
        except Exception as error:  # reported with the figures: a dropped socket is a soak failure
            self.error = f"{type(error).__name__}: {error}"

    def _listen(self, client, seconds: float) -> bool:
        """Reads the socket for up to ``seconds`` (as the browser always does) and whether a
        message changed the timers; False at once when the soak stops."""
        deadline = time.monotonic() + max(0.0, seconds)
        while not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            message = client.receive(timeout=min(left, 0.5))
            if message is not None and (
                _whole_run(message) or message.HasField("auto_rerun") or message.HasField("stop_auto_rerun")
            ):
                return True
        return False


def _whole_run(message) -> bool:
    """A new_session that starts a run of the whole app. A fragment's run begins with one too,
    tagged with the fragment's id, and keeps the timers (as the frontend does)."""
    return message.HasField("new_session") and not message.metadata.run.fragment_ids


def add_user(state: Path) -> None:
    """The bench's user, with its password already chosen, in the state folder's user file."""
    from auth import users

    def add(config):
        entry = users.new_user("soak", PASSWORD)
        entry["must_change_password"] = False
        config["credentials"]["usernames"]["soak"] = entry

    users.update(str(state / "users.yaml"), add, create=True)


def start_server(records: Path, state: Path, log_path: Path, port: int, options: tuple[str, ...] = ()):
    """``streamlit run server.py`` on 127.0.0.1:``port`` over the files in ``records``."""
    env = {
        **os.environ,
        "INSIGHTS_SOURCE": "files",
        "INSIGHTS_FILES_PATH": str(records),
        "INSIGHTS_STATE_DIR": str(state),
    }
    command = [sys.executable, "-m", "streamlit", "run", "server.py", "--server.port", str(port)]
    command += ["--server.address", "127.0.0.1", *options]
    with open(log_path, "w") as log:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_healthy(url: str, server, began: float, log_path: Path, limit: float = 300) -> float:
    """Seconds from ``began`` until ``/_stcore/health`` answers."""
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                return time.perf_counter() - began
        except OSError:
            if server.poll() is not None or time.perf_counter() - began > limit:
                raise RuntimeError(f"the server did not start: see {log_path}") from None
            time.sleep(0.05)


def open_when_listening(page, url: str, server, began: float, limit: float = 120) -> None:
    while True:  # the server may not listen yet
        try:
            page.goto(url)
            return
        except Exception:
            if server.poll() is not None or time.perf_counter() - began > limit:
                raise
            time.sleep(0.05)


def signed_in_cookie(page, timeout: float = 60) -> str:
    """The page's cookies once they hold the sign-in's: the cookie component writes it from the
    browser a moment after the signed-in page is drawn, and the websocket sessions taken
    without it were each shown the sign-in form (idle for the whole soak, 2 of 5 tries at 200k)."""
    deadline = time.monotonic() + timeout
    while True:
        cookies = page.context.cookies()
        if any(c["name"] == COOKIE_NAME for c in cookies) or time.monotonic() > deadline:
            return "; ".join(f"{c['name']}={c['value']}" for c in cookies)
        page.wait_for_timeout(100)


def sign_in(page) -> None:
    page.get_by_label("Username").fill("soak")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


# Every Overview chart drawn, and no start-up progress bar left (its text ends "Charts fill in...").
CHARTS_DRAWN = (
    "() => document.querySelectorAll('[data-testid=\"stVegaLiteChart\"]').length >= 2"
    " && !/Charts fill/.test(document.body.innerText)"
)


def step(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def append_events(path: Path, source: DemoSource, since: float, until: float) -> int:
    records = source.records(since, until)
    with open(path, "ab") as out:
        out.write(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return len(records)


def report_progress(samples, durations, pages, appended: int) -> None:
    """One line on stderr every few minutes of the soak: what the end would print so far."""
    rss = samples[-1][1] / MIB if samples else 0.0
    p95 = float(np.percentile(durations, 95)) if durations else float("nan")
    shown = sum(page.locator('[data-testid="stException"]').count() for page in pages)
    runs = len(durations)
    step(f"RSS {rss:,.0f} MiB, {runs} fragment runs, p95 {p95:.2f} s, {shown} exceptions, {appended:,} events appended")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--sessions", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--rate", type=float, default=10, help="the demo's mean events/s over its week, appended")
    parser.add_argument("--post-script-gc", choices=("true", "false"), help="runner.postScriptGC (default: config)")
    parser.add_argument(
        "--browsers",
        type=int,
        help="how many of the sessions are Chromium pages (default: all); the others are websocket sessions"
        " that refresh the same fragments without a browser's CPU on the machine",
    )
    parser.add_argument("--folder", default="/tmp/insights-soak")
    args = parser.parse_args()
    sessions, minutes = min(args.sessions, 20), min(args.minutes, 120)
    browsers = max(1, min(sessions, sessions if args.browsers is None else args.browsers))
    from playwright.sync_api import sync_playwright

    from bench.core import MEAN_RHYTHM

    folder = Path(args.folder)
    records, state = folder / "records", folder / "state"
    shutil.rmtree(state, ignore_errors=True)
    records.mkdir(parents=True, exist_ok=True)
    day, live = records / "day.jsonl", records / "live.jsonl"
    meta = day.with_suffix(".meta")
    known = json.loads(meta.read_text()) if meta.exists() else {}
    if known.get("requested") != args.events or time.time() - known.get("now", 0) > 3600:
        print(f"generating {args.events:,} events over the last 24 h ...", flush=True)
        generate(day, args.events, time.time())
    live.write_bytes(b"")

    add_user(state)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    options = ("--runner.postScriptGC", args.post_script_gc) if args.post_script_gc else ()
    log_path = folder / "server.log"
    print(f"load before: {os.getloadavg()}", flush=True)
    figures: dict[str, object] = {}
    samples: list[tuple[float, float, float]] = []
    timer = FragmentTimer()
    during_start = socket_start = 0  # fragment runs before the soak proper
    socket_durations: list[float] = []
    sockets: list[SocketSession] = []
    stop_sockets = threading.Event()
    exceptions = 0
    server = None
    try:
        with sync_playwright() as playwright:
            # The browser and its sessions are open before the server starts, as users' are: the
            # browser's own start is not the server's.
            chromium = shutil.which("chromium") or shutil.which("chromium-browser")
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            pages = []
            for number in range(browsers):
                context = browser.new_context(viewport={"width": 1400, "height": 1600})
                page = context.new_page()
                page.set_default_timeout(300_000)
                timer.attach(page, number)
                pages.append(page)
            began = time.perf_counter()
            server = start_server(records, state, log_path, port, options)
            figures["/_stcore/health after s"] = wait_healthy(url, server, began, log_path)
            first = pages[0]
            open_when_listening(first, url, server, began)
            first.get_by_role("button", name="Log in").wait_for()
            figures["sign-in page after s"] = time.perf_counter() - began
            step(f"sign-in page after {figures['sign-in page after s']:.1f} s")
            clicks = 0
            for page in pages:
                if page is not first:
                    page.goto(url)
                for attempt in range(3):  # a click that did not sign in is counted, then repeated
                    if not attempt or page.get_by_label("Username").count():
                        sign_in(page)
                        clicks += 1
                    try:
                        # .first: while a rerun draws, the old heading and the new one may both be there
                        page.get_by_role("heading", name="Overview").first.wait_for(timeout=60_000)
                        break
                    except Exception as error:
                        why = str(error).splitlines()[0]
                        step(f"session {pages.index(page) + 1}: click {attempt + 1} did not sign in: {why}")
                        page.screenshot(path=str(folder / f"sign-in-{pages.index(page) + 1}-{attempt + 1}.png"))
            figures["Log in clicks for all sessions"] = clicks
            cookie = signed_in_cookie(first)
            sockets = [SocketSession(url, cookie, socket_durations, stop_sockets) for _ in range(sessions - browsers)]
            for socket_session in sockets:
                socket_session.start()
            figures["all signed in after s"] = time.perf_counter() - began
            step(f"all sessions signed in: {browsers} in Chromium, {len(sockets)} over a websocket alone")
            first.wait_for_function(CHARTS_DRAWN, timeout=3_600_000)  # the whole backlog in: minutes at 1M
            figures["every Overview chart after s"] = time.perf_counter() - began
            step("every Overview chart drawn; waiting for the rules to read the history")
            # The soak's figures are the steady state's: the start (and the rules reading its
            # history behind the charts) is reported on its own.
            _wait_rules_done(first, url, began)
            figures["rules through the history after s"] = time.perf_counter() - began
            first.goto(url)
            first.wait_for_function(CHARTS_DRAWN, timeout=600_000)
            during_start, socket_start = len(timer.durations), len(socket_durations)
            step("rules through; soaking")
            source = DemoSource(seed=23, rate=args.rate / MEAN_RHYTHM)
            appended, last_append = 0, time.time()
            end = time.perf_counter() + minutes * 60
            next_sample = next_report = time.perf_counter()
            while time.perf_counter() < end:
                now = time.time()
                if now - last_append >= 2:
                    appended += append_events(live, source, last_append, now)
                    last_append = now
                if time.perf_counter() >= next_sample:
                    rss, cpu = rss_and_cpu(server.pid)
                    samples.append((time.perf_counter(), rss, cpu))
                    next_sample += 5
                if time.perf_counter() >= next_report:  # a run stopped early still leaves figures
                    report_progress(samples, timer.durations[during_start:], pages, appended)
                    next_report += 300
                # Playwright hands over the pages' websocket frames only while it waits: short waits
                # keep the fragment timer's clock within about 50 ms of the frames.
                first.wait_for_timeout(50)
            for page in pages:
                exceptions += page.locator('[data-testid="stException"]').count()
            stop_sockets.set()
            for socket_session in sockets:
                socket_session.join(150)
                exceptions += socket_session.exceptions
            if sockets:
                errors = [s.error for s in sockets if s.error]
                figures["websocket sessions that failed"] = f"{len(errors)} {errors[:1]}" if errors else 0
                figures["websocket fragment runs unfinished after 120 s"] = sum(s.timeouts for s in sockets)
            figures["events appended"] = appended
            browser.close()
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
    times = np.array([s[0] for s in samples])
    rss = np.array([s[1] for s in samples]) / MIB
    half = len(samples) // 2
    if len(samples) >= 4:
        slope = np.polyfit((times[half:] - times[half]) / 60, rss[half:], 1)[0]
        figures["memory slope, 2nd half, MiB/min"] = float(slope)
    if samples:
        figures["RSS at start of soak MiB"] = float(rss[0])
        figures["RSS peak MiB"] = float(rss.max())
        figures["RSS at end MiB"] = float(rss[-1])
        span = samples[-1][0] - samples[0][0]
        figures["server CPU during soak, % of one core"] = 100 * (samples[-1][2] - samples[0][2]) / max(span, 1e-9)
    measured = [
        ("during the start", np.array(timer.durations[:during_start])),
        ("during the soak", np.array(timer.durations[during_start:])),
    ]
    if sockets:
        measured += [
            ("websocket sessions, during the start", np.array(socket_durations[:socket_start])),
            ("websocket sessions, during the soak", np.array(socket_durations[socket_start:])),
        ]
    for label, durations in measured:
        figures[f"fragment runs {label}"] = len(durations)
        if len(durations):
            figures[f"fragment p50 s {label}"] = float(np.percentile(durations, 50))
            figures[f"fragment p95 s {label}"] = float(np.percentile(durations, 95))
    figures["exceptions on the pages"] = exceptions
    figures["tracebacks in the server log"] = log_path.read_text().count("Traceback")
    print(
        f"{args.events:,} events over 24 h, {sessions} sessions ({browsers} in Chromium) x {minutes:g} min,"
        f" {args.rate:g} events/s appended,"
        f" postScriptGC {args.post_script_gc or 'as configured'}"
    )
    for key, value in figures.items():
        print(f"  {key:52} {value:,.2f}" if isinstance(value, float) else f"  {key:52} {value}")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
