"""A source that follows a folder (or one file) of CloudTrail records as files appear.

Trail files synced from S3, exports, or JSON Lines that another tool appends to: a file is
read again whenever its size or modification time changes, and the buffer drops the events
it already holds by eventID. A file still being written (changed in the last second) waits
for the next poll, so that half a document is not counted as a bad one.
"""

from __future__ import annotations

import os
from pathlib import Path

from metrics.records import RECORD_SUFFIXES, iter_file

SETTLE_SECONDS = 1.0
# CloudTrail delivers within about 15 minutes; nothing guarantees more of a folder.
DELIVERY_WINDOW = 15 * 60


class FileSource:
    name = "files"

    def __init__(self, path: str | os.PathLike, settle_seconds: float = SETTLE_SECONDS):
        self.path = Path(path)
        self.settle_seconds = settle_seconds
        self._seen: dict[Path, tuple[int, int]] = {}

    def _files(self) -> list[Path]:
        if self.path.is_file():
            return [self.path]
        if not self.path.is_dir():
            raise FileNotFoundError(f"no such file or folder: {self.path}")
        return sorted(
            p
            for p in self.path.rglob("*")
            if p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(self.path).parts)
            and p.name.lower().endswith(RECORD_SUFFIXES)
        )

    def poll(self, now: float) -> list[object]:
        """Records (or ``Unreadable`` markers) of every file that is new or has changed."""
        records: list[object] = []
        for file in self._files():
            try:
                stat = file.stat()
            except OSError:
                continue  # removed between listing and reading
            signature = (stat.st_size, stat.st_mtime_ns)
            if self._seen.get(file) == signature or now - stat.st_mtime < self.settle_seconds:
                continue
            records.extend(iter_file(file))
            self._seen[file] = signature
        return records

    def watermark(self, now: float) -> float:
        return now - DELIVERY_WINDOW


class RegionFilter:
    """Keeps only the records of the given regions from any source of parsed records."""

    def __init__(self, source, regions: tuple[str, ...]):
        self.source = source
        self.regions = frozenset(regions)
        self.name = source.name

    def poll(self, now: float) -> list[object]:
        return [r for r in self.source.poll(now) if not isinstance(r, dict) or r.get("awsRegion") in self.regions]

    def watermark(self, now: float) -> float | None:
        return self.source.watermark(now)
