"""The detections' backlog: batches the rules will read after the charts are filled.

A start reads a day of history (or restores it) in large polls. The rules cost several times
what the engine's counting does, so reading them inline made every chart wait for them. Those
batches wait on disk instead, compressed, in the order they were read, and the collector hands
them to the rules between polls. Each file holds the rows the engine took as new, so the rules
see exactly the batches they would have seen inline, only later.

Nothing here needs to survive a restart: the saved buffer holds every event, and a restore
gives the rules all of it again.
"""

from __future__ import annotations

import itertools
import pickle
import struct
from collections import deque
from pathlib import Path

import numpy as np
import zstandard

from metrics.events import Batch

SUFFIX = ".batch"
_HEAD = struct.Struct("<Q")  # the length of the compressed, pickled columns, before them


class Spool:
    """Batches on disk, first in first out."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        for stale in self.folder.glob(f"*{SUFFIX}"):  # a previous run's: its events are in the saved buffer
            stale.unlink(missing_ok=True)
        self._queue: deque[tuple[Path, int]] = deque()
        self._numbers = itertools.count()
        self.events = 0  # waiting, in all files
        self.lost = 0  # in files that could not be read back

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, batch: Batch) -> None:
        """Raises OSError if the disk refuses it (the caller reads the batch at once instead).

        The columns are pickled (each distinct text once: pickle keeps the batch's shared
        objects shared) and the raw records are compressed as one text with their lengths:
        pickling each record and compressing the lot cost twice the interpreter time on a
        backlog's critical path, and zstd lets go of the interpreter while it works."""
        path = self.folder / f"{next(self._numbers):08d}{SUFFIX}"
        lengths = np.fromiter(map(len, batch.raws), dtype=np.int64, count=len(batch.raws))
        compress = zstandard.ZstdCompressor(level=1).compress
        head = compress(pickle.dumps((batch.columns, lengths), protocol=pickle.HIGHEST_PROTOCOL))
        body = compress(b"".join(batch.raws))
        try:
            with open(path, "wb") as out:
                out.writelines((_HEAD.pack(len(head)), head, body))
        except OSError:
            path.unlink(missing_ok=True)
            raise
        self._queue.append((path, len(batch)))
        self.events += len(batch)

    def take(self) -> Batch | None:
        """The oldest batch, gone from the spool; None when empty. Raises what reading raises,
        its events then counted in ``lost``."""
        if not self._queue:
            return None
        path, size = self._queue.popleft()
        self.events -= size
        try:
            data = memoryview(path.read_bytes())
            (head,) = _HEAD.unpack_from(data)
            # Written by this process into its private folder; stale files were deleted at start.
            decompress = zstandard.ZstdDecompressor().decompress
            columns, lengths = pickle.loads(decompress(data[_HEAD.size : _HEAD.size + head]))
            text = decompress(data[_HEAD.size + head :])
            ends = np.cumsum(lengths)
            raws = [text[start:end] for start, end in zip((ends - lengths).tolist(), ends.tolist())]
        except Exception:
            self.lost += size
            raise
        finally:
            path.unlink(missing_ok=True)
        return Batch(columns, raws)
