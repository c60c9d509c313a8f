"""The stored form of a dataset's raw text: one Arrow IPC file, memory-mapped for reading.

``documents.arrow`` has a ``text`` column first, then the source's metadata columns
(title, topic, file, ...). It is written batch by batch (bounded memory) and read through
a memory map, so paging and searching a million documents never loads them all.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mistudio.data.sources import BATCH_ROWS, choose_text_column, is_text_type
from mistudio.errors import UserError

DOCUMENTS_FILE = "documents.arrow"
MAX_CATEGORY_VALUES = 200  # a metadata column with more distinct values is not a category
TOP_CATEGORY_VALUES = 50


def _keepable(t: pa.DataType) -> bool:
    return (is_text_type(t) or pa.types.is_integer(t) or pa.types.is_floating(t)
            or pa.types.is_boolean(t) or pa.types.is_temporal(t) or pa.types.is_null(t))


class RawCorpusWriter:
    """Normalises source tables (text column -> ``text``, empty documents dropped, limit
    applied) and appends them to ``documents.arrow``, keeping running statistics."""

    def __init__(self, path: Path, *, text_column: str = "", where: str = "the source",
                 limit: int | None = None):
        self.path = Path(path)
        self.requested_text_column = text_column
        self.text_column = ""
        self.where = where
        self.limit = limit
        self.schema: pa.Schema | None = None
        self.dropped_columns: list[str] = []
        self._writer = None
        self._sink = None
        self.n_docs = 0
        self.n_empty = 0
        self.n_chars = 0
        self._char_lengths: list[np.ndarray] = []
        self._categories: dict[str, Counter | None] = {}

    @property
    def full(self) -> bool:
        return self.limit is not None and self.n_docs >= self.limit

    def _normalise(self, table: pa.Table) -> pa.Table:
        if not self.text_column:
            self.text_column = choose_text_column(table.schema, self.requested_text_column,
                                                  self.where)
        elif self.text_column not in table.column_names:
            raise UserError(f"{self.where}: the column {self.text_column!r} is missing in part "
                            "of the data.", hint="Choose a column every record has.")
        text = table[self.text_column]
        if not is_text_type(text.type):
            try:
                text = pc.cast(text, pa.string())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise UserError(f"{self.where}: the column {self.text_column!r} holds "
                                f"{text.type}, not text.", hint="Choose a text column.") from None
        if text.type != pa.string():
            text = pc.cast(text, pa.string())
        keep = pc.fill_null(pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0), False)
        cols, names = [text], ["text"]
        for name in table.column_names:
            if name == self.text_column:
                continue
            col = table[name]
            if not _keepable(col.type):
                if name not in self.dropped_columns:
                    self.dropped_columns.append(name)
                continue
            if pa.types.is_null(col.type) or pa.types.is_large_string(col.type) \
                    or pa.types.is_string_view(col.type):
                col = pc.cast(col, pa.string())
            cols.append(col)
            names.append("text_original" if name == "text" else name)
        out = pa.table(cols, names=names).filter(keep)
        self.n_empty += len(table) - len(out)
        return out

    def _conform(self, table: pa.Table) -> pa.Table:
        if self.schema is None:
            self.schema = table.schema
            return table
        cols = []
        for f in self.schema:
            if f.name not in table.column_names:
                cols.append(pa.nulls(len(table), f.type))
                continue
            col = table[f.name]
            if col.type != f.type:
                try:
                    col = pc.cast(col, f.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    raise UserError(f"{self.where}: the column {f.name!r} changes type from "
                                    f"{f.type} to {col.type} part-way through.",
                                    hint="Make the column's values one type.") from None
            cols.append(col)
        return pa.table(cols, schema=self.schema)

    def write(self, table: pa.Table) -> int:
        """Append one source table; returns the documents kept from it."""
        table = self._conform(self._normalise(table))
        if self.limit is not None:
            table = table.slice(0, max(0, self.limit - self.n_docs))
        if len(table) == 0:
            return 0
        if self._writer is None:
            self._sink = pa.OSFile(str(self.path), "wb")
            self._writer = pa.ipc.new_file(self._sink, self.schema)
        for batch in table.to_batches(max_chunksize=BATCH_ROWS):
            self._writer.write_batch(batch)
        lengths = pc.utf8_length(table["text"]).to_numpy(zero_copy_only=False).astype(np.int64)
        self._char_lengths.append(lengths)
        self.n_chars += int(lengths.sum())
        self.n_docs += len(table)
        self._count_categories(table)
        return len(table)

    def _count_categories(self, table: pa.Table) -> None:
        for name in table.column_names[1:]:
            if name in self._categories and self._categories[name] is None:
                continue
            col = table[name]
            if not (is_text_type(col.type) or pa.types.is_boolean(col.type)
                    or pa.types.is_integer(col.type)):
                self._categories[name] = None
                continue
            counter = self._categories.setdefault(name, Counter())
            for item in pc.value_counts(col).to_pylist():
                if item["values"] is not None:
                    counter[str(item["values"])] += item["counts"]
            if len(counter) > MAX_CATEGORY_VALUES:
                self._categories[name] = None

    def close(self) -> dict:
        """Finish the file; return the raw statistics (raises if nothing was kept)."""
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
        if self.n_docs == 0:
            raise UserError(f"{self.where} holds no documents with text"
                            + (f" ({self.n_empty} were empty)." if self.n_empty else "."),
                            hint="Check the file and the text column.")
        lengths = np.concatenate(self._char_lengths)
        return {
            "n_docs": self.n_docs,
            "n_chars": self.n_chars,
            "n_empty_skipped": self.n_empty,
            "text_column": self.text_column,
            "dropped_columns": self.dropped_columns,
            "columns": [{"name": f.name, "type": str(f.type)} for f in self.schema],
            "char_length": length_summary(lengths),
            "categories": {
                name: [[value, count] for value, count in counter.most_common(TOP_CATEGORY_VALUES)]
                for name, counter in self._categories.items() if counter},
        }


def length_summary(lengths: np.ndarray, bins: int = 40) -> dict:
    """Histogram and percentiles of document lengths (any unit)."""
    lengths = np.asarray(lengths)
    if lengths.size == 0:
        return {"count": 0}
    hi = int(lengths.max())
    lo = int(lengths.min())
    n_bins = max(1, min(bins, hi - lo + 1))
    counts, edges = np.histogram(lengths, bins=n_bins, range=(lo, hi + 1))
    return {
        "count": int(lengths.size),
        "min": lo,
        "max": hi,
        "mean": float(lengths.mean()),
        "median": float(np.median(lengths)),
        "p05": float(np.percentile(lengths, 5)),
        "p95": float(np.percentile(lengths, 95)),
        "hist_edges": [float(e) for e in edges],
        "hist_counts": [int(c) for c in counts],
    }


class RawCorpus:
    """Read access to ``documents.arrow`` through a memory map."""

    def __init__(self, folder_or_file: Path):
        path = Path(folder_or_file)
        if path.is_dir():
            path = path / DOCUMENTS_FILE
        if not path.is_file():
            raise UserError(f"The documents of this dataset are missing ({path}).",
                            hint="Delete the dataset and import it again.")
        self.path = path
        self._map = pa.memory_map(str(path), "r")
        self.table = pa.ipc.open_file(self._map).read_all()

    def close(self) -> None:
        self.table = None
        self._map.close()

    @property
    def n_docs(self) -> int:
        return self.table.num_rows

    @property
    def columns(self) -> list[str]:
        return self.table.column_names

    def rows(self, offset: int, limit: int) -> list[dict]:
        offset = max(0, min(int(offset), self.n_docs))
        out = self.table.slice(offset, max(0, int(limit))).to_pylist()
        for i, row in enumerate(out):
            row["index"] = offset + i
        return out

    def take(self, indices) -> list[dict]:
        """Rows at these indices (a page of search results). One-row slices, not
        ``Table.take``: take concatenates the file's chunks first, i.e. copies the whole
        text column (~1 s on 1M documents), where slicing touches only the rows asked for."""
        indices = [int(i) for i in indices]
        if not indices:
            return []
        for i in indices:
            if not 0 <= i < self.n_docs:
                raise IndexError(f"document {i} out of range (0..{self.n_docs - 1})")
        out = pa.concat_tables([self.table.slice(i, 1) for i in indices]).to_pylist()
        for i, row in zip(indices, out):
            row["index"] = i
        return out

    def text(self, index: int) -> str:
        return self.table["text"][int(index)].as_py()

    def iter_texts(self, batch_rows: int = 2048, start: int = 0) -> Iterator[tuple[int, list[str]]]:
        """(index of the first document, texts) in order, a batch at a time."""
        for offset in range(start, self.n_docs, batch_rows):
            yield offset, self.table["text"].slice(offset, batch_rows).to_pylist()

    def search_chunks(self, query: str = "", *, column_equals: dict | None = None,
                      case_sensitive: bool = False, chunk_rows: int = 65_536, start: int = 0
                      ) -> Iterator[tuple[np.ndarray, int]]:
        """Scan for matches a chunk at a time: yields (indices found in the chunk, documents
        scanned so far). Lets a caller show results as they come and stop early; each
        chunk is one pyarrow kernel call (which releases the GIL)."""
        for name in (column_equals or {}):
            if name not in self.columns:
                raise UserError(f"This dataset has no column {name!r}.",
                                hint=f"Its columns: {', '.join(self.columns)}.")
        return self._scan(query, dict(column_equals or {}), case_sensitive, chunk_rows, start)

    def _scan(self, query, column_equals, case_sensitive, chunk_rows, start):
        for offset in range(max(0, start), self.n_docs, chunk_rows):
            part = self.table.slice(offset, chunk_rows)
            mask = None
            if query:
                mask = pc.match_substring(part["text"], pattern=query,
                                          ignore_case=not case_sensitive)
            for name, value in column_equals.items():
                col = part[name]
                eq = pc.equal(pc.cast(col, pa.string()) if not is_text_type(col.type) else col,
                              pa.scalar(str(value), pa.string()))
                mask = eq if mask is None else pc.and_(mask, eq)
            if mask is None:
                idx = np.arange(len(part), dtype=np.int64)
            else:
                idx = np.flatnonzero(pc.fill_null(mask, False).to_numpy(zero_copy_only=False))
            yield idx.astype(np.int64) + offset, offset + len(part)

    def search(self, query: str = "", *, column_equals: dict | None = None, limit: int = 10_000,
               case_sensitive: bool = False) -> tuple[np.ndarray, bool]:
        """Indices of documents whose text contains ``query`` (and whose columns equal the
        given values), in order, at most ``limit``; and whether the scan was complete."""
        found: list[np.ndarray] = []
        n_found = 0
        scanned = 0
        for idx, scanned in self.search_chunks(query, column_equals=column_equals,
                                               case_sensitive=case_sensitive):
            found.append(idx)
            n_found += len(idx)
            if n_found >= limit:
                break
        indices = np.concatenate(found) if found else np.zeros(0, dtype=np.int64)
        complete = scanned >= self.n_docs and n_found <= limit
        return indices[:limit].astype(np.int64), complete
