"""The explorer's search over many events at once: a query of ``metrics.query`` turned into
one yes/no per event, over the buffer's columns and its compressed raw records.

The record of a matching event is never parsed when the query is made of plain words and
``field:value`` terms on the events table's columns (the usual search): a word is looked for
in each block's decompressed text as a whole (``bytes.find``, native speed), each hit mapped to
its record by the block's offsets and kept if it lies in a value rather than a key; a column's
term is decided once per distinct value and spread to the events by their codes. Any other
query (wildcards in a free word, dotted paths, ``field:*``...) parses the records that contain
its required text, as ``Term.matches`` defines it. Both give the same answer (a test holds it).
"""

from __future__ import annotations

import bisect
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator

import numpy as np
import orjson

from metrics.query import All, Any, Not, Term, parse, required_text

# Columns of the events table a record is searched with, beside its raw JSON (``user``...).
SEARCHED_COLUMNS = (
    "eventSource",
    "eventName",
    "awsRegion",
    "sourceIPAddress",
    "userAgent",
    "errorCode",
    "errorMessage",
    "account",
    "user",
    "session",
    "principalArn",
)
# Characters that can stand outside a JSON string (numbers, true/false/null, structure): a
# word made only of these might be found outside any string, and is left to the parser.
_OUTSIDE_STRINGS = set(b"{}[],: \t\r\n0123456789.+-eEtruefalsn")
_SPACE = b" \t\r\n"
BACKSLASH, QUOTE, COLON = 92, 34, 58

RawTexts = Callable[[list[int]], Iterator[tuple[int, np.ndarray, Callable[[], bytes]]]]
CACHED_BLOCKS = 200_000  # (word, block) entries: a hundred words over a buffer of 1M events
# Per buffer (the object whose ``raw_texts`` is read; block numbers are its own).
_HITS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def _plain_word(term: Term) -> bytes | None:
    """The lower-case bytes of a free word that can only occur inside a JSON string, or None."""
    value = term.value
    if term.field is not None or "*" in value or not value.isascii() or '"' in value or "\\" in value:
        return None
    needle = value.lower().encode()
    return needle if needle and not set(needle) <= _OUTSIDE_STRINGS else None


def _column_term(term: Term) -> bool:
    return term.field in SEARCHED_COLUMNS and term.value.strip("*") != "" and term.value.isascii()


def _fast(query) -> bool:
    if isinstance(query, Term):
        return _plain_word(query) is not None or _column_term(query)
    if isinstance(query, Not):
        return _fast(query.part)
    return all(_fast(part) for part in query.parts)


def _words(query) -> list[bytes]:
    if isinstance(query, Term):
        word = _plain_word(query)
        return [word] if word is not None else []
    if isinstance(query, Not):
        return _words(query.part)
    return [word for part in query.parts for word in _words(part)]


def _escaped(text: bytes, at: int) -> bool:
    """Whether the character at ``at`` follows an odd run of backslashes."""
    run = 0
    while at - run - 1 >= 0 and text[at - run - 1] == BACKSLASH:
        run += 1
    return run % 2 == 1


def _in_value(text: bytes, at: int, size: int, end: int) -> bool:
    """Whether the word found at ``at`` lies in a string that is a value, not a key: the string's
    closing quote is not followed by a colon. A word right after an escape's backslash is part
    of the escape (``\\n...``), not of the text."""
    if at > 0 and _escaped(text, at):
        return False
    close = text.find(b'"', at + size, end)
    while close >= 0 and _escaped(text, close):
        close = text.find(b'"', close + 1, end)
    if close < 0:
        return False
    after = close + 1
    while after < end and text[after] in _SPACE:
        after += 1
    return not (after < end and text[after] == COLON)


def _scan(
    raw_texts: RawTexts, blocks: np.ndarray, words: list[bytes], deadline: float | None, left: set[int]
) -> dict[bytes, np.ndarray]:
    """For each word, the keys (block << 32 | slot) of the records holding it in a value.

    A block's records never change once it is full, so what a word found in it is kept (a
    bounded cache): the explorer reruns on every click, and only the blocks written since are
    read again."""
    found: dict[bytes, list[np.ndarray]] = {word: [] for word in words}
    owner = getattr(raw_texts, "__self__", None)
    with _CACHE_LOCK:
        cache = OrderedDict() if owner is None else _HITS.setdefault(owner, OrderedDict())
    read_one = False
    for block, offsets, read in raw_texts(np.unique(blocks)[::-1].tolist()):  # the newest first
        records = len(offsets) - 1
        with _CACHE_LOCK:
            known = {word: cache.get((word, block, records)) for word in words}
        missing = [word for word, slots in known.items() if slots is None]
        if missing and read_one and deadline is not None and time.monotonic() > deadline:
            left.add(block)  # for a later run: at least one block is read per run, so it ends
            continue
        if missing:
            read_one = True
            lowered = read().lower()  # ASCII only: every offset stays where it was
            edges = offsets.tolist()
            for word in missing:
                known[word] = _find(lowered, edges, word)
            with _CACHE_LOCK:
                for word in missing:
                    cache[(word, block, records)] = known[word]
                while len(cache) > CACHED_BLOCKS:
                    cache.popitem(last=False)
        for word in words:
            found[word].append((block << 32) | known[word])
    return {word: np.concatenate(keys) if keys else np.empty(0, dtype=np.int64) for word, keys in found.items()}


def _find(lowered: bytes, edges: list[int], word: bytes) -> np.ndarray:
    """The slots of the records (between ``edges``) that hold ``word`` in a value."""
    hits, size = [], len(word)
    at = lowered.find(word)
    while at >= 0:
        slot = bisect.bisect_right(edges, at) - 1
        end = edges[slot + 1]
        if _in_value(lowered, at, size, end):
            hits.append(slot)
            at = lowered.find(word, end)  # one hit per record is enough
        else:
            at = lowered.find(word, at + 1)
    return np.array(hits, dtype=np.int64)


def _parsed(query, keys: np.ndarray, raw_texts: RawTexts, columns, deadline: float | None, left: set[int]):
    """Per event: ``query.matches`` of its record (the events table's values, then its raw JSON
    over them), parsed block by block; a record without a required piece of text is passed over."""
    needles = [piece.encode() for piece in required_text(query)]
    result = np.zeros(len(keys), dtype=bool)
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    covered = np.zeros(len(keys), dtype=bool)

    def judge(rows: np.ndarray, raws: list) -> None:
        values = columns(rows)
        for i, (row, raw) in enumerate(zip(rows.tolist(), raws)):
            record = {column: column_values[i] for column, column_values in values.items()}
            if raw is not None:
                record.update(orjson.loads(raw))
            result[row] = query.matches(record)

    for number, (block, offsets, read) in enumerate(raw_texts(np.unique(keys >> 32)[::-1].tolist())):
        low, high = np.searchsorted(ordered, [block << 32, (block + 1) << 32])
        rows = order[low:high]
        covered[rows] = True
        if number and deadline is not None and time.monotonic() > deadline:
            left.add(block)
            continue
        text = read()
        edges = offsets.tolist()
        raws = [text[edges[slot] : edges[slot + 1]] for slot in (ordered[low:high] & 0xFFFFFFFF).tolist()]
        if needles:
            wanted = [i for i, raw in enumerate(raws) if all(needle in raw.lower() for needle in needles)]
            rows, raws = rows[wanted], [raws[i] for i in wanted]
        judge(rows, raws)
    gone = np.flatnonzero(~covered)  # raw records evicted since: the table's values alone
    if len(gone) and not needles:
        judge(gone, [None] * len(gone))
    return result


def _column_hits(term: Term, codes: np.ndarray, labels) -> np.ndarray:
    """Per event: its value of the column matches the term (decided once per distinct value)."""
    if term.field is None:
        needle = term.value.casefold()
        per_label = np.fromiter((needle in label.casefold() for label in labels), dtype=bool, count=len(labels))
    else:
        pattern = term._compiled(whole=True)
        per_label = np.fromiter((bool(pattern.match(label)) for label in labels), dtype=bool, count=len(labels))
    per_code = np.append(per_label, False)  # code -1 (missing) reads the last slot
    return per_code[codes]


def _evaluate(query, context: dict) -> np.ndarray:
    if isinstance(query, Not):
        return ~_evaluate(query.part, context)
    if isinstance(query, All):
        result = np.ones(context["n"], dtype=bool)
        for part in query.parts:
            result &= _evaluate(part, context)
        return result
    if isinstance(query, Any):
        result = np.zeros(context["n"], dtype=bool)
        for part in query.parts:
            result |= _evaluate(part, context)
        return result
    codes, labels = context["codes"], context["labels"]
    if query.field is not None:
        return _column_hits(query, codes[query.field], labels[query.field])
    result = np.isin(context["keys"], context["found"][_plain_word(query)])
    for column in SEARCHED_COLUMNS:  # the events table's own columns: the user behind a role...
        result |= _column_hits(query, codes[column], labels[column])
    return result


def search_mask(
    text: str,
    codes: dict[str, np.ndarray],
    labels: dict,
    blocks: np.ndarray,
    slots: np.ndarray,
    raw_texts: RawTexts,
    columns: Callable[[np.ndarray], dict[str, list]],
    deadline: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per event (given by its columns' ``codes`` and its raw record's ``blocks`` and
    ``slots``): whether it matches the search in ``text``, and whether it is still to be read:
    past ``deadline`` (``time.monotonic()``) the blocks not read yet are left, the newest read
    first, for another call to finish (what was read is kept). Raises ``QueryError`` if the
    search cannot be read. ``columns(rows)`` gives the events table's values of some events, for
    the records the parser has to read."""
    query = parse(text)
    n = len(blocks)
    if query is None:
        return np.ones(n, dtype=bool), np.zeros(n, dtype=bool)
    keys = blocks.astype(np.int64) << 32 | slots.astype(np.int64)
    left: set[int] = set()
    if _fast(query):
        words = _words(query)
        found = _scan(raw_texts, blocks, words, deadline, left) if words else {}
        result = _evaluate(query, {"n": n, "codes": codes, "labels": labels, "keys": keys, "found": found})
    else:
        result = _parsed(query, keys, raw_texts, columns, deadline, left)
    pending = np.isin(blocks, list(left)) if left else np.zeros(n, dtype=bool)
    return result & ~pending, pending
