"""The training task: PPO of the searcher in a DeepSpeed subprocess; emits `s3.checkpoint.saved` per checkpoint."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.events import emit_event

from s3core.config import RunConfig
from s3core.pipeline import open_store
from s3core.rl.stage import train_spec
from s3core.store import Manifest
from tasks.common import PrefectProgress, spec_cache_key


def emit_checkpoint_event(event: str, payload: dict[str, Any]) -> None:
    """A Prefect event per checkpoint; deployments trigger evaluation on it (payload: run, key, step, path, store)."""
    emit_event(event=event, resource={"prefect.resource.id": f"s3.run.{payload['run']}", "s3.key": payload["key"]},
               payload=payload)
    get_run_logger().info("checkpoint step %s saved at %s", payload["step"], payload["path"])


@task(
    name="train-searcher",
    cache_key_fn=spec_cache_key(lambda cfg, training_pool, naive_rag, corpus, dense_index, bm25_index, tiny_models:
                                train_spec(cfg, training_pool, naive_rag, corpus, dense_index, bm25_index, tiny_models)),
    persist_result=True,
)
def train_task(cfg: RunConfig, training_pool: Manifest, naive_rag: list[Manifest], corpus: list[Manifest],
               dense_index: Manifest | None, bm25_index: Manifest | None, tiny_models: Manifest | None) -> Manifest:
    """Train the searcher (resumes from the newest complete checkpoint of an interrupted attempt)."""
    spec = train_spec(cfg, training_pool, naive_rag, corpus, dense_index, bm25_index, tiny_models)
    store = open_store(cfg)
    if done := spec.completed(store):
        return done
    return spec.run(store, PrefectProgress("train"), events=emit_checkpoint_event)
