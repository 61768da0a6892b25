"""The naive-RAG precompute and the training pool (s3core/reward/precompute.py; DESIGN.md section 2 "Reward").

Built on a small tiny world (200 questions) through the real pipeline and the real tiny generator
(transformers backend in-process, CPU; one test serves it with a real `transformers serve` and kills that
server midway). Two stand-ins, both named as such where they are used:
- `FaultInjector` is the REAL tiny generator with a call counter that raises GeneratorError on a chosen call,
  to interrupt the stage midway like a generator that goes down;
- `ScriptedBackend` answers "Paris" to every question and, as a judge, "yes" exactly when the gold answers
  hold "Lyon", so which train questions naive RAG gets right is known by hand in the training-pool example.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import yaml
from conftest import plumbing_only

from s3core.agent.context import format_docs
from s3core.config import load_config
from s3core.config.schema import FileSource, QASetConfig
from s3core.data.answers import exact_match, f1, span_check
from s3core.data.stage import questions_spec
from s3core.generation.base import GeneratorError
from s3core.generation.transformers_backend import TransformersChatBackend
from s3core.models.resolve import resolve_model_path
from s3core.pipeline import open_store, prepare
from s3core.retrieval.base import DocStore
from s3core.reward import precompute
from s3core.reward.precompute import is_yes_no
from s3core.reward.stage import naive_rag_spec, training_pool_spec

REPO = Path(__file__).resolve().parents[1]
SHARD_ROWS = 8  # small shards so the test split spans several
# Smaller tiny models than configs/tiny.yaml's, encoder left random-init (as tests/test_flows.py): keeps the
# module under a minute on CPU; the naive retriever stays the default, dense.
TINY_MODELS = {"seed": 0, "vocab_size": 400, "causal_lm": {"hidden_size": 32, "num_heads": 2, "num_kv_heads": 1,
               "intermediate_size": 64}, "encoder": {"hidden_size": 32, "num_heads": 2, "intermediate_size": 64},
               "encoder_training": {"enabled": False}}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("precompute")
    data = plumbing_only(yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text()))
    data["store"] = {"root": str(tmp / "store")}
    data["world"]["n_questions"] = 200
    data["tiny_models"] = TINY_MODELS
    data["generator"].update({"backend": "transformers", "serve": "none"})  # in-process: FaultInjector wraps it
    path = tmp / "tiny-precompute.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = load_config(path)
    store = open_store(cfg)
    state = prepare(store, cfg, until="retrieval_eval")
    test_q = next(m for m in state.questions if m.stats.get("split") == "test")
    spec = _spec(cfg, state, test_q)
    clean = spec.run(store)
    return {"tmp": tmp, "cfg": cfg, "store": store, "state": state, "test_q": test_q, "clean": clean}


def _spec(cfg, state, questions, shard_rows=SHARD_ROWS):
    return naive_rag_spec(cfg, questions, state.corpus, state.dense_index, state.bm25_index, state.tiny_models,
                          shard_rows=shard_rows)


class FaultInjector(TransformersChatBackend):
    """The real tiny generator, counting generate calls; raises GeneratorError from call `fail_on` on."""

    def __init__(self, model_path: str, fail_on: int | None = None):
        super().__init__(model_path)
        self.calls, self.fail_on = 0, fail_on

    async def generate(self, conversations, params):
        self.calls += 1
        if self.fail_on is not None and self.calls >= self.fail_on:
            raise GeneratorError(f"injected failure on generate call {self.calls}")
        return await super().generate(conversations, params)


class ScriptedBackend:
    """Not a model: answers "Paris" to every question; as a judge (a conversation without a system message)
    says "yes" exactly when the gold answers hold "Lyon". Hand-checkable naive GenAcc; counts judge calls."""

    name = "scripted"

    def __init__(self):
        self.judge_calls = 0

    async def health(self) -> None:
        return None

    async def generate(self, conversations, params):
        replies = []
        for conversation in conversations:
            if conversation[0]["role"] == "system":
                replies.append("Paris")
            else:
                self.judge_calls += 1
                replies.append("Yes." if '"Lyon"' in conversation[0]["content"] else "no")
        return replies


def test_context_lines_keep_titles_intact():
    import pyarrow as pa

    docs = DocStore(pa.table({"id": ["a", "b"], "title": ['Foo (band) "live"', "Bar) x"], "text": ["t1", "t2"]}))
    assert format_docs(docs, [1, 0]) == 'Doc 1 (Title: Bar) x) t2\nDoc 2 (Title: Foo (band) "live") t1'


def test_yes_no_rule():
    assert is_yes_no(["Yes"]) and is_yes_no([" no ", "TRUE", "false"])
    assert not is_yes_no(["yes", "Lyon"]) and not is_yes_no(["Lyon"]) and not is_yes_no([])
    assert is_yes_no(["yes", "Lyon"], "any_gold_exact") and is_yes_no(["False"], "any_gold_exact")
    assert not is_yes_no(["YES"], "any_gold_exact") and not is_yes_no(["yes."], "any_gold_exact")
    with pytest.raises(ValueError, match=r"valid: \['all_gold', 'any_gold_exact'\]"):
        is_yes_no(["yes"], "some")


def test_naive_rag_rows_on_the_test_split(world):
    store, cfg, clean = world["store"], world["cfg"], world["clean"]
    questions = store.read_table(world["test_q"]).to_pylist()
    rows = store.read_table(clean).to_pylist()
    k = cfg.retrieval.naive_topk
    assert cfg.retrieval.naive_retriever == "dense"
    assert clean.row_count == len(questions) == len(rows) > 2 * SHARD_ROWS
    assert len(clean.shards) == -(-len(questions) // SHARD_ROWS)
    assert [r["question_id"] for r in rows] == [q["id"] for q in questions]
    assert clean.stats["split"] == "test" and clean.stats["questions"] == len(rows)
    assert clean.stats["naive_correct"] == sum(r["genacc"] for r in rows)
    docs = DocStore.from_manifests(store, world["state"].corpus)
    row_of = {doc_id: i for i, doc_id in enumerate(docs.table.column("id").to_pylist())}
    for row in rows:
        assert len(row["doc_ids"]) == k
        lines = row["context"].split("\n")
        assert lines == [f"Doc {i} (Title: {docs.title(row_of[d])}) {docs.text(row_of[d])}"
                         for i, d in enumerate(row["doc_ids"], start=1)]
        assert row["genacc"] == span_check(row["answer"], row["golden_answers"])  # use_judge is false
        assert row["em"] == exact_match(row["answer"], row["golden_answers"])
        assert row["f1"] == pytest.approx(f1(row["answer"], row["golden_answers"]))
        assert row["judge_used"] is False and row["retriever"] == cfg.retrieval.naive_retriever
        assert row["generator"] == "tiny:generator"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_generator_fails_the_stage(world):
    cfg, store = world["cfg"], world["store"]
    gen = cfg.generator.model_copy(update={"backend": "openai", "base_url": f"http://127.0.0.1:{_free_port()}/v1"})
    spec = _spec(cfg.model_copy(update={"generator": gen}), world["state"], world["test_q"])
    with pytest.raises(GeneratorError, match="not answering"):
        spec.run(store)
    assert spec.completed(store) is None
    assert store.table_writer("naive_rag", spec.key).finished_shards() == set()


def test_generator_failure_midway_resumes(world, monkeypatch):
    cfg, store, state, clean = world["cfg"], world["store"], world["state"], world["clean"]
    spec = _spec(cfg, state, world["test_q"])
    assert spec.key == clean.key
    store.fs.rm(store.artifact_path("naive_rag", spec.key), recursive=True)
    backends = []

    def injector(fail_on):
        def make(gen_cfg, models_dir):
            backends.append(FaultInjector(resolve_model_path(gen_cfg.model, models_dir), fail_on=fail_on))
            return backends[-1]
        return make

    monkeypatch.setattr(precompute, "make_backend", injector(fail_on=2))
    with pytest.raises(GeneratorError, match="injected"):
        spec.run(store)
    writer = store.table_writer("naive_rag", spec.key)
    assert spec.completed(store) is None and writer.finished_shards() == {0}
    first = Path(writer.path) / "part-00000.parquet"
    before = (first.stat().st_ino, first.stat().st_mtime_ns)

    monkeypatch.setattr(precompute, "make_backend", injector(fail_on=None))
    resumed = spec.run(store)
    assert backends[-1].calls == len(clean.shards) - 1  # only the remaining shards were generated
    assert (first.stat().st_ino, first.stat().st_mtime_ns) == before
    assert resumed.stats["resumed_shards"] == 1 and resumed.stats["written_shards"] == len(clean.shards) - 1
    assert resumed.content_hash == clean.content_hash and resumed.row_count == clean.row_count


HANDMADE = [  # (golden answers, expected fate with the scripted answer "Paris")
    (["Paris"], "naive_correct"),
    (["Paris", "yes"], "naive_correct"),
    (["Yes"], "yes_no"),
    ([" no ", "TRUE"], "yes_no"),
    (["yes", "Lyon"], "kept"),
    (["Lyon"], "kept"),
]


def _handmade_train_set(cfg, store, tmp):
    source = tmp / "handmade-train.jsonl"
    source.write_text("".join(json.dumps({"id": str(i), "question": f"Where is landmark {i}?", "golden_answers": golds}) + "\n"
                              for i, (golds, _) in enumerate(HANDMADE)))
    qa = QASetConfig(name="handmade", split="train", source=FileSource(path=os.fspath(source)))
    return questions_spec(cfg, qa).run(store)


def test_training_pool_on_a_handmade_train_set(world, monkeypatch):
    cfg, store, state = world["cfg"], world["store"], world["state"]
    train_q = _handmade_train_set(cfg, store, world["tmp"])
    monkeypatch.setattr(precompute, "make_backend", lambda gen_cfg, models_dir: ScriptedBackend())
    naive_train = _spec(cfg, state, train_q, shard_rows=4).run(store)
    naive_rows = store.read_table(naive_train).to_pylist()
    assert [r["genacc"] for r in naive_rows] == [fate == "naive_correct" for _, fate in HANDMADE]

    pool = training_pool_spec(cfg, [world["clean"], naive_train])  # the test-split artifact is ignored
    assert set(pool.inputs) == {"naive_rag/001"}
    manifest = pool.run(store)
    rows = store.read_table(manifest).to_pylist()
    kept = [r for r, (_, fate) in zip(naive_rows, HANDMADE) if fate == "kept"]
    assert [r["question_id"] for r in rows] == [r["question_id"] for r in kept]
    assert [r["golden_answers"] for r in rows] == [["yes", "Lyon"], ["Lyon"]]
    assert all(r["naive_genacc"] is False and r["data_source"] == "handmade" for r in rows)
    assert {k: manifest.stats[k] for k in ("total", "naive_correct", "yes_no_filtered", "kept")} == {
        "total": 6, "naive_correct": 2, "yes_no_filtered": 2, "kept": 2}

    # the public code's rule drops a question when ANY gold is exactly yes/no/true/false (lower or capitalised)
    public = cfg.model_copy(update={"reward": cfg.reward.model_copy(update={"yes_no_filter": "any_gold_exact"})})
    public_pool = training_pool_spec(public, [naive_train])
    assert public_pool.key != training_pool_spec(cfg, [naive_train]).key
    rows = store.read_table(public_pool.run(store)).to_pylist()
    assert [r["golden_answers"] for r in rows] == [[" no ", "TRUE"], ["Lyon"]]  # spaced / upper case stay


def test_judge_decides_what_span_check_rejects(world, monkeypatch):
    cfg, store, state = world["cfg"], world["store"], world["state"]
    judged = cfg.model_copy(update={"reward": cfg.reward.model_copy(update={"use_judge": True})})
    train_q = _handmade_train_set(cfg, store, world["tmp"])
    scripted = ScriptedBackend()
    monkeypatch.setattr(precompute, "make_backend", lambda gen_cfg, models_dir: scripted)
    spec = _spec(judged, state, train_q, shard_rows=4)
    assert spec.key != _spec(cfg, state, train_q, shard_rows=4).key  # use_judge enters the key
    rows = store.read_table(spec.run(store)).to_pylist()
    # span_check accepts "Paris" for the first two; the judge is asked about the other four only
    assert scripted.judge_calls == 4
    assert [r["genacc"] for r in rows] == [True, True, False, False, True, True]
    assert [r["em"] for r in rows] == [True, True, False, False, False, False]
    assert all(r["judge_used"] for r in rows)


def test_a_judge_without_verdicts_fails_the_stage(world):
    """The real (random-init) tiny generator cannot answer yes/no: the stage stops with JudgeError, nothing
    is scored 0 and no shard is written."""
    from s3core.reward.judge import JudgeError

    cfg, store, state = world["cfg"], world["store"], world["state"]
    judged = cfg.model_copy(update={"reward": cfg.reward.model_copy(update={"use_judge": True})})
    spec = _spec(judged, state, world["test_q"])
    with pytest.raises(JudgeError, match="yes/no"):
        spec.run(store)
    assert spec.completed(store) is None
    assert store.table_writer("naive_rag", spec.key).finished_shards() == set()


def test_killing_the_served_generator_midway_fails_clearly_and_the_rerun_resumes(world):
    """A real `transformers serve` (generator.serve), SIGKILLed after the first shard: the stage fails with
    GeneratorError naming the endpoint; the re-run starts a new server and writes only the missing shards."""
    import signal

    from s3core.generation.local_server import LOCAL_SERVERS

    cfg, store, state, clean = world["cfg"], world["store"], world["state"], world["clean"]
    gen = cfg.generator.model_copy(update={"backend": "openai", "serve": "transformers", "max_retries": 1,
                                           "timeout_s": 20.0})
    served = cfg.model_copy(update={"generator": gen})
    spec = _spec(served, state, world["test_q"])
    killed = []

    def kill_after_first_shard(done, total, message=""):
        if message.startswith("naive RAG") and not killed:
            killed.extend(LOCAL_SERVERS.running())
            for pid in killed:
                os.kill(pid, signal.SIGKILL)

    try:
        with pytest.raises(GeneratorError, match="127.0.0.1") as failure:
            spec.run(store, kill_after_first_shard)
        assert len(killed) == 1
        print("failure message:", failure.value)
        writer = store.table_writer("naive_rag", spec.key)
        assert spec.completed(store) is None and writer.finished_shards() == {0}

        resumed = spec.run(store)
        assert LOCAL_SERVERS.running() and LOCAL_SERVERS.running() != killed  # a fresh server
        assert resumed.stats["resumed_shards"] == 1 and resumed.stats["written_shards"] == len(clean.shards) - 1
        served_rows = store.read_table(resumed).to_pylist()
        in_process_rows = store.read_table(clean).to_pylist()
        assert [r["answer"] for r in served_rows] == [r["answer"] for r in in_process_rows]  # greedy both ways
        assert [r["question_id"] for r in served_rows] == [r["question_id"] for r in in_process_rows]
    finally:
        LOCAL_SERVERS.stop_all()
    assert not LOCAL_SERVERS.running()
