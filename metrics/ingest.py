"""Reading large inputs into the engine: file by file and chunk by chunk, so that memory
follows the events kept rather than the bytes read, through the columnar fast path.

``document_batches`` yields the same events and rejects as ``normalise_all(iter_bytes(...))``
(``metrics.records`` stays the definition of which formats are accepted and how a bad one is
counted); only the speed and the size of the pieces differ.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

from metrics.buffer import EventColumns
from metrics.columnar import TRAIL_START, Coded, normalise_chunk, normalise_lines, normalise_trails
from metrics.events import Batch
from metrics.normalise import Rejects, normalise_all
from metrics.pumps import aggregate
from metrics.records import _is_object, _records_of, _salvage, record_files

# A plain file larger than this is read in chunks of CHUNK_BYTES when it holds JSON Lines.
STREAM_BYTES = 64 * 2**20
CHUNK_BYTES = 16 * 2**20
# Records normalised together, and events gathered before one ingest into the engine.
PIECE_RECORDS = 65_536
# Events counted together when none is held: smaller, so that the forest of a batch run gets
# its first windows early.
COUNT_PIECE_RECORDS = 16_384
_BOM = b"\xef\xbb\xbf"
_GZIP = b"\x1f\x8b"
_NOT_SPACE = re.compile(rb"[^ \t\n\r\x0b\x0c]")


def document_batches(data: bytes, rejects: Rejects, origin: str = "", now_ns: int | None = None) -> Iterator[Batch]:
    """The events of one document's bytes, whatever its accepted format, in pieces."""
    if data[:2] == _GZIP:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as error:
            rejects.add(f"unreadable gzip: {error}", origin)
            return
    if data.startswith(_BOM):
        data = data[3:]
    if not _NOT_SPACE.search(data):
        return
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        if _holds_lines(data):
            yield from _text_batches(data, 1, rejects, origin, now_ns)
        else:
            yield normalise_all(_salvage(data, origin, str(error)), rejects, origin, now_ns)
        return
    records = list(_records_of(document))
    del document
    for start in range(0, len(records), PIECE_RECORDS):
        # Already parsed: the per-record normaliser is as fast as re-reading them with pyarrow.
        yield normalise_all(records[start : start + PIECE_RECORDS], rejects, origin, now_ns)


def _holds_lines(data: bytes) -> bool:
    """What ``metrics.records`` takes for JSON Lines: a first line that is an object, and more."""
    start = _NOT_SPACE.search(data).start()
    newline = data.find(b"\n", start)
    if newline < 0 or not _NOT_SPACE.search(data, newline):
        return False
    return _is_object(data[start:newline])


def _text_batches(
    data: bytes, first: int, rejects: Rejects, origin: str, now_ns, counted: tuple[str, ...] | None = None
) -> Iterator[Batch | Coded]:
    """Batches of JSON Lines text, ``first`` being the number of its first line: pieces of
    about ``CHUNK_BYTES`` read as they are when they are plain, line by line otherwise."""
    start, whole = 0, memoryview(data)
    while start < len(data):
        cut = data.find(b"\n", start + CHUNK_BYTES)
        end = len(data) if cut < 0 else cut + 1
        piece = whole[start:end] if start or end < len(data) else data
        batches, lines = _piece_batches(piece, first, rejects, origin, now_ns, counted)
        yield from batches
        first += lines
        start = end


def _piece_batches(piece: bytes | memoryview, first: int, rejects: Rejects, origin: str, now_ns, counted):
    """(the batches, the number of lines) of one piece of JSON Lines text: read as it is when
    it is plain, line by line otherwise."""
    read = normalise_chunk(piece, rejects, origin, now_ns, first, counted)
    if read is not None:
        return [read[0]], read[1]
    lines = bytes(piece).splitlines()
    return list(_line_batches(lines, first, rejects, origin, now_ns)), len(lines)


def _line_batches(lines: list[bytes], first: int, rejects: Rejects, origin: str, now_ns) -> Iterator[Batch]:
    """Batches of JSON Lines, ``first`` being the number of ``lines[0]``; blank lines skipped."""
    for start in range(0, len(lines), PIECE_RECORDS):
        part = list(map(bytes.strip, lines[start : start + PIECE_RECORDS]))
        if all(part):
            numbers = None if first + start == 1 else range(first + start, first + start + len(part))
        else:
            numbers = [first + start + i for i, line in enumerate(part) if line]
            part = [line for line in part if line]
        yield normalise_lines(part, rejects, origin, now_ns, numbers)


def file_batches(
    path: Path, rejects: Rejects, now_ns: int | None = None, counted: tuple[str, ...] | None = None
) -> Iterator[Batch | Coded]:
    """The events of one file, a large file of JSON Lines read chunk by chunk (``counted``:
    the columns a batch count reads, its plain pieces then come as ``Coded``)."""
    origin = str(path)
    try:
        if path.stat().st_size > STREAM_BYTES:
            with open(path, "rb") as file:
                head = file.read(CHUNK_BYTES)
            if head[:2] != _GZIP and _NOT_SPACE.search(head) and _holds_lines(head.removeprefix(_BOM)):
                yield from _streamed(path, rejects, origin, now_ns, counted)
                return
        data = path.read_bytes()
    except OSError as error:
        rejects.add(f"unreadable file: {error.strerror or error}", origin)
        return
    yield from document_batches(data, rejects, origin, now_ns)


def _streamed(path: Path, rejects: Rejects, origin: str, now_ns, counted) -> Iterator[Batch | Coded]:
    """A large file's batches, piece by piece: each read is cut after its last whole line and
    handed on as a view (a copy of a piece costs more than the reader's own work on it), and
    the next read starts after that line."""
    number = 1
    try:
        with open(path, "rb") as file:
            start = len(_BOM) if file.read(len(_BOM)) == _BOM else 0
            file.seek(start)
            while chunk := file.read(CHUNK_BYTES):
                cut = chunk.rfind(b"\n") + 1
                while not cut:  # no whole line yet: a line longer than a read, or the file's last
                    more = file.read(CHUNK_BYTES)
                    if not more:
                        cut = len(chunk)
                        break
                    chunk += more
                    cut = chunk.rfind(b"\n", len(chunk) - len(more)) + 1
                start += cut
                file.seek(start)
                batches, lines = _piece_batches(memoryview(chunk)[:cut], number, rejects, origin, now_ns, counted)
                yield from batches
                number += lines
    except OSError as error:
        rejects.add(f"unreadable file: {error.strerror or error}", origin)


@dataclass
class Fed:
    added: int = 0
    duplicates: int = 0
    files: int = 0  # files that held anything, a record or a reject


_END = object()


def read_ahead(items: Iterator):
    """The items, each next one made on a thread while the caller uses the one before: the
    reading (pyarrow, which lets go of the GIL) and the counting then share the cores. The
    thread advances the iterator alone, one item at a time, so it keeps its order and its
    side effects (rejects) as they were; an exception is raised here, at the item it stopped."""
    items = iter(items)
    with ThreadPoolExecutor(1, thread_name_prefix="read-ahead") as thread:
        coming = thread.submit(next, items, _END)
        try:
            while (item := coming.result()) is not _END:
                coming = thread.submit(next, items, _END)
                yield item
        finally:
            coming.cancel() or coming.exception()  # a next() under way ends before the close
            if hasattr(items, "close"):
                thread.submit(items.close).result()


class _Counter:
    """Counts batches into an engine's pumps without holding their events: what
    ``Engine.ingest`` does, less the event buffer. Duplicates by eventID are counted once, the
    first one read being the one kept, as the buffer does."""

    def __init__(self, engine):
        self.engine = engine
        self.seen: set[str] = set()
        self.columns = sorted({c for p in engine.pumps for c in (p.category, p.subcategory) if c is not None})
        self.columns += sorted({p.where.column for p in engine.pumps if p.where is not None} - set(self.columns))

    def ingest(self, batch: Batch | Coded) -> tuple[int, int]:
        """(events added, duplicates)."""
        coded = isinstance(batch, Coded)
        ids = batch.event_ids if coded else batch.column("eventID")
        fresh = set(ids)
        if len(fresh) == len(ids) and self.seen.isdisjoint(fresh):
            self.seen |= fresh
        else:
            positions = []
            for i, event_id in enumerate(ids):
                if event_id not in self.seen:
                    self.seen.add(event_id)
                    positions.append(i)
            batch = batch.select(np.array(positions, dtype=np.int64) if coded else positions)
        if len(batch):
            if coded:
                events = EventColumns(batch.times, batch.codes, batch.labels)
            else:
                codes, labels = {}, {}
                for name in self.columns:
                    codes[name], uniques = pd.factorize(np.array(batch.column(name), dtype=object))
                    labels[name] = uniques.tolist()
                events = EventColumns(np.array(batch.column("eventTime"), dtype=np.int64), codes, labels)
            for pump in self.engine.pumps:
                self.engine.add_windows(pump.name, aggregate(events, pump))
        return len(batch), len(ids) - len(batch)


class _Feeder:
    """Gathers batches into pieces of about ``PIECE_RECORDS`` events for the engine, and small
    trail files into groups read in one go (when no event is held, ``hold`` False)."""

    def __init__(self, engine, rejects: Rejects, now_ns: int | None, hold: bool, after_ingest=None):
        self.engine, self.rejects, self.now_ns, self.hold = engine, rejects, now_ns, hold
        self.counter = None if hold else _Counter(engine)
        self.piece = PIECE_RECORDS if hold else COUNT_PIECE_RECORDS
        self.after_ingest = after_ingest
        self.fed, self.pending = Fed(), Batch()
        self.documents: list[tuple[Path, bytes]] = []
        self.document_bytes = 0

    def file(self, path: Path) -> None:
        if not self.hold:
            data = self._trail_text(path)
            if data is not None:
                self.documents.append((path, data))
                self.document_bytes += len(data)
                if self.document_bytes >= CHUNK_BYTES:
                    self.flush_documents()
                return
        self.flush_documents()
        counted = None if self.counter is None else tuple(self.counter.columns)
        self._read(path, read_ahead(file_batches(path, self.rejects, self.now_ns, counted)))

    def _trail_text(self, path: Path) -> bytes | None:
        """A small file's text if it may be a trail file read the fast way."""
        try:
            if path.stat().st_size > STREAM_BYTES:
                return None
            data = path.read_bytes()
            if data[:2] == _GZIP:
                data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            return None  # read again on the way that counts the failure
        data = data.removeprefix(_BOM)
        return data if TRAIL_START.match(data) else None

    def flush_documents(self) -> None:
        documents, self.documents, self.document_bytes = self.documents, [], 0
        if not documents:
            return
        read = normalise_trails([data for _, data in documents], self.now_ns)
        if read is None:  # something odd in there: each file the per-record way
            for path, data in documents:
                self._read(path, document_batches(data, self.rejects, str(path), self.now_ns))
            return
        batch, counts = read
        self.fed.files += sum(1 for count in counts if count)
        self.add(batch)

    def _read(self, path: Path, batches: Iterable[Batch]) -> None:
        before, held = self.rejects.total, 0
        for batch in batches:
            held += len(batch)
            self.add(batch)
        if held or self.rejects.total > before:
            self.fed.files += 1

    def add(self, batch: Batch | Coded) -> None:
        if isinstance(batch, Coded):  # a piece counted as it is, after the events read before it
            self.flush()
            self._ingest(batch)
            return
        if len(batch) > 2 * self.piece:  # a chunk read in one go: the forest still gets its windows early
            for start in range(0, len(batch), self.piece):
                end = start + self.piece
                self.add(Batch([column[start:end] for column in batch.columns], batch.raws[start:end]))
            return
        if not len(self.pending) and len(batch) >= self.piece:
            self.pending = batch
        else:
            self.pending.extend(batch)
        if len(self.pending) >= self.piece:
            self.flush()

    def flush(self) -> None:
        if len(self.pending):
            self._ingest(self.pending)
            self.pending = Batch()

    def _ingest(self, batch: Batch | Coded) -> None:
        if self.counter is not None:
            added, duplicates = self.counter.ingest(batch)
        else:
            result = self.engine.ingest(batch)
            added, duplicates = result.added, result.duplicates
        self.fed.added += added
        self.fed.duplicates += duplicates
        if self.after_ingest is not None:
            if isinstance(batch, Coded):
                self.after_ingest(int(batch.times.min()), int(batch.times.max()))
            else:
                times = batch.column("eventTime")
                self.after_ingest(min(times), max(times))


def feed(
    engine,
    paths: Iterable[str | Path],
    rejects: Rejects,
    now_ns: int | None = None,
    *,
    hold: bool = True,
    after_ingest=None,
) -> Fed:
    """Read every file under ``paths`` into ``engine``, a few tens of thousands of events at a
    time. ``hold=False`` keeps no event for drill-down, only the pumps' counts (batch use):
    faster, and memory follows the distinct eventIDs rather than the events.
    ``after_ingest(low_ns, high_ns)`` is called after each ingest with the span of its events'
    times (the forest of a batch run learns meanwhile)."""
    feeder = _Feeder(engine, rejects, now_ns, hold, after_ingest)
    for path in record_files(paths):
        feeder.file(path)
    feeder.flush_documents()
    feeder.flush()
    return feeder.fed
