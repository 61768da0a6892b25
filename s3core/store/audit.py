"""Checking a whole store and removing what failed runs left in it (`s3agent store verify` / `store gc`).

`audit_store` looks at every artifact directory under the root, whatever state it is in, and reports every
problem it finds instead of stopping at the first:

    corrupt       a complete artifact whose files do not match its manifest (size, sha256, schema), or miss
    manifest      a manifest.json that cannot be read (the artifact cannot be trusted)
    partial       an artifact directory without a manifest: a stage that was interrupted or failed
    extra_file    a file inside an artifact that its manifest does not list
    temp_file     a temporary file of an atomic write (`name.tmp-xxxxxxxx`) that was never renamed
    staging       a directory artifact still being built, or left by a run that died (`<root>/.staging`)

`collect_garbage` removes the removable ones (all but `corrupt` and `manifest`, unless asked): what a failed
run left. A partial artifact and a staging folder are also the resume state of an interrupted run, so gc
is for a store no pipeline is running on; re-running the stage instead resumes from them.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field

from s3core.store.errors import ArtifactError
from s3core.store.manifest import MANIFEST_NAME, Manifest
from s3core.store.store import FILES_DIR, STAGING_DIR, TMP_MARK, ArtifactStore, _parse_manifest


@dataclass(frozen=True)
class Problem:
    kind: str      # corrupt | manifest | partial | extra_file | temp_file | staging
    path: str      # the file or directory concerned
    message: str   # what is wrong and what to do

    @property
    def garbage(self) -> bool:
        """What a failed run leaves: removable without losing a complete artifact."""
        return self.kind in ("partial", "extra_file", "temp_file", "staging")

    def line(self) -> str:
        return f"{self.kind.upper():10s} {self.path}: {self.message}"


@dataclass
class Audit:
    ok: list[Manifest] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def audit_store(store: ArtifactStore) -> Audit:
    """Every artifact of the store checked; every problem reported."""
    audit = Audit()
    for stage_dir in _children(store, store.root):
        if os.path.basename(stage_dir) == STAGING_DIR:
            continue
        for artifact_dir in _children(store, stage_dir):
            _audit_artifact(store, artifact_dir, audit)
    if store.is_local:  # a remote store stages in the project cache, not in the store
        for stage in sorted(p.name for p in store.staging_root().glob("*")):
            for folder in store.staging_dirs(stage):
                audit.problems.append(Problem("staging", str(folder),
                                              "an unfinished directory artifact (a run in progress, or one that died): "
                                              "re-running its stage resumes or rebuilds it; `store gc` removes it"))
    return audit


def _children(store: ArtifactStore, path: str) -> list[str]:
    if not store.fs.isdir(path):
        return []
    return sorted(p for p in store.fs.ls(path, detail=False) if store.fs.isdir(p))


def _files_under(store: ArtifactStore, path: str) -> list[str]:
    return sorted(store.fs.find(path)) if store.fs.isdir(path) else []


def _audit_artifact(store: ArtifactStore, artifact_dir: str, audit: Audit) -> None:
    manifest_path = f"{artifact_dir}/{MANIFEST_NAME}"
    files = _files_under(store, artifact_dir)
    for path in files:
        if TMP_MARK in os.path.basename(path):
            audit.problems.append(Problem("temp_file", path, "a write that never completed; `store gc` removes it"))
    if not store.fs.exists(manifest_path):
        audit.problems.append(Problem("partial", artifact_dir,
                                      "no manifest: the stage was interrupted or failed. Re-running it resumes from "
                                      "the shards here; `store gc` removes them"))
        return
    try:
        with store.fs.open(manifest_path, "rb") as handle:
            manifest = _parse_manifest(handle.read(), manifest_path)
    except ArtifactError as err:
        audit.problems.append(Problem("manifest", manifest_path, str(err)))
        return
    listed = {manifest_path} | {_listed_path(artifact_dir, manifest, s.name) for s in manifest.shards}
    for path in files:
        if path not in listed and TMP_MARK not in os.path.basename(path):
            audit.problems.append(Problem("extra_file", path, f"not part of artifact {manifest.stage}/{manifest.key} "
                                          "(its manifest does not list it); `store gc` removes it"))
    try:
        if manifest.kind == "table":
            for _ in store.iter_table(manifest):
                pass
        else:
            store.local_dir(manifest, verify=True)
    except (ArtifactError, OSError, ValueError) as err:
        audit.problems.append(Problem("corrupt", artifact_dir, str(err)))
        return
    audit.ok.append(manifest)


def _listed_path(artifact_dir: str, manifest: Manifest, name: str) -> str:
    return f"{artifact_dir}/{FILES_DIR}/{name}" if manifest.kind == "dir" else f"{artifact_dir}/{name}"


def collect_garbage(store: ArtifactStore, audit: Audit, corrupt: bool = False, dry_run: bool = False) -> list[Problem]:
    """Remove what failed runs left (and, with `corrupt`, artifacts that fail verification, so their stages
    rebuild them); returns what was (or, with dry_run, would be) removed."""
    chosen = [p for p in audit.problems if p.garbage or (corrupt and p.kind in ("corrupt", "manifest"))]
    if dry_run:
        return chosen
    for problem in chosen:
        target = problem.path if problem.kind != "manifest" else os.path.dirname(problem.path)
        if problem.kind == "staging":
            shutil.rmtree(target, ignore_errors=True)
        elif store.fs.exists(target):
            store.fs.rm(target, recursive=True)
    return chosen
