"""Artifact store: shards, manifests written last, resume, and clear errors for corrupt or partial artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from s3core.store import ArtifactError, ArtifactStore, StageResult, run_stage
from s3core.store.manifest import MANIFEST_NAME


def _rows(start: int, n: int) -> pa.Table:
    return pa.table({"id": [str(i) for i in range(start, start + n)], "value": list(range(start, start + n))})


def _three_shard_build(calls: list[int], fail_at: int | None = None, offset: int = 0):
    def build(ctx):
        writer = ctx.table_writer()
        for index in range(3):
            if writer.is_finished(index):
                continue
            if index == fail_at:
                raise RuntimeError("crash midway")
            calls.append(index)
            writer.write_shard(index, _rows(offset + index * 10, 10), {"input_lines": 10})
        return StageResult()

    return build


def test_table_roundtrip_and_manifest_fields(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    manifest = run_stage(store, "demo", {"a": 1}, {}, _three_shard_build([]))
    assert manifest.row_count == 30 and len(manifest.shards) == 3
    assert manifest.schema_ == {"id": "string", "value": "int64"}
    assert manifest.stats["input_lines"] == 30 and "total_s" in manifest.timings
    assert store.read_table(manifest).column("value").to_pylist() == list(range(30))
    on_disk = json.loads(Path(manifest.uri, MANIFEST_NAME).read_text())
    assert on_disk["content_hash"] == manifest.content_hash and on_disk["code_hash"]


def test_complete_stage_is_skipped_and_key_changes_with_config(tmp_path):
    store = ArtifactStore(tmp_path)
    calls: list[int] = []
    first = run_stage(store, "demo", {"a": 1}, {}, _three_shard_build(calls))
    again = run_stage(store, "demo", {"a": 1}, {}, _three_shard_build(calls))
    assert again == first and calls == [0, 1, 2]
    other = run_stage(store, "demo", {"a": 2}, {}, _three_shard_build(calls))
    assert other.key != first.key and calls == [0, 1, 2, 0, 1, 2]


def test_input_content_changes_the_key(tmp_path):
    store = ArtifactStore(tmp_path)
    up1 = run_stage(store, "up", {"v": 1}, {}, _three_shard_build([]))
    same = run_stage(store, "up", {"v": 2}, {}, _three_shard_build([]))
    up2 = run_stage(store, "up", {"v": 3}, {}, _three_shard_build([], offset=5))
    assert same.content_hash == up1.content_hash != up2.content_hash
    down1 = run_stage(store, "down", {}, {"up": up1}, _three_shard_build([]))
    down2 = run_stage(store, "down", {}, {"up": up2}, _three_shard_build([]))
    assert down1.key != down2.key and down1.inputs == {"up": up1.content_hash}
    # content-addressed: an upstream config change that yields identical data does not invalidate downstream
    assert run_stage(store, "down", {}, {"up": same}, _three_shard_build([])).key == down1.key


def test_crash_leaves_no_manifest_and_rerun_writes_only_missing_shards(tmp_path):
    store = ArtifactStore(tmp_path)
    calls: list[int] = []
    with pytest.raises(RuntimeError, match="crash midway"):
        run_stage(store, "demo", {}, {}, _three_shard_build(calls, fail_at=2))
    assert calls == [0, 1]
    assert not list(tmp_path.rglob(MANIFEST_NAME))
    manifest = run_stage(store, "demo", {}, {}, _three_shard_build(calls))
    assert calls == [0, 1, 2] and manifest.row_count == 30


def test_corrupt_shard_is_named_with_the_fix(tmp_path):
    store = ArtifactStore(tmp_path)
    manifest = run_stage(store, "demo", {}, {}, _three_shard_build([]))
    shard = Path(manifest.uri) / manifest.shards[1].name
    shard.write_bytes(shard.read_bytes()[:-20] + b"x" * 20)
    with pytest.raises(ArtifactError, match=r"corrupt: .*part-00001\.parquet.*re-run the 'demo' stage"):
        store.read_table(manifest)


def test_missing_shard_is_reported_as_partial(tmp_path):
    store = ArtifactStore(tmp_path)
    manifest = run_stage(store, "demo", {}, {}, _three_shard_build([]))
    (Path(manifest.uri) / manifest.shards[2].name).unlink()
    with pytest.raises(ArtifactError, match=r"partial: shard .*part-00002\.parquet .* is missing"):
        store.read_table(manifest)


def test_garbled_manifest_is_reported(tmp_path):
    store = ArtifactStore(tmp_path)
    manifest = run_stage(store, "demo", {}, {}, _three_shard_build([]))
    (Path(manifest.uri) / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ArtifactError, match="manifest .* is not valid"):
        store.find_complete("demo", manifest.key)


def test_replaced_shard_with_other_schema_is_caught(tmp_path):
    store = ArtifactStore(tmp_path)
    manifest = run_stage(store, "demo", {}, {}, _three_shard_build([]))
    import pyarrow.parquet as pq

    path = Path(manifest.uri) / manifest.shards[0].name
    pq.write_table(pa.table({"other": [1]}), path)
    manifest.shards[0].bytes = path.stat().st_size
    from s3core.store.hashing import sha256_bytes

    manifest.shards[0].sha256 = sha256_bytes(path.read_bytes())
    with pytest.raises(ArtifactError, match="has schema"):
        store.read_table(manifest)


def test_directory_artifact_and_fsspec_memory_root(tmp_path):
    store = ArtifactStore("memory://s3-test-store")

    def build(ctx):
        staging = ctx.staging_dir()
        (staging / "sub").mkdir()
        (staging / "sub" / "a.txt").write_text("hello")
        return StageResult(staging_dir=staging)

    manifest = run_stage(store, "dirstage", {"x": 1}, {}, build, kind="dir")
    assert manifest.uri.startswith("memory://") and [s.name for s in manifest.shards] == ["sub/a.txt"]
    local = store.local_dir(manifest)
    assert (local / "sub" / "a.txt").read_text() == "hello"
    table = run_stage(store, "demo", {}, {}, _three_shard_build([]))
    assert store.read_table(table).num_rows == 30
    assert {m.stage for m in store.list_manifests()} == {"dirstage", "demo"}


def test_local_directory_artifact_verifies_files(tmp_path):
    store = ArtifactStore(tmp_path)

    def build(ctx):
        staging = ctx.staging_dir()
        (staging / "w.bin").write_bytes(b"\x00" * 100)
        return StageResult(staging_dir=staging)

    manifest = run_stage(store, "dirstage", {}, {}, build, kind="dir")
    folder = store.local_dir(manifest, verify=True)
    (folder / "w.bin").write_bytes(b"\x01" * 100)
    with pytest.raises(ArtifactError, match="does not match its manifest"):
        store.local_dir(manifest, verify=True)


def test_code_hash_covers_only_the_named_parts():
    from s3core.store.hashing import code_hash

    assert code_hash(("data/tiny_world.py",)) != code_hash(("models",)) != code_hash()
    assert code_hash(("models",)) == code_hash(("models",))
    with pytest.raises(ValueError, match="does not exist"):
        code_hash(("no/such/module.py",))


def test_committing_a_folder_inside_the_staging_folder_leaves_nothing_behind(tmp_path):
    """A stage that builds beside what it commits (tiny_models, prepared_models commit <key>/models) leaves no
    staging folder, so `store verify` finds nothing to report after a clean run."""
    from s3core.store.audit import audit_store

    store = ArtifactStore(tmp_path)

    def build(ctx):
        staging = ctx.staging_dir()
        (staging / "models").mkdir()
        (staging / "models" / "w.bin").write_bytes(b"\x00" * 10)
        (staging / "download.part").write_bytes(b"scratch")
        return StageResult(staging_dir=staging / "models")

    manifest = run_stage(store, "dirstage", {}, {}, build, kind="dir")
    assert (store.local_dir(manifest) / "w.bin").exists()
    assert store.staging_dirs("dirstage") == []
    assert audit_store(store).problems == []
