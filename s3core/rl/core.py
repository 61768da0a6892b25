"""PPO and GRPO maths for the searcher, as stateless tensor functions (DESIGN.md section 2 "Reward",
"PPO settings"; section 3 "Training").

Every tensor is per response token: `[B, T]` = trajectories x tokens after the prompt (policy and
environment tokens interleaved, right-padded). `mask [B, T]` is 1 on tokens the POLICY sampled and 0 on
environment tokens (retrieved passages, corrective observations) and padding: the state mask.

Deliberate differences from the public s3 / Search-R1 code (verl), stated:
- the state mask applies everywhere: policy loss, KL, entropy, AND the advantage whitening and the value
  loss (verl masks the first three only, so environment tokens leak into the whitening statistics and the
  critic is trained to predict values at tokens the policy never chooses);
- GAE runs over policy tokens only: an environment span is skipped, so the TD step goes from the last
  policy token before an observation to the first policy token after it (with gamma = lambda = 1, the
  paper's setting, this equals plain GAE on the compressed sequence);
- the outcome reward sits on the last POLICY token of each trajectory (not on the last token, which may be
  an observation), and the KL penalty is a per-token reward term, `-kl_coef * (logp - ref_logp)`.
"""

from __future__ import annotations

import enum

import torch

from s3core.registry import member_by_value


class AdvantageEstimator(str, enum.Enum):
    GAE = "gae"    # critic + generalised advantage estimation (the paper's)
    GRPO = "grpo"  # group-relative baseline, no critic


def estimator_from_name(name: str) -> AdvantageEstimator:
    return member_by_value(AdvantageEstimator, name, "advantage estimator")


def masked_sum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum()


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x over the positions where mask is 1 (0 if there are none)."""
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over masked positions only; masked-out positions come back as 0."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + eps) * mask


def last_policy_index(mask: torch.Tensor) -> torch.Tensor:
    """[B] index of the last policy token of each row (0 for a row without any)."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)  # [B, T]
    return torch.where(mask.bool(), positions, torch.zeros_like(positions)).max(dim=1).values


def token_rewards(scores: torch.Tensor, mask: torch.Tensor, logp: torch.Tensor | None = None,
                  ref_logp: torch.Tensor | None = None, kl_coef: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards [B, T]: the outcome score [B] on the last policy token, minus kl_coef * KL on every
    policy token. Returns (rewards, kl [B, T]); kl is 0 where no reference log-probs are given."""
    rewards = torch.zeros_like(mask, dtype=torch.float32)  # [B, T]
    rows = torch.arange(mask.shape[0], device=mask.device)
    rewards[rows, last_policy_index(mask)] = scores.float() * (mask.sum(dim=1) > 0)
    kl = torch.zeros_like(rewards)
    if logp is not None and ref_logp is not None:
        kl = (logp - ref_logp).float() * mask  # [B, T], the k1 estimator
        rewards = rewards - kl_coef * kl
    return rewards, kl


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns [B, T] over policy tokens only (environment tokens skipped, both 0 there).

    Backwards over t: at a policy token, delta = r_t + gamma * V(next policy token) - V_t and
    A_t = delta + gamma * lam * A(next policy token); the value after the last policy token is 0.
    """
    batch, length = rewards.shape
    next_value = torch.zeros(batch, dtype=torch.float32, device=rewards.device)  # [B]
    next_adv = torch.zeros_like(next_value)
    advantages = torch.zeros_like(rewards, dtype=torch.float32)  # [B, T]
    for t in reversed(range(length)):
        m = mask[:, t].float()  # [B]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        adv_t = delta + gamma * lam * next_adv
        advantages[:, t] = adv_t * m
        next_value = torch.where(m > 0, values[:, t].float(), next_value)  # skip environment tokens
        next_adv = torch.where(m > 0, adv_t, next_adv)
    returns = (advantages + values) * mask
    return advantages, returns


def grpo_advantages(scores: torch.Tensor, group: torch.Tensor, mask: torch.Tensor, eps: float = 1e-6,
                    scale: bool = True) -> torch.Tensor:
    """GRPO: each trajectory's score [B] minus its group's mean (divided by the group's std if `scale`),
    broadcast to its policy tokens [B, T]. `group [B]` holds the prompt index of each trajectory."""
    scores = scores.float()
    advantages = torch.zeros_like(scores)  # [B]
    for g in torch.unique(group):
        members = group == g
        centred = scores[members] - scores[members].mean()
        if scale and int(members.sum()) > 1:
            centred = centred / (scores[members].std() + eps)
        advantages[members] = centred
    return advantages[:, None] * mask  # [B, T]


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                clip_ratio: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped PPO surrogate, averaged over policy tokens; with the clip fraction and approx. KL."""
    ratio = torch.exp(logp - old_logp)  # [B, T]
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_ratio, 1.0 + clip_ratio)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    stats = {"clip_fraction": masked_mean((clipped > unclipped).float(), mask),
             "approx_kl": masked_mean(old_logp - logp, mask)}
    return loss, stats


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               value_clip: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss 0.5 * max((V - R)^2, (V_clipped - R)^2) over policy tokens."""
    clipped = old_values + torch.clamp(values - old_values, -value_clip, value_clip)  # [B, T]
    losses = torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)
    loss = 0.5 * masked_mean(losses, mask)
    return loss, {"value_clip_fraction": masked_mean(((clipped - returns) ** 2 > (values - returns) ** 2).float(), mask)}


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy [B, T] of the categorical distribution of logits [B, T, V] (float32, one row at a time, so a
    152k vocabulary never needs a float32 copy of the whole batch)."""
    rows = []
    for row in logits:  # [T, V]
        log_probs = torch.log_softmax(row.float(), dim=-1)
        rows.append(-(log_probs.exp() * log_probs).sum(dim=-1))
    return torch.stack(rows)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(logits / temperature) at the chosen tokens: logits [B, T, V], tokens [B, T] -> [B, T].
    Computed as logit - logsumexp in float32 one row at a time (memory: one [T, V] float32 row)."""
    rows = []
    for row, chosen in zip(logits, tokens):  # [T, V], [T]
        scaled = row.float() / temperature
        rows.append(scaled.gather(-1, chosen[:, None]).squeeze(-1) - torch.logsumexp(scaled, dim=-1))
    return torch.stack(rows)
