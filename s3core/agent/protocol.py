"""The s3 searcher's tag protocol: what one turn of policy text asks for (DESIGN.md section 2, "Searcher protocol").

One trajectory answers one question. The searcher starts from the question and the top-`initial_topk`
passages retrieved with the question itself (block 0). In each turn it may write, in any order:

    <think>...</think>                              allowed, ignored
    <important_info>[1, 3]</important_info>         doc numbers of the LATEST information block it keeps
    <search_complete>True|False</search_complete>   True (true/yes/1/y, any case) stops the search
    <query>{"query": "..."}</query>                 search again (raw text if the JSON does not parse)

`parse_turn` turns one turn's text into a `TurnAction`. Rules, stated:
- Only text before the first `<information>` the policy writes itself is read: the environment alone writes
  information blocks, so a forged block (and anything after it) is ignored, and flagged (`forged_information`).
- The first complete occurrence of each tag counts. A tag without its closer is absent (so a reply truncated
  at the token limit never runs a half-written query). Nested same-name tags are read up to the first closer.
- `important_info` takes integers from a JSON list, or failing that every integer in the text; ids outside
  1..(size of the latest block) are dropped (counted in `dropped_ids`), repeats are dropped, and at most
  `max_selected` are kept in the order written.
- stop wins over a query in the same turn. A turn with neither a query nor a stop is invalid: the
  environment answers with `CORRECTIVE_OBSERVATION` and the turn counts against the limit.
"""

from __future__ import annotations

import json
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
    """`{"query": "..."}` -> its string; otherwise the raw text (stripped); None if nothing is left."""
    raw = body.strip()
    try:
        decoded = json.loads(raw)
    except (json.JSONDecodeError, ValueError):
        decoded = None
    if isinstance(decoded, dict) and isinstance(decoded.get("query"), str):
        raw = decoded["query"].strip()
    elif isinstance(decoded, str):
        raw = decoded.strip()
    return raw or None


def parse_flag(body: str) -> bool | None:
    """True/False for the stop flag, None if the word is neither."""
    word = body.strip().strip("\"'").lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    return None


def parse_ids(body: str, block_size: int, max_selected: int) -> tuple[tuple[int, ...], int]:
    """Valid 1-based ids of the latest block (in written order, no repeats, at most max_selected) and the
    number of ids dropped."""
    try:
        decoded = json.loads(body)
        numbers = [int(x) for x in decoded] if isinstance(decoded, list) else [int(decoded)]
    except (json.JSONDecodeError, ValueError, TypeError):
        numbers = [int(x) for x in re.findall(r"-?\d+", body)]
    kept: list[int] = []
    for number in numbers:
        if 1 <= number <= block_size and number not in kept and len(kept) < max_selected:
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
