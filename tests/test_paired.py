"""The report's paired differences and breakdowns (s3core/evaluation/paired.py, issue 24): the bootstrap
against a plain loop with the same seed, win/tie/loss counts, the unweighted average, missing questions, the
outcome classes, and the report's files."""

from __future__ import annotations

import numpy as np
import pytest

from scores_artifacts import scores_artifact
from s3core.evaluation.paired import AVERAGE, BootstrapSettings, breakdown_rows, paired_rows, scores_frame
from s3core.store import ArtifactStore

def loop_interval(diff: np.ndarray, resamples: int, rng: np.random.Generator, level: float = 0.95):
    """The plain bootstrap loop the vectorised one must equal: resample r draws rng.integers(0, n, n)."""
    means = [diff[rng.integers(0, len(diff), size=len(diff))].mean() for _ in range(resamples)]
    tail = 100 * (1 - level) / 2
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail)), np.asarray(means)


S3 = [1, 1, 0, 1, 0, 1, 1, 0, 1, 1, 0]
RAG = [0, 1, 0, 0, 0, 1, 1, 1, 0, 1, 0]


def test_the_paired_bootstrap_equals_a_plain_loop_with_the_same_seed(tmp_path):
    store = ArtifactStore(str(tmp_path / "store"))
    scores = [scores_artifact(store, "s3", "nq", S3), scores_artifact(store, "rag", "nq", RAG, strategy="naive")]
    settings = BootstrapSettings(resamples=2000, seed=7)
    rows = paired_rows(scores_frame(store, scores), ["rag"], settings)
    (row,) = [r for r in rows if r["metric"] == "genacc" and r["data_source"] == "nq"]
    diff = np.array(S3, float) - np.array(RAG, float)
    lo, hi, _ = loop_interval(diff, 2000, np.random.default_rng([7, 0]))
    assert row["lo"] == pytest.approx(lo, abs=1e-12) and row["hi"] == pytest.approx(hi, abs=1e-12)
    assert row["diff"] == pytest.approx(diff.mean()) and row["questions"] == 11
    assert (row["wins"], row["ties"], row["losses"]) == (3, 7, 1)
    assert row["run_mean"] == pytest.approx(7 / 11) and row["reference_mean"] == pytest.approx(5 / 11)
    assert row["lo"] < row["diff"] < row["hi"]
    again = paired_rows(scores_frame(store, scores), ["rag"], settings)
    assert again == rows  # seeded: the same intervals every time


def test_the_average_resamples_each_source_and_a_missing_question_is_left_out(tmp_path):
    store = ArtifactStore(str(tmp_path / "store"))
    hq_s3, hq_rag = [1, 0, 1, 1, 0, 0, 1], [0, 0, 1, 0, 0, 1, 0]
    scores = [scores_artifact(store, "s3", "nq", S3[:-1], ids=[f"q{i:03d}" for i in range(10)]),  # lacks q010
              scores_artifact(store, "rag", "nq", RAG, strategy="naive"),
              scores_artifact(store, "s3", "hq", hq_s3), scores_artifact(store, "rag", "hq", hq_rag, strategy="naive")]
    settings = BootstrapSettings(resamples=1000, seed=3)
    rows = {(r["data_source"], r["metric"]): r for r in paired_rows(scores_frame(store, scores), ["rag"], settings)}
    assert rows[("nq", "genacc")]["questions"] == 10 and rows[("hq", "genacc")]["questions"] == 7
    # hq (sorted first): the plain loop; nq: the loop over the reference's 11 questions, dropping q010's draws
    d_hq = np.array(hq_s3, float) - np.array(hq_rag, float)
    _, _, hq_means = loop_interval(d_hq, 1000, np.random.default_rng([3, 0]))
    rng = np.random.default_rng([3, 1])
    d_nq = np.array(S3[:-1] + [np.nan], float) - np.array(RAG, float)
    nq_means = []
    for _ in range(1000):
        drawn = d_nq[rng.integers(0, 11, size=11)]
        nq_means.append(np.nanmean(drawn))
    assert rows[("nq", "genacc")]["lo"] == pytest.approx(np.percentile(nq_means, 2.5), abs=1e-12)
    average = rows[(AVERAGE, "genacc")]
    both = (hq_means + np.asarray(nq_means)) / 2
    assert average["lo"] == pytest.approx(np.percentile(both, 2.5), abs=1e-12)
    assert average["hi"] == pytest.approx(np.percentile(both, 97.5), abs=1e-12)
    assert average["diff"] == pytest.approx((rows[("nq", "genacc")]["diff"] + rows[("hq", "genacc")]["diff"]) / 2)
    assert average["questions"] == 17
    with pytest.raises(ValueError, match="reference run.*'nope'.*compare_to"):
        paired_rows(scores_frame(store, scores), ["nope"], settings)


def test_breakdowns_count_types_searches_and_outcome_classes(tmp_path):
    store = ArtifactStore(str(tmp_path / "store"))
    types = ["single_hop", "two_hop", "comparison", "two_hop", "single_hop", "two_hop", "comparison", "single_hop",
             "two_hop", "single_hop", "comparison"]
    scores = [scores_artifact(store, "s3", "nq", S3, types=types, searches=[i % 4 for i in range(11)]),
              scores_artifact(store, "rag", "nq", RAG, strategy="naive", types=types)]
    rows = breakdown_rows(scores_frame(store, scores), "rag")
    outcome = {r["group"]: r["questions"] for r in rows if r["by"] == "outcome vs rag"}
    assert outcome == {"gained": 3, "kept": 4, "lost": 1, "never": 3}
    by_type = {(r["run"], r["group"]): r["questions"] for r in rows if r["by"] == "question type"}
    assert by_type[("s3", "single_hop")] == 4 and by_type[("s3", "two_hop")] == 4 and by_type[("s3", "comparison")] == 3
    searches = [r["group"] for r in rows if r["by"] == "searches" and r["run"] == "s3"]
    assert searches == ["0", "1", "2", "3"]  # numeric order
    for by in ("question type", "searches", "selected documents"):
        assert sum(r["questions"] for r in rows if r["by"] == by and r["run"] == "s3") == 11
