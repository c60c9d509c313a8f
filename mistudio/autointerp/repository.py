"""Rows of the auto-interpretation tables (schema: store/schema_autointerp.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from mistudio.store.db import Store, now_iso
from mistudio.store.rows import where_equal


@dataclass
class RunRecord:
    id: str
    analysis_id: str
    sae_id: str = ""
    status: str = "queued"
    job_id: str = ""
    model_id: str = ""
    model_name: str = ""
    prompt_version: str = ""
    seed: int = 0
    scorer: str = ""
    features: list = field(default_factory=list)
    params: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    folder: str = ""
    error: str = ""
    created_at: str = ""
    finished_at: str = ""

    @classmethod
    def from_row(cls, row: dict) -> "RunRecord":
        row = {k: v for k, v in dict(row).items() if k in cls.__dataclass_fields__}
        for k in ("features", "params", "summary"):
            row[k] = json.loads(row.get(k) or ("[]" if k == "features" else "{}"))
        return cls(**{k: ("" if v is None else v) for k, v in row.items()})


@dataclass
class Explanation:
    analysis_id: str
    feature: int
    model_id: str
    prompt_version: str
    seed: int
    model_name: str = ""
    explanation: str = ""
    raw: str = ""
    run_id: str = ""
    created_at: str = ""


@dataclass
class ScoreRow:
    analysis_id: str
    feature: int
    scorer: str
    model_id: str
    prompt_version: str
    seed: int
    explainer_id: str
    score: float
    baseline_score: float | None = None
    baseline_feature: int | None = None
    tp: int = 0
    tn: int = 0
    fp: int = 0
    fn: int = 0
    answer_mass: float = 0.0
    details: list = field(default_factory=list)
    run_id: str = ""
    created_at: str = ""
    auroc: float | None = None           # of P(yes): None without both kinds of example
    baseline_auroc: float | None = None


class AutointerpRepo:
    def __init__(self, store: Store):
        self.store = store

    @property
    def db(self):
        return self.store.db

    # ------------------------------------------------------------------ runs

    def insert_run(self, rec: RunRecord) -> RunRecord:
        rec.created_at = rec.created_at or now_iso()
        row = dict(rec.__dict__)
        for k in ("features", "params", "summary"):
            row[k] = json.dumps(row[k], default=str)
        with self.db.conn:
            self.db["autointerp_runs"].insert(row, replace=True)
        return rec

    def update_run(self, run_id: str, **fields) -> None:
        for k in ("features", "params", "summary"):
            if k in fields and not isinstance(fields[k], str):
                fields[k] = json.dumps(fields[k], default=str)
        with self.db.conn:
            self.db["autointerp_runs"].update(run_id, fields)

    def get_run(self, run_id: str) -> RunRecord | None:
        rows = list(self.db["autointerp_runs"].rows_where("id = ?", [run_id]))
        return RunRecord.from_row(rows[0]) if rows else None

    def run_by_job(self, job_id: str) -> RunRecord | None:
        rows = list(self.db["autointerp_runs"].rows_where("job_id = ?", [job_id]))
        return RunRecord.from_row(rows[0]) if rows else None

    def list_runs(self, analysis_id: str = "") -> list[RunRecord]:
        rows = self.db["autointerp_runs"].rows_where(
            "analysis_id = ?" if analysis_id else None, [analysis_id] if analysis_id else [],
            order_by="created_at desc")
        return [RunRecord.from_row(r) for r in rows]

    # ------------------------------------------------------------------ results

    def save_explanation(self, e: Explanation) -> None:
        e.created_at = e.created_at or now_iso()
        with self.db.conn:
            self.db["autointerp_explanations"].insert(dict(e.__dict__), replace=True)

    def save_score(self, s: ScoreRow) -> None:
        s.created_at = s.created_at or now_iso()
        row = dict(s.__dict__)
        row["details"] = json.dumps(s.details)
        with self.db.conn:
            self.db["autointerp_scores"].insert(row, replace=True)

    def explanations(self, analysis_id: str, *, model_id: str = "", prompt_version: str = "",
                     seed: int | None = None, feature: int | None = None,
                     text: str = "") -> list[Explanation]:
        where, args = where_equal(
            model_id=model_id, prompt_version=prompt_version,
            seed=None if seed is None else int(seed),
            feature=None if feature is None else int(feature))
        where, args = ["analysis_id = ?", *where], [analysis_id, *args]
        if text:
            where.append("explanation like ?")
            args.append(f"%{text}%")
        rows = self.db["autointerp_explanations"].rows_where(
            " and ".join(where), args, order_by="feature, created_at desc")
        return [Explanation(**dict(r)) for r in rows]

    def scores(self, analysis_id: str, *, feature: int | None = None, scorer: str = "",
               model_id: str = "", prompt_version: str = "", seed: int | None = None
               ) -> list[ScoreRow]:
        where, args = where_equal(
            scorer=scorer, model_id=model_id, prompt_version=prompt_version,
            seed=None if seed is None else int(seed),
            feature=None if feature is None else int(feature))
        where, args = ["analysis_id = ?", *where], [analysis_id, *args]
        out = []
        for r in self.db["autointerp_scores"].rows_where(" and ".join(where), args,
                                                         order_by="feature"):
            r = dict(r)
            r["details"] = json.loads(r.get("details") or "[]")
            out.append(ScoreRow(**r))
        return out
