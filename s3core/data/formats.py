"""Record formats we accept as input (DESIGN.md section 2, "Data formats": FlashRAG / Search-R1 conventions).

Corpus records (one JSON object per line):
    wiki-18:  {"id": "0", "contents": "\"Title\"\ntext"}   title = first line, surrounding quotes stripped
    also:     {"id": ..., "title": ..., "text": ...}         (FlashRAG's other corpora, HF corpora)
QA records:
    FlashRAG: {"id", "question", "golden_answers": [...], "metadata"?}
    MIRAGE:   {"question", "options": {"A": ...}, "answer": "A"}  -> options appended to the question,
              gold = "A: option text" (the paper's medical setting)

Every parse error is a `RecordError` whose message says what is wrong and what the record should look like;
the ingest stage adds the file name and line number.
"""

from __future__ import annotations

import ast
import csv
import json
from pathlib import Path
from typing import Any

PASSAGE_COLUMNS = ("id", "title", "text")
QUESTION_COLUMNS = ("id", "data_source", "split", "question", "golden_answers", "metadata")


class RecordError(ValueError):
    """One malformed input record."""


def decoded_line(line: str | bytes) -> str:
    """A raw input line as text; bytes that are not UTF-8 are a RecordError naming the byte."""
    if isinstance(line, str):
        return line
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RecordError(f"not UTF-8 text (byte 0x{line[err.start]:02x} at byte {err.start + 1}); save the file "
                          "as UTF-8") from None


def question_type(row: dict[str, Any], default: str = "") -> str:
    """`metadata.type` of a questions row (the tiny world's single_hop / two_hop / comparison, HotpotQA's
    bridge / comparison), or `default` where the QA set has none. The metadata is JSON text or a mapping."""
    meta = row.get("metadata") or {}
    if isinstance(meta, str):
        meta = json.loads(meta) if meta.strip() else {}
    return str(meta.get("type", default))


def parse_json_line(line: str | bytes) -> dict[str, Any]:
    line = decoded_line(line)
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise RecordError(f"not valid JSON ({err.msg} at column {err.colno})") from None
    except (ValueError, RecursionError) as err:  # numbers too long to convert, absurd nesting
        raise RecordError(f"not usable JSON ({str(err)[:120]})") from None
    if not isinstance(record, dict):
        raise RecordError(f"expected a JSON object, got {type(record).__name__}")
    return record


def checked_text(value: str, field: str, owner: str) -> str:
    """`value` if it is valid Unicode text; a lone surrogate (a JSON escape such as \\ud800 without its pair)
    is a RecordError naming the field, since it cannot be stored or tokenised."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise RecordError(f'{owner}: "{field}" holds a lone surrogate (\\u{ord(value[err.start]):04x} at character '
                          f"{err.start + 1}), which is not text: fix the escape or drop the character") from None
    return value


def split_wiki_contents(contents: str) -> tuple[str, str]:
    """wiki-18 `contents` -> (title, text): first line is the title in double quotes."""
    first, sep, rest = contents.partition("\n")
    if not sep:
        return "", contents.strip()
    title = first.strip()
    if len(title) >= 2 and title[0] == '"' and title[-1] == '"':
        title = title[1:-1]
    return title, rest.strip()


def passage_from_record(record: dict[str, Any]) -> dict[str, str]:
    """A corpus record in any accepted form -> {"id", "title", "text"}."""
    if "id" not in record or record["id"] is None:
        raise RecordError('missing "id"; every passage needs a unique id, e.g. {"id": "0", "contents": "\\"Title\\"\\ntext"}')
    pid = str(record["id"])
    if isinstance(record.get("contents"), str):
        title, text = split_wiki_contents(record["contents"])
    elif isinstance(record.get("text"), str):
        title, text = str(record.get("title") or ""), record["text"].strip()
    else:
        raise RecordError(
            f'passage {pid!r} has neither a string "contents" (wiki-18: "\\"Title\\"\\ntext") nor a string "text"'
        )
    if not text:
        raise RecordError(f"passage {pid!r} has empty text")
    owner = f"passage {checked_text(pid, 'id', 'a passage')!r}"
    return {"id": pid, "title": checked_text(title, "title", owner), "text": checked_text(text, "text", owner)}


def _answers_list(value: Any, qid: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(a, (str, int, float)) for a in value):
        raise RecordError(f'question {qid!r}: "golden_answers" must be a non-empty list of strings, got {value!r}')
    return [str(a) for a in value]


def question_from_flashrag(record: dict[str, Any], data_source: str, split: str, fallback_id: str) -> dict[str, Any]:
    """FlashRAG QA record -> our question row (metadata kept as a JSON string: its shape varies by dataset)."""
    qid = str(record.get("id", fallback_id))
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        raise RecordError(f'question {qid!r}: "question" must be a non-empty string')
    answers = record.get("golden_answers", record.get("answers", record.get("answer")))
    if answers is None:
        raise RecordError(f'question {qid!r}: missing "golden_answers" (FlashRAG format: {{"id", "question", "golden_answers": [..]}})')
    metadata = record.get("metadata") or {}
    owner = f"question {checked_text(qid, 'id', 'a question')!r}"
    return {
        "id": qid,
        "data_source": data_source,
        "split": split,
        "question": checked_text(question.strip(), "question", owner),
        "golden_answers": [checked_text(a, "golden_answers", owner) for a in _answers_list(answers, qid)],
        "metadata": checked_text(json.dumps(metadata, ensure_ascii=False, sort_keys=True, default=str), "metadata", owner),
    }


def question_from_mirage(record: dict[str, Any], data_source: str, split: str, qid: str) -> dict[str, Any]:
    """MIRAGE benchmark item -> question with its options appended; gold = "<letter>: <option text>"."""
    options = record.get("options")
    answer = record.get("answer")
    if not isinstance(options, dict) or not options:
        raise RecordError(f'MIRAGE item {qid!r}: "options" must be an object like {{"A": "...", "B": "..."}}')
    if answer not in options:
        raise RecordError(f'MIRAGE item {qid!r}: "answer" {answer!r} is not one of the option letters {sorted(options)}')
    question = str(record.get("question", "")).strip()
    if not question:
        raise RecordError(f'MIRAGE item {qid!r}: "question" must be a non-empty string')
    listed = "\n".join(f"{letter}. {text}" for letter, text in sorted(options.items()))
    checked_text(question + listed, "question", f"MIRAGE item {qid!r}")
    return {
        "id": qid,
        "data_source": data_source,
        "split": split,
        "question": f"{question}\nOptions:\n{listed}",
        "golden_answers": [f"{answer}: {options[answer]}"],
        "metadata": json.dumps({"options": options, "answer_letter": answer}, ensure_ascii=False, sort_keys=True),
    }


def write_repeated_corpus(sample: str | Path, copies: int, out: str | Path) -> int:
    """Scale a wiki-18-format sample up by writing it `copies` times with ids made unique ("<copy>-<id>").

    For benchmarks and resume tests that need a large corpus in the real format; returns the line count."""
    lines = Path(sample).read_text(encoding="utf-8").splitlines()
    with open(out, "w", encoding="utf-8") as handle:
        for copy in range(copies):
            for line in lines:
                record = json.loads(line)
                record["id"] = f"{copy}-{record['id']}"
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return copies * len(lines)


# -- pyserini topic files (the QA sets inside anserini's jar) -------------------------------------------
def parse_pyserini_topic_line(line: str | bytes) -> dict[str, Any]:
    """One line of a pyserini/anserini QA topic file -> {"question", "golden_answers"}.

    Two spellings occur: DPR-style TSV, `question<TAB>['answer', 'alias', ...]` (a Python list literal: NQ,
    TriviaQA; a field holding quotes is CSV-quoted, `"[""Château d'Amboise""]"`, and lines may end in CRLF),
    and JSON lines `{"question": ..., "answer": [...]}` (SQuAD, WebQuestions, CuratedTREC)."""
    text = decoded_line(line)
    if text.lstrip().startswith("{"):
        record = parse_json_line(text)
        return {"question": record.get("question"), "golden_answers": record.get("answer", record.get("answers"))}
    fields = next(csv.reader([text.rstrip("\r\n")], delimiter="\t"))  # a field may be CSV-quoted ("" = ")
    if len(fields) < 2:
        raise RecordError("expected `question<TAB>[answers]` (pyserini's DPR topic format) or a JSON object")
    question, answers = "\t".join(fields[:-1]), fields[-1]
    try:
        parsed = ast.literal_eval(answers.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise RecordError(f"the answers after the tab are not a list literal like ['a', 'b'] (got {answers[:80]!r})") from None
    if not isinstance(parsed, list) or not all(isinstance(a, str) for a in parsed):
        raise RecordError(f"the answers after the tab must be a list of strings (got {type(parsed).__name__})")
    return {"question": question, "golden_answers": parsed}


# -- Wikipedia lead summaries -> wiki-18-style passages ----------------------------------------------------
def summary_passages(title: str, text: str, words: int = 100) -> list[str]:
    """A summary cut into passages of `words` words (the last one shorter), each as wiki-18 `contents`
    ('"Title"\ntext'), as DPR cut Wikipedia into 100-word passages."""
    tokens = text.split()
    return [f'"{title}"\n' + " ".join(tokens[i:i + words]) for i in range(0, len(tokens), words)]
