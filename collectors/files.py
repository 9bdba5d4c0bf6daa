"""A source that follows a folder (or one file) of CloudTrail records as files appear.

Trail files synced from S3, exports, or JSON Lines that another tool appends to. Each file's
progress is kept (and saved in the checkpoints): a JSON Lines file (``.jsonl``, ``.ndjson``)
is read from where the last poll stopped, complete lines only, so an appended line costs one
line and a restart reads nothing twice; a file that was truncated or replaced (another inode,
shorter than what was read, or other first bytes) is read again from its start, and the
buffer drops the events it already holds by eventID. Other files (trail documents, JSON
arrays, gzipped files) are read whole whenever their size or modification time changes, once
they have not changed for a second, so that half a document is not counted as a bad one.

One poll returns at most ``batch_records`` records and says ``more`` while files have unread
lines, so that a large folder is read in bounded batches rather than all at once.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from metrics.documents import Document, Lines, parsed
from metrics.normalise import Unreadable
from metrics.records import RECORD_SUFFIXES

SETTLE_SECONDS = 1.0
# CloudTrail delivers within about 15 minutes; nothing guarantees more of a folder.
DELIVERY_WINDOW = 15 * 60
BATCH_RECORDS = 20_000
READ_BYTES = 4 * 1024 * 1024  # one read of a JSON Lines file
HEAD_BYTES = 4096  # the first bytes that identify a file we have read part of
LINE_SUFFIXES = (".jsonl", ".ndjson")


def _head_hash(file, length: int) -> str:
    file.seek(0)
    return hashlib.sha256(file.read(min(length, HEAD_BYTES))).hexdigest()


def _walk(folder: str, parts: tuple[str, ...], found: list) -> None:
    """(path parts below the root, path) of each record file under ``folder``, hidden files and
    folders left out: what ``sorted(Path.rglob)`` filtered gives, without a Path per entry
    (a trail folder holds thousands of files). Like rglob, symlinked folders are not entered."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                _walk(entry.path, (*parts, entry.name), found)
            elif entry.is_file() and entry.name.lower().endswith(RECORD_SUFFIXES):
                found.append(((*parts, entry.name), entry.path))
        except OSError:
            continue


class FileSource:
    name = "files"
    # A poll moves only this source's offsets, and checkpoints() copies them: the collector may
    # read the next batch while the engine takes this one.
    read_ahead = True

    def __init__(
        self,
        path: str | os.PathLike,
        settle_seconds: float = SETTLE_SECONDS,
        *,
        checkpoints: dict | None = None,
        batch_records: int = BATCH_RECORDS,
    ):
        self.path = Path(path)
        self.settle_seconds = settle_seconds
        self.batch_records = batch_records
        saved = (checkpoints or {}).get("files", {})
        self._state: dict[str, dict] = {k: dict(v) for k, v in saved.items() if isinstance(v, dict)}
        self.more = False  # files had unread lines after the last poll
        self.replaced = 0  # files found truncated or replaced, read again from their start
        self._read_bytes = self._total_bytes = 0
        self._lines_read = 0  # JSON Lines read by the current poll

    def checkpoints(self) -> dict:
        return {"files": {name: dict(state) for name, state in self._state.items()}}

    def progress(self) -> float | None:
        """The share of the JSON Lines bytes read, while some are left; None otherwise."""
        if not self.more or not self._total_bytes:
            return None
        return self._read_bytes / self._total_bytes

    def _files(self) -> list[Path]:
        if self.path.is_file():
            return [self.path]
        if not self.path.is_dir():
            raise FileNotFoundError(f"no such file or folder: {self.path}")
        found: list[tuple[tuple[str, ...], str]] = []
        _walk(str(self.path), (), found)
        found.sort()
        return [Path(path) for _, path in found]

    def poll(self, now: float) -> list[object]:
        """Records (or ``Unreadable`` markers) that are new since the last poll, at most
        ``batch_records`` of JSON Lines (a document is never cut)."""
        return parsed(self.poll_documents(now))

    def poll_documents(self, now: float) -> list[Document | Lines | Unreadable]:
        """What ``poll`` reads, unparsed: whole new files, pieces of JSON Lines, and markers of
        files that could not be read (``metrics.documents`` normalises them)."""
        records: list[object] = []
        self._lines_read = 0
        more = False
        read = total = 0
        for file in self._files():
            try:
                stat = file.stat()
            except OSError:
                continue  # removed between listing and reading
            key = str(file)
            if file.name.lower().endswith(LINE_SUFFIXES):
                total += stat.st_size
                if self._lines_read < self.batch_records:
                    self._read_lines(file, key, stat, now, records)
                state = self._state.get(key)
                done = state["offset"] if state else 0
                read += done
                more = more or done < stat.st_size
            else:
                self._read_document(file, key, stat, now, records)
        self._read_bytes, self._total_bytes, self.more = read, total, more  # (read by pages meanwhile)
        return records

    def _read_document(self, file: Path, key: str, stat, now: float, records: list) -> None:
        state = self._state.get(key)
        if state and (state["size"], state["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns):
            return
        if now - stat.st_mtime < self.settle_seconds:
            return
        try:
            records.append(Document(file.read_bytes(), key))
        except OSError as error:
            records.append(Unreadable(f"unreadable file: {error.strerror or error}", key))
        self._state[key] = {
            "inode": stat.st_ino,
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "offset": stat.st_size,
        }

    def _read_lines(self, file: Path, key: str, stat, now: float, records: list) -> None:
        state = self._state.get(key)
        try:
            with open(file, "rb") as handle:
                if state is not None and not self._same_file(handle, stat, state):
                    self.replaced += 1
                    state = None
                offset = state["offset"] if state else 0
                line = state.get("line", 0) if state else 0
                if offset >= stat.st_size:
                    return
                settled = now - stat.st_mtime >= self.settle_seconds
                handle.seek(offset)
                while self._lines_read < self.batch_records:
                    data = handle.read(READ_BYTES)
                    if not data:
                        break
                    end = data.rfind(b"\n") + 1
                    if end == 0:  # no complete line in this read
                        if len(data) < READ_BYTES and settled:
                            end = len(data)  # the last line of a file no longer written to
                        elif len(data) < READ_BYTES:
                            break
                        else:  # a line longer than one read: the normaliser rejects it whole
                            more = handle.readline()
                            data += more
                            end = len(data)
                    records.append(Lines(data[:end], key, line + 1))
                    lines = data[:end].count(b"\n")
                    line += lines
                    self._lines_read += max(lines, 1)
                    offset += end
                    handle.seek(offset)
                head = (
                    state["head"] if state and offset >= HEAD_BYTES and state.get("head_length") == HEAD_BYTES else None
                )
                if head is None:
                    head = _head_hash(handle, offset)
        except OSError:
            return  # unreadable for now (removed, permissions): tried again at the next poll
        self._state[key] = {
            "inode": stat.st_ino,
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "offset": offset,
            "line": line,
            "head": head,
            "head_length": min(offset, HEAD_BYTES),
        }

    @staticmethod
    def _same_file(handle, stat, state: dict) -> bool:
        """Whether the file is the one read before, grown or not: same inode, not shorter than
        what was read, and the same first bytes."""
        if stat.st_ino != state.get("inode") or stat.st_size < state.get("offset", 0):
            return False
        return _head_hash(handle, state.get("head_length", 0)) == state.get("head")

    def watermark(self, now: float) -> float:
        return now - DELIVERY_WINDOW


class RegionFilter:
    """Keeps only the records of the given regions from any source of parsed records; the
    rest (checkpoints, progress, ``more``) is the source's own."""

    def __init__(self, source, regions: tuple[str, ...]):
        self.source = source
        self.regions = frozenset(regions)
        self.name = source.name

    # The records are filtered once parsed: the collector must not read the documents unfiltered.
    poll_documents = None

    def __getattr__(self, name: str):
        return getattr(self.source, name)

    def poll(self, now: float) -> list[object]:
        return [r for r in self.source.poll(now) if not isinstance(r, dict) or r.get("awsRegion") in self.regions]

    def watermark(self, now: float) -> float | None:
        return self.source.watermark(now)
