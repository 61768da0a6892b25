"""The `train` stage end to end on the default tiny world: the DeepSpeed trainer subprocess, checkpoints
with `done` markers, checkpoint events, keep-last pruning, and resume equivalence after an interruption
(s3core/rl/stage.py, trainer.py; DESIGN.md section 3 "Training").

The generator is the tiny generator in-process (random-init, so GenAcc and rewards are 0: the learning
itself is tested on a toy task in test_rl_learning.py); everything else is the real s3 loop.
"""

from __future__ import annotations

import math

import pytest

from s3core.pipeline import open_store, prepare
from s3core.rl.checkpoints import complete_checkpoints
from s3core.rl.stage import CHECKPOINT_EVENT, final_policy_dir, train_spec

TIMING = {"rollout_s", "reward_s", "update_s", "weight_sync_s"}
# measured in each attempt's first steps (ppo.sampler_check_steps), so a resumed run measures other steps
DIAGNOSTICS = TIMING | {"sampler_logp_gap"}


@pytest.fixture(scope="module")
def training(tiny_indexes):
    cfg = tiny_indexes["cfg"]
    cfg = cfg.model_copy(update={
        "generator": cfg.generator.model_copy(update={"backend": "transformers", "serve": "none", "max_new_tokens": 8}),
        "reward": cfg.reward.model_copy(update={"use_judge": False}),
        "ppo": cfg.ppo.model_copy(update={"train_batch_size": 4, "mini_batch_size": 2, "total_steps": 3, "save_every": 1,
                                          "keep_last": 2, "max_new_tokens_per_turn": 12, "kl_coef": 0.001}),
    })
    store = open_store(cfg)
    state = prepare(store, cfg, until="training_pool")
    spec = train_spec(cfg, state.training_pool, state.naive_rag, state.corpus, state.dense_index, state.bm25_index,
                      state.tiny_models)
    events = []
    manifest = spec.run(store, events=lambda name, payload: events.append((name, payload)))
    return {"cfg": cfg, "store": store, "state": state, "spec": spec, "manifest": manifest, "events": events}


def _metrics(store, manifest):
    import pyarrow.parquet as pq

    rows = pq.read_table(store.local_dir(manifest) / "metrics.parquet").to_pylist()
    return [{k: v for k, v in row.items() if k not in DIAGNOSTICS} for row in rows]


def _sampler_gaps(store, manifest):
    import pyarrow.parquet as pq

    return pq.read_table(store.local_dir(manifest) / "metrics.parquet").column("sampler_logp_gap").to_pylist()


def _tensorboard_steps(run_dir, tag="reward/reward_mean"):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = EventAccumulator(str(run_dir / "tensorboard"))
    board.Reload()
    return [event.step for event in board.Scalars(tag)]


class Stop(Exception):
    """Raised from the checkpoint event: the stage dies right after the first checkpoint."""


def _interrupt_after_first_checkpoint(store, spec) -> None:
    def stop_after_first_checkpoint(name, payload):
        raise Stop(f"stopping after {name} step {payload['step']}")

    with pytest.raises(Stop):
        spec.run(store, events=stop_after_first_checkpoint)


def test_training_writes_checkpoints_and_events(training):
    store, manifest, events = training["store"], training["manifest"], training["events"]
    run_dir = store.local_dir(manifest)
    assert [p.name for p in complete_checkpoints(run_dir)] == ["step-000002", "step-000003"]  # keep_last 2
    assert [(name, payload["step"]) for name, payload in events] == [(CHECKPOINT_EVENT, s) for s in (1, 2, 3)]
    assert all(payload["run"] == training["cfg"].name and payload["key"] == manifest.key for _, payload in events)
    rows = _metrics(store, manifest)
    assert [r["step"] for r in rows] == [1.0, 2.0, 3.0] and manifest.stats["steps"] == 3
    assert _tensorboard_steps(run_dir) == [1, 2, 3] and _tensorboard_steps(run_dir, "ppo/kl_mean") == [1, 2, 3]
    max_turns = training["cfg"].searcher.max_search_turns + 1  # the random searcher always runs out of turns
    for row in rows:
        assert row["turns_mean"] == max_turns and row["policy_tokens_mean"] > 0 and row["gbr_same"] == 4.0
        assert row["reward_mean"] == 0.0  # the random tiny generator answers nothing right
    # the warm-up counts PPO steps from lr 0: the critic's 1% of 3 steps is one step, the actor has none
    lr = training["cfg"].ppo
    assert [r["critic_lr"] for r in rows] == [0.0, lr.critic_lr, lr.critic_lr]
    assert [r["actor_lr"] for r in rows] == [lr.actor_lr] * 3
    # the rollouts sampled from the learner's own weights: its log-probs of the sampled tokens agree in the two
    # checked steps (ppo.sampler_check_steps), and the third step is not measured
    gaps = _sampler_gaps(store, manifest)
    assert all(0.0 <= g < 1e-4 for g in gaps[:2]) and math.isnan(gaps[2]), gaps
    from transformers import AutoModelForCausalLM

    from s3core.models.resolve import resolve_model_path

    trained = AutoModelForCausalLM.from_pretrained(final_policy_dir(run_dir))
    start = AutoModelForCausalLM.from_pretrained(
        resolve_model_path("tiny:searcher", store.local_dir(training["state"].tiny_models)))
    # rewards are 0, but the entropy bonus and the KL term still move the policy: training really stepped
    assert any(not a.equal(b) for a, b in zip(trained.parameters(), start.parameters()))


def test_an_interrupted_run_resumes_and_matches_an_uninterrupted_one(training):
    store, spec, clean = training["store"], training["spec"], training["manifest"]
    expected = _metrics(store, clean)
    store.fs.rm(store.artifact_path("train", spec.key), recursive=True)
    _interrupt_after_first_checkpoint(store, spec)
    assert spec.completed(store) is None
    staging = store.dir_staging("train", spec.key, resume=True)
    assert [p.name for p in complete_checkpoints(staging)] == ["step-000001"]

    events = []
    resumed = spec.run(store, events=lambda name, payload: events.append(payload["step"]))
    assert events == [2, 3]  # only the steps after the checkpoint were trained again
    assert _metrics(store, resumed) == expected  # exactly: seeded sampling, restored optimizer and RNG
    assert _tensorboard_steps(store.local_dir(resumed)) == [1, 2, 3]  # the killed attempt's extra steps purged


def test_a_run_resumes_from_checkpoints_saved_without_the_optimizer_state(training):
    """ppo.checkpoint_optimizer: false (disks that cannot hold Adam's state): the checkpoints hold no ZeRO
    partition files, and a resume restores the weights, data cursor and RNG; Adam restarts, so only the
    steps before the interruption match the full-state run."""
    cfg = training["cfg"]
    cfg = cfg.model_copy(update={"ppo": cfg.ppo.model_copy(update={"checkpoint_optimizer": False, "total_steps": 2})})
    store, state = training["store"], training["state"]
    spec = train_spec(cfg, state.training_pool, state.naive_rag, state.corpus, state.dense_index, state.bm25_index,
                      state.tiny_models)
    _interrupt_after_first_checkpoint(store, spec)
    staging = store.dir_staging("train", spec.key, resume=True)
    [first] = complete_checkpoints(staging)
    assert list(first.glob("engine/actor/*model_states.pt")) and not list(first.rglob("*optim_states.pt"))

    events = []
    resumed = spec.run(store, events=lambda name, payload: events.append(payload["step"]))
    assert events == [2]
    rows = _metrics(store, resumed)
    full = _metrics(store, training["manifest"])
    assert rows[0] == full[0] and [r["step"] for r in rows] == [1.0, 2.0]
    # step 2 samples before it updates: from the restored weights and RNG, its rollouts are the full run's
    rollout_side = ("response_tokens_mean", "policy_tokens_mean", "searches_mean", "turns_mean", "genacc_s3")
    assert {k: rows[1][k] for k in rollout_side} == {k: full[1][k] for k in rollout_side}
