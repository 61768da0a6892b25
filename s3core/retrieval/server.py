"""The retrieval server: the s3 / Search-R1 `/retrieve` API over our indexes, with micro-batching.

DESIGN.md section 2 ("Retrieval HTTP API") and section 3 ("Serving parts"). Existing clients work unchanged:

    POST /retrieve {"queries": [...], "topk": k, "return_scores": true}
      -> {"result": [[{"document": {"id", "contents"}, "score": s}, ...], ...]}     (best first)
      -> {"result": [[{"id", "contents"}, ...], ...]}                                (return_scores false)
    GET /health -> {"status": "ok", "indexes": [...], "documents": n}

Extensions: an optional `"index"` field picks one of the served indexes by name (default: the first), and
an optional bearer token. Concurrent requests are micro-batched per index: a collector waits up to
`batch_wait_ms` (or until `max_batch_queries` queries are queued), runs one search for all of them on a
worker thread, and hands each request its slice; that is where throughput comes from. Malformed requests
get a 4xx with a message that says what to change; they never reach the index.
"""

from __future__ import annotations

import asyncio
import logging
import time
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
        queries = [q for item in batch for q in item.queries]
        depth = max(item.topk for item in batch)
        try:
            hits = await asyncio.get_running_loop().run_in_executor(self.executor, self.retriever.search, queries, depth)
        except Exception as err:  # hand the failure to every waiting request, keep the batcher alive
            log.exception("search of %d queries failed", len(queries))
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(err)
            return
        self.batches += 1
        self.queries += len(queries)
        offset = 0
        for item in batch:
            part = [h[: item.topk] for h in hits[offset : offset + len(item.queries)]]
            offset += len(item.queries)
            if not item.future.done():
                item.future.set_result(part)


def _format(hits: Sequence[Sequence[SearchHit]], docs: DocStore, return_scores: bool) -> list[list[dict]]:
    if return_scores:
        return [[{"document": docs.document(h.row), "score": h.score} for h in q] for q in hits]
    return [[docs.document(h.row) for h in q] for q in hits]


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

    app = FastAPI(title="s3 retrieval server", lifespan=lifespan)
    app.state.batchers = batchers

    @app.middleware("http")
    async def check_token(request: Request, call_next):
        if limits.token and request.url.path != "/health":
            if request.headers.get("authorization") != f"Bearer {limits.token}":
                return JSONResponse({"detail": "missing or wrong bearer token: send 'Authorization: Bearer <token>'"}, status_code=401)
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def explain_validation(request: Request, err: RequestValidationError):
        problems = [f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in err.errors()]
        return JSONResponse({"detail": "malformed request: " + "; ".join(problems) + ' (expected {"queries": [str], "topk": int, "return_scores": bool})'}, status_code=422)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "indexes": names, "documents": len(docs),
                "batches": {n: b.batches for n, b in batchers.items()}, "queries": {n: b.queries for n, b in batchers.items()}}

    @app.post("/retrieve")
    async def retrieve(request: RetrieveRequest) -> dict:
        name = _validate(request, limits, names)
        hits = await batchers[name].search(request.queries, request.topk)
        return {"result": _format(hits, docs, request.return_scores)}

    return app
