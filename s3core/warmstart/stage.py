"""The `warmstart` stage: the searcher fine-tuned on noisy oracle trajectories before RL (issue 8).

    warmstart   the model set it was given (the tiny models, or the reader artifact's), extended with
                searcher_sft/ (the fine-tuned searcher as a Hugging Face folder) and warmstart.json (what
                the oracle wrote: trajectories, turns, searches, mistakes, how many gathered every
                supporting passage; and the loss curve)                                          dir

The oracle plays the s3 searcher in the same engine, strategy, limits and token budgets as training (the
s3 run's "8-3-3" limits, `ppo.max_new_tokens_per_turn`, `ppo.max_obs_tokens`, `ppo.max_context_tokens`),
searching the index training searches (`retrieval.naive_retriever`), so the fine-tuned searcher has seen
exactly the kind of sequences PPO will sample. It reads which passages each train question needs from the
questions' `metadata.supporting_ids` (the tiny world writes them; any QA set with that field works), or
else from the gold answers (warmstart/oracle.py `answer_needs`).

Later stages resolve `tiny:searcher_sft` (or `model:searcher_sft`, when `warmstart.init` is a prepared
model such as `model:searcher`; issue 21) and every other name of the set in this artifact. A real QA set
names no supporting passages: the oracle then needs any passage that holds a gold answer (oracle.py). How good the
warm-started searcher is, is measured where every searcher is: as an inference run (a baseline with
`strategy: s3, model: tiny:searcher_sft`) scored by the frozen generator.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

from s3core.agent.context import structured_context
from s3core.agent.inference import s3_run
from s3core.agent.rollout import RolloutEngine, retriever_search
from s3core.agent.sampling import SamplingSettings
from s3core.config.schema import RunConfig
from s3core.models.resolve import MODEL_PREFIX, TINY_PREFIX, copy_model_set, resolve_model_path
from s3core.retrieval.indexes import open_retriever_by_name
from s3core.store import Manifest, StageContext, StageResult, StageSpec
from s3core.warmstart.oracle import OraclePolicy, needs_by_question

OUTPUT_NAME = "searcher_sft"  # the folder in the artifact: `tiny:searcher_sft` in configs


def warmstart_spec(cfg: RunConfig, models: Manifest | None, corpus: Sequence[Manifest], questions: Sequence[Manifest],
                   dense_index: Manifest | None, bm25_index: Manifest | None) -> StageSpec:
    if cfg.warmstart is None:
        raise ValueError("this config has no `warmstart:` section, so there is no warm start to train")
    if models is None:
        raise ValueError("the warm start extends a model set (its output is tiny:searcher_sft or model:searcher_sft): "
                         "add `tiny_models:` or `models:`")
    train = [m for m in questions if m.stats.get("split") == "train"]
    if not train:
        raise ValueError("the warm start imitates the oracle on the train split, and no QA set has split: train")
    name = cfg.retrieval.naive_retriever
    index = {"dense": dense_index, "bm25": bm25_index}[name]
    if index is None:
        raise ValueError(f"the warm start searches the {name} index (retrieval.naive_retriever), which was not built")
    inputs = {"models": models, f"{name}_index": index, **{f"questions/{i:03d}": m for i, m in enumerate(train)},
              **{f"corpus/{i:03d}": m for i, m in enumerate(corpus)}}

    run = s3_run(cfg)
    identity = {"warmstart": cfg.warmstart.model_dump(mode="json", exclude={"device"}), "retriever": name,
                "limits": run.limits.__dict__, "max_new_tokens": run.max_new_tokens, "prompt": run.prompt,
                "max_obs_tokens": cfg.ppo.max_obs_tokens, "max_context_tokens": cfg.ppo.max_context_tokens}

    def build(ctx: StageContext) -> StageResult:
        return build_warmstart(ctx, cfg)

    return StageSpec("warmstart", identity, inputs, build, kind="dir")


def build_warmstart(ctx: StageContext, cfg: RunConfig) -> StageResult:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from s3core.warmstart.sft import example_from_rollout, train_on_examples  # torch: loaded only when this runs

    wcfg, store = cfg.warmstart, ctx.store
    models_dir = store.local_dir(ctx.inputs["models"])
    init = resolve_model_path(wcfg.init, models_dir)
    tokenizer = AutoTokenizer.from_pretrained(init)
    ctx.progress(0, wcfg.steps + 1, f"warm start: the oracle writes {wcfg.passes} trajectories per train question")
    rollouts, questions = oracle_rollouts(ctx, cfg, tokenizer)
    traces = trace_stats(rollouts, questions)
    ctx.progress(0, wcfg.steps + 1, f"warm start: {traces['trajectories']} oracle trajectories, "
                                    f"{traces['complete_share']:.2f} with every supporting passage")
    torch.manual_seed(wcfg.seed)
    model = AutoModelForCausalLM.from_pretrained(init, dtype=torch.float32)
    curve = train_on_examples(model, [example_from_rollout(r) for r in rollouts], tokenizer.pad_token_id,
                              steps=wcfg.steps, batch_size=wcfg.batch_size, lr=wcfg.lr,
                              warmup_fraction=wcfg.warmup_fraction, seed=wcfg.seed, log_every=wcfg.log_every,
                              context_weight=wcfg.context_weight, device=training_device(wcfg.device),
                              progress=lambda d, t, m: ctx.progress(d, t + 1, m))
    out = ctx.staging_dir()
    copy_model_set(models_dir, out)
    model.save_pretrained(out / OUTPUT_NAME, safe_serialization=True)
    tokenizer.save_pretrained(out / OUTPUT_NAME)
    (out / "warmstart.json").write_text(json.dumps({"oracle": traces, "train_curve": curve}, indent=1))
    ctx.progress(wcfg.steps + 1, wcfg.steps + 1, f"warm start done: final loss {curve[-1]['loss']:.3f}")
    return StageResult(stats={"trajectories": traces["trajectories"], "complete_share": traces["complete_share"],
                              "final_loss": curve[-1]["loss"], "model": sft_model_name(cfg)}, staging_dir=out)


def sft_model_name(cfg: RunConfig) -> str:
    """How configs name the fine-tuned searcher: `model:searcher_sft` when it starts from a prepared model,
    else `tiny:searcher_sft` (both resolve to the artifact's searcher_sft/ folder)."""
    return f"{MODEL_PREFIX if cfg.warmstart.init.startswith(MODEL_PREFIX) else TINY_PREFIX}{OUTPUT_NAME}"


def training_device(setting: str) -> str:
    """warmstart.device -> a torch device name; asking for cuda without a GPU is an error, not a silent CPU run."""
    import torch

    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda" and not torch.cuda.is_available():
        raise ValueError("warmstart.device is cuda but torch sees no CUDA GPU here; set it to auto or cpu")
    return setting


def oracle_rollouts(ctx: StageContext, cfg: RunConfig, tokenizer) -> tuple[list, list]:
    """`warmstart.passes` noisy oracle trajectories of every train question (pass p uses seed + p)."""

    store, wcfg = ctx.store, cfg.warmstart
    corpus = [m for key, m in sorted(ctx.inputs.items()) if key.startswith("corpus/")]
    retriever, docs = open_retriever_by_name(store, cfg, cfg.retrieval.naive_retriever, corpus,
                                             ctx.inputs.get("dense_index"), ctx.inputs.get("bm25_index"), ctx.inputs["models"])
    rows = [row for key, m in sorted(ctx.inputs.items()) if key.startswith("questions/")
            for row in store.read_table(m).to_pylist()]
    if wcfg.max_questions is not None:
        rows = rows[:wcfg.max_questions]
    return oracle_trajectories(cfg, tokenizer, rows, retriever, docs, passes=wcfg.passes, noise=wcfg.noise,
                               seed=wcfg.seed, query_format=wcfg.query_format, source="train questions",
                               under_search=wcfg.under_search)


def oracle_trajectories(cfg: RunConfig, tokenizer, rows: Sequence[dict], retriever, docs, *, passes: int,
                        noise: float, seed: int, query_format: str, source: str = "questions",
                        under_search: float = 0.0) -> tuple[list, list]:
    """(rollouts, (needs, docs) per rollout): `passes` oracle trajectories of each question row, pass p with
    seed + p, through the real rollout engine with the config's s3 strategy, limits and token budgets."""

    needs = needs_by_question(rows, docs, source)
    run = s3_run(cfg)
    rollouts, questions = [], []
    for p in range(passes):
        engine = RolloutEngine(OraclePolicy(tokenizer, needs, noise=noise, seed=seed + p,
                                            max_selected=run.limits.max_selected, query_format=query_format,
                                            under_search=under_search),
                               run.strategy_object(), retriever_search(retriever), docs,
                               SamplingSettings(run.max_new_tokens), cfg.ppo.max_obs_tokens, cfg.ppo.max_context_tokens)
        rollouts += engine.run([r["question"] for r in rows])
        questions += [(needs[r["question"]], docs) for r in rows]
    return rollouts, questions


def trace_stats(rollouts: Sequence, questions: Sequence) -> dict[str, Any]:
    """What the oracle wrote: trajectories, mean turns and searches, end reasons, and the share whose context
    holds every supporting passage (an answer passage, for a real QA set)."""

    complete = 0
    for r, (needs, docs) in zip(rollouts, questions):
        rows, _ = structured_context(r.record, docs)
        have = {(docs.title(x), docs.text(x)) for x in rows}
        complete += bool(have & set(needs.passages)) if needs.any_of else set(needs.passages) <= have
    n = max(1, len(rollouts))
    return {"trajectories": len(rollouts), "complete_share": round(complete / n, 4),
            "turns_mean": round(sum(r.record.turns for r in rollouts) / n, 3),
            "searches_mean": round(sum(len(r.record.queries) for r in rollouts) / n, 3),
            "policy_tokens_mean": round(sum(r.policy_tokens for r in rollouts) / n, 1),
            "end_reasons": dict(Counter(r.record.end_reason for r in rollouts))}
