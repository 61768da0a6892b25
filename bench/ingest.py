"""Corpus ingest throughput: our sharded, resumable stage vs a one-file baseline, side by side.

    .venv/bin/python bench/ingest.py [--copies 200] [--shard-rows 50000]

Builds a wiki-18-format corpus by repeating ../shared/data/wiki18-sample.jsonl (new ids per copy), then in
one run measures:
  baseline   json.loads every line into memory, one pyarrow Table, one Parquet file (no resume, no checks)
  ingest     s3core's corpus stage: parse + validate, zstd Parquet shards renamed into place, manifest
  re-run     the same stage again (finds the manifest, skips)
  verify     reading the artifact back with size + sha256 + schema checks
and prints passages/s and the ratio ingest / baseline.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from s3core.config import parse_config
from s3core.data.formats import passage_from_record, write_repeated_corpus
from s3core.data.stage import corpus_spec
from s3core.store import ArtifactStore

REPO = Path(__file__).resolve().parents[1]


def baseline(path: Path, out: Path) -> float:
    start = time.perf_counter()
    with open(path, encoding="utf-8") as handle:
        rows = [passage_from_record(json.loads(line)) for line in handle]
    pq.write_table(pa.Table.from_pylist(rows), out, compression="zstd")
    return time.perf_counter() - start


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=200, help="copies of the 1,000-passage sample")
    parser.add_argument("--shard-rows", type=int, default=50_000)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--sample", type=Path, default=REPO.parent / "shared" / "data" / "wiki18-sample.jsonl")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="s3-bench-ingest-") as tmp:
        tmp = Path(tmp)
        corpus = tmp / "corpus.jsonl"
        n = write_repeated_corpus(args.sample, args.copies, corpus)
        cfg = parse_config({"name": "bench", "store": {"root": str(tmp / "store")},
                            "corpus": {"parts": [{"name": "b", "source": {"kind": "file", "path": str(corpus)}}],
                                       "shard_rows": args.shard_rows}})
        spec = corpus_spec(cfg, cfg.corpus.parts[0])
        base_times, ingest_times = [], []
        for trial in range(args.trials):  # interleaved, so both see the same page cache and CPU state
            base_times.append(baseline(corpus, tmp / f"baseline-{trial}.parquet"))
            store = ArtifactStore(tmp / f"store-{trial}")
            seconds, manifest = timed(lambda: spec.run(store, progress=lambda *a: None))
            ingest_times.append(seconds)
        rerun_s, _ = timed(lambda: spec.run(store, progress=lambda *a: None))
        verify_s, table = timed(lambda: store.read_table(manifest))
        assert table.num_rows == n

    base_s, ingest_s = min(base_times), min(ingest_times)
    print(f"corpus: {n:,} passages, shard_rows {args.shard_rows:,} ({len(manifest.shards)} shards), best of {args.trials}")
    print(f"{'what':10s} {'seconds':>9s} {'passages/s':>12s}")
    for name, seconds in (("baseline", base_s), ("ingest", ingest_s), ("verify", verify_s)):
        print(f"{name:10s} {seconds:9.2f} {n / seconds:12,.0f}")
    print(f"{'re-run':10s} {rerun_s:9.3f} {'(skipped)':>12s}")
    print(f"ratio ingest/baseline throughput: {base_s / ingest_s:.2f}")


if __name__ == "__main__":
    main()
