"""Loading training checkpoints without running code from them (docs/ARCHITECTURE.md, "Failure model").

`torch.load` unpickles: a checkpoint folder someone tampered with could run any code on resume. So every
file a resume reads is loaded with `weights_only=True`, which rebuilds tensors and plain containers only,
plus the few DeepSpeed types its ZeRO optimizer state holds (SAFE_GLOBALS, found by saving engines of every
ZeRO stage, fp32 and bf16, and loading them back). The trainer's RNG states are saved as tensors and plain
numbers for the same reason. A file that needs any other type fails with `UnsafeCheckpointError` naming it.

`load_safely` replaces the DeepSpeed engine's checkpoint loader (`guard_engine`, applied to every engine
`s3core.rl.engine.make_engine` builds), which otherwise calls torch.load with weights_only=False.
"""

from __future__ import annotations

import importlib
import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

SAFE_GLOBALS = (
    "deepspeed.runtime.fp16.loss_scaler.LossScaler",
    "deepspeed.runtime.zero.config.ZeroStageEnum",
    "deepspeed.utils.tensor_fragment.fragment_address",
)


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint file holds a type outside the allow-list (it could run code when unpickled)."""


def _resolve(name: str):
    module, _, attribute = name.rpartition(".")
    return getattr(importlib.import_module(module), attribute)


def load_safely(path: str | Path, map_location=None) -> Any:
    """torch.load with weights_only=True and SAFE_GLOBALS allowed; anything else is UnsafeCheckpointError."""
    allowed = [_resolve(name) for name in SAFE_GLOBALS]
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        what = f"a {found.group(1)} object" if found else "something other than tensors and plain values"
        raise UnsafeCheckpointError(
            f"{path} holds {what}, which a checkpoint may not (loading it could run code). If the checkpoint is "
            "yours and was written by a newer DeepSpeed, add that type to s3core/rl/checkpoint_io.SAFE_GLOBALS; "
            "otherwise delete the checkpoint folder") from None


def guard_engine(engine) -> None:
    """Make a DeepSpeed engine load its checkpoints through `load_safely`."""
    engine.checkpoint_engine.load = lambda path, map_location=None: load_safely(path, map_location)


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states as tensors and plain numbers (loadable with weights_only=True)."""
    version, state, gauss = random.getstate()
    name, keys, position, has_gauss, cached = np.random.get_state()
    return {"python": {"version": version, "state": torch.tensor(state, dtype=torch.int64), "gauss": gauss},
            "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            "torch": torch.get_rng_state()}


def restore_rng(state: dict[str, Any]) -> None:
    python, numpy = state["python"], state["numpy"]
    random.setstate((python["version"], tuple(python["state"].tolist()), python["gauss"]))
    np.random.set_state((numpy["name"], numpy["keys"].numpy().astype(np.uint32), numpy["position"],
                         numpy["has_gauss"], numpy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
