"""``python -m ui.serve [streamlit options]``: ``streamlit run app.py`` that also starts the
runtime (restore, first poll, in the collector's thread) once the server listens, rather than
at the first page view, so that the readiness check turns ready without a visitor. The
container runs this; ``streamlit run app.py`` works the same otherwise.
"""

from __future__ import annotations

import sys
import threading
import time
import urllib.request
from pathlib import Path

from streamlit.web import cli

from settings import SettingsError

APP = str(Path(__file__).resolve().parent.parent / "app.py")
HEALTH_WAIT = 120.0


def _port(argv: list[str]) -> int:
    for i, arg in enumerate(argv):
        if arg.startswith("--server.port="):
            return int(arg.split("=", 1)[1])
        if arg == "--server.port" and i + 1 < len(argv):
            return int(argv[i + 1])
    return 8501


def _start_when_listening(port: int) -> None:
    """The collector's work competes with the server's own start for the interpreter, so it
    waits until the server answers (or a visitor's page starts it first)."""
    deadline = time.monotonic() + HEALTH_WAIT
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                break
        except OSError:
            time.sleep(0.2)
    from ui.runtime import runtime  # the same module-level runtime app.py uses: the script runs here

    try:
        runtime()
    except SettingsError as error:  # the pages show it; the readiness check stays not ready
        print(f"Account Activity Insights: the app's settings are not valid: {error}", file=sys.stderr)


def main(argv: list[str]) -> None:
    threading.Thread(target=_start_when_listening, args=(_port(argv),), name="start-runtime", daemon=True).start()
    cli.main(["run", APP, *argv], prog_name="streamlit")


if __name__ == "__main__":
    main(sys.argv[1:])
