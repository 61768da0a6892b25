"""The HTTP client under every remote generator backend (DESIGN.md section 2, "Generator"; section 3).

A backend that talks to a chat endpoint over HTTP says only what differs between APIs: the URL, the
headers, the request body and how to read the reply (`openai_backend.py`, `anthropic_backend.py`). The rest
is here, once, and visible:

- at most `concurrency` requests are in flight (an asyncio semaphore);
- each request has its own timeout;
- connection errors, timeouts, 408/409/425/429 and 5xx (Anthropic's 529 "overloaded" included) are retried
  with exponential backoff plus jitter; any other 4xx is a bug in the request and fails at once;
- after the last retry a `GeneratorError` names the endpoint, the model and the last error. A generator that
  is down stops the stage; it never becomes an empty answer (and so a reward of 0).

A reply with no text at all (`content: null`) is returned as None, an empty text as "": both are non-answers,
which `s3core.reward.precompute.check_answers` counts and refuses in bulk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx

from s3core.generation.base import GenerationParams, GeneratorError, Message
from s3core.retry import RetriesExhausted, Retryable, with_retries

RETRYABLE_STATUS = frozenset({408, 409, 425, 429})  # plus every 5xx


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUS or status >= 500


class HTTPChatBackend:
    """Concurrency, timeouts, retries and health probes of a chat endpoint; subclasses speak its API."""

    name = "http"
    start_hint = "is the server running?"

    def __init__(self, base_url: str, model: str, api_key: str | None = None, concurrency: int = 64,
                 timeout_s: float = 120.0, max_retries: int = 5, backoff_s: float = 0.5):
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.concurrency = concurrency

    # -- what an API defines -------------------------------------------------------------------------------
    def headers(self) -> dict[str, str]:
        raise NotImplementedError

    def chat_url(self) -> str:
        raise NotImplementedError

    def health_urls(self) -> list[str]:
        raise NotImplementedError

    def request_body(self, messages: Sequence[Message], params: GenerationParams) -> dict[str, Any]:
        raise NotImplementedError

    def reply_text(self, payload: Any) -> str | None:
        """The answer in a 200 reply: its text stripped, None where the reply holds no text."""
        raise NotImplementedError

    # -- the client ------------------------------------------------------------------------------------------
    def _client(self) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        return httpx.AsyncClient(headers=self.headers(), timeout=self.timeout_s, limits=limits)

    def _describe(self) -> str:
        return f"generator endpoint {self.base_url} (model {self.model!r})"

    async def health(self) -> None:
        """Raise GeneratorError unless one of the health URLs answers 200.

        Each probe gets its own connection: a server that fails one probe (transformers serve answers 500 on
        `/v1/models` when there is no Hugging Face cache) may drop the connection the next would reuse.
        """
        problems = []
        for url in self.health_urls():
            problem = await self._probe(url)
            if problem is None:
                return
            problems.append(problem)
        raise GeneratorError(f"{self._describe()} is not answering ({'; '.join(problems)}): {self.start_hint}")

    async def _probe(self, url: str) -> str | None:
        """None if GET url answers 200, else what went wrong."""
        async with httpx.AsyncClient(headers=self.headers(), timeout=min(self.timeout_s, 10.0)) as client:
            try:
                response = await client.get(url)
            except httpx.HTTPError as exc:
                return f"GET {url}: {type(exc).__name__}: {exc}"
        return None if response.status_code == 200 else f"GET {url}: HTTP {response.status_code}"

    async def generate(self, conversations: Sequence[Sequence[Message]], params: GenerationParams) -> list[str | None]:
        """One reply per conversation, in order; requests run concurrently up to the concurrency limit."""
        semaphore = asyncio.Semaphore(self.concurrency)
        async with self._client() as client:

            async def one(messages: Sequence[Message]) -> str | None:
                async with semaphore:
                    return await self._complete_with_retries(client, messages, params)

            return list(await asyncio.gather(*(one(messages) for messages in conversations)))

    async def _complete_with_retries(self, client: httpx.AsyncClient, messages: Sequence[Message],
                                     params: GenerationParams) -> str | None:
        try:
            return await with_retries(lambda: self._complete_once(client, messages, params), self.max_retries,
                                      self.backoff_s)
        except RetriesExhausted as exc:
            raise GeneratorError(f"{self._describe()} {exc}") from None

    async def _complete_once(self, client: httpx.AsyncClient, messages: Sequence[Message],
                             params: GenerationParams) -> str | None:
        url = self.chat_url()
        try:
            response = await client.post(url, json=self.request_body(messages, params))
        except (httpx.TransportError, httpx.TimeoutException) as exc:
            raise Retryable(f"{type(exc).__name__}: {exc}") from exc
        if is_retryable_status(response.status_code):
            raise Retryable(f"HTTP {response.status_code}: {response.text[:300]}")
        if response.status_code != 200:
            raise GeneratorError(f"{self._describe()} rejected the request: HTTP {response.status_code}: "
                                 f"{response.text[:500]}")
        try:
            payload = response.json()
        except ValueError as exc:
            raise GeneratorError(f"{self._describe()} sent non-JSON: {response.text[:300]}") from exc
        return self.reply_text(payload)
