"""The shapes of detection: a rule as data, and the hit it produces."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from metrics.detections.record import get

SEVERITIES = ("info", "low", "medium", "high", "critical")
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}

_RULE_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_SIGMA_ID = re.compile(r"^sigma:[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")  # a Sigma rule's own id
_TECHNIQUE = re.compile(r"^T\d{4}(\.\d{3})?$")

Matcher = Callable[[dict], "str | Outcome | None"]


class Outcome(NamedTuple):
    """What a matcher returns when one record is worse (or milder) than its rule says: a trail's
    bucket rather than any bucket, a database deleted without a final snapshot, a sign-in that
    failed. ``severity`` and ``title`` replace the rule's for the hit (None: the rule's)."""

    summary: str
    severity: str | None = None
    title: str | None = None


class Found(NamedTuple):
    """What a stateful correlation reports: the key that makes the hit's id, its summary, the
    events it links, and a severity other than the rule's if the case calls for it."""

    key: Hashable
    summary: str
    events: list
    severity: str | None = None


class Burst(NamedTuple):
    """Fire when ``threshold`` matching events (or distinct values) share a key within
    ``window`` seconds: ``key(record)`` groups them (None: not counted), ``distinct(record)``,
    if given, yields the values to count instead of events (secret ids, instance ids).
    ``what`` names the counted things in the summary. A threshold of 1 groups every match of
    one key in a window into a single hit."""

    key: Callable[[dict], Hashable | None]
    window: int
    threshold: int
    distinct: Callable[[dict], Iterable[str]] | None = None
    what: str = "events"


class FirstSeen(NamedTuple):
    """A value never seen before for a key, once the key is past its learning period:
    ``key(record)`` (account, principal; None: not tracked) and ``value(record)`` (region,
    address, API, client; None or "": not tracked). ``what`` names the value in the summary."""

    key: Callable[[dict], str | None]
    value: Callable[[dict], str | None]
    what: str


@dataclass(frozen=True)
class Rule:
    """One detection, declared as data.

    Exactly one of ``match`` (a pure function of one record: a summary, or None when the
    record does not match), ``first_seen`` or ``correlate`` (a factory of a stateful matcher
    with ``observe(event) -> [(key, summary, events)]``) says what fires. ``burst`` turns a
    ``match`` rule into a count within a window. ``fields`` are the record fields worth
    showing beside a hit, as dotted paths.
    """

    id: str
    title: str
    severity: str
    technique: str
    description: str
    fields: tuple[str, ...]
    match: Matcher | None = None
    burst: Burst | None = None
    first_seen: FirstSeen | None = None
    correlate: Callable[[], object] | None = field(default=None, repr=False)
    catch_all: bool = False  # leaves a record to a call-specific rule that has it in a hit
    tags: tuple[str, ...] = ()  # a Sigma rule's tags (ATT&CK and others)

    def __post_init__(self):
        sigma = bool(_SIGMA_ID.match(self.id))
        if not _RULE_ID.match(self.id) and not sigma:
            raise ValueError(f"rule id is not kebab-case: {self.id!r}")
        if self.severity not in SEVERITY_RANK:
            raise ValueError(f"{self.id}: unknown severity {self.severity!r}")
        if not _TECHNIQUE.match(self.technique) and not (sigma and self.technique == ""):
            raise ValueError(f"{self.id}: not an ATT&CK technique id: {self.technique!r}")
        kinds = [k for k in (self.match, self.first_seen, self.correlate) if k is not None]
        if len(kinds) != 1:
            raise ValueError(f"{self.id}: give exactly one of match, first_seen, correlate")
        if self.burst is not None and self.match is None:
            raise ValueError(f"{self.id}: a burst counts the events of a match")

    def values(self, record: dict) -> dict[str, object]:
        """The rule's ``fields`` of one record, for display."""
        return {path: get(record, path) for path in self.fields}


@dataclass(frozen=True, slots=True)
class Event:
    """What a hit needs of one record, kept small so that windows can hold many."""

    id: str
    time: float  # epoch seconds
    user: str
    account: str
    ip: str
    region: str
    failed: bool
    iac: str = ""  # the infrastructure-as-code tool of its user agent, if any


@dataclass(frozen=True)
class Hit:
    """A rule that fired, linked to the events that made it fire.

    ``id`` is stable: the same events (or the same burst window of the same key) always give
    the same id. ``time`` is the first event's time in epoch seconds; ``failed`` is true when
    every linked event failed; ``summary`` is plain text and may hold record strings. ``iac``
    names the infrastructure-as-code tool (Terraform, CloudFormation, CDK) when every linked
    event carries its user agent: a label to filter on, never a reason to hide the hit.
    """

    id: str
    rule_id: str
    title: str
    severity: str
    technique: str
    time: float
    event_ids: tuple[str, ...]
    principal: str
    source_ip: str
    account: str
    region: str
    failed: bool
    summary: str
    iac: str = ""
    tags: tuple[str, ...] = ()


def hit_id(*parts: object) -> str:
    """A short stable identifier of a hit from its defining parts."""
    digest = hashlib.blake2b(digest_size=12)
    for part in parts:
        digest.update(str(part).encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    return digest.hexdigest()
