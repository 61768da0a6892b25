"""The `reader` stage: the tiny world's reader trained, frozen and measured (issue 8).

    reader   the tiny models extended with reader/ (the span model as a Hugging Face folder, with its
             tokenizer), and metrics.json (the loss curve, and dev-split GenAcc with the gold passages, with
             naive top-k RAG and with no context, overall and per question type)                      dir

The artifact holds copies of the tiny models beside the reader (a few MB), so every later stage resolves
`tiny:*` names, `tiny:reader` included, in one folder: the pipeline passes it on in place of tiny_models.

The gap between "gold" and "naive" GenAcc is the room a searcher can win; "none" is 0 by construction (an
extractive reader cannot answer from memory). GenAcc here is span_check, as the tiny world configures it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from s3core.config.schema import RunConfig
from s3core.data.answers import span_check
from s3core.models.resolve import copy_model_set, resolve_model_path
from s3core.retrieval.base import DocStore
from s3core.retrieval.indexes import open_retriever_by_name
from s3core.store import Manifest, StageContext, StageResult, StageSpec

CONDITIONS = ("gold", "naive", "none")


def reader_spec(cfg: RunConfig, tiny_models: Manifest, corpus: Sequence[Manifest], questions: Sequence[Manifest],
                dense_index: Manifest | None, bm25_index: Manifest | None) -> StageSpec:
    if cfg.reader is None:
        raise ValueError("this config has no `reader:` section, so there is no reader to train")
    by_split = {m.stats.get("split"): m for m in questions}
    missing = [s for s in ("train", "dev") if s not in by_split]
    if missing:
        raise ValueError(f"the reader trains on a train split and is measured on a dev split; missing: {missing}")
    name = cfg.retrieval.naive_retriever
    index = {"dense": dense_index, "bm25": bm25_index}[name]
    if index is None:
        raise ValueError(f"the reader's naive-RAG measurement searches the {name} index, which was not built")
    inputs = {"tiny_models": tiny_models, "questions/train": by_split["train"], "questions/dev": by_split["dev"],
              f"{name}_index": index, **{f"corpus/{i:03d}": m for i, m in enumerate(corpus)}}
    identity = {"reader": cfg.reader.model_dump(mode="json"), "naive_retriever": name,
                "naive_topk": cfg.retrieval.naive_topk}

    def build(ctx: StageContext) -> StageResult:
        return build_reader(ctx, cfg)

    return StageSpec("reader", identity, inputs, build, kind="dir")


def build_reader(ctx: StageContext, cfg: RunConfig) -> StageResult:
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from s3core.reader.training import reader_questions, train_reader  # torch: loaded only when this runs

    rcfg = cfg.reader
    store = ctx.store
    corpus = [m for key, m in sorted(ctx.inputs.items()) if key.startswith("corpus/")]
    docs = DocStore.from_manifests(store, corpus)
    train = reader_questions(store.read_table(ctx.inputs["questions/train"]).to_pylist(), docs, "train questions")
    dev_rows = store.read_table(ctx.inputs["questions/dev"]).to_pylist()
    dev = reader_questions(dev_rows, docs, "dev questions")

    init = resolve_model_path(rcfg.init, store.local_dir(ctx.inputs["tiny_models"]))
    torch.manual_seed(rcfg.seed)
    tokenizer = AutoTokenizer.from_pretrained(init)
    # no dropout: the examples are redrawn every step, and attention dropout costs ~2.5x per step on a CPU
    model = AutoModelForQuestionAnswering.from_pretrained(init, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    curve = train_reader(model, tokenizer, train, docs, rcfg, lambda d, t, m: ctx.progress(d, t + 1, m))

    out = ctx.staging_dir()
    copy_model_set(store.local_dir(ctx.inputs["tiny_models"]), out)
    model.save_pretrained(out / "reader", safe_serialization=True)
    tokenizer.save_pretrained(out / "reader")
    ctx.progress(rcfg.steps, rcfg.steps + 1, "reader: measuring dev GenAcc with gold, naive and no context")
    # the retriever opens only now: FAISS's OpenMP threads would otherwise compete with training for the cores
    retriever, _ = open_retriever_by_name(store, cfg, cfg.retrieval.naive_retriever, corpus, ctx.inputs.get("dense_index"),
                                          ctx.inputs.get("bm25_index"), ctx.inputs["tiny_models"])
    naive_rows = [[h.row for h in hits] for hits in retriever.search([q.question for q in dev], cfg.retrieval.naive_topk)]
    dev_metrics = measure_reader(str(out / "reader"), dev, docs, naive_rows, rcfg.max_length)
    (out / "metrics.json").write_text(json.dumps({"train_curve": curve, "dev": dev_metrics}, indent=1))
    ctx.progress(rcfg.steps + 1, rcfg.steps + 1, f"reader dev GenAcc: {dev_metrics['genacc']}")
    return StageResult(stats={"dev_genacc": dev_metrics["genacc"], "final_loss": curve[-1]["loss"] if curve else None},
                       staging_dir=out)


def measure_reader(model_dir: str, questions, docs, naive_rows: Sequence[Sequence[int]], max_length: int) -> dict[str, Any]:
    """GenAcc (span_check) of the reader on `questions` with the gold passages, the naive rows, and nothing."""
    from s3core.generation.extractive_reader import ExtractiveReader  # torch: loaded only when this runs

    reader = ExtractiveReader(model_dir, max_length=max_length)
    rows_by_condition = {"gold": [q.supporting_rows for q in questions], "naive": list(naive_rows),
                         "none": [[] for _ in questions]}
    hits = {condition: reader_hits(reader, questions, docs, rows) for condition, rows in rows_by_condition.items()}
    types = sorted({q.qtype for q in questions})
    by_type = {t: {c: _mean([h for h, q in zip(hits[c], questions) if q.qtype == t]) for c in CONDITIONS} for t in types}
    return {"questions": len(questions), "genacc": {c: _mean(hits[c]) for c in CONDITIONS}, "by_type": by_type}


def reader_hits(reader, questions, docs, rows: Sequence[Sequence[int]]) -> list[bool]:
    """Per question, whether the reader's answer from those passage rows (as the generator would see them) passes
    span_check against the gold answers."""
    from s3core.reader.training import context_text  # torch: loaded only when this runs

    contexts = [context_text(docs, r, q.question) for q, r in zip(questions, rows)]
    answers = reader.answer([q.question for q in questions], contexts)
    return [span_check(a, q.golden_answers) for a, q in zip(answers, questions)]


def _mean(values: Sequence[bool]) -> float:
    return round(sum(values) / len(values), 4) if values else float("nan")
