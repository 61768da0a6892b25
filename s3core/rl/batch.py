"""Rollouts -> the padded tensors PPO trains on (DESIGN.md section 3 "Training").

Layout: `input_ids [B, P + R]` = each prompt LEFT-padded to P, then its response (policy and environment
tokens) RIGHT-padded to R. The response of every row therefore starts at column P, and the logits that
predict response token j sit at column P + j - 1. `policy_mask [B, R]` is the state mask (1 = sampled by the
policy); `response_mask [B, R]` marks real response tokens (policy or environment) vs padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from s3core.agent.rollout import Rollout


@dataclass
class RolloutBatch:
    input_ids: torch.Tensor       # [B, P + R]
    attention_mask: torch.Tensor  # [B, P + R]
    prompt_width: int             # P
    policy_mask: torch.Tensor     # [B, R] 1 on policy tokens
    response_mask: torch.Tensor   # [B, R] 1 on any real response token
    sampling_logprobs: torch.Tensor  # [B, R] from the rollout engine (0 on environment tokens)
    scores: torch.Tensor          # [B] outcome reward of each trajectory
    group: torch.Tensor           # [B] prompt index (GRPO groups; equal to the row for PPO)

    @property
    def size(self) -> int:
        return self.input_ids.shape[0]

    def rows(self, index: torch.Tensor) -> RolloutBatch:
        """The mini-batch of the given row indices."""
        return RolloutBatch(self.input_ids[index], self.attention_mask[index], self.prompt_width,
                            self.policy_mask[index], self.response_mask[index], self.sampling_logprobs[index],
                            self.scores[index], self.group[index])

    def to(self, device: torch.device | str) -> RolloutBatch:
        return RolloutBatch(self.input_ids.to(device), self.attention_mask.to(device), self.prompt_width,
                            self.policy_mask.to(device), self.response_mask.to(device),
                            self.sampling_logprobs.to(device), self.scores.to(device), self.group.to(device))


def collate(rollouts: Sequence[Rollout], scores: Sequence[float], pad_id: int, group: Sequence[int] | None = None
            ) -> RolloutBatch:
    """Pad a list of rollouts (prompt left, response right) into a RolloutBatch."""
    batch = len(rollouts)
    width_p = max(len(r.prompt_ids) for r in rollouts)
    width_r = max(1, max(len(r.response_ids) for r in rollouts))
    ids = torch.full((batch, width_p + width_r), pad_id, dtype=torch.long)
    attention = torch.zeros((batch, width_p + width_r), dtype=torch.long)
    policy = torch.zeros((batch, width_r))
    response = torch.zeros((batch, width_r))
    logprobs = torch.zeros((batch, width_r))
    for i, r in enumerate(rollouts):
        p, n = len(r.prompt_ids), len(r.response_ids)
        ids[i, width_p - p:width_p] = torch.tensor(r.prompt_ids, dtype=torch.long)
        attention[i, width_p - p:width_p + n] = 1
        if n:
            ids[i, width_p:width_p + n] = torch.tensor(r.response_ids, dtype=torch.long)
            policy[i, :n] = torch.tensor(r.policy_mask, dtype=torch.float32)
            response[i, :n] = 1.0
            logprobs[i, :n] = torch.tensor(r.logprobs, dtype=torch.float32)
    groups = torch.tensor(list(group) if group is not None else range(batch), dtype=torch.long)
    return RolloutBatch(ids, attention, width_p, policy, response, logprobs,
                        torch.tensor(list(scores), dtype=torch.float32), groups)

