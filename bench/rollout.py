"""Rollout throughput of the s3 searcher, side by side: the batched engine vs one trajectory at a time, and
(issue 22) the vLLM engine vs our transformers loop at the paper's shapes.

    # CPU, the tiny world's searcher (export once from the tiny world's store, then measure):
    .venv/bin/python bench/rollout.py --export bench/out/world
    .venv/bin/python bench/rollout.py --world-dir bench/out/world
    # GPU machine, a random-init Qwen2.5-1.5B-shaped policy on the same world:
    python bench/rollout.py --world-dir bench/out/world --device cuda --policy-shape 1.5b
    # GPU machine, vLLM vs transformers at 0.5B and 1.5B shapes, batch 120 and 512 (one worker process each):
    python bench/rollout.py --world-dir bench/out/world --device cuda --compare 0.5b,1.5b --batches 120,512

`--export` writes a self-contained folder (the tiny world's passages and test questions as Parquet, the
tiny tokenizer, encoder and searcher folders) so the measurement needs only torch, transformers, pyarrow and
pydantic (and vLLM for its backend). The measurement then:

1. encodes the passages with the tiny dense encoder and searches them exactly (torch matmul + top-k, the
   dense retriever's torch engine) on the chosen device;
2. batched: `RolloutEngine` over N test questions with the s3 strategy ("8-3-3", 4 turns), all in one
   policy batch per turn and one search batch per turn;
3. sequential: the same engine one question at a time over the first `--sequential` questions (the
   public code's shape of work at batch 1);
4. prints trajectories/s, sampled (policy) tokens/s, the share of time spent searching, and the ratio.

The policy is the tiny searcher, or with `--policy-shape` a random-init model of that shape (bf16 on CUDA)
with the tiny tokenizer: a random policy writes no valid tag, so every trajectory runs all its turns to
`--max-new-tokens` each: the worst case, and a fixed amount of work per trajectory, the same for both
engines. `--backend vllm` samples with `VLLMPolicy` (random weights of the shape, `load_format="dummy"`,
sampling restricted to the tiny tokenizer's ids so every token decodes); the engine starts before the
encoder is loaded, as in training. `--compare` runs each (backend, shape) in its own worker process, one
after the other, and prints the table and the vLLM/transformers ratios (JSON with `--out`).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

def export_world(config: str, out: Path) -> None:
    """Write passages, test questions and the tiny models of the config's store into `out`."""
    import pyarrow.parquet as pq

    from s3core.config import load_config
    from s3core.pipeline import open_store, prepare

    cfg = load_config(config)
    store = open_store(cfg)
    state = prepare(store, cfg, until="dense_index")
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(store.read_table(state.corpus[0], columns=["id", "title", "text"]), out / "passages.parquet")
    test = next(m for m in state.questions if m.stats.get("split") == "test")
    pq.write_table(store.read_table(test), out / "questions.parquet")
    models = store.local_dir(state.tiny_models)
    for name in ("tokenizer", "encoder", "searcher"):
        shutil.copytree(models / name, out / name, dirs_exist_ok=True)
    print(f"exported to {out}")


def shape_name(name: str) -> str:
    return name.removeprefix("qwen2.5-")


def random_policy(shape: str, tokenizer, device: str):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from s3core.models.shapes import qwen2_config, shape_named

    config = {**qwen2_config(shape_named(shape_name(shape))), "eos_token_id": tokenizer.eos_token_id,
              "pad_token_id": tokenizer.pad_token_id}
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    with torch.device(device):
        model = Qwen2ForCausalLM(Qwen2Config(**config)).to(dtype)
    return model


def vllm_policy(shape: str, world: Path, eager: bool):
    """A vLLM engine of the shape with random weights and the tiny tokenizer (see the module docstring)."""
    from s3core.agent.vllm_policy import EngineSettings, VLLMPolicy
    from s3core.models.shapes import write_model_folder

    folder = write_model_folder(shape_name(shape), world / f"shape-{shape_name(shape)}", weights=False)
    for item in (world / "tokenizer").iterdir():  # the tiny tokenizer, so prompts have the world's token counts
        shutil.copy(item, folder / item.name)
    settings = EngineSettings(gpu_memory_utilization=0.6, enforce_eager=eager, max_model_len=8192, dtype="bfloat16",
                              load_format="dummy", restrict_to_tokenizer=True)
    return VLLMPolicy(str(folder), settings)


def compare(args) -> None:
    """Each (backend, shape) in a worker process of its own; the table and the vLLM/transformers ratios."""
    import json
    import subprocess

    results = []
    for shape in args.compare.split(","):
        for backend in ("vllm", "transformers"):
            command = [sys.executable, __file__, "--world-dir", str(args.world_dir), "--device", args.device,
                       "--policy-shape", shape, "--backend", backend, "--batches", args.batches, "--sequential", "0",
                       "--max-new-tokens", str(args.max_new_tokens), "--top-p", str(args.top_p), "--json"]
            if args.compiled:
                command.append("--compiled")
            done = subprocess.run(command, capture_output=True, text=True)
            rows = [json.loads(line[5:]) for line in done.stdout.splitlines() if line.startswith("JSON ")]
            if done.returncode != 0 or not rows:
                print(f"{backend} {shape} failed (exit {done.returncode}):\n{done.stderr[-3000:]}", flush=True)
                continue
            for row in rows:
                print(f"{backend:12s} {shape:5s} batch {row['batch']:4d}: {row['traj_s']:8.2f} traj/s "
                      f"{row['tok_s']:9.0f} sampled tok/s  search {100 * row['search_share']:4.1f}%  "
                      f"(engine start {row['start_s']:.0f} s)", flush=True)
            results.extend(rows)
    by_key = {(r["backend"], r["shape"], r["batch"]): r for r in results}
    for (backend, shape, batch), row in sorted(by_key.items()):
        other = by_key.get(("transformers", shape, batch))
        if backend == "vllm" and other:
            row["ratio_vs_transformers"] = row["tok_s"] / other["tok_s"]
            print(f"ratio vllm/transformers {shape} batch {batch}: {row['ratio_vs_transformers']:.1f}x")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", type=Path, help="write the world folder from --config's store and exit")
    parser.add_argument("--config", default=str(REPO / "configs" / "tiny.yaml"))
    parser.add_argument("--world-dir", type=Path, default=REPO / "bench" / "out" / "world")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--policy-shape", help="random-init policy of this Qwen2.5 shape: 0.5b, 1.5b, 3b, 7b, 14b "
                        "(default: the tiny searcher)")
    parser.add_argument("--backend", choices=("transformers", "vllm"), default="transformers")
    parser.add_argument("--compiled", action="store_true", help="vllm: torch.compile + CUDA graphs (default eager)")
    parser.add_argument("--compare", help="shapes to run both backends at, e.g. 0.5b,1.5b (worker processes)")
    parser.add_argument("--batches", default="", help="batched runs of these sizes, e.g. 120,512 (else --questions)")
    parser.add_argument("--json", action="store_true", help="also print each result as a JSON line")
    parser.add_argument("--out", type=Path, help="--compare: write the results here as JSON")
    parser.add_argument("--questions", type=int, default=100, help="trajectories in the batched run")
    parser.add_argument("--sequential", type=int, default=8, help="trajectories in the one-at-a-time run")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="per turn")
    parser.add_argument("--top-p", type=float, default=0.95, help="the paper's rollout top-p (1.0 skips the sort)")
    args = parser.parse_args()
    if args.export:
        export_world(args.config, args.export)
        return
    if args.compare:
        compare(args)
        return

    import pyarrow.parquet as pq
    import torch

    from s3core.agent.policy import SamplingSettings, TransformersPolicy
    from s3core.agent.rollout import RolloutEngine, retriever_search
    from s3core.agent.strategies import Limits, S3Strategy
    from s3core.retrieval.base import DocStore
    from s3core.retrieval.dense import DenseRetriever, TorchFlatSearcher
    from s3core.retrieval.encoder import DenseEncoder

    world = args.world_dir
    started = time.perf_counter()
    engine_policy = vllm_policy(args.policy_shape, world, not args.compiled) if args.backend == "vllm" else None
    start_s = time.perf_counter() - started
    docs = DocStore(pq.read_table(world / "passages.parquet"))
    questions = [q["question"] for q in pq.read_table(world / "questions.parquet").to_pylist()]
    batches = [int(b) for b in args.batches.split(",") if b] or [args.questions]
    questions = (questions * (1 + max(batches) // len(questions)))[: max(batches)]
    encoder = DenseEncoder(str(world / "encoder"), query_prefix="query: ", passage_prefix="passage: ", device=args.device)
    vectors = encoder.encode_passages([docs.title(i) for i in range(len(docs))], [docs.text(i) for i in range(len(docs))])
    retriever = DenseRetriever(encoder, TorchFlatSearcher.from_array(vectors, device=args.device), meta={})

    search_seconds = [0.0]
    plain_search = retriever_search(retriever)

    def timed_search(queries, topk):
        start = time.perf_counter()
        rows = plain_search(queries, topk)
        search_seconds[0] += time.perf_counter() - start
        return rows

    if engine_policy is not None:
        policy = engine_policy
        label = f"vLLM, random-init {args.policy_shape} ({'compiled' if args.compiled else 'eager'})"
    elif args.policy_shape:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(world / "tokenizer")
        model = random_policy(args.policy_shape, tokenizer, args.device)
        policy = TransformersPolicy(str(world / "searcher"), device=args.device, model=model, tokenizer=tokenizer,
                                    batch_size=max(batches))
        label = f"random-init {args.policy_shape} ({sum(p.numel() for p in model.parameters()) / 1e9:.2f}B params)"
    else:
        policy = TransformersPolicy(str(world / "searcher"), device=args.device, batch_size=max(batches))
        label = "tiny searcher"
    limits = Limits(initial_topk=3, topk=8, max_searches=3, max_turns=4, max_selected=3)
    sampling = SamplingSettings(max_new_tokens=args.max_new_tokens, temperature=0.6, top_p=args.top_p, seed=0)

    def measure(batch: list[str], batch_size: int) -> tuple[float, int, float]:
        policy.batch_size = batch_size
        engine = RolloutEngine(policy, S3Strategy(limits), timed_search, docs, sampling, max_obs_tokens=1400,
                               max_context_tokens=8000)
        search_seconds[0] = 0.0
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        rollouts = [r for first in range(0, len(batch), batch_size) for r in engine.run(batch[first:first + batch_size])]
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start, sum(r.policy_tokens for r in rollouts), search_seconds[0]

    measure(questions[:2], 2)  # warm-up
    print(f"policy: {label}, device {args.device}, {args.max_new_tokens} new tokens per turn, 4 turns, s3 8-3-3, "
          f"temperature 0.6, top-p {args.top_p}", flush=True)
    batched_tps = 0.0
    for size in batches:
        b_time, b_tokens, b_search = measure(questions[:size], size)
        batched_tps = size / b_time
        print(f"batched    {size:4d} trajectories: {batched_tps:8.2f} traj/s  {b_tokens / b_time:10.0f} sampled tok/s  "
              f"search {100 * b_search / b_time:4.1f}% of time", flush=True)
        if args.json:
            import json

            print("JSON " + json.dumps({"backend": args.backend, "shape": args.policy_shape or "tiny", "batch": size,
                                        "traj_s": batched_tps, "tok_s": b_tokens / b_time,
                                        "search_share": b_search / b_time, "start_s": start_s,
                                        "compiled": args.compiled}), flush=True)
    if args.sequential > 0:
        s_batch = questions[: args.sequential]
        s_time, s_tokens, s_search = measure(s_batch, 1)
        seq_tps = len(s_batch) / s_time
        print(f"sequential {len(s_batch):4d} trajectories: {seq_tps:8.2f} traj/s  {s_tokens / s_time:10.0f} sampled tok/s  "
              f"search {100 * s_search / s_time:4.1f}% of time")
        print(f"ratio batched/sequential (trajectories/s): {batched_tps / seq_tps:.1f}")


if __name__ == "__main__":
    main()
