"""The events a filter selects from a buffer snapshot, without a frame of the whole range.

``Ordered`` is a snapshot's events in time order, made once per snapshot; ``select`` narrows
it to an ``EventFilter`` with array operations on the codes (and ``metrics.search`` for the
text), giving a ``Selection``: positions that can be counted, binned and summarised over their
columns. A pandas frame is built only for what is shown (a page of rows) or downloaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from metrics.buffer import BufferSnapshot, Chunk, chunk_frame
from metrics.explore import CRITERIA, TEXT_COLUMNS, EventFilter
from metrics.search import SEARCHED_COLUMNS, RawTexts, search_mask
from metrics.windows import NS_PER_SECOND

COLUMN_OF = {**CRITERIA, "error_codes": "errorCode"}


@dataclass(frozen=True)
class Ordered:
    """A snapshot's events sorted by time: ``order`` indexes ``whole``, ``times`` is sorted."""

    whole: Chunk
    labels: dict
    order: np.ndarray
    times: np.ndarray

    @classmethod
    def of(cls, snapshot: BufferSnapshot) -> Ordered:
        whole = snapshot.whole()
        order = np.argsort(whole.times, kind="stable")  # nearly sorted already: cheap
        return cls(whole, snapshot.labels, order, whole.times[order])

    def between(self, start_ns: int | None, end_ns: int | None) -> np.ndarray:
        low = 0 if start_ns is None else int(np.searchsorted(self.times, start_ns, side="left"))
        high = len(self.times) if end_ns is None else int(np.searchsorted(self.times, end_ns, side="left"))
        return self.order[low:high]

    def code_of(self, column: str, value: str) -> int | None:
        try:
            return self.labels[column].index(value)
        except ValueError:
            return None


@dataclass(frozen=True)
class Selection:
    """Events of one snapshot, oldest first, as positions into ``ordered.whole``."""

    ordered: Ordered
    positions: np.ndarray
    unsearched: int = 0  # events of the range whose records the search has not read yet

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def empty(self) -> bool:
        return len(self.positions) == 0

    def times_ns(self) -> np.ndarray:
        return self.ordered.whole.times[self.positions]

    def codes(self, column: str) -> np.ndarray:
        return self.ordered.whole.codes[column][self.positions]

    def counts(self, column: str, n: int | None = None, missing: bool = False) -> list[tuple[str | None, int]]:
        """The commonest values of ``column`` with their counts, commonest first (ties: by
        value); ``missing``: events without the field count as the value None."""
        codes = self.codes(column)
        tally = np.bincount(codes + 1, minlength=len(self.ordered.labels[column]) + 1)
        if not missing:
            tally[0] = 0
        present = np.flatnonzero(tally)
        labels = self.ordered.labels[column]
        pairs = [(None if code == 0 else labels[code - 1], int(tally[code])) for code in present.tolist()]
        pairs.sort(key=lambda pair: (-pair[1], pair[0] or ""))
        return pairs if n is None else pairs[:n]

    def values(self, column: str) -> list[str]:
        """The distinct values of ``column`` among these events."""
        labels = self.ordered.labels[column]
        return [labels[code] for code in np.unique(self.codes(column)).tolist() if code >= 0]

    def event_ids(self) -> list[str]:
        return self.ordered.whole.ids.take(self.positions).to_pylist()

    def frame(self, first: int = 0, stop: int | None = None) -> pd.DataFrame:
        """The events ``first`` to ``stop`` (oldest first) as a frame of ``COLUMNS``."""
        part = self.ordered.whole.take(self.positions[first:stop])
        return chunk_frame(part, self.ordered.labels)

    def newest(self, first: int, size: int) -> pd.DataFrame:
        """A page of the events, newest first: those ``first`` to ``first + size`` from the end,
        as a frame oldest first (as ``frame``)."""
        stop = len(self) - first
        return self.frame(max(0, stop - size), max(0, stop))


def _one_of(ordered: Ordered, codes: np.ndarray, column: str, values: tuple) -> np.ndarray:
    wanted = [c for v in values if v is not None and (c := ordered.code_of(column, v)) is not None]
    if None in values:
        wanted.append(-1)
    return np.isin(codes, wanted)


def select(ordered: Ordered, flt: EventFilter, raw_texts: RawTexts, deadline: float | None = None) -> Selection:
    """The events ``flt`` selects, as ``metrics.explore.matching`` defines it; raises
    ``QueryError`` when its text cannot be read. A search stops reading records at ``deadline``
    (``time.monotonic()``), newest first, and says how many events it left (``unsearched``)."""
    scale = NS_PER_SECOND
    positions = ordered.between(
        None if flt.start is None else flt.start * scale, None if flt.end is None else flt.end * scale
    )
    whole = ordered.whole
    keep = np.ones(len(positions), dtype=bool)
    for criterion, column in COLUMN_OF.items():
        values = getattr(flt, criterion)
        if values:
            keep &= _one_of(ordered, whole.codes[column][positions], column, values)
    for criterion, value in flt.excluded:
        column = COLUMN_OF[criterion]
        keep &= ~_one_of(ordered, whole.codes[column][positions], column, (value,))
    if flt.outcome:
        failed = whole.codes["errorCode"][positions] >= 0
        keep &= failed if flt.outcome == "failed" else ~failed
    if flt.event_ids:
        keep &= pc.is_in(whole.ids.take(positions), value_set=pa.array(flt.event_ids, pa.string())).to_numpy(
            zero_copy_only=False
        )
    positions = positions[keep]
    unsearched = 0
    if flt.text.strip():
        found, pending = search_mask(
            flt.text,
            {column: whole.codes[column][positions] for column in SEARCHED_COLUMNS},
            ordered.labels,
            whole.raw_block[positions],
            whole.raw_slot[positions],
            raw_texts,
            _table_values(ordered, positions),
            deadline,
        )
        positions, unsearched = positions[found], int(pending.sum())
    return Selection(ordered, positions, unsearched)


def _table_values(ordered: Ordered, positions: np.ndarray) -> Callable[[np.ndarray], dict[str, list]]:
    """The events table's values of some of ``positions`` (by index), as a record holds them."""

    def values(rows: np.ndarray) -> dict[str, list]:
        chosen = positions[rows]
        out = {}
        for column in TEXT_COLUMNS:
            if column == "eventID":
                out[column] = ordered.whole.ids.take(chosen).to_pylist()
            else:
                labels = ordered.labels[column]
                out[column] = [None if c < 0 else labels[c] for c in ordered.whole.codes[column][chosen].tolist()]
        return out

    return values
