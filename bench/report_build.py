"""How long the evaluation report takes over a large evaluation (issue 24): 10 runs x 3 QA sets x 3,000
questions (the public code's sampled mode), each a real `scores` artifact of 12 Parquet shards in a store.

    .venv/bin/python bench/report_build.py                       # 10 runs, 3 sets, 3,000 questions, 10,000 resamples
    .venv/bin/python bench/report_build.py --runs 4 --questions 500 --repeats 1

Side by side in one process, each timed `--repeats` times (the median is reported):
- manifest:  the comparison table from the manifests' summed stats alone (the report before issue 24);
- report:    the whole report stage (polars over the shards: means, paired bootstrap intervals of every run
             against the naive-RAG run for GenAcc / EM / F1 per set and averaged, breakdowns, CSVs, plots),
             built fresh each time (a new title, so a new key).
The ratio report / manifest says what the trustworthy report costs over the bare table. The scores are
synthetic (each run's GenAcc drawn around its own rate), since only the shapes matter here.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from s3core.config import parse_config  # noqa: E402
from s3core.evaluation.scores import SCORES_SCHEMA  # noqa: E402
from s3core.evaluation.stage import report_spec  # noqa: E402
from s3core.evaluation.summary import comparison_rows, set_metrics  # noqa: E402
from s3core.store import ArtifactStore, StageResult, StageSpec  # noqa: E402

SOURCES = ("nq", "triviaqa", "hotpotqa")
TYPES = ("single_hop", "two_hop", "comparison")


def synthetic_scores(store: ArtifactStore, run: str, source: str, n: int, rate: float, rng: np.random.Generator,
                     shard_rows: int = 256):
    genacc = rng.random(n) < rate
    em = genacc & (rng.random(n) < 0.6)
    f1 = np.where(genacc, rng.uniform(0.5, 1.0, n), rng.uniform(0.0, 0.4, n))
    searches = rng.integers(0, 4, n).astype(np.int32)
    selected = rng.integers(0, 4, n).astype(np.int32)
    strategy = "naive" if run == "rag-dense" else "s3"

    def shard(lo: int, hi: int) -> pa.Table:
        m = hi - lo
        return pa.table({
            "question_id": [f"{source}-{i}" for i in range(lo, hi)], "data_source": [source] * m,
            "split": ["test"] * m, "run": [run] * m, "strategy": [strategy] * m,
            "question": [f"question {i}" for i in range(lo, hi)], "golden_answers": [["answer"]] * m,
            "context_doc_ids": [["d1", "d2", "d3"]] * m, "turns": np.full(m, 2, np.int32),
            "question_type": [TYPES[i % 3] for i in range(lo, hi)], "searches": searches[lo:hi],
            "selected": selected[lo:hi], "answer": ["a"] * m, "genacc": genacc[lo:hi], "span": genacc[lo:hi],
            "judge": np.zeros(m, bool), "em": em[lo:hi], "f1": f1[lo:hi], "scoring": ["span"] * m,
            "generator": ["g"] * m}, schema=SCORES_SCHEMA)

    def build(ctx):
        writer = ctx.table_writer()
        for i, lo in enumerate(range(0, n, shard_rows)):
            writer.write_shard(i, shard(lo, min(n, lo + shard_rows)))
        return StageResult(stats={"run": run, "data_source": source, "split": "test", "strategy": strategy,
                                  "questions": n, "genacc_sum": int(genacc.sum()), "em_sum": int(em.sum()),
                                  "f1_sum": float(f1.sum()), "scoring": "span", "setting": "bench", "generator": "g"})

    return StageSpec("scores", {"run": run, "source": source, "n": n, "rate": rate}, {}, build,
                     code=("evaluation/scores.py",)).run(store)  # made here, not by the scores stage


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--questions", type=int, default=3000)
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        cfg = parse_config({"name": "bench", "store": {"root": f"{tmp}/store"}, "world": {},
                            "inference": {"baselines": [{"name": "rag-dense", "strategy": "naive"}]},
                            "evaluation": {"bootstrap_resamples": args.resamples}})
        store = ArtifactStore(cfg.store.root)
        rng = np.random.default_rng(0)
        runs = ["rag-dense"] + [f"s3@step-{5 * i}" for i in range(1, args.runs)]
        scores = [synthetic_scores(store, run, source, args.questions, 0.3 + 0.02 * i, rng)
                  for i, run in enumerate(runs) for source in SOURCES]
        builds = iter(range(10**6))
        manifest_s, _ = timed(lambda: comparison_rows(set_metrics(scores)), args.repeats)
        report_s, manifest = timed(lambda: report_spec(cfg, scores, title=f"bench {next(builds)}").run(store),
                                   args.repeats)
        print(f"{len(runs)} runs x {len(SOURCES)} sets x {args.questions} questions, {args.resamples} resamples, "
              f"median of {args.repeats}")
        print(f"manifest-only table: {manifest_s * 1000:.1f} ms")
        print(f"full report (polars over shards, paired bootstrap, breakdowns, plots): {report_s:.2f} s")
        print(f"ratio report / manifest-only: {report_s / manifest_s:.0f}x")
        print(f"{runs[-1]} - rag-dense (avg, points: diff, low, high):",
              manifest.stats["genacc_diff_avg"].get(f"{runs[-1]} - rag-dense"))


if __name__ == "__main__":
    main()
