"""The `tiny_models` stage (DESIGN.md section 4): the tiny world's tokenizer, searcher, generator and encoder
built from scratch as Hugging Face folders.

    tiny_models   tokenizer, searcher, generator, encoder as Hugging Face folders          dir
"""

from __future__ import annotations

from s3core.config.schema import RunConfig
from s3core.data.tiny_world import read_world_texts
from s3core.store import Manifest, StageContext, StageResult, StageSpec


def tiny_models_spec(cfg: RunConfig, world: Manifest) -> StageSpec:
    if cfg.tiny_models is None:
        raise ValueError("this config has no `tiny_models:` section, so there are no tiny models to build")
    models_cfg = cfg.tiny_models

    def build(ctx: StageContext) -> StageResult:
        from s3core.models.tiny import (
            build_tiny_models,  # torch + transformers: imported only when building
        )

        texts = read_world_texts(ctx.store.local_dir(ctx.inputs["world"]))
        staging = ctx.staging_dir()
        ctx.progress(0, 1, f"building tiny models from {len(texts)} texts")
        paths = build_tiny_models(texts, models_cfg, staging / "models",
                                  world_dir=ctx.store.local_dir(ctx.inputs["world"]))
        ctx.progress(1, 1, "tiny models built")
        return StageResult(stats={"models": sorted(paths)}, staging_dir=staging / "models")

    return StageSpec("tiny_models", models_cfg, {"world": world}, build, kind="dir")
