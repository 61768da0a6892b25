"""Load a YAML run config into `RunConfig`, turning validation errors into messages that say where and how."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from s3core.config.schema import RunConfig


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file, the field and the fix."""


def load_config(path: str | Path) -> RunConfig:
    path = Path(path)
    return parse_config(read_config_data(path), source=str(path))


def read_config_data(path: Path, seen: tuple[Path, ...] = ()) -> Any:
    """The YAML mapping of a config file, with `extends: <base file>` resolved: the base (a path relative to
    this file) is read first and this file's keys are merged into it (mappings key by key, anything else,
    lists included, replaced)."""
    if not path.exists():
        raise ConfigError(f"{path}: no such config file; the shipped ones are in configs/ (tiny.yaml, paper-7b.yaml, mirage.yaml)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}:{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(data, dict) or "extends" not in data:
        return data
    base = path.parent / str(data.pop("extends"))
    if base.resolve() in seen:
        raise ConfigError(f"{path}: `extends: {base.name}` makes a cycle ({' -> '.join(p.name for p in seen)}); remove one")
    if not base.exists():
        raise ConfigError(f"{path}: `extends: {base.name}` names no file ({base}); give a path relative to {path.parent}")
    return merge_config(read_config_data(base, seen + (path.resolve(),)), data)


def merge_config(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        return {**base, **{k: merge_config(base[k], v) if k in base else v for k, v in override.items()}}
    return override


def parse_config(data: Any, source: str = "<config>") -> RunConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a run config is a YAML mapping with at least `name:`; got {type(data).__name__}")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{source}: invalid config\n" + format_validation_error(err)) from None


def format_validation_error(err: ValidationError) -> str:
    lines = []
    for problem in err.errors():
        field = ".".join(str(p) for p in problem["loc"]) or "(top level)"
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = "unknown field; check its spelling against `s3agent config show` or s3core/config/schema.py"
        elif problem["type"] == "missing":
            message = "required field is missing"
        got = problem.get("input")
        suffix = f" (got {got!r})" if problem["type"] not in ("missing", "extra_forbidden") and not isinstance(got, dict) else ""
        lines.append(f"  - {field}: {message}{suffix}")
    return "\n".join(lines)
