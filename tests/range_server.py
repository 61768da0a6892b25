"""A loopback static file server with HTTP Range support, for download tests (and, with index.html pages,
a static package index for pip).

Run as a subprocess (tests stop it by PID):
    python tests/range_server.py --dir DIR [--cut-once-after BYTES]
It binds 127.0.0.1 on a free port and prints that port on its first line. With --cut-once-after, the first
response for each file drops the connection after that many body bytes, to test resumed downloads.
"""

from __future__ import annotations

import argparse
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def make_handler(root: Path, cut_after: int | None):
    cut_done: set[str] = set()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def do_GET(self):  # noqa: N802 - http.server naming
            path = root / self.path.lstrip("/").split("?")[0]
            if path.is_dir() and (path / "index.html").is_file():  # a static package index (PEP 503) page
                path = path / "index.html"
            if not path.is_file():
                self.send_error(404)
                return
            data = path.read_bytes()
            start = 0
            if (header := self.headers.get("Range")) and header.startswith("bytes="):
                start = int(header[6:].split("-")[0] or 0)
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            if path.suffix == ".html":
                self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            with lock:
                cut = cut_after is not None and self.path not in cut_done
                if cut:
                    cut_done.add(self.path)
            if cut:
                self.wfile.write(body[:cut_after])
                self.wfile.flush()
                self.connection.shutdown(2)
                return
            self.wfile.write(body)

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--cut-once-after", type=int, default=None)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(Path(args.dir), args.cut_once_after))
    print(server.server_address[1], flush=True)
    os.environ["RANGE_SERVER"] = "1"
    server.serve_forever()


if __name__ == "__main__":
    main()
