"""judge_check: an LLM decides whether a response contains any gold answer (DESIGN.md section 2, GenAcc).

The judge sees the question, the gold answers and the response through the template
`s3core/prompts/judge.txt` (or, with reward.judge_prompt: judge_response_only, the gold answers
and the response alone, as the public code asks it), and answers at temperature 0 with at most 10 new
tokens. Its reply is parsed strictly (`parse_verdict`): "yes" or "no", give or take case, whitespace and punctuation.

Deliberate fix of the public s3 code, where a failed or odd judge reply quietly counted as "not correct":
here an unparseable reply is re-asked (only those items, in one batch per round, with a one-line reminder
of the expected format) up to `retries` times and then raised as `JudgeError`; a `GeneratorError` from the
backend propagates untouched. Neither is ever turned into a score of 0.
"""

from __future__ import annotations

import json
import string
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from s3core.generation.base import ChatBackend, GenerationParams, GeneratorError, Message
from s3core.prompts import load_prompt

JUDGE_PARAMS = GenerationParams(max_new_tokens=10, temperature=0.0, top_p=1.0)
RETRY_REMINDER = "Your reply could not be read. Reply with exactly one word: yes or no."


class JudgeError(RuntimeError):
    """The judge kept giving replies that are not a yes/no verdict."""


class JudgeParseError(JudgeError, ValueError):
    """One judge reply is not a yes/no verdict."""


@dataclass(frozen=True)
class JudgeItem:
    question: str
    golden_answers: Sequence[str]
    response: str


def _is_filler(ch: str) -> bool:
    """Whitespace or punctuation (ASCII or Unicode), which may surround the verdict word."""
    return ch.isspace() or ch in string.punctuation or unicodedata.category(ch).startswith("P")


def parse_verdict(text: str) -> bool:
    """True for "yes", False for "no"; anything else raises JudgeParseError.

    Leading and trailing whitespace and punctuation are dropped and case is ignored, so "YES!", " no ",
    "No." and "**yes**" parse; "maybe", "yes and no", "yes, it does" and "" do not.
    """
    start, end = 0, len(text)
    while start < end and _is_filler(text[start]):
        start += 1
    while end > start and _is_filler(text[end - 1]):
        end -= 1
    word = text[start:end].lower()
    if word == "yes":
        return True
    if word == "no":
        return False
    raise JudgeParseError(f"judge reply is not a yes/no verdict: {text!r}")


JUDGE_PROMPTS = ("judge", "judge_response_only")  # reward.judge_prompt: with the question, or without (public code)


def judge_conversation(item: JudgeItem, prompt_name: str = "judge") -> list[Message]:
    """The single user turn that asks the judge about one item (`prompt_name`: one of JUDGE_PROMPTS)."""
    if prompt_name not in JUDGE_PROMPTS:
        raise ValueError(f"unknown judge prompt {prompt_name!r}; valid: {list(JUDGE_PROMPTS)}")
    prompt = load_prompt(prompt_name).render(
        question=item.question,
        golden_answers=json.dumps(list(item.golden_answers), ensure_ascii=False),
        response=item.response,
    )
    return [{"role": "user", "content": prompt}]


async def _ask(backend: ChatBackend, conversations: list[list[Message]]) -> list[str]:
    replies = [r if r is not None else "" for r in await backend.generate(conversations, JUDGE_PARAMS)]
    if len(replies) != len(conversations):
        raise GeneratorError(f"judge backend {getattr(backend, 'name', backend)!r} returned {len(replies)} replies for {len(conversations)} conversations")
    return replies


async def judge_many(backend: ChatBackend, items: Sequence[JudgeItem], retries: int = 2,
                     prompt_name: str = "judge") -> list[bool]:
    """One verdict per item, in order: True if the judge says the response holds a gold answer.

    One batched `generate` call for all items, then up to `retries` further batched calls for the items
    whose reply did not parse (each re-ask appends the bad reply and a format reminder to the conversation).
    Raises JudgeError if some replies still do not parse; GeneratorError from the backend propagates.
    """
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    if not items:
        return []
    conversations = [judge_conversation(item, prompt_name) for item in items]
    verdicts: list[bool | None] = [None] * len(items)
    last_reply: dict[int, str] = {}
    pending = list(range(len(items)))
    for attempt in range(retries + 1):
        asked = [conversations[i] for i in pending]
        replies = await _ask(backend, asked)
        still_pending = []
        for index, reply in zip(pending, replies):
            try:
                verdicts[index] = parse_verdict(reply)
            except JudgeParseError:
                still_pending.append(index)
                last_reply[index] = reply
                conversations[index] = [*conversations[index], {"role": "assistant", "content": reply},
                                        {"role": "user", "content": RETRY_REMINDER}]
        pending = still_pending
        if not pending:
            return [bool(v) for v in verdicts]
    example = pending[0]
    raise JudgeError(
        f"{len(pending)} of {len(items)} judge replies were still not yes/no after {retries} retries; "
        f"e.g. item {example} (question {items[example].question!r}) last replied {last_reply[example]!r}"
    )
