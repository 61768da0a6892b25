"""The evaluation stage's parts on CPU (s3core/evaluation): the sampled mode, per-dataset metrics with the
unweighted average, the report (tables, CSV, real PNG plots), and how a checkpoint to evaluate is found
(an event's staging path that has moved into the store, "latest", the config saved with it)."""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path

import pytest

from s3core.config import parse_config
from scores_artifacts import scores_artifact
from s3core.data.sampling import sample_questions
from s3core.evaluation.stage import report_spec
from s3core.evaluation.summary import comparison_rows, run_order, scored_before, set_metrics
from s3core.models.fingerprint import weights_fingerprint
from s3core.rl.checkpoints import (
    CheckpointError,
    as_checkpoint,
    checkpoint_to_evaluate,
    latest_checkpoint,
    locate_checkpoint,
)
from s3core.store import ArtifactStore, Manifest

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_KEYS = itertools.count()


# --- sampled mode -----------------------------------------------------------------------------------------
def test_sampling_keeps_small_sets_whole_and_draws_large_ones_reproducibly_in_order():
    rows = list(range(10))
    assert sample_questions(rows, None, 42) is rows and sample_questions(rows, 10, 42) is rows
    first, again = sample_questions(rows, 4, 42), sample_questions(rows, 4, 42)
    assert first == again and len(first) == 4 and first == sorted(first)
    assert sample_questions(rows, 4, 7) != first  # another seed, another sample (for this seed pair)


# --- metrics and the comparison table ---------------------------------------------------------------------
def _scores_manifest(run: str, source: str, n: int, genacc: int, em: int = 0, f1: float = 0.0,
                     setting: str = "t", created: str = "2026-01-01T00:00:00+00:00") -> Manifest:
    key = f"k{next(_KEYS):04d}"
    return Manifest(stage="scores", key=key, kind="table", uri=f"/nowhere/{key}", config_hash="c", code_hash="c",
                    content_hash=f"h-{key}", created_at=created,
                    stats={"run": run, "data_source": source, "split": "test", "questions": n, "genacc_sum": genacc,
                           "em_sum": em, "f1_sum": f1, "scoring": "span", "setting": setting, "generator": "g"})


def test_the_average_is_unweighted_over_data_sources():
    scores = [_scores_manifest("rag", "nq", 2, 2, em=1, f1=1.5), _scores_manifest("rag", "hotpotqa", 100, 50)]
    per_set = set_metrics(scores)
    assert per_set[0]["genacc"] == 1.0 and per_set[0]["em"] == 0.5 and per_set[0]["f1"] == 0.75
    (row,) = comparison_rows(per_set)
    assert row == {"run": "rag", "nq": 100.0, "hotpotqa": 50.0, "avg": 75.0}  # weighted would be 50.98
    assert comparison_rows(per_set, "em")[0]["nq"] == 50.0
    with pytest.raises(ValueError, match="unknown metric"):
        comparison_rows(per_set, "accuracy")


def test_runs_are_ordered_checkpoints_first_then_baselines_as_given():
    per_set = set_metrics([_scores_manifest(r, "nq", 1, 0) for r in ("rag", "s3@step-20", "direct", "s3@step-5")])
    assert run_order(per_set) == ["s3@step-5", "s3@step-20", "rag", "direct"]
    # a run without a set gets an empty cell, and its average covers the sets it has
    mixed = set_metrics([_scores_manifest("a", "nq", 1, 1), _scores_manifest("a", "hq", 1, 0),
                         _scores_manifest("b", "nq", 2, 1)])
    assert comparison_rows(mixed)[1] == {"run": "b", "nq": 50.0, "hq": None, "avg": 50.0}


def test_earlier_scores_of_the_setting_are_found_newest_first(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    old = _scores_manifest("rag", "nq", 4, 1, created="2026-01-01T00:00:00+00:00")
    new = _scores_manifest("rag", "nq", 4, 3, created="2026-02-01T00:00:00+00:00")
    other_setting = _scores_manifest("rag", "nq", 4, 4, setting="other")
    other_set = _scores_manifest("rag", "bioasq", 4, 4)
    for m in (old, new, other_setting, other_set, _scores_manifest("s3@step-1", "nq", 4, 2)):
        store.write_manifest(m)
    found = scored_before(store, "t", "g", [("nq", "test")], runs_to_skip=["s3@step-1"])
    assert [m.key for m in found] == [new.key]
    assert scored_before(store, "t", "another-generator", [("nq", "test")]) == []


# --- the report -------------------------------------------------------------------------------------------
def test_report_writes_tables_intervals_csv_and_real_plots(tmp_path):
    cfg = parse_config({"name": "t", "store": {"root": str(tmp_path / "store")}, "world": {},
                        "inference": {"baselines": [{"name": "rag", "strategy": "naive"}]},
                        "evaluation": {"bootstrap_resamples": 500}})
    store = ArtifactStore(cfg.store.root)
    scores = [scores_artifact(store, "s3@step-2", "nq", [1, 1, 1, 0]), scores_artifact(store, "rag", "nq", [0, 1, 0, 0], strategy="naive"),
              scores_artifact(store, "s3@step-2", "hotpotqa", [1, 0]), scores_artifact(store, "rag", "hotpotqa", [0, 0], strategy="naive")]
    curve = [{"step": 1, "reward_mean": -0.25, "genacc_s3": 0.25, "kl_mean": 0.0},
             {"step": 2, "reward_mean": 0.25, "genacc_s3": 0.5}]
    manifest = report_spec(cfg, scores, reward_curve=curve, title="Eval").run(store)
    folder = store.local_dir(manifest, verify=True)
    assert sorted(p.name for p in folder.iterdir()) == ["breakdown.csv", "comparison.csv", "paired.csv", "paired_diff.png",
                                                        "per_dataset.png", "report.md", "reward_curve.png"]
    report = (folder / "report.md").read_text()
    assert "| s3@step-2 | 75.0 | 50.0 | 62.5 |" in report and "| rag | 25.0 | 0.0 | 12.5 |" in report
    assert "![GenAcc per data source](per_dataset.png)" in report and "(reward_curve.png)" in report
    assert "2 steps; last step reward +0.250, GenAcc 0.500" in report
    assert "## Paired differences" in report and "500 resamples" in report
    assert "| s3@step-2 | rag | nq | 4 | 75.0 | 25.0 | +50.0 |" in report and "| 2/2/0 |" in report
    assert "### By outcome vs rag" in report and "### By searches" in report
    for png in ("per_dataset.png", "reward_curve.png", "paired_diff.png"):
        data = (folder / png).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5_000  # a drawn figure, not an empty file
    comparison = (folder / "comparison.csv").read_text().strip().splitlines()
    assert len(comparison) == 1 + 4 and "genacc_diff_lo" in comparison[0]
    assert manifest.stats["genacc_avg"] == {"s3@step-2": 62.5, "rag": 12.5}
    diff, lo, hi = manifest.stats["genacc_diff_avg"]["s3@step-2 - rag"]
    assert diff == 50.0 and lo <= diff <= hi
    # the same inputs are the same report: found, not rebuilt
    assert report_spec(cfg, scores, reward_curve=curve, title="Eval").completed(store).key == manifest.key
    with pytest.raises(ValueError, match="nothing to report"):
        report_spec(cfg, [])


# --- which checkpoint ---------------------------------------------------------------------------------------
def _checkpoint(run_dir: Path, step: int, weights: bytes = b"w", done: bool = True, name: str = "t",
                store_root: str = "") -> Path:
    folder = run_dir / f"step-{step:06d}"
    (folder / "actor").mkdir(parents=True)
    (folder / "actor" / "model.safetensors").write_bytes(weights)
    (folder / "run_config.json").write_text(json.dumps({"name": name, "store": {"root": store_root}, "world": {}}))
    (folder / "trainer_state.json").write_text(json.dumps({"step": step, "metrics": [{"step": step}]}))
    if done:
        (folder / "done").write_text("1\n")
    return folder


def test_a_checkpoint_is_a_complete_step_folder(tmp_path):
    folder = _checkpoint(tmp_path, 5)
    assert as_checkpoint(folder).step == 5 and as_checkpoint(folder / "actor").folder == folder
    assert as_checkpoint(folder).label == "s3@step-5"
    with pytest.raises(CheckpointError, match="not a complete checkpoint"):
        as_checkpoint(_checkpoint(tmp_path, 6, done=False))
    with pytest.raises(CheckpointError, match="not a checkpoint folder"):
        as_checkpoint(tmp_path)


def test_the_weights_fingerprint_follows_content_not_path(tmp_path):
    a = _checkpoint(tmp_path / "a", 1, b"same")
    b = _checkpoint(tmp_path / "b", 1, b"same")
    c = _checkpoint(tmp_path / "c", 1, b"other")
    assert weights_fingerprint(a / "actor") == weights_fingerprint(b / "actor") != weights_fingerprint(c / "actor")


def test_a_moved_checkpoint_is_found_in_the_completed_train_artifact(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    files = Path(store.artifact_path("train", "k1")) / "files"
    _checkpoint(files, 3)
    store.write_manifest(Manifest(stage="train", key="k1", kind="dir", uri=str(files.parent), config_hash="c",
                                  code_hash="c", content_hash="h", stats={"run": "t"}))
    gone = tmp_path / "staging" / "step-000003"
    assert locate_checkpoint(store, gone, "k1", 3).folder == files / "step-000003"
    with pytest.raises(CheckpointError, match="pruned"):
        locate_checkpoint(store, gone, "k1", 1)
    with pytest.raises(CheckpointError, match="pass train_key"):
        locate_checkpoint(store, gone)


def test_latest_is_the_newest_complete_checkpoint_of_the_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("S3_CACHE_DIR", str(tmp_path / "cache"))
    root = str(tmp_path / "store")
    store = ArtifactStore(root)
    files = Path(store.artifact_path("train", "k1")) / "files"
    old = _checkpoint(files, 2, store_root=root)
    store.write_manifest(Manifest(stage="train", key="k1", kind="dir", uri=str(files.parent), config_hash="c",
                                  code_hash="c", content_hash="h", stats={"run": "t"}))
    running = store.staging_root() / "train" / "k2"
    newer = _checkpoint(running, 1, store_root=root)
    _checkpoint(running, 2, done=False, store_root=root)  # being written: not a candidate
    _checkpoint(store.staging_root() / "train" / "k3", 9, name="someone-else", store_root=root)
    os.utime(old / "done", (time.time() - 60, time.time() - 60))
    assert latest_checkpoint(store, "t").folder == newer
    with pytest.raises(CheckpointError, match="no complete checkpoint of 'nobody'"):
        latest_checkpoint(store, "nobody")
    # without a config, an evaluation takes the setting the checkpoint was trained in
    found, cfg = checkpoint_to_evaluate(str(newer), None)
    assert found.folder == newer and cfg.name == "t" and cfg.store.root == root
    found, _ = checkpoint_to_evaluate("latest", cfg)
    assert found.folder == newer
    with pytest.raises(CheckpointError, match="needs a config_path"):
        checkpoint_to_evaluate("latest", None)
