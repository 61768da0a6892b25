"""The retrieval server: the s3 / Search-R1 `/retrieve` API over our indexes, with micro-batching.

DESIGN.md section 2 ("Retrieval HTTP API") and section 3 ("Serving parts"). Existing clients work unchanged:

    POST /retrieve {"queries": [...], "topk": k, "return_scores": true}
      -> {"result": [[{"document": {"id", "contents"}, "score": s}, ...], ...]}     (best first)
      -> {"result": [[{"id", "contents"}, ...], ...]}                                (return_scores false)
    GET /health -> {"status": "ok", "indexes": [...], "documents": n, "pid": p}

Extensions: an optional `"index"` field picks one of the served indexes by name (default: the first), and
an optional bearer token. Concurrent requests are micro-batched per index: a collector waits up to
`batch_wait_ms` (or until `max_batch_queries` queries are queued), runs one search for all of them on a
worker thread, and hands each request its slice; that is where throughput comes from.

Failure model (docs/ARCHITECTURE.md): malformed requests, text that is not valid Unicode (a lone surrogate
such as `"\ud800"` is valid JSON but no text) or holds control characters included, get a 4xx that names the
field and what to change; they never reach the index. If a batch's search still fails, the batch is split
and searched again until the failure is pinned to the requests that cause it: those get a 500 naming the
error, every other request of the batch its results. No exception escapes to the HTTP layer, so a failure
never drops the connections of other requests.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import time
import unicodedata
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from s3core.retrieval.base import DocStore, Retriever, SearchHit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerLimits:
    max_queries_per_request: int = 512
    max_topk: int = 100
    max_query_chars: int = 2048
    batch_wait_ms: float = 5.0
    max_batch_queries: int = 512
    token: str | None = None


class RetrieveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    queries: list[str] = Field(description="query strings")
    topk: int = Field(default=3, description="passages per query")
    return_scores: bool = Field(default=False, description="wrap each document with its score")
    index: str | None = Field(default=None, description="which served index (default: the first)")


@dataclass
class _Pending:
    queries: list[str]
    topk: int
    future: asyncio.Future


@dataclass
class MicroBatcher:
    """Collects concurrent searches against one retriever and runs them as one batch on a worker thread."""

    retriever: Retriever
    wait_s: float
    max_queries: int
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=1))
    batches: int = 0
    queries: int = 0

    async def search(self, queries: list[str], topk: int) -> list[list[SearchHit]]:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(_Pending(queries, topk, future))
        return await future

    async def run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            size = len(batch[0].queries)
            deadline = time.monotonic() + self.wait_s
            while size < self.max_queries and (remaining := deadline - time.monotonic()) > 0:
                try:
                    item = await asyncio.wait_for(self.queue.get(), timeout=remaining)
                except TimeoutError:
                    break
                batch.append(item)
                size += len(item.queries)
            await self._run_batch(batch)

    async def _run_batch(self, batch: list[_Pending]) -> None:
        try:
            hits = await self._search(batch)
        except Exception as err:  # noqa: BLE001 - isolate the failure, keep the batcher alive
            await self._isolate_failure(batch, err)
            return
        self._deliver(batch, hits)

    async def _search(self, batch: list[_Pending]) -> list[list[SearchHit]]:
        queries = [q for item in batch for q in item.queries]
        depth = max(item.topk for item in batch)
        hits = await asyncio.get_running_loop().run_in_executor(self.executor, self.retriever.search, queries, depth)
        self.batches += 1
        self.queries += len(queries)
        return hits

    async def _isolate_failure(self, batch: list[_Pending], err: Exception) -> None:
        """Search the halves of a failed batch again, down to the single requests that fail: only those get
        the error, every other request its results."""
        if len(batch) == 1:
            log.error("search of %d queries failed: %r", len(batch[0].queries), err)
            if not batch[0].future.done():
                batch[0].future.set_exception(SearchFailed(f"{type(err).__name__}: {err}"[:300]))
            return
        middle = len(batch) // 2
        for half in (batch[:middle], batch[middle:]):
            await self._run_batch(half)

    @staticmethod
    def _deliver(batch: list[_Pending], hits: list[list[SearchHit]]) -> None:
        offset = 0
        for item in batch:
            part = [h[: item.topk] for h in hits[offset : offset + len(item.queries)]]
            offset += len(item.queries)
            if not item.future.done():
                item.future.set_result(part)


class SearchFailed(RuntimeError):
    """The index failed on this request's queries (after its batch was split to find them)."""


class SafeJSONResponse(JSONResponse):
    """JSON that always encodes: text that cannot be UTF-8 (a lone surrogate) is written as a \\u escape
    instead of crashing the response (and the connection with it)."""

    def render(self, content) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


class BearerToken:
    """ASGI middleware: every path but `open_paths` needs `Authorization: Bearer <token>`, checked before the
    body is read, in constant time (hmac.compare_digest)."""

    def __init__(self, app, token: str, open_paths: tuple[str, ...] = ()):
        self.app, self.expected, self.open_paths = app, f"Bearer {token}".encode(), open_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] not in self.open_paths:
            sent = dict(scope.get("headers", [])).get(b"authorization", b"")
            if not hmac.compare_digest(sent, self.expected):
                response = SafeJSONResponse({"detail": "missing or wrong bearer token: send 'Authorization: Bearer <token>'"},
                                            status_code=401)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _format(hits: Sequence[Sequence[SearchHit]], docs: DocStore, return_scores: bool) -> list[list[dict]]:
    if return_scores:
        return [[{"document": docs.document(h.row), "score": h.score} for h in q] for q in hits]
    return [[docs.document(h.row) for h in q] for q in hits]


def text_problem(text: str) -> str | None:
    """Why a string is not query text (None if it is): a lone surrogate (valid in JSON, not Unicode text) or a
    control character. The message names the position, never echoes the text (it may not encode)."""
    for position, char in enumerate(text):
        if "\ud800" <= char <= "\udfff":
            return (f"holds a lone surrogate (U+{ord(char):04X} at position {position}), which is not valid Unicode "
                    "text: send the query as UTF-8 text")
        if unicodedata.category(char) == "Cc" and char not in "\t\n\r":
            return f"holds the control character U+{ord(char):04X} at position {position}: remove it"
    return None


def _validate(request: RetrieveRequest, limits: ServerLimits, names: Sequence[str]) -> str:
    if not request.queries:
        raise HTTPException(422, "queries is empty: send at least one query string")
    if len(request.queries) > limits.max_queries_per_request:
        raise HTTPException(413, f"{len(request.queries)} queries in one request; the limit is {limits.max_queries_per_request}: split the request")
    if not 1 <= request.topk <= limits.max_topk:
        raise HTTPException(422, f"topk must be between 1 and {limits.max_topk}, got {request.topk}")
    for i, query in enumerate(request.queries):
        if not query.strip():
            raise HTTPException(422, f"queries[{i}] is empty or blank")
        if len(query) > limits.max_query_chars:
            raise HTTPException(422, f"queries[{i}] has {len(query)} characters; the limit is {limits.max_query_chars}")
        if problem := text_problem(query):
            raise HTTPException(422, f"queries[{i}] {problem}")
    name = request.index or names[0]
    if name not in names:
        raise HTTPException(404, f"no index named {name!r}; this server has {list(names)}")
    return name


def create_app(retrievers: dict[str, Retriever], docs: DocStore, limits: ServerLimits = ServerLimits()) -> FastAPI:
    """The FastAPI app serving `retrievers` (by name, the first is the default) over `docs`."""
    if not retrievers:
        raise ValueError("the retrieval server needs at least one index")
    names = list(retrievers)
    batchers = {name: MicroBatcher(r, limits.batch_wait_ms / 1000.0, limits.max_batch_queries) for name, r in retrievers.items()}

    async def lifespan(app: FastAPI):
        tasks = [asyncio.create_task(b.run()) for b in batchers.values()]
        yield
        for task in tasks:
            task.cancel()
        for b in batchers.values():
            b.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="s3 retrieval server", lifespan=lifespan, default_response_class=SafeJSONResponse)
    app.state.batchers = batchers
    if limits.token:
        app.add_middleware(BearerToken, token=limits.token, open_paths=("/health",))

    @app.exception_handler(RequestValidationError)
    async def explain_validation(request: Request, err: RequestValidationError):
        problems = [f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in err.errors()]
        return SafeJSONResponse({"detail": "malformed request: " + "; ".join(problems) + ' (expected {"queries": [str], "topk": int, "return_scores": bool})'}, status_code=422)

    @app.exception_handler(SearchFailed)
    async def explain_search_failure(request: Request, err: SearchFailed):
        return SafeJSONResponse({"detail": f"the search failed for this request's queries: {err}"}, status_code=500)

    @app.exception_handler(Exception)
    async def contain_bugs(request: Request, err: Exception):
        log.exception("unexpected error on %s", request.url.path)
        return SafeJSONResponse({"detail": f"internal error: {type(err).__name__}"}, status_code=500)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "indexes": names, "documents": len(docs), "pid": os.getpid(),
                "batches": {n: b.batches for n, b in batchers.items()}, "queries": {n: b.queries for n, b in batchers.items()}}

    @app.post("/retrieve")
    async def retrieve(request: RetrieveRequest) -> dict:
        name = _validate(request, limits, names)
        hits = await batchers[name].search(request.queries, request.topk)
        return {"result": _format(hits, docs, request.return_scores)}

    return app
