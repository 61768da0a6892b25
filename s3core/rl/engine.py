"""DeepSpeed engines for the actor and the critic (DESIGN.md section 3 "Training").

One function turns a model and the PPO config into a DeepSpeed engine: ZeRO stage 0-3, bf16, optional
CPU offload of the optimizer state, gradient clipping, AdamW with `weight_decay` (the public code's 0.01), and
checkpoint loading through `checkpoint_io.load_safely` (weights_only, an allow-list of DeepSpeed's types).
The learning rate is not DeepSpeed's to schedule: `warmup_factor` gives verl's constant-with-warm-up schedule
as a function of the PPO steps done, and the learner sets it before each step's updates (`set_lr`), so every
mini-batch of a PPO step uses the same rate as in the public code, and a resumed run needs no scheduler state.
`save_engine_checkpoint` can leave the optimizer state out of a checkpoint (`ppo.checkpoint_optimizer: false`): at
the paper's 7B shape the fp32 master weights and Adam moments are ~12 bytes per parameter (91 GB), more than a
one-GPU host's disk holds beside the model; `load_engine_checkpoint` then restores the weights only (DeepSpeed's
module-only load, fp32 master weights refreshed from them) and Adam starts afresh. Deviation from the public
code, which always saves the optimizer state (verl's FSDP checkpoints).
The optimizer is torch's AdamW handed to DeepSpeed (a client optimizer), so no fused-Adam extension is
compiled and the same code runs on CPU (gloo) and CUDA (nccl). The distributed group is set up from the
launcher's environment; run in-process (tests, `make run`) it becomes a one-rank group on 127.0.0.1.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from s3core.config.schema import PPOConfig
from s3core.generation.local_server import free_port
from s3core.rl.checkpoint_io import guard_engine


def ensure_distributed() -> None:
    """Initialise torch.distributed through DeepSpeed: the launcher's env, or a single local rank."""
    import deepspeed
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return
    if "RANK" not in os.environ:  # not started by a launcher: one rank on this machine
        os.environ.update({"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                           "MASTER_PORT": str(free_port())})
    deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo")


def deepspeed_config(ppo: PPOConfig, micro_batch: int, bf16: bool) -> dict[str, Any]:
    zero: dict[str, Any] = {"stage": ppo.zero_stage}
    extra: dict[str, Any] = {}
    if ppo.offload and ppo.zero_stage > 0:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
        extra["zero_force_ds_cpu_optimizer"] = False  # torch AdamW steps on the CPU copy: no compiled op needed
    return {
        **extra,
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": ppo.grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": bf16},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def warmup_factor(steps_done: int, warmup_steps: int) -> float:
    """The learning-rate factor of the PPO step after `steps_done` steps of this model: linear from 0 over
    `warmup_steps` steps, then 1 (verl's get_constant_schedule_with_warmup, stepped once per PPO step). With no
    warm-up it is 1 from the first step (verl's schedule gives that step lr 0 as well; docs/FIDELITY.md)."""
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, steps_done / warmup_steps)


def set_lr(engine, lr: float) -> None:
    """Set the learning rate of every parameter group of a DeepSpeed engine's optimizer."""
    for group in engine.optimizer.param_groups:
        group["lr"] = lr


def make_engine(model: torch.nn.Module, lr: float, ppo: PPOConfig, micro_batch: int):
    """A DeepSpeed engine training `model` with AdamW at `lr` (the learner schedules the rate, `set_lr`)."""
    import deepspeed

    ensure_distributed()
    bf16 = ppo.bf16 and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                                  weight_decay=ppo.weight_decay)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer,
                                           config=deepspeed_config(ppo, micro_batch, bf16))
    guard_engine(engine)  # nothing in a checkpoint folder may run code when it is loaded
    return engine


def save_engine_checkpoint(engine, save_dir: Path, tag: str, optimizer_state: bool = True) -> None:
    """DeepSpeed's checkpoint of `engine` under `save_dir/tag`. Without `optimizer_state` the ZeRO partition
    files (fp32 master weights, Adam moments) are skipped and only the module file is written: ZeRO stages 1
    and 2 keep every weight in it (PPOConfig allows nothing else with checkpoint_optimizer off)."""
    kept = engine.save_zero_checkpoint
    engine.save_zero_checkpoint = kept and optimizer_state
    try:
        engine.save_checkpoint(str(save_dir), tag=tag)
    finally:
        engine.save_zero_checkpoint = kept


def load_engine_checkpoint(engine, load_dir: Path, tag: str, optimizer_state: bool = True) -> None:
    """Restore `engine` from `load_dir/tag`: everything, or (a checkpoint saved without `optimizer_state`) the
    weights only, the fp32 master copy refreshed from them and Adam's moments starting at zero."""
    engine.load_checkpoint(str(load_dir), tag=tag, load_module_only=not optimizer_state)
