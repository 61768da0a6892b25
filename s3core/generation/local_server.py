"""A local OpenAI-compatible generator server: `transformers serve` on a model folder (DESIGN.md section 2,
"Generator"; section 6).

Where vLLM is missing, `transformers serve MODEL_DIR` (transformers 5.x with the `serving` extra and
`accelerate`) serves a local folder offline over `/v1/chat/completions`, which gives the OpenAI backend a
real HTTP generator for tests and the tiny world. The server binds 127.0.0.1 only.

Health is read from `GET /health` at the server root. `GET /v1/models` is not used: in transformers 5.23
it scans the Hugging Face cache and answers 500 when no cache folder exists.
The model id to send in requests is the folder path itself.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

LOG_TAIL_CHARS = 3000


def _serve_command(model_dir: Path, port: int, device: str) -> list[str]:
    cli = Path(sys.executable).with_name("transformers")
    program = [str(cli)] if cli.exists() else [shutil.which("transformers") or "transformers"]
    return [*program, "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port), "--device", device]


def _log_tail(log_path: Path) -> str:
    try:
        return Path(log_path).read_text(encoding="utf-8", errors="replace")[-LOG_TAIL_CHARS:]
    except OSError:
        return "(no log)"


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until_healthy(proc: subprocess.Popen, port: int, log_path: Path, timeout_s: float) -> None:
    """Poll `/health` until it answers; raise RuntimeError with the log tail if the server dies or times out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"transformers serve exited with code {proc.returncode} before it was healthy; "
                f"log {log_path} ends with:\n{_log_tail(log_path)}"
            )
        if _healthy(port):
            return
        time.sleep(0.5)
    stop_server(proc)
    raise RuntimeError(
        f"transformers serve did not answer http://127.0.0.1:{port}/health within {timeout_s:.0f} s; "
        f"log {log_path} ends with:\n{_log_tail(log_path)}"
    )


def start_transformers_server(
    model_dir: Path | str, port: int, log_path: Path | str, timeout_s: float = 120.0, device: str = "cpu"
) -> subprocess.Popen:
    """Start `transformers serve model_dir` on 127.0.0.1:port, logging to log_path; return once healthy."""
    model_dir, log_path = Path(model_dir), Path(log_path)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"model folder {model_dir} does not exist")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            _serve_command(model_dir, port, device),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # its own process group: a Ctrl-C in the parent does not reach it
        )
    wait_until_healthy(proc, port, log_path, timeout_s)
    return proc


def stop_server(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """Stop the server by its PID: SIGTERM, then SIGKILL if it is still alive after grace_s."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace_s)
