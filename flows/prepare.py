"""`s3-prepare`: ingest (and, on the tiny world, generate) the corpus and QA sets."""

from __future__ import annotations

from prefect import flow
from pydantic import BaseModel, Field

from flows.params import ConfigPath

from s3core.config import RunConfig, load_config
from s3core.store import Manifest
from tasks.prepare import corpus_task, questions_task, tiny_models_task, world_task
from tasks.report import report_artifacts_task


class PrepareOutputs(BaseModel):
    world: Manifest | None = None
    tiny_models: Manifest | None = None
    corpus: list[Manifest]
    questions: list[Manifest] = Field(default_factory=list)
    embeddings: Manifest | None = None
    dense_index: Manifest | None = None
    bm25_index: Manifest | None = None

    def all(self) -> list[Manifest]:
        single = [self.world, self.tiny_models]
        later = [self.embeddings, self.dense_index, self.bm25_index]
        return [m for m in single if m] + self.corpus + self.questions + [m for m in later if m]


def prepare_stages(cfg: RunConfig) -> PrepareOutputs:
    """The preparation stages in order; shared by s3-prepare and s3-train."""
    world = world_task(cfg) if cfg.world is not None else None
    tiny = tiny_models_task(cfg, world) if cfg.tiny_models is not None and world is not None else None
    corpus = [corpus_task(cfg, part, world) for part in cfg.corpus.parts]
    questions = [questions_task(cfg, qa, world) for qa in cfg.questions.sets]
    return PrepareOutputs(world=world, tiny_models=tiny, corpus=corpus, questions=questions)


@flow(name="s3-prepare", log_prints=True)
def s3_prepare(config_path: ConfigPath = "configs/tiny.yaml") -> dict[str, str]:
    """Ingest the corpus and QA sets named in the config into the artifact store."""
    cfg = load_config(config_path)
    outputs = prepare_stages(cfg)
    return report_artifacts_task(cfg, outputs.all(), title="s3-prepare")
