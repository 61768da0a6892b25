"""BM25 with pyserini (Lucene) on the real 1,000-passage wiki-18 sample: the index stage and the retriever.

CPU only. One index is built per module (the JVM start and pyserini's import cost seconds); the retriever
runs in this process's JVM, every build in a subprocess, as in the pipeline.
"""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pytest

from s3core.config.schema import BM25Config
from s3core.data.formats import passage_from_record
from s3core.retrieval import bm25
from s3core.retrieval.base import DocStore
from s3core.retrieval.bm25 import BM25IndexError, BM25Retriever, build_bm25_index, write_collection
from s3core.store import ArtifactStore, Manifest, StageSpec

STAGE = "bm25_index"
CFG = BM25Config(threads=2)
MORRIS_QUERY = "Evan Morris lobbyist Genentech"
PROBE_QUERIES = [
    MORRIS_QUERY, "Roche Medicare flu preparedness", "river city population census", "the film was released",
]


def doc_store(records: list[dict]) -> DocStore:
    rows = [passage_from_record(record) for record in records]
    return DocStore(pa.Table.from_pylist(rows, schema=pa.schema([(c, pa.string()) for c in ("id", "title", "text")])))


def build(root: Path, docs: DocStore, tag: str) -> tuple[ArtifactStore, Manifest]:
    """Run the real stage into a fresh store; `tag` keeps the stage keys (and staging folders) apart."""
    store = ArtifactStore(root)
    identity = {"indexer": "lucene-default", "test": tag}
    spec = StageSpec(STAGE, identity, {}, lambda ctx: build_bm25_index(ctx, docs, CFG), kind="dir")
    return store, spec.run(store)


@pytest.fixture(scope="module")
def sample_records(shared_data: Path) -> list[dict]:
    with open(shared_data / "wiki18-sample.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@pytest.fixture(scope="module")
def sample_docs(sample_records) -> DocStore:
    return doc_store(sample_records)


@pytest.fixture(scope="module")
def built(tmp_path_factory, sample_docs):
    return build(tmp_path_factory.mktemp("bm25-store"), sample_docs, "main")


@pytest.fixture(scope="module")
def retriever(built) -> BM25Retriever:
    store, manifest = built
    return BM25Retriever.load(store.local_dir(manifest, verify=True), k1=CFG.k1, b=CFG.b, threads=2)


def test_index_holds_every_passage(built, retriever, sample_docs):
    store, manifest = built
    folder = store.local_dir(manifest)
    meta = json.loads((folder / "meta.json").read_text())
    assert manifest.kind == "dir"
    assert manifest.stats["documents_indexed"] == len(sample_docs) == 1000
    assert meta["documents"] == retriever.num_docs == 1000
    assert (meta["k1"], meta["b"]) == (0.9, 0.4)
    assert meta["pyserini_version"] == "0.25.0" and meta["java_version"].startswith("17")
    assert not (folder / bm25.COLLECTION_DIR).exists(), "the temporary JSONL export must be deleted"
    assert any((folder / "lucene").glob("segments_*"))


def test_distinctive_words_find_passage_zero(retriever, sample_docs):
    hits = retriever.search([MORRIS_QUERY], topk=3)[0]
    assert hits[0].row == 0
    assert sample_docs.doc_id(hits[0].row) == "0" and sample_docs.title(0) == "Evan Morris"
    assert hits[0].score > 2 * hits[1].score


def test_rows_map_back_to_ids(retriever, sample_docs, sample_records):
    """25 words from the middle of a passage find it (a neighbour of the same article may score higher),
    and the hit's row leads back to the passage's original id and contents."""
    picks = list(range(0, 1000, 50))
    queries = [" ".join(passage_from_record(sample_records[i])["text"].split()[20:45]) for i in picks]
    for i, hits in zip(picks, retriever.search(queries, topk=3)):
        found = {sample_docs.doc_id(h.row): (sample_docs.title(h.row), sample_docs.text(h.row)) for h in hits}
        passage = passage_from_record(sample_records[i])
        assert found.get(passage["id"]) == (passage["title"], passage["text"])


def test_string_ids_and_order_follow_rows(tmp_path):
    docs = doc_store(
        [
            {"id": "zeta", "title": "Moon", "text": "The moon orbits the earth."},
            {"id": "alpha", "title": "Kiwi", "text": "The kiwi is a flightless bird of New Zealand."},
            {"id": "mid", "title": "Basalt", "text": "Basalt is a volcanic rock."},
        ]
    )
    store, manifest = build(tmp_path / "store", docs, "string-ids")
    small = BM25Retriever.load(store.local_dir(manifest), threads=1)
    rows = [hits[0].row for hits in small.search(["flightless kiwi bird", "volcanic basalt", "moon orbit"], topk=2)]
    assert rows == [1, 2, 0]
    assert [docs.doc_id(r) for r in rows] == ["alpha", "mid", "zeta"]


def test_k1_and_b_change_scores(built, retriever):
    store, manifest = built
    other = BM25Retriever.load(store.local_dir(manifest), k1=1.2, b=0.75, threads=2)
    default_hits = retriever.search([MORRIS_QUERY], topk=5)[0]
    other_hits = other.search([MORRIS_QUERY], topk=5)[0]
    assert other_hits[0].row == 0
    assert not math.isclose(default_hits[0].score, other_hits[0].score, rel_tol=1e-4)


def test_topk_respected_and_sorted(retriever):
    for topk in (1, 5, 17):
        for hits in retriever.search(PROBE_QUERIES, topk=topk):
            assert 0 < len(hits) <= topk
            scores = [h.score for h in hits]
            assert scores == sorted(scores, reverse=True)
    assert all(len(hits) == 17 for hits in retriever.search(["the film was released in the year"], topk=17))
    with pytest.raises(ValueError, match="topk"):
        retriever.search([MORRIS_QUERY], topk=0)


def test_empty_queries_give_no_hits(retriever):
    assert retriever.search([], topk=3) == []
    results = retriever.search(["", "   \n", MORRIS_QUERY], topk=3)
    assert results[0] == [] and results[1] == []
    assert results[2][0].row == 0


def test_long_query_is_searched_not_dropped(retriever):
    """Lucene's default 1,024-clause limit would make pyserini drop this query silently."""
    query = MORRIS_QUERY + " " + " ".join(f"zzword{i}" for i in range(2000))
    assert retriever.search([query], topk=3)[0][0].row == 0


def test_search_from_a_worker_thread_matches(retriever):
    """The server searches on one worker thread; results must be those of the main thread."""
    expected = retriever.search(PROBE_QUERIES, topk=8)
    with ThreadPoolExecutor(max_workers=1) as pool:
        assert pool.submit(retriever.search, PROBE_QUERIES, 8).result() == expected


def test_two_builds_search_identically(tmp_path, built, retriever, sample_docs):
    store, manifest = build(tmp_path / "again", sample_docs, "again")
    again = BM25Retriever.load(store.local_dir(manifest), threads=2)
    assert again.search(PROBE_QUERIES, topk=10) == retriever.search(PROBE_QUERIES, topk=10)


def test_broken_java_fails_clearly_without_manifest(tmp_path, monkeypatch, sample_docs):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-java-here"))  # only the indexer subprocess sees it
    store = ArtifactStore(tmp_path / "store")
    with pytest.raises(BM25IndexError, match="JAVA_HOME") as caught:
        build(tmp_path / "store", sample_docs, "broken-java")
    assert "Java 17" in str(caught.value) and "Last lines" in str(caught.value)
    assert store.list_manifests() == []


def test_blank_passage_makes_count_check_fail(tmp_path):
    """Anserini skips a passage with no text at all; the stage must notice instead of losing a row."""
    table = pa.table({"id": ["a", "b"], "title": ["Moon", ""], "text": ["The moon orbits the earth.", "  "]})
    store = ArtifactStore(tmp_path / "store")
    spec = StageSpec(STAGE, {"test": "blank"}, {}, lambda ctx: build_bm25_index(ctx, DocStore(table), CFG), kind="dir")
    with pytest.raises(BM25IndexError, match="holds 1 documents but the corpus has 2"):
        spec.run(store)
    assert store.list_manifests() == []


def test_collection_files_hold_contiguous_rows(tmp_path, sample_docs):
    n_files = write_collection(sample_docs, tmp_path / "jsonl", 3)
    files = sorted((tmp_path / "jsonl").glob("*.jsonl"))
    rows = [json.loads(line) for path in files for line in path.read_text(encoding="utf-8").splitlines()]
    assert n_files == len(files) == 3
    assert [r["id"] for r in rows] == [str(i) for i in range(1000)]
    assert rows[0]["contents"] == f"{sample_docs.title(0)}\n{sample_docs.text(0)}"


def test_loading_a_folder_without_an_index_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no Lucene index"):
        BM25Retriever.load(tmp_path)
