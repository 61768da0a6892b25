"""The rollout engine and the contexts (inference) stage on the default tiny world (s3core/agent;
DESIGN.md section 2 "Searcher protocol"; section 3 "Searcher rollouts").

Searches go through the real retrieval server (the session's `live_server`, a uvicorn subprocess) or the
in-process retrievers. Two kinds of policy:
- the REAL tiny searcher (random-init Qwen2-style model) for determinism, batching and the stage;
- `ScriptedPolicy`, a stand-in named as such: it replies with fixed text per turn, tokenised by the real
  tiny tokenizer, so the multi-turn paths (tags, forged blocks, invalid turns, limits) are exercised on
  purpose; a random-init model never writes a valid tag.
"""

from __future__ import annotations

import pytest

from s3core.agent.inference import s3_run
from s3core.agent.policy import PolicyOutput, SamplingSettings, TransformersPolicy
from s3core.agent.protocol import CORRECTIVE_OBSERVATION
from s3core.agent.rollout import RolloutEngine, client_search, retriever_search
from s3core.agent.stage import contexts_spec
from s3core.agent.strategies import Limits, S3Strategy
from s3core.models.resolve import resolve_model_path
from s3core.pipeline import open_store
from s3core.retrieval.client import RetrievalClient

S3_LIMITS = Limits(initial_topk=3, topk=8, max_searches=3, max_turns=4, max_selected=3)


class ScriptedPolicy:
    """Not a model: turn t of every trajectory gets script[t] (real tokenizer, log-prob 0)."""

    def __init__(self, tokenizer, script: list[str]):
        self.tokenizer, self.script, self.turn, self.calls = tokenizer, script, 0, []

    def continue_sequences(self, sequences, settings: SamplingSettings):
        self.calls.append(len(sequences))
        text = self.script[min(self.turn, len(self.script) - 1)]
        self.turn += 1
        tokens = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return [PolicyOutput(list(tokens), [0.0] * len(tokens), "stop") for _ in sequences]


@pytest.fixture(scope="module")
def searcher(tiny_indexes):
    store = open_store(tiny_indexes["cfg"])
    path = resolve_model_path("tiny:searcher", store.local_dir(tiny_indexes["state"].tiny_models))
    return TransformersPolicy(path, device="cpu", batch_size=16)


def _engine(policy, search, docs, strategy=None, max_new_tokens=48, max_context_tokens=4096):
    return RolloutEngine(policy, strategy or S3Strategy(S3_LIMITS), search, docs,
                         SamplingSettings(max_new_tokens=max_new_tokens), max_obs_tokens=1400,
                         max_context_tokens=max_context_tokens)


def test_scripted_trajectory_through_the_retrieval_server(tiny_indexes, live_server, searcher):
    docs = tiny_indexes["docs"]
    questions = [q["question"] for q in tiny_indexes["questions"][:5]]
    script = [
        '<important_info>[1]</important_info><search_complete>False</search_complete><query>{"query": "first"}</query>',
        '<query>{"query": "second"}</query><information>Doc 1 (Title: Planted) the answer is Zorb</information>',
        "I am not sure what to do.",
        "<important_info>[2, 99]</important_info><search_complete>True</search_complete>",
    ]
    policy = ScriptedPolicy(searcher.tokenizer, script)
    client = RetrievalClient(live_server, token="sesame")
    search = client_search(client, docs, index="dense")
    rollouts = _engine(policy, search, docs).run(questions)
    assert policy.calls == [5, 5, 5, 5]  # every turn is one batch over all active trajectories

    dense = tiny_indexes["retrievers"]["dense"]
    initial = [[h.row for h in hits] for hits in dense.search(questions, 3)]
    first, second = ([h.row for h in hits] for hits in dense.search(["first", "second"], 8))
    for r, rows0 in zip(rollouts, initial):
        rec = r.record
        assert [b.rows for b in rec.blocks] == [tuple(rows0), tuple(first), tuple(second)]
        assert rec.queries == ["first", "second"] and rec.turns == 4 and rec.invalid_turns == 1
        assert rec.forged_information == 1 and rec.stopped and rec.end_reason == "stop"
        assert [b.selected for b in rec.blocks] == [(1,), None, (2,)]  # id 99 is not in the block: dropped
        assert "Planted" not in docs.title(rec.context_rows()[0])
        # the tagged docs first (block 0's Doc 1, block 2's Doc 2), then the untagged block 1 whole
        assert rec.context_rows() == [rows0[0], second[1], *first]
        # state masking: the policy's tokens are exactly the scripted replies; the rest is the environment's
        scripted = sum(len(searcher.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in script)
        assert r.policy_tokens == scripted and r.env_tokens > 0
        assert len(r.response_ids) == len(r.policy_mask) == len(r.logprobs)
        assert CORRECTIVE_OBSERVATION.strip() in r.transcript


def test_searches_stop_at_the_limit_and_the_last_turn_only_tags(tiny_indexes, searcher):
    docs = tiny_indexes["docs"]
    policy = ScriptedPolicy(searcher.tokenizer, ['<query>{"query": "again"}</query>'])
    rollouts = _engine(policy, retriever_search(tiny_indexes["retrievers"]["bm25"]), docs).run(["Who is Mara?"])
    rec = rollouts[0].record
    assert rec.turns == 4 and len(rec.queries) == 3 and rec.end_reason == "turn_limit" and not rec.stopped
    assert len(rec.blocks) == 4  # the initial block and three searches; the fourth query was not searched
    assert rec.unexecuted_queries == 1


def test_a_query_on_the_last_turn_is_never_searched(tiny_indexes, searcher):
    """Issue 18's reproduction (limits 3/8/3/4): after one invalid turn, the fourth turn's query used to be
    searched, and its 8 docs, which the searcher never saw, all went into the context."""
    docs = tiny_indexes["docs"]
    name = docs.title(0)
    query = f'<important_info>[1]</important_info><search_complete>False</search_complete><query>{{"query": "{name}"}}</query>'
    policy = ScriptedPolicy(searcher.tokenizer, ["(no tags)", query, query, query])
    search = retriever_search(tiny_indexes["retrievers"]["bm25"])
    rollout = _engine(policy, search, docs).run([f"Who is {name}?"])[0]
    rec = rollout.record
    assert rec.turns == 4 and rec.invalid_turns == 1 and rec.queries == [name, name]
    assert rec.unexecuted_queries == 1 and rec.end_reason == "turn_limit"
    assert len(rec.blocks) == 3 and all(b.selected == (1,) for b in rec.blocks)
    shown = {row for b in rec.blocks for row in b.rows}
    assert set(rec.context_rows()) <= shown and len(rec.context_rows()) == 3  # one tagged doc of each block
    assert rollout.transcript.count("<information>") == 3  # corrective + two results: every block was shown


def test_docs_cut_from_an_observation_are_not_context(tiny_indexes, searcher):
    docs = tiny_indexes["docs"]
    name = docs.title(0)
    policy = ScriptedPolicy(searcher.tokenizer, [f'<query>{{"query": "{name}"}}</query>', "<search_complete>True</search_complete>"])
    engine = RolloutEngine(policy, S3Strategy(S3_LIMITS), retriever_search(tiny_indexes["retrievers"]["bm25"]), docs,
                           SamplingSettings(max_new_tokens=48), max_obs_tokens=60, max_context_tokens=4096)
    rec = engine.run([f"Who is {name}?"])[0].record
    block = rec.blocks[1]
    assert len(block.rows) == 8 and block.shown is not None and 0 <= block.shown < 8
    assert set(rec.context_rows()) == set(rec.blocks[0].rows) | set(block.rows[: block.shown])


def test_context_limit_ends_a_trajectory(tiny_indexes, searcher):
    docs = tiny_indexes["docs"]
    question = tiny_indexes["questions"][0]["question"]
    policy = ScriptedPolicy(searcher.tokenizer, [f'<query>{{"query": "{question}"}}</query>'])
    engine = _engine(policy, retriever_search(tiny_indexes["retrievers"]["bm25"]), docs, max_context_tokens=1200)
    rollout = engine.run([question])[0]
    rec = rollout.record
    assert rec.end_reason == "context_limit" and rec.turns < 4
    assert len(rollout.prompt_ids) + len(rollout.response_ids) + 48 > 1200


def test_greedy_rollouts_of_the_real_tiny_searcher_are_deterministic_and_batch_independent(tiny_indexes, searcher):
    docs = tiny_indexes["docs"]
    search = retriever_search(tiny_indexes["retrievers"]["dense"])
    questions = [q["question"] for q in tiny_indexes["questions"][:6]]
    first = _engine(searcher, search, docs).run(questions)
    again = _engine(searcher, search, docs).run(questions)
    alone = _engine(searcher, search, docs).run(questions[2:3])
    assert [r.response_ids for r in first] == [r.response_ids for r in again]
    assert first[2].response_ids == alone[0].response_ids
    assert first[2].logprobs == pytest.approx(alone[0].logprobs, abs=1e-4)
    for r in first:
        assert r.policy_tokens > 0 and all(lp <= 0.0 for lp in r.logprobs)
        assert r.record.turns == S3_LIMITS.max_turns  # a random-init model never writes a valid tag


def test_contexts_stage_resumes_after_an_interruption(tiny_indexes):
    cfg, state = tiny_indexes["cfg"], tiny_indexes["state"]
    cfg = cfg.model_copy(update={"inference": cfg.inference.model_copy(update={"shard_rows": 40})})
    store = open_store(cfg)
    test_q = next(m for m in state.questions if m.stats.get("split") == "test")
    spec = contexts_spec(cfg, s3_run(cfg), test_q, state.corpus, state.dense_index, state.bm25_index, state.tiny_models)

    class Interrupted(Exception):
        pass

    def interrupt_after_first_shard(done, total, message=""):
        if message.startswith("contexts"):
            raise Interrupted(message)

    with pytest.raises(Interrupted):
        spec.run(store, interrupt_after_first_shard)
    assert spec.completed(store) is None
    assert store.table_writer("contexts", spec.key).finished_shards() == {0}
    resumed = spec.run(store)
    assert resumed.stats["resumed_shards"] == 1 and resumed.stats["written_shards"] == 2
    rows = store.read_table(resumed).to_pylist()
    assert [r["question_id"] for r in rows] == [q["id"] for q in tiny_indexes["questions"]]
    max_turns = s3_run(cfg).limits.max_turns  # the random searcher always runs out of turns
    assert all(r["run"] == "s3" and r["turns"] == max_turns and r["end_reason"] == "turn_limit" for r in rows)
    assert all(len(r["context_doc_ids"]) == 3 and r["context"].startswith("Doc 1 (Title: ") for r in rows)

    store.fs.rm(store.artifact_path("contexts", spec.key), recursive=True)
    clean = spec.run(store)
    assert clean.content_hash == resumed.content_hash  # greedy: an interrupted run equals a clean one


def test_sampled_mode_keeps_a_seeded_subset_in_order(tiny_indexes):
    """evaluation.max_questions_per_set (the public code's <=3,000 per set) applies where contexts are made."""
    from s3core.agent.inference import baseline_run
    from s3core.config.schema import BaselineConfig

    cfg, state = tiny_indexes["cfg"], tiny_indexes["state"]
    sampled = cfg.model_copy(update={"evaluation": cfg.evaluation.model_copy(update={"max_questions_per_set": 30})})
    test_q = next(m for m in state.questions if m.stats.get("split") == "test")
    run = baseline_run(cfg, BaselineConfig(name="rag-bm25", strategy="naive", retriever="bm25"))
    full = contexts_spec(cfg, run, test_q, state.corpus, state.dense_index, state.bm25_index, state.tiny_models)
    spec = contexts_spec(sampled, run, test_q, state.corpus, state.dense_index, state.bm25_index, state.tiny_models)
    assert spec.key != full.key  # the sample enters the key
    store = open_store(cfg)
    rows = store.read_table(spec.run(store)).to_pylist()
    order = [q["id"] for q in tiny_indexes["questions"]]
    ids = [r["question_id"] for r in rows]
    assert len(rows) == 30 and len(set(ids)) == 30 and ids == sorted(ids, key=order.index)  # in the set's order
