"""Reading CloudTrail records from files, folders and LookupEvents answers.

Accepted: trail log files ``{"Records": [...]}``, bare JSON arrays, a single record object,
and JSON Lines, each optionally gzipped. What cannot be parsed is yielded as ``Unreadable``
so that the caller counts it; nothing here raises on bad input.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import orjson

from metrics.normalise import Unreadable

RECORD_SUFFIXES = (".json", ".jsonl", ".ndjson", ".json.gz", ".jsonl.gz", ".ndjson.gz", ".gz")


def add_paths_argument(parser, required: bool = True) -> None:
    """The ``PATH ...`` argument of the commands that read what ``iter_paths`` reads."""
    parser.add_argument(
        "paths",
        nargs="+" if required else "*",
        metavar="PATH",
        help="trail log files, JSON arrays or JSON Lines (optionally gzipped), or folders of them",
    )


def iter_paths(paths: Iterable[str | Path]) -> Iterator[tuple[str, object]]:
    """(origin, record-or-Unreadable) for every record under the given files and folders.

    Folders are walked recursively in name order, taking files with a record suffix; a file
    named explicitly is read whatever its name.
    """
    for file in record_files(paths):
        origin = str(file)
        for record in iter_file(file):
            yield origin, record


def record_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """The files ``iter_paths`` reads, in its order."""
    for path in map(Path, paths):
        if path.is_dir():
            yield from sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
                and p.name.lower().endswith(RECORD_SUFFIXES)
            )
        else:
            yield path


def iter_file(path: Path) -> Iterator[object]:
    try:
        data = path.read_bytes()
    except OSError as error:
        yield Unreadable(f"unreadable file: {error.strerror or error}", str(path))
        return
    yield from iter_bytes(data, str(path))


def iter_bytes(data: bytes, origin: str = "") -> Iterator[object]:
    """Records in one document's bytes, whatever its accepted format."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as error:
            yield Unreadable(f"unreadable gzip: {error}", origin)
            return
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if not data.strip():
        return
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        yield from _salvage(data, origin, str(error))
        return
    yield from _records_of(document)


def _records_of(document: object) -> Iterator[object]:
    if isinstance(document, dict) and isinstance(document.get("Records"), list):
        yield from document["Records"]
    elif isinstance(document, list):
        yield from document
    else:
        yield document


def _salvage(data: bytes, origin: str, message: str) -> Iterator[object]:
    """The whole document did not parse: try JSON Lines, then per-record UTF-8 checking."""
    lines = data.strip().split(b"\n")
    if len(lines) > 1 and _is_object(lines[0]):
        yield from iter_lines(data, origin)
        return
    if "utf-8" in message.lower():
        # Parse leniently so that only the records holding bad bytes are rejected; the
        # normaliser refuses any record that still holds a lone surrogate.
        try:
            document = _lenient(data)
        except ValueError:
            yield Unreadable("invalid UTF-8", origin, data)
            return
        yield from _records_of(document)
        return
    yield Unreadable("invalid JSON", origin, data)


def iter_lines(data: bytes, origin: str = "", first_line: int = 1) -> Iterator[object]:
    """Records of JSON Lines, one per non-blank line; a bad line is ``Unreadable`` with its
    line number (counted from ``first_line``, for a file read piece by piece)."""
    for number, line in enumerate(data.splitlines(), first_line):
        if not line.strip():
            continue
        try:
            yield orjson.loads(line)
        except orjson.JSONDecodeError as error:
            yield Unreadable(_reason(str(error)), f"{origin}:{number}", line)


def _lenient(data: bytes) -> object:
    return json.loads(data.decode("utf-8", "surrogateescape"))


def _is_object(line: bytes) -> bool:
    try:
        return isinstance(_lenient(line), dict)
    except ValueError:
        return False


def _reason(message: str) -> str:
    return "invalid UTF-8" if "utf-8" in message.lower() else "invalid JSON"


def parse_cloudtrail_event(text: str | bytes | None) -> object:
    """The record inside one LookupEvents ``CloudTrailEvent`` string."""
    if not isinstance(text, (str, bytes)):
        return Unreadable("missing CloudTrailEvent")
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as error:
        return Unreadable(_reason(str(error)), "", text)


def records_from_lookup(events: Iterable[dict]) -> Iterator[object]:
    """Records from the ``Events`` list of LookupEvents answers."""
    for event in events:
        yield parse_cloudtrail_event(event.get("CloudTrailEvent"))
