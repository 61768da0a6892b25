"""Artifact store: Parquet shards and directories under a store root, each completed by a JSON manifest.

DESIGN.md section 3 ("Artifacts and resume"). The manifest is written last, by atomic rename on a local
disk or a single put on an object store, so its existence means the artifact is complete.
"""

from s3core.store.errors import ArtifactError
from s3core.store.hashing import code_hash, stable_hash
from s3core.store.manifest import Manifest, ShardInfo
from s3core.store.stage import (
    StageContext,
    StageResult,
    StageSpec,
    StageSummary,
    run_stage,
    stage_key,
)
from s3core.store.store import ArtifactStore, TableWriter, open_store

__all__ = [
    "ArtifactError",
    "ArtifactStore",
    "Manifest",
    "ShardInfo",
    "StageContext",
    "StageResult",
    "StageSpec",
    "StageSummary",
    "TableWriter",
    "code_hash",
    "open_store",
    "run_stage",
    "stable_hash",
    "stage_key",
]
