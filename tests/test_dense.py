"""Dense retrieval on CPU (s3core.retrieval.encoder and .dense): encoder outputs, the embed stage and its
resume after a crash, the three index types, and the torch search backend against faiss. A tiny BERT
encoder is built from tiny-world passages in the test; the whole file runs in well under a minute."""

from __future__ import annotations

import copy
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModel, AutoTokenizer  # noqa: E402

from s3core.config.schema import DenseRetrievalConfig  # noqa: E402
from s3core.data.tiny_world import TinyWorldConfig, generate_world  # noqa: E402
from s3core.models.pooling import Pooling, embed_hidden, pooling_from_name  # noqa: E402
from s3core.models.tiny import TinyEncoderConfig, build_encoder  # noqa: E402
from s3core.retrieval.base import DocStore  # noqa: E402
from s3core.retrieval.dense import (  # noqa: E402
    INDEX_FILE,
    DenseRetriever,
    Engine,
    IndexType,
    TorchFlatSearcher,
    arrays_from_table,
    build_dense_index,
    choose_engine,
    embed_corpus,
    read_flat_vectors,
    read_index_meta,
    search_embeddings,
)
from s3core.retrieval.encoder import DenseEncoder, pad_batch  # noqa: E402
from s3core.store import ArtifactStore, StageSpec  # noqa: E402

N_PASSAGES = 240
SHARD_ROWS = 48  # 5 shards
DIM = 32
DENSE_CODE = ("retrieval/encoder.py", "retrieval/dense.py")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Our CI machines have 2 shared cores; tiny models run several times faster on one torch thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def docs() -> DocStore:
    passages = generate_world(TinyWorldConfig(n_questions=50)).passages[::8][:N_PASSAGES]
    return DocStore(pa.table({"id": [p.id for p in passages], "title": [p.title for p in passages],
                              "text": [p.text for p in passages]}))


@pytest.fixture(scope="module")
def dense_cfg(docs, tmp_path_factory) -> DenseRetrievalConfig:
    texts = docs.table.column("text").to_pylist()
    shape = TinyEncoderConfig(hidden_size=DIM, num_layers=2, num_heads=4, intermediate_size=64)
    folder = build_encoder(texts, shape, seed=2, vocab_size=1024, out_dir=tmp_path_factory.mktemp("encoder"))
    return DenseRetrievalConfig(encoder=str(folder), max_length=64, batch_size=32, dtype="float32")


@pytest.fixture(scope="module")
def encoder(dense_cfg) -> DenseEncoder:
    return DenseEncoder.from_config(dense_cfg, dense_cfg.encoder, device="cpu")


def embed_spec(docs: DocStore, encoder: DenseEncoder) -> StageSpec:
    config = {"shard_rows": SHARD_ROWS, **encoder.describe()}
    return StageSpec("embed", config, {}, lambda ctx: embed_corpus(ctx, docs, encoder, SHARD_ROWS), code=DENSE_CODE)


def index_spec(embeddings, cfg: DenseRetrievalConfig) -> StageSpec:
    return StageSpec("index", cfg, {"embeddings": embeddings},
                     lambda ctx: build_dense_index(ctx, ctx.inputs["embeddings"], cfg), kind="dir", code=DENSE_CODE)


@pytest.fixture(scope="module")
def embedded(docs, encoder, tmp_path_factory):
    store = ArtifactStore(tmp_path_factory.mktemp("clean-store"))
    return store, embed_spec(docs, encoder).run(store)


@pytest.fixture(scope="module")
def flat_index_dir(embedded, dense_cfg):
    store, embeddings = embedded
    return store.local_dir(index_spec(embeddings, dense_cfg).run(store), verify=True)


def passage_lists(docs: DocStore) -> tuple[list[str], list[str]]:
    return docs.table.column("title").to_pylist(), docs.table.column("text").to_pylist()


# -- encoder ---------------------------------------------------------------------------------------------
def test_encoder_gives_unit_vectors_deterministically(encoder, docs):
    titles, texts = passage_lists(docs)
    first = encoder.encode_passages(titles, texts)
    second = encoder.encode_passages(titles, texts)
    assert first.shape == (N_PASSAGES, DIM) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(first, second)
    # other batch compositions (length-sorted batches of a subset) change only float rounding
    np.testing.assert_allclose(encoder.encode_passages(titles[5:17], texts[5:17]), first[5:17], atol=1e-5)


def test_prefixes_and_wiki_contents_format_are_applied(encoder):
    np.testing.assert_array_equal(encoder.encode_queries(["who founded rusk"]),
                                  encoder.encode_texts(["query: who founded rusk"]))
    np.testing.assert_array_equal(encoder.encode_passages(["Rusk"], ["A town."]),
                                  encoder.encode_texts(['passage: "Rusk"\nA town.']))
    assert not np.allclose(encoder.encode_queries(["rusk"]), encoder.encode_texts(["rusk"]))


def test_iter_encode_yields_each_batch_in_order(encoder, docs):
    _, texts = passage_lists(docs)
    batches = [texts[0:7], texts[7:8], texts[8:40]]
    outputs = list(encoder.iter_encode(batches))
    assert [len(o) for o in outputs] == [7, 1, 32]
    np.testing.assert_allclose(np.concatenate(outputs), encoder.encode_texts(texts[:40]), atol=1e-5)


def reference_mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Readable reference: average each row's unmasked token vectors one by one, then normalise."""
    rows = [hidden[i][mask[i].bool()].mean(dim=0) for i in range(hidden.shape[0])]
    return torch.nn.functional.normalize(torch.stack(rows), dim=-1)


def reference_encode(folder: str, texts: list[str], max_length: int) -> np.ndarray:
    """Readable reference: the transformers tokenizer call, one forward pass, mean pooling, L2 norm."""
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state  # [B, T, H]
    return reference_mean_pool(hidden, batch["attention_mask"]).numpy()


def test_encoder_matches_the_plain_transformers_pipeline(encoder, dense_cfg, docs):
    _, texts = passage_lists(docs)
    texts = texts[:40] + ["", "one", " ".join(texts[:5])]  # empty, one word, far longer than max_length
    expected = reference_encode(dense_cfg.encoder, texts, dense_cfg.max_length)
    np.testing.assert_allclose(encoder.encode_texts(texts), expected, atol=1e-5)


def test_pad_batch_pads_right_or_left_to_a_multiple():
    ids, mask = pad_batch([[5, 6, 7], [8]], pad_id=0, multiple=4)
    np.testing.assert_array_equal(ids, [[5, 6, 7, 0], [8, 0, 0, 0]])
    np.testing.assert_array_equal(mask, [[1, 1, 1, 0], [1, 0, 0, 0]])
    ids, mask = pad_batch([[5, 6, 7], [8]], pad_id=0, left=True)
    np.testing.assert_array_equal(ids, [[5, 6, 7], [0, 0, 8]])
    np.testing.assert_array_equal(mask, [[1, 1, 1], [0, 0, 1]])


def test_pooling_matches_reference_and_names_are_checked():
    torch.manual_seed(0)
    hidden = torch.randn(3, 5, 8)  # [B, T, H]
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])  # [B, T]
    torch.testing.assert_close(embed_hidden(hidden, mask, Pooling.MEAN), reference_mean_pool(hidden, mask))
    torch.testing.assert_close(embed_hidden(hidden, mask, Pooling.CLS),
                               torch.nn.functional.normalize(hidden[:, 0], dim=-1))
    with pytest.raises(ValueError, match="valid names: mean, cls"):
        pooling_from_name("max")


# -- embed stage ------------------------------------------------------------------------------------------
def test_embed_stage_writes_fp16_shards_in_row_order(embedded, encoder, docs):
    store, manifest = embedded
    assert manifest.schema_ == {"row": "int64", "embedding": f"fixed_size_list<element: halffloat>[{DIM}]"}
    assert manifest.row_count == N_PASSAGES and len(manifest.shards) == N_PASSAGES // SHARD_ROWS
    rows, vectors = arrays_from_table(store.read_table(manifest))
    np.testing.assert_array_equal(rows, np.arange(N_PASSAGES))
    assert vectors.dtype == np.float16
    np.testing.assert_allclose(vectors, encoder.encode_passages(*passage_lists(docs)), atol=2e-3)
    assert manifest.stats["pooling"] == "mean" and manifest.stats["written_shards"] == N_PASSAGES // SHARD_ROWS


def test_crashed_embed_resumes_with_only_the_missing_shards(embedded, encoder, docs, tmp_path, monkeypatch):
    real_encode = encoder.encode_passages
    calls: list[int] = []

    def crash_after_two_shards(titles, texts):
        if len(calls) == 2:
            raise RuntimeError("simulated crash")
        calls.append(len(texts))
        return real_encode(titles, texts)

    store = ArtifactStore(tmp_path / "store")
    spec = embed_spec(docs, encoder)
    monkeypatch.setattr(encoder, "encode_passages", crash_after_two_shards)
    with pytest.raises(RuntimeError, match="simulated crash"):
        spec.run(store)
    artifact = tmp_path / "store" / "embed" / spec.key
    assert not (artifact / "manifest.json").exists()
    finished = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in artifact.glob("part-*.parquet")}
    assert sorted(finished) == ["part-00000.parquet", "part-00001.parquet"]

    calls.clear()
    monkeypatch.setattr(encoder, "encode_passages", lambda titles, texts: calls.append(len(texts)) or real_encode(titles, texts))
    resumed = spec.run(store)
    assert calls == [SHARD_ROWS] * (N_PASSAGES // SHARD_ROWS - 2)
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in map(artifact.joinpath, finished)} == finished
    assert resumed.stats["resumed_shards"] == 2
    assert resumed.content_hash == embedded[1].content_hash


# -- index stage and search --------------------------------------------------------------------------------
@pytest.mark.parametrize("index_type", ["flat", "hnsw", "ivfpq"])
def test_each_index_type_builds_and_returns_valid_rows(index_type, embedded, dense_cfg, encoder, docs):
    store, embeddings = embedded
    cfg = dense_cfg.model_copy(update={"index_type": index_type})
    folder = store.local_dir(index_spec(embeddings, cfg).run(store), verify=True)
    meta = read_index_meta(folder)
    assert (meta["index_type"], meta["dim"], meta["n"], meta["query_prefix"]) == (index_type, DIM, N_PASSAGES, "query: ")
    assert "DocStore row" in meta["row_mapping"]
    if index_type == "ivfpq":  # 240 vectors: too few for 4*sqrt(N) cells and 256 PQ centroids
        assert meta["params"]["nlist"] == N_PASSAGES // 39 and meta["params"]["pq_bits"] == 7
        assert len(meta["params"]["clamped"]) == 2
    retriever = DenseRetriever.load(folder, encoder, device="cpu")
    _, texts = passage_lists(docs)
    hits = retriever.search(texts[:4], topk=5)
    assert len(hits) == 4
    for hit_list in hits:
        assert len(hit_list) == 5 and all(0 <= h.row < N_PASSAGES for h in hit_list)
        scores = [h.score for h in hit_list]
        assert scores == sorted(scores, reverse=True)


def test_flat_search_finds_each_passage_from_its_own_text(flat_index_dir, encoder, docs):
    retriever = DenseRetriever.load(flat_index_dir, encoder, device="cpu", backend="faiss")
    _, texts = passage_lists(docs)
    top1 = np.array([hit_list[0].row for hit_list in retriever.search(texts, topk=1)])
    # a random-init 32-wide encoder puts 86% of passages first for their own text; a broken row mapping ~0%
    assert (top1 == np.arange(N_PASSAGES)).mean() >= 0.8


def test_torch_and_faiss_flat_search_agree_on_random_data():
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((3000, 48)).astype(np.float32)
    queries = rng.standard_normal((20, 48)).astype(np.float32)
    faiss_scores, faiss_rows = search_embeddings(matrix, queries, 10, backend="faiss", device="cpu")
    torch_scores, torch_rows = search_embeddings(matrix, queries, 10, backend="torch", device="cpu")
    np.testing.assert_array_equal(torch_rows, faiss_rows)
    np.testing.assert_allclose(torch_scores, faiss_scores, rtol=1e-5, atol=1e-4)
    chunked = TorchFlatSearcher(torch.from_numpy(matrix), score_budget_bytes=20 * 4 * 128)  # 128-row chunks
    np.testing.assert_array_equal(chunked.search(queries, 10)[1], faiss_rows)


def test_torch_backend_reads_the_flat_index_file_and_matches_faiss(flat_index_dir, encoder, docs, embedded):
    store, embeddings = embedded
    _, stored = arrays_from_table(store.read_table(embeddings))
    np.testing.assert_array_equal(read_flat_vectors(flat_index_dir / INDEX_FILE), stored.astype(np.float32))
    by_torch = DenseRetriever.load(flat_index_dir, encoder, device="cpu", backend="torch")
    by_faiss = DenseRetriever.load(flat_index_dir, encoder, device="cpu", backend="faiss")
    assert (by_torch.engine, by_faiss.engine) == (Engine.TORCH, Engine.FAISS_CPU)
    questions = passage_lists(docs)[1][:30]
    rows = lambda hits: [[h.row for h in hit_list] for hit_list in hits]  # noqa: E731
    assert rows(by_torch.search(questions, 8)) == rows(by_faiss.search(questions, 8))


def test_backend_choice_and_encoder_mismatch_are_explained(flat_index_dir, encoder):
    assert choose_engine("auto", IndexType.FLAT, "cpu") == Engine.FAISS_CPU
    with pytest.raises(ValueError, match="torch backend searches flat indexes"):
        choose_engine("torch", IndexType.HNSW, None)
    with pytest.raises(ValueError, match="valid names: auto, faiss, torch"):
        choose_engine("gpu", IndexType.FLAT, None)
    other = copy.copy(encoder)
    other.query_prefix = "search_query: "
    with pytest.raises(ValueError, match="query_prefix"):
        DenseRetriever.load(flat_index_dir, other, device="cpu")
