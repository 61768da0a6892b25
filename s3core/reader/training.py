"""Supervised training of the extractive reader on a QA set with supporting passages (issue 8).

Each training example is one train question with a context built the way the generator will see it: the
`generator_system` prompt around numbered passages (`Doc i (Title: T) text`). Contexts are drawn per step:
- with every supporting passage (plus random passages up to `docs_per_context`), in random order;
- with one supporting passage only (`partial_rate`, multi-hop questions): a half-found chain, which
  teaches the reader to answer from the passage that holds the answer, not from the bridge;
- with random passages only (`no_answer_rate`): the target is "no answer" ([CLS]).
The target span is the first occurrence of a gold answer in the context (case-insensitive); a context
without one is a no-answer example. The encoder starts from the tiny world's retrieval encoder (its
tokenizer and weights); the span head is new.

The questions need `supporting_ids` in their metadata (the tiny world writes them); a set without them
cannot train a reader and is refused with that message.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from s3core.agent.context import format_docs
from s3core.retrieval.base import DocStore
from s3core.reward.precompute import generator_messages


@dataclass(frozen=True)
class ReaderQuestion:
    question: str
    golden_answers: list[str]
    supporting_rows: list[int]
    qtype: str


def reader_questions(rows: Sequence[dict[str, Any]], docs: DocStore, source: str) -> list[ReaderQuestion]:
    """Questions rows (with metadata JSON) -> what reader training and evaluation need."""
    out = []
    for row in rows:
        meta = json.loads(row.get("metadata") or "{}")
        if not meta.get("supporting_ids"):
            raise ValueError(f"{source}: question {row['id']!r} has no metadata.supporting_ids; the reader and the "
                             "warm-start oracle need questions whose supporting passages are known (the tiny world's)")
        out.append(ReaderQuestion(row["question"], list(row["golden_answers"]),
                                  [docs.row_of(str(d)) for d in meta["supporting_ids"]], meta.get("type", "")))
    return out


def context_text(docs: DocStore, rows: Sequence[int], question: str) -> str:
    """The system message a generator gets for these passages (what the reader reads)."""
    return generator_messages(format_docs(docs, rows), question)[0]["content"]


def sample_context_rows(q: ReaderQuestion, rng: random.Random, partial_rate: float,
                        no_answer_rate: float) -> list[int]:
    draw = rng.random()
    if draw < no_answer_rate:
        rows = []
    elif draw < no_answer_rate + partial_rate and len(q.supporting_rows) > 1:
        rows = [rng.choice(q.supporting_rows)]
    else:
        rows = list(q.supporting_rows)
    return rows


def answer_char_span(context: str, golden_answers: Sequence[str]) -> tuple[int, int] | None:
    lower = context.lower()
    for gold in golden_answers:
        at = lower.find(gold.lower()) if gold.strip() else -1
        if at >= 0:
            return at, at + len(gold)
    return None


def encode_examples(tokenizer, questions: Sequence[str], contexts: Sequence[str],
                    answers: Sequence[Sequence[str]], max_length: int) -> dict[str, torch.Tensor]:
    """Tokenised pairs with start/end token targets; (0, 0) = no answer (also when truncation cut it off)."""
    enc = tokenizer(list(questions), list(contexts), truncation="only_second", max_length=max_length, padding=True,
                    return_offsets_mapping=True, return_tensors="pt")
    offsets = enc.pop("offset_mapping")  # [B, T, 2]
    starts, ends = [], []
    for i, (context, golds) in enumerate(zip(contexts, answers)):
        span = answer_char_span(context, golds)
        tokens = []
        if span is not None:
            seq = enc.sequence_ids(i)
            tokens = [t for t, sid in enumerate(seq)
                      if sid == 1 and offsets[i, t, 0] < span[1] and offsets[i, t, 1] > span[0]]
        starts.append(tokens[0] if tokens else 0)
        ends.append(tokens[-1] if tokens else 0)
    enc["start_positions"] = torch.tensor(starts)  # [B]
    enc["end_positions"] = torch.tensor(ends)  # [B]
    return dict(enc)


def train_reader(model, tokenizer, questions: Sequence[ReaderQuestion], docs: DocStore, cfg,
                 progress: Callable[[int, int, str], None]) -> list[dict[str, float]]:
    """`cfg.steps` AdamW steps of `cfg.batch_size` freshly drawn examples; returns the loss curve."""
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup_steps)))
    model.train()
    curve, started = [], time.perf_counter()
    for step in range(1, cfg.steps + 1):
        batch = [rng.choice(questions) for _ in range(cfg.batch_size)]
        contexts = []
        for q in batch:
            rows = sample_context_rows(q, rng, cfg.partial_rate, cfg.no_answer_rate)
            fillers = [r for r in rng.sample(range(len(docs)), cfg.docs_per_context) if r not in rows]
            rows = rows + fillers[:max(0, cfg.docs_per_context - len(rows))]
            rng.shuffle(rows)
            contexts.append(context_text(docs, rows, q.question))
        inputs = encode_examples(tokenizer, [q.question for q in batch], contexts, [q.golden_answers for q in batch],
                                 cfg.max_length)
        loss = model(**inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if step % cfg.log_every == 0 or step == cfg.steps:
            value = loss.item()
            curve.append({"step": step, "loss": value})
            rate = step * cfg.batch_size / (time.perf_counter() - started)
            progress(step, cfg.steps, f"reader step {step}/{cfg.steps}: loss {value:.3f}, {rate:.1f} examples/s")
    model.eval()
    return curve
