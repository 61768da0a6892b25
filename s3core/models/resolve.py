"""Model names in configs -> something `from_pretrained` loads: a hub name, a local folder, or a model of the
pipeline's model set.

`tiny:<name>` (the tiny world's searcher, generator, encoder, ...) and `model:<name>` (a model the
prepared_models stage made from a package, a URL or a file: `model:searcher`) point into the model-set
artifact the stage is given; anything else is passed to Hugging Face as is (a hub name such as
`intfloat/e5-base-v2`, or a local folder).
"""

from __future__ import annotations

from pathlib import Path

TINY_PREFIX = "tiny:"
MODEL_PREFIX = "model:"
SET_PREFIXES = (TINY_PREFIX, MODEL_PREFIX)


def in_model_set(name: str) -> bool:
    """A name that resolves inside the pipeline's model-set artifact (`tiny:` or `model:`)."""
    return name.startswith(SET_PREFIXES)


def resolve_model_path(name: str, models_dir: Path | None = None) -> str:
    if not in_model_set(name):
        return name
    prefix = next(p for p in SET_PREFIXES if name.startswith(p))
    if models_dir is None:
        stage = "tiny_models" if prefix == TINY_PREFIX else "prepared_models"
        raise ValueError(f"model {name!r} lives in the model-set artifact; run the {stage} stage first "
                         f"(and give the config its `{'tiny_models' if prefix == TINY_PREFIX else 'models'}:` section)")
    folder = Path(models_dir) / name[len(prefix):]
    if not folder.is_dir():
        raise ValueError(f"model {name!r}: {folder} does not exist; the model set has "
                         f"{sorted(p.name for p in Path(models_dir).iterdir() if p.is_dir())}")
    return str(folder)


def copy_model_set(models_dir: Path, out: Path) -> None:
    """Copy every model folder (and models.json) of a model-set artifact into `out`: a stage that extends
    the set (prepared models, the reader, the warm start) starts from a copy of the one it was given."""
    import shutil

    for entry in sorted(Path(models_dir).iterdir()):
        target = out / entry.name
        if entry.is_dir():
            shutil.copytree(entry, target)
        else:
            shutil.copy2(entry, target)
