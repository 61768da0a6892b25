"""Choose the frozen generator by measurement (issue 21): GenAcc / EM / F1 on the dev split of a setting,
for each candidate, with the passages that hold a gold answer, with naive top-k RAG, and with no context.

    .venv/bin/python bench/generator_choice.py --config configs/real-small.yaml \
        --candidates model:generator,model:searcher --questions 60 --out docs/results/generator_choice.json

"gold" is up to `naive_topk` passages that contain a gold answer (span_check's rule, the answerable stage's
index), "naive" the dense retriever's top `naive_topk` for the question, "none" an empty context. The gap
gold - naive is the room a searcher can win; none says how much the generator answers from memory. Every
candidate is served as the pipeline serves the generator (generator.backend / generator.serve), on the same
questions (the first `--questions` of each dev set's answerable subset), greedy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from s3core.agent.context import format_docs  # noqa: E402
from s3core.config import load_config  # noqa: E402
from s3core.data.coverage import corpus_tokens  # noqa: E402
from s3core.generation.backends import make_backend  # noqa: E402
from s3core.generation.local_server import LOCAL_SERVERS  # noqa: E402
from s3core.pipeline import open_store, prepare  # noqa: E402
from s3core.retrieval.base import DocStore  # noqa: E402
from s3core.retrieval.indexes import open_naive_retriever  # noqa: E402
from s3core.reward.precompute import answer_and_score  # noqa: E402

CONDITIONS = ("gold", "naive", "none")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--candidates", required=True, help="comma-separated generator model names (model:..., paths)")
    parser.add_argument("--questions", type=int, default=60, help="dev questions per QA set")
    parser.add_argument("--out", type=Path, default=None, help="write the table as JSON here too")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    cfg = load_config(args.config)
    store = open_store(cfg)
    state = prepare(store, cfg, until="bm25_index")
    dev_sets = [m for m in state.usable_questions if m.stats.get("split") == "dev"]
    if not dev_sets:
        raise SystemExit(f"{args.config} has no dev QA set: the choice is made on dev, never on test")
    docs = DocStore.from_manifests(store, state.corpus)
    retriever, _ = open_naive_retriever(store, cfg, state.corpus, state.dense_index, state.bm25_index, state.base_models)
    index = corpus_tokens(tuple(m.content_hash for m in state.corpus),
                          lambda: (f"{docs.title(r)} {docs.text(r)}" for r in range(len(docs))))
    models_dir = store.local_dir(state.generator_models) if state.generator_models else None
    k = cfg.retrieval.naive_topk

    table = []
    for questions_manifest in dev_sets:
        rows = store.read_table(questions_manifest).to_pylist()[: args.questions]
        texts, golds = [r["question"] for r in rows], [r["golden_answers"] for r in rows]
        contexts = {
            "gold": [format_docs(docs, _gold_rows(index, g, k)) for g in golds],
            "naive": [format_docs(docs, [h.row for h in hits]) for hits in retriever.search(texts, k)],
            "none": ["" for _ in rows],
        }
        source = f"{questions_manifest.stats.get('data_source')}/dev"
        for candidate in args.candidates.split(","):
            generator = cfg.generator.model_copy(update={"model": candidate, "max_empty_share": 1.0})
            run_cfg = cfg.model_copy(update={"generator": generator})
            backend = make_backend(generator, models_dir)
            try:
                for condition in CONDITIONS:
                    started = time.perf_counter()
                    _, scores = asyncio.run(answer_and_score(backend, contexts[condition], texts, golds, run_cfg))
                    seconds = time.perf_counter() - started
                    table.append({"qa_set": source, "generator": candidate, "context": condition, "questions": len(rows),
                                  "genacc": _mean([s.genacc for s in scores]), "em": _mean([s.em for s in scores]),
                                  "f1": _mean([s.f1 for s in scores]), "seconds": round(seconds, 1)})
                    print(json.dumps(table[-1]), flush=True)
            finally:
                LOCAL_SERVERS.stop_all()
    print_table(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(table, indent=2) + "\n")


def _gold_rows(index, golden_answers, k: int) -> list[int]:
    rows: list[int] = []
    for answer in golden_answers:
        rows += [r for r in index.passages_with(answer, limit=k) if r not in rows]
        if len(rows) >= k:
            break
    return rows[:k]


def _mean(values) -> float:
    values = [float(v) for v in values]
    return round(sum(values) / len(values), 4) if values else 0.0


def print_table(table: list[dict]) -> None:
    print("\n| QA set | generator | gold | naive | none | gold - naive |\n|---|---|---|---|---|---|")
    keys = sorted({(r["qa_set"], r["generator"]) for r in table})
    for qa_set, generator in keys:
        got = {r["context"]: r["genacc"] for r in table if (r["qa_set"], r["generator"]) == (qa_set, generator)}
        print(f"| {qa_set} | {generator} | {got.get('gold', 0):.3f} | {got.get('naive', 0):.3f} | {got.get('none', 0):.3f} "
              f"| {got.get('gold', 0) - got.get('naive', 0):+.3f} |")


if __name__ == "__main__":
    main()
