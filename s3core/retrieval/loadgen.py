"""A mixed-load probe of the retrieval server: many concurrent clients, valid and malformed requests mixed.

What the server promises under load (docs/ARCHITECTURE.md, "Failure model"): no valid request fails because of
another request, every malformed one gets a 4xx, the process keeps running and its memory stays flat. This
module sends such a load and counts what came back; `tests/test_faults.py` asserts on the counts and
`bench/retrieval_server.py` prints them beside the throughput.

The malformed bodies are the ones found by probing (issue 19): a lone surrogate (valid JSON, invalid text),
bytes that are not UTF-8, truncated or absurdly nested JSON, wrong types, out-of-range sizes, an unknown index.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


def malformed_bodies(max_queries: int = 512, max_query_chars: int = 2048) -> dict[str, bytes]:
    """Request bodies a careful attacker sends, by name; each must get a 4xx."""
    def body(value) -> bytes:
        return json.dumps(value).encode()

    return {
        "lone_surrogate": b'{"queries": ["\\ud800"], "topk": 3}',
        "surrogate_among_valid": b'{"queries": ["who founded it", "x\\udfff y"], "topk": 3}',
        "not_utf8": b'{"queries": ["\xff\xfe caf\xe9"], "topk": 3}',
        "truncated_json": b'{"queries": ["who', 
        "nested_json": b"[" * 100_000 + b"]" * 100_000,
        "null_body": b"null",
        "array_body": body(["who"]),
        "queries_not_list": body({"queries": "who", "topk": 3}),
        "query_not_string": body({"queries": [7], "topk": 3}),
        "topk_zero": body({"queries": ["who"], "topk": 0}),
        "topk_huge": body({"queries": ["who"], "topk": 10**12}),
        "topk_string": body({"queries": ["who"], "topk": "three"}),
        "empty_queries": body({"queries": [], "topk": 3}),
        "blank_query": body({"queries": ["   "], "topk": 3}),
        "nul_query": body({"queries": ["who\u0000"], "topk": 3}),
        "long_query": body({"queries": ["w" * (max_query_chars + 1)], "topk": 3}),
        "too_many_queries": body({"queries": ["who"] * (max_queries + 1), "topk": 3}),
        "unknown_index": body({"queries": ["who"], "topk": 3, "index": "no-such-index"}),
        "extra_field": body({"queries": ["who"], "topk": 3, "queries2": []}),
    }


@dataclass
class LoadReport:
    """What a mixed load got back, counted by kind of request."""

    requests: int = 0
    valid: int = 0
    valid_ok: int = 0
    valid_failed: list[str] = field(default_factory=list)   # status or error of each valid request that failed
    malformed: int = 0
    malformed_4xx: int = 0
    malformed_other: list[str] = field(default_factory=list)  # name: status of each malformed one without a 4xx
    status: Counter = field(default_factory=Counter)
    transport_errors: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        return (f"{self.requests} requests in {self.seconds:.1f} s: {self.valid} valid ({self.valid_ok} ok, "
                f"{len(self.valid_failed)} failed), {self.malformed} malformed ({self.malformed_4xx} got a 4xx, "
                f"{len(self.malformed_other)} did not), 5xx {sum(n for s, n in self.status.items() if s >= 500)}, "
                f"transport errors {self.transport_errors}")


async def mixed_load(base: str, queries: list[str], clients: int = 64, requests: int = 640, malformed_every: int = 4,
                     topk: int = 3, token: str | None = None, timeout_s: float = 60.0) -> LoadReport:
    """`requests` POSTs to `{base}/retrieve` from `clients` concurrent clients; every `malformed_every`-th one
    is a malformed body (cycling through `malformed_bodies`), the rest valid one-query requests."""
    import httpx

    bad = list(malformed_bodies().items())
    headers = {"content-type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    report = LoadReport()
    next_request = iter(range(requests))

    async def client(http: httpx.AsyncClient) -> None:
        for i in next_request:
            malformed = malformed_every and i % malformed_every == malformed_every - 1
            if malformed:
                name, content = bad[(i // malformed_every) % len(bad)]
            else:
                name = "valid"
                content = json.dumps({"queries": [queries[i % len(queries)]], "topk": topk, "return_scores": True}).encode()
            try:
                response = await http.post(f"{base}/retrieve", content=content, headers=headers)
                status = response.status_code
                ok = status == 200 and len(response.json()["result"][0]) > 0
            except httpx.HTTPError as err:
                report.transport_errors += 1
                status, ok = None, False
                outcome = type(err).__name__
            else:
                report.status[status] += 1
                outcome = str(status)
            report.requests += 1
            if malformed:
                report.malformed += 1
                if status is not None and 400 <= status < 500:
                    report.malformed_4xx += 1
                else:
                    report.malformed_other.append(f"{name}: {outcome}")
            else:
                report.valid += 1
                if ok:
                    report.valid_ok += 1
                else:
                    report.valid_failed.append(outcome)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    report.seconds = time.perf_counter() - started
    return report


def rss_mib(pid: int) -> float:
    """Resident memory of a process, MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")
