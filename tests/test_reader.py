"""The tiny world's extractive reader (s3core/reader): span decoding, training targets, the `reader` stage,
and serving it like any generator (in-process backend and the OpenAI-compatible server give the same answers).

Quality is not asserted here (a few training steps only); the measured dev GenAcc of the default 600 steps
is in the README ("The tiny world") and issue 8's notes.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import torch

from s3core.generation.extractive_reader import best_span, chat_parts, is_extractive_reader
from s3core.reader.training import answer_char_span


def test_best_span_respects_width_context_and_no_answer():
    start = torch.tensor([0.0, 5.0, 2.0, 0.0, 9.0])  # [T]
    end = torch.tensor([0.0, 0.0, 4.0, 1.0, 0.0])
    context = torch.tensor([False, True, True, True, False])  # position 4 is outside the context
    assert best_span(start, end, context, max_answer_tokens=3) == (1, 2)
    assert best_span(start, end, context, max_answer_tokens=1) == (2, 2)  # width 1: (2,2) = 6 beats (1,1) = 5
    cls_wins = torch.tensor([20.0, 5.0, 1.0, 0.0, 9.0])
    assert best_span(cls_wins, end, context, max_answer_tokens=3) is None


def test_a_chat_is_split_into_question_and_context():
    chat = [{"role": "system", "content": "Doc 1 (Title: A) a."}, {"role": "user", "content": "Who?"}]
    assert chat_parts(chat) == ("Who?", "Doc 1 (Title: A) a.")
    with pytest.raises(ValueError, match="user message"):
        chat_parts(chat[:1])


def test_the_target_is_the_first_gold_occurrence_case_insensitive():
    assert answer_char_span("Doc 1 (Title: X) It lies in Rovix.", ["rovix"]) == (28, 33)
    assert answer_char_span("nothing here", ["Rovix", ""]) is None


@pytest.fixture(scope="module")
def reader(tiny_indexes):
    from s3core.config.schema import ReaderConfig
    from s3core.pipeline import open_store, prepare

    cfg = tiny_indexes["cfg"].model_copy(update={"reader": ReaderConfig(steps=6, batch_size=4, log_every=2)})
    store = open_store(cfg)
    state = prepare(store, cfg, until="reader")
    return {"cfg": cfg, "store": store, "manifest": state.reader, "dir": store.local_dir(state.reader)}


def test_the_reader_stage_writes_a_loadable_reader_and_its_measurements(reader):
    folder = reader["dir"]
    assert is_extractive_reader(folder / "reader") and not is_extractive_reader(folder)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert [p["step"] for p in metrics["train_curve"]] == [2, 4, 6]
    dev = metrics["dev"]
    assert dev["questions"] == 100 and set(dev["genacc"]) == {"gold", "naive", "none"}
    assert dev["genacc"]["none"] == 0.0  # an extractive reader cannot answer without passages
    assert set(dev["by_type"]) == {"single_hop", "two_hop", "comparison"}
    assert reader["manifest"].stats["dev_genacc"] == dev["genacc"]


def test_the_reader_is_served_like_any_generator(reader, tiny_indexes):
    """`make_backend` picks the reader for a span-model folder, in-process and behind the local server."""
    from s3core.generation.backends import make_backend
    from s3core.generation.base import GenerationParams
    from s3core.generation.local_server import LOCAL_SERVERS
    from s3core.reward.precompute import generator_messages

    model = str(reader["dir"] / "reader")
    docs = tiny_indexes["docs"]
    chats = [generator_messages(f"Doc 1 (Title: {docs.title(r)}) {docs.text(r)}", q["question"])
             for r, q in zip(range(0, 40, 5), tiny_indexes["questions"])]
    gen = reader["cfg"].generator
    in_process = make_backend(gen.model_copy(update={"backend": "transformers", "serve": "none", "model": model}))
    assert in_process.name == "reader"
    expected = asyncio.run(in_process.generate(chats, GenerationParams()))
    try:
        served = make_backend(gen.model_copy(update={"backend": "openai", "serve": "transformers", "model": model}))
        asyncio.run(served.health())
        assert asyncio.run(served.generate(chats, GenerationParams())) == expected
        assert len(LOCAL_SERVERS.running()) == 1
    finally:
        LOCAL_SERVERS.stop_all()
    assert not LOCAL_SERVERS.running()


def test_later_stages_use_the_reader_as_the_generator(reader):
    """With `generator.model: tiny:reader`, the naive-RAG cache is answered by the trained reader (the
    reader artifact carries the tiny models too, so every `tiny:` name resolves in it)."""
    from s3core.pipeline import prepare

    cfg = reader["cfg"]
    cfg = cfg.model_copy(update={"generator": cfg.generator.model_copy(
        update={"model": "tiny:reader", "backend": "transformers", "serve": "none"})})
    state = prepare(reader["store"], cfg, until="naive_rag")
    assert state.models == state.reader
    for manifest in state.naive_rag:
        assert manifest.inputs["tiny_models"] == state.reader.content_hash
    rows = reader["store"].read_table(state.naive_rag[-1]).to_pylist()
    assert {r["generator"] for r in rows} == {"tiny:reader"}
    assert sorted(p.name for p in reader["dir"].iterdir()) == ["encoder", "generator", "metrics.json", "models.json",
                                                                 "reader", "searcher", "tokenizer"]


def test_tiny_reader_needs_a_reader_section():
    from s3core.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match="add `reader: {}`"):
        parse_config({"name": "x", "world": {}, "tiny_models": {}, "generator": {"model": "tiny:reader"}})
