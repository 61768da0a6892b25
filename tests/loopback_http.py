"""What the loopback test servers (anthropic_server.py, chat_fault_server.py) share: a quiet JSON handler and
serving on a free port of 127.0.0.1, printed on the first line of stdout so the test can connect."""

from __future__ import annotations

import json
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class JSONHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def send_json(self, status: int, payload) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def read_json(self):
        return json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")


def serve(handler: type[BaseHTTPRequestHandler]) -> None:
    """Serve `handler` on a free port of 127.0.0.1 until killed; the port is the first line printed."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    print(port, flush=True)
    server.serve_forever()
