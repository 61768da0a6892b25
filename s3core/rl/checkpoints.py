"""Which searcher checkpoint an evaluation scores: a path from a `s3.checkpoint.saved` event, the newest
checkpoint of a setting (the nightly re-evaluation), and a content fingerprint so the same weights are
scored once whatever path they were read from (DESIGN.md section 3 "Prefect deployments").

A checkpoint is a `step-NNNNNN/` folder with `actor/` (Hugging Face weights), `run_config.json` (the run's
config) and a `done` marker written last. While training runs it lives in the train stage's staging folder;
when the stage completes that folder moves into the store. An event's path can therefore be stale by the
time an evaluation starts (it waits for the GPU behind the training run): `locate_checkpoint` then finds
the same step in the completed train artifact of the event's key.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from s3core.config import parse_config
from s3core.config.schema import RunConfig
from s3core.store import ArtifactStore

CHECKPOINT_PREFIX = "step-"
DONE_MARKER = "done"  # written last: the checkpoint is complete
RUN_CONFIG_FILE = "run_config.json"
_STEP = re.compile(rf"{CHECKPOINT_PREFIX}(\d+)$")


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return run_dir / f"{CHECKPOINT_PREFIX}{step:06d}"


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint folders with their `done` marker, oldest first."""
    found = [p for p in run_dir.glob(f"{CHECKPOINT_PREFIX}*") if (p / DONE_MARKER).exists()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


class CheckpointError(ValueError):
    """A checkpoint that cannot be found or is not complete; the message says what to pass instead."""


@dataclass(frozen=True)
class Checkpoint:
    folder: Path  # step-NNNNNN/
    step: int

    @property
    def actor(self) -> Path:
        return self.folder / "actor"

    @property
    def label(self) -> str:
        """The run name its evaluation is reported under, e.g. 's3@step-20'."""
        return f"s3@step-{self.step}"

    def run_config(self) -> dict:
        path = self.folder / RUN_CONFIG_FILE
        if not path.exists():
            raise CheckpointError(f"{self.folder} has no {RUN_CONFIG_FILE}: pass config_path explicitly")
        return json.loads(path.read_text())


def as_checkpoint(path: str | Path) -> Checkpoint:
    """A complete checkpoint from its folder, or from its actor/ folder inside it."""
    folder = Path(path).expanduser()
    if folder.name == "actor":
        folder = folder.parent
    match = _STEP.match(folder.name)
    if match is None:
        raise CheckpointError(f"{path} is not a checkpoint folder: expected .../{CHECKPOINT_PREFIX}NNNNNN (or its actor/)")
    if not (folder / DONE_MARKER).exists():
        raise CheckpointError(f"{folder} is not a complete checkpoint (no `{DONE_MARKER}` marker): it is being written, "
                              "or its run was killed while saving; evaluate a complete one")
    return Checkpoint(folder, int(match.group(1)))


def checkpoint_to_evaluate(checkpoint: str, config: RunConfig | None, store_root: str | None = None,
                           train_key: str | None = None, step: int | None = None) -> tuple[Checkpoint, RunConfig]:
    """What `s3-evaluate` scores, and in which setting: `checkpoint` is a checkpoint folder (or its actor/),
    or "latest" (the newest complete checkpoint of `config`'s setting). Without `config`, the setting is the
    one the checkpoint was trained in (its run_config.json). `store_root`, `train_key` and `step` (from the
    checkpoint event) find a checkpoint whose staging folder has moved into the store since."""

    if checkpoint == "latest":
        if config is None:
            raise CheckpointError('checkpoint "latest" needs a config_path: the newest checkpoint of which setting?')
        return latest_checkpoint(ArtifactStore(config.store.root), config.name), config
    root = store_root or (config.store.root if config is not None else None)
    found = locate_checkpoint(ArtifactStore(root) if root else None, checkpoint, train_key, step)
    if config is None:
        config = parse_config(found.run_config(), source=str(found.folder / RUN_CONFIG_FILE))
    return found, config


def locate_checkpoint(store: ArtifactStore | None, path: str | Path, train_key: str | None = None,
                      step: int | None = None) -> Checkpoint:
    """The checkpoint at `path`, or, if it has moved (its training stage completed since), the same step in
    the completed train artifact `train_key`."""
    if Path(path).expanduser().exists():
        return as_checkpoint(path)
    if store is not None and train_key and step is not None:
        done = store.find_complete("train", train_key)
        if done is not None:
            moved = store.local_dir(done) / f"{CHECKPOINT_PREFIX}{step:06d}"
            if moved.exists():
                return as_checkpoint(moved)
            raise CheckpointError(f"checkpoint step {step} of train {train_key} was pruned (ppo.keep_last); raise "
                                  "keep_last, or evaluate a checkpoint that is kept")
    hint = "" if train_key else "; pass train_key, step and store_root (the event's key, step, store) to find a moved one"
    raise CheckpointError(f"no checkpoint at {path}{hint}")


def latest_checkpoint(store: ArtifactStore, run_name: str) -> Checkpoint:
    """The newest complete checkpoint of setting `run_name`: in completed train artifacts and in the
    staging folders of train stages still running (the nightly evaluation's choice)."""
    folders = [store.local_dir(m) for m in store.list_manifests("train") if m.stats.get("run") == run_name]
    folders += [d for d in store.staging_dirs("train") if _run_name_of(d) == run_name]
    found = [c for folder in folders for c in complete_checkpoints(folder)]
    if not found:
        raise CheckpointError(f"no complete checkpoint of {run_name!r} in {store.root} or the training staging area: "
                              "train first (s3-train), or pass a checkpoint path")
    newest = max(found, key=lambda c: (c / DONE_MARKER).stat().st_mtime)
    return as_checkpoint(newest)


def _run_name_of(run_dir: Path) -> str | None:
    done = complete_checkpoints(run_dir)
    if not done or not (done[-1] / RUN_CONFIG_FILE).exists():
        return None
    return json.loads((done[-1] / RUN_CONFIG_FILE).read_text()).get("name")


def checkpoint_metrics(checkpoint: Checkpoint) -> list[dict]:
    """The training metrics up to this checkpoint (its trainer_state.json): the report's reward curve."""
    path = checkpoint.folder / "trainer_state.json"
    return json.loads(path.read_text()).get("metrics", []) if path.exists() else []
