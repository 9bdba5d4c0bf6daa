"""The ``files`` source over windows already counted elsewhere: the Parquet or CSV part files
``jobs/spark_pumps.py`` writes (``metric, window_start, category, subcategory, value``), as
``python -m metrics --windows PATH`` loads them.

The folder is the answer: whenever its part files change (a job run again, a new day range
written beside the others) every window is read again and replaces the engine's, so a job
that rewrites its output is never counted twice. Spark's own bookkeeping (``_SUCCESS``,
``_temporary/`` while it writes, ``.crc``) is not read.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from metrics.engines import load_windows, windows_from_frame
from metrics.pumps import FRAME_COLUMNS, WindowCounts

WINDOW_SUFFIXES = (".parquet", ".csv")
ALL_TIME = (0, 1 << 36)  # every window start in seconds, to the year 4147


def window_parts(path: str | Path) -> list[Path]:
    """The window part files at ``path`` (a file, or a folder read recursively)."""
    path = Path(path)
    if path.is_file():
        return [path] if path.name.lower().endswith(WINDOW_SUFFIXES) else []
    if not path.is_dir():
        return []
    return [
        p
        for p in sorted(path.rglob("*"))
        if p.is_file()
        and p.name.lower().endswith(WINDOW_SUFFIXES)
        and not any(part.startswith(("_", ".")) for part in p.relative_to(path).parts)
    ]


def holds_windows(path: str | Path) -> bool:
    """Whether ``path`` holds windows rather than trail files."""
    return bool(window_parts(path))


class WindowFiles:
    """Keeps the engine's windows equal to the part files under ``path``."""

    name = "files"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.newest_window: int | None = None
        self.parts = 0
        self._signature: tuple | None = None
        self._step = 10

    def refresh(self, engine, now: float) -> int:
        """Reads every part file again if any changed; returns how many window rows it read."""
        parts = window_parts(self.path)
        signature = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in parts)
        if signature == self._signature:
            return 0
        frames = [load_windows(p) for p in parts]
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(FRAME_COLUMNS))
        frame = frame.astype({"window_start": "int64", "value": "int64"})
        counts = windows_from_frame(frame)
        unknown = set(counts) - set(engine.states)
        if unknown:
            raise ValueError(f"unknown metric(s) in {self.path}: {', '.join(sorted(unknown))}")
        for name in engine.states:
            engine.replace_windows(name, counts.get(name, WindowCounts.empty()), *ALL_TIME)
        self._signature, self.parts = signature, len(parts)
        self._step = max(state.pump.step for state in engine.states.values())
        self.newest_window = int(frame["window_start"].max()) if len(frame) else None
        return len(frame)

    def watermark(self, now: float) -> float | None:
        """Every window written is final: the forest may learn them all."""
        return None if self.newest_window is None else self.newest_window + self._step
