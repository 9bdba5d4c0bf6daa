"""First-seen activity: a value never seen before for a principal or an account.

Every observed event teaches the baseline. A new value alerts only once its key (principal
or account) is past its learning period: ``learning_seconds`` of event time since the first
event of that key, so a principal's first hour is learned, not reported. Memory is bounded:
at most ``max_values`` values per key (a key with more is too varied for first-seen to mean
anything, and stops alerting) and ``max_keys`` keys, the least recently active forgotten
(and learned again, quietly, if they come back).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from metrics.detections.model import FirstSeen


@dataclass
class _Known:
    first: float
    values: set = field(default_factory=set)
    saturated: bool = False


class FirstSeenTracker:
    def __init__(self, spec: FirstSeen, learning_seconds: float = 3600, max_keys: int = 20_000, max_values: int = 500):
        self.spec = spec
        self.learning_seconds = learning_seconds
        self.max_keys = max_keys
        self.max_values = max_values
        self._known: OrderedDict[str, _Known] = OrderedDict()

    def observe(self, record: dict, time: float) -> tuple[str, str, float] | None:
        """(key, new value, seconds since the key's first event) when this is an alert."""
        key = self.spec.key(record)
        if not key:
            return None
        return self.learn(key, self.spec.value(record), time)

    def learn(self, key: str, value: str | None, time: float) -> tuple[str, str, float] | None:
        """``observe`` for a record's key (not empty) and value, worked out by the caller."""
        known = self._known.get(key)
        if known is None:
            known = self._known[key] = _Known(time)
            if len(self._known) > self.max_keys:
                self._known.popitem(last=False)
        else:
            self._known.move_to_end(key)
            known.first = min(known.first, time)
        if not value or value in known.values or known.saturated:
            return None
        if len(known.values) >= self.max_values:
            known.saturated = True
            return None
        known.values.add(value)
        age = time - known.first
        if age < self.learning_seconds:
            return None
        return key, value, age

    def learn_many(self, keys: Sequence[str], values: Sequence, times: Sequence[float]) -> list[tuple[int, tuple, int]]:
        """``learn`` for events in time order (keys not empty): [(index, what learn returned, how
        many values the key then had)] of the alerts. Only the first event of each key and of
        each (key, value) can change what is known or alert; the others only mark their key as
        recently active, which matters only if keys are forgotten meanwhile. So when this many
        keys cannot overflow ``max_keys``, only those firsts are learned, and the keys are then
        marked active in the order they last were."""
        if not len(keys):
            return []
        key_codes, key_names = pd.factorize(np.asarray(keys, dtype=object))
        if len(self._known) + len(key_names) > self.max_keys:
            firsts = range(len(keys))
        else:
            firsts = self._firsts(key_codes, values)
        out = []
        for i in firsts:
            seen = self.learn(keys[i], values[i], times[i])
            if seen is not None:
                out.append((i, seen, self.known(seen[0])))
        if isinstance(firsts, range):
            return out
        last = np.full(len(key_names), -1, dtype=np.int64)
        np.maximum.at(last, key_codes, np.arange(len(keys)))
        for code in np.argsort(last, kind="stable").tolist():
            self._known.move_to_end(key_names[code])
        return out

    @staticmethod
    def _firsts(key_codes: np.ndarray, values: Sequence) -> list[int]:
        """The positions of the first event of each key and of each (key, value)."""
        value_codes, value_names = pd.factorize(np.asarray(values, dtype=object))
        pairs = key_codes.astype(np.int64) * (len(value_names) + 1) + (value_codes + 1)
        return np.union1d(np.unique(key_codes, return_index=True)[1], np.unique(pairs, return_index=True)[1]).tolist()

    def known(self, key: str) -> int:
        entry = self._known.get(key)
        return len(entry.values) if entry else 0
