"""An oracle that writes s3 searcher turns from what a question needs (issue 8's warm start).

It plays the policy in the real rollout engine (the `Policy` protocol of agent/sampling.py): the engine
retrieves, builds observations and masks exactly as in training, and the oracle only writes each turn's
text. It knows each question's supporting passages (the tiny world's `metadata.supporting_ids`), so
"the world's structure tells which entity to search next":
- it keeps (`<important_info>`) the docs of the latest block that are supporting passages;
- when every supporting passage has been kept, it stops (`<search_complete>True</search_complete>`);
- otherwise it searches for the title of the first supporting passage it has not kept (the bridge entity of
  a two-hop question, the missing entity of a comparison), `<query>{"query": "<title>"}</query>`.
Queries are written as JSON or as plain text (`query_format`, see QUERY_FORMATS).
With probability `noise` a turn is a plausible mistake instead (search the question again, keep nothing,
or stop early), so the fine-tuned searcher is good but not perfect and RL has something to improve.
Those mistakes are each a minority choice at their turn, so a warm-started searcher decoded greedily (as at
inference) makes none of them: they give RL exploration, not a gap at evaluation (docs/RESULTS.md 6.4).
`under_search` is a systematic flaw instead: with that probability the oracle stops as soon as it has kept
one supporting passage, although the question needs another (the second hop of a two-hop question, the
other entity of a comparison). Above 0.5 the greedy warm start stops after one hop, as an instruct model
that trusts its first useful result would, and RL has to learn that a further search pays.

The oracle reads the trajectory as text: the question from the prompt's `Question:` line and the latest
block's passages by their `Doc i (Title: T) text` lines, matched to the supporting passages by title and
text.

Real QA sets (NQ, TriviaQA: issue 21) name no supporting passages, only gold answers. For them the needs are
*any one* of the passages that contain a gold answer (span_check's rule, data/coverage.py), ranked by how
many of the question's words they share (`answer_needs`): the oracle keeps every retrieved passage that holds
an answer, stops as soon as it has one, and otherwise searches for the title of the best-ranked answer
passage. That is a searcher that reads the initial retrieval, keeps what answers, and names the entity it
needs when the question's own retrieval missed it: the protocol an instruct prior has to learn.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from s3core.agent.sampling import PolicyOutput, SamplingSettings
from s3core.data.answers import answer_tokens
from s3core.data.coverage import CorpusTokens
from s3core.retrieval.base import DocStore

QUESTION_LINE = re.compile(r"^Question: (.*)$", re.MULTILINE)
DOC_LINE = re.compile(r"^Doc (\d+) \(Title: (.*?)\) (.*)$", re.MULTILINE)
MISTAKES = ("requery", "keep_nothing", "stop_early")
# json: `<query>{"query": "Title"}</query>`, the s3 paper's form. text: `<query> Title</query>`, which the
# protocol parser reads as the raw query; the leading space makes a byte-level BPE tokenizer split the name
# into the same tokens as in the passages (` Zeithika`, not `Z` + `eithika` after a quote), so a model
# learns to copy a name token for token.
QUERY_FORMATS = ("json", "text")
# Words too common to say which passage a question is about, left out of answer_needs' ranking.
FUNCTION_WORDS = frozenset(
    "a an and are as at be by did do does for from had has have he her his how in is it its of on or she that "
    "the their they this to was were what when where which who whom whose why will with".split())
ANSWER_CANDIDATES = 50  # answer passages looked at per gold answer


@dataclass(frozen=True)
class Needs:
    """What one question needs: its supporting passages as (title, text) pairs, in chain order; with `any_of`,
    any one of them is enough (the answer passages of a real QA set, best first)."""

    passages: tuple[tuple[str, str], ...]
    any_of: bool = False


def needs_by_question(rows: Sequence[Mapping], docs: DocStore, source: str = "questions") -> dict[str, Needs]:
    """Questions rows -> question text -> Needs: the supporting passages when every row's metadata names them
    (supporting_ids, the tiny world's), else the passages that hold a gold answer (`answer_needs`)."""
    from s3core.reader.training import reader_questions  # the one reader of supporting_ids from metadata

    if all(json.loads(r.get("metadata") or "{}").get("supporting_ids") for r in rows):
        return {q.question: Needs(tuple((docs.title(r), docs.text(r)) for r in q.supporting_rows))
                for q in reader_questions(rows, docs, source)}
    return answer_needs(rows, docs, source)


def answer_needs(rows: Sequence[Mapping], docs: DocStore, source: str = "questions") -> dict[str, Needs]:
    """Question text -> Needs(any_of) of the passages that contain one of its gold answers, those sharing the
    most content words with the question first. A question no passage answers is an error: keep the answerable
    subset (questions.answerable_only) for the warm start."""
    index = CorpusTokens(f"{docs.title(r)} {docs.text(r)}" for r in range(len(docs)))
    needs = {}
    for row in rows:
        candidates: list[int] = []
        for answer in row["golden_answers"]:
            candidates += [c for c in index.passages_with(answer, limit=ANSWER_CANDIDATES) if c not in candidates]
        if not candidates:
            raise ValueError(f"{source}: no passage holds a gold answer of question {row.get('id')!r} "
                             f"({row['question']!r}); set questions.answerable_only: true so the warm start "
                             "imitates the oracle only on questions the corpus answers")
        words = set(answer_tokens(row["question"])) - FUNCTION_WORDS
        ranked = sorted(candidates, key=lambda c: -len(words & set(index.tokens[c])))  # stable: corpus order on ties
        needs[row["question"]] = Needs(tuple((docs.title(c), docs.text(c)) for c in ranked), any_of=True)
    return needs


def latest_block(text: str) -> list[tuple[int, str, str]]:
    """(doc number, title, text) of the passages in the last <information> block of a trajectory."""
    start = text.rfind("<information>")
    if start < 0:
        return []
    return [(int(n), t, x.strip()) for n, t, x in DOC_LINE.findall(text[start:])]


def kept_so_far(text: str, needs: Needs) -> set[int]:
    """Indices (into needs.passages) of supporting passages kept in earlier turns."""
    kept: set[int] = set()
    for piece in text.split("<information>")[1:]:
        block, _, turn = piece.partition("</information>")  # a block, then the turn that read it
        chosen = re.search(r"<important_info>\[([\d, ]*)\]</important_info>", turn)
        if not chosen:
            continue
        numbers = {int(n) for n in re.findall(r"\d+", chosen.group(1))}
        for n, title, passage in DOC_LINE.findall(block):
            if int(n) in numbers:
                kept |= {i for i, p in enumerate(needs.passages) if p == (title, passage.strip())}
    return kept


class OraclePolicy:
    """A `Policy` that writes the oracle's turns; tokens come from the real searcher tokenizer."""

    def __init__(self, tokenizer, needs: Mapping[str, Needs], noise: float = 0.0, seed: int = 0,
                 max_selected: int = 3, query_format: str = "json", under_search: float = 0.0):
        if query_format not in QUERY_FORMATS:
            raise ValueError(f"query_format must be one of {QUERY_FORMATS} (got {query_format!r})")
        if not 0.0 <= under_search <= 1.0:
            raise ValueError(f"under_search is a probability in [0, 1] (got {under_search!r})")
        self.tokenizer, self.needs, self.noise, self.under_search = tokenizer, needs, noise, under_search
        self.rng, self.max_selected, self.query_format = random.Random(seed), max_selected, query_format

    def turn_text(self, trajectory: str) -> str:
        match = QUESTION_LINE.search(trajectory)
        if match is None or match.group(1).strip() not in self.needs:
            raise ValueError("the oracle got a trajectory whose question it does not know")
        needs = self.needs[match.group(1).strip()]
        block = latest_block(trajectory)
        useful = [n for n, title, text in block if (title, text) in needs.passages][:self.max_selected]
        kept = kept_so_far(trajectory, needs) | {i for i, p in enumerate(needs.passages)
                                                 if any((t, x) == p for n, t, x in block if n in useful)}
        missing = [] if needs.any_of and kept else [p for i, p in enumerate(needs.passages) if i not in kept]
        if self.rng.random() < self.noise:
            mistake = self.rng.choice(MISTAKES)
            if mistake == "requery":
                return self._turn(useful, done=False, query=match.group(1).strip())
            if mistake == "keep_nothing":
                useful = []
            else:
                return self._turn(useful, done=True)
        if not missing:
            return self._turn(useful, done=True)
        if not needs.any_of and self.stops_short(len(missing) < len(needs.passages)):
            return self._turn(useful, done=True)
        return self._turn(useful, done=False, query=missing[0][0])

    def stops_short(self, kept_any: bool) -> bool:
        """Whether this turn ends the search with a supporting passage still missing (`under_search`); the
        draw is made only when it can apply, so under_search = 0 leaves the noise draws as they were."""
        return kept_any and self.under_search > 0 and self.rng.random() < self.under_search

    def _turn(self, useful: Sequence[int], done: bool, query: str | None = None) -> str:
        text = f"<important_info>{json.dumps(list(useful))}</important_info>"
        text += f"<search_complete>{'True' if done else 'False'}</search_complete>"
        if query is not None:
            body = json.dumps({"query": query}) if self.query_format == "json" else f" {query}"
            text += f"<query>{body}</query>"
        return text

    def continue_sequences(self, sequences: Sequence[Sequence[int]], settings: SamplingSettings) -> list[PolicyOutput]:
        outputs = []
        for sequence in sequences:
            text = self.turn_text(self.tokenizer.decode(list(sequence), skip_special_tokens=True))
            tokens = self.tokenizer(text, add_special_tokens=False)["input_ids"][:settings.max_new_tokens]
            outputs.append(PolicyOutput(list(tokens), [0.0] * len(tokens), "stop"))
        return outputs

