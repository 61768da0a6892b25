"""Generator backend for any OpenAI-compatible chat endpoint (DESIGN.md section 2, "Generator"; section 3).

In production the frozen generator is a vLLM server; on a machine without vLLM it can be `transformers serve`
(see `local_server.py`); hosted APIs that speak the same protocol work too. All of them answer
`POST {base_url}/chat/completions`. The client is plain httpx rather than the `openai` package, so that
retries, timeouts and the concurrency limit are ours (`http_chat.HTTPChatBackend`).

Temperature 0 is sent as greedy decoding (the paper's generator setting). `max_new_tokens=None` sends no
`max_tokens`, so the server's own limit applies (the public s3 code's request).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from s3core.generation.base import GenerationParams, GeneratorError, Message
from s3core.generation.http_chat import HTTPChatBackend


def _server_root(base_url: str) -> str:
    """`http://host:port/v1` -> `http://host:port` (where `/health` lives)."""
    return base_url.rstrip("/").removesuffix("/v1")


class OpenAIChatBackend(HTTPChatBackend):
    """Chat completions from an OpenAI-compatible HTTP endpoint (vLLM, `transformers serve`, hosted APIs)."""

    name = "openai"
    start_hint = ("is the server running? start it with e.g. `vllm serve MODEL --port 8001` or "
                  "`transformers serve MODEL_DIR --host 127.0.0.1 --port 8001` (base_url http://127.0.0.1:8001/v1)")

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def chat_url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def health_urls(self) -> list[str]:
        return [f"{_server_root(self.base_url)}/health", f"{self.base_url}/models"]

    def request_body(self, messages: Sequence[Message], params: GenerationParams) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": [dict(m) for m in messages],
                                "temperature": params.temperature, "stream": False}
        if params.max_new_tokens is not None:
            body["max_tokens"] = params.max_new_tokens
        if params.temperature > 0:
            body["top_p"] = params.top_p
        return body

    def reply_text(self, payload: Any) -> str | None:
        """`choices[0].message.content`, stripped; None for `content: null`. A reply without that field is
        a GeneratorError."""
        try:
            content = payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise GeneratorError(f"reply has no choices[0].message.content: {str(payload)[:300]}") from exc
        if content is None:
            return None
        if not isinstance(content, str):
            raise GeneratorError(f"reply content is not a string: {str(payload)[:300]}")
        return content.strip()
