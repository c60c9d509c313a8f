"""Labels, notes, favourites and lists: stored per (SAE, feature), searchable, exported and
imported as JSON/CSV; bad files change nothing."""

from __future__ import annotations

import csv
import json

import pytest

from mistudio.errors import UserError


def test_label_notes_favourite_survive_a_new_studio(studio, sae_in_studio, data_dir):
    sae, _, _ = sae_in_studio
    svc = studio.feature_labels
    svc.set_label(sae.id, 7, "  French\n text ")
    svc.set_notes(sae.id, 7, "fires on accents\n")
    svc.set_favourite(sae.id, 9, True)
    studio.close()

    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio

    again = Studio(data_dir, secrets=MemorySecrets())
    try:
        anns = again.feature_labels.annotations(sae.id)
        assert anns[7].label == "French text" and anns[7].notes == "fires on accents"
        assert anns[9].favourite and not anns[7].favourite
        assert sorted(anns) == [7, 9]
        # clearing everything removes the row
        again.feature_labels.set_favourite(sae.id, 9, False)
        assert 9 not in again.feature_labels.annotations(sae.id)
    finally:
        again.close()


def test_bad_index_and_unknown_sae_are_user_errors(studio, sae_in_studio):
    sae, _, _ = sae_in_studio
    with pytest.raises(UserError, match="1200 features"):
        studio.feature_labels.set_label(sae.id, 1200, "x")
    with pytest.raises(UserError, match="No SAE"):
        studio.feature_labels.set_label("sae_nope", 1, "x")
    with pytest.raises(UserError, match="at most"):
        studio.feature_labels.set_label(sae.id, 1, "x" * 500)


def test_search_matches_label_and_notes_case_insensitively(studio, sae_in_studio):
    sae, _, _ = sae_in_studio
    svc = studio.feature_labels
    svc.set_label(sae.id, 3, "Capital cities")
    svc.set_notes(sae.id, 40, "mostly CAPITAL letters")
    svc.set_label(sae.id, 41, "numbers")
    assert svc.search(sae.id, "capital") == [3, 40]
    assert svc.search(sae.id, "  ") == []


def test_lists_add_remove_rename_delete(studio, sae_in_studio):
    sae, _, _ = sae_in_studio
    svc = studio.feature_labels
    rec = svc.create_list(sae.id, "Geography", [5, 1, 5])
    assert rec.size == 2 and svc.list_members(rec.id) == [1, 5]
    assert svc.add_to_list(rec.id, [5, 6, 7]) == 2
    with pytest.raises(UserError, match="already has a list"):
        svc.create_list(sae.id, "geography")
    with pytest.raises(UserError, match="does not exist"):
        svc.add_to_list(rec.id, [3, 99999])
    assert svc.list_members(rec.id) == [1, 5, 6, 7]  # the bad batch added nothing
    svc.remove_from_list(rec.id, [6])
    assert [l.name for l in svc.lists_of(sae.id, 5)] == ["Geography"]
    assert svc.rename_list(rec.id, "Places").name == "Places"
    svc.delete_list(rec.id)
    assert svc.lists(sae.id) == []


def test_export_and_import_round_trip_json_and_csv(studio, sae_in_studio, tmp_path):
    sae, _, _ = sae_in_studio
    svc = studio.feature_labels
    svc.set_label(sae.id, 2, "commas, quotes \"x\"")
    svc.set_notes(sae.id, 2, "line one\nline two")
    svc.set_favourite(sae.id, 11, True)
    svc.create_list(sae.id, "Punctuation", [2, 11])
    for suffix in ("json", "csv"):
        path = tmp_path / f"labels.{suffix}"
        assert svc.export_labels(sae.id, path) == 2
        if suffix == "json":
            data = json.loads(path.read_text())
            assert data["d_sae"] == 1200
            assert data["features"][0] == {"index": 2, "label": 'commas, quotes "x"',
                                           "notes": "line one\nline two", "favourite": False,
                                           "lists": ["Punctuation"]}
        else:
            with path.open(newline="") as f:
                rows = list(csv.DictReader(f))
            assert rows[1] == {"index": "11", "label": "", "notes": "", "favourite": "1",
                               "lists": "Punctuation"}
        # into a second SAE: the same annotations and the list come back
        from tests.features_tab.conftest import register_sae

        other = register_sae(studio, sae.folder, sae_id=f"sae_other_{suffix}")
        result = svc.import_labels(other.id, path)
        assert result == {"features": 2, "labelled": 1, "list_members_added": 2}
        anns = svc.annotations(other.id)
        assert anns[2].label == 'commas, quotes "x"' and anns[2].notes == "line one\nline two"
        assert anns[11].favourite
        assert [(l.name, l.size) for l in svc.lists(other.id)] == [("Punctuation", 2)]


def test_import_accepts_neuronpedia_style_explanations(studio, sae_in_studio, tmp_path):
    sae, _, _ = sae_in_studio
    path = tmp_path / "np.json"
    path.write_text(json.dumps({"explanations": [{"feature_index": 4, "description": "dates"}]}))
    studio.feature_labels.set_notes(sae.id, 4, "kept")
    studio.feature_labels.import_labels(sae.id, path)
    ann = studio.feature_labels.annotation(sae.id, 4)
    assert (ann.label, ann.notes) == ("dates", "kept")  # fields the file lacks are kept


@pytest.mark.parametrize("name,text,message", [
    ("bad.json", "{not json", "not valid JSON"),
    ("bad.json", json.dumps({"features": [{"label": "x"}]}), "no feature index"),
    ("bad.csv", "label\nx\n", "no 'index' column"),
    ("bad.csv", "index,label\n3,ok\n5000,too far\n", "line 3: feature index 5000"),
    ("bad.csv", "index,label\nseven,x\n", "not a whole number"),
    ("bad.txt", "x", ".json or .csv"),
])
def test_bad_label_files_change_nothing(studio, sae_in_studio, tmp_path, name, text, message):
    sae, _, _ = sae_in_studio
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        studio.feature_labels.import_labels(sae.id, path)
    assert studio.feature_labels.annotations(sae.id) == {}
