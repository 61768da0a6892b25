"""Every shipped config loads; bad values get messages that name the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from s3core.config import ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def test_the_three_settings_ship():
    assert {p.stem for p in CONFIGS} >= {"tiny", "paper-7b", "mirage"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_loads_and_starts_with_how_to_run(path):
    cfg = load_config(path)
    assert cfg.name == path.stem
    assert path.read_text().splitlines()[0].lower().startswith("# how to run")


def test_paper_config_holds_the_paper_settings():
    cfg = load_config(REPO / "configs" / "paper-7b.yaml")
    assert (cfg.searcher.topk_per_query, cfg.searcher.max_selected_per_turn, cfg.searcher.max_search_turns) == (8, 3, 3)
    assert (cfg.ppo.train_batch_size, cfg.ppo.mini_batch_size, cfg.ppo.actor_lr, cfg.ppo.critic_lr) == (120, 30, 1e-6, 1e-5)
    assert (cfg.ppo.kl_coef, cfg.ppo.entropy_coef, cfg.ppo.temperature, cfg.ppo.top_p) == (0.001, 0.001, 0.6, 0.95)
    assert cfg.retrieval.dense.encoder == "intfloat/e5-base-v2" and cfg.generator.model == "Qwen/Qwen2.5-14B-Instruct"
    assert cfg.reward.kind == "gbr"


_GGUF = {"searcher": {"source": {"kind": "file", "path": "searcher.gguf"}}}


def _base(**extra):
    return {"name": "t", "world": {}, "tiny_models": {}, **extra}


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        (_base(ppo={"train_batch_size": 120, "mini_batch_size": 7}), r"ppo: mini_batch_size \(7\) must divide .* such as 6"),
        (_base(ppo={"learning_rate": 1}), r"ppo\.learning_rate: unknown field"),
        (_base(ppo={"estimator": "grpo"}), r"ppo: estimator: grpo .* set ppo\.samples_per_question to 2 or more"),
        (_base(ppo={"estimator": "grpo", "samples_per_question": 4, "train_batch_size": 8, "mini_batch_size": 8,
                    "critic_warmup_steps": 5}), r"critic_warmup_steps \(5\) .* estimator grpo has no critic"),
        (_base(ppo={"total_steps": 10, "critic_warmup_steps": 10}), r"critic_warmup_steps \(10\) must be below total_steps"),
        (_base(ppo={"train_batch_size": 10, "mini_batch_size": 4, "samples_per_question": 3}),
         r"train_batch_size x samples_per_question \(30\): .* such as 3"),
        (_base(corpus={"parts": [{"name": "w", "source": {"kind": "url", "url": "ftp://x"}}]}), r"must start with http"),
        (_base(corpus={"parts": [{"name": "w", "source": {"kind": "url", "url": "http://x", "sha256": "abc"}}]}), r"64 hex digits"),
        ({"name": "t", "world": {}, "searcher": {"model": "tiny:searcher"}}, r"no `tiny_models:` section"),
        ({"name": "t", "tiny_models": {}, "world": {}, "searcher": {"model": "tiny:critic"}}, r"unknown tiny model 'tiny:critic'"),
        ({"name": "t"}, r"read the tiny world, but there is no `world:` section"),
        (_base(questions={"sets": [{"name": "m", "split": "test", "format": "mirage", "source": {"kind": "file", "path": "b.json"}}]}), r"needs mirage_subset"),
        ({"seed": 1}, r"name: required field is missing"),
        (_base(corpus={"parts": [{"name": "a"}, {"name": "a"}]}), r"repeat; give each part its own name"),
        (_base(models=_GGUF, searcher={"model": "model:searcher_sft"}), r"no `warmstart:` section to train it"),
        (_base(models=_GGUF, warmstart={}, searcher={"model": "model:searcher_sft"}),
         r"warmstart.init \('tiny:searcher'\) is not a prepared model, so the warm start is named tiny:searcher_sft"),
        (_base(models={"searcher_sft": _GGUF["searcher"]}), r"searcher_sft is the warm start's output"),
        (_base(retrieval={"recall_ks": [1, 3, 3]}), r"recall_ks \[1, 3, 3\]: give distinct positive k"),
    ],
)
def test_invalid_values_name_the_field_and_fix(data, pattern):
    with pytest.raises(ConfigError, match=pattern):
        parse_config(data, source="test.yaml")


def test_yaml_syntax_error_names_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nppo:\n  clip_ratio: [0.2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: line \d+"):
        load_config(bad)


def test_missing_file_points_at_configs(tmp_path):
    with pytest.raises(ConfigError, match="configs/"):
        load_config(tmp_path / "nope.yaml")


def test_a_warm_start_of_a_prepared_searcher_is_named_model_searcher_sft():
    cfg = parse_config({"name": "t", "models": _GGUF, "warmstart": {"init": "model:searcher"},
                        "searcher": {"model": "model:searcher_sft"},
                        "corpus": {"parts": [{"name": "w", "source": {"kind": "file", "path": "c.jsonl"}}]},
                        "questions": {"sets": [{"name": "q", "split": "train", "source": {"kind": "file", "path": "q.jsonl"}}]},
                        "retrieval": {"dense": {"encoder": "model:searcher"}},
                        "generator": {"model": "model:searcher"}}, source="test.yaml")
    from s3core.warmstart.stage import sft_model_name

    assert sft_model_name(cfg) == "model:searcher_sft"
    assert sft_model_name(parse_config(_base(warmstart={}))) == "tiny:searcher_sft"
