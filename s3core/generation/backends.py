"""Build the generator backend a config names (DESIGN.md section 2, "Generator"; section 3).

A registry keyed by `BackendName`: each entry turns a `GeneratorConfig` into a `ChatBackend`. Model names go
through `resolve_model_path`, so `tiny:generator` means the tiny-models artifact's generator folder for
either backend (for the openai backend that folder path is also the model id `transformers serve` expects).
The API key is read from the environment variable the config names; if it is unset no Authorization
header is sent (local servers need none).
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from pathlib import Path

from s3core.config.schema import GeneratorConfig
from s3core.generation.base import ChatBackend
from s3core.models.resolve import resolve_model_path


class BackendName(str, enum.Enum):
    OPENAI = "openai"
    TRANSFORMERS = "transformers"


def _openai(cfg: GeneratorConfig, model: str) -> ChatBackend:
    from s3core.generation.openai_backend import OpenAIChatBackend

    if not cfg.base_url:
        raise ValueError(
            "generator.backend is 'openai' but generator.base_url is empty: set it, e.g. http://127.0.0.1:8001/v1"
        )
    return OpenAIChatBackend(
        base_url=cfg.base_url,
        model=model,
        api_key=os.environ.get(cfg.api_key_env) or None,
        concurrency=cfg.concurrency,
        timeout_s=cfg.timeout_s,
        max_retries=cfg.max_retries,
    )


def _transformers(cfg: GeneratorConfig, model: str) -> ChatBackend:
    from s3core.generation.transformers_backend import TransformersChatBackend  # imports torch

    return TransformersChatBackend(model_path=model)


BACKENDS: dict[BackendName, Callable[[GeneratorConfig, str], ChatBackend]] = {
    BackendName.OPENAI: _openai,
    BackendName.TRANSFORMERS: _transformers,
}


def backend_name(name: str) -> BackendName:
    try:
        return BackendName(name)
    except ValueError:
        valid = ", ".join(repr(b.value) for b in BackendName)
        raise ValueError(f"unknown generator backend {name!r}: valid names are {valid}") from None


def make_backend(cfg: GeneratorConfig, tiny_models_dir: Path | None = None) -> ChatBackend:
    """The backend `cfg.backend` names, serving `cfg.model` (a `tiny:` name resolved against tiny_models_dir)."""
    build = BACKENDS[backend_name(cfg.backend)]
    return build(cfg, resolve_model_path(cfg.model, tiny_models_dir))
