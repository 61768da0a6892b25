"""Build the generator backend a config names (DESIGN.md section 2, "Generator"; section 3).

A registry keyed by `BackendName`: each entry turns a `GeneratorConfig` into a `ChatBackend`. Model names go
through `resolve_model_path`, so `tiny:generator` means the tiny-models artifact's generator folder for
either backend (for the openai backend that folder path is also the model id `transformers serve` expects).
With `generator.serve: transformers` (or `vllm`) the openai backend first starts (or reuses) a local
`transformers serve` (or vLLM server) for the model folder (local_server.LOCAL_SERVERS) and talks to it. The API key is read from the environment variable the config names; if it is unset no Authorization
header is sent (local servers need none).
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from pathlib import Path

from s3core.config.schema import GeneratorConfig
from s3core.generation.anthropic_backend import AnthropicChatBackend
from s3core.generation.base import ChatBackend
from s3core.generation.local_server import LOCAL_SERVERS
from s3core.generation.openai_backend import OpenAIChatBackend
from s3core.models.resolve import resolve_model_path
from s3core.paths import cache_dir
from s3core.registry import member_by_value


class BackendName(str, enum.Enum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    TRANSFORMERS = "transformers"


def served_base_url(cfg: GeneratorConfig, model: str) -> str | None:
    """The endpoint requests go to: a local server this process starts (generator.serve), else cfg.base_url."""
    if cfg.serve == "none":
        return cfg.base_url

    if not Path(model).is_dir():
        raise ValueError(
            f"generator.serve is {cfg.serve!r} but generator.model {cfg.model!r} is not a local model folder: "
            "give a folder (or 'tiny:generator'), or set serve: none and point base_url at a running server"
        )
    return LOCAL_SERVERS.base_url(model, cache_dir() / "logs", device=cfg.serve_device, extra_args=tuple(cfg.serve_args),
                                  timeout_s=cfg.serve_start_timeout_s, kind=cfg.serve, gpu_share=cfg.serve_gpu_share)


def _openai(cfg: GeneratorConfig, model: str) -> ChatBackend:
    base_url = served_base_url(cfg, model)
    if not base_url:
        raise ValueError(
            "generator.backend is 'openai' but generator.base_url is empty: set it, e.g. http://127.0.0.1:8001/v1"
        )
    return OpenAIChatBackend(
        base_url=base_url,
        model=model,
        api_key=os.environ.get(cfg.api_key_env) or None,
        concurrency=cfg.concurrency,
        timeout_s=cfg.timeout_s,
        max_retries=cfg.max_retries,
    )


def _anthropic(cfg: GeneratorConfig, model: str) -> ChatBackend:
    if not cfg.base_url:
        raise ValueError("generator.backend is 'anthropic' but generator.base_url is empty: set it to "
                         "https://api.anthropic.com (or a server that speaks the Messages API)")
    return AnthropicChatBackend(cfg.base_url, model, api_key=os.environ.get(cfg.api_key_env) or None,
                                concurrency=cfg.concurrency, timeout_s=cfg.timeout_s, max_retries=cfg.max_retries,
                                anthropic_version=cfg.anthropic_version)


def _transformers(cfg: GeneratorConfig, model: str) -> ChatBackend:
    from s3core.generation.extractive_reader import is_extractive_reader  # torch: only for the extractive reader

    if is_extractive_reader(model):  # a span model (the tiny world's trained reader) answers by extraction
        from s3core.generation.reader_backend import ReaderChatBackend  # torch: only for the extractive reader

        return ReaderChatBackend(model_path=model)
    from s3core.generation.transformers_backend import TransformersChatBackend  # imports torch

    return TransformersChatBackend(model_path=model)


BACKENDS: dict[BackendName, Callable[[GeneratorConfig, str], ChatBackend]] = {
    BackendName.OPENAI: _openai,
    BackendName.ANTHROPIC: _anthropic,
    BackendName.TRANSFORMERS: _transformers,
}


def backend_name(name: str) -> BackendName:
    return member_by_value(BackendName, name, "generator backend")


def make_backend(cfg: GeneratorConfig, tiny_models_dir: Path | None = None) -> ChatBackend:
    """The backend `cfg.backend` names, serving `cfg.model` (a `tiny:` name resolved against tiny_models_dir)."""
    build = BACKENDS[backend_name(cfg.backend)]
    return build(cfg, resolve_model_path(cfg.model, tiny_models_dir))
