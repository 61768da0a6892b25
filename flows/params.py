"""Typed flow parameters, so the Prefect UI shows a form with help texts."""

from typing import Annotated

from pydantic import Field

ConfigPath = Annotated[
    str,
    Field(description="run config YAML, relative to the project root (configs/tiny.yaml, configs/paper-7b.yaml, configs/mirage.yaml)"),
]
