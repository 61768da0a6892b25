"""Checkpoints with and without the optimizer state (`ppo.checkpoint_optimizer`; s3core/rl/engine.py).

A tiny random-init policy in a ZeRO-2 DeepSpeed engine on CPU takes two AdamW steps and is saved both ways.
A fresh engine (other initial weights) loads each: the weights-only checkpoint holds no partition files, is
smaller, and restores exactly the trained weights with the fp32 master copy refreshed (a step at lr 0 must
leave them unchanged; a stale master copy would write the fresh engine's own weights back). The full one
restores Adam's moments as well.
"""

from __future__ import annotations

import pytest
import torch

from s3core.config.schema import PPOConfig
from s3core.rl.engine import load_engine_checkpoint, make_engine, save_engine_checkpoint, set_lr


def _engine(policy_dir, seed: int):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(policy_dir, dtype=torch.float32)
    if seed:  # another starting point than the saved engine's
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
    return make_engine(model, lr=1e-2, ppo=PPOConfig(zero_stage=2, bf16=False), micro_batch=2)


def _train_step(engine, lr: float = 1e-2) -> None:
    set_lr(engine, lr)
    ids = torch.arange(2 * 10).reshape(2, 10) % 50 + 5  # [B, T]
    loss = engine(input_ids=ids, labels=ids).loss
    engine.backward(loss)
    engine.step()


def _weights(engine) -> list[torch.Tensor]:
    return [p.detach().clone() for p in engine.module.parameters()]


def _adam_moments(engine) -> list[torch.Tensor]:
    return [s["exp_avg"].clone() for s in engine.optimizer.optimizer.state.values() if "exp_avg" in s]


@pytest.fixture(scope="module")
def saved(toy_policy_dir, tmp_path_factory):
    engine = _engine(toy_policy_dir, seed=0)
    _train_step(engine)
    _train_step(engine)
    root = tmp_path_factory.mktemp("saved")
    save_engine_checkpoint(engine, root / "full", "actor", optimizer_state=True)
    save_engine_checkpoint(engine, root / "weights", "actor", optimizer_state=False)
    return {"root": root, "weights": _weights(engine), "moments": _adam_moments(engine),
            "saves_partitions": engine.save_zero_checkpoint}


def _size(folder) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def test_a_weights_only_checkpoint_skips_the_optimizer_partitions(saved):
    full, weights = saved["root"] / "full" / "actor", saved["root"] / "weights" / "actor"
    assert sorted(p.name for p in full.glob("*optim_states.pt"))  # the full one has them
    assert not list(weights.glob("*optim_states.pt")) and list(weights.glob("*model_states.pt"))
    assert _size(weights) < _size(full)
    assert saved["saves_partitions"]  # the engine's own setting is back after the weights-only save


def test_a_weights_only_checkpoint_restores_the_weights_and_refreshes_the_master_copy(toy_policy_dir, saved):
    engine = _engine(toy_policy_dir, seed=1)
    assert any(not a.equal(b) for a, b in zip(_weights(engine), saved["weights"]))
    load_engine_checkpoint(engine, saved["root"] / "weights", "actor", optimizer_state=False)
    assert all(a.equal(b) for a, b in zip(_weights(engine), saved["weights"]))
    assert not _adam_moments(engine)  # Adam starts afresh
    _train_step(engine, lr=0.0)  # the optimizer writes its fp32 master copy back into the module
    assert all(torch.allclose(a, b) for a, b in zip(_weights(engine), saved["weights"]))


def test_a_full_checkpoint_restores_the_adam_moments_too(toy_policy_dir, saved):
    engine = _engine(toy_policy_dir, seed=2)
    load_engine_checkpoint(engine, saved["root"] / "full", "actor", optimizer_state=True)
    assert all(a.equal(b) for a, b in zip(_weights(engine), saved["weights"]))
    moments = _adam_moments(engine)
    assert moments and all(a.equal(b) for a, b in zip(moments, saved["moments"]))


@pytest.mark.parametrize("stage", [0, 3])
def test_weights_only_checkpoints_need_zero_stage_1_or_2(stage):
    with pytest.raises(ValueError, match="checkpoint_optimizer: false needs zero_stage 1 or 2"):
        PPOConfig(zero_stage=stage, checkpoint_optimizer=False)
