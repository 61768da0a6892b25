"""The s3 training loop: rollouts -> Gain-Beyond-RAG rewards -> PPO update, with checkpoints and resume
(DESIGN.md section 2 "Reward", "PPO settings"; section 3 "Training").

One step takes the next `train_batch_size` questions of the training pool (shuffled once per pass with the
run's seed), rolls them out with the current policy (the batched engine, the paper's rollout sampling:
temperature 0.6, top-p 0.95, seeded per step), builds each trajectory's context from the environment's
record, asks the frozen generator for an answer (all requests concurrent), scores GenAcc, and turns it
into the reward against the precomputed naive-RAG GenAcc of the same question (`reward.kind`: `gbr`, the
paper's, or `gbr_plus_genacc`, the public code's). A question missing from the naive cache is an error.

Checkpoints (`step-000005/`, every `save_every` steps and at the end):
    actor/          the policy as a Hugging Face folder (safetensors + tokenizer): loadable by transformers
                    and vLLM, and the input of the inference stage
    engine/         DeepSpeed checkpoints of the actor and the critic (weights and, unless
                    ppo.checkpoint_optimizer is false, the optimizer state)
    rng-rank<R>.pt  each rank's RNG states (python, numpy, torch)
    trainer_state.json   step, data cursor, metrics so far, whether the optimizer state was saved
    run_config.json      the run's config, so a checkpoint folder alone can be evaluated
    done            written last: a checkpoint without it is ignored (a crash mid-save)
The last `keep_last` complete checkpoints are kept. A run that finds complete checkpoints resumes from
the newest; seeded on CPU it reproduces the metrics of an uninterrupted run (unless its checkpoint was saved
without the optimizer state: Adam then starts afresh). `on_checkpoint(step, path)`
is called after each `done` marker (the Prefect task emits `s3.checkpoint.saved` from it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from s3core.agent.inference import rollout_context, s3_run
from s3core.agent.policy import SamplingSettings, TransformersPolicy
from s3core.agent.vllm_policy import learner_weights
from s3core.agent.rollout import RolloutEngine, SearchFn
from s3core.config.schema import RunConfig
from s3core.generation.base import ChatBackend
from s3core.retrieval.base import DocStore
from s3core.reward.genacc import reward
from s3core.reward.precompute import answer_and_score, empty_answers
from s3core.rl.batch import collate
from s3core.rl.checkpoint_io import load_safely, restore_rng, rng_state
from s3core.rl.checkpoints import DONE_MARKER, checkpoint_dir, complete_checkpoints
from s3core.rl.engine import load_engine_checkpoint, save_engine_checkpoint
from s3core.rl.ppo import PPOLearner
from s3core.rl.tensorboard import TensorBoardLog
from s3core.store import ArtifactStore

log = logging.getLogger(__name__)


@dataclass
class TrainingData:
    """The training pool (question rows) and the naive-RAG GenAcc of every train question."""

    pool: list[dict[str, Any]]
    naive_genacc: dict[str, float]

    def naive(self, question_id: str) -> float:
        if question_id not in self.naive_genacc:
            raise KeyError(f"question {question_id!r} has no naive-RAG GenAcc in the precompute cache: the "
                           "naive_rag stage must cover every training question (re-run s3-train's precompute)")
        return self.naive_genacc[question_id]


@dataclass
class TrainerState:
    step: int = 0
    cursor: int = 0  # questions consumed so far (the data cursor)
    metrics: list[dict[str, float]] = field(default_factory=list)


def question_order(n: int, seed: int, epoch: int) -> list[int]:
    """The pool's order in pass `epoch` (a fresh seeded shuffle per pass)."""
    order = list(range(n))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order


def batch_questions(data: TrainingData, cursor: int, size: int, seed: int) -> list[dict[str, Any]]:
    """The `size` questions after `cursor` questions, passing over the pool as many times as needed."""
    n = len(data.pool)
    if n == 0:
        raise ValueError("the training pool is empty: naive RAG answered every train question (or there are "
                         "none); there is nothing for the reward to improve")
    rows = []
    for position in range(cursor, cursor + size):
        epoch, offset = divmod(position, n)
        rows.append(data.pool[question_order(n, seed, epoch)[offset]])
    return rows


def repeat_for_groups(questions: list[dict[str, Any]], samples: int) -> tuple[list[dict[str, Any]], list[int]]:
    """Each question `samples` times in a row, and each copy's group (its question's index): GRPO's groups."""
    return [q for q in questions for _ in range(samples)], [i for i in range(len(questions)) for _ in range(samples)]


class SearcherTrainer:
    """Train the s3 searcher; split by phase: rollout, score, update, checkpoint."""

    def __init__(self, cfg: RunConfig, policy_path: str, data: TrainingData, search: SearchFn, docs: DocStore,
                 generator: ChatBackend, run_dir: Path,
                 on_checkpoint: Callable[[int, Path], None] | None = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.cfg, self.ppo, self.data, self.docs = cfg, cfg.ppo, data, docs
        self.generator, self.run_dir = generator, Path(run_dir)
        self.on_checkpoint = on_checkpoint or (lambda step, path: None)
        self.tokenizer = AutoTokenizer.from_pretrained(policy_path)
        dtype = torch.bfloat16 if (self.ppo.bf16 and torch.cuda.is_available()) else torch.float32
        # a vLLM engine starts before any model is loaded here (agent/vllm_policy.py says why)
        self.vllm = colocated_engine(cfg, policy_path, self.tokenizer) if cfg.searcher.policy_backend == "vllm" else None
        torch.manual_seed(cfg.seed)
        actor = AutoModelForCausalLM.from_pretrained(policy_path, dtype=dtype)
        self.learner = PPOLearner(actor, self.ppo, temperature=self.ppo.temperature)
        self.policy = self.vllm or TransformersPolicy(policy_path, device=str(self.learner.actor.device),
                                                      model=self.learner.policy_model, tokenizer=self.tokenizer,
                                                      batch_size=cfg.searcher.rollout_batch_size)
        run = s3_run(cfg)
        if self.ppo.initial_topk is not None:  # the training prompt's own initial block (the public code: 12)
            run = replace(run, limits=replace(run.limits, initial_topk=self.ppo.initial_topk))
        self.engine = RolloutEngine(self.policy, run.strategy_object(), search, docs,
                                    SamplingSettings(self.ppo.max_new_tokens_per_turn, self.ppo.temperature,
                                                     self.ppo.top_p), self.ppo.max_obs_tokens, self.ppo.max_context_tokens)
        self.state = TrainerState()
        self.first_step_of_attempt = 1

    # -- phases ------------------------------------------------------------------------------------------
    def rollout(self, questions: list[dict[str, Any]], step: int):
        self.engine.sampling = SamplingSettings(self.ppo.max_new_tokens_per_turn, self.ppo.temperature, self.ppo.top_p,
                                                self.engine.sampling.stop_strings, seed=self.cfg.seed * 100_003 + step)
        self.learner.policy_model.eval()
        rollouts = self.engine.run([q["question"] for q in questions])
        self.learner.policy_model.train()
        return rollouts

    def sync_rollout_engine(self) -> float:
        """Give a vLLM engine the learner's current weights (in place); seconds it took (0 without one)."""
        if self.vllm is None:
            return 0.0
        start = time.perf_counter()
        self.vllm.load_weights(learner_weights(self.learner.policy_model))
        return time.perf_counter() - start

    def contexts(self, rollouts) -> list[str]:
        """The generator context of each trajectory (no document cap in training, as in the public code)."""
        return [rollout_context(r, self.docs, self.cfg.searcher.context_rule)[1] for r in rollouts]

    def score(self, questions: list[dict[str, Any]], rollouts) -> tuple[list[float], dict[str, float]]:
        """Rewards of the trajectories (GenAcc of their context vs the naive cache) and outcome counts."""
        answers, scores = asyncio.run(answer_and_score(self.generator, self.contexts(rollouts),
                                                       [q["question"] for q in questions],
                                                       [q["golden_answers"] for q in questions], self.cfg))
        naive = [self.data.naive(q["question_id"]) for q in questions]
        rewards = [reward(self.cfg.reward.kind, float(s.genacc), n) for s, n in zip(scores, naive)]
        outcomes = {"genacc_s3": float(np.mean([s.genacc for s in scores])),
                    "gbr_better": float(sum(s.genacc > n for s, n in zip(scores, naive))),
                    "gbr_same": float(sum(s.genacc == n for s, n in zip(scores, naive))),
                    "gbr_worse": float(sum(s.genacc < n for s, n in zip(scores, naive))),
                    "empty_answers": float(empty_answers(answers))}
        return rewards, outcomes

    def step(self, step: int) -> dict[str, float]:
        everyone = batch_questions(self.data, self.state.cursor, self.ppo.train_batch_size, self.cfg.seed)
        rank, world = rank_and_world()
        # data parallel: each rank rolls out and learns from its share, every question samples_per_question times
        questions, group = repeat_for_groups(everyone[rank::world], self.ppo.samples_per_question)
        t0 = time.perf_counter()
        rollouts = self.rollout(questions, step)
        t1 = time.perf_counter()
        rewards, outcomes = self.score(questions, rollouts)
        t2 = time.perf_counter()
        batch = collate(rollouts, rewards, self.tokenizer.pad_token_id, group=group)
        if self.vllm is not None:
            self.vllm.sleep()  # the update gets the engine's memory
        sampler_gap = math.nan  # not measured in this step
        if step - self.first_step_of_attempt < self.ppo.sampler_check_steps:
            sampler_gap = self.learner.sampler_logprob_gap(batch, self.policy.logprob_temperature or self.ppo.temperature)
        # the warm-up counts the PPO steps each model trained before this one (the actor skips critic warm-up)
        self.learner.schedule(actor_steps_done=max(0, step - 1 - self.ppo.critic_warmup_steps), critic_steps_done=step - 1)
        metrics = self.learner.update(batch, seed=self.cfg.seed * 100_003 + step,
                                      train_actor=step > self.ppo.critic_warmup_steps)
        t3 = time.perf_counter()
        sync_s = self.sync_rollout_engine()
        self.state.cursor += len(everyone)
        metrics.update(outcomes)
        metrics.update(step=float(step), sampler_logp_gap=sampler_gap, turns_mean=float(np.mean([r.record.turns for r in rollouts])),
                       searches_mean=float(np.mean([len(r.record.queries) for r in rollouts])),
                       response_tokens_mean=float(np.mean([len(r.response_ids) for r in rollouts])),
                       rollout_s=t1 - t0, reward_s=t2 - t1, update_s=t3 - t2, weight_sync_s=sync_s)
        return metrics

    # -- checkpoints -------------------------------------------------------------------------------------
    def save(self, step: int) -> Path:
        path = checkpoint_dir(self.run_dir, step)
        if path.exists():
            shutil.rmtree(path)  # an incomplete attempt (no done marker) at this step
        rank, _ = rank_and_world()
        if rank == 0:
            self.learner.policy_model.save_pretrained(path / "actor", safe_serialization=True)
            self.tokenizer.save_pretrained(path / "actor")
        for tag, engine in self.engines():
            save_engine_checkpoint(engine, path / "engine", tag, optimizer_state=self.ppo.checkpoint_optimizer)
        torch.save(rng_state(), path / f"rng-rank{rank}.pt")
        barrier()
        if rank == 0:
            state = {"step": step, "cursor": self.state.cursor, "metrics": self.state.metrics,
                     "optimizer_state": self.ppo.checkpoint_optimizer}
            (path / "trainer_state.json").write_text(json.dumps(state, indent=1))
            # the setting it was trained in: evaluating just this folder needs no other config
            (path / "run_config.json").write_text(json.dumps(portable_config(self.cfg), indent=1))
            (path / DONE_MARKER).write_text(f"{time.time()}\n")  # last: the checkpoint is complete
            self.prune()
        barrier()
        return path

    def engines(self) -> list[tuple[str, Any]]:
        """The DeepSpeed engines a checkpoint holds, by tag: the actor and, with GAE, the critic."""
        engines = [("actor", self.learner.actor)]
        if self.learner.critic is not None:
            engines.append(("critic", self.learner.critic))
        return engines

    def prune(self) -> None:
        for old in complete_checkpoints(self.run_dir)[:-self.ppo.keep_last]:
            shutil.rmtree(old)

    def resume(self) -> bool:
        """Load the newest complete checkpoint, if any; True if training continues from one."""
        done = complete_checkpoints(self.run_dir)
        if not done:
            return False
        path = done[-1]
        saved = json.loads((path / "trainer_state.json").read_text())
        with_optimizer = saved.get("optimizer_state", True)
        for tag, engine in self.engines():
            load_engine_checkpoint(engine, path / "engine", tag, optimizer_state=with_optimizer)
        if not with_optimizer:
            log.warning("%s holds no optimizer state (ppo.checkpoint_optimizer: false): the weights are restored, "
                        "Adam's moments start again from zero", path)
        self.state = TrainerState(step=saved["step"], cursor=saved["cursor"], metrics=saved["metrics"])
        restore_rng(load_safely(path / f"rng-rank{rank_and_world()[0]}.pt"))
        self.sync_rollout_engine()  # it started from the initial weights
        log.info("resumed from %s (step %d, %d questions consumed)", path, self.state.step, self.state.cursor)
        return True

    def train(self, progress: Callable[[int, int, str], None] = lambda *a: None) -> TrainerState:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.resume()
        self.first_step_of_attempt = self.state.step + 1  # the sampler check runs in this attempt's first steps
        total = self.ppo.total_steps
        board = TensorBoardLog(self.run_dir / "tensorboard", first_step=self.state.step + 1,
                               enabled=self.ppo.tensorboard and rank_and_world()[0] == 0)
        try:
            for step in range(self.state.step + 1, total + 1):
                self.train_one(step, total, board, progress)
        finally:
            board.close()
        return self.state

    def train_one(self, step: int, total: int, board: TensorBoardLog, progress: Callable[[int, int, str], None]) -> None:
        metrics = self.step(step)
        self.state.step = step
        self.state.metrics.append(metrics)
        board.log(step, metrics)
        progress(step, total, f"step {step}/{total}: reward {metrics['reward_mean']:+.3f}, "
                              f"GenAcc {metrics['genacc_s3']:.3f}, KL {metrics['kl_mean']:.4f}")
        if step % self.ppo.save_every == 0 or step == total:
            path = self.save(step)
            self.on_checkpoint(step, path)


def colocated_engine(cfg: RunConfig, policy_path: str, tokenizer):
    """The vLLM rollout engine beside the learner (searcher.vllm), seeded with the run's seed."""
    from s3core.agent.vllm_policy import EngineSettings, VLLMPolicy  # vLLM: only on this path

    engine = cfg.searcher.vllm
    settings = EngineSettings(gpu_memory_utilization=engine.gpu_memory_utilization, enforce_eager=engine.enforce_eager,
                              max_model_len=engine.max_model_len, dtype=cfg.searcher.dtype,
                              sleep_between_steps=engine.sleep_between_steps)
    return VLLMPolicy(policy_path, settings, colocated=True, seed=cfg.seed, tokenizer=tokenizer)


def portable_config(cfg: RunConfig) -> dict[str, Any]:
    """The run's config as JSON with the store root made absolute, so it reads the same store from any cwd."""

    data = cfg.model_dump(mode="json")
    store = ArtifactStore(cfg.store.root)
    data["store"]["root"] = store.root if store.is_local else store.root_uri
    return data


def rank_and_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
