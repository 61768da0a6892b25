"""Supervised fine-tuning of the searcher on the oracle's trajectories: the warm start (issue 8).

In the paper the searcher starts from an instruct model that already follows the s3 tag protocol and has a
prior over sensible queries; RL sharpens that prior. A tiny random-init model has no prior, so RL from
scratch would have to discover the protocol from a reward that is almost always zero. The warm start
gives it one: the oracle (oracle.py, with noise) plays the policy in the real rollout engine on the train
questions, and the searcher is trained to imitate its turns.

The loss is the causal-LM cross-entropy on policy tokens (`Rollout.policy_mask` = 1): the prompt and every
`<information>` block the environment wrote are context, exactly the tokens PPO's state masking leaves out.
Deliberate addition, `warmstart.context_weight`: the context tokens can also be predicted, with a smaller
weight. An instruct model has read text before it is asked to search; a random-init one has not, and
learning the passages' language (names recur within a passage, after their title) gives it the
copying that a query for a bridge entity's name needs. This is language modelling on the searcher's own
inputs, never on answers it is not shown. Each trajectory is one example (prompt + all its turns), so the model learns each
turn given the blocks it saw.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from s3core.agent.rollout import Rollout

IGNORE = -100  # label of tokens without loss (torch's cross-entropy ignore_index)


@dataclass(frozen=True)
class Example:
    ids: list[int]     # [T] prompt + response tokens
    labels: list[int]  # [T] the token where the policy wrote it, IGNORE elsewhere


def example_from_rollout(rollout: Rollout) -> Example:
    """Prompt and environment tokens are context only; the policy's tokens are the targets."""
    response_labels = [t if m else IGNORE for t, m in zip(rollout.response_ids, rollout.policy_mask)]
    return Example(rollout.prompt_ids + rollout.response_ids, [IGNORE] * len(rollout.prompt_ids) + response_labels)


def collate_examples(batch: Sequence[Example], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (ids [B, T], attention mask [B, T], labels [B, T])."""
    width = max(len(e.ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    for i, e in enumerate(batch):
        ids[i, :len(e.ids)] = torch.tensor(e.ids)
        mask[i, :len(e.ids)] = 1
        labels[i, :len(e.labels)] = torch.tensor(e.labels)
    return ids, mask, labels


def token_losses(model, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor,
                 context_weight: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(training loss, policy-token loss) of a batch.

    The policy-token loss is the mean cross-entropy over the labelled (policy) tokens. With context_weight > 0
    the training loss also predicts every other real token (prompt, passages): a weighted mean in which each
    context token counts context_weight times a policy token.
    """
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1, :].float()  # [B, T-1, V]
    per_token = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")  # [B, T-1]
    policy = labels[:, 1:] != IGNORE  # [B, T-1]: token t is predicted at position t-1
    policy_sum, policy_count = per_token[policy].sum(), policy.sum()
    policy_loss = policy_sum / policy_count
    if context_weight == 0:
        return policy_loss, policy_loss.detach()
    context = (mask[:, 1:] == 1) & ~policy  # [B, T-1]
    total = (policy_sum + context_weight * per_token[context].sum()) / (policy_count + context_weight * context.sum())
    return total, policy_loss.detach()


def policy_token_loss(model, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the labelled (policy) tokens of the batch."""
    return token_losses(model, ids, mask, labels)[0]


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """Learning-rate factor: linear warm-up over `warmup` steps, then cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def train_on_examples(model, examples: Sequence[Example], pad_id: int, *, steps: int, batch_size: int, lr: float,
                      warmup_fraction: float, seed: int, log_every: int, context_weight: float = 0.0,
                      device: str = "cpu", progress: Callable[[int, int, str], None] = lambda *a: None) -> list[dict[str, float]]:
    """AdamW on random batches of `examples` for `steps` steps; returns the policy-token loss curve (the mean of
    each `log_every` steps). context_weight: see token_losses. The model trains on `device` and is back on
    the CPU when this returns."""
    if not examples:
        raise ValueError("no warm-start examples: the oracle wrote no trajectories (are there train questions?)")
    rng = random.Random(seed)
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    warmup = max(1, int(warmup_fraction * steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, steps, warmup))
    model.train()
    curve, window = [], []
    for step in range(1, steps + 1):
        batch = rng.sample(list(examples), min(batch_size, len(examples)))
        ids, mask, labels = (x.to(device) for x in collate_examples(batch, pad_id))
        loss, policy_loss = token_losses(model, ids, mask, labels, context_weight)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        window.append(policy_loss.item())
        if step % log_every == 0 or step == steps:
            curve.append({"step": step, "loss": round(sum(window) / len(window), 4)})
            window = []
            progress(step, steps, f"warm start: step {step}/{steps}, policy-token loss {curve[-1]['loss']:.3f}")
    model.eval()
    model.to("cpu")
    return curve
