"""A loopback OpenAI-compatible chat server that answers with a chosen fault, for fault-injection tests.

Run as a subprocess (tests stop it by PID):
    python tests/chat_fault_server.py --reply null|empty|text [--text WORD]
It binds 127.0.0.1 on a free port and prints that port on its first line. `GET /health` answers 200;
`POST /v1/chat/completions` answers HTTP 200 with `content: null` (null), `content: ""` (empty) or the
given text (text), as a misconfigured or broken server does.
"""

from __future__ import annotations

import argparse

from loopback_http import JSONHandler, serve


def make_handler(reply: str, text: str):
    content = {"null": None, "empty": "", "text": text}[reply]

    class Handler(JSONHandler):
        def do_GET(self):  # noqa: N802 - http.server naming
            self.send_json(200 if self.path == "/health" else 404, {"status": "ok"})

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("content-length", 0)))
            if self.path != "/v1/chat/completions":
                return self.send_json(404, {"error": self.path})
            self.send_json(200, {"id": "x", "object": "chat.completion", "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}]})

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reply", choices=["null", "empty", "text"], required=True)
    parser.add_argument("--text", default="Paris")
    args = parser.parse_args()
    serve(make_handler(args.reply, args.text))


if __name__ == "__main__":
    main()
