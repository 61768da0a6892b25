"""The index-build stages (DESIGN.md section 3): embeddings -> dense index, and the BM25 index.

    embeddings      row, embedding (float16) of every passage      table, resumable by shard
    dense_index     index.faiss + meta.json (flat / hnsw / ivfpq)  dir
    bm25_index      Lucene index + meta.json                       dir
    retrieval_eval  recall@k per index and non-train QA set        table

Row i of every index is row i of the DocStore made from the corpus artifacts in `corpus.parts` order, so
hits need no id map. Loading the indexes back for search is retrieval/indexes.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from s3core.config.schema import RunConfig
from s3core.models.resolve import in_model_set
from s3core.retrieval.base import DocStore
from s3core.retrieval.indexes import make_encoder, open_retrievers
from s3core.retrieval.metrics import evaluate_retriever
from s3core.store import ArtifactStore, Manifest, StageContext, StageResult, StageSpec, StageSummary

# Fields of DenseRetrievalConfig that change the embeddings (the device does not, beyond rounding).
EMBEDDING_FIELDS = ("encoder", "query_prefix", "passage_prefix", "pooling", "max_length", "dtype", "batch_size", "embed_shard_rows")
# (batch_size: length-sorted batches change padding, which moves fp16 results by rounding)
RETRIEVAL_EVAL_SCHEMA = pa.schema([("index", pa.string()), ("data_source", pa.string()), ("split", pa.string()),
                                   ("questions", pa.int64()), ("metric", pa.string()), ("value", pa.float64())])
INDEX_FIELDS = ("index_type",)  # hnsw_ef_search is a search-time setting, applied at load


def needs_dense(cfg: RunConfig) -> bool:
    return "dense" in cfg.retrieval.serve or cfg.retrieval.naive_retriever == "dense"


def _corpus_inputs(corpus: Sequence[Manifest]) -> dict[str, Manifest]:
    return {f"corpus/{i:03d}": m for i, m in enumerate(corpus)}


def _corpus_of(ctx: StageContext) -> list[Manifest]:
    return [m for name, m in sorted(ctx.inputs.items()) if name.startswith("corpus/")]


def embed_spec(cfg: RunConfig, corpus: Sequence[Manifest], tiny_models: Manifest | None) -> StageSpec:
    dense = cfg.retrieval.dense
    inputs = _corpus_inputs(corpus)
    if in_model_set(dense.encoder):
        if tiny_models is None:
            raise ValueError(f"retrieval.dense.encoder is {dense.encoder!r} but the tiny models were not built")
        inputs["tiny_models"] = tiny_models

    def build(ctx: StageContext) -> StageResult:
        from s3core.retrieval.dense import embed_corpus  # FAISS + torch: only when building

        docs = DocStore.from_manifests(ctx.store, _corpus_of(ctx))
        models = ctx.store.local_dir(ctx.inputs["tiny_models"]) if "tiny_models" in ctx.inputs else None
        return embed_corpus(ctx, docs, make_encoder(cfg, models), dense.embed_shard_rows)

    identity = dense.model_dump(mode="json", include=set(EMBEDDING_FIELDS))
    return StageSpec("embeddings", identity, inputs, build)


def dense_index_spec(cfg: RunConfig, embeddings: Manifest) -> StageSpec:
    dense = cfg.retrieval.dense

    def build(ctx: StageContext) -> StageResult:
        from s3core.retrieval.dense import build_dense_index  # FAISS: only when building

        return build_dense_index(ctx, ctx.inputs["embeddings"], dense)

    identity = dense.model_dump(mode="json", include=set(INDEX_FIELDS) | {"encoder"})
    return StageSpec("dense_index", identity, {"embeddings": embeddings}, build, kind="dir")


def bm25_index_spec(cfg: RunConfig, corpus: Sequence[Manifest]) -> StageSpec:
    bm25 = cfg.retrieval.bm25

    def build(ctx: StageContext) -> StageResult:
        from s3core.retrieval.bm25 import build_bm25_index  # the JVM (pyserini): only when building

        docs = DocStore.from_manifests(ctx.store, _corpus_of(ctx))
        return build_bm25_index(ctx, docs, bm25)

    # k1 and b are search-time parameters of Lucene's BM25: they do not change the index
    return StageSpec("bm25_index", {"indexer": "lucene-default"}, _corpus_inputs(corpus), build, kind="dir")


def retrieval_eval_spec(
    cfg: RunConfig,
    corpus: Sequence[Manifest],
    questions: Sequence[Manifest],
    dense_index: Manifest | None,
    bm25_index: Manifest | None,
    tiny_models: Manifest | None,
) -> StageSpec:
    """Recall@k (k in retrieval.recall_ks) of every built index on every non-train QA set: the first use of
    the indexes in s3-train, and the number to watch when changing the encoder or the corpus."""
    ks = tuple(sorted(cfg.retrieval.recall_ks))
    inputs = {**_corpus_inputs(corpus), **{f"questions/{i:03d}": m for i, m in enumerate(questions) if m.stats.get("split") != "train"}}
    inputs.update({name: m for name, m in (("dense_index", dense_index), ("bm25_index", bm25_index), ("tiny_models", tiny_models)) if m})
    served = [name for name in ("dense", "bm25") if f"{name}_index" in inputs]

    def build(ctx: StageContext) -> StageResult:
        retrievers, docs = open_retrievers(
            ctx.store, cfg, _corpus_of(ctx), ctx.inputs.get("dense_index"), ctx.inputs.get("bm25_index"), ctx.inputs.get("tiny_models"), served
        )
        rows = []
        sets = [m for name, m in sorted(ctx.inputs.items()) if name.startswith("questions/")]
        for done, manifest in enumerate(sets):
            table = ctx.store.read_table(manifest).to_pylist()
            for name, retriever in retrievers.items():
                for metric, value in evaluate_retriever(retriever, docs, table, ks).items():
                    rows.append({"index": name, "data_source": manifest.stats["data_source"], "split": manifest.stats["split"],
                                 "questions": len(table), "metric": metric, "value": value})
            ctx.progress(done + 1, len(sets), f"retrieval recall on {manifest.stats['data_source']}/{manifest.stats['split']}")
        ctx.table_writer().write_shard(0, pa.Table.from_pylist(rows, schema=RETRIEVAL_EVAL_SCHEMA))
        return StageResult()

    identity = {"ks": list(ks), "indexes": served, "dense_ef_search": cfg.retrieval.dense.hnsw_ef_search,
                "bm25": cfg.retrieval.bm25.model_dump(mode="json", include={"k1", "b"})}
    return StageSpec("retrieval_eval", identity, inputs, build)


def recall_summary(cfg: RunConfig, store: ArtifactStore, retrieval_eval: Manifest) -> StageSummary:
    """The recall table of a retrieval_eval artifact, for the UI."""
    rows = store.read_table(retrieval_eval).to_pylist()
    return StageSummary("retrieval-recall", f"Retrieval recall@k ({cfg.name}): answer recall = a top-k passage "
                        "contains a gold answer", table=[{**r, "value": round(r["value"], 4)} for r in rows])
