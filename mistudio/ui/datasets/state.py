"""What the Datasets tab shows and allows, without Qt: tests drive it, the tab renders it.

The list of datasets, which one is selected (and the status its details were drawn for),
the job banner (a running import/tokenization, or the last error until dismissed), the
per-card progress, which actions the selected dataset allows, and its overview page.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from mistudio.paths import human_bytes

DATASET_KINDS = ("datasets.import", "datasets.tokenize", "datasets.stats")
VERBS = {"datasets.import": "Importing", "datasets.tokenize": "Tokenizing",
         "datasets.stats": "Computing statistics of"}
ENDED = ("completed", "failed", "cancelled")


@dataclass
class Banner:
    """The strip above the list: hidden, a running job (with Cancel), or an error (Dismiss)."""

    kind: str = ""  # "" (hidden) | "running" | "failed"
    text: str = ""
    job_id: str | None = None  # the running job Cancel stops
    fraction: float | None = None  # None: busy without a known total

    @property
    def visible(self) -> bool:
        return bool(self.kind)


@dataclass
class DatasetActions:
    title: str = ""
    tokenize: bool = False
    rename: bool = False
    delete: bool = False


@dataclass
class DatasetsState:
    records: list = field(default_factory=list)  # DatasetRecord, as the list shows them
    selected_id: str | None = None
    shown_status: str | None = None  # the selected dataset's status its details show
    banner: Banner = field(default_factory=Banner)
    progress: dict[str, str] = field(default_factory=dict)  # dataset id -> "42%" / "…"

    # ------------------------------------------------------------------ list, selection

    def set_records(self, records: list, keep: str | None = None) -> str | None:
        """Take a fresh list; returns the dataset to select: ``keep`` (or the selected one)
        while it is listed, else the first, else None."""
        self.records = list(records)
        keep = keep or self.selected_id
        if keep and self.record(keep) is not None:
            return keep
        return self.records[0].id if self.records else None

    def record(self, dataset_id: str | None):
        return next((r for r in self.records if r.id == dataset_id), None)

    def name_of(self, dataset_id: str) -> str:
        rec = self.record(dataset_id)
        return rec.name if rec is not None else dataset_id

    def select(self, dataset_id: str | None, status: str | None, *,
               force: bool = False) -> bool | None:
        """Select a dataset whose current status is ``status``. None: nothing to redraw
        (already selected); True: its documents and tokenizations must be reloaded (another
        dataset, or its status changed); False: only the overview and buttons."""
        if dataset_id == self.selected_id and not force:
            return None
        changed = dataset_id != self.selected_id or status != self.shown_status
        self.selected_id = dataset_id
        self.shown_status = status
        return changed

    def forget_selection(self) -> None:
        self.selected_id = None

    @staticmethod
    def actions(ds) -> DatasetActions:
        """What the buttons above the details allow for the dataset ``ds`` (None: none)."""
        if ds is None:
            return DatasetActions()
        ready = ds.status == "ready"
        return DatasetActions(ds.name, tokenize=ready, rename=True, delete=ready)

    def existing_demo(self) -> str | None:
        """The whole demo corpus, when it is already here (ready or importing): Add demo
        shows it instead of importing a second copy (a limited one does not count)."""
        for rec in self.records:
            spec = (rec.source or {}).get("spec", {})
            if rec.source_kind == "demo" and not spec.get("limit") and rec.status in (
                    "ready", "importing"):
                return rec.id
        return None

    # ------------------------------------------------------------------ the banner

    def job_running(self, job_id: str, text: str, fraction: float | None) -> None:
        self.banner = Banner("running", text, job_id, fraction)

    def job_failed(self, text: str) -> None:
        self.banner = Banner("failed", text)

    def dismiss(self) -> None:
        self.banner = Banner()

    def on_progress(self, job, payload: dict) -> bool:
        """A progress event of ``job``; False when it is not a datasets job."""
        if job is None or job.kind not in DATASET_KINDS:
            return False
        total = payload.get("total")
        frac = payload["done"] / total if total else None
        self.job_running(job.id, f"{VERBS.get(job.kind, VERBS['datasets.stats'])} "
                         f"{self.name_of(job.target)}: {payload.get('message') or ''}", frac)
        self.progress[job.target] = f"{frac:.0%}" if frac is not None else "…"
        return True

    def on_ended(self, job, status: str) -> bool:
        """``job`` ended with ``status``; False when it is not a datasets job that ended
        (then nothing needs to change)."""
        if status not in ENDED or job is None or job.kind not in DATASET_KINDS:
            return False
        self.progress.pop(job.target, None)
        if status == "failed":
            self.job_failed(f"{job.title} failed: {job.error}")
        elif status == "cancelled":
            self.job_failed(f"{job.title} was cancelled; nothing was kept.")
        elif self.banner.job_id == job.id:
            self.dismiss()
        return True


def overview_html(ds, tokenizations: list) -> str:
    """The Overview page of dataset ``ds``: what it is, where it came from, its
    tokenizations."""
    if ds is None:
        return ""
    e = html.escape
    src = {k: v for k, v in (ds.source or {}).items() if k != "spec"}
    rows = "".join(f"<tr><td><b>{e(str(k))}</b></td><td>{e(str(v))}</td></tr>"
                   for k, v in src.items())
    tok_rows = "".join(
        f"<tr><td>{e(t.id)}</td><td>{e(t.status)}</td><td>{e(t.tokenizer)}</td>"
        f"<td>{t.seq_len}</td><td>{e(str(t.settings.get('packing')))}"
        f"{', BOS' if t.settings.get('prepend_bos') else ''}</td>"
        f"<td>{(t.n_seq or 0):,}</td><td>{(t.n_tokens or 0):,}</td>"
        f"<td>{human_bytes(t.size_bytes) if t.size_bytes else '–'}</td></tr>"
        for t in tokenizations)
    size = human_bytes(ds.size_bytes) if ds.size_bytes else "–"
    return (
        f"<h3>{e(ds.name)}</h3><p>{e(ds.id)} · <b>{e(ds.status)}</b> · "
        f"{(ds.n_docs or 0):,} documents · {(ds.n_chars or 0):,} characters · text {size} "
        f"on disk · text column <code>{e(ds.text_column or '?')}</code></p>"
        f"<h4>Source</h4><table cellpadding=3>{rows}</table>"
        f"<h4>Tokenizations</h4>" + (
            f"<table cellpadding=3><tr><th>id</th><th>status</th><th>tokenizer</th>"
            f"<th>context</th><th>layout</th><th>sequences</th><th>tokens</th><th>size</th>"
            f"</tr>{tok_rows}</table>" if tokenizations else
            "<p>None yet: press Tokenize….</p>"))
