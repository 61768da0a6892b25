"""Typed flow parameters, so the Prefect UI shows a form with help texts."""

from typing import Annotated

from pydantic import Field

ConfigPath = Annotated[
    str,
    Field(description="run config YAML, relative to the project root (configs/tiny.yaml, configs/paper-7b.yaml, configs/mirage.yaml)"),
]

OptionalConfigPath = Annotated[
    str | None,
    Field(description="run config YAML; leave empty to use the config the checkpoint was trained with"),
]
CheckpointPath = Annotated[
    str | None,
    Field(description='a checkpoint folder (.../step-NNNNNN or its actor/), or "latest" for the newest of the setting'),
]
BaselineName = Annotated[
    str | None,
    Field(description='a baseline name from the config\'s inference.baselines, or "all"'),
]
TrainKey = Annotated[
    str | None,
    Field(description="key of the train stage that wrote the checkpoint (the checkpoint event sets it)"),
]
TrainStep = Annotated[
    int | None,
    Field(description="training step of the checkpoint (the checkpoint event sets it)"),
]
StoreRoot = Annotated[
    str | None,
    Field(description="artifact store of the training run (the checkpoint event sets it)"),
]
