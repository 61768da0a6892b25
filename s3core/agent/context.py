"""The trajectory record and the generator context built from it (DESIGN.md section 2, "Final context").

The environment keeps its own record of every information block it showed the searcher: which passages (as
DocStore rows) in which order, for which query, how many of them the searcher actually saw (an observation
cut at `max_obs_tokens` hides the rest), and which of them the searcher tagged with `<important_info>`. The
default generator context (`structured`) is built from that record alone, in the public s3 code's order:

    1. the tagged docs of every tagged block, block by block, each block's in their Doc order;
    2. then every seen doc of every block the searcher never tagged (the initial top-k block included);
    3. duplicates removed by passage text (first kept), renumbered `Doc i (Title: T) text` from the
       DocStore's own title and text.

So nothing the policy writes (a forged `<information>` block, a fake title) can reach the generator, no
document the searcher did not see enters it, and titles with `)` or `"` stay intact. As in the public code,
a block tagged with an empty or all-invalid list contributes no docs, and the first tag of a block is the
one that counts (a later turn that tags the same block again, after an invalid turn, changes nothing).
docs/FIDELITY.md lists what differs from the public code and why.

`public_code_context` is the compatibility rule (searcher.context_rule = "public_code") for users who need
the paper's exact numbers: it re-reads the decoded transcript as the public code does, defects included.
Its docstring states exactly what it reproduces.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from s3core.retrieval.base import DocStore


@dataclass
class InfoBlock:
    """One information block the environment showed: passages as DocStore rows, Doc 1..k in this order."""

    rows: tuple[int, ...]
    query: str | None  # None for the initial block (retrieved with the question itself)
    selected: tuple[int, ...] | None = None  # 1-based doc numbers the searcher tagged; None = never tagged
    shown: int | None = None  # how many leading docs the searcher saw whole (None = all of them)

    @property
    def seen_rows(self) -> tuple[int, ...]:
        """The rows of the docs the searcher saw whole (an observation cut at max_obs_tokens hides the rest)."""
        return self.rows if self.shown is None else self.rows[: self.shown]

    @property
    def size(self) -> int:
        """How many docs the searcher can refer to by number in this block."""
        return len(self.seen_rows)


@dataclass
class TrajectoryRecord:
    """The environment's structured record of one trajectory (the only source of the final context)."""

    question: str
    blocks: list[InfoBlock] = field(default_factory=list)
    turns: int = 0              # policy turns taken (invalid ones included)
    invalid_turns: int = 0
    forged_information: int = 0  # turns in which the policy wrote its own <information>
    unexecuted_queries: int = 0  # queries written on the last turn or after the search budget: not searched
    stopped: bool = False       # the policy said <search_complete>True</search_complete>
    end_reason: str = ""        # stop | turn_limit | search_limit | context_limit | no_action

    @property
    def queries(self) -> list[str]:
        return [b.query for b in self.blocks if b.query is not None]

    def tag_latest(self, selected: Sequence[int]) -> None:
        """Record the searcher's `<important_info>` ids for the latest block; the block's first tag counts."""
        if self.blocks and self.blocks[-1].selected is None:
            self.blocks[-1].selected = tuple(selected)

    def context_rows(self) -> list[int]:
        """DocStore rows of the final context, before de-duplication: tagged docs first (block order, Doc
        order within a block), then the seen docs of untagged blocks."""
        tagged: list[int] = []
        untagged: list[int] = []
        for block in self.blocks:
            if block.selected is None:
                untagged.extend(block.seen_rows)
            else:
                wanted = set(block.selected)
                tagged.extend(row for number, row in enumerate(block.seen_rows, start=1) if number in wanted)
        return tagged + untagged


def format_docs(docs: DocStore, rows: Iterable[int]) -> str:
    """Numbered passages, one per line: `Doc i (Title: T) text`, i = 1.. (the block and context format)."""
    return "\n".join(doc_line(docs, row, i) for i, row in enumerate(rows, start=1))


def doc_line(docs: DocStore, row: int, number: int) -> str:
    """One passage as its block line: `Doc {number} (Title: T) text`."""
    return f"Doc {number} (Title: {docs.title(row)}) {docs.text(row)}"


def dedupe_by_text(docs: DocStore, rows: Iterable[int]) -> list[int]:
    """Rows with duplicate passage texts removed (the public code's key); the first occurrence is kept."""
    seen: set[str] = set()
    unique: list[int] = []
    for row in rows:
        text = docs.text(row)
        if text not in seen:
            seen.add(text)
            unique.append(row)
    return unique


def structured_context(record: TrajectoryRecord, docs: DocStore, max_docs: int | None = None) -> tuple[list[int], str]:
    """The final context's rows and text, from the environment's record (the default rule); at most
    `max_docs` passages when given (the public code's evaluation keeps 20)."""
    rows = dedupe_by_text(docs, record.context_rows())
    if max_docs is not None:
        rows = rows[:max_docs]
    return rows, format_docs(docs, rows)


# -- the public code's rule ---------------------------------------------------------------------------------
# What its reward function reads, restated: an information block is the text between `<information>` and the
# next `</information>`; a doc inside one is `Doc N (Title: T) text`, spaces optional around each part, any
# case, T optionally in double quotes and ending at the first `"` or `)`, the text running to the next
# `Doc N (Title:` or the end of the block; an <important_info> id is any run of digits whose value is 1..8.
_PC_BLOCK = re.compile(r"<information>(?P<body>.*?)</information>", re.DOTALL)
_PC_TAG = re.compile(r"<important_info>(?P<body>.*?)</important_info>", re.DOTALL)
_PC_DOC_START = r"Doc\s*\d+\s*\(\s*Title\s*:"
_PC_DOC = re.compile(
    r"Doc\s*(?P<number>\d+)\s*\(\s*Title\s*:\s*\"?(?P<title>[^\")]+)\"?\)\s*"
    rf"(?P<text>.*?)(?={_PC_DOC_START}|$)",
    re.DOTALL | re.IGNORECASE,
)
PUBLIC_CODE_ID_RANGE = range(1, 9)  # the public code accepts doc ids 1..8 whatever the block's size


def _public_code_ids(body: str) -> list[int]:
    """The ids of one <important_info> as the public code reads them: digit runs valued 1..8, first
    occurrences in written order; a run too long for int() voids the whole tag (its error path)."""
    try:
        numbers = [int(digits) for digits in re.findall(r"\d+", body.strip())]
    except ValueError:
        return []
    return list(dict.fromkeys(n for n in numbers if n in PUBLIC_CODE_ID_RANGE))


def _public_code_docs(body: str) -> list[tuple[int, str, str]]:
    """(number, title, text) of each doc the public code's pattern finds in one block."""
    found = []
    for match in _PC_DOC.finditer(body):
        try:
            number = int(match.group("number"))
        except ValueError:  # a number too long for int(): the public code skips that doc
            continue
        found.append((number, match.group("title").strip(), match.group("text").strip()))
    return found


def public_code_docs(transcript: str) -> list[tuple[str, str]]:
    """(title, text) of the context the public code extracts from a transcript, in its order."""
    blocks = list(_PC_BLOCK.finditer(transcript))
    processed = [False] * len(blocks)
    kept: list[tuple[str, str]] = []
    seen_texts: set[str] = set()

    def keep(title: str, text: str) -> None:
        if text not in seen_texts:
            seen_texts.add(text)
            kept.append((title, text))

    for tag in _PC_TAG.finditer(transcript):
        # the tag applies to the last block that starts before it, if no earlier tag took that block
        before = [i for i, block in enumerate(blocks) if block.start() < tag.start()]
        if not before or processed[before[-1]]:
            continue
        index = before[-1]
        processed[index] = True
        wanted = set(_public_code_ids(tag.group("body")))
        for number, title, text in _public_code_docs(blocks[index].group("body")):
            if number in wanted:
                keep(title, text)
    for index, block in enumerate(blocks):
        if not processed[index]:
            for _, title, text in _public_code_docs(block.group("body")):
                keep(title, text)
    return kept


def public_code_context(transcript: str, max_docs: int | None = None) -> str:
    """The public code's context, re-implemented for exact-number comparisons (not the default).

    `transcript` is what follows the searcher's instructions: the initial information block, then every
    turn and observation as decoded text (`public_code_transcript`). Reproduced exactly, defects included:
    - every `<information>` block counts, also one the policy wrote itself;
    - the first `<important_info>` after a block (before the next block) selects from it, by the digit runs
      of its body valued 1..8 (so `Doc 3`, `[1,2]`, `-2` and `1e5` all name docs), in Doc order, with no cap
      of 3; an empty or unreadable list selects nothing from that block;
    - the selected docs of all tagged blocks come first, then every doc of every untagged block;
    - a title ends at its first `"` or `)`: `Foo (band)` becomes title `Foo (band` with `)` before the
      text, and a doc whose title holds a `"` before its end is lost;
    - a passage text holding `Doc N (Title:` is cut there;
    - duplicates are removed by text, and the docs are written `Doc i (Title: T)` with the text on the next
      line and a blank line after each;
    - `max_docs` (the evaluation's cap, 20 in the public scripts) cuts the formatted context at the first
      `Doc {max_docs + 1}`, wherever that string occurs.
    """
    context = "".join(f"Doc {i} (Title: {title})\n{text}\n\n"
                      for i, (title, text) in enumerate(public_code_docs(transcript), start=1))
    if max_docs is not None:
        context = context.split(f"Doc {max_docs + 1}")[0]
    return context


def public_code_transcript(record: TrajectoryRecord, docs: DocStore, response_text: str) -> str:
    """The text the public code's rule reads: the initial block as the prompt showed it, then the decoded
    response (turns and observations). The instructions before the question are left out, as the public
    code splits them off at its prompt's last line."""
    initial = ""
    if record.blocks and record.blocks[0].query is None:
        initial = f"<information>\n{format_docs(docs, record.blocks[0].rows)}\n</information>\n"
    return initial + response_text
