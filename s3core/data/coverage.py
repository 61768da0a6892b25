"""Answer coverage (issue 21): which questions have a gold answer anywhere in the corpus at all.

Over a small real corpus most questions of a general QA set cannot be answered from it (about 16% of NQ
test has an answer in MiniLM's top 5 over 10k Wikipedia summaries), and a question no passage answers
only adds noise to the reward and the evaluation. A question is *answerable* when some passage contains
one of its gold answers by span_check's rule (data/answers.py: normalised tokens, contiguous span), the
passage read as "title text". The `answerable` stage keeps those questions (questions.answerable_only) and
reports the share per QA set.

The corpus is tokenised once per process and held in memory with an inverted index (token -> passages),
so each gold answer is checked only against the passages that hold its rarest token: seconds for 10^4
passages and 10^4 questions; a 21M-passage corpus needs another method (a BM25 pass), not this one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from s3core.data.answers import answer_tokens, contains_span


class CorpusTokens:
    """Every passage's answer tokens and an inverted index over them."""

    def __init__(self, texts: Iterable[str]):
        self.tokens: list[list[str]] = []
        self.postings: dict[str, list[int]] = {}
        for row, text in enumerate(texts):
            tokens = answer_tokens(text)
            self.tokens.append(tokens)
            for token in set(tokens):
                self.postings.setdefault(token, []).append(row)

    def passages_with(self, answer: str, limit: int = 1) -> list[int]:
        """Rows of up to `limit` passages that contain `answer` as a token span."""
        needle = answer_tokens(answer)
        if not needle or any(token not in self.postings for token in needle):
            return []
        rarest = min(set(needle), key=lambda token: len(self.postings[token]))
        found = []
        for row in self.postings[rarest]:
            if contains_span(self.tokens[row], needle):
                found.append(row)
                if len(found) >= limit:
                    break
        return found

    def answerable(self, golden_answers: Sequence[str]) -> bool:
        return any(self.passages_with(answer) for answer in golden_answers)


_TOKENISED: dict[tuple[str, ...], CorpusTokens] = {}


def corpus_tokens(identity: tuple[str, ...], load_texts: Callable[[], Iterable[str]]) -> CorpusTokens:
    """One tokenisation per corpus (named by its artifacts' content hashes) and process, shared by every QA
    set's stage; only the newest corpus is kept."""
    if identity not in _TOKENISED:
        _TOKENISED.clear()
        _TOKENISED[identity] = CorpusTokens(load_texts())
    return _TOKENISED[identity]
