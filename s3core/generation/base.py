"""One interface for every generator backend (OpenAI-compatible endpoint, in-process transformers).

A backend answers chat conversations. `generate` takes many conversations at once and returns one reply
each, in order; backends batch and parallelise internally. Failures raise `GeneratorError` (after the
backend's own retries): a generator that is down must stop the stage, never turn into a score of 0. A reply
is a string, or None where the backend got no text at all (an HTTP reply with `content: null`); empty and
missing replies are counted by the scoring, which fails when most replies are non-answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}


class GeneratorError(RuntimeError):
    """The generator could not answer (unreachable, kept failing, or returned something unusable)."""


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int | None = 64  # None: no limit sent (the server's own; in-process backends cap it)
    temperature: float = 0.0  # 0 = greedy, the paper's generator setting
    top_p: float = 1.0


class ChatBackend(Protocol):
    name: str

    async def health(self) -> None:
        """Raise GeneratorError if the backend cannot serve requests right now."""
        ...

    async def generate(self, conversations: Sequence[Sequence[Message]], params: GenerationParams) -> list[str | None]:
        """One reply per conversation, in order (None: the reply held no text)."""
        ...
