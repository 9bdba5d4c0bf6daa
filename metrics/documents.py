"""What a source read, normalised in one go: whole files (trail documents, gzipped or not) and
pieces of JSON Lines, as bytes.

A small poll (a few new lines, one new trail file) takes the per-record path: parsed with
``metrics.records`` and normalised record by record, and the analyses get the parsed records. A
large one (a backlog of files) takes the columnar path of ``metrics.columnar``: each trail
document is cut into its records' JSON texts by msgspec (which checks the JSON as it goes and
keeps each record's bytes as they are), the texts of all documents are read at once by
pyarrow, and the analyses get the accepted records' raw JSON instead of dicts, so that nothing
is parsed into Python objects. A document msgspec or the guards below do not take (not a
trail document, invalid UTF-8, escaped surrogates, numbers orjson would refuse) goes the
per-record way, so that its records and rejects are exactly what they always were.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import msgspec
from isal import igzip, igzip_lib

from metrics.columnar import TRAIL_RECORDS, normalise_chunk, normalise_lines
from metrics.events import Batch
from metrics.normalise import Rejects, Unreadable, normalise_all
from metrics.records import iter_bytes, iter_lines

# A poll of at least this many bytes takes the columnar path: below it the per-record path
# costs no more, and a live poll's few records reach the analyses parsed.
FAST_BYTES = 1 << 20


@dataclass
class Document:
    """One file's or object's bytes as read, any accepted format, gzipped or not."""

    data: bytes
    origin: str
    records: int = 0  # records found in it (accepted or rejected), once normalised
    unreadable: int = 0  # of them, what could not be parsed


@dataclass
class Lines:
    """Complete JSON Lines read from a file; ``first_line`` is the number of the first."""

    data: bytes
    origin: str
    first_line: int = 1


def parsed(items) -> list[object]:
    """The records (or ``Unreadable`` markers) of documents, lines and markers, in order: what
    a source's ``poll`` returns."""
    records: list[object] = []
    for item in items:
        if isinstance(item, Document):
            found = list(iter_bytes(item.data, item.origin))
            item.records = len(found)
            item.unreadable = sum(isinstance(r, Unreadable) for r in found)
            records.extend(found)
        elif isinstance(item, Lines):
            records.extend(iter_lines(item.data, item.origin, item.first_line))
        else:
            records.append(item)
    return records


def normalise_documents(
    items, rejects: Rejects, origin: str = "", now_ns: int | None = None, fast_bytes: int = FAST_BYTES
) -> tuple[Batch, list]:
    """(the events, what the analyses observe) of a poll's documents, lines and ``Unreadable``
    markers. Rejects are counted by reason with samples either way; a record's reject has
    ``origin`` (the source), a line that does not parse its file and line number."""
    size = sum(len(item.data) for item in items if isinstance(item, (Document, Lines)))
    if size < fast_bytes:
        records = parsed(items)
        return normalise_all(records, rejects, origin=origin, now_ns=now_ns), records
    parts: list[Batch] = []
    texts: list[bytes] = []  # records of trail documents waiting to be read together

    def flush() -> None:
        if texts:
            parts.append(normalise_lines(texts, rejects, origin, now_ns, checked=True))
            texts.clear()

    for item in items:
        if isinstance(item, Lines):
            flush()
            read = normalise_chunk(item.data, rejects, item.origin, now_ns, item.first_line)
            if read is None:  # blank lines or text around a record: line by line
                lines, numbers = _numbered(item)
                parts.append(normalise_lines(lines, rejects, item.origin, now_ns, numbers))
            else:
                parts.append(read[0])
        elif isinstance(item, Document):
            records = _trail_records(item.data)
            if records is None:
                flush()
                parts.append(normalise_all(parsed([item]), rejects, origin=origin, now_ns=now_ns))
            else:
                item.records = len(records)
                texts.extend(records)
        else:
            rejects.add(item.reason, item.origin or origin, item.sample)
    flush()
    batch = Batch.concat(parts)
    return batch, batch.raws


def _numbered(item: Lines) -> tuple[list[bytes], list[int]]:
    lines, numbers = [], []
    for number, line in enumerate(item.data.splitlines(), item.first_line):
        if line.strip():
            lines.append(line)
            numbers.append(number)
    return lines, numbers


def _trail_records(data: bytes) -> list[bytes] | None:
    """The JSON text of each record of a ``{"Records": [...]}`` document, or None when the
    document must take the per-record path."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = igzip.decompress(data)
        except (OSError, EOFError, ValueError, zlib.error, igzip_lib.IsalError):
            return None  # the per-record path reports why
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    try:  # (msgspec refuses a lone escaped surrogate, as orjson does)
        records = TRAIL_RECORDS.decode(data).Records
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return [bytes(record) for record in records]
