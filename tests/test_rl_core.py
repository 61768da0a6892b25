"""PPO / GRPO maths (s3core/rl/core.py) against readable loop-by-loop references (DESIGN.md section 5)."""

from __future__ import annotations

import math

import pytest
import torch

from s3core.rl import core

torch.manual_seed(0)


def _batch(b: int = 4, t: int = 12):
    g = torch.Generator().manual_seed(1)
    mask = (torch.rand(b, t, generator=g) > 0.35).float()
    mask[:, -2:] = 0.0  # trailing environment / padding
    mask[0] = 0.0       # a trajectory with no policy token at all
    mask[1, :3] = 1.0
    return mask, torch.randn(b, t, generator=g), torch.randn(b, t, generator=g)


def reference_gae(rewards, values, mask, gamma, lam):
    """Per row: keep the policy tokens only, run textbook GAE on that short sequence, scatter back."""
    adv = torch.zeros_like(rewards)
    for row in range(rewards.shape[0]):
        idx = [t for t in range(rewards.shape[1]) if mask[row, t] > 0]
        running, next_value = 0.0, 0.0
        for t in reversed(idx):
            delta = float(rewards[row, t]) + gamma * next_value - float(values[row, t])
            running = delta + gamma * lam * running
            adv[row, t] = running
            next_value = float(values[row, t])
    return adv, (adv + values) * mask


@pytest.mark.parametrize(("gamma", "lam"), [(1.0, 1.0), (0.99, 0.95), (0.9, 0.0)])
def test_gae_matches_the_reference_and_skips_environment_tokens(gamma, lam):
    mask, rewards, values = _batch()
    adv, ret = core.compute_gae(rewards * mask, values, mask, gamma, lam)
    ref_adv, ref_ret = reference_gae(rewards * mask, values, mask, gamma, lam)
    assert torch.allclose(adv, ref_adv, atol=1e-5) and torch.allclose(ret, ref_ret, atol=1e-5)
    assert torch.all(adv[mask == 0] == 0)
    noisy = values + (1 - mask) * 100.0  # values at environment tokens must not matter
    assert torch.allclose(core.compute_gae(rewards * mask, noisy, mask, gamma, lam)[0], adv, atol=1e-5)


def test_gae_with_the_papers_settings_is_reward_minus_value():
    mask, _, values = _batch()
    scores = torch.tensor([0.0, 1.0, -1.0, 0.5])
    rewards, _ = core.token_rewards(scores, mask)
    adv, _ = core.compute_gae(rewards, values, mask, 1.0, 1.0)
    expected = (scores[:, None] - values) * mask  # gamma = lambda = 1, one outcome reward, no KL
    assert torch.allclose(adv, expected, atol=1e-5)


def test_outcome_reward_sits_on_the_last_policy_token_and_kl_on_every_policy_token():
    mask = torch.tensor([[1, 1, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0, 0]], dtype=torch.float32)
    logp, ref = torch.full((2, 7), -1.0), torch.full((2, 7), -1.5)
    rewards, kl = core.token_rewards(torch.tensor([2.0, 3.0]), mask, logp, ref, kl_coef=0.1)
    assert rewards[0].tolist() == pytest.approx([-0.05, -0.05, 0, 0, 2 - 0.05, 0, 0])
    assert rewards[1].abs().sum() == 0  # no policy token: no reward anywhere
    assert torch.allclose(kl, 0.5 * mask)


def test_whitening_uses_policy_tokens_only():
    mask, x, _ = _batch()
    white = core.masked_whiten(x, mask)
    picked = x[mask > 0]
    expected = (picked - picked.mean()) / math.sqrt(((picked - picked.mean()) ** 2).mean() + 1e-8)
    assert torch.allclose(white[mask > 0], expected, atol=1e-5) and torch.all(white[mask == 0] == 0)


def test_policy_loss_matches_a_token_loop():
    mask, adv, _ = _batch()
    old = torch.randn_like(adv) * 0.1 - 2
    new = old + torch.randn_like(adv) * 0.3
    loss, stats = core.policy_loss(new, old, adv, mask, clip_ratio=0.2)
    terms, clipped = [], 0
    for b in range(adv.shape[0]):
        for t in range(adv.shape[1]):
            if mask[b, t] > 0:
                ratio = math.exp(float(new[b, t] - old[b, t]))
                a = float(adv[b, t])
                terms.append(max(-a * ratio, -a * min(max(ratio, 0.8), 1.2)))
                clipped += -a * min(max(ratio, 0.8), 1.2) > -a * ratio
    assert float(loss) == pytest.approx(sum(terms) / len(terms), rel=1e-5)
    assert float(stats["clip_fraction"]) == pytest.approx(clipped / len(terms), rel=1e-6)


def test_value_loss_is_clipped_and_masked():
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    old, ret = torch.tensor([[0.0, 0.0, 0.0]]), torch.tensor([[1.0, -1.0, 50.0]])
    new = torch.tensor([[2.0, -0.2, 9.0]])
    loss, _ = core.value_loss(new, old, ret, mask, value_clip=0.5)
    # token 0: max((2-1)^2, (0.5-1)^2) = 1; token 1: max((-0.2+1)^2, (-0.2+1)^2) = 0.64; token 2 ignored
    assert float(loss) == pytest.approx(0.5 * (1.0 + 0.64) / 2)


def test_grpo_advantages_are_group_relative():
    scores = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    group = torch.tensor([0, 0, 0, 1, 1, 2])
    mask = torch.ones(6, 3)
    adv = core.grpo_advantages(scores, group, mask, scale=False)
    assert adv[:, 0].tolist() == pytest.approx([2 / 3, -1 / 3, -1 / 3, 0, 0, 0])
    scaled = core.grpo_advantages(scores, group, mask)
    assert scaled[0, 0] == pytest.approx((2 / 3) / (torch.tensor([1.0, 0, 0]).std() + 1e-6))


def test_the_trainer_samples_each_question_in_its_own_group():
    from s3core.rl.trainer import repeat_for_groups

    questions, group = repeat_for_groups([{"question": "a"}, {"question": "b"}], 3)
    assert [q["question"] for q in questions] == ["a", "a", "a", "b", "b", "b"] and group == [0, 0, 0, 1, 1, 1]
    # collated with those groups, GRPO's advantages compare a question's samples with each other only
    scores = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    adv = core.grpo_advantages(scores, torch.tensor(group), torch.ones(6, 1), scale=False)
    assert adv[:, 0].tolist() == pytest.approx([2 / 3, -1 / 3, -1 / 3, 0, 0, 0])


def test_logprobs_and_entropy():
    logits = torch.randn(2, 3, 5)
    tokens = torch.randint(0, 5, (2, 3))
    lp = core.token_logprobs(logits, tokens, temperature=0.5)
    assert torch.allclose(lp, torch.log_softmax(logits / 0.5, -1).gather(-1, tokens[..., None]).squeeze(-1))
    uniform = core.entropy_from_logits(torch.zeros(1, 1, 8))
    assert float(uniform) == pytest.approx(math.log(8))


def test_estimator_registry_lists_valid_names():
    assert core.estimator_from_name("grpo") is core.AdvantageEstimator.GRPO
    with pytest.raises(ValueError, match="valid names are 'gae', 'grpo'"):
        core.estimator_from_name("reinforce")


# --- the learning-rate warm-up (verl's constant-with-warm-up, stepped once per PPO step) ---------------
def test_the_paper_setting_warms_the_critic_up_over_15_ppo_steps_from_zero():
    from s3core.config.schema import PPOConfig
    from s3core.rl.engine import warmup_factor

    paper = PPOConfig(actor_warmup_ratio=0.0, critic_warmup_ratio=0.01, lr_schedule_steps=1500, total_steps=20)
    assert paper.warmup_steps(paper.critic_warmup_ratio) == 15 and paper.warmup_steps(paper.actor_warmup_ratio) == 0
    critic = [warmup_factor(done, 15) for done in range(20)]  # PPO step k trains with factor (k - 1) / 15
    assert critic[0] == 0.0 and critic[1] == pytest.approx(1 / 15) and critic[14] == pytest.approx(14 / 15)
    assert critic[15:] == [1.0] * 5
    assert [warmup_factor(done, 0) for done in range(3)] == [1.0, 1.0, 1.0]


def test_a_non_zero_warmup_share_is_never_rounded_to_zero_steps():
    from s3core.config.schema import PPOConfig

    short = PPOConfig(total_steps=20)  # 1% of 20 steps: int() gives 0, the warm-up would vanish
    assert short.warmup_steps(0.01) == 1 and short.warmup_steps(0.0) == 0 and short.warmup_steps(0.5) == 10


def test_the_old_single_warmup_ratio_is_refused_with_the_fix():
    from s3core.config.schema import PPOConfig

    with pytest.raises(ValueError, match="actor_warmup_ratio and critic_warmup_ratio"):
        PPOConfig(warmup_ratio=0.01)
