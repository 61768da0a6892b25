"""Rollout throughput of the s3 searcher: the batched engine vs one trajectory at a time, side by side.

    # CPU, the tiny world's searcher (export once from the tiny world's store, then measure):
    .venv/bin/python bench/rollout.py --export bench/out/world
    .venv/bin/python bench/rollout.py --world-dir bench/out/world
    # GPU machine, a random-init Qwen2.5-1.5B-shaped policy on the same world:
    python bench/rollout.py --world-dir bench/out/world --device cuda --policy-shape qwen2.5-1.5b

`--export` writes a self-contained folder (the tiny world's passages and test questions as Parquet, the
tiny tokenizer, encoder and searcher folders) so the measurement needs only torch, transformers, pyarrow and
pydantic: the GPU machines have no Prefect, faiss or pyserini. The measurement then:

1. encodes the passages with the tiny dense encoder and searches them exactly (torch matmul + top-k, the
   dense retriever's torch engine) on the chosen device;
2. batched: `RolloutEngine` over N test questions with the s3 strategy ("8-3-3", 4 turns), all in one
   policy batch per turn and one search batch per turn;
3. sequential: the same engine one question at a time over the first `--sequential` questions (the
   public code's shape of work at batch 1);
4. prints trajectories/s, sampled (policy) tokens/s, the share of time spent searching, and the ratio.

The policy is the tiny searcher, or with `--policy-shape` a random-init model of that shape (bf16 on CUDA)
with the tiny tokenizer: ids beyond the tokenizer decode to nothing, so a random policy writes no valid
tag and every trajectory runs all its turns to `--max-new-tokens` each: the worst case, and a fixed amount
of work per trajectory.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHAPES = {  # Qwen2.5 configurations (hidden, intermediate, layers, heads, kv heads, vocab, tied embeddings)
    "qwen2.5-0.5b": (896, 4864, 24, 14, 2, 151936, True),
    "qwen2.5-1.5b": (1536, 8960, 28, 12, 2, 151936, True),
    "qwen2.5-7b": (3584, 18944, 28, 28, 4, 152064, False),
}


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


def random_policy(shape: str, tokenizer, device: str):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    hidden, inter, layers, heads, kv, vocab, tied = SHAPES[shape]
    config = Qwen2Config(hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers, num_attention_heads=heads,
                         num_key_value_heads=kv, vocab_size=vocab, tie_word_embeddings=tied, max_position_embeddings=32768,
                         rope_theta=1e6, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    with torch.device(device):
        model = Qwen2ForCausalLM(config).to(dtype)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", type=Path, help="write the world folder from --config's store and exit")
    parser.add_argument("--config", default=str(REPO / "configs" / "tiny.yaml"))
    parser.add_argument("--world-dir", type=Path, default=REPO / "bench" / "out" / "world")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--policy-shape", choices=sorted(SHAPES), help="random-init policy of this shape (default: tiny searcher)")
    parser.add_argument("--questions", type=int, default=100, help="trajectories in the batched run")
    parser.add_argument("--sequential", type=int, default=8, help="trajectories in the one-at-a-time run")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="per turn")
    parser.add_argument("--top-p", type=float, default=0.95, help="the paper's rollout top-p (1.0 skips the sort)")
    args = parser.parse_args()
    if args.export:
        export_world(args.config, args.export)
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
    docs = DocStore(pq.read_table(world / "passages.parquet"))
    questions = [q["question"] for q in pq.read_table(world / "questions.parquet").to_pylist()]
    questions = (questions * (1 + args.questions // len(questions)))[: args.questions]
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

    if args.policy_shape:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(world / "tokenizer")
        model = random_policy(args.policy_shape, tokenizer, args.device)
        policy = TransformersPolicy(str(world / "searcher"), device=args.device, model=model, tokenizer=tokenizer,
                                    batch_size=args.questions)
        label = f"random-init {args.policy_shape} ({sum(p.numel() for p in model.parameters()) / 1e9:.2f}B params)"
    else:
        policy = TransformersPolicy(str(world / "searcher"), device=args.device, batch_size=args.questions)
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
    b_time, b_tokens, b_search = measure(questions, args.questions)
    s_batch = questions[: args.sequential]
    s_time, s_tokens, s_search = measure(s_batch, 1)
    batched_tps, seq_tps = len(questions) / b_time, len(s_batch) / s_time
    print(f"policy: {label}, device {args.device}, {args.max_new_tokens} new tokens per turn, 4 turns, s3 8-3-3, "
          f"temperature 0.6, top-p {args.top_p}")
    print(f"batched    {len(questions):4d} trajectories: {batched_tps:8.2f} traj/s  {b_tokens / b_time:10.0f} sampled tok/s  "
          f"search {100 * b_search / b_time:4.1f}% of time")
    print(f"sequential {len(s_batch):4d} trajectories: {seq_tps:8.2f} traj/s  {s_tokens / s_time:10.0f} sampled tok/s  "
          f"search {100 * s_search / s_time:4.1f}% of time")
    print(f"ratio batched/sequential (trajectories/s): {batched_tps / seq_tps:.1f}")


if __name__ == "__main__":
    main()
