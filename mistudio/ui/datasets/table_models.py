"""Qt table models of the Datasets tab: the dataset list, a page of documents, a page of
sequences. Each holds only what is on screen; pages come from ``studio.datasets``."""

from __future__ import annotations

from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt

from mistudio.paths import human_bytes

_PREVIEW_CHARS = 240


def _one_line(text: str, n: int = _PREVIEW_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


class DatasetListModel(QAbstractTableModel):
    """The datasets; the tab draws column 0 as cards (``cards.DatasetCardDelegate``), the
    other columns serve tables and tests."""

    HEADERS = ("Name", "Status", "Documents", "Tokenized", "Size", "Source")

    def __init__(self, parent=None):
        super().__init__(parent)
        self.records: list = []
        self.tokenized: dict[str, int] = {}
        self.tokens_bytes: dict[str, int] = {}  # dataset id -> bytes of its tokenizations
        self.progress: dict[str, str] = {}  # dataset id -> "42%" while a job runs

    def set_records(self, records: list, tokenizations: list) -> None:
        self.beginResetModel()
        self.records = list(records)
        self.tokenized = {}
        self.tokens_bytes = {}
        for t in tokenizations:
            if t.status == "ready":
                self.tokenized[t.dataset_id] = self.tokenized.get(t.dataset_id, 0) + 1
                self.tokens_bytes[t.dataset_id] = (self.tokens_bytes.get(t.dataset_id, 0)
                                                   + (t.size_bytes or 0))
        self.endResetModel()

    def set_progress(self, dataset_id: str, text: str | None) -> None:
        if text is None:
            self.progress.pop(dataset_id, None)
        else:
            self.progress[dataset_id] = text
        for row, rec in enumerate(self.records):
            if rec.id == dataset_id:
                self.dataChanged.emit(self.index(row, 0), self.index(row, 1))

    def row_of(self, dataset_id: str) -> int:
        return next((i for i, r in enumerate(self.records) if r.id == dataset_id), -1)

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.records)

    def columnCount(self, parent=QModelIndex()) -> int:
        return len(self.HEADERS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.HEADERS[section]
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        rec = self.records[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return rec.name
            if col == 1:
                extra = self.progress.get(rec.id)
                return f"{rec.status} {extra}" if extra else rec.status
            if col == 2:
                return f"{rec.n_docs:,}" if rec.n_docs is not None else "–"
            if col == 3:
                return str(self.tokenized.get(rec.id, 0))
            if col == 4:
                return human_bytes(rec.size_bytes) if rec.size_bytes else "–"
            if col == 5:
                src = rec.source or {}
                if rec.source_kind == "hub":
                    return f"Hub: {src.get('hub_id') or src.get('spec', {}).get('hub_id', '')}"
                if rec.source_kind == "local":
                    return src.get("path") or src.get("spec", {}).get("path", "")
                return "Demo (Wikipedia, CC BY-SA)"
        if role == Qt.ItemDataRole.ToolTipRole:
            text_size = human_bytes(rec.size_bytes or 0)
            tok_size = human_bytes(self.tokens_bytes.get(rec.id, 0))
            return (f"{rec.name}\n{rec.id} · text column '{rec.text_column or '?'}'\n"
                    f"text {text_size}, tokenizations {tok_size}\n"
                    f"added {(rec.created_at or '')[:19].replace('T', ' ')}")
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (2, 3, 4):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.UserRole:
            return rec.id
        return None


class DocumentPageModel(QAbstractTableModel):
    """One page of documents: index, text (one line), then metadata columns."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.rows: list[dict] = []
        self.columns: list[str] = ["index", "text"]

    def set_page(self, rows: list[dict], columns: list[str]) -> None:
        self.beginResetModel()
        self.rows = rows
        self.columns = ["index", "text"] + [c for c in columns if c != "text"]
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QModelIndex()) -> int:
        return len(self.columns)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return "#" if section == 0 else self.columns[section]
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row = self.rows[index.row()]
        key = self.columns[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            value = row.get(key)
            if key == "text":
                return _one_line(value or "")
            return "" if value is None else str(value)
        if role == Qt.ItemDataRole.ToolTipRole and key == "text":
            return _one_line(row.get("text") or "", 1200)
        if role == Qt.ItemDataRole.UserRole:
            return row
        return None


class SequencePageModel(QAbstractTableModel):
    HEADERS = ("#", "Tokens", "Text")

    def __init__(self, parent=None):
        super().__init__(parent)
        self.rows: list[dict] = []

    def set_page(self, rows: list[dict]) -> None:
        self.beginResetModel()
        self.rows = rows
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QModelIndex()) -> int:
        return 3

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.HEADERS[section]
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row = self.rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            if index.column() == 0:
                return str(row["index"])
            if index.column() == 1:
                return f"{row['length']}/{len(row['ids'])}"
            return _one_line("".join(row["text"][: row["length"]]))
        if role == Qt.ItemDataRole.UserRole:
            return row
        return None
