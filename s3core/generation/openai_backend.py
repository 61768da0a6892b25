"""Generator backend for any OpenAI-compatible chat endpoint (DESIGN.md section 2, "Generator"; section 3).

In production the frozen generator is a vLLM server; on a machine without vLLM it can be `transformers serve`
(see `local_server.py`). Both speak `/v1/chat/completions`, so one client serves them all. The client is
plain httpx rather than the `openai` package, so that retries, timeouts and the concurrency limit are ours
and visible here:

- at most `concurrency` requests are in flight (an asyncio semaphore);
- each request has its own timeout;
- connection errors, timeouts, 429 and 5xx are retried with exponential backoff plus jitter; any other 4xx
  is a bug in the request and fails at once;
- after the last retry a `GeneratorError` names the endpoint, the model and the last error. A generator that
  is down stops the stage; it never becomes an empty answer (and so a reward of 0).

Temperature 0 is sent as greedy decoding (the paper's generator setting).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx

from s3core.generation.base import GenerationParams, GeneratorError, Message
from s3core.retry import RetriesExhausted, Retryable, with_retries

RETRYABLE_STATUS = frozenset({408, 409, 425, 429})  # plus every 5xx

START_HINT = (
    "is the server running? start it with e.g. `vllm serve MODEL --port 8001` or "
    "`transformers serve MODEL_DIR --host 127.0.0.1 --port 8001` (base_url http://127.0.0.1:8001/v1)"
)


def _is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUS or status >= 500


def _request_body(model: str, messages: Sequence[Message], params: GenerationParams) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": [dict(m) for m in messages],
        "max_tokens": params.max_new_tokens,
        "temperature": params.temperature,
        "stream": False,
    }
    if params.temperature > 0:
        body["top_p"] = params.top_p
    return body


def _reply_text(payload: Any) -> str:
    """`choices[0].message.content`, stripped. A malformed reply (no content field) is a GeneratorError; an
    empty content string is the model's (wrong) answer and is returned as "", as the transformers backend does."""
    try:
        content = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise GeneratorError(f"reply has no choices[0].message.content: {str(payload)[:300]}") from exc
    if content is None:  # some servers send null content for an empty completion
        return ""
    if not isinstance(content, str):
        raise GeneratorError(f"reply content is not a string: {str(payload)[:300]}")
    return content.strip()


def _server_root(base_url: str) -> str:
    """`http://host:port/v1` -> `http://host:port` (where `/health` lives)."""
    root = base_url.rstrip("/")
    return root.removesuffix("/v1")


class OpenAIChatBackend:
    """Chat completions from an OpenAI-compatible HTTP endpoint (vLLM, `transformers serve`, hosted APIs)."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        concurrency: int = 64,
        timeout_s: float = 120.0,
        max_retries: int = 5,
        backoff_s: float = 0.5,
    ):
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.concurrency = concurrency
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def _client(self) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        return httpx.AsyncClient(headers=self._headers, timeout=self.timeout_s, limits=limits)

    async def health(self) -> None:
        """Raise GeneratorError unless `{root}/health` or `{base}/models` answers 200.

        Each probe gets its own connection: a server that fails one probe (transformers serve answers 500 on
        `/v1/models` when there is no Hugging Face cache) may drop the connection the next would reuse.
        """
        urls = [f"{_server_root(self.base_url)}/health", f"{self.base_url}/models"]
        problems = []
        for url in urls:
            problem = await self._probe(url)
            if problem is None:
                return
            problems.append(problem)
        raise GeneratorError(
            f"generator endpoint {self.base_url} (model {self.model!r}) is not answering ({'; '.join(problems)}): "
            f"{START_HINT}"
        )

    async def _probe(self, url: str) -> str | None:
        """None if GET url answers 200, else what went wrong."""
        async with httpx.AsyncClient(headers=self._headers, timeout=min(self.timeout_s, 10.0)) as client:
            try:
                response = await client.get(url)
            except httpx.HTTPError as exc:
                return f"GET {url}: {type(exc).__name__}: {exc}"
        return None if response.status_code == 200 else f"GET {url}: HTTP {response.status_code}"

    async def generate(self, conversations: Sequence[Sequence[Message]], params: GenerationParams) -> list[str]:
        """One reply per conversation, in order; requests run concurrently up to the concurrency limit."""
        semaphore = asyncio.Semaphore(self.concurrency)
        async with self._client() as client:

            async def one(messages: Sequence[Message]) -> str:
                async with semaphore:
                    return await self._complete_with_retries(client, messages, params)

            return list(await asyncio.gather(*(one(messages) for messages in conversations)))

    async def _complete_with_retries(
        self, client: httpx.AsyncClient, messages: Sequence[Message], params: GenerationParams
    ) -> str:
        try:
            return await with_retries(lambda: self._complete_once(client, messages, params), self.max_retries, self.backoff_s)
        except RetriesExhausted as exc:
            raise GeneratorError(f"generator endpoint {self.base_url} (model {self.model!r}) {exc}") from None

    async def _complete_once(
        self, client: httpx.AsyncClient, messages: Sequence[Message], params: GenerationParams
    ) -> str:
        url = f"{self.base_url}/chat/completions"
        try:
            response = await client.post(url, json=_request_body(self.model, messages, params))
        except (httpx.TransportError, httpx.TimeoutException) as exc:
            raise Retryable(f"{type(exc).__name__}: {exc}") from exc
        if _is_retryable_status(response.status_code):
            raise Retryable(f"HTTP {response.status_code}: {response.text[:300]}")
        if response.status_code != 200:
            raise GeneratorError(
                f"generator endpoint {self.base_url} (model {self.model!r}) rejected the request: "
                f"HTTP {response.status_code}: {response.text[:500]}"
            )
        try:
            payload = response.json()
        except ValueError as exc:
            raise GeneratorError(f"generator endpoint {self.base_url} sent non-JSON: {response.text[:300]}") from exc
        return _reply_text(payload)
