"""GenAcc and the Gain-Beyond-RAG reward (DESIGN.md section 2, "GenAcc" and "Reward").

GenAcc = span_check OR judge_check. span_check runs on every answer; the LLM judge is asked only about the
answers span_check rejected (and only when `use_judge` is on), all of them in one batched call, so a
correct span costs no judge tokens. EM and token F1 are computed alongside for reporting.

Deliberate fixes of the public s3 code: a gold answer that normalises to nothing never matches
(data/answers.py), and a judge that fails or gives an unreadable verdict raises (judge.py) instead of scoring 0.

Reward kinds: the paper's GBR = GenAcc(s3 context) - GenAcc(naive top-3 RAG context), the default; and the
public code's GBR + GenAcc(s3 context). Both are named entries of a registry keyed by `RewardKind`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from s3core.data.answers import exact_match, f1, span_check
from s3core.generation.base import ChatBackend
from s3core.reward.judge import JudgeItem, judge_many


@dataclass(frozen=True)
class AnswerScore:
    genacc: bool  # span or judge
    span: bool
    judge: bool | None  # None where the judge was not asked (span passed, or judging switched off)
    em: bool
    f1: float


async def score_answers(
    predictions: Sequence[str],
    golden_answers_list: Sequence[Sequence[str]],
    questions: Sequence[str],
    judge_backend: ChatBackend | None,
    use_judge: bool,
    judge_retries: int = 2,
    judge_only: bool = False,
    judge_prompt: str = "judge",
) -> list[AnswerScore]:
    """Score each prediction against its gold answers; one AnswerScore per prediction, in order.

    `judge_only` (MIRAGE's multiple-choice sets, DESIGN.md section 2): GenAcc is the judge's verdict alone,
    asked about every answer; span_check is still recorded but does not count."""
    if not len(predictions) == len(golden_answers_list) == len(questions):
        raise ValueError(f"lengths differ: {len(predictions)} predictions, {len(golden_answers_list)} gold lists, {len(questions)} questions")
    if judge_only and not use_judge:
        raise ValueError("judge_only scoring needs the judge: set reward.use_judge: true")
    if use_judge and judge_backend is None:
        raise ValueError("use_judge is on but no judge backend was given: pass one, or set use_judge=False")
    spans = [span_check(pred, golds) for pred, golds in zip(predictions, golden_answers_list)]
    judged: dict[int, bool] = {}
    if use_judge:
        to_judge = [i for i, ok in enumerate(spans) if judge_only or not ok]
        items = [JudgeItem(questions[i], list(golden_answers_list[i]), predictions[i]) for i in to_judge]
        verdicts = await judge_many(judge_backend, items, retries=judge_retries, prompt_name=judge_prompt)
        judged = dict(zip(to_judge, verdicts))
    return [
        AnswerScore(
            genacc=judged[i] if judge_only else (spans[i] or judged.get(i, False)),
            span=spans[i],
            judge=judged.get(i),
            em=exact_match(pred, golds),
            f1=f1(pred, golds),
        )
        for i, (pred, golds) in enumerate(zip(predictions, golden_answers_list))
    ]


class RewardKind(Enum):
    GBR = "gbr"  # the paper: GenAcc(s3) - GenAcc(naive RAG)
    GBR_PLUS_GENACC = "gbr_plus_genacc"  # the public code: GBR + GenAcc(s3)


DEFAULT_REWARD = RewardKind.GBR

_REWARDS: dict[RewardKind, Callable[[float, float], float]] = {
    RewardKind.GBR: lambda s3, naive: s3 - naive,
    RewardKind.GBR_PLUS_GENACC: lambda s3, naive: (s3 - naive) + s3,
}


def reward(kind: RewardKind | str, genacc_s3: float, genacc_naive: float) -> float:
    """The trajectory reward from the GenAcc of the s3 context and of the naive top-3 RAG context."""
    valid = [k.value for k in _REWARDS]
    try:
        key = kind if isinstance(kind, RewardKind) else RewardKind(kind)
        fn = _REWARDS[key]
    except (ValueError, KeyError):
        raise ValueError(f"unknown reward kind {kind!r}; valid: {valid}") from None
    return float(fn(float(genacc_s3), float(genacc_naive)))
