"""Start-up of the app's runtime on the files source: N generated events over the last 24 h in
one JSON Lines file, read as a server reads it (detections and per-dimension anomalies on),
then a restart from the saved state. Each phase runs in a fresh process, so that resident
memory is its own.

    python -m bench.startup [--events 1000000] [--folder /tmp/insights-bench] [--tracemalloc]
    python -m bench.startup --server [--events 1000000]
    python -m bench.startup --compare-read-ahead [--events 1000000]
    python -m bench.startup --sign-in-form N [--browser] [--events 1000000]

With ``--server`` each phase is the real server instead (``streamlit run server.py``, stopped
with SIGTERM, which saves the state, before the restart) and a headless Chromium, open before
the server starts: seconds from the start to ``/_stcore/health``, to the sign-in form sent
over the websocket (a raw client beside the browser: the server's part) and drawn in the
browser, to the readiness check passing (``collectors.readiness``, sampled every 0.1 s), to every Overview
chart drawn after one "Log in" click, and until the rules have read every event (the Status
page no longer says they are reading); the server's peak resident memory during the start and
once it is ready and every event is in (sampled for 20 s more). With ``--sign-in-form N``, N
first starts of the server alone, each timed to the health check and to the sign-in form
reaching a websocket client, with no browser on the machine.

Prints per phase: seconds to ready (restore and first poll), seconds until every event is in,
peak and final resident memory (after the collector's own trims), the time of one full
``gc.collect()`` over that state (Streamlit's ``runner.postScriptGC`` runs one after every
script and fragment run), and with ``--tracemalloc``
the ten biggest allocation sites once everything is in (tracing slows the run several times).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson

from bench.core import MEAN_RHYTHM, rss_bytes
from collectors.demo import DemoSource

DAY = 86_400
MIB = 1024 * 1024


def generate(path: Path, events: int, now: float) -> None:
    """About ``events`` demo records over the 24 h before ``now`` (5 min of margin, so that
    none expires during the run), written hour by hour."""
    source = DemoSource(seed=11, rate=events / DAY / MEAN_RHYTHM * 1.02)
    start = int(now) - DAY + 300
    written = 0
    partial = path.with_suffix(".part")
    with open(partial, "wb") as out:
        for hour in range(24):
            for record in source.records(start + hour * 3600, min(start + (hour + 1) * 3600, int(now) - 60)):
                out.write(orjson.dumps(record) + b"\n")
                written += 1
    os.replace(partial, path)
    path.with_suffix(".meta").write_text(json.dumps({"events": written, "requested": events, "now": now}))


class Peak(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.peak = rss_bytes()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.1):
            self.peak = max(self.peak, rss_bytes())


def phase(folder: Path, trace: bool, read_ahead: bool = True) -> dict:
    """One start of the runtime in this process: until every event is in, then saved."""
    from collectors.files import FileSource

    FileSource.read_ahead = read_ahead
    os.environ.update(
        {
            "INSIGHTS_SOURCE": "files",
            "INSIGHTS_FILES_PATH": str(folder / "records"),
            "INSIGHTS_STATE_DIR": str(folder / "state"),
            "INSIGHTS_POLL_SECONDS": "2",
        }
    )
    if trace:
        import tracemalloc

        tracemalloc.start(8)
    from settings import load
    from ui.runtime import build

    watch = Peak()
    watch.start()
    began = time.perf_counter()
    shared = build(load())
    collector = shared.collector
    built = time.perf_counter() - began
    collector.start()
    collector.wait_ready()
    ready = time.perf_counter() - began
    while collector.more or collector.health.polls < 2:
        time.sleep(0.2)
    loaded = time.perf_counter() - began
    time.sleep(1)
    import gc

    collected = time.perf_counter()
    gc.collect(2)  # what Streamlit's runner.postScriptGC does after every script and fragment run
    full_gc = time.perf_counter() - collected
    figures = {
        "built_s": built,
        "ready_s": ready,
        "all_in_s": loaded,
        "events": len(shared.engine.buffer),
        "restored": collector.store.restored_events,
        "detections": len(shared.detector.hits()),
        "rejected": collector.health.rejects.total,
        "analysis_errors": dict(collector.analysis_errors),
        "peak_rss_mib": watch.peak / MIB,
        "rss_mib": rss_bytes() / MIB,
        "gc_collect_2_s": full_gc,
        "gc_tracked_objects": len(gc.get_objects()),
    }
    if trace:
        import tracemalloc

        top = tracemalloc.take_snapshot().statistics("lineno")[:10]
        figures["tracemalloc_top"] = [f"{s.size / MIB:7.1f} MiB  {s.traceback[0]}" for s in top]
        figures["tracemalloc_peak_mib"] = tracemalloc.get_traced_memory()[1] / MIB
    collector.stop(timeout=60)  # saves the state, as a shutdown does
    watch.stop.set()
    return figures


def _wait_all_in(page, url: str, expected: int, began: float, limit: float = 1800) -> int:
    """The Status page's "Events in memory" once it holds 99% of ``expected`` or stops growing
    for 30 s (rejects and duplicates count less)."""
    held, since = -1, time.perf_counter()
    while time.perf_counter() - began < limit:
        page.goto(f"{url}/status")
        tile = page.get_by_test_id("stMetric").filter(has_text="Events in memory")
        value = int(tile.get_by_test_id("stMetricValue").inner_text().replace(",", ""))
        if value != held:
            held, since = value, time.perf_counter()
        if held >= 0.99 * expected or time.perf_counter() - since > 30:
            return held
        time.sleep(3)
    return held


def _wait_rules_done(page, url: str, began: float, limit: float = 3600) -> None:
    """Until the Status page no longer says the rules are still reading the start's history."""
    while time.perf_counter() - began < limit:
        page.goto(f"{url}/status")
        page.get_by_test_id("stMetric").first.wait_for()
        page.wait_for_timeout(1000)  # the rest of the page after the tiles
        if not page.get_by_text("The rules are still reading").count():
            return
        time.sleep(3)


def form_served_s(url: str, began: float, figures: dict) -> None:
    """Seconds from ``began`` until the server has sent a new session the sign-in form over
    its websocket, as a browser's first run gets it: the server's part of the sign-in page,
    apart from the browser loading Streamlit's frontend and drawing it."""
    from bench.raw_client import RawClient

    try:
        with RawClient(url) as client:
            client.run(timeout=120)
            if "Log in" in client.buttons():
                figures["sign_in_form_sent_s"] = time.perf_counter() - began
    except Exception as error:  # the browser's figures stand without it
        figures["sign_in_form_sent_s"] = f"failed: {type(error).__name__}: {error}"


def server_phase(folder: Path, name: str, expected: int) -> dict:
    """One start of the real server over ``folder``'s records and state, then SIGTERM."""
    from playwright.sync_api import sync_playwright

    from bench.soak import (
        CHARTS_DRAWN,
        CHROMIUM_ARGS,
        free_port,
        open_when_listening,
        rss_and_cpu,
        sign_in,
        start_server,
        wait_healthy,
    )
    from collectors.readiness import READY_FILE, Readiness

    state = folder / "state"
    port, log_path = free_port(), folder / f"server-{name.split()[0]}.log"
    url = f"http://127.0.0.1:{port}"
    # The browser is open before the server starts, as a user's is: its own start is not the server's.
    playwright = sync_playwright().start()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
    page = browser.new_context(viewport={"width": 1400, "height": 1600}).new_page()
    page.set_default_timeout(600_000)
    began = time.perf_counter()
    server = start_server(folder / "records", state, log_path, port)
    figures: dict[str, object] = {}
    samples: list[tuple[float, float]] = []  # (seconds from start, RSS MiB)
    stop = threading.Event()

    def watch() -> None:
        readiness = Readiness(state / READY_FILE)
        while not stop.wait(0.1):
            try:
                samples.append((time.perf_counter() - began, rss_and_cpu(server.pid)[0] / MIB))
            except OSError:
                return
            if "ready_s" not in figures and readiness.check()[0]:
                figures["ready_s"] = time.perf_counter() - began

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        figures["health_s"] = wait_healthy(url, server, began, log_path)
        served = threading.Thread(target=form_served_s, args=(url, began, figures), daemon=True)
        served.start()  # beside the browser's page load, as a second visitor would
        open_when_listening(page, url, server, began)
        page.get_by_role("button", name="Log in").wait_for()
        figures["sign_in_form_s"] = time.perf_counter() - began
        served.join(120)
        sign_in(page)
        page.get_by_role("heading", name="Overview").wait_for()
        figures["signed_in_s"] = time.perf_counter() - began
        page.wait_for_function(CHARTS_DRAWN, polling=200, timeout=3_600_000)
        figures["all_charts_s"] = time.perf_counter() - began
        figures["events_in_memory"] = _wait_all_in(page, url, expected, began)
        figures["all_in_s"] = time.perf_counter() - began
        _wait_rules_done(page, url, began)
        figures["detections_done_s"] = time.perf_counter() - began
        time.sleep(20)
        figures["rss_peak_until_ready_mib"] = max(
            (m for t, m in samples if t <= figures.get("ready_s", figures["all_in_s"])), default=0.0
        )
        figures["rss_peak_mib"] = max((m for _, m in samples), default=0.0)
        figures["rss_after_20_s_mib"] = samples[-1][1] if samples else 0.0
    finally:
        browser.close()
        playwright.stop()
        server.send_signal(signal.SIGTERM)  # a clean shutdown saves the state
        try:
            server.wait(300)
        except subprocess.TimeoutExpired:
            server.kill()
        stop.set()
    figures["tracebacks"] = log_path.read_text().count("Traceback")
    return figures


def _bare_form(port: int, log_path: Path) -> subprocess.Popen:
    """``bench/bare_form.py`` served by ``streamlit run`` with the app's configuration."""
    from bench.soak import ROOT

    command = [sys.executable, "-m", "streamlit", "run", "bench/bare_form.py", "--server.port", str(port)]
    command += ["--server.address", "127.0.0.1"]
    with open(log_path, "w") as log:
        return subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def sign_in_form_starts(folder: Path, starts: int, browser: bool = False) -> None:
    """First starts of the real server: seconds to the health check and to the sign-in form
    reaching a websocket client (the server's part of the sign-in page), with no browser on the
    machine; with ``browser``, a headless Chromium open before each start asks for the page as
    soon as the server listens, and the form drawn there is timed too (what a user sees).

    Each start is followed by one of ``bench/bare_form.py``, timed in the same way: Streamlit's
    floor on this machine and at this load, printed beside the app's figures with the ratio."""
    from bench.soak import CHROMIUM_ARGS, free_port, open_when_listening, start_server, wait_healthy

    figures: dict[str, dict[str, list[float]]] = {"app": {}, "bare form": {}}
    playwright = chromium = None
    if browser:
        from playwright.sync_api import sync_playwright

        playwright = sync_playwright().start()
        executable = shutil.which("chromium") or shutil.which("chromium-browser")
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
    try:
        for number in range(starts):
            for name in figures:
                shutil.rmtree(folder / "state", ignore_errors=True)
                port, log_path = free_port(), folder / "server-form.log"
                url = f"http://127.0.0.1:{port}"
                page = chromium.new_context().new_page() if chromium else None
                began = time.perf_counter()
                if name == "app":
                    server = start_server(folder / "records", folder / "state", log_path, port)
                else:
                    server = _bare_form(port, log_path)
                timed = figures[name]
                try:
                    if page is None:
                        timed.setdefault("health", []).append(wait_healthy(url, server, began, log_path))
                        sent: dict = {}
                        form_served_s(url, began, sent)
                        timed.setdefault("sign-in form sent", []).append(sent.get("sign_in_form_sent_s", float("nan")))
                    else:
                        open_when_listening(page, url, server, began)
                        page.get_by_role("button", name="Log in").wait_for(timeout=120_000)
                        timed.setdefault("sign-in form drawn", []).append(time.perf_counter() - began)
                        page.context.close()
                finally:
                    server.terminate()
                    server.wait(60)
                line = ", ".join(f"{what} {values[-1]:.2f} s" for what, values in timed.items())
                print(f"  start {number + 1}, {name}: {line}", flush=True)
    finally:
        if chromium:
            chromium.close()
            playwright.stop()
    for what in figures["app"]:
        app, bare = (statistics.median(figures[name][what]) for name in figures)
        spread = f"app min {min(figures['app'][what]):.2f}, max {max(figures['app'][what]):.2f}"
        print(f"median {what}: app {app:.2f} s, bare Streamlit form {bare:.2f} s, {app / bare:.2f}x ({spread})")
    print(f"load after: {os.getloadavg()}")


def compare_read_ahead(folder: Path, pairs: int = 2) -> None:
    """Seconds until every event is in, first starts without and with the read-ahead in turns."""
    seconds: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(pairs):
        for ahead in (False, True):
            shutil.rmtree(folder / "state", ignore_errors=True)
            command = [sys.executable, "-m", "bench.startup", "--folder", str(folder), "--phase", "first start"]
            out = subprocess.run([*command, *([] if ahead else ["--no-read-ahead"])], check=True, capture_output=True)
            figures = json.loads(out.stdout.strip().splitlines()[-1])
            seconds[ahead].append(figures["all_in_s"])
            state = "on " if ahead else "off"
            print(f"  read ahead {state}: every event in after {figures['all_in_s']:.1f} s", flush=True)
    off, on = (statistics.median(seconds[k]) for k in (False, True))
    print(f"median {on:.1f} s with the read-ahead against {off:.1f} s without: {on / off:.2f}x; load {os.getloadavg()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--folder", default="/tmp/insights-bench")
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--server", action="store_true", help="time the real server and a browser instead")
    parser.add_argument(
        "--compare-read-ahead",
        action="store_true",
        help="first starts of the runtime alone, the files read one batch ahead or not, in turns",
    )
    parser.add_argument(
        "--sign-in-form", type=int, metavar="N", help="N first starts of the server alone, timed to the sign-in form"
    )
    parser.add_argument(
        "--browser", action="store_true", help="with --sign-in-form: time the form drawn in a headless Chromium"
    )
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--no-read-ahead", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    folder = Path(args.folder)
    if args.phase:
        print(json.dumps(phase(folder, args.tracemalloc, read_ahead=not args.no_read_ahead)))
        return
    records = folder / "records"
    records.mkdir(parents=True, exist_ok=True)
    data = records / "day.jsonl"
    meta = data.with_suffix(".meta")
    fresh = meta.exists() and json.loads(meta.read_text())["requested"] == args.events
    fresh = fresh and time.time() - json.loads(meta.read_text())["now"] < 3600  # still within the 24 h
    if not fresh:
        print(f"generating {args.events:,} events over the last 24 h into {data} ...", flush=True)
        generate(data, args.events, time.time())
    for stale in (folder / "state").glob("**/*"):
        if stale.is_file():
            stale.unlink()
    size = data.stat().st_size / MIB
    print(f"{json.loads(meta.read_text())['events']:,} events, {size:,.0f} MiB of JSON Lines; load: {os.getloadavg()}")
    if args.compare_read_ahead:
        compare_read_ahead(folder)
        return
    if args.sign_in_form:
        sign_in_form_starts(folder, args.sign_in_form, args.browser)
        return
    if args.server:
        from bench.soak import add_user

        add_user(folder / "state")
    for name in ("first start", "restart from the saved state"):
        began = time.perf_counter()
        if args.server:
            figures = server_phase(folder, name, json.loads(meta.read_text())["events"])
        else:
            command = [sys.executable, "-m", "bench.startup", "--folder", str(folder), "--phase", name]
            if args.tracemalloc:
                command.append("--tracemalloc")
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            figures = json.loads(out.strip().splitlines()[-1])
        print(f"\n{name} ({time.perf_counter() - began:.0f} s, load {os.getloadavg()[0]:.1f}):", flush=True)
        for key, value in figures.items():
            if key == "tracemalloc_top":
                print("  tracemalloc, biggest sites once everything is in:")
                for line in value:
                    print(f"    {line}")
            else:
                print(f"  {key:18} {value:,.1f}" if isinstance(value, float) else f"  {key:18} {value}")
    print(f"\nload after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
