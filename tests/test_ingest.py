"""Ingest: real-format samples, every source kind (file, gz, parquet, URL over loopback, HF folder, MIRAGE),
malformed lines, checksums and resumed downloads."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from s3core.config import parse_config
from s3core.data.ingest import IngestError
from s3core.data.sources import SourceError, download_path
from s3core.data.stage import corpus_spec, questions_spec
from s3core.store import ArtifactStore

HERE = Path(__file__).resolve().parent


def _cfg(store: Path, corpus_source: dict | None = None, qa_sets: list | None = None, **corpus_opts):
    data = {
        "name": "t",
        "store": {"root": str(store)},
        "corpus": {"parts": [{"name": "c", "source": corpus_source or {"kind": "file", "path": "unused.jsonl"}}], **corpus_opts},
        "questions": {"sets": qa_sets or [], "shard_rows": 7},
    }
    return parse_config(data)


def _ingest_corpus(tmp_path, source, **opts):
    cfg = _cfg(tmp_path / "store", source, **opts)
    store = ArtifactStore(cfg.store.root)
    manifest = corpus_spec(cfg, cfg.corpus.parts[0]).run(store)
    return store, manifest


def test_wiki18_sample_ingest(tmp_path, shared_data):
    store, manifest = _ingest_corpus(tmp_path, {"kind": "file", "path": str(shared_data / "wiki18-sample.jsonl")}, shard_rows=300)
    assert manifest.row_count == 1000 and len(manifest.shards) == 4
    table = store.read_table(manifest)
    first = table.slice(0, 1).to_pylist()[0]
    assert first["id"] == "0" and first["title"] == "Evan Morris" and first["text"].startswith("Evan Morris Evan L. Morris")
    assert manifest.stats["skipped"] == 0 and manifest.stats["input_lines"] == 1000


def test_nq_sample_questions(tmp_path, shared_data):
    sets = [{"name": "nq", "split": "test", "source": {"kind": "file", "path": str(shared_data / "nq-sample.jsonl")}}]
    cfg = _cfg(tmp_path / "store", qa_sets=sets)
    store = ArtifactStore(cfg.store.root)
    manifest = questions_spec(cfg, cfg.questions.sets[0]).run(store)
    rows = store.read_table(manifest).to_pylist()
    assert manifest.row_count == 17 and len(manifest.shards) == 3
    assert rows[0]["id"] == "test_0" and rows[0]["golden_answers"] == ["Wilhelm Conrad Röntgen"]
    assert {r["data_source"] for r in rows} == {"nq"} and {r["split"] for r in rows} == {"test"}


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_malformed_line_names_file_and_line(tmp_path):
    good = json.dumps({"id": "1", "contents": '"T"\nbody'})
    path = _write_lines(tmp_path / "c.jsonl", [good, good.replace('"1"', '"2"'), "{broken", good.replace('"1"', '"4"')])
    with pytest.raises(IngestError, match=r"c\.jsonl, line 3: not valid JSON .* on_malformed: skip"):
        _ingest_corpus(tmp_path, {"kind": "file", "path": str(path)})
    assert not list((tmp_path / "store").rglob("manifest.json"))


def test_skip_mode_counts_bad_lines(tmp_path):
    lines = [json.dumps({"id": str(i), "contents": f'"T{i}"\nbody {i}'}) for i in range(10)]
    lines[3] = "[1, 2]"
    lines[7] = json.dumps({"id": "7"})
    path = _write_lines(tmp_path / "c.jsonl", lines)
    store, manifest = _ingest_corpus(tmp_path, {"kind": "file", "path": str(path)}, on_malformed="skip", shard_rows=4)
    assert manifest.row_count == 8 and manifest.stats["skipped"] == 2
    assert manifest.stats["skipped_examples"][0].startswith("line 4: expected a JSON object")
    assert "line 8" in manifest.stats["skipped_examples"][1]


def test_gzip_and_title_text_records(tmp_path):
    path = tmp_path / "c.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(json.dumps({"id": "a", "title": 'Say "Hi" (song)', "text": "lyrics"}) + "\n")
        handle.write(json.dumps({"id": "b", "contents": '"Paris (city)"\nCapital.'}) + "\n")
    store, manifest = _ingest_corpus(tmp_path, {"kind": "file", "path": str(path)})
    rows = store.read_table(manifest).to_pylist()
    assert [(r["title"], r["text"]) for r in rows] == [('Say "Hi" (song)', "lyrics"), ("Paris (city)", "Capital.")]


def test_parquet_and_hf_folder_qa_sources(tmp_path):
    rows = [{"id": f"q{i}", "question": f"question {i}?", "golden_answers": [f"a{i}"], "metadata": {"k": i}} for i in range(5)]
    folder = tmp_path / "hfdata"
    folder.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), folder / "test.parquet")
    sets = [
        {"name": "pq", "split": "test", "source": {"kind": "file", "path": str(folder / "test.parquet")}},
        {"name": "hf", "split": "test", "source": {"kind": "hf", "name": str(folder), "split": "test"}},
    ]
    cfg = _cfg(tmp_path / "store", qa_sets=sets)
    store = ArtifactStore(cfg.store.root)
    for qa in cfg.questions.sets:
        table = store.read_table(questions_spec(cfg, qa).run(store)).to_pylist()
        assert [r["id"] for r in table] == [f"q{i}" for i in range(5)]
        assert json.loads(table[2]["metadata"]) == {"k": 2} and table[2]["data_source"] == qa.name


def test_mirage_options_are_appended(tmp_path):
    bench = {"medqa": {"0001": {"question": "Which drug?", "options": {"A": "Aspirin", "B": "Insulin (human)"}, "answer": "B"}}}
    path = tmp_path / "benchmark.json"
    path.write_text(json.dumps(bench))
    sets = [{"name": "medqa", "split": "test", "format": "mirage", "mirage_subset": "medqa", "source": {"kind": "file", "path": str(path)}}]
    cfg = _cfg(tmp_path / "store", qa_sets=sets)
    store = ArtifactStore(cfg.store.root)
    row = store.read_table(questions_spec(cfg, cfg.questions.sets[0]).run(store)).to_pylist()[0]
    assert row["question"] == "Which drug?\nOptions:\nA. Aspirin\nB. Insulin (human)"
    assert row["golden_answers"] == ["B: Insulin (human)"] and row["id"] == "medqa_0001"
    bad = parse_config({**cfg.model_dump(mode="json"), "questions": {"sets": [{**sets[0], "mirage_subset": "nope"}]}})
    with pytest.raises(IngestError, match=r"no subset 'nope'; it has \['medqa'\]"):
        questions_spec(bad, bad.questions.sets[0]).run(store)


# -- downloads over a loopback server ------------------------------------------------------------------
@pytest.fixture()
def serve(tmp_path):
    """Start tests/range_server.py on 127.0.0.1 for a folder; stopped by PID at teardown."""
    started: list[subprocess.Popen] = []

    def start(folder: Path, cut_once_after: int | None = None) -> str:
        cmd = [sys.executable, str(HERE / "range_server.py"), "--dir", str(folder)]
        if cut_once_after is not None:
            cmd += ["--cut-once-after", str(cut_once_after)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        started.append(proc)
        port = int(proc.stdout.readline())
        return f"http://127.0.0.1:{port}"

    yield start
    for proc in started:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def test_url_download_with_checksum(tmp_path, shared_data, serve):
    folder = tmp_path / "www"
    folder.mkdir()
    with open(shared_data / "wiki18-sample.jsonl", "rb") as src, gzip.open(folder / "wiki.jsonl.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    digest = hashlib.sha256((folder / "wiki.jsonl.gz").read_bytes()).hexdigest()
    base = serve(folder)
    store, manifest = _ingest_corpus(tmp_path, {"kind": "url", "url": f"{base}/wiki.jsonl.gz", "sha256": digest})
    assert manifest.row_count == 1000
    direct = _ingest_corpus(tmp_path / "direct", {"kind": "file", "path": str(shared_data / "wiki18-sample.jsonl")})[1]
    assert manifest.content_hash == direct.content_hash


def test_checksum_mismatch_is_an_error_and_leaves_nothing(tmp_path, shared_data, serve):
    folder = tmp_path / "www"
    folder.mkdir()
    shutil.copy(shared_data / "nq-sample.jsonl", folder / "nq.jsonl")
    url = f"{serve(folder)}/nq.jsonl"
    with pytest.raises(SourceError, match="checksum mismatch .* was deleted"):
        _ingest_corpus(tmp_path, {"kind": "url", "url": url, "sha256": "0" * 64})
    assert not download_path(url).exists() and not download_path(url).with_name("nq.jsonl.partial").exists()


def test_interrupted_download_resumes_with_range(tmp_path, shared_data, serve):
    folder = tmp_path / "www"
    folder.mkdir()
    shutil.copy(shared_data / "wiki18-sample.jsonl", folder / "resume.jsonl")
    base = serve(folder, cut_once_after=100_000)
    digest = hashlib.sha256((folder / "resume.jsonl").read_bytes()).hexdigest()
    store, manifest = _ingest_corpus(tmp_path, {"kind": "url", "url": f"{base}/resume.jsonl", "sha256": digest})
    assert manifest.row_count == 1000
    assert download_path(f"{base}/resume.jsonl").read_bytes() == (folder / "resume.jsonl").read_bytes()


def test_tiny_world_served_over_http_ingests_like_the_local_files(tmp_path, serve):
    from s3core.data.tiny_world import TinyWorldConfig, generate_world, write_world

    folder = tmp_path / "www"
    write_world(generate_world(TinyWorldConfig(seed=3, n_questions=200)), folder)
    base = serve(folder)
    qa = [{"name": "tiny", "split": "dev", "source": {"kind": "url", "url": f"{base}/dev.jsonl"}}]
    cfg = _cfg(tmp_path / "store", {"kind": "url", "url": f"{base}/corpus.jsonl"}, qa_sets=qa, shard_rows=500)
    store = ArtifactStore(cfg.store.root)
    corpus = corpus_spec(cfg, cfg.corpus.parts[0]).run(store)
    questions = questions_spec(cfg, cfg.questions.sets[0]).run(store)
    local = _cfg(tmp_path / "local", {"kind": "file", "path": str(folder / "corpus.jsonl")}, shard_rows=500)
    assert corpus.content_hash == corpus_spec(local, local.corpus.parts[0]).run(ArtifactStore(local.store.root)).content_hash
    rows = store.read_table(questions).to_pylist()
    assert questions.row_count == 20 and all(json.loads(r["metadata"])["supporting_ids"] for r in rows)


def test_corpus_from_a_hugging_face_dataset_folder(tmp_path, shared_data):
    folder = tmp_path / "hfcorpus"
    folder.mkdir()
    lines = (shared_data / "wiki18-sample.jsonl").read_text(encoding="utf-8").splitlines()[:50]
    pq.write_table(pa.Table.from_pylist([json.loads(line) for line in lines]), folder / "train.parquet")
    store, manifest = _ingest_corpus(tmp_path, {"kind": "hf", "name": str(folder), "split": "train"}, shard_rows=20)
    assert manifest.row_count == 50 and store.read_table(manifest).column("title")[0].as_py() == "Evan Morris"
