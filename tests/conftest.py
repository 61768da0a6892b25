"""Shared fixtures. Every test runs with the project caches in a temporary folder and the hub offline."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
import yaml

_SESSION_CACHE = Path(tempfile.mkdtemp(prefix="s3-test-cache-"))
os.environ["S3_CACHE_DIR"] = str(_SESSION_CACHE)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["PREFECT_HOME"] = str(_SESSION_CACHE / "prefect")
os.environ.pop("PREFECT_API_URL", None)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
if not SHARED_DATA.exists():  # CI checks out main with shared/ beside it; a copy inside works too
    SHARED_DATA = REPO / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "wiki18-sample.jsonl").exists():
        pytest.fail(f"real-format samples not found at {SHARED_DATA}: the checkout needs ../shared/data beside it")
    return SHARED_DATA


@pytest.fixture(scope="session")
def toy_policy_dir(tmp_path_factory) -> Path:
    """A random-init tiny Qwen2-style policy (2 layers, 32 wide) with a real trained tokenizer, for the
    learner's tests (PPO/GRPO on a toy task, checkpoints of its DeepSpeed engine)."""
    from s3core.config.tiny_models import TinyCausalLMConfig
    from s3core.models import tiny

    root = tmp_path_factory.mktemp("rl-toy")
    texts = [f"Entity {i} was born in City {i % 7} and founded Company {i % 5}." for i in range(200)]
    tiny.train_tokenizer(texts, 400, root / "tokenizer")
    shape = TinyCausalLMConfig(hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=64)
    return tiny.build_causal_lm(root / "tokenizer", shape, seed=3, out_dir=root / "policy")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def prefect_harness():
    """The one shared Prefect test harness (a temporary API + database) for every flow test."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture()
def python_exe() -> str:
    return sys.executable


# --- the tiny world's indexes and a live retrieval server, shared by every module that needs them ---------
def plumbing_only(data: dict) -> dict:
    """configs/tiny.yaml's data with its learned parts (the reader, the warm start) replaced by the random-init
    tiny generator and searcher: for tests of the plumbing, which must not pay for training. What they skip is
    tested in test_reader.py and test_warmstart.py; that PPO learns, in test_rl_learning.py (a toy task: the
    tiny world's learning run does not fit the CPU suite, docs/RESULTS.md 6.7)."""
    data.pop("reader", None)
    data.pop("warmstart", None)
    data["generator"]["model"] = "tiny:generator"
    data["searcher"]["model"] = "tiny:searcher"
    data["inference"]["baselines"] = [b for b in data["inference"]["baselines"] if b.get("strategy") != "s3"]
    return data


def _tiny_config(tmp: Path, **retrieval) -> Path:
    data = plumbing_only(yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text()))
    data["store"] = {"root": str(tmp / "store")}
    data["retrieval"].update(retrieval)
    path = tmp / "tiny-test.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="session")
def tiny_indexes(tmp_path_factory):
    """The default tiny world (configs/tiny.yaml) with its trained encoder, dense and BM25 indexes, built once."""
    from s3core.config import load_config
    from s3core.pipeline import open_store, prepare
    from s3core.retrieval.indexes import open_retrievers

    tmp = tmp_path_factory.mktemp("retrieval")
    config = _tiny_config(tmp)
    cfg = load_config(config)
    store = open_store(cfg)
    state = prepare(store, cfg, until="retrieval_eval")
    retrievers, docs = open_retrievers(store, cfg, state.corpus, state.dense_index, state.bm25_index, state.tiny_models)
    test_questions = store.read_table(next(m for m in state.questions if m.stats.get("split") == "test")).to_pylist()
    return {"config": config, "cfg": cfg, "state": state, "retrievers": retrievers, "docs": docs, "questions": test_questions}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def live_server(tiny_indexes):
    """`s3agent serve retriever` as a subprocess on 127.0.0.1; stopped by PID."""
    port = free_port()
    env = {**os.environ, "S3_TEST_TOKEN": "sesame"}
    config = Path(tiny_indexes["config"])
    data = yaml.safe_load(config.read_text())
    data["retrieval"]["token_env"] = "S3_TEST_TOKEN"
    config.with_name("served.yaml").write_text(yaml.safe_dump(data))
    cmd = [sys.executable, "-m", "s3cli.main", "serve", "retriever", "--config", str(config.with_name("served.yaml")), "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"retrieval server did not start:\n{proc.stdout.read()[-3000:]}")
        time.sleep(0.3)
    yield base
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)
