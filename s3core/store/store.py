"""ArtifactStore: where stages write Parquet shards and directories, and how they are read back safely.

Layout under the store root (a local path, or any fsspec URL such as `s3://bucket/run` or `memory://x`):

    <root>/<stage>/<key>/part-00000.parquet   table shards, each renamed into place when complete
    <root>/<stage>/<key>/files/...             directory artifacts (indexes, model folders, checkpoints)
    <root>/<stage>/<key>/manifest.json         written last; its existence means the artifact is complete
    <root>/.staging/<stage>/<key>/             where a directory artifact is built (local stores: on the
                                               store's own filesystem, so committing it is a rename)

Resume: a stage interrupted midway finds its finished shards under the same key and writes only the rest.
A shard is written to a temporary name and renamed (local disk) or put in one request (object stores), so a
shard file that exists is whole. Reading checks the manifest, each shard's size and sha256, and the schema,
and says which file is wrong and how to recover (delete the artifact directory and re-run the stage).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from s3core.paths import cache_dir
from s3core.store.errors import ArtifactError
from s3core.store.hashing import sha256_bytes, sha256_stream, stable_hash
from s3core.store.manifest import MANIFEST_NAME, Manifest, ShardInfo

SHARD_STATS_KEY = b"s3.shard_stats"
FILES_DIR = "files"
STAGING_DIR = ".staging"
TMP_MARK = ".tmp-"  # write_bytes_atomic's temporary names: `<name>.tmp-<8 hex>`


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def shard_index(name: str) -> int | None:
    if name.startswith("part-") and name.endswith(".parquet"):
        try:
            return int(name[5:-8])
        except ValueError:
            return None
    return None


def schema_to_dict(schema: pa.Schema) -> dict[str, str]:
    return {field.name: str(field.type) for field in schema}


class ArtifactStore:
    """A store root plus the fsspec filesystem that reaches it."""

    def __init__(self, root: str | Path):
        self.root_uri = str(root)
        self.fs, path = fsspec.core.url_to_fs(self.root_uri)
        self.root = path.rstrip("/") if path != "/" else path
        if self.is_local:
            self.root = str(Path(self.root).resolve())

    def __repr__(self) -> str:
        return f"ArtifactStore({self.root_uri!r})"

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    # -- paths -------------------------------------------------------------------------------------
    def artifact_path(self, stage: str, key: str) -> str:
        return f"{self.root}/{stage}/{key}"

    def uri_of(self, path: str) -> str:
        return path if self.is_local else self.fs.unstrip_protocol(path)

    # -- atomic writes -----------------------------------------------------------------------------
    def write_bytes_atomic(self, path: str, data: bytes) -> None:
        """Local: temp file + rename. Object stores: one put, which is atomic on its own."""
        self.fs.makedirs(os.path.dirname(path), exist_ok=True)
        if not self.is_local:
            self.fs.pipe_file(path, data)
            return
        tmp = f"{path}{TMP_MARK}{uuid.uuid4().hex[:8]}"
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    # -- manifests ---------------------------------------------------------------------------------
    def find_complete(self, stage: str, key: str) -> Manifest | None:
        """The manifest of a finished artifact, or None if the stage has not completed for this key."""
        path = f"{self.artifact_path(stage, key)}/{MANIFEST_NAME}"
        if not self.fs.exists(path):
            return None
        return self._load_manifest(path)

    def load_manifest(self, uri: str) -> Manifest:
        """A manifest from an artifact directory or a manifest.json path (as stored in another manifest)."""
        fs, path = fsspec.core.url_to_fs(uri)
        if not path.endswith(MANIFEST_NAME):
            path = f"{path.rstrip('/')}/{MANIFEST_NAME}"
        if not fs.exists(path):
            raise ArtifactError(
                f"no manifest at {path}: the artifact is missing or was never completed; re-run the stage that makes it"
            )
        with fs.open(path, "rb") as handle:
            return _parse_manifest(handle.read(), path)

    def _load_manifest(self, path: str) -> Manifest:
        with self.fs.open(path, "rb") as handle:
            return _parse_manifest(handle.read(), path)

    def write_manifest(self, manifest: Manifest) -> None:
        path = f"{self.artifact_path(manifest.stage, manifest.key)}/{MANIFEST_NAME}"
        self.write_bytes_atomic(path, manifest.to_json().encode("utf-8"))

    def list_manifests(self, stage: str | None = None) -> list[Manifest]:
        pattern = f"{self.root}/{stage or '*'}/*/{MANIFEST_NAME}"
        return [self._load_manifest(path) for path in sorted(self.fs.glob(pattern))]

    # -- tables ------------------------------------------------------------------------------------
    def table_writer(self, stage: str, key: str) -> TableWriter:
        return TableWriter(self, self.artifact_path(stage, key))

    def iter_table(self, manifest: Manifest, columns: list[str] | None = None, verify: bool = True) -> Iterator[pa.Table]:
        """Shards of a table artifact in order, each checked against the manifest."""
        self._expect_kind(manifest, "table")
        base = self._path_of(manifest)
        for shard in manifest.shards:
            path = f"{base}/{shard.name}"
            data = self._read_shard_bytes(manifest, path, shard, verify)
            table = pq.read_table(pa.BufferReader(data), columns=columns)
            if verify and columns is None:
                self._check_schema(manifest, path, table.schema)
            yield table

    def read_table(self, manifest: Manifest, columns: list[str] | None = None, verify: bool = True) -> pa.Table:
        tables = list(self.iter_table(manifest, columns=columns, verify=verify))
        if not tables:
            return _empty_table(manifest, columns)
        return pa.concat_tables(tables)

    def scan_table(self, manifest: Manifest, verify: bool = True):
        """A polars LazyFrame over a table artifact's shards: `scan_parquet` of the shard files of a local store
        (each first checked against the manifest, as iter_table does), the table read through fsspec
        otherwise."""
        import polars as pl  # polars: only for the readers that query tables

        self._expect_kind(manifest, "table")
        if not manifest.shards:
            return pl.from_arrow(_empty_table(manifest, None)).lazy()
        if not self.is_local:
            return pl.from_arrow(self.read_table(manifest, verify=verify)).lazy()
        base = self._path_of(manifest)
        paths = [f"{base}/{shard.name}" for shard in manifest.shards]
        if verify:
            for path, shard in zip(paths, manifest.shards):
                self._read_shard_bytes(manifest, path, shard, verify=True)
        return pl.scan_parquet(paths)

    def _read_shard_bytes(self, manifest: Manifest, path: str, shard: ShardInfo, verify: bool) -> bytes:
        if not self.fs.exists(path):
            raise ArtifactError(
                f"artifact {manifest.stage}/{manifest.key} is partial: shard {path} listed in its manifest is missing. "
                f"Delete {self.uri_of(self._path_of(manifest))} and re-run the '{manifest.stage}' stage."
            )
        with self.fs.open(path, "rb") as handle:
            data = handle.read()
        if verify and (len(data) != shard.bytes or sha256_bytes(data) != shard.sha256):
            raise ArtifactError(
                f"artifact {manifest.stage}/{manifest.key} is corrupt: {path} has {len(data)} bytes / sha256 "
                f"{sha256_bytes(data)[:12]}..., the manifest says {shard.bytes} bytes / {shard.sha256[:12]}... "
                f"Delete {self.uri_of(self._path_of(manifest))} and re-run the '{manifest.stage}' stage."
            )
        return data

    def _check_schema(self, manifest: Manifest, path: str, schema: pa.Schema) -> None:
        found = schema_to_dict(schema)
        if manifest.schema_ is not None and found != manifest.schema_:
            raise ArtifactError(
                f"artifact {manifest.stage}/{manifest.key}: {path} has schema {found}, the manifest says "
                f"{manifest.schema_}. The file was replaced by hand; re-run the '{manifest.stage}' stage."
            )

    # -- directories -------------------------------------------------------------------------------
    def staging_root(self) -> Path:
        """Where directory artifacts are built: `<root>/.staging` for a local store (the same filesystem as the
        artifacts, so the commit is a rename even when the root is another disk), the project cache for a
        remote one (its files are uploaded on commit)."""
        return Path(self.root) / STAGING_DIR if self.is_local else cache_dir() / "staging"

    def dir_staging(self, stage: str, key: str, resume: bool = False) -> Path:
        """The local folder a directory artifact is built in (moved into the store by commit_dir).

        Its path depends only on the stage and key, so a stage that writes its work in pieces can find
        them again after a crash (`resume=True`); otherwise leftovers of an earlier attempt are removed."""
        staging = self.staging_root() / stage / key
        if staging.exists() and not resume:
            shutil.rmtree(staging)
        staging.mkdir(parents=True, exist_ok=True)
        return staging

    def staging_dirs(self, stage: str) -> list[Path]:
        """The staging folders of a stage's unfinished directory artifacts (e.g. training runs in progress)."""
        root = self.staging_root() / stage
        return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []

    def commit_dir(self, stage: str, key: str, staging: Path) -> tuple[str, list[ShardInfo]]:
        """Move a finished local folder into the store as <stage>/<key>/files; returns its file list."""
        files = _describe_files(staging)
        target = f"{self.artifact_path(stage, key)}/{FILES_DIR}"
        if self.is_local:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            if Path(target).exists():  # leftovers of an interrupted commit: never completed, safe to drop
                shutil.rmtree(target)
            os.replace(staging, target)
        else:
            self.fs.put(str(staging), target, recursive=True)
            shutil.rmtree(staging, ignore_errors=True)
        # a stage may commit a folder inside its staging folder (tiny_models, prepared_models: <key>/models):
        # what is left of <key> is no partial artifact, and `store verify` must not find it after a clean run
        shutil.rmtree(self.staging_root() / stage / key, ignore_errors=True)
        return target, files

    def local_dir(self, manifest: Manifest, verify: bool = False) -> Path:
        """A local path to a directory artifact: the store's own folder, or a verified local mirror."""
        self._expect_kind(manifest, "dir")
        source = f"{self._path_of(manifest)}/{FILES_DIR}"
        if self.is_local:
            local = Path(source)
            if not local.is_dir():
                raise ArtifactError(
                    f"artifact {manifest.stage}/{manifest.key} is partial: {local} is missing. "
                    f"Delete {Path(source).parent} and re-run the '{manifest.stage}' stage."
                )
        else:
            local = cache_dir() / "store-mirror" / manifest.stage / manifest.key
            if not (local / ".complete").exists():
                shutil.rmtree(local, ignore_errors=True)
                self.fs.get(source, str(local), recursive=True)
                verify = True
        if verify:
            _verify_files(manifest, local)
        if not self.is_local:
            (local / ".complete").touch()
        return local

    # -- helpers -----------------------------------------------------------------------------------
    def _path_of(self, manifest: Manifest) -> str:
        return self.artifact_path(manifest.stage, manifest.key)

    @staticmethod
    def _expect_kind(manifest: Manifest, kind: str) -> None:
        if manifest.kind != kind:
            raise ArtifactError(f"artifact {manifest.stage}/{manifest.key} is a {manifest.kind}, not a {kind}")


class TableWriter:
    """Writes one table artifact as numbered Parquet shards; finished shards survive a crash."""

    def __init__(self, store: ArtifactStore, path: str):
        self.store = store
        self.path = path
        store.fs.makedirs(path, exist_ok=True)

    def finished_shards(self) -> set[int]:
        names = [os.path.basename(p) for p in self.store.fs.ls(self.path, detail=False)]
        return {i for n in names if (i := shard_index(n)) is not None}

    def is_finished(self, index: int) -> bool:
        return self.store.fs.exists(f"{self.path}/{shard_name(index)}")

    def write_shard(self, index: int, table: pa.Table, stats: dict[str, Any] | None = None) -> None:
        """Write shard `index` whole or not at all. `stats` (JSON) travel inside the file's metadata."""
        metadata = dict(table.schema.metadata or {})
        metadata[SHARD_STATS_KEY] = json.dumps(stats or {}, sort_keys=True).encode()
        table = table.replace_schema_metadata(metadata)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        self.store.write_bytes_atomic(f"{self.path}/{shard_name(index)}", sink.getvalue().to_pybytes())

    def describe(self) -> tuple[list[ShardInfo], pa.Schema | None, list[dict[str, Any]]]:
        """Shard list with sizes and hashes, the common schema, and each shard's stats, in shard order."""
        shards: list[ShardInfo] = []
        stats: list[dict[str, Any]] = []
        schema: pa.Schema | None = None
        indices = sorted(self.finished_shards())
        expected = list(range(len(indices)))
        if indices != expected:
            missing = sorted(set(range(max(indices, default=-1) + 1)) - set(indices))
            raise ArtifactError(f"{self.path}: shards {missing} are missing; the stage did not write every shard")
        for index in indices:
            path = f"{self.path}/{shard_name(index)}"
            with self.store.fs.open(path, "rb") as handle:
                data = handle.read()
            meta = pq.read_metadata(pa.BufferReader(data))
            file_schema = meta.schema.to_arrow_schema().remove_metadata()
            if schema is None:
                schema = file_schema
            elif not file_schema.equals(schema):
                raise ArtifactError(f"{path}: schema {file_schema} differs from shard 0's {schema}")
            raw = (meta.metadata or {}).get(SHARD_STATS_KEY, b"{}")
            stats.append(json.loads(raw))
            shards.append(ShardInfo(name=shard_name(index), rows=meta.num_rows, bytes=len(data), sha256=sha256_bytes(data)))
        return shards, schema, stats


def content_hash_of(shards: list[ShardInfo]) -> str:
    return stable_hash([(s.name, s.sha256) for s in shards], length=32)


def _parse_manifest(data: bytes, path: str) -> Manifest:
    try:
        return Manifest.from_json(data.decode("utf-8"))
    except ValueError as err:
        raise ArtifactError(
            f"manifest {path} is not valid ({str(err).splitlines()[0]}); delete its artifact directory and re-run the stage"
        ) from err


def _empty_table(manifest: Manifest, columns: list[str] | None) -> pa.Table:
    fields = [(name, _type_from_string(t)) for name, t in (manifest.schema_ or {}).items() if not columns or name in columns]
    return pa.table({name: pa.array([], type=t) for name, t in fields})


def _type_from_string(text: str) -> pa.DataType:
    simple = {"string": pa.string(), "large_string": pa.large_string(), "int64": pa.int64(), "double": pa.float64(),
              "bool": pa.bool_(), "list<item: string>": pa.list_(pa.string())}
    return simple.get(text, pa.string())


def _describe_files(folder: Path) -> list[ShardInfo]:
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        with open(path, "rb") as handle:
            digest = sha256_stream(handle)
        files.append(ShardInfo(name=str(path.relative_to(folder)), bytes=path.stat().st_size, sha256=digest))
    return files


def _verify_files(manifest: Manifest, folder: Path) -> None:
    for info in manifest.shards:
        path = folder / info.name
        if not path.is_file():
            raise ArtifactError(f"artifact {manifest.stage}/{manifest.key} is partial: {path} is missing")
        with open(path, "rb") as handle:
            if path.stat().st_size != info.bytes or sha256_stream(handle) != info.sha256:
                raise ArtifactError(
                    f"artifact {manifest.stage}/{manifest.key} is corrupt: {path} does not match its manifest; "
                    f"delete the artifact directory and re-run the '{manifest.stage}' stage"
                )


def open_store(cfg: Any) -> ArtifactStore:
    """The artifact store of a run config (`cfg.store.root`: a local path or an fsspec URL)."""
    return ArtifactStore(cfg.store.root)
