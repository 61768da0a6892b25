"""What a rollout policy is asked and what it answers (no torch here, so the pipeline imports stay light)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class SamplingSettings:
    max_new_tokens: int
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    stop_strings: tuple[str, ...] = ()
    seed: int = 0


@dataclass(frozen=True)
class PolicyOutput:
    tokens: list[int]      # the new tokens, ending at EOS / a stop string / the length limit
    logprobs: list[float]  # one per token: log-prob under the sampling distribution (see module docstring)
    finish: str            # eos | stop | length


class Policy(Protocol):
    tokenizer: object

    def continue_sequences(self, sequences: Sequence[Sequence[int]], settings: SamplingSettings) -> list[PolicyOutput]: ...
