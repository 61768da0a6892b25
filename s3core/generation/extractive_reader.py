"""The extractive reader: question + passages -> the answer span (or nothing), as a chat "generator".

A BERT-style encoder with a start/end span head (`AutoModelForQuestionAnswering`, saved as an ordinary
Hugging Face folder). Input pair: the question (the chat's last user message) and the context (its system
messages, i.e. the generator prompt with the numbered passages, exactly what an LLM generator would read).
The answer is the best-scoring span of at most `max_answer_tokens` tokens inside the context, or "" when the
no-answer score ([CLS]) beats every span, which scores 0 like any wrong answer. Contexts longer than
`max_length` are cut at the end (the first passages are the ones kept), as an LLM with a short window would.

Deliberate deviation from an LLM generator: it cannot answer from memory (no context, no answer), and it
does not judge (configs that use it set reward.use_judge: false).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

import torch

from s3core.generation.base import Message

READER_ARCHITECTURE_SUFFIX = "ForQuestionAnswering"


def is_extractive_reader(model_dir: str | Path) -> bool:
    """True for a local folder holding a question-answering (span) model."""
    config = Path(model_dir) / "config.json"
    if not config.is_file():
        return False
    architectures = json.loads(config.read_text()).get("architectures") or []
    return any(a.endswith(READER_ARCHITECTURE_SUFFIX) for a in architectures)


def chat_parts(messages: Sequence[Message]) -> tuple[str, str]:
    """(question, context) of a chat: the last user message, and the system messages joined."""
    users = [m["content"] for m in messages if m.get("role") == "user"]
    if not users:
        raise ValueError("a chat for the reader needs a user message (the question)")
    context = "\n".join(m["content"] for m in messages if m.get("role") == "system")
    return users[-1], context


def best_span(start_logits: torch.Tensor, end_logits: torch.Tensor, context_mask: torch.Tensor,
              max_answer_tokens: int) -> tuple[int, int] | None:
    """The (start, end) token pair maximising start + end logits with start <= end < start + max_answer_tokens,
    both inside the context; None when position 0 ([CLS], "no answer") scores higher."""
    # start_logits, end_logits, context_mask: [T]
    scores = start_logits[:, None] + end_logits[None, :]  # [T, T]
    positions = torch.arange(scores.shape[0])
    width = positions[None, :] - positions[:, None]  # [T, T]: end - start
    allowed = (width >= 0) & (width < max_answer_tokens) & context_mask[:, None] & context_mask[None, :]
    scores = scores.masked_fill(~allowed, float("-inf"))
    flat = int(torch.argmax(scores))
    start, end = divmod(flat, scores.shape[1])
    if not torch.isfinite(scores[start, end]) or scores[start, end] <= start_logits[0] + end_logits[0]:
        return None
    return start, end


class ExtractiveReader:
    """Load a span model folder and answer (question, context) pairs in batches."""

    def __init__(self, model_dir: str | Path, device: str = "cpu", max_length: int = 384,
                 max_answer_tokens: int = 12, batch_size: int = 32):
        from transformers import AutoModelForQuestionAnswering, AutoTokenizer

        self.model_dir = str(model_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self.model = AutoModelForQuestionAnswering.from_pretrained(self.model_dir).to(device).eval()
        self.device, self.max_length = device, max_length
        self.max_answer_tokens, self.batch_size = max_answer_tokens, batch_size
        self._lock = threading.Lock()  # one forward at a time: torch already uses every core

    def answer(self, questions: Sequence[str], contexts: Sequence[str]) -> list[str]:
        out: list[str] = []
        for start in range(0, len(questions), self.batch_size):
            out += self._answer_batch(questions[start:start + self.batch_size], contexts[start:start + self.batch_size])
        return out

    def answer_chats(self, chats: Sequence[Sequence[Message]]) -> list[str]:
        parts = [chat_parts(chat) for chat in chats]
        return self.answer([q for q, _ in parts], [c for _, c in parts])

    def _answer_batch(self, questions: Sequence[str], contexts: Sequence[str]) -> list[str]:
        if not questions:
            return []
        enc = self.tokenizer(list(questions), list(contexts), truncation="only_second", max_length=self.max_length,
                             padding=True, return_offsets_mapping=True, return_tensors="pt")
        offsets = enc.pop("offset_mapping")  # [B, T, 2]
        with self._lock, torch.no_grad():
            logits = self.model(**{k: v.to(self.device) for k, v in enc.items()})
        answers = []
        for i, context in enumerate(contexts):
            sequence_ids = enc.sequence_ids(i)
            in_context = torch.tensor([s == 1 for s in sequence_ids])  # [T]
            span = best_span(logits.start_logits[i].cpu(), logits.end_logits[i].cpu(), in_context,
                             self.max_answer_tokens)
            if span is None:
                answers.append("")
                continue
            answers.append(context[int(offsets[i, span[0], 0]):int(offsets[i, span[1], 1])].strip())
        return answers
