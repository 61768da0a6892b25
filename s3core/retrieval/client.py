"""Async client of the retrieval server, used by every later stage (precompute, rollouts, baselines).

Splits large query lists into requests of `batch_size`, sends up to `concurrency` at once, retries
connection errors, timeouts, 429 and 5xx with exponential backoff and jitter, and never retries a 4xx
(the server's message says what to fix, and the client raises it as `RetrievalRequestError`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

from s3core.retry import RetriesExhausted, Retryable, with_retries


class RetrievalError(RuntimeError):
    """The server could not be reached or kept failing after all retries."""


class RetrievalRequestError(RetrievalError):
    """The server rejected the request (4xx); retrying would not help."""


@dataclass(frozen=True)
class RetrievedDoc:
    id: str
    contents: str
    score: float | None = None

    @property
    def title(self) -> str:
        first, _, _ = self.contents.partition("\n")
        return first.strip().strip('"')

    @property
    def text(self) -> str:
        return self.contents.partition("\n")[2]


def _parse_doc(item: dict) -> RetrievedDoc:
    if "document" in item:
        return RetrievedDoc(str(item["document"]["id"]), item["document"]["contents"], item.get("score"))
    return RetrievedDoc(str(item["id"]), item["contents"])


class RetrievalClient:
    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 4,
        batch_size: int = 64,
        concurrency: int = 8,
        backoff_s: float = 0.5,
    ):
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.backoff_s = backoff_s

    async def health(self) -> dict:
        async with httpx.AsyncClient(timeout=self.timeout_s) as http:
            try:
                response = await http.get(f"{self.base_url}/health", headers=self.headers)
            except httpx.HTTPError as err:
                raise RetrievalError(f"retrieval server at {self.base_url} is not reachable ({err!r}); is it running?") from err
        if response.status_code != 200:
            raise RetrievalError(f"retrieval server at {self.base_url} answered /health with HTTP {response.status_code}")
        return response.json()

    async def search(self, queries: list[str], topk: int, index: str | None = None) -> list[list[RetrievedDoc]]:
        """Top-k documents (with scores) for each query, in query order."""
        batches = [queries[i : i + self.batch_size] for i in range(0, len(queries), self.batch_size)]
        limit = asyncio.Semaphore(self.concurrency)
        async with httpx.AsyncClient(timeout=self.timeout_s, limits=httpx.Limits(max_connections=self.concurrency)) as http:

            async def one(batch: list[str]) -> list[list[RetrievedDoc]]:
                async with limit:
                    return await self._post(http, batch, topk, index)

            results = await asyncio.gather(*(one(b) for b in batches))
        return [docs for batch in results for docs in batch]

    def search_sync(self, queries: list[str], topk: int, index: str | None = None) -> list[list[RetrievedDoc]]:
        return asyncio.run(self.search(queries, topk, index))

    async def _post(self, http: httpx.AsyncClient, queries: list[str], topk: int, index: str | None) -> list[list[RetrievedDoc]]:
        body = {"queries": queries, "topk": topk, "return_scores": True}
        if index is not None:
            body["index"] = index

        async def once() -> list[list[RetrievedDoc]]:
            try:
                response = await http.post(f"{self.base_url}/retrieve", json=body, headers=self.headers)
            except (httpx.TransportError, httpx.TimeoutException) as err:
                raise Retryable(repr(err)) from err
            if response.status_code == 200:
                return [[_parse_doc(item) for item in docs] for docs in response.json()["result"]]
            if 400 <= response.status_code < 500 and response.status_code != 429:
                raise RetrievalRequestError(f"retrieval server rejected the request (HTTP {response.status_code}): {_detail(response)}")
            raise Retryable(f"HTTP {response.status_code}: {_detail(response)}")

        try:
            return await with_retries(once, self.max_retries, self.backoff_s)
        except RetriesExhausted as exc:
            raise RetrievalError(f"retrieval at {self.base_url} {exc}") from None


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text[:500]
