"""The warm start's oracle (s3core/warmstart/oracle.py): it reads trajectories correctly and, playing the
policy in the real rollout engine on the tiny world, writes valid s3 turns that gather the supporting
passages; its noise turns are the stated mistakes."""

from __future__ import annotations

import pytest

from s3core.agent.context import structured_context
from s3core.agent.protocol import parse_query
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


def test_an_under_searching_oracle_stops_after_the_first_hop():
    needs = Needs((("B", "b text."), ("C", "c text.")))
    first_turn = TRAJECTORY.split("<important_info>")[0]
    always = OraclePolicy(tokenizer=None, needs={"Who?": needs}, under_search=1.0)
    assert always.turn_text(first_turn) == "<important_info>[2]</important_info><search_complete>True</search_complete>"
    nothing_kept = "Question: Who?\n<information>\nDoc 1 (Title: A) a text.\n</information>\n"
    assert always.turn_text(nothing_kept).endswith('<query>{"query": "B"}</query>')  # stops only once it has one
    half = OraclePolicy(tokenizer=None, needs={"Who?": needs}, under_search=0.5, seed=3)
    stops = sum(half.turn_text(first_turn).endswith("True</search_complete>") for _ in range(400))
    assert 160 < stops < 240
    with pytest.raises(ValueError, match="under_search"):
        OraclePolicy(tokenizer=None, needs={}, under_search=1.5)


def test_text_queries_keep_the_name_tokens_of_the_passages(tiny_indexes):
    from transformers import AutoTokenizer

    needs = Needs((("B", "b text."), ("C", "c text.")))
    first_turn = TRAJECTORY.split("<important_info>")[0]
    turn = OraclePolicy(tokenizer=None, needs={"Who?": needs}, query_format="text").turn_text(first_turn)
    assert turn.endswith("<search_complete>False</search_complete><query> C</query>")
    assert parse_query(" C") == "C"
    tokenizer = AutoTokenizer.from_pretrained(
        resolve_model_path("tiny:searcher", open_store(tiny_indexes["cfg"]).local_dir(tiny_indexes["state"].tiny_models)))
    name = tiny_indexes["docs"].title(0)
    in_passage = tokenizer(f"born in {name}.", add_special_tokens=False)["input_ids"]
    in_query = tokenizer(f"<query> {name}</query>", add_special_tokens=False)["input_ids"]
    name_tokens = in_query[1:-1]
    assert any(in_passage[i:i + len(name_tokens)] == name_tokens for i in range(len(in_passage)))
    with pytest.raises(ValueError, match="query_format"):
        OraclePolicy(tokenizer=None, needs={}, query_format="xml")


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


class ListDocs:
    """A DocStore stand-in over (title, text) pairs: what answer_needs reads of the corpus."""

    def __init__(self, passages):
        self.passages = passages

    def __len__(self):
        return len(self.passages)

    def title(self, row):
        return self.passages[row][0]

    def text(self, row):
        return self.passages[row][1]


REAL_PASSAGES = [("Paris", "Paris is the capital of France."),
                 ("Lyon", "Lyon is a city in France, 1990 was a year there."),
                 ("Everest", "Mount Everest is the highest mountain, first climbed in 1953."),
                 ("Hillary", "Edmund Hillary climbed Mount Everest in 1953 with Tenzing Norgay.")]


def real_row(question, answers, qid="q1"):
    return {"id": qid, "question": question, "golden_answers": answers, "metadata": "{}"}


def test_without_supporting_ids_the_needs_are_the_answer_passages_best_matching_first():
    needs = needs_by_question([real_row("which country is lyon a city in", ["France"])], ListDocs(REAL_PASSAGES))
    need = needs["which country is lyon a city in"]
    assert need.any_of
    assert need.passages == (REAL_PASSAGES[1], REAL_PASSAGES[0])  # Lyon shares lyon/city; Paris only the answer
    with pytest.raises(ValueError, match="answerable_only"):
        needs_by_question([real_row("capital of Peru?", ["Lima"], "q9")], ListDocs(REAL_PASSAGES), "nq/train")


def test_an_answer_oracle_keeps_any_answer_passage_and_stops_or_names_the_best_one():
    needs = {"Who climbed Everest?": Needs((("Hillary", "Edmund Hillary climbed."), ("Everest", "in 1953.")), any_of=True)}
    oracle = OraclePolicy(tokenizer=None, needs=needs)
    found = ("Question: Who climbed Everest?\n<information>\nDoc 1 (Title: A) a text.\n"
             "Doc 2 (Title: Everest) in 1953.\n</information>\n")
    assert oracle.turn_text(found) == "<important_info>[2]</important_info><search_complete>True</search_complete>"
    missed = "Question: Who climbed Everest?\n<information>\nDoc 1 (Title: A) a text.\n</information>\n"
    assert oracle.turn_text(missed) == ('<important_info>[]</important_info><search_complete>False</search_complete>'
                                        '<query>{"query": "Hillary"}</query>')


# --- the fine-tuning (s3core/warmstart/sft.py) and the `warmstart` stage ------------------------------------
def test_only_policy_tokens_are_targets():
    from s3core.agent.context import TrajectoryRecord
    from s3core.agent.rollout import Rollout
    from s3core.warmstart.sft import IGNORE, example_from_rollout

    rollout = Rollout(record=TrajectoryRecord(question="q"), prompt_ids=[1, 2, 3])
    rollout.extend([10, 11], from_policy=True)
    rollout.extend([20, 21, 22], from_policy=False)  # an <information> block: context, not a target
    rollout.extend([12], from_policy=True)
    example = example_from_rollout(rollout)
    assert example.ids == [1, 2, 3, 10, 11, 20, 21, 22, 12]
    assert example.labels == [IGNORE] * 3 + [10, 11] + [IGNORE] * 3 + [12]


def _tiny_lm(seed: int = 0):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=40, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                        num_key_value_heads=1, intermediate_size=64, max_position_embeddings=64))


def test_the_loss_is_the_mean_cross_entropy_of_labelled_tokens_and_ignores_padding():
    import torch

    from s3core.warmstart.sft import IGNORE, Example, collate_examples, policy_token_loss

    model = _tiny_lm()
    short, long = Example([1, 2, 3], [IGNORE, 2, 3]), Example([4, 5, 6, 7, 8], [IGNORE, IGNORE, 6, IGNORE, 8])
    ids, mask, labels = collate_examples([short, long], pad_id=0)
    assert ids.tolist() == [[1, 2, 3, 0, 0], [4, 5, 6, 7, 8]] and mask.tolist() == [[1, 1, 1, 0, 0], [1] * 5]
    loss = policy_token_loss(model, ids, mask, labels)
    with torch.no_grad():
        logp = [torch.log_softmax(model(input_ids=torch.tensor([e.ids])).logits[0].float(), -1) for e in (short, long)]
    expected = -torch.stack([logp[0][0, 2], logp[0][1, 3], logp[1][1, 6], logp[1][3, 8]]).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)


def test_context_weight_adds_the_other_real_tokens_at_that_weight():
    import torch

    from s3core.warmstart.sft import IGNORE, Example, collate_examples, token_losses

    model = _tiny_lm()
    short, long = Example([1, 2, 3], [IGNORE, 2, 3]), Example([4, 5, 6, 7, 8], [IGNORE, IGNORE, 6, IGNORE, 8])
    batch = collate_examples([short, long], pad_id=0)
    total, policy = token_losses(model, *batch, context_weight=0.25)
    with torch.no_grad():
        logp = [torch.log_softmax(model(input_ids=torch.tensor([e.ids])).logits[0].float(), -1) for e in (short, long)]
    policy_nll = -torch.stack([logp[0][0, 2], logp[0][1, 3], logp[1][1, 6], logp[1][3, 8]])
    context_nll = -torch.stack([logp[1][0, 5], logp[1][2, 7]])  # long's tokens 5 and 7; padding never counts
    torch.testing.assert_close(policy, policy_nll.mean(), rtol=1e-5, atol=1e-5)
    expected = (policy_nll.sum() + 0.25 * context_nll.sum()) / (4 + 0.25 * 2)
    torch.testing.assert_close(total, expected, rtol=1e-5, atol=1e-5)
    assert total.requires_grad and not policy.requires_grad


def test_fine_tuning_learns_a_conditional_reply():
    """The reply depends on the prompt (token 3 -> reply 7 7, token 4 -> reply 9 9): the loss on the policy
    tokens falls from chance (log 40 = 3.7) to near 0."""
    from s3core.warmstart.sft import IGNORE, Example, train_on_examples

    examples = [Example([1, p, 2, r, r], [IGNORE] * 3 + [r, r]) for p, r in ((3, 7), (4, 9))] * 4
    curve = train_on_examples(_tiny_lm(), examples, pad_id=0, steps=60, batch_size=4, lr=1e-2, warmup_fraction=0.1,
                              seed=0, log_every=20)
    assert [p["step"] for p in curve] == [20, 40, 60]
    assert curve[0]["loss"] > 0.5 and curve[-1]["loss"] < 0.05


def test_the_training_device_is_the_gpu_when_there_is_one_and_cuda_without_one_is_an_error(monkeypatch):
    import torch

    from s3core.warmstart.stage import training_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert training_device("auto") == "cpu" and training_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="warmstart.device is cuda"):
        training_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert training_device("auto") == "cuda"


@pytest.mark.gpu
def test_fine_tuning_on_the_gpu_learns_and_hands_back_a_cpu_model():
    from s3core.warmstart.sft import IGNORE, Example, train_on_examples

    model = _tiny_lm()
    examples = [Example([1, p, 2, r, r], [IGNORE] * 3 + [r, r]) for p, r in ((3, 7), (4, 9))] * 4
    curve = train_on_examples(model, examples, pad_id=0, steps=60, batch_size=4, lr=1e-2, warmup_fraction=0.1,
                              seed=0, log_every=20, context_weight=0.1, device="cuda")
    assert curve[0]["loss"] > 0.5 and curve[-1]["loss"] < 0.05
    assert {p.device.type for p in model.parameters()} == {"cpu"}


@pytest.fixture(scope="module")
def warm_start(tiny_indexes):
    from s3core.config.schema import WarmStartConfig
    from s3core.pipeline import prepare

    cfg = tiny_indexes["cfg"].model_copy(update={"warmstart": WarmStartConfig(
        max_questions=24, passes=2, steps=4, batch_size=4, log_every=2, noise=0.5)})
    cfg = cfg.model_copy(update={"searcher": cfg.searcher.model_copy(update={"model": "tiny:searcher_sft"})})
    store = open_store(cfg)
    state = prepare(store, cfg, until="warmstart")
    return {"cfg": cfg, "store": store, "state": state, "dir": store.local_dir(state.warmstart)}


def test_the_warmstart_stage_writes_the_fine_tuned_searcher_beside_the_model_set(warm_start):
    import json

    from transformers import AutoModelForCausalLM

    folder, state = warm_start["dir"], warm_start["state"]
    assert sorted(p.name for p in folder.iterdir()) == ["encoder", "generator", "models.json", "searcher",
                                                        "searcher_sft", "tokenizer", "warmstart.json"]
    AutoModelForCausalLM.from_pretrained(folder / "searcher_sft")
    report = json.loads((folder / "warmstart.json").read_text())
    assert [p["step"] for p in report["train_curve"]] == [2, 4]
    oracle = report["oracle"]
    assert oracle["trajectories"] == 48 and 0 < oracle["complete_share"] <= 1 and oracle["searches_mean"] > 0
    assert state.models == state.warmstart and state.generator_models == state.tiny_models


def test_the_warm_started_searcher_runs_as_the_s3_searcher_and_as_a_baseline(warm_start):
    """`searcher.model: tiny:searcher_sft` resolves in the warm-start artifact; `strategy: s3` baselines
    report an untrained s3 searcher next to the trained one."""
    from dataclasses import replace

    from s3core.agent.inference import baseline_run, s3_run
    from s3core.config.schema import BaselineConfig

    cfg = warm_start["cfg"]
    run = baseline_run(cfg, BaselineConfig(name="s3-warmstart", strategy="s3", model="tiny:searcher_sft"))
    assert run == replace(s3_run(cfg), name="s3-warmstart")  # the searcher's 8-3-3 limits and budgets
    state = warm_start["state"]
    from s3core.agent.stage import contexts_spec

    test_set = next(m for m in state.questions if m.stats.get("split") == "test")
    manifest = contexts_spec(cfg, run, test_set, state.corpus, state.dense_index, state.bm25_index,
                             state.models).run(warm_start["store"])
    rows = warm_start["store"].read_table(manifest).to_pylist()
    assert len(rows) == 100 and {r["run"] for r in rows} == {"s3-warmstart"}
    assert {r["model"] for r in rows} == {"tiny:searcher_sft"}


def test_config_errors_name_the_missing_section():
    from s3core.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match="add `warmstart: {}`"):
        parse_config({"name": "x", "world": {}, "tiny_models": {}, "searcher": {"model": "tiny:searcher_sft"}})
