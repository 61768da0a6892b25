"""One PPO step of the searcher's learner (s3core.rl.ppo) on a GPU: step time split, tokens/s and model
FLOPs utilisation, for random-init Qwen2.5 shapes, next to the paper's 5.7 min/step.

    python3 bench/ppo_step.py --shape qwen2.5-1.5b --batch 32 --prompt 768 --response 1024   # GPU machine
    .venv/bin/python bench/ppo_step.py --shape tiny --batch 8 --prompt 64 --response 64 --device cpu   # smoke
    torchrun --nproc_per_node 2 bench/ppo_step.py --shape qwen2.5-7b --estimator grpo --zero-stage 3 ...   # 2 GPUs

Under torchrun each rank trains on its own batch of `--batch` rows (the global batch is batch x ranks) and
ZeRO shards parameters, gradients and optimizer state over the ranks; rank 0 prints the totals and every
rank its peak memory.

The batch is synthetic (random token ids, responses with the paper's shape: policy spans interleaved with
environment spans, ~40% environment tokens; rewards in {-1, 0, 1}), so only the learner is measured:
the no-grad pass (actor and reference log-probs, critic values), then `ppo_epochs` x mini-batch updates of
actor and critic through DeepSpeed (ZeRO-2, bf16, gradient checkpointing, the paper's hyper-parameters).
Rollouts and rewards are measured by bench/rollout.py and bench/precompute.py.

MFU counts 2 N T FLOPs per forward token and 4 N T per backward token (N = parameters, T = tokens), with
gradient checkpointing's extra forward: per step 2 (old log-probs) + 2 (reference) + 2 (values) forward
passes and (2 + 4 + 2) x 2 (actor, critic) trained passes = 22 N T (GRPO, no critic: 12 N T), against the
GPU's dense bf16 peak.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def synthetic_batch(batch: int, prompt: int, response: int, vocab: int, seed: int):
    import torch

    from s3core.rl.batch import RolloutBatch

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, vocab, (batch, prompt + response), generator=g)
    attention = torch.ones_like(ids)
    policy = torch.zeros(batch, response)
    span = max(8, response // 8)
    for start in range(0, response, span):  # policy span, then an environment span of 2/3 its length
        policy[:, start:start + span * 3 // 5] = 1.0
    scores = torch.randint(-1, 2, (batch,), generator=g).float()
    return RolloutBatch(ids, attention, prompt, policy, torch.ones(batch, response), torch.zeros(batch, response),
                        scores, torch.arange(batch))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="qwen2.5-1.5b", help="qwen2.5-0.5b | qwen2.5-1.5b | qwen2.5-7b | tiny")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--mini-batch", type=int, default=0, help="default: batch / 4 (the paper's 120 / 30)")
    parser.add_argument("--prompt", type=int, default=768)
    parser.add_argument("--response", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    parser.add_argument("--zero-stage", type=int, default=2)
    parser.add_argument("--offload", action="store_true")
    parser.add_argument("--estimator", default="gae", help="gae (actor + critic) or grpo (actor only)")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()

    import os

    import torch

    from s3core.config.schema import PPOConfig
    from s3core.rl.ppo import PPOLearner

    spec = importlib.util.spec_from_file_location("rollout_bench", REPO / "bench" / "rollout.py")
    rollout_bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rollout_bench)
    if args.shape == "tiny":
        rollout_bench.SHAPES["tiny"] = (64, 192, 2, 4, 2, 2048, False)

    class Tok:  # only the ids the model config needs
        eos_token_id, pad_token_id = 1, 0

    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    device = args.device
    if device.startswith("cuda"):
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        device = f"cuda:{torch.cuda.current_device()}"
    model = rollout_bench.random_policy(args.shape, Tok, device)
    n_params = sum(p.numel() for p in model.parameters())
    mini = args.mini_batch or max(1, args.batch // 4)
    gpu = args.device.startswith("cuda")
    samples = 2 if args.estimator == "grpo" else 1  # GRPO needs groups; the batch is args.batch trajectories either way
    if args.batch % samples:
        raise SystemExit(f"--batch must be even with --estimator grpo (got {args.batch})")
    ppo = PPOConfig(estimator=args.estimator, train_batch_size=args.batch // samples, samples_per_question=samples,
                    mini_batch_size=mini, zero_stage=args.zero_stage, offload=args.offload,
                    bf16=gpu, gradient_checkpointing=True, total_steps=args.steps + 1)
    started = time.perf_counter()
    learner = PPOLearner(model, ppo, temperature=ppo.temperature)
    init_s = time.perf_counter() - started
    vocab = model.config.vocab_size

    def sync():
        if gpu:
            torch.cuda.synchronize()

    learner.update(synthetic_batch(args.batch, args.prompt, args.response, vocab, 1000 * rank), seed=0)  # warm-up
    prepare_s, total_s = [], []
    for step in range(1, args.steps + 1):
        batch = synthetic_batch(args.batch, args.prompt, args.response, vocab, 1000 * rank + step).to(learner.actor.device)
        sync()
        t0 = time.perf_counter()
        learner.prepare(batch)
        sync()
        t1 = time.perf_counter()
        learner.update(batch, seed=step)  # runs prepare again, then the updates
        sync()
        prepare_s.append(t1 - t0)
        total_s.append(time.perf_counter() - t1)
    prep, step_s = sum(prepare_s) / len(prepare_s), sum(total_s) / len(total_s)
    tokens = args.batch * (args.prompt + args.response) * world
    name = torch.cuda.get_device_name() if gpu else "cpu"
    peak = next((v * world for k, v in PEAK_TFLOPS.items() if k in name), None)
    if gpu:
        print(f"rank {rank}: peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB", flush=True)
    if rank != 0:
        return
    flops = (22 if args.estimator == "gae" else 12) * n_params * tokens  # GRPO: no critic passes
    print(f"{args.shape} ({n_params / 1e9:.2f}B params) on {world} x {name}: batch {args.batch} x {world} ranks (mini {mini}), "
          f"{args.prompt}+{args.response} tokens, ZeRO-{args.zero_stage}{' + offload' if args.offload else ''}, "
          f"bf16 {gpu}, gradient checkpointing, {args.estimator}; DeepSpeed init {init_s:.1f} s")
    print(f"step {step_s:.2f} s = no-grad pass {prep:.2f} s + updates {step_s - prep:.2f} s; "
          f"{tokens / step_s:,.0f} tokens/s; {flops / step_s / 1e12:.1f} TFLOP/s"
          + (f" = {100 * flops / step_s / 1e12 / peak:.1f}% MFU of {peak:.0f}" if peak else ""))


if __name__ == "__main__":
    main()
