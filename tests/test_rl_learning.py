"""PPO and GRPO through DeepSpeed actually learn (s3core/rl/ppo.py; DESIGN.md section 5).

Toy task, seeded, on CPU (and on a CUDA GPU, marked gpu): a random-init tiny Qwen2-style policy (the tiny-model builder, real tokenizer)
answers one fixed prompt with 8 sampled tokens; the reward is the fraction of those tokens that fall in a
fixed TARGET set holding 10% of the vocabulary. A uniform policy scores ~0.1; the test requires the mean
reward to rise from below 0.2 to above 0.8 within a bounded number of steps, and the weights to move.
The same learner (DeepSpeed ZeRO-2 engines, state masking, GAE critic or GRPO groups) trains the searcher.
A critic warm-up step (`ppo.critic_warmup_steps`) moves the critic and leaves the actor exactly as it was.
"""

from __future__ import annotations

import math

import pytest
import torch

from s3core.agent.context import TrajectoryRecord
from s3core.agent.policy import SamplingSettings, TransformersPolicy
from s3core.agent.rollout import Rollout
from s3core.config.schema import PPOConfig
from s3core.rl.batch import collate
from s3core.rl.ppo import PPOLearner

RESPONSE_TOKENS = 8
MAX_STEPS = 40


def _target(tokenizer) -> set[int]:
    special = set(tokenizer.all_special_ids)
    ordinary = [i for i in range(len(tokenizer)) if i not in special]
    return set(ordinary[: len(ordinary) // 10])


def _toy_learner(policy_dir, ppo: PPOConfig, device: str = "cpu"):
    """(tokenizer, learner, rollout policy over the learner's actor, the actor's weights before the engine)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(policy_dir)
    model = AutoModelForCausalLM.from_pretrained(policy_dir, dtype=torch.float32)
    before = [p.detach().clone() for p in model.parameters()]
    learner = PPOLearner(model, ppo, temperature=1.0)
    policy = TransformersPolicy(str(policy_dir), device=device, model=learner.policy_model, tokenizer=tokenizer)
    return tokenizer, learner, policy, before


def _sample(policy, prompt: list[int], n: int, tokens: int, seed: int) -> tuple[list, list[Rollout]]:
    """n sampled answers to the prompt (T = 1) and their rollouts, every response token a policy token."""
    outputs = policy.continue_sequences([prompt] * n, SamplingSettings(max_new_tokens=tokens, temperature=1.0, top_p=1.0, seed=seed))
    return outputs, [Rollout(TrajectoryRecord("toy"), prompt, list(o.tokens), [1] * len(o.tokens), list(o.logprobs))
                     for o in outputs]


def _run(policy_dir, estimator: str, group_size: int, device: str = "cpu", bf16: bool = False) -> tuple[list[float], bool]:
    ppo = PPOConfig(estimator=estimator, train_batch_size=32 // group_size, samples_per_question=group_size,
                    mini_batch_size=16, actor_lr=6e-3, critic_lr=6e-3,
                    kl_coef=0.0, entropy_coef=0.0, critic_warmup_ratio=0.0, zero_stage=2, bf16=bf16,
                    gradient_checkpointing=False, total_steps=MAX_STEPS, save_every=MAX_STEPS)
    tokenizer, learner, policy, before = _toy_learner(policy_dir, ppo, device)
    target = _target(tokenizer)
    prompt = tokenizer("Say the words.", add_special_tokens=False)["input_ids"]
    rewards = []
    for step in range(MAX_STEPS):
        outputs, rollouts = _sample(policy, prompt, ppo.trajectories_per_step, RESPONSE_TOKENS, seed=step)
        scores = [sum(t in target for t in o.tokens) / RESPONSE_TOKENS for o in outputs]
        groups = [i // group_size for i in range(len(outputs))]
        metrics = learner.update(collate(rollouts, scores, tokenizer.pad_token_id, groups), seed=step)
        rewards.append(metrics["reward_mean"])
        if len(rewards) >= 3 and min(rewards[-3:]) > 0.8:
            break
    moved = any(not torch.equal(a.to(device=b.device, dtype=b.dtype), b.detach())  # bf16 engines hold bf16 weights
                for a, b in zip(before, learner.policy_model.parameters()))
    return rewards, moved


@pytest.mark.parametrize(("estimator", "group_size"), [("gae", 1), ("grpo", 8)])
def test_reward_rises_from_below_02_to_above_08(toy_policy_dir, estimator, group_size):
    rewards, moved = _run(toy_policy_dir, estimator, group_size)
    print(estimator, [round(r, 2) for r in rewards])
    assert rewards[0] < 0.2, rewards
    assert min(rewards[-3:]) > 0.8, f"{estimator} did not learn within {MAX_STEPS} steps: {rewards}"
    assert moved


@pytest.mark.gpu
@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
def test_ppo_learns_with_deepspeed_on_a_cuda_gpu(toy_policy_dir, bf16):
    """The same toy task with the engines on the GPU (NCCL group, bf16 or fp32): the path the experiment's PPO takes."""
    assert torch.cuda.is_available(), "run through the device tool on a machine with a CUDA GPU"
    rewards, moved = _run(toy_policy_dir, "gae", 1, device="cuda", bf16=bf16)
    print("cuda", "bf16" if bf16 else "fp32", [round(r, 2) for r in rewards])
    assert rewards[0] < 0.2, rewards
    assert min(rewards[-3:]) > 0.8, f"PPO on the GPU did not learn within {MAX_STEPS} steps: {rewards}"
    assert moved


def test_a_critic_warmup_step_trains_the_critic_and_leaves_the_actor(toy_policy_dir):
    ppo = PPOConfig(train_batch_size=8, mini_batch_size=4, actor_lr=1e-2, critic_lr=1e-2, critic_warmup_ratio=0.0,
                    bf16=False, gradient_checkpointing=False, total_steps=4, critic_warmup_steps=2)
    tokenizer, learner, policy, _ = _toy_learner(toy_policy_dir, ppo)
    prompt = tokenizer("Say the words.", add_special_tokens=False)["input_ids"]
    _, rollouts = _sample(policy, prompt, 8, tokens=6, seed=1)
    batch = collate(rollouts, [float(i % 2) for i in range(8)], tokenizer.pad_token_id, list(range(8)))
    actor_before = [p.detach().clone() for p in learner.policy_model.parameters()]
    critic_before = [p.detach().clone() for p in learner.critic.module.parameters()]

    metrics = learner.update(batch, seed=0, train_actor=False)
    assert all(torch.equal(a, b) for a, b in zip(actor_before, learner.policy_model.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(critic_before, learner.critic.module.parameters()))
    assert metrics["actor_updated"] == 0.0 and math.isnan(metrics["pg_loss"]) and metrics["vf_loss"] > 0

    metrics = learner.update(batch, seed=1)
    assert not all(torch.equal(a, b) for a, b in zip(actor_before, learner.policy_model.parameters()))
    assert metrics["actor_updated"] == 1.0 and math.isfinite(metrics["pg_loss"])
