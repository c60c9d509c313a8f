"""Rows of the ``jobs`` table."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Iterable

from mistudio.store.db import Store, now_iso
from mistudio.store.rows import RowMapper

ACTIVE = ("queued", "running", "paused")
#: ``resumed``: the job stopped (interrupted, cancelled) and a later job continued its work
FINISHED = ("completed", "failed", "cancelled", "interrupted", "resumed")
STATUSES = ACTIVE + FINISHED


@dataclass
class JobRecord:
    id: str
    kind: str
    status: str
    title: str = ""
    target: str = ""
    params: dict = field(default_factory=dict)
    progress: float = 0.0
    total: float | None = None
    message: str = ""
    error: str = ""
    traceback: str = ""
    result: Any = None
    artifact_dir: str = ""
    checkpoint: Any = None
    eta_s: float | None = None
    log_path: str = ""
    gpu: bool = False
    owner_pid: int | None = None
    owner_started: float | None = None
    created_at: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    updated_at: str | None = None

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return max(0.0, min(1.0, self.progress / self.total))

    @classmethod
    def from_row(cls, row: dict) -> "JobRecord":
        rec = ROWS.from_row(row)
        rec.progress = rec.progress or 0.0
        return rec


ROWS = RowMapper(JobRecord, json=("result", "checkpoint"))


def _process_started(pid: int) -> float | None:
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:
        return None


_OWN_PID = os.getpid()
_OWN_STARTED = _process_started(_OWN_PID)


def owner_alive(pid: int | None, started: float | None) -> bool:
    """Is the process that owns a job still the same live process (pid reuse is checked)?"""
    if not pid:
        return False
    now_started = _process_started(pid)
    if now_started is None:
        return False
    return started is None or abs(now_started - started) < 1.0


class JobsRepo:
    def __init__(self, store: Store):
        self.store = store

    @property
    def table(self):
        return self.store.db["jobs"]

    def insert(self, rec: JobRecord) -> JobRecord:
        now = now_iso()
        rec.created_at = rec.created_at or now
        self.table.insert(
            {
                "id": rec.id, "kind": rec.kind, "title": rec.title, "target": rec.target,
                "params": json.dumps(rec.params, default=str), "status": rec.status,
                "progress": rec.progress, "total": rec.total, "message": rec.message,
                "artifact_dir": rec.artifact_dir, "log_path": rec.log_path, "gpu": int(rec.gpu),
                "owner_pid": _OWN_PID, "owner_started": _OWN_STARTED,
                "created_at": rec.created_at, "updated_at": now,
            }
        )
        return rec

    def _select(self, where: str = "", args: list | tuple = (), suffix: str = "") -> list[dict]:
        # Plain SQL on hot paths: sqlite-utils' table lookups cost several extra queries per
        # call, and every query hands the GIL back and forth with busy job threads.
        cur = self.store.db.conn.execute(
            f"select * from jobs {'where ' + where if where else ''} {suffix}", list(args))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def change_token(self) -> tuple:
        """Changes when any job row is added, updated or deleted (by any process): the
        window polls it to show jobs that another process (a CLI command) runs."""
        return tuple(self.store.db.conn.execute(
            "select count(*), max(updated_at), max(created_at) from jobs").fetchone())

    def get(self, job_id: str) -> JobRecord | None:
        rows = self._select("id = ?", [job_id])
        return JobRecord.from_row(rows[0]) if rows else None

    def update(self, job_id: str, **fields: Any) -> None:
        self._update(job_id, fields)

    def update_if_active(self, job_id: str, **fields: Any) -> bool:
        """Update the row only while the job is still queued, running or paused: a note
        about a job in flight ("Cancelling...") must never overwrite the outcome that its
        own thread (or process) recorded a moment earlier. Returns whether it did."""
        return self._update(job_id, fields, f"status in ({','.join('?' * len(ACTIVE))})",
                            ACTIVE) > 0

    def _update(self, job_id: str, fields: dict, where: str = "", args: tuple = ()) -> int:
        fields = ROWS.encode(fields)
        fields["updated_at"] = now_iso()
        cols = ", ".join(f"[{k}] = ?" for k in fields)
        condition = "id = ?" + (f" and {where}" if where else "")
        with self.store.db.conn as conn:
            return conn.execute(f"update jobs set {cols} where {condition}",
                                [*fields.values(), job_id, *args]).rowcount

    def list(self, *, status: Iterable[str] | None = None, kind: str | None = None,
             target: str | None = None, limit: int | None = None) -> list[JobRecord]:
        where, args = [], []
        if status:
            status = list(status)
            where.append(f"status in ({','.join('?' * len(status))})")
            args += status
        if kind:
            where.append("kind = ?")
            args.append(kind)
        if target:
            where.append("target = ?")
            args.append(target)
        suffix = "order by created_at desc" + (f" limit {int(limit)}" if limit else "")
        return [JobRecord.from_row(r) for r in self._select(" and ".join(where), args, suffix)]

    def live_foreign_jobs(self) -> list[str]:
        """Active jobs owned by another process that is still alive (e.g. the GUI beside the CLI)."""
        return [r["id"] for r in self._select("status in ('running','paused','queued')")
                if r.get("owner_pid") != _OWN_PID
                and owner_alive(r.get("owner_pid"), r.get("owner_started"))]

    def mark_interrupted(self) -> list[str]:
        """Jobs left active by a process that died become ``interrupted``. Returns their ids.

        Jobs of another live process are left alone.
        """
        ids = [r["id"] for r in self._select("status in ('running','paused','queued')")
               if not (r.get("owner_pid") != _OWN_PID
                       and owner_alive(r.get("owner_pid"), r.get("owner_started")))]
        now = now_iso()
        with self.store.db.conn:
            for job_id in ids:
                self.table.update(job_id, {
                    "status": "interrupted", "finished_at": now, "updated_at": now,
                    "message": "Interrupted: the app stopped while this job was running.",
                })
        return ids

    def delete(self, job_id: str) -> None:
        with self.store.db.conn:
            self.store.db["job_metrics"].delete_where("job_id = ?", [job_id])
            self.table.delete_where("id = ?", [job_id])

    # metrics (batched by the caller)
    def add_metrics(self, rows: list[dict]) -> None:
        if rows:
            with self.store.db.conn:
                self.store.db["job_metrics"].insert_all(rows, batch_size=500)

    def best_and_last(self, job_ids: list[str], name: str, *, higher_is_better: bool
                      ) -> tuple[float | None, float | None]:
        """Best and last value of one metric over a training's jobs (oldest first),
        aggregated by SQLite through the ``(job_id, name, step)`` index (never reading every
        point into Python). A job's points from the first step of a later job (a resume) on
        were replaced by it, so they are left out."""
        func = "max" if higher_is_better else "min"
        db = self.store.db
        cutoffs, cut = {}, 1e300
        for job_id in reversed(job_ids):
            cutoffs[job_id] = cut
            if len(job_ids) > 1:
                (first,) = db.execute("select min(step) from job_metrics where job_id = ? and "
                                      "name = ?", [job_id, name]).fetchone()
                if first is not None:
                    cut = min(cut, float(first))
        pick = max if higher_is_better else min
        best = last = None
        for job_id in job_ids:
            args = [job_id, name, cutoffs[job_id]]
            (value,) = db.execute(f"select {func}(value) from job_metrics where job_id = ? and "
                                  "name = ? and step < ?", args).fetchone()
            if value is None:
                continue
            best = value if best is None else pick(best, value)
            row = db.execute("select value from job_metrics where job_id = ? and name = ? and "
                             "step < ? and value is not null order by step desc limit 1",
                             args).fetchone()
            if row is not None:
                last = row[0]
        return best, last

    def metric_series(self, job_id: str) -> dict:
        """Each metric's points as an ``(n, 3)`` float array of ``(t, step, value)``, ordered
        by ``t`` then ``step``. SQLite joins each metric's values into one text (exact:
        17 significant digits; a NULL, which is how SQLite stores NaN, becomes ``nan``), so
        a run's 30,000 rows cost 15 strings instead of 30,000 Python rows: the read runs
        mostly in SQLite without the GIL, and leaves the garbage collector nothing to chase
        (a full collection set off by a read once froze the window for 0.1 s)."""
        import numpy as np

        def numbers(column: str) -> str:
            return (f"group_concat(case when {column} is null then 'nan' else "
                    f"printf('%!.17g', {column}) end, ',')")

        out = {}
        for name, ts, steps, values in self.store.db.execute(
                f"select name, {numbers('t')}, group_concat(step, ','), {numbers('value')} "
                "from (select name, coalesce(t, 0.0) as t, step, value from job_metrics "
                "where job_id = ? order by name, step) group by name", [job_id]).fetchall():
            cols = [np.fromstring(text or "", sep=",") for text in (ts, steps, values)]
            arr = np.column_stack(cols) if len({len(c) for c in cols}) == 1 else \
                np.empty((0, 3))
            out[name] = arr[np.lexsort((arr[:, 1], arr[:, 0]))]
        return out

    def metrics(self, job_id: str, name: str | None = None) -> list[dict]:
        if name:
            return list(self.store.db["job_metrics"].rows_where(
                "job_id = ? and name = ?", [job_id, name], order_by="step"))
        return list(self.store.db["job_metrics"].rows_where("job_id = ?", [job_id],
                                                            order_by="step"))
