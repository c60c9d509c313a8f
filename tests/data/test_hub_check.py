"""The Hub import dialog's Check: configurations, splits and columns listed in the
background; offline, unknown and wrong-config cases say what to do. The 'Hub' here is a
local folder in the Hub's layout (datasets reads it the same way); the test runs offline."""

from __future__ import annotations

import json

import pytest

from mistudio.errors import UserError

pytest.importorskip("pytestqt")


@pytest.fixture
def hub_folder(tmp_path):
    root = tmp_path / "hub_ds"
    (root / "data").mkdir(parents=True)
    rows = [{"story": f"Once upon a time {i}", "summary": f"s{i}", "label": i % 2}
            for i in range(20)]
    (root / "data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "data" / "validation.jsonl").write_text(json.dumps(rows[0]) + "\n")
    return root


def test_check_hub_lists_configs_splits_and_columns(studio, hub_folder):
    info = studio.datasets.check_hub(str(hub_folder), split="validation")
    assert info["configs"] == ["default"] and info["config"] == "default"
    assert sorted(info["splits"]) == ["train", "validation"] and info["split"] == "validation"
    assert [c["name"] for c in info["columns"]] == ["story", "summary", "label"]
    assert info["text_candidates"] == ["story", "summary"]
    assert info["text_column"] == "story"  # a preferred name wins over 'summary'
    assert info["preview"][0]["story"] == "Once upon a time 0"
    info = studio.datasets.check_hub(str(hub_folder), split="test")
    assert info["split"] == "train" and "No split 'test'" in info["message"]
    with pytest.raises(UserError, match="no configuration 'nope'"):
        studio.datasets.check_hub(str(hub_folder), config="nope")
    with pytest.raises(UserError, match="Could not reach the Hugging Face Hub"):
        studio.datasets.check_hub("someone/some-dataset")
    with pytest.raises(UserError, match="No Hugging Face dataset id"):
        studio.datasets.check_hub("  ")


def test_check_button_fills_the_dialog_in_the_background(qtbot, studio, hub_folder):
    from mistudio.ui.datasets.dialogs import AddDatasetDialog

    dlg = AddDatasetDialog(studio)
    qtbot.addWidget(dlg)
    dlg.tabs.setCurrentIndex(1)
    dlg.check_hub()
    assert "Type a dataset id" in dlg.hub_info.text()

    dlg.hub_id_edit.setText("someone/some-dataset")
    dlg.check_hub()
    assert dlg.checking()  # returned at once; the answer comes through the event loop
    qtbot.waitUntil(lambda: not dlg.checking(), timeout=30_000)
    assert "Could not reach the Hugging Face Hub" in dlg.hub_info.text()
    assert "b91c1c" in dlg.hub_info.styleSheet()

    dlg.hub_id_edit.setText(str(hub_folder))
    dlg.check_hub()
    qtbot.waitUntil(lambda: not dlg.checking(), timeout=30_000)
    splits = [dlg.split_edit.itemText(i) for i in range(dlg.split_edit.count())]
    assert sorted(splits) == ["train", "validation"] and dlg.split_edit.currentText() == "train"
    assert dlg.hub_column_edit.currentText() == "story"
    assert "Columns: story (string), summary (string), label (int64)" in dlg.hub_info.text()
    dlg.hub_column_edit.setEditText("summary")
    dlg.split_edit.setEditText("validation")
    src = dlg.source()
    assert (src["kind"], src["hub_id"], src["split"], src["text_column"], src["config"]) == \
        ("hub", str(hub_folder), "validation", "summary", "default")

    # the checked source imports as shown
    rec, job = studio.datasets.add(src)
    assert studio.jobs.wait(job.id, 60).status == "completed"
    assert [r["text"] for r in studio.datasets.documents(rec.id)] == ["s0"]
