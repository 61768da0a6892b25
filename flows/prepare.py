"""`s3-prepare`: ingest (and, on the tiny world, generate) the corpus and QA sets."""

from __future__ import annotations

from prefect import flow

from flows.params import ConfigPath
from s3core.config import RunConfig, load_config
from s3core.pipeline import PipelineState
from tasks.prepare import corpus_task, questions_task, tiny_models_task, world_task
from tasks.report import report_artifacts_task


def prepare_stages(cfg: RunConfig) -> PipelineState:
    """The preparation stages in order; shared by s3-prepare and s3-train."""
    world = world_task(cfg) if cfg.world is not None else None
    tiny = tiny_models_task(cfg, world) if cfg.tiny_models is not None and world is not None else None
    corpus = [corpus_task(cfg, part, world) for part in cfg.corpus.parts]
    questions = [questions_task(cfg, qa, world) for qa in cfg.questions.sets]
    return PipelineState(world=world, tiny_models=tiny, corpus=corpus, questions=questions)


@flow(name="s3-prepare", log_prints=True)
def s3_prepare(config_path: ConfigPath = "configs/tiny.yaml") -> dict[str, str]:
    """Ingest the corpus and QA sets named in the config into the artifact store."""
    cfg = load_config(config_path)
    outputs = prepare_stages(cfg)
    return report_artifacts_task(cfg, outputs.all(), title="s3-prepare")
