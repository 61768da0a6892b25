"""Generator backend for the Anthropic Messages API (DESIGN.md section 2, "Generator"): the paper's headline
numbers use Claude-3-Haiku as the frozen generator and judge.

`POST {base_url}/v1/messages` with the `x-api-key` and `anthropic-version` headers. System messages go into
the request's top-level `system` field (the API has no system role); the others keep their order. The API
requires `max_tokens`: `max_new_tokens=None` sends DEFAULT_MAX_TOKENS, the public s3 code's 500. The reply's
text blocks are joined and stripped. Retries, timeouts and the concurrency limit are `HTTPChatBackend`'s;
529 ("overloaded") is retried like every 5xx.

The public code reached Claude through AWS Bedrock (`anthropic.claude-3-haiku-20240307-v1:0`). Bedrock signs
requests with AWS SigV4, which this client does not do: use the Anthropic API itself (model
`claude-3-haiku-20240307`), or put an OpenAI-compatible gateway in front of Bedrock and use the openai
backend (docs/FIDELITY.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from s3core.generation.base import GenerationParams, GeneratorError, Message
from s3core.generation.http_chat import HTTPChatBackend

DEFAULT_MAX_TOKENS = 500


class AnthropicChatBackend(HTTPChatBackend):
    """Chat answers from the Anthropic Messages API (or any server that speaks it)."""

    name = "anthropic"
    start_hint = "check base_url (https://api.anthropic.com), the API key variable (generator.api_key_env) and the model name"

    def __init__(self, *args, anthropic_version: str = "2023-06-01", **kwargs):
        super().__init__(*args, **kwargs)
        self.anthropic_version = anthropic_version
        self.root = self.base_url.removesuffix("/v1")

    def headers(self) -> dict[str, str]:
        headers = {"anthropic-version": self.anthropic_version}
        if self.api_key:
            headers["x-api-key"] = self.api_key
        return headers

    def chat_url(self) -> str:
        return f"{self.root}/v1/messages"

    def health_urls(self) -> list[str]:
        return [f"{self.root}/v1/models"]

    def request_body(self, messages: Sequence[Message], params: GenerationParams) -> dict[str, Any]:
        system = [m["content"] for m in messages if m["role"] == "system"]
        turns = [{"role": m["role"], "content": m["content"]} for m in messages if m["role"] != "system"]
        if not turns:
            raise ValueError("the Messages API needs at least one user message besides the system prompt")
        body: dict[str, Any] = {"model": self.model, "messages": turns, "temperature": params.temperature,
                                "max_tokens": params.max_new_tokens or DEFAULT_MAX_TOKENS}
        if system:
            body["system"] = "\n\n".join(system)
        if params.temperature > 0:
            body["top_p"] = params.top_p
        return body

    def reply_text(self, payload: Any) -> str | None:
        """The text blocks of `content`, joined and stripped; None when the reply holds no text block."""
        blocks = payload.get("content") if isinstance(payload, dict) else None
        if not isinstance(blocks, list):
            raise GeneratorError(f"reply has no content list (Messages API): {str(payload)[:300]}")
        texts = [b.get("text") for b in blocks if isinstance(b, dict) and b.get("type") == "text"]
        if not texts:
            return None
        if not all(isinstance(t, str) for t in texts):
            raise GeneratorError(f"reply has a text block without a string: {str(payload)[:300]}")
        return "".join(texts).strip()
