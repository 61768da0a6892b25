"""Exact match and token F1 between a generated answer and the gold answers (DESIGN.md section 2, GenAcc).

Both are reported beside GenAcc; neither feeds the reward. They use the same SQuAD-style normalisation as
span_check (`normalize_answer`: lowercase, no punctuation, no articles, single spaces) and take the best
score over the gold answers. Deliberate fix, as in span_check: a gold answer that normalises to nothing
("the", "...") is ignored, so it can never match an empty prediction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from s3core.reward.span import normalize_answer


def _usable_golds(golden_answers: Iterable[str]) -> list[str]:
    """Normalised gold answers, without the ones that normalise to the empty string."""
    return [norm for norm in (normalize_answer(gold) for gold in golden_answers) if norm]


def exact_match(prediction: str, golden_answers: Iterable[str]) -> bool:
    """True if the normalised prediction equals some non-empty normalised gold answer."""
    pred = normalize_answer(prediction)
    return any(pred == gold for gold in _usable_golds(golden_answers))


def _token_f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    common = Counter(pred_tokens) & Counter(gold_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(pred_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def f1(prediction: str, golden_answers: Iterable[str]) -> float:
    """SQuAD token F1 (bag of whitespace tokens after normalisation), best over the non-empty gold answers.

    0.0 when there is nothing to compare: no usable gold answer, or an empty normalised prediction.
    """
    pred_tokens = normalize_answer(prediction).split()
    golds = _usable_golds(golden_answers)
    if not pred_tokens or not golds:
        return 0.0
    return max(_token_f1(pred_tokens, gold.split()) for gold in golds)
