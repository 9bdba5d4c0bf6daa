"""Whether the app is ready: its saved history restored and its first poll done.

Streamlit's ``/_stcore/health`` answers as soon as the server listens, which is liveness.
Readiness is a small file in the state folder that the runtime writes when it starts (not
ready) and when its collector is ready; ``python -m collectors.readiness`` exits 0 only while
the file says ready *and* names this very server process (its pid and start time), so a
file left by a previous container on the same volume never passes for a new one.

    python -m collectors.readiness [--state-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import settings
from storage import ensure_private_dir, write_private

READY_FILE = "ready.json"


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), or None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name


class Readiness:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def write(self, *, ready: bool) -> None:
        pid = os.getpid()
        state = {"ready": ready, "pid": pid, "started": process_start(pid), "at": time.time()}
        try:
            ensure_private_dir(str(self.path.parent))
            write_private(self.path, json.dumps(state))
        except OSError as error:  # an unwritable state folder is shown elsewhere; never fatal here
            print(f"Account Activity Insights: cannot write {self.path}: {error}", file=sys.stderr)

    def check(self) -> tuple[bool, str]:
        """(ready, why)."""
        try:
            state = json.loads(self.path.read_text())
            pid = int(state["pid"])
        except FileNotFoundError:
            return False, "not started: no readiness file yet"
        except (OSError, ValueError, KeyError, TypeError) as error:
            return False, f"unreadable readiness file: {error}"
        if process_start(pid) != state.get("started") or not _alive(pid):
            return False, f"the process that wrote {self.path.name} (pid {pid}) is gone"
        if not state.get("ready"):
            return False, "starting: restoring the saved history and reading the first events"
        return True, "ready"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m collectors.readiness", description=__doc__.split("\n\n")[0])
    parser.add_argument("--state-dir", help="the state folder (default: the INSIGHTS_STATE_DIR setting)")
    args = parser.parse_args(argv)
    folder = args.state_dir or str(settings.load()["state_dir"])
    ready, why = Readiness(Path(folder) / READY_FILE).check()
    print(why)
    return 0 if ready else 1


if __name__ == "__main__":
    sys.exit(main())
