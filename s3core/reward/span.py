"""span_check: does any gold answer occur as a contiguous token span of the prediction?

The DPR / pyserini "has_answers" rule (DESIGN.md section 2, GenAcc): normalise both sides (lowercase, drop
punctuation, drop the articles a/an/the, collapse whitespace), Unicode NFD, split into tokens that are
alphanumeric runs or single non-space characters, and look for the gold token sequence inside the
prediction's. Deliberate fix of the public s3 code: a gold answer that normalises to nothing (e.g. "the",
"...") never matches; there an empty sequence matched every prediction.
"""

from __future__ import annotations

import re
import string
import unicodedata
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
