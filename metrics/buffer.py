"""The event buffer: normalised rows in compact columns, de-duplicated by eventID and kept
for a retention window.

Writers append batches; readers take snapshots that never change under them. Storage is a
short list of immutable chunks (merged like a binary counter, so an append costs time in
proportion to its batch, amortised) with text columns as codes into append-only
dictionaries, and the raw records compressed in blocks for drill-down.

EventIDs are an Arrow string column per chunk, found through the chunk's sorted 64-bit hashes:
a hash match is always checked against the stored id, so two distinct ids that share a hash
are two events. That costs about 52 bytes an event, where a Python set of strings beside an
object column cost about 150; a whole batch is checked with a few ``searchsorted`` calls.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import pyarrow as pa
import zstandard

from metrics.events import COLUMNS, DICTIONARY_COLUMNS, Batch
from metrics.windows import NS_PER_SECOND

DAY_SECONDS = 86_400
MAX_CHUNK_ID_BYTES = 1 << 30
RELEASE_AFTER_EVENTS = 1 << 16
# Eviction scans the whole buffer, so it waits until this share of the retention is stale.
EVICTION_SLACK = 0.01
# Drill-down decompresses one block (about 2.5 MB of JSON) to read one record.
BLOCK_RECORDS = 2048


class Dictionary:
    """Append-only mapping between strings and small integer codes (-1 is missing), as the
    narrowest integer type that holds them."""

    __slots__ = ("index", "values")

    def __init__(self, values: Sequence[str] = ()):
        self.values: list[str] = list(values)
        self.index: dict = {None: -1}
        self.index.update((v, i) for i, v in enumerate(self.values))

    def encode(self, column: Sequence[str | None]) -> np.ndarray:
        # One hash-table pass in native code, then a dict look-up per distinct value only.
        codes, uniques = pd.factorize(np.asarray(column, dtype=object))
        if not len(uniques):
            return np.full(len(codes), -1, dtype=code_type(len(self.values)))
        index, values = self.index, self.values
        mapped = np.empty(len(uniques) + 1, dtype=np.int32)
        mapped[-1] = -1  # factorize's -1 (missing) picks the last slot
        for i, value in enumerate(uniques.tolist()):
            code = index.get(value)
            if code is None:
                code = index[value] = len(values)
                values.append(value)
            mapped[i] = code
        return mapped.astype(code_type(len(values)))[codes]


def code_type(size: int) -> type:
    """The narrowest integer type for codes into a dictionary of ``size`` strings (and -1): most
    columns hold a few dozen distinct values, so a byte a row instead of four. Chunks of
    different widths concatenate to the wider."""
    if size < 2**7:
        return np.int8
    if size < 2**15:
        return np.int16
    return np.int32


@dataclass(frozen=True)
class EventColumns:
    """Columns of a set of events as the metrics read them: times, and codes with labels."""

    times: np.ndarray  # int64 nanoseconds
    codes: dict[str, np.ndarray]  # int codes, -1 for missing
    labels: dict[str, Sequence[str]]  # code -> string, per column

    def __len__(self) -> int:
        return len(self.times)

    def code_of(self, column: str, value: str) -> int | None:
        labels = self.labels[column]
        try:
            if isinstance(labels, pd.Index):
                return int(labels.get_loc(value))
            return labels.index(value)
        except (KeyError, ValueError):
            return None

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> EventColumns:
        """The columns of a pandas frame whose text columns are categorical."""
        codes, labels = {}, {}
        for name in DICTIONARY_COLUMNS:
            if name in frame:
                categorical = frame[name].astype("category")
                codes[name] = categorical.cat.codes.to_numpy()
                labels[name] = categorical.cat.categories
        times = frame["eventTime"].astype("datetime64[ns, UTC]").array.asi8
        return cls(times, codes, labels)


def id_hashes(ids) -> np.ndarray:
    """64-bit hashes of eventIDs (a list or object array of str), for finding an id fast; two
    distinct ids may share one, so a match is always checked against the id itself."""
    return pd.util.hash_array(np.asarray(ids, dtype=object), categorize=False)


@dataclass(frozen=True)
class IdIndex:
    """A chunk's eventID hashes sorted, and the row of each: ``searchsorted`` finds an id."""

    hashes: np.ndarray  # uint64, sorted
    rows: np.ndarray  # int32: the chunk row of each hash

    @classmethod
    def of(cls, hashes: np.ndarray) -> IdIndex:
        order = np.argsort(hashes, kind="stable")
        return cls(hashes[order], order.astype(np.int32))

    @staticmethod
    def concat(indexes: Sequence[IdIndex], sizes: Sequence[int]) -> IdIndex:
        offsets = np.cumsum([0, *sizes[:-1]])
        hashes = np.concatenate([i.hashes for i in indexes])
        rows = np.concatenate([i.rows + np.int32(o) for i, o in zip(indexes, offsets)])
        order = np.argsort(hashes, kind="stable")  # sorted runs: close to a linear merge
        return IdIndex(hashes[order], rows[order])

    def candidates(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions into ``hashes``, chunk rows) of every stored id sharing a hash with them."""
        order = np.argsort(hashes)  # sorted queries search far faster than random ones
        hashes = hashes[order]
        low = np.searchsorted(self.hashes, hashes, side="left")
        counts = np.searchsorted(self.hashes, hashes, side="right") - low
        wanted = np.repeat(order, counts)
        firsts = np.cumsum(counts) - counts  # where each query's matches start among all matches
        places = np.repeat(low - firsts, counts) + np.arange(len(wanted))
        return wanted, self.rows[places]

    @property
    def nbytes(self) -> int:
        return self.hashes.nbytes + self.rows.nbytes


@dataclass(frozen=True)
class Chunk:
    ids: pa.StringArray  # eventIDs: about 40 bytes each, where Python strings in a set cost 150
    times: np.ndarray  # int64 nanoseconds
    read_only: np.ndarray  # int8: 1, 0, or -1 for missing
    codes: dict[str, np.ndarray]
    raw_block: np.ndarray  # int32: which compressed block holds the raw record
    raw_slot: np.ndarray  # int16: its position in that block (fewer than BLOCK_RECORDS)
    index: IdIndex | None = None  # the buffer's own chunks have one; a reader's pieces need none

    def __len__(self) -> int:
        return len(self.times)

    def take(self, selector) -> Chunk:
        if isinstance(selector, slice):
            start, stop, _ = selector.indices(len(self))
            ids = self.ids.slice(start, max(0, stop - start))
        else:
            ids = self.ids.take(pa.array(np.asarray(selector, dtype=np.int64)))
        return Chunk(
            ids,
            self.times[selector],
            self.read_only[selector],
            {k: v[selector] for k, v in self.codes.items()},
            self.raw_block[selector],
            self.raw_slot[selector],
        )

    def indexed(self) -> Chunk:
        """This chunk with its id index (built from the ids when missing)."""
        if self.index is not None:
            return self
        return replace(self, index=IdIndex.of(id_hashes(self.ids.to_numpy(zero_copy_only=False))))

    def id_list(self, rows: np.ndarray) -> list[str]:
        return self.ids.take(pa.array(rows, pa.int64())).to_pylist()

    @staticmethod
    def concat(chunks: Sequence[Chunk]) -> Chunk:
        if len(chunks) == 1:
            return chunks[0]
        index = None
        if all(c.index is not None for c in chunks):
            index = IdIndex.concat([c.index for c in chunks], [len(c) for c in chunks])
        return Chunk(
            pa.concat_arrays([c.ids for c in chunks]),
            np.concatenate([c.times for c in chunks]),
            np.concatenate([c.read_only for c in chunks]),
            {k: np.concatenate([c.codes[k] for c in chunks]) for k in chunks[0].codes},
            np.concatenate([c.raw_block for c in chunks]),
            np.concatenate([c.raw_slot for c in chunks]),
            index,
        )


class RawStore:
    """Raw records for drill-down, compressed in blocks of ``BLOCK_RECORDS``.

    Records of one block share their keys and most values, so zstd shrinks a full block about
    fifteenfold at about a millisecond per thousand records. Records wait uncompressed until
    their block is full, so that small batches (a LookupEvents page holds 50) still make full
    blocks. Not thread-safe on its own: the buffer's lock guards it.
    """

    def __init__(self, level: int = 1):
        self._compress = zstandard.ZstdCompressor(level=level).compress
        self._decompress = zstandard.ZstdDecompressor().decompress
        self.blocks: dict[int, tuple[bytes, np.ndarray]] = {}
        self._open: list[bytes] = []  # the block being filled
        self._open_id = 0

    def put(self, raws: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """Store records; returns each one's (block, slot)."""
        n = len(raws)
        blocks = np.empty(n, dtype=np.int32)
        slots = np.empty(n, dtype=np.int16)
        done = 0
        while done < n:
            part = raws[done : done + BLOCK_RECORDS - len(self._open)]
            blocks[done : done + len(part)] = self._open_id
            slots[done : done + len(part)] = np.arange(len(self._open), len(self._open) + len(part))
            self._open.extend(part)
            done += len(part)
            if len(self._open) == BLOCK_RECORDS:
                self._seal()
        return blocks, slots

    def _seal(self) -> None:
        offsets = np.zeros(len(self._open) + 1, dtype=np.int32)  # a block is far below 2 GB
        np.cumsum(np.fromiter(map(len, self._open), dtype=np.int64, count=len(self._open)), out=offsets[1:])
        # zstandard's result keeps its worst-case allocation; a copy holds only the bytes.
        data = bytes(memoryview(self._compress(b"".join(self._open))))
        self.blocks[self._open_id] = (data, offsets)
        self._open = []
        self._open_id += 1

    def get(self, block: int, slot: int) -> bytes | None:
        if block == self._open_id:
            return self._open[slot] if slot < len(self._open) else None
        entry = self.blocks.get(block)
        if entry is None:
            return None
        data, offsets = entry
        return self._decompress(data)[offsets[slot] : offsets[slot + 1]]

    def get_many(self, places: Sequence[tuple[int, int]]) -> list[bytes | None]:
        """Like ``get`` for many (block, slot) pairs, decompressing each block once."""
        found: list[bytes | None] = [None] * len(places)
        by_block: dict[int, list[int]] = {}
        for i, (block, _) in enumerate(places):
            by_block.setdefault(block, []).append(i)
        for block, indices in by_block.items():
            if block == self._open_id:
                for i in indices:
                    found[i] = self.get(block, places[i][1])
                continue
            entry = self.blocks.get(block)
            if entry is None:
                continue
            data, offsets = entry
            whole = self._decompress(data)
            for i in indices:
                slot = places[i][1]
                found[i] = whole[offsets[slot] : offsets[slot + 1]]
        return found

    def keep_only(self, live: np.ndarray) -> None:
        """Forget the sealed blocks no live event points into."""
        live_set = set(live.tolist())
        for block in [b for b in self.blocks if b not in live_set]:
            del self.blocks[block]


@dataclass(frozen=True)
class AppendResult:
    added: EventColumns  # the rows that were new, for incremental metrics
    duplicates: int
    expired: int  # older than the retention window when they arrived


@dataclass(frozen=True)
class BufferSnapshot:
    """An immutable view of the buffer at one moment."""

    chunks: tuple[Chunk, ...]
    labels: dict[str, list[str]]
    version: int

    def __len__(self) -> int:
        return sum(len(c) for c in self.chunks)

    def columns(self) -> EventColumns:
        whole = self._whole()
        return EventColumns(whole.times, whole.codes, self.labels)

    def _whole(self) -> Chunk:
        if not self.chunks:
            return _empty_chunk()
        return Chunk.concat([replace(c, index=None) for c in self.chunks])

    def whole(self) -> Chunk:
        """Every event of the snapshot as one chunk (in storage order, not time order)."""
        return self._whole()

    def frame(self, start_ns: int | None = None, end_ns: int | None = None) -> pd.DataFrame:
        """Events with start <= eventTime < end, one column per ``COLUMNS`` entry, text as
        categoricals, sorted by time."""
        whole = self._whole()
        keep = np.ones(len(whole), dtype=bool)
        if start_ns is not None:
            keep &= whole.times >= start_ns
        if end_ns is not None:
            keep &= whole.times < end_ns
        part = whole.take(np.flatnonzero(keep))
        return chunk_frame(part.take(np.argsort(part.times, kind="stable")), self.labels)


def chunk_frame(part: Chunk, labels: dict[str, Sequence[str]]) -> pd.DataFrame:
    """A chunk's events as a frame in the chunk's order: one column per ``COLUMNS`` entry,
    text as categoricals over ``labels`` (a snapshot's)."""
    data = {}
    for name in COLUMNS:
        if name == "eventID":
            data[name] = pd.Series(part.ids.to_numpy(zero_copy_only=False), dtype=object)
        elif name == "eventTime":
            data[name] = pd.to_datetime(part.times, unit="ns", utc=True)
        elif name == "readOnly":
            flags = pd.array(part.read_only == 1, dtype="boolean")
            flags[part.read_only < 0] = pd.NA
            data[name] = flags
        else:
            data[name] = pd.Categorical.from_codes(
                part.codes[name],
                categories=pd.Index(labels[name], dtype=object),
                validate=False,
            )
    return pd.DataFrame(data)


def _empty_chunk() -> Chunk:
    empty = np.empty(0, dtype=np.int32)
    no_codes = np.empty(0, dtype=np.int8)
    return Chunk(
        pa.array([], pa.string()),
        np.empty(0, dtype=np.int64),
        np.empty(0, dtype=np.int8),
        {name: no_codes for name in DICTIONARY_COLUMNS},
        empty,
        empty,
    )


class EventBuffer:
    """Thread-safe store of normalised events, unique by eventID, bounded by retention.

    ``retention_seconds=None`` keeps everything (batch use on files).
    """

    def __init__(self, retention_seconds: float | None = DAY_SECONDS):
        self.retention_ns = None if retention_seconds is None else int(retention_seconds * NS_PER_SECOND)
        self.dictionaries = {name: Dictionary() for name in DICTIONARY_COLUMNS}
        self.raw = RawStore()
        self._chunks: list[Chunk] = []  # each with its id index
        self._count = 0
        self._lock = threading.Lock()
        self._version = 0
        self._oldest_ns: int | None = None
        self.duplicates = 0
        self.expired = 0
        self.evicted = 0

    def __len__(self) -> int:
        return self._count

    @property
    def version(self) -> int:
        """Changes whenever the content changes; readers cache on it."""
        return self._version

    def append(self, batch: Batch, now_ns: int | None = None) -> AppendResult:
        with self._lock:
            cutoff = self._cutoff(now_ns)
            ids = np.asarray(batch.column("eventID"), dtype=object)
            hashes = id_hashes(ids)
            fresh, duplicates, expired = self._select_new(ids, hashes, batch.column("eventTime"), cutoff)
            self.duplicates += duplicates
            self.expired += expired
            if len(fresh):
                if len(fresh) < len(batch):
                    batch = batch.select(fresh.tolist())
                    ids, hashes = ids[fresh], hashes[fresh]
                chunk = self._encode(batch, ids, hashes)
                self._count += len(chunk)
                self._chunks.append(chunk)
                self._merge_tail()
                self._version += 1
                low = int(chunk.times.min())
                self._oldest_ns = low if self._oldest_ns is None else min(self._oldest_ns, low)
            else:
                chunk = _empty_chunk()
            # The batch's codes index these lists; eviction may compact the dictionaries into
            # new lists and recode the stored chunks, but leaves these as they are.
            labels = {name: d.values for name, d in self.dictionaries.items()}
            if cutoff is not None and self._oldest_ns is not None:
                slack = int(self.retention_ns * EVICTION_SLACK)
                if self._oldest_ns < cutoff - slack:
                    self._evict(cutoff)
            return AppendResult(EventColumns(chunk.times, chunk.codes, labels), duplicates, expired)

    def _cutoff(self, now_ns: int | None) -> int | None:
        if self.retention_ns is None or now_ns is None:
            return None
        return now_ns - self.retention_ns

    def _held(self, ids: np.ndarray, hashes: np.ndarray) -> np.ndarray:
        """Whether each id is in the buffer: a hash match, then the ids compared, so that two
        distinct ids sharing a hash are never taken for one."""
        held = np.zeros(len(ids), dtype=bool)
        for chunk in self._chunks:
            wanted, rows = chunk.index.candidates(hashes)
            if len(wanted):
                stored = np.array(chunk.id_list(rows), dtype=object)
                held[wanted[stored == ids[wanted]]] = True
        return held

    def _select_new(self, ids: np.ndarray, hashes: np.ndarray, times, cutoff: int | None):
        """(positions of the events to add, duplicates, expired) of a batch: an id held or seen
        earlier in the batch is a duplicate, else an event older than ``cutoff`` expired."""
        n = len(ids)
        held = self._held(ids, hashes) if self._chunks else np.zeros(n, dtype=bool)
        old = np.zeros(n, dtype=bool) if cutoff is None else np.asarray(times, dtype=np.int64) < cutoff
        if len(np.unique(hashes[~held])) == int(n - held.sum()):  # no id twice in the batch
            fresh = np.flatnonzero(~held & ~old)
            return fresh, int(held.sum()), int((~held & old).sum())
        seen: set[str] = set()
        fresh, duplicates, expired = [], 0, 0
        for i, (event_id, is_held, is_old) in enumerate(zip(ids.tolist(), held.tolist(), old.tolist())):
            if is_held or event_id in seen:
                duplicates += 1
            elif is_old:
                expired += 1
            else:
                seen.add(event_id)
                fresh.append(i)
        return np.array(fresh, dtype=np.intp), duplicates, expired

    def _encode(self, batch: Batch, ids: np.ndarray, hashes: np.ndarray) -> Chunk:
        read_only = _read_only(batch.column("readOnly"))
        codes = {name: self.dictionaries[name].encode(batch.column(name)) for name in DICTIONARY_COLUMNS}
        blocks, slots = self.raw.put(batch.raws)
        return Chunk(
            pa.array(ids, pa.string()),
            np.asarray(batch.column("eventTime"), dtype=np.int64),
            read_only,
            codes,
            blocks,
            slots,
            IdIndex.of(hashes),
        )

    def _merge_tail(self) -> None:
        chunks = self._chunks
        while (
            len(chunks) >= 2
            and len(chunks[-2]) <= len(chunks[-1])
            # Arrow's string offsets are 32-bit: a chunk's ids stay well below 2 GB.
            and chunks[-2].ids.nbytes + chunks[-1].ids.nbytes < MAX_CHUNK_ID_BYTES
        ):
            last = chunks.pop()
            chunks[-1] = Chunk.concat([chunks[-1], last])
            if len(chunks[-1]) >= RELEASE_AFTER_EVENTS:
                # Arrow's allocator keeps what a large merge freed unless asked to give it back.
                pa.default_memory_pool().release_unused()

    def evict(self, now_ns: int) -> int:
        """Drop events older than the retention window; returns how many."""
        with self._lock:
            cutoff = self._cutoff(now_ns)
            return 0 if cutoff is None else self._evict(cutoff)

    def _evict(self, cutoff: int) -> int:
        kept, dropped = [], 0
        for chunk in self._chunks:
            old = chunk.times < cutoff
            count = int(old.sum())
            if count == 0:
                kept.append(chunk)
                continue
            dropped += count
            if count < len(chunk):
                kept.append(chunk.take(np.flatnonzero(~old)).indexed())
        self._chunks = kept
        self._count -= dropped
        self._oldest_ns = min((int(c.times.min()) for c in kept), default=None)
        if dropped:
            self.evicted += dropped
            self._version += 1
            self.raw.keep_only(np.unique(np.concatenate([c.raw_block for c in kept])) if kept else np.empty(0))
            self._compact_dictionaries()
        return dropped

    def _compact_dictionaries(self) -> None:
        """Forget strings no live event uses, once they are most of a dictionary."""
        for name, dictionary in self.dictionaries.items():
            size = len(dictionary.values)
            if size < 4096:
                continue
            used = np.zeros(size + 1, dtype=bool)
            for chunk in self._chunks:
                used[chunk.codes[name]] = True  # code -1 marks the spare last slot
            live = np.flatnonzero(used[:size])
            if len(live) * 2 > size:
                continue
            remap = np.full(size + 1, -1, dtype=code_type(len(live)))
            remap[live] = np.arange(len(live), dtype=np.int32)
            # Snapshots hold the old list, so a new one is made rather than edited in place.
            self.dictionaries[name] = Dictionary([dictionary.values[i] for i in live])
            self._chunks = [replace(c, codes={**c.codes, name: remap[c.codes[name]]}) for c in self._chunks]

    def snapshot(self) -> BufferSnapshot:
        with self._lock:
            labels = {name: d.values[:] for name, d in self.dictionaries.items()}
            return BufferSnapshot(tuple(self._chunks), labels, self._version)

    def raw_records(self, event_ids: Sequence[str]) -> list[bytes | None]:
        """The stored raw JSON of each event, None for those not (or no longer) here."""
        wanted = np.asarray(list(event_ids), dtype=object)
        hashes = id_hashes(wanted)
        places: dict[int, tuple[int, int]] = {}
        with self._lock:
            for chunk in self._chunks:
                positions, rows = chunk.index.candidates(hashes)
                if not len(positions):
                    continue
                stored = chunk.id_list(rows)
                for i, row, event_id in zip(positions.tolist(), rows.tolist(), stored):
                    if event_id == wanted[i]:
                        places[i] = (int(chunk.raw_block[row]), int(chunk.raw_slot[row]))
            raws = self.raw.get_many(list(places.values()))
        found: list[bytes | None] = [None] * len(wanted)
        for i, raw in zip(places, raws):
            found[i] = raw
        return found

    def raw_records_at(self, blocks: np.ndarray, slots: np.ndarray) -> list[bytes | None]:
        """The stored raw JSON at each (block, slot) of a snapshot's chunk, None where it has
        since been evicted. Block numbers are never reused, so a place read later still means
        the same record; a caller reading a large snapshot asks piece by piece."""
        with self._lock:
            return self.raw.get_many(list(zip(blocks.tolist(), slots.tolist())))

    def raw_texts(self, blocks: Sequence[int]) -> Iterator[tuple[int, np.ndarray, Callable[[], bytes]]]:
        """For a search: each block's record offsets and a function giving its records as one
        decompressed text (record ``slot`` is ``text[offsets[slot]:offsets[slot + 1]]``), blocks
        evicted since left out. Decompressed only when asked, one at a time and outside the
        lock, so that a scan of months neither holds the writers up nor all the text in memory."""
        with self._lock:
            found = []
            for block in blocks:
                if block == self.raw._open_id:
                    pending = self.raw._open[:]
                    offsets = np.zeros(len(pending) + 1, dtype=np.int64)
                    np.cumsum([len(r) for r in pending], out=offsets[1:])
                    found.append((block, offsets, b"".join(pending), False))
                elif block in self.raw.blocks:
                    data, offsets = self.raw.blocks[block]
                    found.append((block, offsets, data, True))
        decompress = zstandard.ZstdDecompressor().decompress  # one per call: not thread-safe
        for block, offsets, data, compressed in found:
            yield block, offsets, (lambda data=data: decompress(data)) if compressed else (lambda data=data: data)

    def raw_record(self, event_id: str) -> bytes | None:
        """The stored raw JSON of one event, or None if it is not (or no longer) here."""
        return self.raw_records([event_id])[0]


def _read_only(values) -> np.ndarray:
    """readOnly as int8: 1, 0, or -1 for missing."""
    if isinstance(values, np.ndarray) and values.dtype == bool:
        return values.astype(np.int8)
    return np.array([-1 if v is None else int(v) for v in values], dtype=np.int8)
