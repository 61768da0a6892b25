"""One PPO (or GRPO) update of the searcher on a batch of rollouts (DESIGN.md section 2 "PPO settings";
section 3 "Training"). The maths is in core.py; this module runs the models.

Per step: (1) with no gradients, the log-probs of the response under the current actor (the "old" policy)
and the frozen reference, and the critic's values; (2) per-token rewards (outcome score on the last policy
token, KL penalty on every policy token) and advantages (GAE with the critic, whitened over policy tokens;
or GRPO's group baseline); (3) `ppo_epochs` passes over shuffled mini-batches, each one actor step
(clipped surrogate - entropy_coef * entropy) and one critic step (clipped value loss), through DeepSpeed.
During the first `critic_warmup_steps` steps the actor step is skipped (veRL's `trainer.critic_warmup`; the
paper does not say it used one): the value head starts at zero, so the first advantages are the raw
returns, and a critic fitted first gives the actor a baseline for its first update. The actor's statistics
of such a step are NaN (not measured) and `actor_updated` is 0.

Log-probs are computed at the rollout temperature (logits / T), the distribution the tokens were sampled
from. Nothing here catches exceptions: a failing step fails the run (the public code's
try/except-continue turned bugs into silent no-progress).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from s3core.config.schema import PPOConfig
from s3core.rl import core
from s3core.rl.batch import RolloutBatch
from s3core.rl.engine import make_engine, set_lr, warmup_factor

ACTOR_STATS = ("pg_loss", "entropy", "clip_fraction", "approx_kl")  # what an actor step reports


class ValueModel(nn.Module):
    """The critic: a causal LM's transformer body with a scalar head on every position."""

    def __init__(self, body: nn.Module, hidden_size: int):
        super().__init__()
        self.body = body
        self.head = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @classmethod
    def from_causal_lm(cls, causal_lm: nn.Module) -> ValueModel:
        """A critic initialised from (a copy of) the actor's body, as the paper's PPO does."""
        body = copy.deepcopy(causal_lm.get_decoder() if hasattr(causal_lm, "get_decoder") else causal_lm.model)
        return cls(body, causal_lm.config.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.body(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).last_hidden_state
        return self.head(hidden).squeeze(-1).float()  # [B, L]


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that count real tokens only (prompts are left-padded): [B, L]."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


@dataclass
class Prepared:
    """What one PPO step computes once, before its updates: all [B, R]."""

    old_logp: torch.Tensor
    ref_logp: torch.Tensor | None
    old_values: torch.Tensor | None
    advantages: torch.Tensor
    returns: torch.Tensor | None
    kl: torch.Tensor


class PPOLearner:
    """The actor (and critic) engines and the update; `policy_model` is what the rollout engine samples from."""

    def __init__(self, actor: nn.Module, ppo: PPOConfig, temperature: float, reference: nn.Module | None = None):
        self.ppo = ppo
        self.estimator = core.estimator_from_name(ppo.estimator)
        self.temperature = temperature
        if ppo.gradient_checkpointing and hasattr(actor, "gradient_checkpointing_enable"):
            actor.gradient_checkpointing_enable()
        critic = ValueModel.from_causal_lm(actor) if self.estimator is core.AdvantageEstimator.GAE else None
        self.reference = None
        if ppo.kl_coef > 0:
            self.reference = (reference if reference is not None else copy.deepcopy(actor)).eval().requires_grad_(False)
        self.actor = make_engine(actor, ppo.actor_lr, ppo, ppo.mini_batch_size)
        self.critic = make_engine(critic, ppo.critic_lr, ppo, ppo.mini_batch_size) if critic else None
        self.actor_warmup = ppo.warmup_steps(ppo.actor_warmup_ratio)
        self.critic_warmup = ppo.warmup_steps(ppo.critic_warmup_ratio)
        if self.reference is not None:
            self.reference.to(self.actor.device)

    @property
    def policy_model(self) -> nn.Module:
        return self.actor.module

    def _logprobs(self, model: nn.Module, batch: RolloutBatch, entropy: bool = False):
        width = batch.policy_mask.shape[1]
        # only the R + 1 last positions' logits: the prompt's would cost [B, P, V] for nothing
        out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                    position_ids=position_ids(batch.attention_mask), logits_to_keep=width + 1)
        logits = out.logits[:, :-1, :]  # [B, R, V]: position P - 1 + j predicts response token j
        tokens = batch.input_ids[:, batch.prompt_width:batch.prompt_width + width]  # [B, R]
        logp = core.token_logprobs(logits, tokens, self.temperature)  # [B, R]
        return (logp, core.entropy_from_logits(logits / self.temperature)) if entropy else logp

    def _values(self, batch: RolloutBatch) -> torch.Tensor:
        values = self.critic(batch.input_ids, batch.attention_mask, position_ids(batch.attention_mask))  # [B, P+R]
        width = batch.policy_mask.shape[1]
        return values[:, batch.prompt_width - 1:batch.prompt_width - 1 + width]  # value of the state before token j

    def _in_chunks(self, fn, batch: RolloutBatch) -> torch.Tensor:
        """fn over mini-batch-sized row chunks (the no-grad pass must fit in memory like the updates do)."""
        size = self.ppo.mini_batch_size
        return torch.cat([fn(batch.rows(torch.arange(i, min(i + size, batch.size), device=batch.input_ids.device)))
                          for i in range(0, batch.size, size)])

    @torch.no_grad()
    def prepare(self, batch: RolloutBatch) -> Prepared:
        mask = batch.policy_mask
        old_logp = self._in_chunks(lambda mb: self._logprobs(self.actor.module, mb), batch)
        ref_logp = self._in_chunks(lambda mb: self._logprobs(self.reference, mb), batch) if self.reference is not None else None
        rewards, kl = core.token_rewards(batch.scores, mask, old_logp, ref_logp, self.ppo.kl_coef)
        if self.critic is not None:
            old_values = self._in_chunks(self._values, batch) * mask
            advantages, returns = core.compute_gae(rewards, old_values, mask, self.ppo.gamma, self.ppo.lam)
            advantages = core.masked_whiten(advantages, mask)
            return Prepared(old_logp, ref_logp, old_values, advantages, returns, kl)
        # GRPO: the group baseline on the outcome, the KL penalty stays a per-token reward term
        advantages = core.grpo_advantages(batch.scores, batch.group, mask) - self.ppo.kl_coef * kl
        return Prepared(old_logp, ref_logp, None, advantages, None, kl)

    @torch.no_grad()
    def sampler_logprob_gap(self, batch: RolloutBatch, temperature: float) -> float:
        """Mean |log p_learner - log p_sampler| of the sampled tokens over policy tokens, the learner's
        log-probs taken at the temperature the rollout engine reports its own at: ~0 when the engine samples
        from the learner's weights (shared weights; a vLLM engine after a correct sync, up to bf16 noise)."""
        batch = batch.to(self.actor.device)
        saved, self.temperature = self.temperature, temperature
        try:
            logp = self._in_chunks(lambda mb: self._logprobs(self.actor.module, mb), batch)  # [B, R]
        finally:
            self.temperature = saved
        gap = (logp - batch.sampling_logprobs).abs()  # [B, R]
        return float(core.masked_mean(gap, batch.policy_mask))

    def schedule(self, actor_steps_done: int, critic_steps_done: int) -> None:
        """Set this PPO step's learning rates from the steps each model has trained so far (the warm-up)."""
        set_lr(self.actor, self.ppo.actor_lr * warmup_factor(actor_steps_done, self.actor_warmup))
        if self.critic is not None:
            set_lr(self.critic, self.ppo.critic_lr * warmup_factor(critic_steps_done, self.critic_warmup))

    def update(self, batch: RolloutBatch, seed: int, train_actor: bool = True) -> dict[str, float]:
        """`ppo_epochs` passes of mini-batch updates; returns the step's metrics (means over updates).
        train_actor=False updates the critic alone (a critic warm-up step). Call `schedule` first."""
        if not train_actor and self.critic is None:
            raise ValueError("a critic-only update needs a critic: estimator grpo has none")
        batch = batch.to(self.actor.device)
        prep = self.prepare(batch)
        generator = torch.Generator().manual_seed(seed)
        sums: dict[str, float] = {}
        updates = 0
        for _ in range(self.ppo.ppo_epochs):
            order = torch.randperm(batch.size, generator=generator)
            for first in range(0, batch.size, self.ppo.mini_batch_size):
                index = order[first:first + self.ppo.mini_batch_size].to(batch.input_ids.device)
                for name, value in self._update_minibatch(batch.rows(index), prep, index, train_actor).items():
                    sums[name] = sums.get(name, 0.0) + value
                updates += 1
        metrics = {name: value / max(updates, 1) for name, value in sums.items()}
        mask = batch.policy_mask
        metrics.update(reward_mean=float(batch.scores.mean()), kl_mean=float(core.masked_mean(prep.kl, mask)),
                       policy_tokens_mean=float(mask.sum(1).mean()), actor_lr=float(self.actor.get_lr()[0]),
                       actor_updated=float(train_actor))
        if self.critic is not None:
            metrics["critic_lr"] = float(self.critic.get_lr()[0])
        return metrics

    def _update_minibatch(self, mb: RolloutBatch, prep: Prepared, index: torch.Tensor,
                          train_actor: bool = True) -> dict[str, float]:
        stats = self._actor_step(mb, prep, index) if train_actor else dict.fromkeys(ACTOR_STATS, math.nan)
        if self.critic is not None:
            values = self._values(mb)
            vf_loss, vf_stats = core.value_loss(values, prep.old_values[index], prep.returns[index], mb.policy_mask,
                                                self.ppo.value_clip)
            self.critic.backward(vf_loss)
            self.critic.step()
            stats.update(vf_loss=float(vf_loss.detach()), value_clip_fraction=float(vf_stats["value_clip_fraction"].detach()))
        return stats

    def _actor_step(self, mb: RolloutBatch, prep: Prepared, index: torch.Tensor) -> dict[str, float]:
        mask = mb.policy_mask
        logp, entropy = self._logprobs(self.actor, mb, entropy=True)
        pg_loss, pg_stats = core.policy_loss(logp, prep.old_logp[index], prep.advantages[index], mask, self.ppo.clip_ratio)
        entropy_mean = core.masked_mean(entropy, mask)
        loss = pg_loss - self.ppo.entropy_coef * entropy_mean
        self.actor.backward(loss)
        self.actor.step()
        stats = {"pg_loss": pg_loss, "entropy": entropy_mean, "clip_fraction": pg_stats["clip_fraction"],
                 "approx_kl": pg_stats["approx_kl"]}
        return {name: float(stats[name].detach()) for name in ACTOR_STATS}
