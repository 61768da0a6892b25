"""Per-token cost of the rollout sampling loop at batch 1 against transformers' own `generate`, and where
the time goes (torch profiler), for a random-init Qwen2.5-1.5B-shaped policy.

    python3 bench/policy_overhead.py --world-dir bench/out/world --device cuda     # GPU machine

Needs the folder `bench/rollout.py --export` writes (for the tokenizer). Prints ms/token of
`TransformersPolicy` (with and without stop strings, with and without top-p) and of `model.generate`
with the same sampling settings on the same 700-token prompt, then the profiler's top operators.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world-dir", type=Path, default=REPO / "bench" / "out" / "world")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--shape", default="qwen2.5-1.5b")
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile
    from transformers import AutoTokenizer

    from s3core.agent.policy import SamplingSettings, TransformersPolicy

    spec = importlib.util.spec_from_file_location("rollout_bench", REPO / "bench" / "rollout.py")
    rollout_bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rollout_bench)
    tokenizer = AutoTokenizer.from_pretrained(args.world_dir / "tokenizer")
    model = rollout_bench.random_policy(args.shape, tokenizer, args.device)
    policy = TransformersPolicy(str(args.world_dir / "searcher"), device=args.device, model=model, tokenizer=tokenizer,
                                batch_size=1)
    prompt = [list(range(5, 705))]
    base = SamplingSettings(max_new_tokens=args.tokens, temperature=0.6, top_p=0.95,
                            stop_strings=("</query>", "</search_complete>"))

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    policy.continue_sequences(prompt, base)  # warm-up
    for label, settings in [("ours", base), ("ours, no stop strings", SamplingSettings(args.tokens, 0.6, 0.95)),
                            ("ours, no stop strings, top-p 1", SamplingSettings(args.tokens, 0.6, 1.0))]:
        sync()
        start = time.perf_counter()
        policy.continue_sequences(prompt, settings)
        sync()
        print(f"{label:34s} {(time.perf_counter() - start) / args.tokens * 1000:6.1f} ms/token")
    ids = torch.tensor(prompt, device=args.device)
    sync()
    start = time.perf_counter()
    model.generate(ids, max_new_tokens=args.tokens, min_new_tokens=args.tokens, do_sample=True, temperature=0.6,
                   top_p=0.95, pad_token_id=tokenizer.pad_token_id)
    sync()
    print(f"{'transformers generate':34s} {(time.perf_counter() - start) / args.tokens * 1000:6.1f} ms/token")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device.startswith("cuda") else [])
    with profile(activities=activities) as prof:
        policy.continue_sequences(prompt, SamplingSettings(16, 0.6, 0.95, ("</query>",)))
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
