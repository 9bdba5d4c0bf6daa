"""The normalised event row: one definition of its columns, shared by the normaliser,
the buffer and every metric.

A row is a tuple in ``COLUMNS`` order. ``eventTime`` is integer nanoseconds since the Unix
epoch (UTC); ``readOnly`` is True, False or None; every other column is a string or None.
"""

from __future__ import annotations

COLUMNS = (
    "eventID",
    "eventTime",
    "eventSource",
    "eventName",
    "awsRegion",
    "sourceIPAddress",
    "userAgent",
    "errorCode",
    "errorMessage",
    "readOnly",
    "eventType",
    "account",
    "user",
    "session",
    "identityType",
    "principalArn",
)

# Columns stored as dictionary codes: few distinct values compared with the row count,
# so a code per row (and one copy of each string) keeps a day of events small.
DICTIONARY_COLUMNS = tuple(c for c in COLUMNS if c not in ("eventID", "eventTime", "readOnly"))

POSITION = {name: i for i, name in enumerate(COLUMNS)}


class Batch:
    """Normalised events on their way into the buffer: one list per column (in ``COLUMNS``
    order) and the raw JSON of each event.

    Columns rather than row tuples: a large batch of tuples keeps Python's cycle collector
    busy scanning them, and the buffer wants columns anyway.
    """

    __slots__ = ("columns", "raws")

    def __init__(self, columns: list[list] | None = None, raws: list[bytes] | None = None):
        self.columns = columns if columns is not None else [[] for _ in COLUMNS]
        self.raws = raws if raws is not None else []

    def __len__(self) -> int:
        return len(self.raws)

    def column(self, name: str) -> list:
        return self.columns[POSITION[name]]

    def select(self, positions: list[int]) -> Batch:
        return Batch([[c[i] for i in positions] for c in self.columns], [self.raws[i] for i in positions])

    def extend(self, other: Batch) -> None:
        for mine, theirs in zip(self.columns, other.columns):
            mine.extend(theirs)
        self.raws.extend(other.raws)

    @staticmethod
    def concat(parts: list[Batch]) -> Batch:
        """The parts as one batch, in order; a single part is returned as it is."""
        if len(parts) == 1:
            return parts[0]
        whole = Batch()
        for part in parts:
            whole.extend(part)
        return whole
