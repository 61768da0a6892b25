"""Generator backends (DESIGN.md section 2, "Generator"): the in-process transformers backend, the OpenAI
backend against a real local `transformers serve`, failure handling, and the registry. CPU only.

The tiny generator here is built with UNTIED embeddings. The tiny-models default ties them, and a random
tied model copies its last input token: after ChatML's `<|im_start|>assistant\\n` it answers "\\n" forever,
which strips to a blank reply (a legitimate, empty answer). Untied, it writes (nonsense) words we can compare.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from s3core.config.schema import GeneratorConfig
from s3core.data.tiny_world import TinyWorldConfig, generate_world
from s3core.generation.anthropic_backend import AnthropicChatBackend
from s3core.generation.backends import BackendName, backend_name, make_backend
from s3core.generation.base import GenerationParams, GeneratorError
from s3core.generation.local_server import start_transformers_server, stop_server
from s3core.generation.openai_backend import OpenAIChatBackend
from s3core.generation.transformers_backend import TransformersChatBackend
from s3core.models import tiny

GREEDY = GenerationParams(max_new_tokens=12, temperature=0.0)


def _chat(docs: str, question: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": f"Answer from the documents, with no extra text.\n{docs}"},
        {"role": "user", "content": question},
    ]


# Prompts of different lengths, so a batch needs padding.
CHATS = [
    _chat("Doc 1 (Title: Rusk) Rusk is a town.", "Where is Rusk?"),
    _chat(
        "Doc 1 (Title: Ostmere) Ostmere is a city of 4000 people on a river. Doc 2 (Title: Pellan) Pellan "
        "was founded by a clockmaker.",
        "Who founded Pellan and how many people live in Ostmere?",
    ),
    _chat("", "Hello?"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def generator_dir(tmp_path_factory) -> Path:
    world = generate_world(TinyWorldConfig())
    texts = [f"{p.title}\n{p.text}" for p in world.passages[:300]]
    root = tmp_path_factory.mktemp("generation")
    tiny.train_tokenizer(texts, tiny.TinyModelsConfig().vocab_size, root / "tokenizer")
    shape = tiny.TinyCausalLMConfig(tie_word_embeddings=False)
    return tiny.build_causal_lm(root / "tokenizer", shape, seed=1, out_dir=root / "generator")


@pytest.fixture(scope="module")
def local_backend(generator_dir) -> TransformersChatBackend:
    return TransformersChatBackend(str(generator_dir), device="cpu", batch_size=8)


@pytest.fixture(scope="module")
def served(generator_dir, tmp_path_factory):
    """`transformers serve` on the tiny generator; yields (base_url, model id); stopped by PID afterwards."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    proc = start_transformers_server(generator_dir, port, log_path, timeout_s=120)
    try:
        yield f"http://127.0.0.1:{port}/v1", str(generator_dir)
    finally:
        stop_server(proc)


# --- in-process transformers backend ------------------------------------------------------------------


def test_transformers_backend_is_deterministic(local_backend):
    asyncio.run(local_backend.health())
    first = asyncio.run(local_backend.generate(CHATS, GREEDY))
    second = asyncio.run(local_backend.generate(CHATS, GREEDY))
    assert first == second
    assert len(first) == len(CHATS) and all(reply and reply == reply.strip() for reply in first)


def test_transformers_backend_left_pads_batches(local_backend):
    batched = asyncio.run(local_backend.generate(CHATS, GREEDY))
    one_by_one = [asyncio.run(local_backend.generate([chat], GREEDY))[0] for chat in CHATS]
    assert batched == one_by_one


def test_transformers_backend_sampling_differs_from_greedy_but_runs(local_backend):
    sampled = asyncio.run(local_backend.generate(CHATS, GenerationParams(max_new_tokens=12, temperature=1.0)))
    assert len(sampled) == len(CHATS) and all(isinstance(reply, str) and reply for reply in sampled)


# --- OpenAI backend against a real local server -------------------------------------------------------


def test_openai_backend_matches_in_process_greedy(served, local_backend):
    base_url, model = served
    remote = OpenAIChatBackend(base_url, model, concurrency=4, timeout_s=60, max_retries=1)
    asyncio.run(remote.health())
    # Same folder, same chat template, same greedy decoding on CPU in float32: the same text.
    assert asyncio.run(remote.generate(CHATS, GREEDY)) == asyncio.run(local_backend.generate(CHATS, GREEDY))


def test_openai_backend_does_not_retry_client_errors(served):
    base_url, model = served
    wrong_path = OpenAIChatBackend(base_url.replace("/v1", "/no-such-api"), model, max_retries=3, backoff_s=10.0)
    started = time.monotonic()
    with pytest.raises(GeneratorError, match="HTTP 404"):
        asyncio.run(wrong_path.generate(CHATS[:1], GREEDY))
    assert time.monotonic() - started < 5.0  # a retry would have slept >= 5 s


def test_openai_backend_on_dead_port_fails_after_retries():
    base_url = f"http://127.0.0.1:{_free_port()}/v1"
    dead = OpenAIChatBackend(base_url, "some-model", max_retries=2, backoff_s=0.01, timeout_s=2)
    with pytest.raises(GeneratorError) as failure:
        asyncio.run(dead.generate(CHATS[:2], GREEDY))
    message = str(failure.value)
    assert base_url in message and "some-model" in message and "3 attempts" in message and "last error" in message


def test_openai_health_on_dead_port_says_how_to_start_a_server():
    dead = OpenAIChatBackend(f"http://127.0.0.1:{_free_port()}/v1", "some-model", timeout_s=2)
    with pytest.raises(GeneratorError, match="is the server running"):
        asyncio.run(dead.health())


# --- registry -------------------------------------------------------------------------------------------


def test_registry_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="unknown generator backend 'vllm'") as failure:
        backend_name("vllm")
    assert all(repr(name.value) in str(failure.value) for name in BackendName)
    with pytest.raises(ValueError, match="'openai', 'anthropic', 'transformers'"):
        make_backend(GeneratorConfig.model_construct(backend="vllm", model="m"), None)


def test_registry_builds_both_backends(generator_dir, monkeypatch):
    tiny_root = generator_dir.parent
    local = make_backend(GeneratorConfig(backend="transformers", model="tiny:generator"), tiny_root)
    assert isinstance(local, TransformersChatBackend) and local.model_path == str(generator_dir)

    monkeypatch.delenv("S3_TEST_GENERATOR_KEY", raising=False)
    cfg = GeneratorConfig(
        backend="openai",
        model="tiny:generator",
        api_key_env="S3_TEST_GENERATOR_KEY",
        base_url="http://127.0.0.1:9/v1",
        max_retries=2,
    )
    remote = make_backend(cfg, tiny_root)
    assert isinstance(remote, OpenAIChatBackend)
    assert remote.model == str(generator_dir) and remote.max_retries == 2 and "Authorization" not in remote.headers()

    monkeypatch.setenv("S3_TEST_GENERATOR_KEY", "secret")
    assert make_backend(cfg, tiny_root).headers() == {"Authorization": "Bearer secret"}
    claude = make_backend(GeneratorConfig(backend="anthropic", model="claude-3-haiku-20240307",
                                          base_url="https://api.anthropic.com", api_key_env="S3_TEST_GENERATOR_KEY"))
    assert isinstance(claude, AnthropicChatBackend) and claude.chat_url() == "https://api.anthropic.com/v1/messages"
    assert claude.headers() == {"anthropic-version": "2023-06-01", "x-api-key": "secret"}


# --- Anthropic backend against a loopback server that speaks the Messages API ---------------------------
@pytest.fixture()
def anthropic_server(generator_dir):
    """Start tests/anthropic_server.py with the given fault flags; yields its base URL; stopped by PID."""
    procs = []

    def start(*flags: str) -> str:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("anthropic_server.py")), "--model",
                                 str(generator_dir), *flags], stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        port = int(proc.stdout.readline())
        return f"http://127.0.0.1:{port}"

    yield start
    for proc in procs:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_anthropic_backend_sends_the_messages_api_and_retries_overload(anthropic_server, local_backend):
    base = anthropic_server("--overloaded-first", "2")
    claude = AnthropicChatBackend(base, "claude-test", api_key="test-key", max_retries=3, backoff_s=0.01, concurrency=1)
    asyncio.run(claude.health())
    # the same greedy model behind the API: the system message travelled as the top-level `system` field
    assert asyncio.run(claude.generate(CHATS[:2], GREEDY)) == asyncio.run(local_backend.generate(CHATS[:2], GREEDY))
    asyncio.run(claude.generate(CHATS[:1], GenerationParams(max_new_tokens=None)))
    last = httpx.get(f"{base}/last").json()
    assert last["max_tokens"] == 500 and last["system"].startswith("Answer from the documents")  # the required limit


def test_anthropic_backend_fails_fast_on_a_bad_key_and_reports_missing_text(anthropic_server):
    base = anthropic_server("--no-text")
    wrong = AnthropicChatBackend(base, "claude-test", api_key="wrong", max_retries=3, backoff_s=10.0)
    with pytest.raises(GeneratorError, match="HTTP 401"):
        asyncio.run(wrong.generate(CHATS[:1], GREEDY))
    right = AnthropicChatBackend(base, "claude-test", api_key="test-key")
    assert asyncio.run(right.generate(CHATS[:2], GREEDY)) == [None, None]  # no text block: a non-answer
