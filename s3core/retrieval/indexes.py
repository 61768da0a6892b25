"""Opening a config's built indexes for search: the dense encoder, the FAISS and Lucene retrievers, and the
doc store their rows index (row i of every index is row i of the DocStore made from the corpus artifacts
in `corpus.parts` order). FAISS, torch and the JVM are imported only when an index of theirs is opened.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from s3core.config.schema import RunConfig
from s3core.models.resolve import resolve_model_path
from s3core.retrieval.base import DocStore, Retriever
from s3core.store import ArtifactStore, Manifest


def make_encoder(cfg: RunConfig, tiny_models_dir: Path | None, device: str | None = None):
    from s3core.retrieval.encoder import (
        DenseEncoder,  # torch + transformers: only when encoding
    )

    dense = cfg.retrieval.dense
    return DenseEncoder(
        resolve_model_path(dense.encoder, tiny_models_dir),
        pooling=dense.pooling,
        max_length=dense.max_length,
        query_prefix=dense.query_prefix,
        passage_prefix=dense.passage_prefix,
        device=device or dense.device,
        dtype=dense.dtype,
        batch_size=dense.batch_size,
    )


def open_retrievers(
    store: ArtifactStore,
    cfg: RunConfig,
    corpus: Sequence[Manifest],
    dense_index: Manifest | None,
    bm25_index: Manifest | None,
    tiny_models: Manifest | None,
    names: Sequence[str] | None = None,
) -> tuple[dict[str, Retriever], DocStore]:
    """Load the named indexes (default: retrieval.serve) and the doc store they index into."""
    docs = DocStore.from_manifests(store, corpus)
    retrievers: dict[str, Retriever] = {}
    for name in names or cfg.retrieval.serve:
        if name == "dense":
            if dense_index is None:
                raise ValueError("the dense index has not been built; run `s3agent stage index` first")
            from s3core.retrieval.dense import DenseRetriever  # FAISS + torch: only when the dense index is opened

            models = store.local_dir(tiny_models) if tiny_models is not None else None
            dense = cfg.retrieval.dense
            retrievers["dense"] = DenseRetriever.load(
                store.local_dir(dense_index), make_encoder(cfg, models), backend=dense.search_backend, ef_search=dense.hnsw_ef_search
            )
        elif name == "bm25":
            if bm25_index is None:
                raise ValueError("the BM25 index has not been built; enable retrieval.bm25 and run `s3agent stage index`")
            from s3core.retrieval.bm25 import BM25Retriever  # the JVM (pyserini): only when the BM25 index is opened

            bm25 = cfg.retrieval.bm25
            retrievers["bm25"] = BM25Retriever.load(store.local_dir(bm25_index), k1=bm25.k1, b=bm25.b, threads=bm25.threads)
        else:
            raise ValueError(f"unknown index {name!r}; use dense or bm25")
    return retrievers, docs


def open_retriever_by_name(store: ArtifactStore, cfg: RunConfig, name: str, corpus: Sequence[Manifest],
                           dense_index: Manifest | None, bm25_index: Manifest | None,
                           tiny_models: Manifest | None) -> tuple[Retriever, DocStore]:
    """The retriever `name` (dense | bm25), and the doc store its rows index."""
    retrievers, docs = open_retrievers(store, cfg, corpus, dense_index, bm25_index, tiny_models, [name])
    return retrievers[name], docs


def open_naive_retriever(store: ArtifactStore, cfg: RunConfig, corpus: Sequence[Manifest], dense_index: Manifest | None,
                         bm25_index: Manifest | None, tiny_models: Manifest | None) -> tuple[Retriever, DocStore]:
    """The retriever `retrieval.naive_retriever` names, and the doc store its rows index."""
    return open_retriever_by_name(store, cfg, cfg.retrieval.naive_retriever, corpus, dense_index, bm25_index, tiny_models)
