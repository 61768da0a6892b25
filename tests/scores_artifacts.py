"""Real `scores` artifacts (one Parquet shard each) with chosen per-question values, for the report's tests."""

from __future__ import annotations

import itertools

import pyarrow as pa

from s3core.evaluation.scores import SCORES_SCHEMA
from s3core.store import ArtifactStore, StageResult, StageSpec

_RUNS = itertools.count()


def scores_artifact(store: ArtifactStore, run: str, source: str, genacc: list[int], *, strategy: str = "s3",
                    f1: list[float] | None = None, types: list[str] | None = None, searches: list[int] | None = None,
                    ids: list[str] | None = None):
    """A real scores artifact (one Parquet shard) with the given per-question values."""
    n = len(genacc)
    ids = ids or [f"q{i:03d}" for i in range(n)]
    rows = [{"question_id": ids[i], "data_source": source, "split": "test", "run": run, "strategy": strategy,
             "question": f"question {i}", "golden_answers": ["a"], "context_doc_ids": ["d1", "d2"][: i % 3],
             "turns": 1, "question_type": (types or [""] * n)[i], "searches": (searches or [1] * n)[i],
             "selected": i % 3, "answer": "a", "genacc": bool(genacc[i]), "span": bool(genacc[i]), "judge": False,
             "em": bool(genacc[i]) and i % 2 == 0, "f1": (f1 or [float(g) for g in genacc])[i], "scoring": "span",
             "generator": "g"} for i in range(n)]

    def build(ctx):
        ctx.table_writer().write_shard(0, pa.Table.from_pylist(rows, schema=SCORES_SCHEMA))
        return StageResult(stats={"run": run, "data_source": source, "split": "test", "strategy": strategy,
                                  "questions": n, "genacc_sum": sum(genacc), "em_sum": sum(r["em"] for r in rows),
                                  "f1_sum": sum(r["f1"] for r in rows), "scoring": "span", "setting": "t",
                                  "generator": "g"})

    return StageSpec("scores", {"n": next(_RUNS), "run": run, "source": source}, {}, build).run(store)
