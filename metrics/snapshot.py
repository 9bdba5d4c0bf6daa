"""The buffer on disk: one Parquet file, so a restarted app comes back with its history
without reading AWS again.

    info = save(engine.buffer, path)   # SnapshotInfo(events=..., bytes=..., seconds=...)
    engine.ingest(load(path), now_ns)  # duplicates and expired events counted as usual

The file holds every ``COLUMNS`` column (eventTime as timestamp[ns, UTC], the text columns as
dictionary-encoded strings, readOnly as a nullable bool) and then ``raw``, the raw record of
each event, so drill-down works after a restart. It is zstd-compressed in row groups of
``ROW_GROUP_EVENTS``, with page checksums, so a damaged file fails to load rather than
loading wrong counts.

Writing goes to a temporary file in the same folder, which is synced and then renamed over
the old snapshot: a crash mid-write leaves the previous one whole (and at worst a stray
``.<name>.*.tmp`` beside it). The folder is made owner-only (0700) when created here and the
file is 0600, since it holds account activity.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from metrics.buffer import BufferSnapshot, Chunk, EventBuffer
from metrics.events import COLUMNS, DICTIONARY_COLUMNS, Batch
from storage import replacing

FORMAT = b"account-activity-insights/buffer-snapshot"
VERSION = b"1"
RAW = "raw"
# Events per row group, what save and batches() hold at once: about 20 MB of raw records at
# 1.2 kB each. Larger groups cost memory and gain nothing: saving 200,000 events peaked at
# about 160 MB above the start with 16,384 a group and 490 MB with 65,536, at the same speed.
ROW_GROUP_EVENTS = 16_384
# Raw records read per hold of the buffer's lock: a few compressed blocks, a few milliseconds.
RAW_PIECE_EVENTS = 8_192


def _field(name: str) -> pa.Field:
    if name == "eventID":
        return pa.field(name, pa.string(), nullable=False)
    if name == "eventTime":
        return pa.field(name, pa.timestamp("ns", tz="UTC"), nullable=False)
    if name == "readOnly":
        return pa.field(name, pa.bool_())
    return pa.field(name, pa.dictionary(pa.int32(), pa.string()))


SCHEMA = pa.schema(
    [*(_field(name) for name in COLUMNS), pa.field(RAW, pa.binary(), nullable=False)],
    metadata={b"format": FORMAT, b"version": VERSION},
)


class SnapshotError(Exception):
    """A snapshot file that cannot be read: damaged, truncated, or not a snapshot."""


@dataclass(frozen=True)
class SnapshotInfo:
    events: int  # events written
    bytes: int  # size of the file
    seconds: float  # time the save took


def save(buffer: EventBuffer, path: str | os.PathLike, *, row_group_events: int = ROW_GROUP_EVENTS) -> SnapshotInfo:
    """Write the buffer's events, with their raw records, to ``path``, replacing it at once.

    The events are those of one ``buffer.snapshot()``; the buffer's lock is only taken in
    short holds while raw records are read, so ingestion and readers carry on meanwhile. An
    event evicted from the buffer during the save (its raw record gone) is left out.
    """
    started = time.perf_counter()
    path = os.fspath(path)
    snapshot = buffer.snapshot()
    events = 0
    with replacing(path, "wb") as file:
        writer = pq.ParquetWriter(
            file,
            SCHEMA,
            compression="zstd",
            use_dictionary=list(DICTIONARY_COLUMNS),
            write_page_checksum=True,
        )
        with writer:
            for table in _tables(buffer, snapshot, row_group_events):
                writer.write_table(table, row_group_size=len(table))
                events += len(table)
    return SnapshotInfo(events, os.path.getsize(path), time.perf_counter() - started)


def load(path: str | os.PathLike) -> Batch:
    """Every event of the snapshot at ``path`` as one batch for ``Engine.ingest``; an empty
    batch if there is no file. Raises ``SnapshotError`` if the file cannot be read whole.

    The batch holds every raw record as bytes: about 1.9 GB at the peak for a million events
    loaded and ingested, against 0.5 GB ingesting ``batches(path)`` one at a time."""
    batch = Batch()
    for part in batches(path):
        batch.extend(part)
    return batch


def count(path: str | os.PathLike) -> int:
    """The number of events saved in the snapshot (0 when there is none); raises
    ``SnapshotError`` if its footer cannot be read."""
    try:
        return pq.ParquetFile(os.fspath(path)).metadata.num_rows
    except FileNotFoundError:
        return 0
    except (pa.ArrowException, OSError, ValueError) as error:
        raise SnapshotError(f"{path} is not a readable snapshot: {error}") from error


def newest_ns(path: str | os.PathLike) -> int | None:
    """The newest eventTime saved in the snapshot, in ns (None when there is no file or no
    event); raises ``SnapshotError`` as ``count`` does. Reads that one column."""
    try:
        times = pq.read_table(os.fspath(path), columns=["eventTime"])["eventTime"]
    except FileNotFoundError:
        return None
    except (pa.ArrowException, OSError, ValueError) as error:
        raise SnapshotError(f"{path} is not a readable snapshot: {error}") from error
    return pc.max(times.cast(pa.int64())).as_py() if len(times) else None


def batches(path: str | os.PathLike) -> Iterator[Batch]:
    """The snapshot's events one row group at a time, for loading in bounded memory. The
    file is checked before the first batch; damage found later raises ``SnapshotError``
    after the batches before it were yielded."""
    path = os.fspath(path)
    try:
        file = pq.ParquetFile(path, page_checksum_verification=True)
    except FileNotFoundError:
        return
    except (pa.ArrowException, OSError, ValueError) as error:
        raise SnapshotError(f"{path} is not a readable snapshot: {error}") from error
    with file:
        _check_schema(file.schema_arrow, path)
        for group in range(file.num_row_groups):
            try:
                table = file.read_row_group(group)
                batch = _batch(table)
            except (pa.ArrowException, OSError, ValueError, IndexError) as error:
                raise SnapshotError(
                    f"{path} is damaged (row group {group + 1} of {file.num_row_groups}): {error}"
                ) from error
            yield batch


def _pieces(chunks: tuple[Chunk, ...], size: int) -> Iterator[Chunk]:
    """The snapshot's rows in order, cut into pieces of ``size`` (the last one shorter)."""
    pending: list[Chunk] = []
    count = 0
    for chunk in chunks:
        at = 0
        while at < len(chunk):
            take = min(size - count, len(chunk) - at)
            pending.append(chunk.take(slice(at, at + take)))
            at += take
            count += take
            if count == size:
                yield Chunk.concat(pending)
                pending, count = [], 0
    if pending:
        yield Chunk.concat(pending)


def _tables(buffer: EventBuffer, snapshot: BufferSnapshot, size: int) -> Iterator[pa.Table]:
    # Each label list becomes an Arrow array once; a row group takes just the labels it uses.
    labels = {name: pa.array(values, pa.string()) for name, values in snapshot.labels.items()}
    for piece in _pieces(snapshot.chunks, size):
        raws: list[bytes | None] = []
        for at in range(0, len(piece), RAW_PIECE_EVENTS):
            end = at + RAW_PIECE_EVENTS
            raws.extend(buffer.raw_records_at(piece.raw_block[at:end], piece.raw_slot[at:end]))
        if None in raws:
            piece = piece.take(np.array([i for i, raw in enumerate(raws) if raw is not None], dtype=np.intp))
            raws = [raw for raw in raws if raw is not None]
        if len(piece):
            yield _table(piece, raws, labels)


def _table(piece: Chunk, raws: list[bytes], labels: dict[str, pa.Array]) -> pa.Table:
    arrays = []
    for name in COLUMNS:
        if name == "eventID":
            arrays.append(piece.ids)
        elif name == "eventTime":
            arrays.append(pa.array(piece.times, pa.timestamp("ns", tz="UTC")))
        elif name == "readOnly":
            arrays.append(pa.array(piece.read_only == 1, pa.bool_(), mask=piece.read_only < 0))
        else:
            codes = piece.codes[name]
            used = np.unique(codes)
            used = used[used >= 0]
            indices = np.searchsorted(used, codes).astype(np.int32)
            arrays.append(
                pa.DictionaryArray.from_arrays(
                    pa.array(indices, pa.int32(), mask=codes < 0), labels[name].take(pa.array(used, pa.int64()))
                )
            )
    arrays.append(pa.array(raws, pa.binary()))
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def _check_schema(schema: pa.Schema, path: str) -> None:
    metadata = schema.metadata or {}
    if metadata.get(b"format") != FORMAT:
        raise SnapshotError(f"{path} is not a buffer snapshot")
    if metadata.get(b"version") != VERSION:
        version = metadata.get(b"version", b"?").decode(errors="replace")
        raise SnapshotError(f"{path} is a snapshot of version {version}; this app reads version {VERSION.decode()}")
    if not schema.remove_metadata().equals(SCHEMA.remove_metadata()):
        raise SnapshotError(f"{path} does not have the columns of a buffer snapshot")


def _batch(table: pa.Table) -> Batch:
    columns: list[list] = []
    for name in COLUMNS:
        column = table.column(name)
        if name == "eventTime":
            columns.append(column.cast(pa.int64()).to_numpy().tolist())
        elif name in DICTIONARY_COLUMNS:
            values: list = []
            for chunk in column.chunks:
                labels = np.array([*chunk.dictionary.to_pylist(), None], dtype=object)
                values.extend(labels[chunk.indices.fill_null(-1).to_numpy()].tolist())
            columns.append(values)
        else:
            columns.append(column.to_pylist())
    return Batch(columns, table.column(RAW).to_pylist())
