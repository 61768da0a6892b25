"""Model names in configs -> something `from_pretrained` loads: a hub name, a local folder, or a tiny model.

`tiny:<name>` (searcher, generator, encoder, tokenizer) points into the tiny-models artifact; anything else
is passed to Hugging Face as is (a hub name such as `intfloat/e5-base-v2`, or a local folder).
"""

from __future__ import annotations

from pathlib import Path

TINY_PREFIX = "tiny:"


def is_tiny(name: str) -> bool:
    return name.startswith(TINY_PREFIX)


def resolve_model_path(name: str, tiny_models_dir: Path | None = None) -> str:
    if not is_tiny(name):
        return name
    if tiny_models_dir is None:
        raise ValueError(f"model {name!r} lives in the tiny-models artifact; run the tiny_models stage first")
    folder = Path(tiny_models_dir) / name[len(TINY_PREFIX):]
    if not folder.is_dir():
        raise ValueError(f"model {name!r}: {folder} does not exist; the tiny-models artifact has {sorted(p.name for p in Path(tiny_models_dir).iterdir())}")
    return str(folder)
