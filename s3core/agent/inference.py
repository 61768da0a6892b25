"""The inference stage: contexts of the s3 searcher and of every baseline, per QA set (DESIGN.md section 2,
"Searcher protocol", "Final context", "Baselines"; section 3).

    contexts   one row per question: the run's queries, the doc ids of every block it saw, the ids it
               selected, the final context (ids and text) and token counts          table, resumable by shard

A *run* is a named strategy with its model: `s3` (searcher.model, or a trained checkpoint folder), and each
`inference.baselines` entry. Policy runs go through the batched rollout engine with greedy decoding by
default (`inference.temperature`; the public code sampled here). Policy-free runs: `naive` (top-k of the
question), `direct` and `cot` (no retrieval, empty context).

`context` follows `searcher.context_rule`: structured (from the environment's record, the default) or
public_code (re-parsed from the decoded prompt + transcript, for the paper's exact numbers). `context_doc_ids`
always come from the record. The retrievers run in-process here (the engine also drives the retrieval
server through `rollout.client_search`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from s3core.agent.context import (
    dedupe_by_text,
    format_docs,
    public_code_context,
    public_code_transcript,
    structured_context,
)
from s3core.agent.rollout import Rollout, RolloutEngine, retriever_search
from s3core.agent.sampling import SamplingSettings
from s3core.agent.strategies import Limits, make_strategy
from s3core.config.schema import BaselineConfig, RunConfig
from s3core.data.formats import question_type
from s3core.data.sampling import sample_questions
from s3core.models.fingerprint import weights_fingerprint
from s3core.models.resolve import resolve_model_path
from s3core.prompts import load_prompt
from s3core.retrieval.base import DocStore
from s3core.retrieval.indexes import open_retriever_by_name
from s3core.store import Manifest, StageContext, StageResult
from s3core.store.stage import write_missing_shards


class PolicyCheckpoint(Protocol):
    """A trained searcher checkpoint as the s3 run needs it (rl/checkpoints.py's Checkpoint is one)."""

    @property
    def actor(self) -> Path: ...  # the Hugging Face folder of the policy

    @property
    def label(self) -> str: ...  # the run name its evaluation is reported under, e.g. 's3@step-20'


CONTEXTS_SCHEMA = pa.schema([
    ("question_id", pa.string()), ("data_source", pa.string()), ("split", pa.string()), ("question", pa.string()),
    ("golden_answers", pa.list_(pa.string())), ("question_type", pa.string()), ("run", pa.string()),
    ("strategy", pa.string()), ("model", pa.string()), ("turns", pa.int32()), ("invalid_turns", pa.int32()),
    ("forged_information", pa.int32()),
    ("unexecuted_queries", pa.int32()), ("end_reason", pa.string()), ("queries", pa.list_(pa.string())),
    ("retrieved_doc_ids", pa.list_(pa.list_(pa.string()))), ("selected_doc_ids", pa.list_(pa.string())),
    ("context_doc_ids", pa.list_(pa.string())), ("context", pa.string()),
    ("prompt_tokens", pa.int32()), ("policy_tokens", pa.int32()), ("env_tokens", pa.int32()),
])


@dataclass(frozen=True)
class InferenceRun:
    """A named strategy with its model and limits: what one contexts artifact holds."""

    name: str
    strategy: str
    model: str | None
    retriever: str | None  # dense | bm25 | None (no retrieval)
    limits: Limits | None
    max_new_tokens: int
    policy_dir: str | None = None  # a trained checkpoint's actor folder (keyed by its weights, not its path)
    prompt: str | None = None      # the strategy's prompt template, when not its own (s3: searcher.prompt)

    def strategy_object(self):
        """The rollout strategy of this run (policy-driven runs only)."""
        return make_strategy(self.strategy, self.limits, self.prompt)


def s3_run(cfg: RunConfig, checkpoint: PolicyCheckpoint | None = None) -> InferenceRun:
    """The s3 searcher's run: "8-3-3" limits from `searcher`; the policy is `searcher.model`, or a trained
    checkpoint, reported as `s3@step-N`."""
    s = cfg.searcher
    limits = Limits(initial_topk=s.initial_topk, topk=s.topk_per_query, max_searches=s.max_search_turns,
                    max_turns=s.turn_budget, max_selected=s.max_selected_per_turn)
    if checkpoint is None:
        return InferenceRun("s3", "s3", s.model, cfg.retrieval.naive_retriever, limits, cfg.ppo.max_new_tokens_per_turn,
                            prompt=s.prompt)
    return InferenceRun(checkpoint.label, "s3", f"checkpoint:{checkpoint.label}", cfg.retrieval.naive_retriever, limits,
                        cfg.ppo.max_new_tokens_per_turn, policy_dir=str(checkpoint.actor), prompt=s.prompt)


def baseline_run(cfg: RunConfig, b: BaselineConfig) -> InferenceRun:
    retriever = b.retriever or ("bm25" if b.strategy == "deepretrieval" else cfg.retrieval.naive_retriever)
    if b.strategy in ("direct", "cot"):
        return InferenceRun(b.name, b.strategy, None, None, None, b.max_new_tokens_per_turn)
    if b.strategy == "s3":  # an s3 searcher this run did not train (the warm start): the searcher's limits
        return replace(s3_run(cfg), name=b.name, model=b.model)
    if b.strategy == "naive":
        return InferenceRun(b.name, b.strategy, None, retriever, Limits(b.topk, b.topk, 0, 0), b.max_new_tokens_per_turn)
    searches = 1 if b.strategy == "deepretrieval" else b.max_searches
    initial = b.topk if b.strategy == "ircot" else 0
    limits = Limits(initial_topk=initial, topk=b.topk, max_searches=searches, max_turns=searches + 1)
    return InferenceRun(b.name, b.strategy, b.model, retriever, limits, b.max_new_tokens_per_turn)


def inference_runs(cfg: RunConfig, checkpoint: PolicyCheckpoint | None = None) -> list[InferenceRun]:
    """The s3 run (the trained `checkpoint` when given) and every baseline of `inference.baselines`."""
    runs = [s3_run(cfg, checkpoint)] if cfg.inference.run_s3 else []
    return runs + [baseline_run(cfg, b) for b in cfg.inference.baselines]


def eval_question_sets(cfg: RunConfig, questions: Sequence[Manifest]) -> list[Manifest]:
    """The QA sets that get contexts: those whose split is in inference.splits."""
    return [m for m in questions if m.stats.get("split") in cfg.inference.splits]


def contexts_identity(cfg: RunConfig, run: InferenceRun) -> dict[str, Any]:
    inf, ev = cfg.inference, cfg.evaluation
    identity: dict[str, Any] = {"run": {k: v for k, v in asdict(run).items() if k != "policy_dir"},
                                "shard_rows": inf.shard_rows}
    if run.policy_dir is not None:  # the weights, wherever they are read from (staging folder or the store)
        identity["weights"] = weights_fingerprint(Path(run.policy_dir))
    if ev.max_questions_per_set is not None:
        identity["sample"] = {"max_questions_per_set": ev.max_questions_per_set, "seed": ev.sample_seed}
    if run.model is not None:
        identity.update(temperature=inf.temperature, top_p=inf.top_p, seed=inf.seed,
                        max_obs_tokens=cfg.ppo.max_obs_tokens, max_context_tokens=cfg.ppo.max_context_tokens,
                        prompt=load_prompt(run.strategy_object().prompt_name).text)
    if run.strategy == "s3":
        identity["context_rule"] = cfg.searcher.context_rule
    if ev.max_context_docs is not None:
        identity["max_context_docs"] = ev.max_context_docs
    return identity




def _policy_model_path(ctx: StageContext, run: InferenceRun) -> str:
    if run.policy_dir is not None:
        return run.policy_dir
    models = ctx.store.local_dir(ctx.inputs["tiny_models"]) if "tiny_models" in ctx.inputs else None
    return resolve_model_path(run.model, models)


def open_policy(cfg: RunConfig, model_path: str):
    """The rollout policy backend the searcher config names."""
    if cfg.searcher.policy_backend == "vllm":
        from s3core.agent.vllm_policy import EngineSettings, VLLMPolicy  # vLLM: only on this path

        engine = cfg.searcher.vllm
        return VLLMPolicy(model_path, EngineSettings(gpu_memory_utilization=engine.gpu_memory_utilization,
                                                     enforce_eager=engine.enforce_eager, max_model_len=engine.max_model_len,
                                                     dtype=cfg.searcher.dtype), seed=cfg.seed)
    import torch

    from s3core.agent.policy import TransformersPolicy  # torch: only when a policy runs

    dtype = cfg.searcher.dtype if torch.cuda.is_available() else "float32"  # bf16 matmuls crawl on CPU
    return TransformersPolicy(model_path, dtype=dtype, batch_size=cfg.searcher.rollout_batch_size)


def build_contexts(ctx: StageContext, cfg: RunConfig, run: InferenceRun) -> StageResult:
    ev = cfg.evaluation
    questions = sample_questions(ctx.store.read_table(ctx.inputs["questions"]).to_pylist(), ev.max_questions_per_set,
                                 ev.sample_seed)
    source = ctx.inputs["questions"].stats

    def open_worker():
        docs, search = None, None
        # the policy before the retriever's encoder: a vLLM engine starts before this process loads a model
        policy = open_policy(cfg, _policy_model_path(ctx, run)) if run.model is not None else None
        if run.retriever is not None:

            corpus = [m for key, m in sorted(ctx.inputs.items()) if key.startswith("corpus/")]
            retriever, docs = open_retriever_by_name(ctx.store, cfg, run.retriever, corpus, ctx.inputs.get("dense_index"),
                                                     ctx.inputs.get("bm25_index"), ctx.inputs.get("tiny_models"))
            search = retriever_search(retriever)
        if policy is None:
            return lambda chunk: [policy_free_row(q, run, docs, search, ev.max_context_docs) for q in chunk]
        inf = cfg.inference
        engine = RolloutEngine(policy, run.strategy_object(), search, docs,
                               SamplingSettings(run.max_new_tokens, inf.temperature, inf.top_p, seed=inf.seed),
                               cfg.ppo.max_obs_tokens, cfg.ppo.max_context_tokens)

        def work(chunk: list[dict]) -> list[dict]:
            rollouts = engine.run([q["question"] for q in chunk])
            return [rollout_row(q, run, r, docs, cfg.searcher.context_rule, ev.max_context_docs)
                    for q, r in zip(chunk, rollouts)]
        return work

    label = f"contexts {run.name} on {source.get('data_source')}/{source.get('split')}"
    counts = write_missing_shards(ctx, questions, cfg.inference.shard_rows, open_worker, CONTEXTS_SCHEMA,
                                  _shard_stats, label)
    return StageResult(stats={"run": run.name, "strategy": run.strategy, "data_source": source.get("data_source"),
                              "split": source.get("split"), **counts})


def _shard_stats(rows: list[dict]) -> dict[str, int]:
    return {"questions": len(rows), "turns": sum(r["turns"] for r in rows),
            "invalid_turns": sum(r["invalid_turns"] for r in rows), "policy_tokens": sum(r["policy_tokens"] for r in rows),
            "stopped": sum(r["end_reason"] == "stop" for r in rows)}


def _base_row(q: dict, run: InferenceRun) -> dict[str, Any]:
    return {"question_id": q["id"], "data_source": q["data_source"], "split": q["split"], "question": q["question"],
            "golden_answers": list(q["golden_answers"]), "question_type": question_type(q), "run": run.name,
            "strategy": run.strategy, "model": run.model or ""}



def policy_free_row(q: dict, run: InferenceRun, docs: DocStore | None, search,
                    max_context_docs: int | None = None) -> dict[str, Any]:
    rows = search([q["question"]], run.limits.topk)[0] if run.strategy == "naive" else []
    ids = [docs.doc_id(r) for r in rows] if rows else []
    context_rows = dedupe_by_text(docs, rows)[:max_context_docs] if rows else []
    return {**_base_row(q, run), "turns": 0, "invalid_turns": 0, "forged_information": 0, "unexecuted_queries": 0,
            "end_reason": "no_policy", "queries": [q["question"]] if rows else [],
            "retrieved_doc_ids": [ids] if rows else [], "selected_doc_ids": [],
            "context_doc_ids": [docs.doc_id(r) for r in context_rows],
            "context": format_docs(docs, context_rows) if rows else "",
            "prompt_tokens": 0, "policy_tokens": 0, "env_tokens": 0}


def rollout_context(r: Rollout, docs: DocStore, context_rule: str, strategy: str = "s3",
                    max_docs: int | None = None) -> tuple[list[int], str]:
    """The final context of one trajectory (rows from the record, text by `context_rule` for s3 runs): the
    one rule behind the contexts stage and the training reward."""
    rows, context = structured_context(r.record, docs, max_docs)
    if strategy == "s3" and context_rule == "public_code":
        context = public_code_context(public_code_transcript(r.record, docs, r.transcript), max_docs)
    return rows, context


def rollout_row(q: dict, run: InferenceRun, r: Rollout, docs: DocStore, context_rule: str,
                max_context_docs: int | None = None) -> dict[str, Any]:
    record = r.record
    rows, context = rollout_context(r, docs, context_rule, run.strategy, max_context_docs)
    selected = [docs.doc_id(b.seen_rows[i - 1]) for b in record.blocks if b.selected for i in b.selected]
    return {**_base_row(q, run), "turns": record.turns, "invalid_turns": record.invalid_turns,
            "forged_information": record.forged_information, "unexecuted_queries": record.unexecuted_queries,
            "end_reason": record.end_reason, "queries": record.queries,
            "retrieved_doc_ids": [[docs.doc_id(x) for x in b.rows] for b in record.blocks],
            "selected_doc_ids": selected, "context_doc_ids": [docs.doc_id(x) for x in rows], "context": context,
            "prompt_tokens": len(r.prompt_ids), "policy_tokens": r.policy_tokens, "env_tokens": r.env_tokens}
