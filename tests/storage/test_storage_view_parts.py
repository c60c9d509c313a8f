"""File > Storage's newer parts (pytest-qt): the free space against the largest recent job
estimate, the cleanup policy edited, saved and previewed (the run deletes what the preview
listed), the last run's summary, moving the data folder with progress, the policy in File >
Settings, and the start-up cleanup in the background with its summary in the status bar."""

from __future__ import annotations

import os

import pytest

from mistudio.activations.repository import ActivationSetRecord, ActivationSetsRepo


def _sets(studio, n=3):
    root = studio.paths.root
    recs = []
    for i in range(1, n + 1):
        folder = root / "activations" / f"act_{i}"
        folder.mkdir(parents=True)
        (folder / "shard.npy").write_bytes(os.urandom(30_000))
        recs.append(ActivationSetRecord(id=f"act_{i}", hook_name="blocks.0.hook_resid_post",
                                        status="ready", folder=str(folder),
                                        created_at=f"2026-01-0{i}T00:00:00"))
    ActivationSetsRepo(studio.store).insert_all(recs)


def _open(studio, qtbot):
    from mistudio.ui.storage_dialog import StorageDialog

    dlg = StorageDialog(studio)
    qtbot.addWidget(dlg)
    qtbot.waitUntil(lambda: dlg.usage is not None and dlg.outlook is not None
                    and not dlg.busy(), timeout=20_000)
    return dlg


def test_space_line_compares_free_space_with_the_largest_recent_estimate(studio, qtbot):
    from mistudio.paths import check_free_space

    check_free_space(studio.paths.root / "activations", 50 * 1024 ** 2,
                     what="the activations (2 hook point(s))")
    dlg = _open(studio, qtbot)
    text = dlg.space.text()
    assert "the activations (2 hook point(s)), about 55.0 MB" in text and "Fits" in text
    dlg.grab()  # paints


def test_policy_edit_save_preview_and_clean(studio, qtbot, monkeypatch):
    _sets(studio)
    studio.activations.set_pinned("act_2", True)
    dlg = _open(studio, qtbot)
    form = dlg.policy_form
    assert form.keep_sets.value() == 0 and not form.thin.isChecked()  # off by default
    assert "none yet" in dlg.last_run.text()
    form.keep_sets.setValue(1)
    assert dlg.save_policy_btn.isEnabled()
    dlg.save_policy()
    assert studio.storage.policy().keep_activation_sets == 1
    dlg.preview_cleanup()
    qtbot.waitUntil(lambda: dlg.plan is not None, timeout=20_000)
    goes = dlg.plan_tree.topLevelItem(0)
    assert [goes.child(i).text(0) for i in range(goes.childCount())] == \
        ["activation set: activation_sets:act_1"]
    kept = dlg.plan_tree.topLevelItem(1)
    assert any("pinned" in kept.child(i).text(2) for i in range(kept.childCount()))
    monkeypatch.setattr(dlg, "_confirm", lambda *a: True)
    dlg.run_cleanup()
    # a finished call's result reaches the dialog by a queued signal: wait for the label
    qtbot.waitUntil(lambda: "deleted 1 item(s)" in dlg.last_run.text(), timeout=20_000)
    assert ActivationSetsRepo(studio.store).get("act_1") is None
    assert not (studio.paths.root / "activations" / "act_1").exists()
    assert (studio.paths.root / "activations" / "act_2").exists()
    assert "deleted 1 item(s) (1 activation set)" in dlg.last_run.text()
    # the reads that follow a clean end before the fixture closes the database (a read still
    # running on a closed sqlite connection crashes the process)
    qtbot.waitUntil(lambda: not dlg.busy(), timeout=20_000)


def test_editing_the_policy_after_a_preview_asks_for_a_new_one(studio, qtbot):
    _sets(studio)
    dlg = _open(studio, qtbot)
    dlg.policy_form.keep_sets.setValue(1)
    dlg.preview_cleanup()
    qtbot.waitUntil(lambda: dlg.plan is not None, timeout=20_000)
    assert dlg.clean_btn.isEnabled()
    dlg.policy_form.keep_sets.setValue(0)
    assert dlg.plan is None and not dlg.clean_btn.isEnabled()
    assert "preview again" in dlg.message.text()


def test_move_page_moves_with_progress_then_closes_the_app(studio, qtbot, tmp_path,
                                                            monkeypatch):
    from mistudio import paths

    monkeypatch.delenv("MISTUDIO_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    _sets(studio)
    old = studio.paths.root
    dlg = _open(studio, qtbot)
    page = dlg.move_page
    monkeypatch.setattr(dlg, "_confirm", lambda *a: True)
    quits = []
    monkeypatch.setattr(dlg, "_quit_app", lambda: quits.append(True))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    page.dest.setText(str(tmp_path / "full"))
    page.start()
    qtbot.waitUntil(lambda: not page.running() and page.move_btn.isEnabled(), timeout=20_000)
    assert "not empty" in page.status.text() and old.exists() and not quits
    page.dest.setText(str(tmp_path / "ext"))
    page.start()
    qtbot.waitUntil(lambda: bool(quits), timeout=30_000)
    assert page.bar.value() == 1000 and "every file verified" in page.status.text()
    assert not old.exists() and (tmp_path / "ext" / "activations" / "act_3" /
                                 "shard.npy").exists()
    assert paths.resolve_data_dir() == (tmp_path / "ext").resolve()
    assert "is now" in dlg.message.text()


def test_settings_dialog_edits_the_same_policy(studio, qtbot):
    from mistudio.ui.settings_dialog import SettingsDialog

    dlg = SettingsDialog(studio)
    qtbot.addWidget(dlg)
    dlg.cleanup.thin.setChecked(True)
    dlg.cleanup.kept.setValue(5)
    dlg.cleanup.at_startup.setChecked(True)
    dlg.save()
    p = studio.storage.policy()
    assert p.thin_checkpoints and p.checkpoints_kept == 5 and p.at_startup
    dlg.restore_defaults()
    assert not dlg.cleanup.thin.isChecked() and not dlg.cleanup.at_startup.isChecked()


@pytest.mark.parametrize("enabled", [False, True])
def test_start_up_cleanup_runs_in_the_background_and_reports(studio, qtbot, enabled):
    from mistudio.ui.app import startup_cleanup
    from mistudio.ui.main_window import MainWindow

    _sets(studio)
    studio.update_settings(cleanup_at_startup=enabled, cleanup_keep_activation_sets=2)
    win = MainWindow(studio, remember_layout=False)
    qtbot.addWidget(win)
    call = startup_cleanup(win)
    if not enabled:
        assert call is None and (studio.paths.root / "activations" / "act_1").exists()
        return
    qtbot.waitUntil(lambda: call.report.summary is not None, timeout=20_000)
    assert not (studio.paths.root / "activations" / "act_1").exists()
    assert "deleted 1 item(s)" in win.statusBar().currentMessage()
    assert studio.storage.last_cleanup().trigger == "start-up"


def test_pin_button_in_the_activation_sets_list(studio, qtbot, request):
    from mistudio.ui.models.sets_panel import COLUMNS, ActivationSetsPanel

    _sets(studio, 2)
    panel = ActivationSetsPanel(studio)
    qtbot.addWidget(panel)
    request.addfinalizer(panel.shutdown)  # its reads stop before `studio` closes the database
    panel.reload()
    qtbot.waitUntil(panel.is_loaded, timeout=10_000)  # the sets are read in the background
    panel.select_id("act_1")
    assert panel.pin_btn.text() == "Pin"
    panel.pin_btn.click()
    assert studio.activations.get("act_1").pinned
    qtbot.waitUntil(panel.is_loaded, timeout=10_000)
    col = [c[0] for c in COLUMNS].index("pinned")
    row = [r.id for r in panel.model.rows].index("act_1")
    assert panel.model.data(panel.model.index(row, col)) == "pinned"
    assert panel.selected().id == "act_1" and panel.pin_btn.text() == "Unpin"
    panel.pin_btn.click()
    assert not studio.activations.get("act_1").pinned
