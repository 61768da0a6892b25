"""The public code's sampled evaluation mode: at most N questions per QA set, drawn with a fixed seed.

Deliberate deviation: the public code sampled with pandas (`DataFrame.sample(n, random_state=42)`); we draw
the same number of questions with Python's `random.Random(seed).sample` and keep the set's own order. The
sample is as reproducible, but not the same questions, so sampled-mode numbers are comparable in spirit
only; the paper's tables use the full test sets (the default, `max_questions_per_set: null`).
"""

from __future__ import annotations

import random
from typing import TypeVar

T = TypeVar("T")


def sample_questions(rows: list[T], limit: int | None, seed: int) -> list[T]:
    """`rows` when `limit` is None or not below the set's size; else `limit` of them, in their original order."""
    if limit is None or len(rows) <= limit:
        return rows
    keep = sorted(random.Random(seed).sample(range(len(rows)), limit))
    return [rows[i] for i in keep]
