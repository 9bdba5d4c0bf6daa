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
from dataclasses import dataclass, field

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

    def known(self, key: str) -> int:
        entry = self._known.get(key)
        return len(entry.values) if entry else 0
