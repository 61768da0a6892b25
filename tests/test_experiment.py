"""The seeded experiment's bookkeeping (s3core/pipeline/experiment.py) and `extends:` in config files."""

from __future__ import annotations

import json

import pytest

from s3core.pipeline.experiment import (
    gain_rows,
    mean_and_spread,
    merge_experiments,
    question_types,
    seed_result,
    seeded_config,
    summary_rows,
    write_experiment,
)

TYPES = {"q1": "two_hop", "q2": "two_hop", "q3": "single_hop", "q4": "single_hop"}


def _scores(run: str, hits: list[bool], turns: int = 0, docs: int = 3) -> list[dict]:
    return [{"question_id": q, "split": "test", "run": run, "genacc": h, "turns": turns, "context_doc_ids": ["d"] * docs}
            for q, h in zip(TYPES, hits)]


def _seed(seed: int, trained_hits: list[bool]) -> object:
    rows = _scores("rag", [False, False, True, True]) + _scores("s3@step-4", trained_hits, turns=2, docs=4)
    return seed_result(seed, rows, TYPES, [{"step": s, "reward_mean": 0.1 * s} for s in (1, 2, 3, 4)])


def test_one_seed_is_scored_per_run_and_question_type():
    result = _seed(1, [True, False, True, True])
    assert result.genacc["rag"] == {"all": 0.5, "single_hop": 1.0, "two_hop": 0.0}
    assert result.genacc["s3@step-4"] == {"all": 0.75, "single_hop": 1.0, "two_hop": 0.5}
    assert result.questions == {"all": 4, "single_hop": 2, "two_hop": 2}
    assert result.turns == {"rag": 0.0, "s3@step-4": 2.0} and result.context_docs["s3@step-4"] == 4.0
    assert result.steps == 4 and result.reward_curve[-1] == (4, pytest.approx(0.4))


def test_mean_and_spread_are_over_seeds_and_gains_are_paired():
    results = [_seed(1, [True, False, True, True]), _seed(2, [True, True, True, True])]
    summary = {row["run"]: row for row in summary_rows(results, ["rag", "s3@step-4"])}
    assert summary["rag"]["all"] == (0.5, 0.0)
    mean, spread = summary["s3@step-4"]["two_hop"]
    assert mean == pytest.approx(0.75) and spread == pytest.approx(0.35355, abs=1e-4)  # sample sd of 0.5 and 1.0
    gain = gain_rows(results, "s3@step-4", ["rag"])[0]
    assert gain["run"] == "s3@step-4 - rag" and gain["two_hop"][0] == pytest.approx(0.75)
    assert mean_and_spread([0.3]) == (0.3, 0.0)


def test_the_experiment_writes_markdown_json_and_two_pngs(tmp_path):
    results = [_seed(1, [True, False, True, True]), _seed(2, [True, True, True, True])]
    path = write_experiment(tmp_path, "t", results, ["rag", "s3@step-4"], "s3@step-4", ["rag"])
    text = path.read_text()
    assert "## GenAcc on the test split" in text and "| s3@step-4 | 0.875 ± 0.177 |" in text and "(genacc_by_type.png)" in text and "(reward_curve.png)" in text
    for png in ("genacc_by_type.png", "reward_curve.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((tmp_path / "results.json").read_text())
    assert [s["seed"] for s in data["seeds"]] == [1, 2]
    assert not list(tmp_path.glob("*.tmp*"))


def test_seeds_run_apart_merge_into_the_report_of_one_run(tmp_path):
    together = write_experiment(tmp_path / "together", "t", [_seed(1, [True, False, True, True]), _seed(2, [True, True, True, True])],
                                ["rag", "s3@step-4"], "s3@step-4", ["rag"])
    for seed, hits in ((2, [True, True, True, True]), (1, [True, False, True, True])):
        write_experiment(tmp_path / f"seed{seed}", "t", [_seed(seed, hits)], ["rag", "s3@step-4"], "s3@step-4", ["rag"])
    merged = merge_experiments([tmp_path / "seed2" / "results.json", tmp_path / "seed1" / "results.json"],
                               tmp_path / "merged", "t")
    assert json.loads((tmp_path / "merged" / "results.json").read_text()) == json.loads(
        (tmp_path / "together" / "results.json").read_text())
    assert merged.read_text() == together.read_text()
    with pytest.raises(ValueError, match="repeat a seed"):
        merge_experiments([tmp_path / "seed1" / "results.json"] * 2, tmp_path / "bad", "t")
    (tmp_path / "junk.json").write_text("{}")
    with pytest.raises(ValueError, match="junk.json: not a results.json"):
        merge_experiments([tmp_path / "junk.json"], tmp_path / "bad", "t")


def test_question_types_come_from_metadata_json_or_default_to_all():
    rows = [{"id": "a", "metadata": json.dumps({"type": "two_hop"})}, {"id": "b", "metadata": ""},
            {"id": "c", "metadata": {"type": "comparison"}}]
    assert question_types(rows) == {"a": "two_hop", "b": "all", "c": "comparison"}


def test_a_seeded_config_sets_the_training_seeds_and_its_own_name(repo_root):
    from s3core.config import load_config

    cfg = load_config(repo_root / "configs" / "tiny-experiment.yaml")
    seeded = seeded_config(cfg, 7)
    assert seeded.seed == 7 and seeded.name == f"{cfg.name}-seed7"
    assert seeded.warmstart == cfg.warmstart  # one warm start, shared: the seeds are RL's


def test_extends_merges_a_base_config(tmp_path):
    from s3core.config import ConfigError, load_config

    (tmp_path / "base.yaml").write_text("name: base\nseed: 1\nworld: {}\nppo: {total_steps: 3, actor_lr: 1.0e-4}\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\nname: child\nppo: {total_steps: 50}\n")
    cfg = load_config(tmp_path / "child.yaml")
    assert (cfg.name, cfg.seed, cfg.ppo.total_steps, cfg.ppo.actor_lr) == ("child", 1, 50, 1e-4)
    (tmp_path / "loop.yaml").write_text("extends: loop.yaml\nname: x\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "loop.yaml")
    (tmp_path / "orphan.yaml").write_text("extends: nowhere.yaml\nname: x\n")
    with pytest.raises(ConfigError, match="names no file"):
        load_config(tmp_path / "orphan.yaml")
