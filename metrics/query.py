"""The explorer's search language, parsed once and matched against whole records.

- ``word``: any string of the record contains it (case-insensitive), keys excluded;
- ``"a phrase"``: the same, with spaces (and ``:``, ``(``, ``OR``...) taken literally;
- ``field:value``: the field (a dotted path into the record, ``userIdentity.accessKeyId``, or
  a column of the events table such as ``user``) equals the value, case-insensitive; a list or
  an object matches if any string inside it does; ``field:*`` means the field has a value;
- ``*`` in a word or a value stands for any characters (``eventName:Describe*``, ``AKIA*``);
- terms side by side must all match (``AND`` may be written), ``OR`` offers alternatives,
  ``NOT`` excludes, parentheses group. ``AND`` binds tighter than ``OR``.

>>> query = parse('errorCode:AccessDenied AND NOT user:alice')
>>> query.matches({"errorCode": "AccessDenied", "user": "bob"})
True
>>> query.matches({"errorCode": "AccessDenied", "user": "Alice"})
False
>>> parse('"assumed-role/deployer" OR AKIA*').matches({"userIdentity": {"accessKeyId": "AKIAEXAMPLE"}})
True

Malformed input never raises from ``matches``: ``parse`` raises ``QueryError`` with a message
meant for the person typing, and the page shows it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

MISSING = object()


class QueryError(ValueError):
    """A query that cannot be read, with what is wrong in words."""


def _strings(value) -> Iterator[str]:
    """Every string inside a value (dict values, list items, scalars as text); keys excluded."""
    if value is None or value is MISSING:
        return
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, bool):
        yield "true" if value else "false"
    else:
        yield str(value)


def _lookup(record: dict, path: str):
    """The value at a dotted path; through a list, the values of each item."""
    values = [record]
    for part in path.split("."):
        found = []
        for value in values:
            items = value if isinstance(value, list) else [value]
            for item in items:
                if isinstance(item, dict) and part in item:
                    found.append(item[part])
        if not found:
            return MISSING
        values = found
    return values[0] if len(values) == 1 else values


def _pattern(value: str, whole: bool) -> re.Pattern:
    body = ".*".join(re.escape(piece) for piece in value.split("*"))
    return re.compile(f"^{body}$" if whole else body, re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class Term:
    """``value`` somewhere in the record, or ``field:value`` exactly (``*`` a wildcard)."""

    value: str
    field: str | None = None

    def matches(self, record: dict) -> bool:
        if self.field is None:
            return self._anywhere(record)
        value = _lookup(record, self.field)
        if value is MISSING:
            # A column of the events table may carry a different case than the record's key.
            value = _lookup(record, self.field.lower()) if self.field.lower() != self.field else MISSING
        if value is MISSING or value is None:
            return False
        if self.value == "*":
            return True
        pattern = self._compiled(whole=True)
        return any(pattern.match(text) for text in _strings(value))

    def _anywhere(self, record: dict) -> bool:
        if "*" in self.value:
            pattern = self._compiled(whole=False)
            return any(pattern.search(text) for text in _strings(record))
        needle = self.value.casefold()
        return any(needle in text.casefold() for text in _strings(record))

    def _compiled(self, whole: bool) -> re.Pattern:
        cache = self.__dict__.setdefault("_patterns", {})
        if whole not in cache:
            cache[whole] = _pattern(self.value, whole)
        return cache[whole]

    def literals(self) -> list[str]:
        """Pieces of text that any matching record's JSON must contain (lower case)."""
        return [piece.lower() for piece in self.value.split("*") if piece]


@dataclass(frozen=True)
class Not:
    part: object

    def matches(self, record: dict) -> bool:
        return not self.part.matches(record)


@dataclass(frozen=True)
class All:
    parts: tuple

    def matches(self, record: dict) -> bool:
        return all(part.matches(record) for part in self.parts)


@dataclass(frozen=True)
class Any:
    parts: tuple

    def matches(self, record: dict) -> bool:
        return any(part.matches(record) for part in self.parts)


_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*")
_TOKEN = re.compile(r'\s*(?:(\()|(\))|("(?:[^"\\]|\\.)*"?)|([^\s()"]+(?:"(?:[^"\\]|\\.)*"?)?))')


def _tokens(text: str) -> list[tuple[str, str]]:
    """(kind, text) pairs: ``(``, ``)``, ``word`` (field:value included) or ``phrase``."""
    tokens, position = [], 0
    text = text.strip()
    while position < len(text):
        found = _TOKEN.match(text, position)
        if found is None or found.end() == position:
            raise QueryError(f"cannot read the search from {text[position:]!r}")
        position = found.end()
        opening, closing, phrase, word = found.groups()
        if opening:
            tokens.append(("(", opening))
        elif closing:
            tokens.append((")", closing))
        elif phrase:
            tokens.append(("phrase", _unquote(phrase)))
        else:
            tokens.append(("word", word))
    return tokens


def _unquote(quoted: str) -> str:
    if len(quoted) < 2 or not quoted.endswith('"') or quoted.endswith('\\"') and not quoted.endswith('\\\\"'):
        raise QueryError(f"a quote is not closed: {quoted}")
    return re.sub(r"\\(.)", r"\1", quoted[1:-1])


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]):
        self.tokens = tokens
        self.at = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def is_word(self, word: str) -> bool:
        token = self.peek()
        return token is not None and token == ("word", word)

    def either(self):
        parts = [self.both()]
        while self.is_word("OR"):
            self.at += 1
            parts.append(self.both())
        return parts[0] if len(parts) == 1 else Any(tuple(parts))

    def both(self):
        parts = [self.negated()]
        while True:
            token = self.peek()
            if token is None or token[0] == ")" or self.is_word("OR"):
                break
            if self.is_word("AND"):
                self.at += 1
            parts.append(self.negated())
        return parts[0] if len(parts) == 1 else All(tuple(parts))

    def negated(self):
        if self.is_word("NOT"):
            self.at += 1
            return Not(self.negated())
        return self.atom()

    def atom(self):
        token = self.peek()
        if token is None:
            raise QueryError("the search ends where a term was expected (after AND, OR or NOT)")
        self.at += 1
        kind, text = token
        if kind == "(":
            inner = self.either()
            if self.peek() is None or self.peek()[0] != ")":
                raise QueryError("a parenthesis is not closed")
            self.at += 1
            return inner
        if kind == ")":
            raise QueryError("a closing parenthesis has no opening one")
        if kind == "phrase":
            return Term(text)
        if text in ("AND", "OR"):
            raise QueryError(f"{text} needs a term on each side")
        field, colon, value = text.partition(":")
        if colon and value and _FIELD.fullmatch(field) and field.lower() != "arn" and not value.startswith("//"):
            if value.startswith('"'):
                value = _unquote(value)
            return Term(value, field)
        return Term(text)  # an ARN or a URL: its colons are part of the text


def parse(text: str):
    """The query in ``text``; None for an empty search (everything matches)."""
    tokens = _tokens(text)
    if not tokens:
        return None
    parser = _Parser(tokens)
    query = parser.either()
    if parser.peek() is not None:
        raise QueryError("a closing parenthesis has no opening one")
    return query


def required_text(query) -> list[str]:
    """Lower-case pieces of text every matching record's raw JSON contains: a cheap test
    before parsing a record. Only what is certain: the literals of terms that must all hold."""
    if isinstance(query, Term):
        # A field's value may be derived (the user behind a role); escaped or non-ASCII text is
        # written differently in JSON or lower-cased differently as bytes.
        if query.field is not None or not query.value.isascii() or '"' in query.value or "\\" in query.value:
            return []
        return query.literals()
    if isinstance(query, All):
        return [piece for part in query.parts for piece in required_text(part)]
    return []
