"""The browser's own share of the sign-in form: a fresh Chromium context asks for the page of a
server that has been up for a while (its start and the collector's reading long over), and the
seconds to the page loaded and to the Log in button drawn are printed, four tries in a row.

    python -m bench.signin_warm RECORDS_DIR [--wait 200] [--folder /tmp/insights-signin-warm]

RECORDS_DIR is a folder of JSON Lines the files source reads (``bench.soak``'s ``records``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

from bench.soak import CHROMIUM_ARGS, add_user, free_port, start_server, wait_healthy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("records")
    parser.add_argument("--wait", type=float, default=200, help="seconds the server runs before the first try")
    parser.add_argument("--folder", default="/tmp/insights-signin-warm")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    folder = Path(args.folder)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    add_user(folder / "state")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    print(f"load before: {os.getloadavg()}", flush=True)
    began = time.perf_counter()
    server = start_server(Path(args.records), folder / "state", folder / "server.log", port)
    try:
        wait_healthy(url, server, began, folder / "server.log")
        with sync_playwright() as playwright:
            chromium = shutil.which("chromium") or shutil.which("chromium-browser")
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            for wait in (args.wait, 2, 2, 2):
                time.sleep(wait)
                page = browser.new_context().new_page()
                asked = time.perf_counter()
                page.goto(url)
                loaded = time.perf_counter() - asked
                page.get_by_role("button", name="Log in").wait_for(timeout=120_000)
                drawn = time.perf_counter() - asked
                up = time.perf_counter() - began
                print(f"server up {up:.0f} s: page loaded {loaded:.2f} s, Log in drawn {drawn:.2f} s", flush=True)
                page.context.close()
            browser.close()
    finally:
        server.terminate()
        server.wait(60)
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
