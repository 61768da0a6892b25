"""Retrieval quality: answer recall@k (DPR "top-k accuracy") and support recall@k (tiny world).

answer recall@k: share of questions for which at least one of the top-k passages contains a gold answer
under span_check (the rule pyserini and DPR report as top-k retrieval accuracy).
support recall@k: share of questions all of whose supporting passages (metadata.supporting_ids, known for
the tiny world) are in the top-k; for multi-hop questions this is the harder, more honest number.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from s3core.data.answers import span_check
from s3core.retrieval.base import DocStore, Retriever, SearchHit


def answer_recall(hits: Sequence[Sequence[SearchHit]], answers: Sequence[Sequence[str]], docs: DocStore, k: int) -> float:
    found = sum(any(span_check(docs.text(h.row), gold) for h in q_hits[:k]) for q_hits, gold in zip(hits, answers))
    return found / max(1, len(hits))


def support_recall(hits: Sequence[Sequence[SearchHit]], supporting_ids: Sequence[Sequence[str]], docs: DocStore, k: int) -> float:
    found = 0
    for q_hits, needed in zip(hits, supporting_ids):
        got = {docs.doc_id(h.row) for h in q_hits[:k]}
        found += bool(needed) and set(needed) <= got
    return found / max(1, len(hits))


def evaluate_retriever(
    retriever: Retriever, docs: DocStore, questions: list[dict], ks: Sequence[int] = (1, 5, 20), batch_size: int = 64
) -> dict[str, float]:
    """{"answer_recall@k": ..., "support_recall@k": ...} over question rows (question, golden_answers, metadata)."""
    depth = max(ks)
    hits: list[list[SearchHit]] = []
    for start in range(0, len(questions), batch_size):
        batch = questions[start : start + batch_size]
        hits.extend(retriever.search([q["question"] for q in batch], depth))
    answers = [q["golden_answers"] for q in questions]
    support = [json.loads(q["metadata"] or "{}").get("supporting_ids", []) for q in questions]
    metrics = {f"answer_recall@{k}": answer_recall(hits, answers, docs, k) for k in ks}
    if any(support):
        metrics.update({f"support_recall@{k}": support_recall(hits, support, docs, k) for k in ks})
    return metrics
