"""The s3 searcher's tag protocol: what one turn of policy text asks for (DESIGN.md section 2, "Searcher protocol").

One trajectory answers one question. The searcher starts from the question and the top-`initial_topk`
passages retrieved with the question itself (block 0). In each turn it may write, in any order:

    <think>...</think>                              allowed, ignored
    <important_info>[1, 3]</important_info>         doc numbers of the LATEST information block it keeps
    <search_complete>True|False</search_complete>   True (true/yes/1/y, any case) stops the search
    <query>{"query": "..."}</query>                 search again (raw text if the JSON does not parse)

`parse_turn` turns one turn's text into a `TurnAction`. Rules, stated (docs/FIDELITY.md compares each with
the public s3 code):
- Only text before the first `<information>` the policy writes itself is read: the environment alone writes
  information blocks, so a forged block (and anything after it) is ignored, and flagged (`forged_information`).
- The first complete occurrence of each tag counts. A tag without its closer is absent (so a reply truncated
  at the token limit never runs a half-written query). Nested same-name tags are read up to the first closer.
- `<query>`: a JSON object's string `"query"` (a list's first string, as the public code takes), otherwise
  the raw text, stripped; an empty query is no query (the public code searches the empty string).
- `<search_complete>`: true/yes/1/y, any case, surrounding whitespace ignored (a quoted `"True"` is not a
  stop, as in the public code).
- `important_info` takes integers from a JSON list, or failing that every integer in the text; ids outside
  1..(size of the latest block) are dropped (counted in `dropped_ids`), repeats are dropped, and at most
  `max_selected` are kept in the order written. Whatever the policy writes there (`1e999`, `[NaN]`, an id of
  thousands of digits) is a possibly empty selection, never an exception.
- stop wins over a query in the same turn. A turn with neither a query nor a stop is invalid: the
  environment answers with `CORRECTIVE_OBSERVATION` and the turn counts against the limit.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

TRUE_WORDS = frozenset({"true", "yes", "1", "y"})
FALSE_WORDS = frozenset({"false", "no", "0", "n"})
CORRECTIVE_OBSERVATION = (
    "\n<information>Your last turn had no valid action. Write <query>{\"query\": \"...\"}</query> to search, "
    "or <search_complete>True</search_complete> to finish.</information>\n"
)
INFORMATION_OPEN = "<information>"


@dataclass(frozen=True)
class TurnAction:
    """What one turn of searcher text asks for."""

    query: str | None = None               # text to search for, None if no (valid) query
    stop: bool = False                     # <search_complete> said true
    selected: tuple[int, ...] = ()         # 1-based doc numbers of the latest block, validated
    dropped_ids: int = 0                   # ids outside the latest block, or beyond max_selected
    forged_information: bool = False       # the policy wrote its own <information> (ignored)
    problems: tuple[str, ...] = field(default=())  # why the turn is invalid, if it is

    @property
    def valid(self) -> bool:
        return self.stop or self.query is not None


def tag_body(text: str, tag: str) -> str | None:
    """The text between the first `<tag>` and the first `</tag>` after it, or None if either is missing."""
    opener, closer = f"<{tag}>", f"</{tag}>"
    start = text.find(opener)
    if start < 0:
        return None
    end = text.find(closer, start + len(opener))
    if end < 0:
        return None
    return text[start + len(opener):end]


def strip_forged_information(text: str) -> tuple[str, bool]:
    """The part of a policy turn before any `<information>` it wrote, and whether there was one."""
    cut = text.find(INFORMATION_OPEN)
    return (text, False) if cut < 0 else (text[:cut], True)


def parse_query(body: str) -> str | None:
    """`{"query": "..."}` -> its string (`{"query": ["a", "b"]}` -> "a"); anything else -> the raw text,
    stripped; None if nothing is left."""
    raw = body.strip()
    try:
        decoded = json.loads(raw)
    except (ValueError, RecursionError):  # bad JSON, numbers too long to convert, absurd nesting
        decoded = None
    if isinstance(decoded, dict):
        value = decoded.get("query")
        if isinstance(value, list) and value:
            value = value[0]
        if isinstance(value, str):
            raw = value.strip()
    return raw or None


def parse_flag(body: str) -> bool | None:
    """True/False for the stop flag, None if the word is neither (quotes are not stripped)."""
    word = body.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    return None


MAX_ID_DIGITS = 6  # longer digit runs cannot be a doc number of any block


def _as_doc_number(value: object) -> int | None:
    """A JSON value as a doc number: an int, or a float with an integral value; None otherwise (bools,
    strings, NaN, infinities, fractions)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def _numbers_in(body: str) -> list[int | None]:
    """Candidate doc numbers of an <important_info> body: a JSON list's (or number's) items, else every
    integer written in the text. None marks an item that is no number (it counts as dropped)."""
    try:
        decoded = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, a number too long for int(), absurd nesting
        decoded = None
    if isinstance(decoded, list):
        return [_as_doc_number(x) for x in decoded]
    if decoded is not None and not isinstance(decoded, (dict, str)):
        return [_as_doc_number(decoded)]
    return [int(digits) if len(digits) <= MAX_ID_DIGITS else None
            for digits in re.findall(r"-?\d+", body)]


def parse_ids(body: str, block_size: int, max_selected: int) -> tuple[tuple[int, ...], int]:
    """Valid 1-based ids of the latest block (in written order, no repeats, at most max_selected) and the
    number of ids dropped. Total over any text: hostile bodies give an empty or partial selection."""
    numbers = _numbers_in(body)
    kept: list[int] = []
    for number in numbers:
        if number is not None and 1 <= number <= block_size and number not in kept and len(kept) < max_selected:
            kept.append(number)
    return tuple(kept), len(numbers) - len(kept)


def parse_turn(text: str, block_size: int, max_selected: int) -> TurnAction:
    """One turn of searcher text -> the action it asks for (see the module docstring for the rules)."""
    text, forged = strip_forged_information(text)
    selected, dropped = (), 0
    if (ids := tag_body(text, "important_info")) is not None:
        selected, dropped = parse_ids(ids, block_size, max_selected)
    stop_body = tag_body(text, "search_complete")
    stop = parse_flag(stop_body) is True if stop_body is not None else False
    query_body = tag_body(text, "query")
    query = parse_query(query_body) if query_body is not None and not stop else None
    problems = []
    if not stop and query is None:
        problems.append("no <query> and no <search_complete>True</search_complete>"
                        if query_body is None else "empty <query>")
    return TurnAction(query=query, stop=stop, selected=selected, dropped_ids=dropped,
                      forged_information=forged, problems=tuple(problems))
