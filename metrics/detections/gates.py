"""Which rows of a batch a rule can match at all, decided over the columns at once.

A matcher declares with ``where`` what it needs of a record's columns (``eventName`` one of
a few names, an ``errorCode`` of a kind, the identity type ``Root``...), and the declaration
is enforced: the declared matcher returns None for any record whose columns fail it, so the
detector may skip those rows unasked without ever missing a hit. ``calls`` matchers are
keyed by their (eventSource, eventName) pairs instead. A rule without a declaration runs on
every row.

A condition is a set of texts the column must hold, or a predicate of the column's text (None
when the record has none), evaluated once per distinct value of the batch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection

import numpy as np
import pandas as pd

from metrics.detections.columns import ColumnRecord
from metrics.detections.record import identity
from metrics.events import COLUMNS as ROW_COLUMNS
from metrics.events import POSITION

Check = Callable[[str | None], bool]
# The columns a condition may name: a record's top-level texts and its identity's type and ARN.
COLUMNS = (
    "eventSource",
    "eventName",
    "awsRegion",
    "sourceIPAddress",
    "userAgent",
    "errorCode",
    "eventType",
    "identityType",
    "principalArn",
)
_IDENTITY = {"identityType": "type", "principalArn": "arn"}
_ANSWERING = tuple(name for name in ROW_COLUMNS if name not in ("eventID", "eventTime"))


def column_of(record: dict, name: str) -> str | None:
    """The text the column ``name`` holds for a record: the field's string, None for anything else."""
    if type(record) is ColumnRecord:
        return record.value(POSITION[name])
    value = identity(record).get(_IDENTITY[name]) if name in _IDENTITY else record.get(name)
    return value if isinstance(value, str) and value else None


class Gate:
    """Conditions on columns, all of which a record must meet."""

    def __init__(self, **conditions: Collection[str] | Check):
        unknown = set(conditions) - set(COLUMNS)
        if unknown:
            raise ValueError(f"not a column a gate can read: {sorted(unknown)}")
        self.checks: tuple[tuple[str, Check], ...] = tuple(
            (name, condition if callable(condition) else frozenset(condition).__contains__)
            for name, condition in conditions.items()
        )

    def passes(self, record: dict) -> bool:
        return all(check(column_of(record, name)) for name, check in self.checks)

    def mask(self, view: ColumnView) -> np.ndarray:
        out = np.ones(view.size, dtype=bool)
        for name, check in self.checks:
            out &= view.test(name, check)
        return out


class AllOf:
    """Every one of some gates (None stands for no condition)."""

    def __init__(self, parts):
        self.parts = tuple(parts)

    def passes(self, record: dict) -> bool:
        return all(part.passes(record) for part in self.parts)

    def mask(self, view: ColumnView) -> np.ndarray:
        out = np.ones(view.size, dtype=bool)
        for part in self.parts:
            out &= part.mask(view)
        return out


class AnyOf(AllOf):
    """At least one of some gates."""

    def passes(self, record: dict) -> bool:
        return any(part.passes(record) for part in self.parts)

    def mask(self, view: ColumnView) -> np.ndarray:
        out = np.zeros(view.size, dtype=bool)
        for part in self.parts:
            out |= part.mask(view)
        return out


def all_of(parts):
    """The gate of all ``parts`` (None: no condition); None if none has one."""
    parts = [part for part in parts if part is not None]
    return None if not parts else parts[0] if len(parts) == 1 else AllOf(parts)


def any_of(parts):
    """The gate of any of ``parts``; None (no condition) if one of them has none."""
    parts = list(parts)
    if not parts or any(part is None for part in parts):
        return None
    return parts[0] if len(parts) == 1 else AnyOf(parts)


def where(**conditions: Collection[str] | Check):
    """Declares, and enforces, what a matcher needs of a record's columns (see the module)."""
    gate = Gate(**conditions)

    def declare(matcher):
        @functools.wraps(matcher)
        def match(record: dict):
            # A ColumnRecord comes only from the detector, which has tested the gate on its columns.
            return matcher(record) if type(record) is ColumnRecord or gate.passes(record) else None

        match.gate = gate
        return match

    return declare


class ColumnView:
    """Some rows of a batch's columns (``rows``, positions into them), tested per distinct value."""

    def __init__(self, columns: list[list], rows: np.ndarray):
        self.columns, self.rows, self.size = columns, rows, len(rows)
        self._codes: dict[str, tuple[np.ndarray, list]] = {}

    def test(self, name: str, check: Check) -> np.ndarray:
        codes, uniques = self._factorized(name)
        verdicts = np.array([bool(check(value)) for value in uniques] + [bool(check(None))], dtype=bool)
        return verdicts[codes]  # code -1 (no value) takes the last verdict

    def _factorized(self, name: str) -> tuple[np.ndarray, list]:
        factorized = self._codes.get(name)
        if factorized is None:
            codes, uniques = pd.factorize(np.asarray(self.columns[POSITION[name]], dtype=object))
            factorized = self._codes[name] = (codes[self.rows], list(uniques))
        return factorized

    def kinds(self, facts: np.ndarray) -> tuple[np.ndarray, int]:
        """(per row, a number shared by the rows alike in every column but eventID and eventTime
        and in ``facts``; how many numbers there are)."""
        kind = np.asarray(facts, dtype=np.int64)
        for name in _ANSWERING:
            codes = self._factorized(name)[0].astype(np.int64) + 1  # 0: no value
            kind, _ = pd.factorize(kind * (int(codes.max(initial=0)) + 1) + codes)  # below rows x distinct
        return kind, int(kind.max(initial=-1)) + 1
