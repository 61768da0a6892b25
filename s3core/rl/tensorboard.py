"""Per-step training metrics as TensorBoard scalars (issue 6: "TensorBoard when enabled").

One event file set under `<run dir>/tensorboard/`, written by rank 0 only. Each metric goes under a group
so the TensorBoard UI shows related curves together (reward/, ppo/, rollout/, time/). A resumed run opens
the writer with `purge_step` = the first step it will run, so steps logged after the last complete
checkpoint by the killed attempt are dropped and the curves have no duplicate points.

    tensorboard --logdir artifacts/train    # or the staging folder while training runs
"""

from __future__ import annotations

from pathlib import Path

GROUPS = {"reward": ("reward_mean", "genacc_s3", "gbr_better", "gbr_same", "gbr_worse"),
          "rollout": ("turns_mean", "searches_mean", "response_tokens_mean"),
          "time": ("rollout_s", "reward_s", "update_s")}


def scalar_tag(name: str) -> str:
    """'reward_mean' -> 'reward/reward_mean', 'kl_mean' -> 'ppo/kl_mean' (anything not listed is a PPO metric)."""
    for group, names in GROUPS.items():
        if name in names:
            return f"{group}/{name}"
    return f"ppo/{name}"


class TensorBoardLog:
    """Write one step's metrics; a no-op object when disabled or not on rank 0."""

    def __init__(self, log_dir: Path, first_step: int, enabled: bool = True):
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(log_dir), purge_step=first_step)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if self.writer is None:
            return
        for name, value in metrics.items():
            if name != "step":
                self.writer.add_scalar(scalar_tag(name), float(value), global_step=step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
