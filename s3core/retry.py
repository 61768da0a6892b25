"""Retries with exponential backoff and jitter, shared by every HTTP client of the project
(the retrieval client, the OpenAI-compatible generator backend).

A call signals "worth another try" by raising `Retryable`; anything else propagates at once. After the last
attempt, `RetriesExhausted` carries the last error so each client can raise its own, specific error.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class Retryable(Exception):
    """A failure worth another try (connection error, timeout, 429, 5xx)."""


class RetriesExhausted(Exception):
    def __init__(self, attempts: int, last_error: str):
        super().__init__(f"failed after {attempts} attempts; last error: {last_error}")
        self.attempts = attempts
        self.last_error = last_error


def backoff_delay(attempt: int, base_s: float) -> float:
    """Exponential backoff with jitter: uniform in [base * 2^attempt / 2, base * 2^attempt]."""
    ceiling = base_s * (2**attempt)
    return ceiling / 2 + random.uniform(0.0, ceiling / 2)


async def with_retries(call: Callable[[], Awaitable[T]], max_retries: int, backoff_s: float) -> T:
    """`call()` up to max_retries + 1 times, sleeping backoff_delay between tries that raised Retryable."""
    last_error = "no attempt made"
    for attempt in range(max_retries + 1):
        if attempt:
            await asyncio.sleep(backoff_delay(attempt - 1, backoff_s))
        try:
            return await call()
        except Retryable as err:
            last_error = str(err)
    raise RetriesExhausted(max_retries + 1, last_error)
