"""What the new-file mode keeps over a restart: the windows each query added and the log files
it counted, in the state folder.

Each query's answer is one file (``delta-N.parquet``) holding its window rows and the paths of
the files it counted, written whole (``storage.replacing``) before its windows go to the engine
and before its queue messages are deleted. So a restart at any point neither loses nor counts
twice: a delta on disk names its files, whose messages, if they come back, are repeats; a query
whose delta was not written left its messages in the queue, and they are counted again.

Every ``compact_every`` deltas are merged into one ``base-N.parquet`` (windows summed, those
older than the retention dropped, the last ``remembered`` files kept); a base supersedes the
deltas up to its N, so a crash between writing it and removing them changes nothing.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pandas as pd

from metrics.pumps import FRAME_COLUMNS
from storage import ensure_private_dir, replacing

FILE_ROW = "(counted file)"  # a row naming a counted file (category) in its order (window_start)
COMPACT_EVERY = 64
PART = re.compile(r"^(base|delta)-(\d{12})\.parquet$")
KEY = ["metric", "window_start", "category", "subcategory"]


class WindowLog:
    def __init__(
        self,
        folder: str | Path,
        *,
        retention_seconds: float | None = None,
        remembered: int = 200_000,
        compact_every: int = COMPACT_EVERY,
    ):
        self.folder = Path(folder)
        self.retention_seconds = retention_seconds
        self.remembered = remembered
        self.compact_every = compact_every
        self.last_error = ""  # a part that could not be read: shown on Status
        self._sequence = self._newest()[0]

    def _parts(self) -> list[tuple[int, str, Path]]:
        if not self.folder.is_dir():
            return []
        found = [(int(m[2]), m[1], p) for p in self.folder.iterdir() if (m := PART.match(p.name))]
        return sorted(found)

    def _newest(self) -> tuple[int, int]:
        """(the newest delta's or base's number, the newest base's number), 0 when none."""
        parts = self._parts()
        bases = [n for n, kind, _ in parts if kind == "base"]
        return (max((n for n, _, _ in parts), default=0), max(bases, default=0))

    def _live(self) -> list[Path]:
        """The newest base and the deltas after it, oldest first."""
        base = self._newest()[1]
        return [p for n, kind, p in self._parts() if (kind == "base" and n == base) or (kind == "delta" and n > base)]

    def load(self) -> tuple[pd.DataFrame, list[str]]:
        """The windows of every query kept (summed) and the files counted, oldest first."""
        frames = []
        for path in self._live():
            try:
                frames.append(pd.read_parquet(path))
            except Exception as error:  # a damaged part: the rest is still worth restoring
                self.last_error = f"{path.name} unreadable, skipped: {type(error).__name__}: {error}"
        if not frames:
            return pd.DataFrame(columns=list(FRAME_COLUMNS)), []
        rows = pd.concat(frames, ignore_index=True)
        named = rows["metric"] == FILE_ROW
        files = rows.loc[named, "category"].tolist()
        windows = rows.loc[~named]
        windows = windows.groupby(KEY, sort=True, as_index=False)["value"].sum()
        return windows[list(FRAME_COLUMNS)], files

    def append(self, windows: pd.DataFrame, files: list[str], now: float) -> None:
        """One query's answer on disk, whole or not at all; raises what the disk raises."""
        ensure_private_dir(str(self.folder))
        self._sequence += 1
        named = pd.DataFrame(
            {"metric": FILE_ROW, "window_start": range(len(files)), "category": files, "subcategory": "", "value": 0}
        )
        self._write(f"delta-{self._sequence:012d}.parquet", pd.concat([_typed(windows), _typed(named)]))
        if self._sequence - self._newest()[1] >= self.compact_every:
            try:
                self.compact(now)
            except OSError as error:  # the delta is written: failing now would count its files again
                self.last_error = f"compaction failed, the deltas stay: {error}"

    def compact(self, now: float) -> None:
        """Merges the live parts into one base; older parts are removed after it is written."""
        windows, files = self.load()
        if self.retention_seconds is not None:
            windows = windows[windows["window_start"] >= now - self.retention_seconds]
        files = files[-self.remembered :]
        named = pd.DataFrame(
            {"metric": FILE_ROW, "window_start": range(len(files)), "category": files, "subcategory": "", "value": 0}
        )
        sequence = self._newest()[0]
        self._write(f"base-{sequence:012d}.parquet", pd.concat([_typed(windows), _typed(named)]))
        for n, _, path in self._parts():
            if n < sequence or (n == sequence and path.name.startswith("delta")):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def _write(self, name: str, frame: pd.DataFrame) -> None:
        with replacing(self.folder / name, "wb") as file:
            frame.to_parquet(file, index=False)


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.reindex(columns=list(FRAME_COLUMNS)).copy()
    out["metric"] = out["metric"].astype(str)
    out["window_start"] = out["window_start"].astype("int64")
    out["value"] = out["value"].astype("int64")
    for column in ("category", "subcategory"):
        out[column] = out[column].fillna("").astype(str)
    return out.reset_index(drop=True)
