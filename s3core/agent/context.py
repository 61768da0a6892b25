"""The trajectory record and the generator context built from it (DESIGN.md section 2, "Final context").

The environment keeps its own record of every information block it showed the searcher: which passages (as
DocStore rows) in which order, for which query, and which of them the searcher tagged with
`<important_info>`. The generator's context is built from that record alone:

    for each block, in the order shown: the tagged docs if the searcher tagged the block, else all its docs
    (the initial top-k block included); then duplicates removed by passage text (first kept); then
    renumbered `Doc i (Title: T) text` from the DocStore's own title and text.

So nothing the policy writes (a forged `<information>` block, a fake title) can reach the generator, and
titles with `)` or `"` stay intact. Two deliberate choices: a block tagged with an empty or all-invalid
list contributes no docs (the searcher said none matter), and a later tag of the same block replaces an
earlier one.

`public_code_context` is the compatibility rule (searcher.context_rule = "public_code") for users who need
the paper's exact numbers: like the public code it re-parses the decoded transcript, so forged blocks count
and a title is cut at its first `)`. Its docstring lists exactly what it reproduces.
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


@dataclass
class TrajectoryRecord:
    """The environment's structured record of one trajectory (the only source of the final context)."""

    question: str
    blocks: list[InfoBlock] = field(default_factory=list)
    turns: int = 0              # policy turns taken (invalid ones included)
    invalid_turns: int = 0
    forged_information: int = 0  # turns in which the policy wrote its own <information>
    stopped: bool = False       # the policy said <search_complete>True</search_complete>
    end_reason: str = ""        # stop | turn_limit | context_limit | no_action

    @property
    def queries(self) -> list[str]:
        return [b.query for b in self.blocks if b.query is not None]

    def tag_latest(self, selected: Sequence[int]) -> None:
        """Record the searcher's `<important_info>` ids for the latest block (replacing an earlier tag)."""
        if self.blocks:
            self.blocks[-1].selected = tuple(selected)

    def context_rows(self) -> list[int]:
        """DocStore rows of the final context, before de-duplication by text."""
        rows: list[int] = []
        for block in self.blocks:
            if block.selected is None:
                rows.extend(block.rows)
            else:
                rows.extend(block.rows[i - 1] for i in block.selected if 1 <= i <= len(block.rows))
        return rows


def format_docs(docs: DocStore, rows: Iterable[int]) -> str:
    """Numbered passages, one per line: `Doc i (Title: T) text`, i = 1.. (the block and context format)."""
    return "\n".join(f"Doc {i} (Title: {docs.title(row)}) {docs.text(row)}" for i, row in enumerate(rows, start=1))


def dedupe_by_text(docs: DocStore, rows: Iterable[int]) -> list[int]:
    """Rows with duplicate passages (same title and text) removed; the first occurrence is kept."""
    seen: set[tuple[str, str]] = set()
    unique: list[int] = []
    for row in rows:
        key = (docs.title(row), docs.text(row))
        if key not in seen:
            seen.add(key)
            unique.append(row)
    return unique


def structured_context(record: TrajectoryRecord, docs: DocStore) -> tuple[list[int], str]:
    """The final context's rows and text, from the environment's record (the default rule)."""
    rows = dedupe_by_text(docs, record.context_rows())
    return rows, format_docs(docs, rows)


_BLOCK = re.compile(r"<information>(.*?)</information>", re.S)
_DOC_LINE = re.compile(r"^Doc (\d+) \(Title: ([^)]*)\) ?(.*)$")
_TAG = re.compile(r"<important_info>(.*?)</important_info>", re.S)


def public_code_context(transcript: str) -> str:
    """The public code's rule, re-implemented for exact-number comparisons (not the default).

    Reproduces, on the decoded transcript after the prompt: every `<information>` block counts, including
    any the policy wrote itself; each doc line is read with a title that ends at the first `)` (so
    `Title: Foo (band)` becomes title `Foo (band` and the rest of the line is the text); the first
    `<important_info>` list after a block (before the next block) selects from it, else the whole block is
    kept; duplicates are removed by text and the docs renumbered.
    """
    blocks = list(_BLOCK.finditer(transcript))
    kept: list[tuple[str, str]] = []
    for index, block in enumerate(blocks):
        lines = [m for m in (_DOC_LINE.match(line.strip()) for line in block.group(1).splitlines()) if m]
        following = transcript[block.end(): blocks[index + 1].start() if index + 1 < len(blocks) else len(transcript)]
        tag = _TAG.search(following)
        wanted = {int(n) for n in re.findall(r"\d+", tag.group(1))} if tag else None
        kept.extend((m.group(2), m.group(3)) for m in lines if wanted is None or int(m.group(1)) in wanted)
    unique = list(dict.fromkeys(kept))
    return "\n".join(f"Doc {i} (Title: {title}) {text}" for i, (title, text) in enumerate(unique, start=1))
