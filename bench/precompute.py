"""Naive-RAG precompute throughput: the stage vs a one-request-at-a-time loop, against one local server.

    .venv/bin/python bench/precompute.py [--config configs/tiny.yaml] [--serve-arg=--continuous-batching]
    # GPU (issue 22): vLLM's server with a random-weight Qwen2.5-0.5B shape as the generator
    python bench/precompute.py --config configs/tiny-gpu.yaml --serve vllm --generator-shape 0.5b --split train \
        --max-new-tokens 32 --serve-arg=--enforce-eager

All three measurements run in one process, side by side, against the SAME `transformers serve` of the
config's generator on 127.0.0.1 (started here, stopped by PID at the end):

1. stage: the `naive_rag` stage itself (batched retrieval, `generator.concurrency` requests in flight,
   scoring, Parquet shards) over the config's first non-train QA set (or `--split`'s), written to a throw-away key (shard
   size 64) and deleted afterwards. The loop and the ceiling use the same questions.
2. loop: the public code's way: for each question in turn, retrieve its top-k, send one chat request and
   wait for it, then span-check the answer (same retriever, prompt, server and parameters).
3. ceiling: the server alone, generation only (the same conversations, no retrieval or scoring) with 1,
   `concurrency` and 4 x `concurrency` requests always in flight; the best of them is the most any client
   could get out of this server.

Prints questions/s of each and the ratios stage/loop and stage/ceiling.

`--serve vllm` serves the generator with vLLM's OpenAI server instead (GPU). `--generator-shape` replaces the
config's generator by a random-weight Qwen2.5 shape (s3core/models/shapes.py, served with
`--load-format dummy`), whose answers are noise but cost what the shape's answers cost.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from s3core.agent.context import format_docs  # noqa: E402
from s3core.config import load_config  # noqa: E402
from s3core.data.answers import span_check  # noqa: E402
from s3core.generation.backends import make_backend  # noqa: E402
from s3core.generation.local_server import LOCAL_SERVERS  # noqa: E402
from s3core.models.resolve import resolve_model_path  # noqa: E402
from s3core.pipeline import open_store, prepare  # noqa: E402
from s3core.reward import precompute  # noqa: E402
from s3core.store import StageSpec  # noqa: E402


def first_eval_set(state, split: str | None = None):
    """The questions manifest every measurement uses: the config's first set of `split`, else its first
    non-train one."""
    return next(m for m in state.questions if (m.stats.get("split") == split if split else m.stats.get("split") != "train"))


def run_stage(cfg, store, state, split: str | None = None) -> tuple[float, int]:
    """questions/s of the naive_rag stage over the measured QA set (all its questions)."""
    test_q = first_eval_set(state, split)
    spec: StageSpec = precompute.naive_rag_spec(cfg, test_q, state.corpus, state.dense_index, state.bm25_index,
                                                state.tiny_models, shard_rows=64)
    if store.fs.exists(store.artifact_path("naive_rag", spec.key)):
        store.fs.rm(store.artifact_path("naive_rag", spec.key), recursive=True)
    start = time.perf_counter()
    manifest = spec.run(store, lambda *a: None)
    elapsed = time.perf_counter() - start
    store.fs.rm(store.artifact_path("naive_rag", spec.key), recursive=True)
    return manifest.row_count / elapsed, manifest.row_count


def run_loop(cfg, questions: list[dict], retriever, docs, base_url: str, model: str) -> float:
    """questions/s of one request at a time: retrieve, ask, wait, check, next question."""
    start = time.perf_counter()
    with httpx.Client(timeout=cfg.generator.timeout_s) as http:
        for q in questions:
            hits = retriever.search([q["question"]], cfg.retrieval.naive_topk)[0]
            context = format_docs(docs, [h.row for h in hits])
            body = {"model": model, "messages": precompute.generator_messages(context, q["question"]),
                    "max_tokens": cfg.generator.max_new_tokens, "temperature": cfg.generator.temperature}
            reply = http.post(f"{base_url}/chat/completions", json=body)
            reply.raise_for_status()
            span_check(reply.json()["choices"][0]["message"]["content"] or "", q["golden_answers"])
    return len(questions) / (time.perf_counter() - start)


async def requests_per_second(cfg, backend, conversations, in_flight: int) -> float:
    """Requests/s of the server with `in_flight` requests always outstanding (generation only)."""
    from s3core.generation.base import GenerationParams

    backend.concurrency = in_flight
    params = GenerationParams(max_new_tokens=cfg.generator.max_new_tokens, temperature=cfg.generator.temperature)
    start = time.perf_counter()
    await backend.generate(conversations, params)
    return len(conversations) / (time.perf_counter() - start)


def server_ceiling(cfg, backend, conversations) -> dict[int, float]:
    """Requests/s at 1, concurrency and 4 x concurrency requests in flight; the ceiling is the best of them."""
    levels = sorted({1, cfg.generator.concurrency, 4 * cfg.generator.concurrency})
    asyncio.run(requests_per_second(cfg, backend, conversations[:20], levels[-1]))  # warm-up
    # one in flight is a rate after a few dozen requests; the whole set would take as long as the loop
    few = conversations[:max(20, len(conversations) // 10)]
    return {level: asyncio.run(requests_per_second(cfg, backend, few if level == 1 else conversations, level))
            for level in levels}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configs" / "tiny.yaml"))
    parser.add_argument("--serve-arg", action="append", default=[], help="extra server argument")
    parser.add_argument("--serve", choices=("transformers", "vllm"), default="transformers")
    parser.add_argument("--generator-shape", help="serve a random-weight Qwen2.5 shape (0.5b, 1.5b, 7b, 14b) instead")
    parser.add_argument("--gpu-share", type=float, default=0.3, help="--serve vllm: the server's GPU share")
    parser.add_argument("--split", help="measure this split's first QA set (default: the first non-train one)")
    parser.add_argument("--max-new-tokens", type=int, help="answer length limit (default: the config's)")
    parser.add_argument("--concurrency", type=int, help="requests in flight of the stage (default: the config's; "
                        "the tiny world's 4 suits a CPU, a vLLM server wants 64 or more)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    cfg = load_config(args.config)
    update = {"backend": "openai", "serve": args.serve, "serve_args": args.serve_arg, "serve_gpu_share": args.gpu_share,
              "serve_start_timeout_s": 900.0}
    if args.max_new_tokens:
        update["max_new_tokens"] = args.max_new_tokens
    if args.concurrency:
        update["concurrency"] = args.concurrency
    if args.generator_shape:
        from s3core.models.shapes import write_model_folder

        folder = REPO / "bench" / "out" / f"generator-{args.generator_shape}"
        update["model"] = str(write_model_folder(args.generator_shape, folder, weights=False))
        update["serve_args"] = [*args.serve_arg, "--load-format", "dummy"]
        update["max_empty_share"] = 1.0  # random weights may answer with whitespace
    gen = cfg.generator.model_copy(update=update)
    cfg = cfg.model_copy(update={"generator": gen})
    store = open_store(cfg)
    state = prepare(store, cfg, until="retrieval_eval")
    questions = store.read_table(first_eval_set(state, args.split)).to_pylist()
    models_dir = store.local_dir(state.tiny_models) if state.tiny_models else None
    model = resolve_model_path(gen.model, models_dir)
    try:
        backend = make_backend(gen, models_dir)  # starts the one server every measurement uses
        base_url = backend.base_url
        retriever, docs = precompute.open_naive_retriever(store, cfg, state.corpus, state.dense_index,
                                                           state.bm25_index, state.tiny_models)
        contexts = [format_docs(docs, [h.row for h in hits])
                    for hits in retriever.search([q["question"] for q in questions], cfg.retrieval.naive_topk)]
        conversations = [precompute.generator_messages(c, q["question"]) for c, q in zip(contexts, questions)]
        by_level = server_ceiling(cfg, backend, conversations)
        ceiling = max(by_level.values())
        stage, n_stage = run_stage(cfg, store, state, args.split)
        looped = questions[:max(20, len(questions) // 10)] if args.serve == "vllm" else questions
        loop = run_loop(cfg, looped, retriever, docs, base_url, model)
    finally:
        LOCAL_SERVERS.stop_all()
    print(f"config {cfg.name}, generator {gen.model} via {args.serve} {' '.join(gen.serve_args)}".rstrip())
    print(f"stage    {stage:8.1f} questions/s  ({n_stage} questions, concurrency {gen.concurrency})")
    print(f"loop     {loop:8.1f} questions/s  ({len(looped)} questions, one request at a time)")
    levels = ", ".join(f"{level} in flight {rate:.1f}/s" for level, rate in by_level.items())
    print(f"ceiling  {ceiling:8.1f} requests/s   ({len(conversations)} requests; {levels})")
    print(f"ratio stage/loop {stage / loop:.2f}   stage/ceiling {stage / ceiling:.2f}")


if __name__ == "__main__":
    main()
