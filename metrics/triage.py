"""What analysts decided about detection hits: acknowledged, suppressed (one hit, or a rule
for one principal), and per hit a note and who is on it. Kept in a JSON file in the state
folder, written atomically, so decisions survive restarts; a file written before notes and
assignees existed loads as it is, and every key is optional."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from storage import write_private

ANY_PRINCIPAL = "*"


class Triage:
    def __init__(self, path: str | os.PathLike | None = None, clock=time.time):
        self.path = Path(path) if path else None
        self.clock = clock
        self._lock = threading.Lock()
        self.acknowledged: dict[str, dict] = {}
        self.suppressed_hits: dict[str, dict] = {}
        self.suppressed_rules: list[dict] = []  # {rule_id, principal, by, at}
        self.notes: dict[str, dict] = {}  # hit id: {text, by, at}
        self.assignees: dict[str, dict] = {}  # hit id: {user, by, at}
        self.load_error: str | None = None
        self._load()

    def _load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text())
            self.acknowledged = dict(data.get("acknowledged", {}))
            self.suppressed_hits = dict(data.get("suppressed_hits", {}))
            self.suppressed_rules = list(data.get("suppressed_rules", []))
            self.notes = dict(data.get("notes", {}))
            self.assignees = dict(data.get("assignees", {}))
        except (OSError, ValueError, AttributeError, TypeError) as error:
            self.load_error = f"{self.path} is unreadable, decisions start empty: {error}"

    def _save(self) -> None:
        if self.path is None:
            return
        data = {
            "acknowledged": self.acknowledged,
            "suppressed_hits": self.suppressed_hits,
            "suppressed_rules": self.suppressed_rules,
            "notes": self.notes,
            "assignees": self.assignees,
        }
        write_private(self.path, json.dumps(data, indent=1))

    def _stamp(self, by: str) -> dict:
        return {"by": by, "at": self.clock()}

    def acknowledge(self, hit_id: str, by: str) -> None:
        with self._lock:
            self.acknowledged[hit_id] = self._stamp(by)
            self._save()

    def acknowledge_many(self, hit_ids, by: str) -> None:
        """Acknowledges every one of ``hit_ids`` in one write."""
        with self._lock:
            for hit_id in hit_ids:
                self.acknowledged[hit_id] = self._stamp(by)
            self._save()

    def suppress_many(self, hit_ids, by: str) -> None:
        with self._lock:
            for hit_id in hit_ids:
                self.suppressed_hits[hit_id] = self._stamp(by)
            self._save()

    def set_note(self, hit_id: str, text: str, by: str) -> None:
        """The hit's note (empty text: no note)."""
        with self._lock:
            if text.strip():
                self.notes[hit_id] = {"text": text.strip(), **self._stamp(by)}
            else:
                self.notes.pop(hit_id, None)
            self._save()

    def assign(self, hit_id: str, user: str, by: str) -> None:
        """Who is on the hit (empty: nobody)."""
        with self._lock:
            if user.strip():
                self.assignees[hit_id] = {"user": user.strip(), **self._stamp(by)}
            else:
                self.assignees.pop(hit_id, None)
            self._save()

    def note(self, hit_id: str) -> str:
        return self.notes.get(hit_id, {}).get("text", "")

    def assignee(self, hit_id: str) -> str:
        return self.assignees.get(hit_id, {}).get("user", "")

    def reopen(self, hit_id: str) -> None:
        with self._lock:
            self.acknowledged.pop(hit_id, None)
            self.suppressed_hits.pop(hit_id, None)
            self._save()

    def suppress_hit(self, hit_id: str, by: str) -> None:
        with self._lock:
            self.suppressed_hits[hit_id] = self._stamp(by)
            self._save()

    def suppress_rule(self, rule_id: str, principal: str, by: str) -> None:
        """Hides this rule's hits for ``principal`` (``ANY_PRINCIPAL``: everyone), now and later."""
        with self._lock:
            if not any(s["rule_id"] == rule_id and s["principal"] == principal for s in self.suppressed_rules):
                self.suppressed_rules.append({"rule_id": rule_id, "principal": principal, **self._stamp(by)})
                self._save()

    def lift_rule(self, rule_id: str, principal: str) -> None:
        with self._lock:
            self.suppressed_rules = [
                s for s in self.suppressed_rules if not (s["rule_id"] == rule_id and s["principal"] == principal)
            ]
            self._save()

    def is_suppressed(self, hit) -> bool:
        if hit.id in self.suppressed_hits:
            return True
        return any(
            s["rule_id"] == hit.rule_id and s["principal"] in (ANY_PRINCIPAL, hit.principal)
            for s in self.suppressed_rules
        )

    def status(self, hit) -> str:
        if self.is_suppressed(hit):
            return "suppressed"
        return "acknowledged" if hit.id in self.acknowledged else "new"
