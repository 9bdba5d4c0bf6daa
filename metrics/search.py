"""The explorer's search over many events at once: a query of ``metrics.query`` turned into
one yes/no per event, over the buffer's columns and its compressed raw records.

The record of a matching event is never parsed when the query is made of plain words and
``field:value`` terms on the events table's columns (the usual search): a word is looked for
in each block's decompressed text as a whole (``bytes.find``, native speed), each hit mapped to
its record by the block's offsets and kept if it lies in a value rather than a key; a column's
term is decided once per distinct value and spread to the events by their codes. Any other
query (wildcards in a free word, dotted paths, ``field:*``...) parses the records that contain
its required text, as ``Term.matches`` defines it. Both give the same answer (a test holds it).

A full block never changes, so ``keep_indexed`` lets a background thread give each one a
``BlockIndex``: its records' distinct string values, case-folded and joined (about a tenth of
the block's text: records of a block share most values), each with the slots of the records
holding it. A word is then looked for in that text instead of the decompressed block, which
makes the first search of a word over 1M events about as fast as a repeated one.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

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
LOG = logging.getLogger(__name__)
# Per buffer: {block: BlockIndex, or None where a record could not be read} of its full blocks.
_INDEXES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_INDEXERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # buffer -> its indexing thread


@dataclass(frozen=True)
class BlockIndex:
    """A full block's distinct string values (case-folded, UTF-8, each followed by a NUL) and,
    per value, the slots of the records holding it in a value (keys are not values)."""

    records: int
    text: bytes
    ends: np.ndarray  # per value: where it ends in ``text``
    starts: np.ndarray  # per value, and one past the last: where its slots start in ``slots``
    slots: np.ndarray

    @classmethod
    def of(cls, text: bytes, offsets: np.ndarray) -> BlockIndex:
        edges = offsets.tolist()
        holders: dict[str, list[int]] = {}
        for slot in range(len(edges) - 1):
            found: list[str] = []
            _value_strings(orjson.loads(text[edges[slot] : edges[slot + 1]]), found)
            for value in set(found):
                holders.setdefault(value, []).append(slot)
        encoded = [value.encode() for value in holders]
        ends = np.cumsum(np.fromiter((len(e) + 1 for e in encoded), dtype=np.int64, count=len(encoded))) - 1
        sizes = np.fromiter(map(len, holders.values()), dtype=np.int64, count=len(holders))
        slots = np.fromiter(itertools.chain.from_iterable(holders.values()), dtype=np.int16, count=int(sizes.sum()))
        return cls(
            len(edges) - 1,
            b"".join(e + b"\0" for e in encoded),
            ends.astype(np.int32),
            np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32),
            slots,
        )

    @property
    def nbytes(self) -> int:
        return len(self.text) + self.ends.nbytes + self.starts.nbytes + self.slots.nbytes

    def find(self, word: bytes) -> np.ndarray:
        """The slots of the records holding ``word`` in one of their string values."""
        places, text, size = [], self.text, len(word)
        at = text.find(word)
        while at >= 0:
            places.append(at)
            at = text.find(word, at + 1)
        if not places:
            return np.empty(0, dtype=np.int64)
        at_array = np.array(places, dtype=np.int64)
        values = np.searchsorted(self.ends, at_array, side="left")
        values = np.unique(values[at_array + size <= self.ends[values]])  # not across a NUL
        first, counts = self.starts[values].astype(np.int64), np.diff(self.starts)[values].astype(np.int64)
        picks = np.repeat(first - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
        return np.unique(self.slots[picks]).astype(np.int64)


def _value_strings(value, found: list[str]) -> None:
    """Every string value inside a parsed record, case-folded as ``Term`` compares them."""
    if isinstance(value, dict):
        for item in value.values():
            _value_strings(item, found)
    elif isinstance(value, list):
        for item in value:
            _value_strings(item, found)
    elif isinstance(value, str):
        found.append(value.casefold())


def index_blocks(buffer, pause: float = 0.0) -> int:
    """Give each full block of ``buffer`` (an ``EventBuffer``) its ``BlockIndex`` and forget
    those of blocks evicted since; returns how many were made. ``pause``: seconds to sleep
    between blocks, so that a backlog indexed in the background leaves the pages room."""
    with _CACHE_LOCK:
        indexes = _INDEXES.setdefault(buffer, {})
    live = set(buffer.raw.blocks)  # full blocks only: the one being filled is not among them
    for gone in [block for block in indexes if block not in live]:
        del indexes[gone]
    made = 0
    for block, offsets, read in buffer.raw_texts(sorted(live - set(indexes), reverse=True)):  # the newest first
        try:
            indexes[block] = BlockIndex.of(read(), offsets)
            made += 1
        except ValueError:  # a record orjson or UTF-8 cannot take: the block is searched as text
            indexes[block] = None
        if pause:
            time.sleep(pause)
    return made


def keep_indexed(buffer, interval: float = 2.0, wait: Callable[[], bool] = lambda: False) -> None:
    """Index ``buffer``'s full blocks on a background thread, now and every ``interval``
    seconds while the buffer lives (once per buffer; the thread holds no reference to it).
    While ``wait()`` is true it indexes nothing: a start reading a day of history gets the
    interpreter to itself (the index took a fifth of it), and the search reads the text."""
    with _CACHE_LOCK:
        if buffer in _INDEXERS:
            return
        reference = weakref.ref(buffer)

        def run() -> None:
            while (alive := reference()) is not None:
                try:
                    if not wait():
                        index_blocks(alive, pause=0.002)
                except Exception:  # the search still answers, from the text, only slower
                    LOG.exception("indexing the raw records for the search failed; retrying")
                del alive
                time.sleep(interval)

        thread = threading.Thread(target=run, name="search-index", daemon=True)
        _INDEXERS[buffer] = thread
    thread.start()


def indexed_bytes(buffer) -> int:
    """The memory the index of ``buffer`` holds."""
    return sum(index.nbytes for index in list(_INDEXES.get(buffer, {}).values()) if index is not None)


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
        indexes = {} if owner is None else _INDEXES.get(owner, {})
    read_one = False
    for block, offsets, read in raw_texts(np.unique(blocks)[::-1].tolist()):  # the newest first
        records = len(offsets) - 1
        with _CACHE_LOCK:
            known = {word: cache.get((word, block, records)) for word in words}
        missing = [word for word, slots in known.items() if slots is None]
        index = indexes.get(block)
        if missing and index is not None and index.records == records:
            for word in missing:
                known[word] = index.find(word)
            missing = []
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
