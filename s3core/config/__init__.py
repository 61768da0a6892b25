"""Typed run configs (pydantic) loaded from YAML; see schema.py for every field."""

from s3core.config.loader import ConfigError, load_config, parse_config
from s3core.config.schema import RunConfig

__all__ = ["ConfigError", "RunConfig", "load_config", "parse_config"]
