"""Dense retrieval on a GPU: encoding throughput and exact flat search, against the design's measured ceilings.

    python bench/gpu_dense.py                       # GPU machine: 1M passages, 21M x 768 corpus (~32 GB fp16)
    python bench/gpu_dense.py --smoke               # any CPU, tiny sizes, < 30 s: proves the script runs

Measures, in one run (DESIGN.md section 6 gives the ceilings measured on one H100):
  encode end-to-end   s3core DenseEncoder.encode_passages over synthetic ~100-word passages, tokenisation
                      included, in shards as the embed stage calls it: BERT-base shape (hidden 768, 12
                      layers, 12 heads, intermediate 3072, vocab 30522), random init, max_length 256, fp16
  model-only, same    the model alone on the end-to-end run's own batches, tokenised beforehand: the GPU's
                      ceiling for this data, which says how much the pipeline around the model costs
  model-only, fixed   the model alone on random ids padded to exactly max_length: the design's setting
  search batch 1/512  s3core's torch backend (fp16 matmul + topk, corpus chunked) over random unit vectors
                      of dim 768, top-10; results copied back to the host inside the timed region.
                      faiss is measured too when it is installed (the GPU machines have none)
Design ceilings: 8,616 passages/s encoding at 256 tokens; ~5,000 queries/s at batch 512 and 12 ms for one
query over 21M vectors. When --corpus-vectors is not 21M the search ceilings are scaled linearly (marked *).

Measured on one H100 80GB (torch 2.11 + CUDA 13, transformers 5.17, default sizes): encoding 9,634 passages/s
end to end (1.12 of the design's 8,616; 0.92 of the model alone on the same batches, 10,491/s; the model at
exactly 256 tokens: 8,069/s, 0.94); search 11.6 ms for one query (design 12 ms) and 4,905 queries/s at
batch 512 (design ~5,000) over 21M x 768 fp16.

Only torch, transformers, tokenizers, numpy and pyarrow are needed (the GPU machines have nothing else);
the model and a WordPiece tokenizer trained on the synthetic text are built in a temporary folder.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the GPU machines run a bare copy of the checkout, with nothing installed

from s3core.retrieval.dense import TorchFlatSearcher, faiss_available, faiss_gpus  # noqa: E402
from s3core.retrieval.encoder import DenseEncoder, batched, length_order, passage_input  # noqa: E402

DESIGN_PASSAGES_PER_S = 8616.0
DESIGN_QPS_BATCH_512 = 5000.0
DESIGN_MS_ONE_QUERY = 12.0
DESIGN_CORPUS = 21_000_000
TOPK = 10
FAISS_CPU_MAX_VECTORS = 1_000_000  # faiss-cpu over more takes minutes per batch: skipped


@dataclass(frozen=True)
class ModelShape:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int = 30522


BERT_BASE = ModelShape(hidden=768, layers=12, heads=12, intermediate=3072)
SMOKE_MODEL = ModelShape(hidden=128, layers=2, heads=2, intermediate=256)


@dataclass
class Row:
    what: str
    value: float
    unit: str
    ceiling: float | None = None
    note: str = ""


# -- synthetic data ----------------------------------------------------------------------------------------
def make_lexicon(rng: np.random.Generator, size: int) -> list[str]:
    """Pronounceable pseudo-words of 1-4 syllables."""
    syllables = [o + v + c for o in [*"bdfghklmnprstvz", "st", "tr", "ch", "sh", "br", "gl"]
                 for v in ("a", "e", "i", "o", "u", "ai", "ou", "ea") for c in ("", "n", "r", "l", "s", "th", "m", "nd", "x")]
    words: set[str] = set()
    while len(words) < size:
        picks = rng.integers(0, len(syllables), size=(size, 4))
        counts = rng.integers(1, 5, size=size)
        words.update("".join(syllables[i] for i in row[:n]) for row, n in zip(picks, counts))
    return [str(w) for w in rng.permutation(sorted(words))[:size]]  # frequency rank independent of spelling


def make_passages(n: int, seed: int = 0, unique: int = 200_000, lexicon_size: int = 40_000) -> tuple[list[str], list[str]]:
    """n (title, text) pairs, texts of ~100 Zipf-distributed words with commas and full stops; at most
    `unique` distinct passages, repeated to reach n (tokenising a repeat costs the same)."""
    rng = np.random.default_rng(seed)
    lexicon = make_lexicon(rng, lexicon_size)
    spelled = [w + mark for mark in ("", ",", ".") for w in lexicon]  # word i with mark j at j * L + i
    weights = 1.0 / np.arange(1, len(lexicon) + 1) ** 1.05
    distinct = min(n, unique)
    lengths = np.clip(rng.normal(100, 15, size=distinct).astype(int), 60, 140)
    picks = rng.choice(len(lexicon), size=int(lengths.sum()), p=weights / weights.sum())
    picks += len(lexicon) * rng.choice(3, size=len(picks), p=[0.8, 0.12, 0.08])
    ends = np.cumsum(lengths)
    texts = [" ".join(map(spelled.__getitem__, picks[end - length:end])) for end, length in zip(ends, lengths)]
    titles = [" ".join(lexicon[i].capitalize() for i in rng.integers(0, len(lexicon), size=int(rng.integers(1, 4))))
              for _ in range(distinct)]
    repeats = -(-n // distinct)
    return (titles * repeats)[:n], (texts * repeats)[:n]


# -- model -------------------------------------------------------------------------------------------------
def build_model(folder: Path, shape: ModelShape, texts: list[str]) -> Path:
    """A random-init BertModel plus a lowercase WordPiece tokenizer trained on texts, saved as a HF folder."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, trainers
    from tokenizers.models import WordPiece
    from transformers import BertConfig, BertModel, BertTokenizerFast

    wordpiece = Tokenizer(WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(vocab_size=shape.vocab, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
                                        show_progress=False)
    wordpiece.train_from_iterator(texts, trainer=trainer)
    tokenizer = BertTokenizerFast(vocab=wordpiece.get_vocab(), do_lower_case=True, model_max_length=512)
    config = BertConfig(vocab_size=shape.vocab, hidden_size=shape.hidden, num_hidden_layers=shape.layers,
                        num_attention_heads=shape.heads, intermediate_size=shape.intermediate,
                        pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# -- timing ------------------------------------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def mean_tokens(encoder: DenseEncoder, titles: list[str], texts: list[str], sample: int = 2000) -> float:
    inputs = [passage_input(t, x, encoder.passage_prefix) for t, x in zip(titles[:sample], texts[:sample])]
    ids = encoder.tokenizer(inputs, truncation=True, max_length=encoder.max_length)["input_ids"]
    return float(np.mean([len(i) for i in ids]))


def bench_encoding(encoder: DenseEncoder, titles: list[str], texts: list[str], shard_rows: int) -> float:
    """Passages/s of encode_passages over every passage, called shard by shard as the embed stage does."""
    encoder.encode_passages(titles[:encoder.batch_size * 2], texts[:encoder.batch_size * 2])  # warm-up
    def run() -> None:
        for start in range(0, len(texts), shard_rows):
            encoder.encode_passages(titles[start:start + shard_rows], texts[start:start + shard_rows])
    return len(texts) / timed(run, encoder.device)


def bench_model_on_batches(encoder: DenseEncoder, titles: list[str], texts: list[str], limit: int) -> float:
    """Passages/s of the model alone on the end-to-end run's own batches, tokenised beforehand (up to limit)."""
    inputs = [passage_input(t, x, encoder.passage_prefix) for t, x in zip(titles[:limit], texts[:limit])]
    batches = [encoder.tokenize([inputs[i] for i in rows]) for rows in batched(length_order(inputs), encoder.batch_size)]
    for tokens in batches:  # warm-up: every distinct padded length once
        encoder.embed_tokens(tokens)
    return len(inputs) / timed(lambda: [encoder.embed_tokens(tokens) for tokens in batches], encoder.device)


def bench_model_fixed_length(encoder: DenseEncoder, n_batches: int) -> float:
    """Passages/s of the model alone on random ids padded to exactly max_length (the design's setting)."""
    shape = (encoder.batch_size, encoder.max_length)
    ids = torch.randint(1000, encoder.model.config.vocab_size, shape)  # [B, T]
    tokens = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    encoder.embed_tokens(tokens)  # warm-up
    return n_batches * shape[0] / timed(lambda: [encoder.embed_tokens(tokens) for _ in range(n_batches)], encoder.device)


def random_unit_vectors(n: int, dim: int, device: torch.device, dtype: torch.dtype, chunk: int = 1 << 20) -> torch.Tensor:
    out = torch.empty((n, dim), dtype=dtype, device=device)  # [N, D]
    generator = torch.Generator(device=device).manual_seed(0)
    for start in range(0, n, chunk):
        block = torch.randn((min(chunk, n - start), dim), device=device, generator=generator)  # [C, D] float32
        out[start:start + len(block)] = torch.nn.functional.normalize(block, dim=-1).to(dtype)
    return out


def bench_search(search: Callable[[np.ndarray], object], queries: np.ndarray, batch: int, reps: int,
                 device: torch.device) -> list[float]:
    """Seconds per call of search over `reps` batches of `batch` queries (after one warm-up call)."""
    search(queries[:batch])
    times = []
    for rep in range(reps):
        block = queries[(rep * batch) % len(queries):][:batch]
        times.append(timed(lambda: search(block), device))
    return times


def search_rows(label: str, search: Callable[[np.ndarray], object], queries: np.ndarray, args, device,
                scale: float) -> list[Row]:
    one = statistics.median(bench_search(search, queries, 1, args.reps_single, device))
    big = statistics.median(bench_search(search, queries, 512, args.reps_batch, device))
    note = "*" if scale != 1.0 else ""
    return [
        Row(f"{label}: 1 query (ms)", one * 1e3, "ms", DESIGN_MS_ONE_QUERY * scale, note),
        Row(f"{label}: batch 512 (queries/s)", 512 / big, "q/s", DESIGN_QPS_BATCH_512 / scale, note),
    ]


def faiss_rows(matrix: torch.Tensor, queries: np.ndarray, args, device) -> list[Row]:
    if not faiss_available():
        return [Row("faiss", float("nan"), "", note="not installed: skipped")]
    import faiss

    vectors = matrix.float().cpu().numpy()
    if faiss_gpus() > 0:
        config = faiss.GpuIndexFlatConfig()
        config.useFloat16 = True
        index = faiss.GpuIndexFlatIP(faiss.StandardGpuResources(), vectors.shape[1], config)
        label = "faiss-gpu flat"
    elif len(vectors) <= FAISS_CPU_MAX_VECTORS:
        index, label = faiss.IndexFlatIP(vectors.shape[1]), "faiss-cpu flat"
    else:
        return [Row("faiss-cpu", float("nan"), "", note=f"over {FAISS_CPU_MAX_VECTORS:,} vectors: skipped")]
    index.add(vectors)
    scale = len(vectors) / DESIGN_CORPUS
    return search_rows(label, lambda q: index.search(q, TOPK), queries, args, torch.device("cpu") if "cpu" in label else device, scale)


# -- report ------------------------------------------------------------------------------------------------
def number(value: float) -> str:
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"


def print_table(rows: list[Row], header: str) -> None:
    print(header)
    print(f"{'measure':<50}{'value':>14}{'design':>12}{'ratio':>8}  note")
    for row in rows:
        ceiling = number(row.ceiling) if row.ceiling else "-"
        ratio = "-"
        if row.ceiling and row.value == row.value:  # not NaN
            ratio = f"{(row.ceiling / row.value if row.unit == 'ms' else row.value / row.ceiling):.2f}"
        value = number(row.value) if row.value == row.value else "-"
        print(f"{row.what:<50}{value:>14}{ceiling:>12}{ratio:>8}  {row.note}")
    print("ratio = measured / design ceiling (for ms: ceiling / measured), so > 1 is faster than the design's run;"
          " * = ceiling scaled linearly to this corpus size")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=1_000_000, help="synthetic passages to encode")
    parser.add_argument("--corpus-vectors", type=int, default=21_000_000, help="random unit vectors to search")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--batch-size", type=int, default=512, help="encoder batch size")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--shard-rows", type=int, default=100_000, help="passages per encode_passages call")
    parser.add_argument("--model-batches", type=int, default=50, help="batches timed in the fixed-length model-only run")
    parser.add_argument("--model-passages", type=int, default=100_000, help="passages in the same-batches model-only run")
    parser.add_argument("--reps-single", type=int, default=100)
    parser.add_argument("--reps-batch", type=int, default=20)
    parser.add_argument("--tokenizer-threads", type=int, default=1, help="DenseEncoder tokenizer_threads")
    parser.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and a tiny model: runs on a CPU in < 30 s")
    args = parser.parse_args()
    if args.smoke:
        args.passages, args.corpus_vectors, args.batch_size, args.shard_rows = 256, 20_000, 64, 128
        args.model_batches, args.model_passages, args.reps_single, args.reps_batch = 2, 256, 5, 2
    return args


def main() -> None:
    args = parse_args()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    shape = SMOKE_MODEL if args.smoke else BERT_BASE
    started = time.perf_counter()
    titles, texts = make_passages(args.passages)
    with tempfile.TemporaryDirectory(prefix="s3-bench-dense-") as tmp:
        folder = build_model(Path(tmp) / "encoder", shape, texts[:50_000])
        encoder = DenseEncoder(str(folder), max_length=args.max_length, query_prefix="query: ", passage_prefix="passage: ",
                               device=device, dtype="float16", batch_size=args.batch_size,
                               tokenizer_threads=args.tokenizer_threads)
    setup_s = time.perf_counter() - started
    tokens = mean_tokens(encoder, titles, texts)
    encode_rate = bench_encoding(encoder, titles, texts, args.shard_rows)
    same_batches_rate = bench_model_on_batches(encoder, titles, texts, args.model_passages)
    fixed_rate = bench_model_fixed_length(encoder, args.model_batches)
    rows = [
        Row("encode end-to-end (passages/s)", encode_rate, "p/s", DESIGN_PASSAGES_PER_S,
            f"tokeniser included; {tokens:.0f} tokens/passage on average"),
        Row("encode model-only, same batches (passages/s)", same_batches_rate, "p/s", None,
            f"end-to-end reaches {encode_rate / same_batches_rate:.2f} of this"),
        Row(f"encode model-only, {args.max_length} tokens each (passages/s)", fixed_rate, "p/s", DESIGN_PASSAGES_PER_S,
            "random ids, the design's setting"),
    ]
    encoder.close()
    del encoder
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    matrix = random_unit_vectors(args.corpus_vectors, args.dim, device, dtype)  # [N, D]
    queries = random_unit_vectors(4096, args.dim, torch.device("cpu"), torch.float32).numpy()  # [Q, D]
    searcher = TorchFlatSearcher(matrix)
    scale = args.corpus_vectors / DESIGN_CORPUS
    rows += search_rows(f"torch flat {matrix.dtype}".replace("torch.", ""), lambda q: searcher.search(q, TOPK),
                        queries, args, device, scale)
    rows += faiss_rows(matrix, queries, args, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    header = (f"device {name}; model {shape}; {args.passages:,} passages, max_length {args.max_length}, batch "
              f"{args.batch_size}; corpus {args.corpus_vectors:,} x {args.dim}; setup {setup_s:.1f} s"
              + ("  [smoke: tiny sizes, ratios mean nothing]" if args.smoke else ""))
    print_table(rows, header)


if __name__ == "__main__":
    main()
