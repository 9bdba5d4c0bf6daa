"""A record read from the normalised columns instead of its parsed JSON.

The rules are functions of a record (a dict). Most of them decide on a few top-level fields
that the batch already holds as columns (eventSource, eventName, errorCode, the identity's
type...), so parsing a million raw records into dicts to ask them that costs far more than
the ingest itself. A ``ColumnRecord`` is a dict that answers the rules from the columns of
one row and raises ``NeedsRecord`` for anything the columns cannot answer exactly (the
request parameters, a field that is null or empty rather than absent, an ``invokedBy``...);
the detector then parses that row's raw JSON and asks the rule again with the real dict. A
rule therefore never needs a declared prefilter to be fast, and can never be skipped: at
worst it asks for the record on every row.

Exactness rests on the normaliser: a batch row's text column is the record's top-level
string as it is, or None when the field is absent, null or empty (a non-string value is
rejected before it reaches a batch). "Absent" is told apart from "null or empty" by looking
for the quoted key in the raw bytes: a key spelled with ``\\u`` escapes would hide from that,
so rows holding any ``\\u`` are parsed, as are rows longer than the normaliser's field limit
(whose user or account column may be cut).
"""

from __future__ import annotations

import msgspec

from metrics.events import POSITION
from metrics.normalise import MAX_FIELD_CHARS, TEXT_FIELDS


class NeedsRecord(Exception):
    """The columns cannot answer this exactly: ask the parsed record."""


# Top-level fields whose column is the record's value as it is (None: absent, null or "");
# recipientAccountId has no column of its own (the account column is derived).
_TEXT = {name: POSITION[name] for name in TEXT_FIELDS if name in POSITION}
_KEYS = {name: f'"{name}"'.encode() for name in (*_TEXT, "readOnly", "arn", "invokedBy")}
_READ_ONLY = POSITION["readOnly"]
_BOOLEAN = {True: b'"readOnly":true', False: b'"readOnly":false'}
_TYPE = POSITION["identityType"]
_ARN = POSITION["principalArn"]
_USER = POSITION["user"]
_ACCOUNT = POSITION["account"]


def readable(raw: bytes) -> bool:
    """Whether a row's columns may stand for its record (else: parse it)."""
    return len(raw) <= MAX_FIELD_CHARS and b"\\u" not in raw


# What a ColumnRecord reads of its raw bytes most often: with its columns (but its eventID and
# eventTime, which it never answers), these fix every answer it gives without ``private``.
# (Whether a key is absent, and whether readOnly is one JSON boolean.)
SHARED_FACTS = ("errorCode", "readOnly")
_SHARED_KEYS = tuple(_KEYS[name] for name in SHARED_FACTS)


def _boolean(raw: bytes, value: bool) -> bool:
    return raw.count(b'"readOnly"') == 1 and _BOOLEAN[value] in raw


def shared_facts(raw: bytes) -> int:
    """The ``SHARED_FACTS`` of a row's raw bytes, as bits (with ``invoked_by``, what fixes a
    ColumnRecord's answers but its ``private`` ones)."""
    bits = sum(1 << bit for bit, key in enumerate(_SHARED_KEYS) if key not in raw)
    if b'"readOnly":' in raw:
        bits |= _boolean(raw, True) << len(_SHARED_KEYS) | _boolean(raw, False) << (len(_SHARED_KEYS) + 1)
    return bits


ABSENT = ("absent",)  # no invokedBy in the identity
UNREAD = ("unread",)  # not read from the raw bytes, or not text: ask the record


class _IdentityPart(msgspec.Struct):
    invokedBy: object = ABSENT


class _Part(msgspec.Struct):
    userIdentity: _IdentityPart | None = None


_INVOKED = msgspec.json.Decoder(_Part)


def invoked_by(raw: bytes) -> object:
    """The identity's ``invokedBy`` (text or None for null), ``ABSENT``, or ``UNREAD``: read by
    msgspec, which skips the rest of the record, only when the key is in the bytes at all."""
    if _KEYS["invokedBy"] not in raw:
        return ABSENT
    try:
        part = _INVOKED.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return UNREAD  # an identity that is not an object, say: the record decides
    value = part.userIdentity.invokedBy if part.userIdentity is not None else ABSENT
    return value if value is None or value is ABSENT or isinstance(value, str) else UNREAD


class ColumnRecord(dict):
    """Row ``row`` of a batch's ``columns`` (``COLUMNS`` order), with its ``raw`` JSON. Empty as
    a dict: only ``get`` answers, and everything else raises ``NeedsRecord``. ``private`` turns
    true once an answer rested on the raw bytes beyond ``SHARED_FACTS``."""

    __slots__ = ("columns", "row", "raw", "private", "invoked")

    def __init__(self, columns: list[list], row: int, raw: bytes, invoked: object = UNREAD):
        super().__init__()
        self.columns, self.row, self.raw, self.private = columns, row, raw, False
        self.invoked = invoked  # invoked_by(raw), when the caller has read it

    def value(self, position: int) -> object:
        return self.columns[position][self.row]

    @property
    def user(self) -> str:
        """``record.user_of`` of the record: the normaliser's user column."""
        return self.columns[_USER][self.row]

    @property
    def account(self) -> str:
        """``record.account_of`` of the record: the normaliser's account column."""
        return self.columns[_ACCOUNT][self.row] or ""

    def absent(self, name: str) -> bool:
        if name not in SHARED_FACTS:
            self.private = True
        return _KEYS[name] not in self.raw

    def get(self, name, default=None):
        position = _TEXT.get(name)
        if position is not None:
            value = self.columns[position][self.row]
            if value is not None:
                return value
            if self.absent(name):
                return default
            raise NeedsRecord(name)
        if name == "userIdentity":
            # A type in the column means the record's userIdentity is an object.
            if self.columns[_TYPE][self.row] is not None:
                return IdentityColumns(self)
            raise NeedsRecord(name)
        if name == "readOnly":
            value = self.columns[_READ_ONLY][self.row]
            if value is None:
                if self.absent(name):
                    return default
            elif _boolean(self.raw, value):  # one of the SHARED_FACTS
                return value  # a JSON boolean, not the text "true" or "false" the normaliser also reads
            raise NeedsRecord(name)
        raise NeedsRecord(name)

    def __getitem__(self, name):
        raise NeedsRecord(name)

    def __contains__(self, name):
        raise NeedsRecord(name)

    def __iter__(self):
        raise NeedsRecord("*")

    def __len__(self):
        raise NeedsRecord("*")

    def keys(self):
        raise NeedsRecord("*")

    def values(self):
        raise NeedsRecord("*")

    def items(self):
        raise NeedsRecord("*")

    def copy(self):
        raise NeedsRecord("*")

    def __eq__(self, other):
        raise NeedsRecord("*")

    __hash__ = None

    def __repr__(self) -> str:
        return f"ColumnRecord(row {self.row})"


class IdentityColumns(dict):
    """The ``userIdentity`` of a ``ColumnRecord`` whose identity type is known."""

    __slots__ = ("record",)

    def __init__(self, record: ColumnRecord):
        super().__init__()
        self.record = record

    def get(self, name, default=None):
        record = self.record
        if name == "type":
            return record.value(_TYPE)
        if name == "arn":
            value = record.value(_ARN)
            if value is not None:
                return value
            if record.absent("arn"):  # nowhere in the record, so not in its identity either
                return default
            raise NeedsRecord("userIdentity.arn")
        if name == "invokedBy":
            value = record.invoked
            if value is ABSENT:
                return default
            if value is not UNREAD:
                return value
            if record.absent("invokedBy"):
                return default
        raise NeedsRecord(f"userIdentity.{name}")

    def __getitem__(self, name):
        raise NeedsRecord(f"userIdentity.{name}")

    def __contains__(self, name):
        raise NeedsRecord(f"userIdentity.{name}")

    def __iter__(self):
        raise NeedsRecord("userIdentity.*")

    def __len__(self):
        raise NeedsRecord("userIdentity.*")

    def keys(self):
        raise NeedsRecord("userIdentity.*")

    def values(self):
        raise NeedsRecord("userIdentity.*")

    def items(self):
        raise NeedsRecord("userIdentity.*")

    def copy(self):
        raise NeedsRecord("userIdentity.*")

    def __eq__(self, other):
        raise NeedsRecord("userIdentity.*")

    __hash__ = None
