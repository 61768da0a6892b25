"""What every retriever shares: hits as passage row positions, and the store of passage texts.

Retrievers return **row positions** into the concatenation of the corpus parts' passage tables (in the
order of `corpus.parts`, rows in shard order). The doc store maps a row back to its original id, title and
text, and formats it the way the s3 API and the public clients expect: `contents = '"Title"\\ntext'`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pyarrow as pa

from s3core.store import ArtifactStore, Manifest


@dataclass(frozen=True)
class SearchHit:
    row: int  # position in the DocStore
    score: float


class Retriever(Protocol):
    """A searchable index: a batch of queries -> for each, the top-k hits, best first."""

    name: str

    def search(self, queries: Sequence[str], topk: int) -> list[list[SearchHit]]: ...


class DocStore:
    """Passages (id, title, text) of one or more corpus artifacts, addressable by row position."""

    def __init__(self, table: pa.Table):
        self.table = table.combine_chunks()
        self._ids = self.table.column("id")
        self._titles = self.table.column("title")
        self._texts = self.table.column("text")

    @classmethod
    def from_manifests(cls, store: ArtifactStore, corpus: Sequence[Manifest]) -> DocStore:
        tables = [store.read_table(m, columns=["id", "title", "text"]) for m in corpus]
        return cls(pa.concat_tables(tables) if len(tables) > 1 else tables[0])

    def __len__(self) -> int:
        return self.table.num_rows

    def row_of(self, doc_id: str) -> int:
        """The row of a passage id (the id -> row map is built on first use); KeyError names the id."""
        if getattr(self, "_row_of", None) is None:
            self._row_of = {d: i for i, d in enumerate(self._ids.to_pylist())}
        try:
            return self._row_of[doc_id]
        except KeyError:
            raise KeyError(f"passage id {doc_id!r} is not in this doc store ({len(self)} passages): was the "
                           "retrieval server started on a different corpus?") from None

    def doc_id(self, row: int) -> str:
        return self._ids[row].as_py()

    def title(self, row: int) -> str:
        return self._titles[row].as_py()

    def text(self, row: int) -> str:
        return self._texts[row].as_py()

    def contents(self, row: int) -> str:
        """wiki-18 style contents: the title in double quotes on the first line, then the text."""
        return f'"{self.title(row)}"\n{self.text(row)}'

    def document(self, row: int) -> dict[str, str]:
        """The s3 API's document object."""
        return {"id": self.doc_id(row), "contents": self.contents(row)}

    def iter_batches(self, batch_rows: int, start: int = 0) -> Iterator[tuple[int, list[str], list[str]]]:
        """(first row, titles, texts) batches from `start`, for encoding and indexing."""
        for first in range(start, len(self), batch_rows):
            chunk = self.table.slice(first, batch_rows)
            yield first, chunk.column("title").to_pylist(), chunk.column("text").to_pylist()


def hits_from_arrays(scores: np.ndarray, rows: np.ndarray) -> list[list[SearchHit]]:
    """[Q, k] score and row arrays -> hit lists, dropping FAISS's -1 padding."""
    return [
        [SearchHit(int(r), float(s)) for s, r in zip(score_row, row_row) if r >= 0]
        for score_row, row_row in zip(scores, rows)
    ]
