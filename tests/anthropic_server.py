"""A loopback server that speaks the Anthropic Messages API over a local causal LM, for backend tests.

Run as a subprocess (tests stop it by PID):
    python tests/anthropic_server.py --model DIR [--key KEY] [--overloaded-first N] [--no-text]
It binds 127.0.0.1 on a free port and prints that port on its first line. `POST /v1/messages` checks the
headers and the body the way the API does (x-api-key, anthropic-version, model, max_tokens, messages that
start with a user turn, an optional top-level `system`) and answers with the model's greedy reply as one text
block. Faults: the first N requests get 529 "overloaded"; --no-text answers every request with no text block.
`GET /v1/models` is the health probe; `GET /last` returns the last request body it accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import threading

from loopback_http import JSONHandler, serve


def make_handler(backend, key: str, overloaded_first: int, no_text: bool):
    from s3core.generation.base import GenerationParams

    state = {"requests": 0, "last": None}
    lock = threading.Lock()

    class Handler(JSONHandler):
        def _error(self, status: int, kind: str, message: str) -> None:
            self.send_json(status, {"type": "error", "error": {"type": kind, "message": message}})

        def do_GET(self):  # noqa: N802 - http.server naming
            if self.path == "/v1/models":
                self.send_json(200, {"data": [{"id": "tiny", "type": "model"}]})
            elif self.path == "/last":
                self.send_json(200, state["last"] or {})
            else:
                self._error(404, "not_found_error", self.path)

        def do_POST(self):  # noqa: N802
            if self.path != "/v1/messages":
                return self._error(404, "not_found_error", self.path)
            if self.headers.get("x-api-key") != key:
                return self._error(401, "authentication_error", "invalid x-api-key")
            if not self.headers.get("anthropic-version"):
                return self._error(400, "invalid_request_error", "anthropic-version header is required")
            body = self.read_json()
            messages = body.get("messages")
            if not isinstance(body.get("max_tokens"), int) or not body.get("model") or not messages:
                return self._error(400, "invalid_request_error", "model, max_tokens and messages are required")
            if messages[0]["role"] != "user" or any(m["role"] == "system" for m in messages):
                return self._error(400, "invalid_request_error", "messages start with user; system goes top-level")
            with lock:
                state["requests"] += 1
                overloaded = state["requests"] <= overloaded_first
                state["last"] = body
            if overloaded:
                return self._error(529, "overloaded_error", "Overloaded")
            chat = ([{"role": "system", "content": body["system"]}] if body.get("system") else []) + messages
            params = GenerationParams(max_new_tokens=min(body["max_tokens"], 12), temperature=0.0)
            [text] = asyncio.run(backend.generate([chat], params))
            content = [] if no_text else [{"type": "text", "text": text}]
            self.send_json(200, {"id": "msg_test", "type": "message", "role": "assistant", "model": body["model"],
                              "content": content, "stop_reason": "end_turn"})

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--key", default="test-key")
    parser.add_argument("--overloaded-first", type=int, default=0)
    parser.add_argument("--no-text", action="store_true")
    args = parser.parse_args()
    from s3core.generation.transformers_backend import TransformersChatBackend

    backend = TransformersChatBackend(args.model, device="cpu")
    serve(make_handler(backend, args.key, args.overloaded_first, args.no_text))


if __name__ == "__main__":
    main()
