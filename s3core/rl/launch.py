"""Entry point of the training subprocess: `python -m s3core.rl.launch --spec SPEC.json` (one rank) or the
same module under the DeepSpeed launcher (`deepspeed --num_gpus N --module s3core.rl.launch ...`; a hostfile
for several nodes would start the same command on each, not tried yet): the training stage writes SPEC.json
and starts this.

SPEC.json holds the run config, the store root, the input manifests and the run folder. Rank 0 prints one
line per event on stdout, `S3EVENT {json}` (progress, checkpoint), which the stage turns into progress
and Prefect events; everything else is ordinary logging.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

from s3core.agent.rollout import retriever_search
from s3core.config.schema import RunConfig
from s3core.generation.backends import make_backend
from s3core.generation.local_server import LOCAL_SERVERS
from s3core.models.resolve import resolve_model_path
from s3core.retrieval.indexes import open_naive_retriever
from s3core.rl.engine import ensure_distributed
from s3core.rl.stage import EVENT_PREFIX
from s3core.rl.trainer import SearcherTrainer, TrainingData, rank_and_world
from s3core.store import ArtifactStore, Manifest


def announce(kind: str, **payload: Any) -> None:
    if rank_and_world()[0] == 0:
        print(EVENT_PREFIX + json.dumps({"kind": kind, **payload}), flush=True)


def load_training_data(store, manifests: dict[str, Any]):
    pool = store.read_table(manifests["training_pool"]).to_pylist()
    naive: dict[str, float] = {}
    for key, manifest in manifests.items():
        if key.startswith("naive_rag/"):
            for row in store.read_table(manifest, columns=["question_id", "genacc"]).to_pylist():
                naive[row["question_id"]] = float(row["genacc"])
    return TrainingData(pool=pool, naive_genacc=naive)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spec", required=True, type=Path)
    parser.add_argument("--local_rank", type=int, default=0, help="set by the DeepSpeed launcher")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)


    spec = json.loads(args.spec.read_text())
    cfg = RunConfig.model_validate(spec["config"])
    store = ArtifactStore(spec["store_root"])
    manifests = {key: Manifest.from_json(text) for key, text in spec["inputs"].items()}
    ensure_distributed()
    tiny = store.local_dir(manifests["tiny_models"]) if "tiny_models" in manifests else None
    corpus = [m for key, m in sorted(manifests.items()) if key.startswith("corpus/")]
    retriever, docs = open_naive_retriever(store, cfg, corpus, manifests.get("dense_index"),
                                           manifests.get("bm25_index"), manifests.get("tiny_models"))
    try:
        generator = make_backend(cfg.generator, tiny)
        asyncio.run(generator.health())

        trainer = SearcherTrainer(cfg, resolve_model_path(cfg.searcher.model, tiny), load_training_data(store, manifests),
                                  retriever_search(retriever), docs, generator, Path(spec["run_dir"]),
                                  on_checkpoint=lambda step, path: announce("checkpoint", step=step, path=str(path)))
        trainer.train(progress=lambda done, total, message: announce("progress", done=done, total=total, message=message))
        announce("finished", steps=trainer.state.step)
    finally:
        LOCAL_SERVERS.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
