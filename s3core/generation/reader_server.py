"""An OpenAI-compatible server for an extractive reader folder, so it is served like any generator.

    python -m s3core.generation.reader_server --model DIR --host 127.0.0.1 --port 8001

Routes: `POST /v1/chat/completions` (the subset the OpenAI backend uses: model, messages; sampling fields are
accepted and ignored, the reader extracts), `GET /v1/models`, `GET /health`. Requests that arrive together
are answered in one batch. `s3core.generation.local_server` starts it (instead of `transformers serve`)
when `generator.serve` names a folder that holds a reader.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

from pydantic import BaseModel

from s3core.generation.extractive_reader import ExtractiveReader

BATCH_WAIT_S = 0.005


class ChatRequest(BaseModel):
    """The fields of an OpenAI chat completion request the reader reads (sampling fields are ignored)."""

    model: str
    messages: list[dict[str, Any]]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None


def create_app(model_dir: str, device: str = "cpu"):
    from fastapi import FastAPI, HTTPException

    reader = ExtractiveReader(model_dir, device=device)
    queue: asyncio.Queue = asyncio.Queue()

    async def batcher() -> None:
        while True:
            items = [await queue.get()]
            await asyncio.sleep(BATCH_WAIT_S)
            while not queue.empty():
                items.append(queue.get_nowait())
            try:
                answers = await asyncio.to_thread(reader.answer_chats, [messages for messages, _ in items])
                for (_, future), answer in zip(items, answers):
                    future.set_result(answer)
            except Exception as exc:  # every waiting request gets the failure, none hangs
                for _, future in items:
                    if not future.done():
                        future.set_exception(exc)

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(batcher())
        yield
        task.cancel()

    app = FastAPI(title="s3 extractive reader", lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "model": model_dir}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_dir, "object": "model", "owned_by": "s3agent"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: ChatRequest) -> dict[str, Any]:
        if not any(m.get("role") == "user" for m in request.messages):
            raise HTTPException(status_code=400, detail="messages need a user message (the question)")
        future = asyncio.get_running_loop().create_future()
        await queue.put(([{"role": m.get("role", ""), "content": str(m.get("content", ""))} for m in request.messages],
                         future))
        answer = await future
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
                "model": request.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}

    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="an extractive reader folder")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    uvicorn.run(create_app(args.model, args.device), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
