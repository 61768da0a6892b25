"""The warm start's oracle (s3core/warmstart/oracle.py): it reads trajectories correctly and, playing the
policy in the real rollout engine on the tiny world, writes valid s3 turns that gather the supporting
passages; its noise turns are the stated mistakes."""

from __future__ import annotations

from s3core.agent.context import structured_context
from s3core.agent.rollout import RolloutEngine, retriever_search
from s3core.agent.sampling import SamplingSettings
from s3core.agent.strategies import Limits, S3Strategy
from s3core.models.resolve import resolve_model_path
from s3core.pipeline import open_store
from s3core.warmstart.oracle import Needs, OraclePolicy, kept_so_far, latest_block, needs_by_question

LIMITS = Limits(initial_topk=3, topk=8, max_searches=3, max_turns=4, max_selected=3)

TRAJECTORY = """Question: Who?
<information>
Doc 1 (Title: A) a text.
Doc 2 (Title: B) b text.
</information>
<important_info>[2]</important_info><search_complete>False</search_complete><query>{"query": "C"}</query>
<information>
Doc 1 (Title: C) c text.
</information>
"""


def test_the_oracle_reads_blocks_and_what_was_kept():
    needs = Needs((("B", "b text."), ("C", "c text.")))
    assert latest_block(TRAJECTORY) == [(1, "C", "c text.")]
    assert kept_so_far(TRAJECTORY, needs) == {0}
    oracle = OraclePolicy(tokenizer=None, needs={"Who?": needs})
    assert oracle.turn_text(TRAJECTORY) == ("<important_info>[1]</important_info>"
                                            "<search_complete>True</search_complete>")
    first_turn = TRAJECTORY.split("<important_info>")[0]
    assert oracle.turn_text(first_turn) == ('<important_info>[2]</important_info><search_complete>False'
                                            '</search_complete><query>{"query": "C"}</query>')


def test_oracle_trajectories_through_the_engine_gather_the_supporting_passages(tiny_indexes):
    cfg, state, docs = tiny_indexes["cfg"], tiny_indexes["state"], tiny_indexes["docs"]
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        resolve_model_path("tiny:searcher", open_store(cfg).local_dir(state.tiny_models)))
    rows = tiny_indexes["questions"][:60]
    needs = needs_by_question(rows, docs)
    engine = RolloutEngine(OraclePolicy(tokenizer, needs), S3Strategy(LIMITS),
                           retriever_search(tiny_indexes["retrievers"]["dense"]), docs,
                           SamplingSettings(max_new_tokens=64), max_obs_tokens=1400, max_context_tokens=4096)
    rollouts = engine.run([r["question"] for r in rows])
    assert all(r.record.invalid_turns == 0 for r in rollouts)
    complete = []
    for row, r in zip(rows, rollouts):
        context_rows, _ = structured_context(r.record, docs)
        got = {(docs.title(x), docs.text(x)) for x in context_rows}
        complete.append(set(needs[row["question"]].passages) <= got)
    share = sum(complete) / len(complete)
    print(f"oracle contexts with every supporting passage: {share:.2f}")
    assert share >= 0.6


def test_noise_turns_are_the_stated_mistakes():
    needs = Needs((("B", "b text."), ("C", "c text.")))
    oracle = OraclePolicy(tokenizer=None, needs={"Who?": needs}, noise=1.0, seed=3)
    first_turn = TRAJECTORY.split("<important_info>")[0]
    turns = {oracle.turn_text(first_turn) for _ in range(30)}
    assert turns == {
        '<important_info>[2]</important_info><search_complete>False</search_complete><query>{"query": "Who?"}</query>',
        '<important_info>[]</important_info><search_complete>False</search_complete><query>{"query": "C"}</query>',
        "<important_info>[2]</important_info><search_complete>True</search_complete>",
    }
