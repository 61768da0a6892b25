"""Where does a searcher lose to the oracle? Per question type, on one split: searches, queries, contexts, GenAcc.

    .venv/bin/python bench/searcher_diagnosis.py --config configs/tiny-experiment.yaml --split dev \\
        --searcher oracle --searcher artifacts/warmstart/<key>/files/searcher_sft --searcher <folder>@1.0

Each `--searcher` is `oracle` (the warm start's noise-free oracle, which knows each question's supporting
passages), `oracle-title` (the oracle keeping every passage whose title is a supporting passage's title,
instead of the supporting passage only), or a Hugging Face searcher folder, optionally `@temperature`
(default greedy, as inference runs). Every one plays the config's s3 run (strategy, limits, prompt, token
budgets) on the split's questions through the real rollout engine and dense index; the contexts are scored
by the config's reader (`tiny:reader`, span check), the frozen generator of the tiny world.

Per question type it prints: GenAcc; `searched`, the share of questions with at least one query;
`query=title`, the share whose queries include a supporting passage's title (for a two-hop question, the
bridge entity's name); `complete`, the share whose final context holds every supporting passage; and the
mean number of context documents. Only the tiny world's questions carry the `metadata.supporting_ids` and
`metadata.type` this needs. Runs on the CPU, about 10-30 s per searcher for 100 questions.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def title_oracle(base):
    """The oracle, but keeping every passage of a supporting passage's entity (title), not just that passage."""
    from s3core.warmstart.oracle import QUESTION_LINE, kept_so_far, latest_block

    class TitleOracle(base):
        def turn_text(self, trajectory: str) -> str:
            needs = self.needs[QUESTION_LINE.search(trajectory).group(1).strip()]
            block = latest_block(trajectory)
            titles = {title for title, _ in needs.passages}
            useful = [n for n, title, _ in block if title in titles][:self.max_selected]
            have = {needs.passages[i][0] for i in kept_so_far(trajectory, needs)}
            have |= {title for n, title, _ in block if n in useful}
            missing = [title for title, _ in needs.passages if title not in have]
            return self._turn(useful, done=not missing, query=missing[0] if missing else None)

    return TitleOracle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "tiny-experiment.yaml")
    parser.add_argument("--split", default="dev", help="a QA split of the config (never tune on test)")
    parser.add_argument("--searcher", action="append", required=True, help="oracle, oracle-title, or FOLDER[@T]")
    parser.add_argument("--limit", type=int, default=None, help="the first N questions of the split")
    args = parser.parse_args()

    from transformers import AutoTokenizer

    from s3core.agent.context import structured_context
    from s3core.agent.inference import s3_run
    from s3core.agent.policy import TransformersPolicy
    from s3core.agent.rollout import RolloutEngine, retriever_search
    from s3core.agent.sampling import SamplingSettings
    from s3core.config import load_config
    from s3core.generation.extractive_reader import ExtractiveReader
    from s3core.pipeline import open_store, prepare
    from s3core.reader.stage import reader_hits
    from s3core.reader.training import reader_questions
    from s3core.retrieval.indexes import open_retriever_by_name
    from s3core.warmstart.oracle import OraclePolicy, needs_by_question

    cfg = load_config(args.config)
    store = open_store(cfg)
    state = prepare(store, cfg, until="reader")  # finds (or builds) the world, models, index and reader
    retriever, docs = open_retriever_by_name(store, cfg, cfg.retrieval.naive_retriever, state.corpus,
                                             state.dense_index, state.bm25_index, state.models)
    models = store.local_dir(state.models)
    split = [m for m in state.questions if m.stats.get("split") == args.split]
    if not split:
        raise SystemExit(f"{args.config} has no QA set with split: {args.split}")
    rows = [r for m in split for r in store.read_table(m).to_pylist()][:args.limit]
    scored = reader_questions(rows, docs, args.split)  # the same order as rows
    types = {q.question: q.qtype for q in scored}
    needs = needs_by_question(rows, docs, args.split)
    run = s3_run(cfg)
    reader = ExtractiveReader(str(models / "reader"), max_length=cfg.reader.max_length if cfg.reader else 384)
    tokenizer = AutoTokenizer.from_pretrained(models / "searcher")
    questions = [r["question"] for r in rows]

    for spec in args.searcher:
        name, _, temperature = spec.partition("@")
        if name in ("oracle", "oracle-title"):
            kind = OraclePolicy if name == "oracle" else title_oracle(OraclePolicy)
            policy = kind(tokenizer, needs, noise=0.0, max_selected=run.limits.max_selected, query_format="text")
        else:
            policy = TransformersPolicy(name, device="cpu", batch_size=64)
        engine = RolloutEngine(policy, run.strategy_object(), retriever_search(retriever), docs,
                               SamplingSettings(run.max_new_tokens, float(temperature or 0), 0.95, seed=1),
                               cfg.ppo.max_obs_tokens, cfg.ppo.max_context_tokens)
        start = time.time()
        rollouts = engine.run(questions)
        contexts = [structured_context(r.record, docs)[0] for r in rollouts]
        hits = reader_hits(reader, scored, docs, contexts)
        stats: dict[str, Counter] = defaultdict(Counter)
        for row, rollout, context, hit in zip(rows, rollouts, contexts, hits):
            need = needs[row["question"]].passages
            queries = [q.strip() for q in rollout.record.queries]
            for key in ("all", types[row["question"]]):
                s = stats[key]
                s["n"] += 1
                s["genacc"] += hit
                s["searched"] += bool(queries)
                s["query=title"] += any(q in {title for title, _ in need} for q in queries)
                s["complete"] += set(need) <= {(docs.title(x), docs.text(x)) for x in context}
                s["docs"] += len(context)
        print(f"== {spec} ({time.time() - start:.0f} s)")
        for key, s in sorted(stats.items(), key=lambda kv: kv[0] != "all"):
            n = s["n"]
            print(f"  {key:11s} n={n:4d} genacc={s['genacc'] / n:.3f} searched={s['searched'] / n:.2f} "
                  f"query=title={s['query=title'] / n:.2f} complete={s['complete'] / n:.2f} docs={s['docs'] / n:.1f}")


if __name__ == "__main__":
    main()
