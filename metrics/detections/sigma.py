"""Sigma rules for CloudTrail as a second rule source beside the table.

    >>> loaded = load_folder("rules/sigma")              # doctest: +SKIP
    >>> Detector((*RULES, *loaded.rules))                # doctest: +SKIP
    >>> loaded.refused                                   # [(file, reason), ...]  # doctest: +SKIP

Each ``.yml`` (or ``.yaml``) file holding one rule with ``logsource`` ``product: aws`` and
``service: cloudtrail`` becomes a ``Rule`` whose id is ``sigma:<the rule's id>``, whose
severity is its ``level`` and whose technique and tags come from its ``tags``. Supported, as
the Sigma specification defines them: search identifiers that are maps (fields AND-ed) or
lists of maps (OR-ed); lists of values (OR-ed, AND-ed with ``all``); ``null``; the modifiers
``contains``, ``startswith``, ``endswith``, ``all``, ``re`` (with ``i``, ``m``, ``s``),
``cased`` and ``exists``; ``*`` and ``?`` wildcards with ``\\`` escapes; case-insensitive
matching unless ``cased`` (a regular expression is case-sensitive unless ``i``, and found
anywhere in the value); conditions with ``and``, ``or``, ``not``, parentheses, ``1 of`` and
``all of`` a name, a name with wildcards, or ``them`` (names starting with ``_`` left out).
A field is a dotted path into the record (``userIdentity.type``); when it holds a list, the
value matches if one of its items does. Anything else (keyword searches, other modifiers,
aggregations, timeframes, correlation rules, several documents in one file) refuses the
whole rule with its reason, so that no rule is ever half applied.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import yaml

from metrics.detections.gates import Gate, all_of, any_of
from metrics.detections.matchers import describe
from metrics.detections.model import Rule
from metrics.detections.record import get

LEVELS = {"informational": "info", "low": "low", "medium": "medium", "high": "high", "critical": "critical"}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_TECHNIQUE_TAG = re.compile(r"^attack\.(t\d{4}(\.\d{3})?)$", re.IGNORECASE)
_STRING_MODIFIERS = {"contains", "startswith", "endswith"}
_SUPPORTED = {*_STRING_MODIFIERS, "all", "re", "cased", "exists", "i", "m", "s"}
MAX_FILE_BYTES = 256 * 1024
WHO = ("eventSource", "eventName", "userIdentity.arn", "sourceIPAddress", "userAgent")

Predicate = Callable[[dict], bool]
# Fields a gate (``gates``) can test on the columns. Each predicate below carries ``gate``: a
# condition on them that every record it matches meets (None: none known), derived from the
# rule as it is compiled, so that the detector skips the rows that cannot match.
_GATE_COLUMNS = {
    **{name: name for name in ("eventSource", "eventName", "awsRegion", "sourceIPAddress", "userAgent")},
    **{name: name for name in ("errorCode", "eventType")},
    "userIdentity.type": "identityType",
    "userIdentity.arn": "principalArn",
}


def _gated(predicate: Predicate, gate) -> Predicate:
    predicate.gate = gate
    return predicate


class Unsupported(ValueError):
    """A rule this loader cannot apply exactly; its message is the reason shown to the user."""


@dataclass
class SigmaRules:
    """The rules loaded from a folder, and the files refused with their reasons."""

    folder: str = ""
    rules: list[Rule] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)


def load_folder(folder: str) -> SigmaRules:
    """Every ``.yml``/``.yaml`` file under ``folder`` (recursively, in name order)."""
    out = SigmaRules(folder)
    if not folder:
        return out
    if not os.path.isdir(folder):
        out.refused.append((folder, "not a folder"))
        return out
    paths = sorted(
        os.path.join(root, name)
        for root, _, names in os.walk(folder)
        for name in names
        if name.lower().endswith((".yml", ".yaml"))
    )
    seen: set[str] = set()
    for path in paths:
        shown = os.path.relpath(path, folder)
        try:
            rule = load_file(path)
        except Unsupported as refused:
            out.refused.append((shown, str(refused)))
            continue
        if rule.id in seen:
            out.refused.append((shown, f"another file has the same id {rule.id.removeprefix('sigma:')}"))
            continue
        seen.add(rule.id)
        out.rules.append(rule)
    return out


def load_file(path: str) -> Rule:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise Unsupported(f"cannot be read: {error.strerror or error}") from None
    if len(data) > MAX_FILE_BYTES:
        raise Unsupported(f"larger than {MAX_FILE_BYTES // 1024} KiB")
    try:
        documents = [d for d in yaml.safe_load_all(data.decode("utf-8")) if d is not None]
    except UnicodeDecodeError:
        raise Unsupported("not UTF-8 text") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise Unsupported(f"malformed YAML{where}: {problem}") from None
    if len(documents) != 1:
        raise Unsupported("rule collections (several YAML documents in one file) are not supported")
    return compile_rule(documents[0])


def compile_rule(document: object) -> Rule:
    """One Sigma rule (a parsed YAML mapping) as a ``Rule``; ``Unsupported`` says why not."""
    if not isinstance(document, dict):
        raise Unsupported("not a Sigma rule (a YAML mapping)")
    if "correlation" in document:
        raise Unsupported("correlation rules are not supported")
    title = document.get("title")
    if not isinstance(title, str) or not title.strip():
        raise Unsupported("no title")
    identifier = document.get("id")
    if not isinstance(identifier, str) or not _ID.match(identifier):
        raise Unsupported("no id, or an id with other characters than letters, digits, '.', '_' and '-'")
    logsource = document.get("logsource")
    if not isinstance(logsource, dict) or {
        str(k): str(v).lower()
        for k, v in logsource.items()
        if k != "definition"  # a note for people
    } != {
        "product": "aws",
        "service": "cloudtrail",
    }:
        raise Unsupported("logsource must be exactly product: aws, service: cloudtrail")
    level = str(document.get("level") or "medium").lower()
    if level not in LEVELS:
        raise Unsupported(f"unknown level {level!r}")
    tags = document.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise Unsupported("tags must be a list of text")
    techniques = [m.group(1).upper() for m in map(_TECHNIQUE_TAG.match, tags) if m]
    predicate = compile_detection(document.get("detection"))
    description = document.get("description")
    rule_title = title.strip()
    gate = predicate.gate

    def match(record: dict) -> str | None:
        # The gate holds for every record the predicate matches; checking it first costs nothing.
        if gate is not None and not gate.passes(record):
            return None
        return describe(record, f"Sigma: {rule_title}") if predicate(record) else None

    if gate is not None:
        match.gate = gate

    return Rule(
        f"sigma:{identifier}",
        rule_title,
        LEVELS[level],
        techniques[0] if techniques else "",
        description.strip() if isinstance(description, str) and description.strip() else rule_title,
        WHO,
        match,
        tags=tuple(tags),
    )


def compile_detection(detection: object) -> Predicate:
    if not isinstance(detection, dict):
        raise Unsupported("no detection")
    if "timeframe" in detection:
        raise Unsupported("timeframe (an aggregation over time) is not supported")
    condition = detection.get("condition")
    if isinstance(condition, list):
        raise Unsupported("a list of conditions is not supported; join them with 'or'")
    if not isinstance(condition, str) or not condition.strip():
        raise Unsupported("no condition")
    searches = {}
    for name, value in detection.items():
        if name == "condition":
            continue
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_]+", name):
            raise Unsupported(f"search identifier {name!r} is not a plain name")
        searches[name] = _search(name, value)
    if not searches:
        raise Unsupported("no search identifier")
    return _Condition(condition, searches).parse()


# -- search identifiers ----------------------------------------------------------------------


def _search(name: str, value: object) -> Predicate:
    if isinstance(value, dict):
        return _map(name, value)
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        alternatives = [_map(name, item) for item in value]
        return _gated(lambda record: any(p(record) for p in alternatives), any_of(p.gate for p in alternatives))
    if isinstance(value, list) and value:
        raise Unsupported(f"{name}: keyword searches (values without a field) are not supported")
    raise Unsupported(f"{name}: a search identifier must be a map of fields or a list of maps")


def _map(name: str, fields: dict) -> Predicate:
    if not fields:
        raise Unsupported(f"{name}: an empty map")
    checks = [_field(name, str(key), value) for key, value in fields.items()]
    return _gated(lambda record: all(check(record) for check in checks), all_of(c.gate for c in checks))


def _field(name: str, key: str, value: object) -> Predicate:
    path, *modifiers = key.split("|")
    if not path:
        raise Unsupported(f"{name}: keyword searches (values without a field) are not supported")
    mods = set(modifiers)
    unknown = [m for m in modifiers if m not in _SUPPORTED]
    if unknown:
        raise Unsupported(f"{name}: the modifier {unknown[0]!r} is not supported")
    if len(mods) != len(modifiers):
        raise Unsupported(f"{name}: a modifier given twice in {key!r}")
    if len(mods & (_STRING_MODIFIERS | {"re"})) > 1:
        raise Unsupported(f"{name}: {key!r} combines modifiers that exclude each other")
    if mods & {"i", "m", "s"} and "re" not in mods:
        raise Unsupported(f"{name}: the modifiers i, m and s only go with re")
    column = _GATE_COLUMNS.get(path)
    if "exists" in mods:
        if mods != {"exists"} or not isinstance(value, bool):
            raise Unsupported(f"{name}: exists takes true or false, without other modifiers")
        # A text in the column: the field exists. No text: the record decides.
        gate = Gate(**{column: lambda text: text is None or value}) if column else None
        return _gated(lambda record: (get(record, path) is not None) is value, gate)
    values = value if isinstance(value, list) else [value]
    if not values:
        raise Unsupported(f"{name}: {key!r} has an empty list of values")
    tests = [_value_test(name, key, v, mods) for v in values]
    if "all" in mods:

        def on(candidates: list) -> bool:
            return all(test(candidates) for test in tests)
    else:

        def on(candidates: list) -> bool:
            return any(test(candidates) for test in tests)

    # A text in the column is the field's one value; no text (absent, null, empty, not text)
    # leaves it to the record.
    gate = Gate(**{column: lambda text: text is None or on([text])}) if column else None
    return _gated(lambda record: on(_candidates(record, path)), gate)


_MISSING = object()


def _candidates(record: dict, path: str) -> list:
    """The scalar values at ``path``: one, the items of a list, or [_MISSING] if absent/null."""
    value = get(record, path)
    if value is None:
        return [_MISSING]
    if isinstance(value, list):
        return [v for v in value if v is not None and not isinstance(v, (dict, list))] or [_MISSING]
    if isinstance(value, dict):
        return []
    return [value]


def _text(value: object) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _value_test(name: str, key: str, value: object, mods: set[str]) -> Callable[[list], bool]:
    if value is None:
        if mods - {"all"}:
            raise Unsupported(f"{name}: {key!r} applies modifiers to null")
        return lambda candidates: _MISSING in candidates
    if isinstance(value, (dict, list)):
        raise Unsupported(f"{name}: {key!r} has a value that is neither text, a number nor a boolean")
    if "re" in mods:
        flags = (re.IGNORECASE if "i" in mods else 0) | (re.MULTILINE if "m" in mods else 0)
        flags |= re.DOTALL if "s" in mods else 0
        try:
            pattern = re.compile(_text(value), flags)
        except re.error as error:
            raise Unsupported(f"{name}: invalid regular expression {_text(value)!r}: {error}") from None
        return lambda candidates: any(c is not _MISSING and pattern.search(_text(c)) for c in candidates)
    body = _wildcards(value) if isinstance(value, str) else re.escape(_text(value))
    if "contains" in mods:
        body = f".*{body}.*"
    elif "startswith" in mods:
        body = f"{body}.*"
    elif "endswith" in mods:
        body = f".*{body}"
    pattern = re.compile(body, re.DOTALL | (0 if "cased" in mods else re.IGNORECASE))
    return lambda candidates: any(c is not _MISSING and pattern.fullmatch(_text(c)) for c in candidates)


def _wildcards(value: str) -> str:
    """A Sigma value as a regular expression: ``*`` any text, ``?`` one character; ``\\*``,
    ``\\?`` and ``\\\\`` are the characters themselves, any other backslash is plain."""
    out, i = [], 0
    while i < len(value):
        char = value[i]
        if char == "\\" and i + 1 < len(value) and value[i + 1] in "*?\\":
            out.append(re.escape(value[i + 1]))
            i += 2
            continue
        out.append(".*" if char == "*" else "." if char == "?" else re.escape(char))
        i += 1
    return "".join(out)


# -- conditions --------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(\(|\)|[^\s()]+)")


class _Condition:
    """``or`` binds loosest, then ``and``, then ``not``; parentheses group."""

    def __init__(self, text: str, searches: dict[str, Predicate]):
        if "|" in text:
            raise Unsupported("aggregations in the condition (after '|') are not supported")
        self.text = text
        self.searches = searches
        self.tokens = _TOKEN.findall(text)
        self.position = 0

    def parse(self) -> Predicate:
        predicate = self._or()
        predicate = predicate if hasattr(predicate, "gate") else _gated(predicate, None)
        if self.position != len(self.tokens):
            raise Unsupported(f"condition: unexpected {self.tokens[self.position]!r} in {self.text!r}")
        return predicate

    def _peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _take(self) -> str:
        token = self._peek()
        if token is None:
            raise Unsupported(f"condition ends too early: {self.text!r}")
        self.position += 1
        return token

    def _or(self) -> Predicate:
        parts = [self._and()]
        while (self._peek() or "").lower() == "or":
            self._take()
            parts.append(self._and())
        if len(parts) == 1:
            return parts[0]
        return _gated(lambda record: any(p(record) for p in parts), any_of(p.gate for p in parts))

    def _and(self) -> Predicate:
        parts = [self._not()]
        while (self._peek() or "").lower() == "and":
            self._take()
            parts.append(self._not())
        if len(parts) == 1:
            return parts[0]
        return _gated(lambda record: all(p(record) for p in parts), all_of(p.gate for p in parts))

    def _not(self) -> Predicate:
        if (self._peek() or "").lower() == "not":
            self._take()
            inner = self._not()
            return _gated(lambda record: not inner(record), None)  # what a record must not match gates nothing
        return self._atom()

    def _atom(self) -> Predicate:
        token = self._take()
        lower = token.lower()
        if token == "(":
            inner = self._or()
            if self._take() != ")":
                raise Unsupported(f"condition: unbalanced parentheses in {self.text!r}")
            return inner
        if lower in ("1", "all", "any") and (self._peek() or "").lower() == "of":
            if lower == "any":
                raise Unsupported("'any of' is not Sigma; write '1 of'")
            self._take()
            chosen = self._names(self._take())
            gates = [self.searches[n].gate for n in chosen]
            if lower == "1":
                return _gated(lambda record: any(self.searches[n](record) for n in chosen), any_of(gates))
            return _gated(lambda record: all(self.searches[n](record) for n in chosen), all_of(gates))
        if re.fullmatch(r"\d+", token) and (self._peek() or "").lower() == "of":
            raise Unsupported(f"'{token} of' is not supported; only '1 of' and 'all of'")
        if lower in ("and", "or", "of", ")"):
            raise Unsupported(f"condition: unexpected {token!r} in {self.text!r}")
        if token not in self.searches:
            raise Unsupported(f"condition names {token!r}, which the detection does not define")
        return self.searches[token]

    def _names(self, target: str) -> list[str]:
        if target.lower() == "them":
            names = [n for n in self.searches if not n.startswith("_")]
        else:
            pattern = re.compile(_wildcards(target))
            names = [n for n in self.searches if pattern.fullmatch(n)]
        if not names:
            raise Unsupported(f"condition: '{target}' names no search identifier")
        return names
