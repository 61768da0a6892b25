"""Resume after a crash: ingest killed midway (SIGKILL of a subprocess) finishes on re-run with identical
output, without rewriting the shards it had finished."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from s3core.config import load_config
from s3core.data.formats import write_repeated_corpus
from s3core.data.stage import corpus_spec
from s3core.store import ArtifactStore

SHARD_ROWS = 500
COPIES = 120  # 120 x 1,000 passages = 120,000 lines, 240 shards: long enough to kill midway


def _config(tmp_path: Path, corpus: Path, store: Path) -> Path:
    path = tmp_path / f"{store.name}.yaml"
    data = {"name": "resume", "store": {"root": str(store)},
            "corpus": {"parts": [{"name": "big", "source": {"kind": "file", "path": str(corpus)}}], "shard_rows": SHARD_ROWS}}
    path.write_text(yaml.safe_dump(data))
    return path


def _shards(store: Path) -> list[Path]:
    return sorted(store.rglob("part-*.parquet"))


def test_killed_ingest_resumes_without_redoing_finished_shards(tmp_path, shared_data, repo_root):
    corpus = tmp_path / "big.jsonl"
    total = write_repeated_corpus(shared_data / "wiki18-sample.jsonl", COPIES, corpus)
    store = tmp_path / "killed"
    config = _config(tmp_path, corpus, store)
    cmd = [sys.executable, "-m", "s3cli.main", "stage", "corpus", "--config", str(config)]
    proc = subprocess.Popen(cmd, cwd=repo_root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while len(_shards(store)) < 20:
            assert proc.poll() is None, "the ingest finished before it could be interrupted; raise COPIES"
            assert time.monotonic() < deadline, "no shards appeared within 120 s"
            time.sleep(0.01)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    finished = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in _shards(store)}
    assert not list(store.rglob("manifest.json")), "a killed stage must not leave a manifest"
    assert 20 <= len(finished) < total // SHARD_ROWS

    rerun = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    for path, identity in finished.items():
        assert (path.stat().st_ino, path.stat().st_mtime_ns) == identity, f"{path.name} was rewritten"

    cfg = load_config(config)
    resumed = ArtifactStore(store).find_complete("corpus", corpus_spec(cfg, cfg.corpus.parts[0]).key)
    assert resumed is not None and resumed.row_count == total
    assert resumed.stats["resumed_shards"] == len(finished)

    clean_cfg = load_config(_config(tmp_path, corpus, tmp_path / "clean"))
    clean = corpus_spec(clean_cfg, clean_cfg.corpus.parts[0]).run(ArtifactStore(clean_cfg.store.root))
    assert clean.key == resumed.key and clean.content_hash == resumed.content_hash
