"""Retrieval server throughput and latency vs in-process batched search on the same index, side by side.

    .venv/bin/python bench/retrieval_server.py --config configs/bench-100k.yaml [--seconds 15]

1. Builds (or finds in the store) the config's corpus and indexes (bench-100k: the tiny world scaled to
   ~100k passages, the tiny encoder, flat FAISS + BM25).
2. Ceiling: in-process `retriever.search` over batches of `max_batch_queries` queries (no HTTP).
3. Starts `s3agent serve retriever` on 127.0.0.1 (a subprocess, stopped by PID) and, for 1, 16 and 64
   concurrent clients each sending one-query requests back to back, measures queries/s and p50/p99
   latency. Prints the server's throughput as a ratio of the in-process ceiling.
4. Mixed load (`s3core.retrieval.loadgen`): 64 clients, one request in four malformed (lone surrogates,
   bytes that are not UTF-8, broken JSON, wrong types and sizes), `--mixed-rounds` rounds: valid requests
   that failed, malformed ones without a 4xx, 5xx, transport errors, and the server's RSS before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from s3core.config import load_config  # noqa: E402
from s3core.pipeline import open_store, prepare  # noqa: E402
from s3core.retrieval.indexes import open_retrievers  # noqa: E402
from s3core.retrieval.loadgen import mixed_load, rss_mib  # noqa: E402


def in_process_qps(retriever, queries: list[str], topk: int, batch: int) -> float:
    retriever.search(queries[:batch], topk)  # warm-up
    start = time.perf_counter()
    for first in range(0, len(queries), batch):
        retriever.search(queries[first : first + batch], topk)
    return len(queries) / (time.perf_counter() - start)


async def load_test(base: str, index: str, queries: list[str], topk: int, clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def client(worker: int, http: httpx.AsyncClient) -> None:
        i = worker
        while time.perf_counter() < stop_at:
            body = {"queries": [queries[i % len(queries)]], "topk": topk, "return_scores": True, "index": index}
            sent = time.perf_counter()
            response = await http.post(f"{base}/retrieve", json=body)
            response.raise_for_status()
            latencies.append(time.perf_counter() - sent)
            i += clients

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(w, http) for w in range(clients)))
        wall = time.perf_counter() - start
    latencies.sort()
    return {
        "qps": len(latencies) / wall,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "requests": len(latencies),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(config: Path, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "s3cli.main", "serve", "retriever", "--config", str(config), "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
        if proc.poll() is not None:
            raise RuntimeError("the retrieval server exited during start-up")
    proc.kill()
    raise RuntimeError("the retrieval server did not answer /health within 600 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "bench-100k.yaml")
    parser.add_argument("--seconds", type=float, default=15.0, help="load-test duration per concurrency level")
    parser.add_argument("--topk", type=int, default=3)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--mixed-rounds", type=int, default=3, help="rounds of the mixed valid/malformed load")
    parser.add_argument("--mixed-requests", type=int, default=2048, help="requests per mixed-load round")
    args = parser.parse_args()

    cfg = load_config(args.config)
    store = open_store(cfg)
    state = prepare(store, cfg, until="retrieval_eval")
    retrievers, docs = open_retrievers(store, cfg, state.corpus, state.dense_index, state.bm25_index, state.tiny_models)
    questions = []
    for manifest in state.questions:
        questions += store.read_table(manifest, columns=["question"]).column("question").to_pylist()
    batch = cfg.retrieval.max_batch_queries
    ceilings = {name: in_process_qps(r, questions, args.topk, batch) for name, r in retrievers.items()}
    del retrievers  # the server process loads its own copy

    port = free_port()
    server = start_server(args.config, port)
    try:
        rows = []
        for name in ceilings:
            for clients in args.clients:
                stats = asyncio.run(load_test(f"http://127.0.0.1:{port}", name, questions, args.topk, clients, args.seconds))
                rows.append((name, clients, stats))
        rss = [rss_mib(server.pid)]
        mixed = []
        for _ in range(args.mixed_rounds):
            mixed.append(asyncio.run(mixed_load(f"http://127.0.0.1:{port}", questions, clients=64,
                                                requests=args.mixed_requests, topk=args.topk)))
            rss.append(rss_mib(server.pid))
    finally:
        os.kill(server.pid, signal.SIGTERM)
        server.wait(timeout=60)

    print(f"corpus: {len(docs):,} passages; {len(questions):,} distinct queries; topk {args.topk}; {os.cpu_count()} CPU cores")
    print(f"in-process batched search (batch {batch}): " + ", ".join(f"{n} {q:,.0f} q/s" for n, q in ceilings.items()))
    print(f"{'index':6s} {'clients':>7s} {'q/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'vs in-process':>14s}")
    for name, clients, stats in rows:
        ratio = stats["qps"] / ceilings[name]
        print(f"{name:6s} {clients:7d} {stats['qps']:9,.0f} {stats['p50_ms']:8.1f} {stats['p99_ms']:8.1f} {ratio:14.2f}")
    print("mixed load, 64 clients, one request in four malformed (default index):")
    for round_, report in enumerate(mixed, start=1):
        print(f"  round {round_}: {report.summary()}")
    print("  server RSS MiB before and after each round: " + " -> ".join(f"{r:.1f}" for r in rss))


if __name__ == "__main__":
    main()
