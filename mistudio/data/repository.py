"""Rows of the ``datasets`` and ``tokenizations`` tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mistudio.errors import UserError
from mistudio.paths import DataPaths, dir_size
from mistudio.store.db import Store, now_iso
from mistudio.store.rows import RowMapper


@dataclass
class DatasetRecord:
    id: str
    name: str
    status: str
    source_kind: str = ""
    source: dict = field(default_factory=dict)
    text_column: str = ""
    columns: list = field(default_factory=list)
    n_docs: int | None = None
    n_chars: int | None = None
    size_bytes: int | None = None
    stats: dict = field(default_factory=dict)
    job_id: str = ""
    created_at: str = ""
    updated_at: str | None = None

    @classmethod
    def from_row(cls, row: dict) -> "DatasetRecord":
        return DATASET_ROWS.from_row(row)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class TokenizationRecord:
    id: str
    dataset_id: str
    status: str
    tokenizer: str = ""
    model_id: str = ""
    tokenizer_path: str = ""
    tokenizer_fingerprint: str = ""
    seq_len: int = 0
    settings: dict = field(default_factory=dict)
    settings_key: str = ""
    n_seq: int | None = None
    n_tokens: int | None = None
    n_docs: int | None = None
    size_bytes: int | None = None
    stats: dict = field(default_factory=dict)
    job_id: str = ""
    created_at: str = ""
    updated_at: str | None = None
    path: str = ""  # filled in by the repository: the tokenization folder

    @classmethod
    def from_row(cls, row: dict, paths: DataPaths) -> "TokenizationRecord":
        rec = TOKENIZATION_ROWS.from_row(row)
        rec.path = str(tokenization_dir(paths, rec.dataset_id, rec.id))
        return rec

    def to_dict(self) -> dict:
        return dict(self.__dict__)


DATASET_ROWS = RowMapper(DatasetRecord)
TOKENIZATION_ROWS = RowMapper(TokenizationRecord, skip=("path",))


def tokenization_dir(paths: DataPaths, dataset_id: str, tokenization_id: str) -> Path:
    return paths.entity_dir("datasets", dataset_id) / "tokenizations" / tokenization_id


class DatasetsRepo:
    def __init__(self, store: Store):
        self.store = store

    @property
    def table(self):
        return self.store.db["datasets"]

    def insert(self, **fields) -> DatasetRecord:
        now = now_iso()
        fields.setdefault("created_at", now)
        fields["updated_at"] = now
        with self.store.db.conn:
            self.table.insert(DATASET_ROWS.encode(fields))
        return self.require(fields["id"])

    def get(self, dataset_id: str) -> DatasetRecord | None:
        rows = list(self.table.rows_where("id = ?", [dataset_id]))
        return DatasetRecord.from_row(rows[0]) if rows else None

    def require(self, dataset_id: str) -> DatasetRecord:
        rec = self.get(dataset_id)
        if rec is None:
            matches = [r for r in self.list() if r.id.startswith(dataset_id)
                       or r.name == dataset_id]
            if len(matches) == 1:
                return matches[0]
            if matches:  # a name given twice, or a short id prefix
                raise UserError(f"{dataset_id!r} matches several datasets: "
                                f"{', '.join(r.id for r in matches)}.",
                                hint="Use the id; `mistudio datasets list` shows ids and names.")
            raise UserError(f"No dataset {dataset_id!r}.",
                            hint="`mistudio datasets list` shows the datasets and their ids.")
        return rec

    def list(self, status: str | None = None) -> list[DatasetRecord]:
        where, args = (("status = ?", [status]) if status else (None, []))
        return [DatasetRecord.from_row(r)
                for r in self.table.rows_where(where, args, order_by="created_at desc")]

    def update(self, dataset_id: str, **fields) -> None:
        fields["updated_at"] = now_iso()
        with self.store.db.conn:
            self.table.update(dataset_id, DATASET_ROWS.encode(fields))

    def delete(self, dataset_id: str) -> None:
        with self.store.db.conn:
            self.store.db["tokenizations"].delete_where("dataset_id = ?", [dataset_id])
            self.table.delete_where("id = ?", [dataset_id])


class TokenizationsRepo:
    def __init__(self, store: Store, paths: DataPaths):
        self.store = store
        self.paths = paths

    @property
    def table(self):
        return self.store.db["tokenizations"]

    def insert(self, **fields) -> TokenizationRecord:
        now = now_iso()
        fields.setdefault("created_at", now)
        fields["updated_at"] = now
        with self.store.db.conn:
            self.table.insert(TOKENIZATION_ROWS.encode(fields))
        return self.get(fields["id"])

    def get(self, tokenization_id: str) -> TokenizationRecord | None:
        rows = list(self.table.rows_where("id = ?", [tokenization_id]))
        return TokenizationRecord.from_row(rows[0], self.paths) if rows else None

    def list(self, dataset_id: str | None = None) -> list[TokenizationRecord]:
        where, args = (("dataset_id = ?", [dataset_id]) if dataset_id else (None, []))
        return [TokenizationRecord.from_row(r, self.paths)
                for r in self.table.rows_where(where, args, order_by="created_at desc")]

    def find(self, dataset_id: str, settings_key: str) -> TokenizationRecord | None:
        rows = list(self.table.rows_where("dataset_id = ? and settings_key = ?",
                                          [dataset_id, settings_key]))
        return TokenizationRecord.from_row(rows[0], self.paths) if rows else None

    def update(self, tokenization_id: str, **fields) -> None:
        fields["updated_at"] = now_iso()
        with self.store.db.conn:
            self.table.update(tokenization_id, TOKENIZATION_ROWS.encode(fields))

    def mark_ready(self, tokenization_id: str, meta: dict, folder: Path) -> None:
        self.update(tokenization_id, status="ready", n_seq=meta["n_seq"],
                    n_tokens=meta["n_tokens"], n_docs=meta["n_docs"],
                    tokenizer_fingerprint=meta["tokenizer_fingerprint"],
                    stats=meta.get("stats", {}), size_bytes=dir_size(folder), job_id="")

    def delete(self, tokenization_id: str) -> None:
        with self.store.db.conn:
            self.table.delete_where("id = ?", [tokenization_id])


class DataRepos:
    """The two repositories on one store; jobs open their own (``DataRepos.open``)."""

    def __init__(self, store: Store, paths: DataPaths, *, owns_store: bool = False):
        self.store = store
        self.paths = paths
        self.datasets = DatasetsRepo(store)
        self.tokenizations = TokenizationsRepo(store, paths)
        self._owns = owns_store

    @classmethod
    def open(cls, data_dir: str | Path) -> "DataRepos":
        paths = DataPaths(Path(data_dir))
        return cls(Store(paths.db_file), paths, owns_store=True)

    def tokenization_dir(self, dataset_id: str, tokenization_id: str) -> Path:
        return tokenization_dir(self.paths, dataset_id, tokenization_id)

    def close(self) -> None:
        if self._owns:
            self.store.close()
