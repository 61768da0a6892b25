"""Dense retrieval: the EMBED and INDEX stages, and the retriever that searches their output.

DESIGN.md section 2 ("Dense retrieval": e5-base-v2, `query: ` / `passage: ` prefixes, mean pooling, L2 norm,
inner product, 256 tokens) and section 3 ("Artifacts and resume"; the GPU facts of section 6).

    embed   table   row: int64, embedding: fixed_size_list<halffloat>[D]     shards of `shard_rows` passages
    index   dir     index.faiss + meta.json                                  flat | hnsw | ivfpq, inner product

Row i of the embeddings and of the index is row i of the DocStore (the corpus parts concatenated in config
order), so no id map is stored. Search backends: faiss on CPU, faiss on every GPU (`index_cpu_to_all_gpus`,
sharded), and exact torch matmul + topk over an fp16 matrix on CUDA for machines that have CUDA but no
faiss-gpu (ours: DESIGN.md section 6). `auto` picks faiss-gpu > torch on CUDA > faiss-cpu.

How this differs from FlashRAG's index builder, and why:
- embeddings are stored as float16 (half the size: 32 GB instead of 64 GB for wiki-18); faiss search upcasts
  them to float32, so flat faiss search is exact over the fp16-rounded vectors and faiss-gpu's fp16 storage
  loses nothing further;
- the torch backend reads the vectors of a flat `index.faiss` straight from the file (a memory map of the
  documented IndexFlat layout), so GPU machines without faiss can search the same artifact;
- IVF-PQ clamps nlist, the PQ code size and its bits to what the corpus allows (tiny corpora) and records
  each clamp in meta.json; HNSW search stays on faiss-cpu (faiss has no GPU HNSW).

s3core.store and pydantic are imported inside the stage functions only: `search_embeddings` and the torch
backend must import on GPU machines that have torch, numpy and pyarrow and nothing else.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pyarrow as pa
import torch

from s3core.retrieval.encoder import DenseEncoder

if TYPE_CHECKING:
    from s3core.config.schema import DenseRetrievalConfig
    from s3core.retrieval.base import DocStore, SearchHit
    from s3core.store import ArtifactStore, Manifest, StageContext, StageResult

log = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
META_FILE = "meta.json"
INDEX_FORMAT = "s3-dense-index/1"
ROW_MAPPING = "index row i = DocStore row i (corpus parts concatenated in config order); no id map"
TORCH_SCORE_BUDGET_BYTES = 1 << 30  # size of one [Q, C] score block: the corpus is scored C rows at a time
TORCH_QUERY_BLOCK = 1024  # queries scored together by the torch backend
MIN_POINTS_PER_CENTROID = 39  # below this faiss k-means warns that clusters are poorly trained
GPU_PQ_CODE_SIZES = (1, 2, 3, 4, 8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 96)  # faiss-gpu IVFPQ bytes/vector


# ======================================================================================================
# embed stage: passages -> fp16 embedding shards
# ======================================================================================================
def embeddings_schema(dim: int) -> pa.Schema:
    return pa.schema([("row", pa.int64()), ("embedding", pa.list_(pa.float16(), dim))])


def embedding_table(first_row: int, vectors: np.ndarray) -> pa.Table:
    """[n, D] vectors of rows first_row.. -> a table of the embeddings schema (values stored as float16)."""
    n, dim = vectors.shape
    values = pa.array(np.ascontiguousarray(vectors, dtype=np.float16).reshape(-1))
    rows = pa.array(np.arange(first_row, first_row + n, dtype=np.int64))
    return pa.Table.from_arrays([rows, pa.FixedSizeListArray.from_arrays(values, dim)], schema=embeddings_schema(dim))


def arrays_from_table(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """An embeddings table -> (rows [n] int64, vectors [n, D] float16)."""
    column = table.column("embedding").combine_chunks()
    dim = column.type.list_size
    vectors = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)  # [n, D]
    return table.column("row").to_numpy(), vectors


def shard_bounds(n_rows: int, shard_rows: int) -> list[tuple[int, int, int]]:
    """(shard index, first row, end row) of every shard of a table of n_rows."""
    return [(i, start, min(start + shard_rows, n_rows)) for i, start in enumerate(range(0, n_rows, shard_rows))]


def embed_corpus(ctx: StageContext, docs: DocStore, encoder: DenseEncoder, shard_rows: int) -> StageResult:
    """The EMBED stage: every DocStore row -> an fp16 unit vector, in shards of `shard_rows` passages.

    Resumes after a crash: shards already on disk are kept and only the others are encoded. A finished
    shard is written in a background thread while the next one is encoded (one write in flight at most).
    """
    from s3core.store import StageResult  # not at the top: bench/gpu_dense.py runs this module without the store

    if shard_rows < 1:
        raise ValueError(f"shard_rows must be positive (got {shard_rows})")
    writer = ctx.table_writer()
    finished = writer.finished_shards()
    shards = shard_bounds(len(docs), shard_rows)
    todo = [shard for shard in shards if shard[0] not in finished]
    done = len(docs) - sum(end - start for _, start, end in todo)
    if done:
        log.info("%s: resuming, %d of %d shards already written", ctx.stage, len(shards) - len(todo), len(shards))
    started, encoded = time.perf_counter(), 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed-write") as pool:
        writing: Future | None = None
        for index, start, end in todo:
            chunk = docs.table.slice(start, end - start)
            vectors = encoder.encode_passages(chunk.column("title").to_pylist(), chunk.column("text").to_pylist())
            if writing is not None:
                writing.result()  # surfaces a failed write before more work is done
            table = embedding_table(start, vectors)
            writing = pool.submit(writer.write_shard, index, table, {"passages": end - start})
            encoded += end - start
            rate = encoded / max(time.perf_counter() - started, 1e-9)
            message = f"embedded {done + encoded:,}/{len(docs):,} passages, {rate:,.0f} passages/s"
            ctx.progress(done + encoded, len(docs), message)
        if writing is not None:
            writing.result()
    seconds = time.perf_counter() - started
    stats = {**encoder.describe(), "resumed_shards": len(shards) - len(todo), "written_shards": len(todo),
             "encoded_passages": encoded}
    return StageResult(stats=stats, timings={"encode_s": round(seconds, 3)})


# ======================================================================================================
# index stage: embedding shards -> faiss index directory
# ======================================================================================================
class IndexType(str, Enum):
    FLAT = "flat"
    HNSW = "hnsw"
    IVFPQ = "ivfpq"


def index_type_from_name(name: str | IndexType) -> IndexType:
    try:
        return IndexType(name)
    except ValueError:
        raise ValueError(f"unknown index_type {name!r}; valid names: {', '.join(t.value for t in IndexType)}") from None


@dataclass(frozen=True)
class IndexParams:
    """Build and search settings of the approximate indexes (flat has none)."""

    hnsw_m: int = 32  # neighbours per HNSW node
    ef_construction: int = 200
    ef_search: int = 128
    nlist: int | None = None  # IVF cells; None: 4 * sqrt(N), clamped to [1, max_nlist] and to the data
    max_nlist: int = 65536
    pq_m: int | None = None  # PQ sub-vectors (bytes per code at 8 bits); None: see pq_code_size
    pq_bits: int = 8
    nprobe: int = 64  # IVF cells visited per query
    train_size: int | None = None  # IVF-PQ training sample; None: max(50 * nlist, 20,000), at most N
    seed: int = 0


@dataclass(frozen=True)
class IvfpqShape:
    nlist: int
    pq_m: int
    pq_bits: int
    train_size: int
    clamped: tuple[str, ...]  # what was reduced to fit the data, in words


def pq_code_size(dim: int) -> int:
    """Largest faiss-gpu-compatible number of PQ sub-vectors dividing dim with >= 8 dims each (768 -> 96)."""
    fitting = [m for m in GPU_PQ_CODE_SIZES if dim % m == 0 and m <= max(1, dim // 8)]
    if fitting:
        return max(fitting)
    return max(m for m in range(1, max(1, dim // 8) + 1) if dim % m == 0)


def ivfpq_shape(n: int, dim: int, params: IndexParams) -> IvfpqShape:
    """nlist, PQ size and training sample for n vectors, each clamped to what n allows."""
    clamped: list[str] = []
    wanted_nlist = params.nlist or round(4 * math.sqrt(n))
    nlist = max(1, min(wanted_nlist, params.max_nlist, n // MIN_POINTS_PER_CENTROID))
    if nlist != wanted_nlist:
        clamped.append(f"nlist {wanted_nlist} -> {nlist} ({n} vectors, >= {MIN_POINTS_PER_CENTROID} per cell, "
                       f"max {params.max_nlist})")
    train_size = min(n, params.train_size or max(50 * nlist, 20_000))
    pq_m = params.pq_m or pq_code_size(dim)
    if dim % pq_m:
        raise ValueError(f"pq_m={pq_m} does not divide the embedding dim {dim}; choose a divisor of {dim}")
    if train_size < 2:
        raise ValueError(f"an IVF-PQ index needs at least 2 vectors (got {n}); use index_type 'flat'")
    pq_bits = min(params.pq_bits, int(math.log2(train_size)))
    if pq_bits != params.pq_bits:
        clamped.append(f"pq_bits {params.pq_bits} -> {pq_bits} ({train_size} training vectors < "
                       f"2^{params.pq_bits} centroids)")
    return IvfpqShape(nlist, pq_m, pq_bits, train_size, tuple(clamped))


def iter_embedding_shards(store: ArtifactStore, embeddings: Manifest) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, [n, D] float32 vectors) per shard, checking that rows run 0, 1, 2, ... without gaps."""
    expected = 0
    for table in store.iter_table(embeddings):
        rows, vectors = arrays_from_table(table)
        if len(rows) and not np.array_equal(rows, np.arange(expected, expected + len(rows))):
            raise ValueError(
                f"embeddings {embeddings.stage}/{embeddings.key}: rows do not run from {expected} in shard order; "
                "delete the artifact and re-run the embed stage"
            )
        yield expected, vectors.astype(np.float32)
        expected += len(rows)


def training_sample(store: ArtifactStore, embeddings: Manifest, n: int, size: int, seed: int) -> np.ndarray:
    """[size, D] float32 vectors at seeded random rows (all rows when size >= n), in row order."""
    picked = np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False)) if size < n else np.arange(n)
    parts = []
    for first, vectors in iter_embedding_shards(store, embeddings):
        inside = picked[(picked >= first) & (picked < first + len(vectors))]
        parts.append(vectors[inside - first])
    return np.concatenate(parts)


Sampler = Callable[[int], np.ndarray]  # size -> [size, D] float32 training vectors


def _new_flat(dim: int, n: int, params: IndexParams, sample: Sampler) -> tuple[Any, dict[str, Any]]:
    import faiss

    return faiss.IndexFlatIP(dim), {}


def _new_hnsw(dim: int, n: int, params: IndexParams, sample: Sampler) -> tuple[Any, dict[str, Any]]:
    import faiss

    index = faiss.IndexHNSWFlat(dim, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = params.ef_construction
    index.hnsw.efSearch = params.ef_search
    return index, {"hnsw_m": params.hnsw_m, "ef_construction": params.ef_construction, "ef_search": params.ef_search}


def _new_ivfpq(dim: int, n: int, params: IndexParams, sample: Sampler) -> tuple[Any, dict[str, Any]]:
    import faiss

    shape = ivfpq_shape(n, dim, params)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFPQ(quantizer, dim, shape.nlist, shape.pq_m, shape.pq_bits, faiss.METRIC_INNER_PRODUCT)
    index.train(sample(shape.train_size))
    index.nprobe = min(params.nprobe, shape.nlist)
    info = {"nlist": shape.nlist, "pq_m": shape.pq_m, "pq_bits": shape.pq_bits, "train_size": shape.train_size,
            "nprobe": index.nprobe, "clamped": list(shape.clamped)}
    return index, info


INDEX_BUILDERS = {IndexType.FLAT: _new_flat, IndexType.HNSW: _new_hnsw, IndexType.IVFPQ: _new_ivfpq}


def build_dense_index(
    ctx: StageContext, embeddings: Manifest, cfg: DenseRetrievalConfig, params: IndexParams | None = None
) -> StageResult:
    """The INDEX stage: the embeddings artifact -> a directory with index.faiss and meta.json."""
    import faiss

    from s3core.store import StageResult  # not at the top: bench/gpu_dense.py runs this module without the store

    params = params or IndexParams()
    index_type = index_type_from_name(cfg.index_type)
    check_embeddings_match(embeddings, cfg)
    n, dim = embeddings.row_count or 0, embedding_dim(embeddings)
    if n == 0:
        raise ValueError(f"embeddings {embeddings.stage}/{embeddings.key} hold no rows; the corpus is empty")
    started = time.perf_counter()
    sample = lambda size: training_sample(ctx.store, embeddings, n, size, params.seed)  # noqa: E731
    index, info = INDEX_BUILDERS[index_type](dim, n, params, sample)
    trained = time.perf_counter()
    for first, vectors in iter_embedding_shards(ctx.store, embeddings):
        index.add(vectors)
        ctx.progress(first + len(vectors), n, f"{index_type.value} index: {first + len(vectors):,}/{n:,} vectors")
    staging = ctx.staging_dir()
    faiss.write_index(index, str(staging / INDEX_FILE))
    meta = index_meta(index_type, dim, n, cfg, info, embeddings.content_hash, faiss.__version__)
    (staging / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    timings = {"train_s": round(trained - started, 3), "add_s": round(time.perf_counter() - trained, 3)}
    return StageResult(stats={"index_type": index_type.value, "n": n, "dim": dim, **info}, timings=timings,
                       staging_dir=staging)


def embedding_dim(embeddings: Manifest) -> int:
    """D of an embeddings artifact, from its schema ('fixed_size_list<element: halffloat>[D]')."""
    type_text = (embeddings.schema_ or {}).get("embedding", "")
    if not type_text.endswith("]") or "[" not in type_text:
        raise ValueError(f"{embeddings.stage}/{embeddings.key} is not an embeddings artifact "
                         f"(embedding column: {type_text!r})")
    return int(type_text.rsplit("[", 1)[1][:-1])


ENCODER_FIELDS = ("pooling", "query_prefix", "passage_prefix", "max_length")


def check_embeddings_match(embeddings: Manifest, cfg: DenseRetrievalConfig) -> None:
    """The embed stage's recorded encoder settings must be the ones the index will be searched with."""
    recorded = {name: embeddings.stats[name] for name in ENCODER_FIELDS if name in embeddings.stats}
    wanted = {name: getattr(cfg, name) for name in recorded}
    if recorded != wanted:
        raise ValueError(
            f"embeddings {embeddings.stage}/{embeddings.key} were made with {recorded}, the config says {wanted}; "
            "re-run the embed stage with this retrieval.dense config"
        )


def index_meta(index_type: IndexType, dim: int, n: int, cfg: DenseRetrievalConfig, info: dict[str, Any],
               embeddings_hash: str, faiss_version: str) -> dict[str, Any]:
    return {
        "format": INDEX_FORMAT, "index_type": index_type.value, "metric": "inner_product", "dim": dim, "n": n,
        "encoder": cfg.encoder, "pooling": cfg.pooling, "query_prefix": cfg.query_prefix,
        "passage_prefix": cfg.passage_prefix, "max_length": cfg.max_length, "row_mapping": ROW_MAPPING,
        "params": info, "embeddings_content_hash": embeddings_hash, "faiss_version": faiss_version,
    }


def read_index_meta(index_dir: str | Path) -> dict[str, Any]:
    path = Path(index_dir) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {index_dir} is not a dense index; run the index stage")
    meta = json.loads(path.read_text(encoding="utf-8"))
    if meta.get("format") != INDEX_FORMAT:
        raise ValueError(f"{path}: format {meta.get('format')!r}, expected {INDEX_FORMAT!r}; rebuild the index")
    return meta


# ======================================================================================================
# search backends
# ======================================================================================================
class Backend(str, Enum):
    """What a caller asks for."""

    AUTO = "auto"
    FAISS = "faiss"
    TORCH = "torch"


class Engine(str, Enum):
    """What actually runs."""

    FAISS_GPU = "faiss-gpu"
    FAISS_CPU = "faiss-cpu"
    TORCH = "torch"


class VectorSearcher(Protocol):
    engine: Engine

    def search(self, queries: np.ndarray, topk: int) -> tuple[np.ndarray, np.ndarray]:
        """[Q, D] float32 queries -> (scores [Q, k] float32, rows [Q, k] int64), best first; -1 rows pad."""
        ...


def backend_from_name(name: str | Backend) -> Backend:
    try:
        return Backend(name)
    except ValueError:
        raise ValueError(f"unknown backend {name!r}; valid names: {', '.join(b.value for b in Backend)}") from None


def faiss_gpus() -> int:
    """GPUs faiss can use: 0 without faiss or with faiss-cpu."""
    try:
        import faiss
    except ImportError:
        return 0
    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def choose_engine(backend: str | Backend, index_type: IndexType, device: str | None) -> Engine:
    """auto: faiss-gpu > torch on CUDA (flat only) > faiss-cpu > torch on CPU (flat, no faiss installed)."""
    backend = backend_from_name(backend)
    allow_gpu = device != "cpu"
    exact = index_type == IndexType.FLAT
    if backend == Backend.TORCH:
        if not exact:
            raise ValueError(f"the torch backend searches flat indexes exactly; this index is {index_type.value}: "
                             "use backend 'faiss' or 'auto', or build index_type 'flat'")
        return Engine.TORCH
    if backend == Backend.FAISS and not faiss_available():
        raise ImportError("backend 'faiss' needs faiss: install faiss-cpu (or faiss-gpu-cu12), or use backend 'torch'")
    gpu_capable = index_type != IndexType.HNSW  # faiss has no GPU HNSW
    if allow_gpu and gpu_capable and faiss_gpus() > 0:
        return Engine.FAISS_GPU
    if backend == Backend.AUTO and exact and allow_gpu and torch.cuda.is_available():
        return Engine.TORCH
    if faiss_available():
        return Engine.FAISS_CPU
    if exact:
        return Engine.TORCH
    raise ImportError(f"searching a {index_type.value} index needs faiss: install faiss-cpu")


class FaissSearcher:
    """A faiss index, on the CPU or cloned onto every GPU (sharded, fp16 storage)."""

    def __init__(self, index: Any, engine: Engine):
        self.index = index
        self.engine = engine

    @classmethod
    def on_engine(cls, index: Any, engine: Engine) -> FaissSearcher:
        return cls(to_all_gpus(index) if engine == Engine.FAISS_GPU else index, engine)

    def search(self, queries: np.ndarray, topk: int) -> tuple[np.ndarray, np.ndarray]:
        scores, rows = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), topk)  # [Q, k] each
        return scores, rows.astype(np.int64, copy=False)


def to_all_gpus(index: Any) -> Any:
    """Shard a CPU index over every GPU faiss sees; fp16 storage (exact for our fp16 embeddings)."""
    import faiss

    options = faiss.GpuMultipleClonerOptions()
    options.shard = True
    options.useFloat16 = True  # flat: fp16 vectors; IVFPQ: fp16 lookup tables (needed above 48 bytes/code)
    return faiss.index_cpu_to_all_gpus(index, co=options)


def torch_search_dtype(device: torch.device) -> torch.dtype:
    """fp16 on CUDA (the design's measured setting); float32 on CPU, where fp16 matmul is slow."""
    return torch.float16 if device.type == "cuda" else torch.float32


class TorchFlatSearcher:
    """Exact inner-product top-k with torch.matmul + torch.topk, chunked over the corpus to bound memory."""

    engine = Engine.TORCH

    def __init__(self, matrix: torch.Tensor, score_budget_bytes: int = TORCH_SCORE_BUDGET_BYTES):
        self.matrix = matrix  # [N, D]
        self.score_budget_bytes = score_budget_bytes

    @classmethod
    def from_array(cls, matrix: np.ndarray | torch.Tensor, device: str | torch.device | None = None,
                   chunk_rows: int = 1 << 20) -> TorchFlatSearcher:
        """Copy an [N, D] array (a memory map is fine) to the device in chunks, as fp16 on CUDA."""
        if isinstance(matrix, torch.Tensor) and device is None:
            return cls(matrix)
        target = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch_search_dtype(target)
        if isinstance(matrix, torch.Tensor):
            return cls(matrix.to(target, dtype))
        out = torch.empty(matrix.shape, dtype=dtype, device=target)  # [N, D]
        for start in range(0, matrix.shape[0], chunk_rows):
            block = np.array(matrix[start:start + chunk_rows], copy=True)  # [C, D], writable even from a memmap
            out[start:start + len(block)] = torch.from_numpy(block).to(target, dtype)
        return cls(out)

    def search(self, queries: np.ndarray | torch.Tensor, topk: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(topk, self.matrix.shape[0])
        blocks = [self._search_block(q, k) for q in torch.as_tensor(queries).split(TORCH_QUERY_BLOCK)]
        scores = torch.cat([s for s, _ in blocks]) if blocks else torch.empty(0, k)
        rows = torch.cat([r for _, r in blocks]) if blocks else torch.empty(0, k, dtype=torch.int64)
        return scores.float().cpu().numpy(), rows.cpu().numpy()

    @torch.inference_mode()
    def _search_block(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        q = queries.to(self.matrix.device, self.matrix.dtype)  # [Q, D]
        chunk = max(k, self.score_budget_bytes // (q.shape[0] * self.matrix.element_size()))
        best_scores = best_rows = None
        for start in range(0, self.matrix.shape[0], chunk):
            scores = q @ self.matrix[start:start + chunk].T  # [Q, C]
            top_scores, top_rows = scores.topk(min(k, scores.shape[1]), dim=1)  # [Q, k'] each
            top_rows += start
            if best_scores is not None:
                top_scores, top_rows = merge_topk(best_scores, best_rows, top_scores, top_rows, k)
            best_scores, best_rows = top_scores, top_rows
        return best_scores, best_rows


def merge_topk(scores_a: torch.Tensor, rows_a: torch.Tensor, scores_b: torch.Tensor, rows_b: torch.Tensor,
               k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Best k of two candidate lists: [Q, a] + [Q, b] -> [Q, k] scores and rows."""
    scores = torch.cat([scores_a, scores_b], dim=1)  # [Q, a + b]
    rows = torch.cat([rows_a, rows_b], dim=1)  # [Q, a + b]
    top_scores, where = scores.topk(min(k, scores.shape[1]), dim=1)  # [Q, k]
    return top_scores, rows.gather(1, where)  # [Q, k]


def search_embeddings(matrix: np.ndarray | torch.Tensor, queries: np.ndarray | torch.Tensor, topk: int,
                      backend: str | Backend = "auto", device: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k of queries [Q, D] over matrix [N, D] -> (scores [Q, k], rows [Q, k]).

    One-off helper (tests, benchmarks): a torch tensor already on the device is searched in place; anything
    else is copied for this call. Keep a `TorchFlatSearcher` or `DenseRetriever` for repeated searches.
    """
    engine = choose_engine(backend, IndexType.FLAT, device)
    if engine == Engine.TORCH:
        return TorchFlatSearcher.from_array(matrix, device).search(queries, topk)
    import faiss

    vectors = matrix.float().cpu().numpy() if isinstance(matrix, torch.Tensor) else matrix
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    query_array = queries.float().cpu().numpy() if isinstance(queries, torch.Tensor) else queries
    return FaissSearcher.on_engine(index, engine).search(query_array, topk)


# -- reading a flat index without faiss ------------------------------------------------------------------
FLAT_IP_FOURCC = b"IxFI"
# faiss write_index for IndexFlatIP: fourcc, d (int32), ntotal (int64), two reserved int64, is_trained (1 byte),
# metric_type (int32), then the code vector: its length in floats (uint64) and the float32 values.
FLAT_HEADER = np.dtype([("fourcc", "S4"), ("d", "<i4"), ("ntotal", "<i8"), ("reserved", "<i8", 2),
                        ("is_trained", "u1"), ("metric", "<i4"), ("n_floats", "<u8")])


def read_flat_vectors(path: str | Path) -> np.ndarray:
    """The [N, D] float32 vectors of a faiss IndexFlatIP file, memory-mapped (no faiss needed)."""
    header = np.fromfile(path, dtype=FLAT_HEADER, count=1)[0]
    n, dim = int(header["ntotal"]), int(header["d"])
    if header["fourcc"] != FLAT_IP_FOURCC or int(header["n_floats"]) != n * dim:
        raise ValueError(f"{path} is not a faiss IndexFlatIP file this reader knows; search it with backend 'faiss'")
    return np.memmap(path, dtype=np.float32, mode="r", offset=FLAT_HEADER.itemsize, shape=(n, dim))


def open_searcher(index_dir: Path, meta: dict[str, Any], engine: Engine, device: str | None,
                  ef_search: int | None, nprobe: int | None) -> VectorSearcher:
    if engine == Engine.TORCH:
        return TorchFlatSearcher.from_array(read_flat_vectors(index_dir / INDEX_FILE), device)
    import faiss

    index = faiss.read_index(str(index_dir / INDEX_FILE))
    if ef_search is not None and meta["index_type"] == IndexType.HNSW.value:
        index.hnsw.efSearch = ef_search
    if nprobe is not None and meta["index_type"] == IndexType.IVFPQ.value:
        index.nprobe = nprobe
    return FaissSearcher.on_engine(index, engine)


# ======================================================================================================
# the retriever
# ======================================================================================================
def check_encoder_matches(meta: dict[str, Any], encoder: DenseEncoder) -> None:
    """Queries must be encoded the way the passages were: same pooling, prefixes, length and width."""
    ours = encoder.describe()
    different = {name: (meta[name], ours[name]) for name in (*ENCODER_FIELDS, "dim") if meta.get(name) != ours[name]}
    if different:
        details = ", ".join(f"{name}: index {a!r} vs encoder {b!r}" for name, (a, b) in different.items())
        raise ValueError(f"the encoder does not match the index ({details}); build the encoder from the "
                         "retrieval.dense config the index was built with")


class DenseRetriever:
    """Retriever (s3core.retrieval.base) over a dense index directory: encode queries, then search."""

    name = "dense"

    def __init__(self, encoder: DenseEncoder, searcher: VectorSearcher, meta: dict[str, Any]):
        self.encoder = encoder
        self.searcher = searcher
        self.meta = meta

    @classmethod
    def load(cls, index_dir: str | Path, encoder: DenseEncoder, device: str | None = None,
             backend: str | Backend = "auto", ef_search: int | None = None, nprobe: int | None = None) -> DenseRetriever:
        """`index_dir` = ArtifactStore.local_dir(index manifest); `device` None = auto, "cpu" keeps search on CPU."""
        index_dir = Path(index_dir)
        meta = read_index_meta(index_dir)
        check_encoder_matches(meta, encoder)
        engine = choose_engine(backend, index_type_from_name(meta["index_type"]), device)
        searcher = open_searcher(index_dir, meta, engine, device, ef_search, nprobe)
        log.info("dense retriever: %s index of %d vectors on %s", meta["index_type"], meta["n"], engine.value)
        return cls(encoder, searcher, meta)

    @property
    def engine(self) -> Engine:
        return self.searcher.engine

    def search(self, queries: Sequence[str], topk: int) -> list[list[SearchHit]]:
        from s3core.retrieval.base import (
            hits_from_arrays,  # not at the top: bench/gpu_dense.py runs this module without the store
        )

        if not queries:
            return []
        vectors = self.encoder.encode_queries(list(queries))  # [Q, D]
        scores, rows = self.searcher.search(vectors, topk)  # [Q, k] each
        return hits_from_arrays(scores, rows)

