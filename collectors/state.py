"""What survives a restart: the buffer's events (a Parquet snapshot) and the sources'
checkpoints, written together.

The checkpoints are copied before the buffer is snapshotted, and both are written only after
a poll's events are in the buffer, so a checkpoint on disk is never ahead of the events on
disk: after a crash the source re-reads from an older point and the buffer drops what it
already has by eventID.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from metrics import snapshot
from metrics.buffer import NS_PER_SECOND
from metrics.engine import Engine
from storage import write_private

BUFFER_FILE = "buffer.parquet"
CHECKPOINT_FILE = "checkpoints.json"


class StateStore:
    def __init__(self, folder: str | os.PathLike, source_name: str):
        self.folder = Path(folder)
        self.source_name = source_name
        self.last_saved: float | None = None
        self.last_error: str | None = None
        self.restored_events = 0
        self.restored_newest: float | None = None

    @property
    def buffer_path(self) -> Path:
        return self.folder / BUFFER_FILE

    @property
    def checkpoint_path(self) -> Path:
        return self.folder / CHECKPOINT_FILE

    def checkpoints(self) -> dict:
        """The saved checkpoints of this source (those of another source are ignored)."""
        try:
            saved = json.loads(self.checkpoint_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            self.last_error = f"checkpoints unreadable, starting over: {error}"
            return {}
        return saved.get(self.source_name, {}) if isinstance(saved, dict) else {}

    def restore(
        self, engine: Engine, now: float | None = None, progress=None, on_batch=None, from_newest: bool = False
    ) -> int:
        """Loads the saved events into ``engine``; returns how many were added. ``progress``,
        if given, is called with the share of the saved events read so far; ``on_batch(batch,
        result)`` with each batch read and its ``IngestResult`` (the analyses' baseline).
        ``from_newest``: the retention counts back from the newest saved event, not from now
        (``restored_newest`` is then that event's time, seconds), as for a source of history."""
        now_ns = int((time.time() if now is None else now) * NS_PER_SECOND)
        added = read = 0
        try:
            if from_newest:
                newest = snapshot.newest_ns(self.buffer_path)
                self.restored_newest = None if newest is None else newest / NS_PER_SECOND
                now_ns = newest
            total = max(1, snapshot.count(self.buffer_path))
            for batch in snapshot.batches(self.buffer_path):  # a row group at a time: a third of the memory
                result = engine.ingest(batch, now_ns)
                added += result.added
                if on_batch is not None:
                    on_batch(batch, result)
                read += len(batch)
                if progress is not None:
                    progress(min(1.0, read / total))
        except snapshot.SnapshotError as error:
            self.last_error = f"snapshot unreadable, history restored only in part: {error}"
        self.restored_events = added
        return added

    def save(self, engine: Engine, source, checkpoints: dict | None = None) -> None:
        """Checkpoints first (copied; ``checkpoints`` when the caller has them as of the
        buffer), then the buffer, then the checkpoints on disk."""
        if checkpoints is not None:
            points = checkpoints
        else:
            points = source.checkpoints() if hasattr(source, "checkpoints") else {}
        snapshot.save(engine.buffer, self.buffer_path)
        write_private(self.checkpoint_path, json.dumps({self.source_name: points}, indent=1))
        self.last_saved = time.time()
        self.last_error = None
