"""``python -m ui.serve [streamlit options]``: ``streamlit run app.py`` that starts the
runtime (restore, first poll, in the collector's thread) when the server starts rather than
at the first page view, so that the readiness check turns ready without a visitor. The
container runs this; ``streamlit run app.py`` works the same otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path

from streamlit.web import cli

from settings import SettingsError
from ui.runtime import runtime

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def main(argv: list[str]) -> None:
    try:
        runtime()  # the same module-level runtime app.py uses: the script runs in this process
    except SettingsError as error:  # the pages show it; the readiness check stays not ready
        print(f"Account Activity Insights: the app's settings are not valid: {error}", file=sys.stderr)
    cli.main(["run", APP, *argv], prog_name="streamlit")


if __name__ == "__main__":
    main(sys.argv[1:])
