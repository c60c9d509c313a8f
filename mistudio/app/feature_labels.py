"""Labels, notes, favourites and lists of SAE features: what the user writes about them.

Stored per (SAE, feature index), independent of any analysis, so they survive a re-analysis.
The Features tab and the CLI call this service; it never touches Qt.
"""

from __future__ import annotations

from pathlib import Path

from mistudio.errors import UserError
from mistudio.labels import exchange
from mistudio.labels.repository import FeatureAnnotation, FeatureLabelsRepo, FeatureList
from mistudio.paths import atomic_write_text
from mistudio.sae.repository import SAEsRepo

MAX_LABEL = 200
MAX_NOTES = 20_000


class FeatureLabelService:
    def __init__(self, labels: FeatureLabelsRepo, saes: SAEsRepo):
        self.labels = labels
        self.saes = saes

    def _d_sae(self, sae_id: str) -> int:
        rec = self.saes.get(sae_id)
        if rec is None:
            raise UserError(f"No SAE with id {sae_id!r}.", hint="`mistudio sae list` shows them.")
        return int(rec.d_sae)

    def _check(self, sae_id: str, index: int) -> int:
        d_sae = self._d_sae(sae_id)
        if not 0 <= int(index) < d_sae:
            raise UserError(f"Feature {index} does not exist: this SAE has {d_sae} features "
                            f"(0 .. {d_sae - 1}).", hint="Pick an index in that range.")
        return int(index)

    # ------------------------------------------------------------ one feature

    def annotation(self, sae_id: str, index: int) -> FeatureAnnotation:
        return self.labels.get(sae_id, self._check(sae_id, index))

    def annotations(self, sae_id: str) -> dict[int, FeatureAnnotation]:
        return self.labels.all(sae_id)

    def _update(self, sae_id: str, index: int, **changes) -> FeatureAnnotation:
        ann = self.labels.get(sae_id, self._check(sae_id, index))
        for key, value in changes.items():
            setattr(ann, key, value)
        return self.labels.put(ann)

    def set_label(self, sae_id: str, index: int, label: str) -> FeatureAnnotation:
        label = " ".join(label.split())  # one line: labels show in table cells and chips
        if len(label) > MAX_LABEL:
            raise UserError(f"A label is at most {MAX_LABEL} characters (this one has "
                            f"{len(label)}).", hint="Put the longer text in the notes.")
        return self._update(sae_id, index, label=label)

    def set_notes(self, sae_id: str, index: int, notes: str) -> FeatureAnnotation:
        if len(notes) > MAX_NOTES:
            raise UserError(f"Notes are at most {MAX_NOTES:,} characters.",
                            hint="Keep long write-ups in a file and link it here.")
        return self._update(sae_id, index, notes=notes.rstrip())

    def set_favourite(self, sae_id: str, index: int, favourite: bool) -> FeatureAnnotation:
        return self._update(sae_id, index, favourite=bool(favourite))

    def search(self, sae_id: str, query: str) -> list[int]:
        """Features whose label or notes contain ``query`` (case-insensitive)."""
        query = query.strip()
        return self.labels.search(sae_id, query) if query else []

    # ------------------------------------------------------------ lists

    def lists(self, sae_id: str) -> list[FeatureList]:
        return self.labels.lists(sae_id)

    def get_list(self, list_id: str) -> FeatureList:
        rec = self.labels.get_list(list_id)
        if rec is None:
            raise UserError(f"No feature list with id {list_id!r}.",
                            hint="It may have been deleted; pick another list.")
        return rec

    def create_list(self, sae_id: str, name: str, indices=(), description: str = "") -> FeatureList:
        name = " ".join(name.split())
        if not name:
            raise UserError("A list needs a name.", hint="Type a short name, e.g. 'French text'.")
        self._d_sae(sae_id)
        if self.labels.find_list(sae_id, name) is not None:
            raise UserError(f"This SAE already has a list named {name!r}.",
                            hint="Choose another name, or add the features to that list.")
        rec = self.labels.create_list(sae_id, name, description)
        if len(indices):
            self.add_to_list(rec.id, indices)
        return self.get_list(rec.id)

    def rename_list(self, list_id: str, name: str) -> FeatureList:
        rec = self.get_list(list_id)
        name = " ".join(name.split())
        other = self.labels.find_list(rec.sae_id, name)
        if not name or (other is not None and other.id != list_id):
            raise UserError(f"Cannot rename the list to {name!r}: the name is empty or taken.",
                            hint="Choose another name.")
        self.labels.rename_list(list_id, name)
        return self.get_list(list_id)

    def delete_list(self, list_id: str) -> None:
        self.labels.delete_list(self.get_list(list_id).id)

    def add_to_list(self, list_id: str, indices) -> int:
        """Add features (duplicates ignored); returns how many were new."""
        rec = self.get_list(list_id)
        d_sae = self._d_sae(rec.sae_id)
        indices = sorted({int(i) for i in indices})
        bad = [i for i in indices if not 0 <= i < d_sae]
        if bad:
            raise UserError(f"Feature {bad[0]} does not exist in this SAE (0 .. {d_sae - 1}).",
                            hint="Nothing was added.")
        return self.labels.add_members(list_id, indices)

    def remove_from_list(self, list_id: str, indices) -> None:
        self.labels.remove_members(self.get_list(list_id).id, indices)

    def list_members(self, list_id: str) -> list[int]:
        return self.labels.members(self.get_list(list_id).id)

    def lists_of(self, sae_id: str, index: int) -> list[FeatureList]:
        ids = set(self.labels.lists_of(sae_id, index))
        return [rec for rec in self.labels.lists(sae_id) if rec.id in ids]

    # ------------------------------------------------------------ files

    def _rows(self, sae_id: str, indices=None) -> list[exchange.LabelRow]:
        anns = self.labels.all(sae_id)
        names = {rec.id: rec.name for rec in self.labels.lists(sae_id)}
        member_of: dict[int, list[str]] = {}
        for list_id, name in names.items():
            for i in self.labels.members(list_id):
                member_of.setdefault(i, []).append(name)
        keep = set(anns) | set(member_of)
        if indices is not None:
            keep &= {int(i) for i in indices}
        return [exchange.LabelRow(i, anns[i].label if i in anns else "",
                                  anns[i].notes if i in anns else "",
                                  anns[i].favourite if i in anns else False,
                                  sorted(member_of.get(i, [])))
                for i in sorted(keep)]

    def export_labels(self, sae_id: str, path: str | Path, indices=None) -> int:
        """Write labels, notes, favourites and list names (JSON or CSV by the suffix)."""
        path = Path(path)
        rows = self._rows(sae_id, indices)
        if path.suffix.lower() == ".csv":
            text = exchange.to_csv(rows)
        elif path.suffix.lower() == ".json":
            text = exchange.to_json(sae_id, self._d_sae(sae_id), rows)
        else:
            raise UserError(f"{path.name}: labels export writes .json or .csv.",
                            hint="Give the file a .json or .csv name.")
        try:
            atomic_write_text(path, text)
        except OSError as exc:
            raise UserError(f"Cannot write {path}: {exc.strerror or exc}.",
                            hint="Choose a folder you can write to.") from exc
        return len(rows)

    def import_labels(self, sae_id: str, path: str | Path) -> dict:
        """Merge a labels file into this SAE: the file's fields win, fields it lacks are kept.

        The whole file is checked first; a bad row changes nothing."""
        rows = exchange.read_file(path, self._d_sae(sae_id))
        existing = self.labels.all(sae_id)
        out = []
        for row in rows:
            ann = existing.get(row.index) or FeatureAnnotation(sae_id, row.index)
            if row.label is not None:
                ann.label = " ".join(row.label.split())[:MAX_LABEL]
            if row.notes is not None:
                ann.notes = row.notes[:MAX_NOTES]
            if row.favourite is not None:
                ann.favourite = row.favourite
            out.append(ann)
        self.labels.put_many(out)
        added = 0
        for name in sorted({n for row in rows for n in row.lists}):
            rec = self.labels.find_list(sae_id, name) or self.labels.create_list(sae_id, name)
            added += self.labels.add_members(rec.id, [r.index for r in rows if name in r.lists])
        return {"features": len(out), "labelled": sum(1 for a in out if a.label),
                "list_members_added": added}
