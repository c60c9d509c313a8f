"""Rows of ``feature_annotations``, ``feature_lists`` and ``feature_list_members``."""

from __future__ import annotations

from dataclasses import dataclass

from mistudio.store.db import Store, new_id, now_iso


@dataclass
class FeatureAnnotation:
    sae_id: str
    feature_index: int
    label: str = ""
    notes: str = ""
    favourite: bool = False
    updated_at: str = ""

    @property
    def is_empty(self) -> bool:
        return not (self.label or self.notes or self.favourite)

    @classmethod
    def from_row(cls, row: dict) -> "FeatureAnnotation":
        return cls(sae_id=row["sae_id"], feature_index=int(row["feature_index"]),
                   label=row.get("label") or "", notes=row.get("notes") or "",
                   favourite=bool(row.get("favourite")), updated_at=row.get("updated_at") or "")


@dataclass
class FeatureList:
    id: str
    sae_id: str
    name: str
    description: str = ""
    created_at: str = ""
    size: int = 0


class FeatureLabelsRepo:
    def __init__(self, store: Store):
        self.store = store

    # ------------------------------------------------------------ annotations

    def get(self, sae_id: str, index: int) -> FeatureAnnotation:
        rows = list(self.store.db["feature_annotations"].rows_where(
            "sae_id = ? and feature_index = ?", [sae_id, int(index)]))
        return FeatureAnnotation.from_row(rows[0]) if rows else FeatureAnnotation(sae_id, int(index))

    def all(self, sae_id: str) -> dict[int, FeatureAnnotation]:
        rows = self.store.db["feature_annotations"].rows_where("sae_id = ?", [sae_id])
        return {int(r["feature_index"]): FeatureAnnotation.from_row(r) for r in rows}

    def put(self, ann: FeatureAnnotation) -> FeatureAnnotation:
        """Insert or replace; an annotation with nothing left in it is deleted."""
        ann.updated_at = now_iso()
        db = self.store.db
        with db.conn:
            if ann.is_empty:
                db["feature_annotations"].delete_where(
                    "sae_id = ? and feature_index = ?", [ann.sae_id, ann.feature_index])
            else:
                db["feature_annotations"].insert(
                    {"sae_id": ann.sae_id, "feature_index": ann.feature_index, "label": ann.label,
                     "notes": ann.notes, "favourite": int(ann.favourite),
                     "updated_at": ann.updated_at}, replace=True)
        return ann

    def put_many(self, anns: list[FeatureAnnotation]) -> None:
        now = now_iso()
        db = self.store.db
        with db.conn:
            for ann in anns:
                ann.updated_at = now
                db["feature_annotations"].insert(
                    {"sae_id": ann.sae_id, "feature_index": ann.feature_index, "label": ann.label,
                     "notes": ann.notes, "favourite": int(ann.favourite),
                     "updated_at": now}, replace=True)

    def search(self, sae_id: str, query: str) -> list[int]:
        like = f"%{query}%"
        rows = self.store.db.execute(
            "select feature_index from feature_annotations where sae_id = ? and "
            "(label like ? or notes like ?) order by feature_index", [sae_id, like, like])
        return [int(r[0]) for r in rows.fetchall()]

    def delete_for_sae(self, sae_id: str) -> None:
        db = self.store.db
        with db.conn:
            db.execute("delete from feature_list_members where list_id in "
                       "(select id from feature_lists where sae_id = ?)", [sae_id])
            db["feature_lists"].delete_where("sae_id = ?", [sae_id])
            db["feature_annotations"].delete_where("sae_id = ?", [sae_id])

    # ------------------------------------------------------------ lists

    def lists(self, sae_id: str) -> list[FeatureList]:
        rows = self.store.db.execute(
            "select l.id, l.sae_id, l.name, l.description, l.created_at, count(m.feature_index) "
            "from feature_lists l left join feature_list_members m on m.list_id = l.id "
            "where l.sae_id = ? group by l.id order by l.name collate nocase", [sae_id])
        return [FeatureList(*r[:5], size=int(r[5])) for r in rows.fetchall()]

    def get_list(self, list_id: str) -> FeatureList | None:
        rows = self.store.db.execute(
            "select l.id, l.sae_id, l.name, l.description, l.created_at, count(m.feature_index) "
            "from feature_lists l left join feature_list_members m on m.list_id = l.id "
            "where l.id = ? group by l.id", [list_id]).fetchall()
        return FeatureList(*rows[0][:5], size=int(rows[0][5])) if rows else None

    def find_list(self, sae_id: str, name: str) -> FeatureList | None:
        rows = list(self.store.db["feature_lists"].rows_where(
            "sae_id = ? and name = ? collate nocase", [sae_id, name]))
        return self.get_list(rows[0]["id"]) if rows else None

    def create_list(self, sae_id: str, name: str, description: str = "") -> FeatureList:
        rec = FeatureList(new_id("fl"), sae_id, name, description, now_iso())
        with self.store.db.conn:
            self.store.db["feature_lists"].insert(
                {"id": rec.id, "sae_id": sae_id, "name": name, "description": description,
                 "created_at": rec.created_at})
        return rec

    def rename_list(self, list_id: str, name: str) -> None:
        with self.store.db.conn:
            self.store.db["feature_lists"].update(list_id, {"name": name})

    def delete_list(self, list_id: str) -> None:
        db = self.store.db
        with db.conn:
            db["feature_list_members"].delete_where("list_id = ?", [list_id])
            db["feature_lists"].delete_where("id = ?", [list_id])

    def members(self, list_id: str) -> list[int]:
        rows = self.store.db.execute(
            "select feature_index from feature_list_members where list_id = ? "
            "order by feature_index", [list_id])
        return [int(r[0]) for r in rows.fetchall()]

    def add_members(self, list_id: str, indices) -> int:
        now = now_iso()
        rows = [{"list_id": list_id, "feature_index": int(i), "added_at": now} for i in indices]
        with self.store.db.conn:
            before = self.store.db["feature_list_members"].count_where("list_id = ?", [list_id])
            self.store.db["feature_list_members"].insert_all(rows, ignore=True, batch_size=2000)
            after = self.store.db["feature_list_members"].count_where("list_id = ?", [list_id])
        return after - before

    def remove_members(self, list_id: str, indices) -> None:
        with self.store.db.conn:
            self.store.db.conn.executemany(
                "delete from feature_list_members where list_id = ? and feature_index = ?",
                [(list_id, int(i)) for i in indices])

    def lists_of(self, sae_id: str, index: int) -> list[str]:
        rows = self.store.db.execute(
            "select l.id from feature_lists l join feature_list_members m on m.list_id = l.id "
            "where l.sae_id = ? and m.feature_index = ? order by l.name", [sae_id, int(index)])
        return [r[0] for r in rows.fetchall()]
