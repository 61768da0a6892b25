"""Local OpenAI-compatible generator servers: `transformers serve` (CPU or GPU) or vLLM's server (GPU) on a
model folder (DESIGN.md section 2, "Generator"; section 6).

`transformers serve MODEL_DIR` (transformers 5.x with the `serving` extra and `accelerate`) serves a local
folder offline over `/v1/chat/completions`, which gives the OpenAI backend a real HTTP generator on any
machine. On a GPU, `generator.serve: vllm` starts `python -m vllm.entrypoints.openai.api_server` instead,
the server the paper's generator runs behind, under the interpreter of the vLLM environment
(`paths.vllm_python`, since vLLM and Prefect pin different fastapi versions) and with the GPU share the
config gives it (`serve_gpu_share`). Either binds 127.0.0.1 only, on a free port, and is stopped by PID.

Health is read from `GET /health` at the server root (both servers answer it). `GET /v1/models` is not
used: in transformers 5.23 it scans the Hugging Face cache and answers 500 when no cache folder exists.
The model id to send in requests is the folder path itself (vLLM's default served name is its --model).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from s3core.models.prepare import has_chat_template
from s3core.paths import vllm_python
from s3core.supervise import stop_supervised, supervised

LOG_TAIL_CHARS = 3000


SERVER_KINDS = ("transformers", "vllm")


@dataclass(frozen=True)
class ServerSpec:
    """What to serve and how: one server per distinct spec in a pool."""

    model_dir: str
    kind: str = "transformers"       # transformers | vllm
    device: str = "cpu"              # transformers serve's --device
    gpu_share: float = 0.25          # vllm's --gpu-memory-utilization
    extra_args: tuple[str, ...] = ()


def _serve_command(model_dir: Path, port: int, device: str, extra_args: tuple[str, ...] = (),
                   kind: str = "transformers", gpu_share: float = 0.25) -> list[str]:
    """The server command for a model folder: vLLM's OpenAI server, `transformers serve` for a causal LM, the
    project's reader server for an extractive reader."""
    from s3core.generation.extractive_reader import is_extractive_reader  # torch: only to tell a reader folder apart

    if kind not in SERVER_KINDS:
        raise ValueError(f"unknown server kind {kind!r}: choose one of {SERVER_KINDS}")
    if is_extractive_reader(model_dir):
        if kind == "vllm":
            raise ValueError(f"{model_dir} holds an extractive reader, which vLLM cannot serve: use serve: transformers "
                             "(the project's reader server) for it")
        return [sys.executable, "-m", "s3core.generation.reader_server", "--model", str(model_dir), "--host", "127.0.0.1",
                "--port", str(port), "--device", device, *extra_args]
    if not has_chat_template(model_dir):
        raise ValueError(f"{model_dir} has no chat template, so the server cannot answer chat requests with it (a "
                         "base model's file carries none): give its `models:` entry a chat_template, or choose an "
                         "instruct model")
    if kind == "vllm":
        return [vllm_python(), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
                "--host", "127.0.0.1", "--port", str(port), "--gpu-memory-utilization", f"{gpu_share:g}",
                "--generation-config", "vllm", *extra_args]  # vllm: request fields rule, not the folder's defaults
    cli = Path(sys.executable).with_name("transformers")
    program = [str(cli)] if cli.exists() else [shutil.which("transformers") or "transformers"]
    return [*program, "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port), "--device", device,
            *extra_args]


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
                f"the generator server exited with code {proc.returncode} before it was healthy; "
                f"log {log_path} ends with:\n{_log_tail(log_path)}"
            )
        if _healthy(port):
            return
        time.sleep(0.5)
    stop_server(proc)
    raise RuntimeError(
        f"the generator server did not answer http://127.0.0.1:{port}/health within {timeout_s:.0f} s; "
        f"log {log_path} ends with:\n{_log_tail(log_path)}"
    )


def start_server(spec: ServerSpec, port: int, log_path: Path | str, timeout_s: float = 120.0) -> subprocess.Popen:
    """Start the server `spec` names on 127.0.0.1:port, logging to log_path; return once healthy."""
    model_dir, log_path = Path(spec.model_dir), Path(log_path)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"model folder {model_dir} does not exist")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = _serve_command(model_dir, port, spec.device, spec.extra_args, spec.kind, spec.gpu_share)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    # an in-process rollout engine of this process turned vLLM's engine subprocess off; the server wants its own
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            supervised(command),  # dies with this process
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # its own process group: a Ctrl-C in the parent does not reach it
        )
    wait_until_healthy(proc, port, log_path, timeout_s)
    return proc


def start_transformers_server(
    model_dir: Path | str, port: int, log_path: Path | str, timeout_s: float = 120.0, device: str = "cpu",
    extra_args: tuple[str, ...] = (),
) -> subprocess.Popen:
    """Start `transformers serve model_dir [extra_args]` on 127.0.0.1:port, logging to log_path; return once
    healthy."""
    return start_server(ServerSpec(str(model_dir), "transformers", device, extra_args=tuple(extra_args)), port,
                        log_path, timeout_s)


def stop_server(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """Stop a server started by start_transformers_server, by its supervisor's PID: SIGTERM (the server gets
    it), then SIGKILL of what is left after grace_s."""
    stop_supervised(proc, grace_s)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalServerPool:
    """Process-wide generator servers, one per `ServerSpec`, shared by every stage.

    A server starts on the first `base_url()` for its spec and stays up for the later stages of the same
    process (naive RAG of each QA set, training, evaluation), which saves its start-up each time (~15 s for
    `transformers serve`, 30 s to minutes for vLLM). One that died (killed, crashed) is started again on the
    next request. `stop_all()` stops every server by PID; it is also registered with atexit, so a flow that
    ends, fails or is interrupted leaves none behind. Each server runs under `s3core.supervise`, so a
    SIGKILLed parent leaves none behind either: the supervisor sees its parent gone and stops the server
    within a second or two.
    """

    def __init__(self) -> None:
        import threading

        self._servers: dict[ServerSpec, tuple[subprocess.Popen, int]] = {}
        self._lock = threading.Lock()
        self._atexit_registered = False

    def base_url(self, model_dir: Path | str, log_dir: Path | str, device: str = "cpu",
                 extra_args: tuple[str, ...] = (), timeout_s: float = 180.0, kind: str = "transformers",
                 gpu_share: float = 0.25) -> str:
        """`http://127.0.0.1:PORT/v1` of a healthy server for model_dir, starting one if none is alive."""
        spec = ServerSpec(str(Path(model_dir).resolve()), kind, device, gpu_share, tuple(extra_args))
        with self._lock:
            running = self._servers.get(spec)
            if running is not None and running[0].poll() is None:
                return f"http://127.0.0.1:{running[1]}/v1"
            port = free_port()
            log_path = Path(log_dir) / f"generator-{kind}-{port}.log"
            proc = start_server(spec, port, log_path, timeout_s=timeout_s)
            self._servers[spec] = (proc, port)
            if not self._atexit_registered:
                import atexit

                atexit.register(self.stop_all)
                self._atexit_registered = True
            return f"http://127.0.0.1:{port}/v1"

    def running(self) -> list[int]:
        """PIDs of the servers that are alive."""
        with self._lock:
            return [proc.pid for proc, _ in self._servers.values() if proc.poll() is None]

    def stop_all(self) -> None:
        with self._lock:
            servers, self._servers = list(self._servers.values()), {}
        for proc, _ in servers:
            stop_server(proc)


LOCAL_SERVERS = LocalServerPool()
