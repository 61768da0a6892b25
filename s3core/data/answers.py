"""Matching a generated answer against the gold answers (DESIGN.md section 2, GenAcc): span_check, exact
match and token F1. Pure text functions, used by the reward, retrieval recall, the reader and the report.

span_check is the DPR / pyserini "has_answers" rule: normalise both sides (lowercase, drop punctuation, drop
the articles a/an/the, collapse whitespace), Unicode NFD, split into tokens that are alphanumeric runs or
single non-space characters, and look for the gold token sequence inside the prediction's. Exact match and
token F1 are reported beside GenAcc and never feed the reward; they use the same normalisation and take the
best score over the gold answers.

Deliberate fix of the public s3 code, in all three: a gold answer that normalises to nothing ("the", "...")
never matches; there an empty sequence matched every prediction.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence

import regex

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)
# DPR's SimpleTokenizer: runs of letters, digits and combining marks, or any single other visible char.
_TOKEN = regex.compile(r"[\p{L}\p{N}\p{M}]+|[^\p{Z}\p{C}]")


def normalize_answer(text: str) -> str:
    """SQuAD-style normalisation: lowercase, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def answer_tokens(text: str) -> list[str]:
    """Normalised, NFD-decomposed tokens: alphanumeric runs or single non-space characters."""
    return _TOKEN.findall(unicodedata.normalize("NFD", normalize_answer(text)))


def contains_span(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    if not needle or len(needle) > len(haystack):
        return False
    width = len(needle)
    first = needle[0]
    return any(haystack[i] == first and list(haystack[i : i + width]) == list(needle) for i in range(len(haystack) - width + 1))


def span_check(prediction: str, golden_answers: Iterable[str]) -> bool:
    """True if any non-empty normalised gold answer is a contiguous token span of the prediction."""
    tokens = answer_tokens(prediction)
    return any(contains_span(tokens, answer_tokens(gold)) for gold in golden_answers)



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
