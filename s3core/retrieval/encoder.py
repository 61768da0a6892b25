"""The dense encoder: texts -> L2-normalised embeddings, as e5-base-v2 is used in s3 (DESIGN.md section 2).

Queries are encoded as `query_prefix + question`, passages as `passage_prefix + '"Title"\\ntext'` (the wiki-18
`contents` string, as FlashRAG and Search-R1 encode it), truncated at `max_length` tokens, then pooled
(mean over the attention mask, or the [CLS] vector) and L2-normalised, so inner product = cosine.

How this differs from the usual encode loop (FlashRAG's `Encoder.encode`), and why:
- tokenisation runs in a background thread while the model works on the previous batch (and pins the
  batch's memory on CUDA), and the device-to-host copy of batch i is only waited for after batch i+1 is
  queued, so the GPU never waits for the CPU between batches (`iter_encode`);
- fast tokenizers are called through their Rust `tokenizers.Tokenizer` (`encode_batch_fast`, which runs
  without the GIL) and padded with numpy, not through `tokenizer(...)`. Measured on an H100 machine with
  bench/gpu_dense.py (BERT-base, ~150-token passages, batch 512): the transformers wrapper tokenised ~3,200
  passages/s (Python-side list and tensor building under the GIL, so more threads did not help) and held
  the pipeline to ~3,400 passages/s; the Rust path tokenises ~11,300/s and the pipeline reaches ~9,600/s,
  0.92 of the model alone on the same batches. Ids and masks equal the wrapper's (tests/test_dense.py);
  slow (Python-only) tokenizers still go through the wrapper;
- `encode_texts` sorts its inputs by length before cutting batches and puts the results back in input order:
  batches pad to their longest member, so sorting removes most padding. The embeddings are the same up to
  float rounding; for a fixed input list and batch size they are bit-identical from run to run;
- pooling runs in float32 whatever the model's dtype; fp16/bf16 are used only on CUDA (CPU half-precision
  matmuls are slow or missing), with a log line when a CPU run falls back to float32.

This module imports only torch, transformers, numpy and s3core.models.pooling (no s3core.store), so `bench/gpu_dense.py` runs it on
machines that have nothing else.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import torch
from tokenizers import Tokenizer
from transformers import AutoModel, AutoTokenizer

from s3core.models.pooling import embed_hidden, passage_input, pooling_from_name

if TYPE_CHECKING:
    from s3core.config.schema import DenseRetrievalConfig

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
TokenBatch = dict[str, torch.Tensor]  # input_ids / attention_mask / token_type_ids, each [B, T]

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def length_order(texts: Sequence[str]) -> np.ndarray:
    """Positions of texts from longest to shortest (stable), so batches pad little; OOM shows up first."""
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    return np.argsort(-lengths, kind="stable")


def pad_batch(id_lists: Sequence[Sequence[int]], pad_id: int, multiple: int | None = None,
              left: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Token id lists -> (ids [B, T], attention mask [B, T]) int64, T = longest rounded up to `multiple`."""
    lengths = np.fromiter((len(ids) for ids in id_lists), dtype=np.int64, count=len(id_lists))  # [B]
    width = int(lengths.max(initial=1))
    if multiple:
        width = -(-width // multiple) * multiple
    positions = np.arange(width)  # [T]
    mask = positions >= width - lengths[:, None] if left else positions < lengths[:, None]  # [B, T]
    ids = np.full((len(id_lists), width), pad_id, dtype=np.int64)  # [B, T]
    ids[mask] = np.fromiter(itertools.chain.from_iterable(id_lists), dtype=np.int64, count=int(lengths.sum()))
    return ids, mask.astype(np.int64)


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def prefetch_map(fn: Callable[[T], R], items: Iterable[T], pool: ThreadPoolExecutor, depth: int) -> Iterator[R]:
    """fn(item) for each item, computed in `pool` up to `depth` items ahead of the consumer, yielded in order."""
    iterator = iter(items)
    pending = deque(pool.submit(fn, item) for item in itertools.islice(iterator, depth))
    try:
        while pending:
            result = pending.popleft().result()
            for item in itertools.islice(iterator, 1):
                pending.append(pool.submit(fn, item))
            yield result
    finally:
        for future in pending:  # consumer stopped early or fn raised: drop work nobody will read
            future.cancel()


# -- devices -------------------------------------------------------------------------------------------
def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype not in TORCH_DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; valid names: {', '.join(TORCH_DTYPES)}")
    if device.type != "cuda" and dtype != "float32":
        log.info("dense encoder: %s requested on %s; using float32 (half precision only on CUDA)", dtype, device)
        return torch.float32
    return TORCH_DTYPES[dtype]


class _HostCopy:
    """A device tensor on its way to host memory: copy queued now, waited for in `numpy()`."""

    def __init__(self, tensor: torch.Tensor):
        if tensor.device.type == "cuda":
            self.host = tensor.to("cpu", non_blocking=True)  # pinned destination, asynchronous
            self.event: torch.cuda.Event | None = torch.cuda.Event()
            self.event.record()
        else:
            self.host, self.event = tensor, None

    def numpy(self) -> np.ndarray:
        if self.event is not None:
            self.event.synchronize()
        return self.host.numpy()


# -- the encoder ---------------------------------------------------------------------------------------
class DenseEncoder:
    """A Hugging Face encoder (AutoModel + AutoTokenizer) that turns texts into unit vectors.

    `model` is a local folder or a hub name (HF_HUB_OFFLINE is honoured by transformers itself).
    Thread-safe: each tokeniser thread has its own copy of the Rust tokenizer, and the model only runs
    forward passes.
    """

    def __init__(
        self,
        model: str,
        pooling: str = "mean",
        max_length: int = 256,
        query_prefix: str = "",
        passage_prefix: str = "",
        device: str | torch.device | None = None,
        dtype: str = "float32",
        batch_size: int = 64,
        tokenizer_threads: int = 1,
    ):
        if batch_size < 1 or max_length < 1 or tokenizer_threads < 1:
            raise ValueError("batch_size, max_length and tokenizer_threads must be positive")
        self.name = str(model)
        self.pooling = pooling_from_name(pooling)
        self.max_length = max_length
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self.batch_size = batch_size
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.tokenizer = AutoTokenizer.from_pretrained(self.name)
        self.model = AutoModel.from_pretrained(self.name, dtype=self.dtype).to(self.device).eval()
        self._local = threading.local()
        self._wrapper_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=tokenizer_threads, thread_name_prefix="dense-tokenize")
        self._prefetch_depth = tokenizer_threads + 1  # tokenised batches kept ready ahead of the model
        self._pad_multiple = 8 if self.device.type == "cuda" else None  # tensor-core friendly shapes

    @classmethod
    def from_config(
        cls, cfg: DenseRetrievalConfig, model_path: str, device: str | torch.device | None = None
    ) -> DenseEncoder:
        """From a retrieval.dense config; `model_path` = resolve_model_path(cfg.encoder, tiny_models_dir)."""
        return cls(model_path, pooling=cfg.pooling, max_length=cfg.max_length, query_prefix=cfg.query_prefix,
                   passage_prefix=cfg.passage_prefix, device=device, dtype=cfg.dtype, batch_size=cfg.batch_size)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def describe(self) -> dict[str, object]:
        """What an index must agree with to be searched by this encoder."""
        return {"encoder": self.name, "pooling": self.pooling.value, "query_prefix": self.query_prefix,
                "passage_prefix": self.passage_prefix, "max_length": self.max_length, "dim": self.dim}

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    # -- public encoding -----------------------------------------------------------------------------
    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """[N] questions -> [N, D] float32 unit vectors, each input prefixed with query_prefix."""
        return self.encode_texts([self.query_prefix + text for text in texts])

    def encode_passages(self, titles: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        """[N] passages -> [N, D] float32 unit vectors of passage_prefix + '"title"\\ntext'."""
        if len(titles) != len(texts):
            raise ValueError(f"{len(titles)} titles but {len(texts)} texts; pass one title per passage")
        return self.encode_texts([passage_input(t, x, self.passage_prefix) for t, x in zip(titles, texts)])

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """[N] ready-made inputs -> [N, D] float32, batched longest first, returned in input order."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)  # [N, D]
        positions = list(batched(length_order(texts), self.batch_size))  # row positions of each batch
        for rows, vectors in zip(positions, self.iter_encode([texts[i] for i in rows] for rows in positions)):
            out[rows] = vectors  # [B, D]
        return out

    def iter_encode(self, batches: Iterable[Sequence[str]]) -> Iterator[np.ndarray]:
        """[B_i, D] float32 embeddings per batch of ready-made inputs, in order.

        Batch i+1 is tokenised (and pinned on CUDA) in a background thread while batch i runs, and batch i's
        result is fetched only once batch i+1 is queued on the device.
        """
        in_flight: _HostCopy | None = None
        for tokens in prefetch_map(self.tokenize, batches, self._pool, self._prefetch_depth):
            queued = _HostCopy(self.embed_tokens(tokens))  # [B, D]
            if in_flight is not None:
                yield in_flight.numpy()
            in_flight = queued
        if in_flight is not None:
            yield in_flight.numpy()

    # -- the two steps of a batch (public for benchmarks) ------------------------------------------
    def _thread_tokenizer(self) -> Tokenizer | None:
        """This thread's own Rust tokenizer (truncating, not padding), or None for a slow tokenizer."""
        if not self.tokenizer.is_fast:
            return None
        if not hasattr(self._local, "tokenizer"):
            rust = Tokenizer.from_str(self.tokenizer.backend_tokenizer.to_str())
            rust.no_padding()
            rust.enable_truncation(self.max_length, direction=self.tokenizer.truncation_side)
            self._local.tokenizer = rust
        return self._local.tokenizer

    def tokenize(self, texts: Sequence[str]) -> TokenBatch:
        """Ready-made inputs -> padded, truncated id and mask tensors [B, T] (pinned on CUDA)."""
        rust = self._thread_tokenizer()
        if rust is None:
            tokens = self._tokenize_with_wrapper(texts)
        else:
            encodings = rust.encode_batch_fast(list(texts))  # Rust, parallel, GIL released
            ids, mask = pad_batch([e.ids for e in encodings], self.tokenizer.pad_token_id, self._pad_multiple,
                                  left=self.tokenizer.padding_side == "left")  # [B, T] each
            tokens = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
            if "token_type_ids" in self.tokenizer.model_input_names:
                tokens["token_type_ids"] = torch.zeros_like(tokens["input_ids"])  # one segment per input
        if self.device.type == "cuda":
            tokens = {name: tensor.pin_memory() for name, tensor in tokens.items()}
        return tokens

    def _tokenize_with_wrapper(self, texts: Sequence[str]) -> TokenBatch:
        """The transformers call, for tokenizers without a Rust backend (serialised: they are not thread-safe)."""
        with self._wrapper_lock:
            encoded = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                                     pad_to_multiple_of=self._pad_multiple, return_tensors="pt")
        return dict(encoded.items())  # each [B, T]

    @torch.inference_mode()
    def embed_tokens(self, tokens: TokenBatch) -> torch.Tensor:
        """One batch through the model, pooled and normalised: [B, T] tensors -> [B, D] on the device."""
        inputs = {name: tensor.to(self.device, non_blocking=True) for name, tensor in tokens.items()}  # [B, T]
        hidden = self.model(**inputs).last_hidden_state  # [B, T, H]
        return embed_hidden(hidden, inputs["attention_mask"], self.pooling)  # [B, H]
