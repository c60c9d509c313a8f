"""File > Storage (pytest-qt): disk use loaded in the background, the cleanup preview then
the run, back up now, restore only after the confirmation."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def dialog(studio, qtbot):
    from mistudio.ui.storage_dialog import StorageDialog

    root = studio.paths.root
    (root / "cache" / "big.bin").write_bytes(os.urandom(400_000))
    (root / "activations" / "act_ghost").mkdir()
    (root / "activations" / "act_ghost" / "a.npy").write_bytes(os.urandom(200_000))
    dlg = StorageDialog(studio)
    qtbot.addWidget(dlg)
    qtbot.waitUntil(lambda: dlg.usage is not None and not dlg.busy(), timeout=20_000)
    return dlg


def test_disk_use_largest_first_with_chart(studio, dialog):
    top = dialog.usage_tree.topLevelItem(0)
    assert top.text(0) == "cache"
    assert dialog.bars.rows[0][0] == "cache"
    sizes = [b for _, b in dialog.bars.rows]
    assert sizes == sorted(sizes, reverse=True)
    assert "free of" in dialog.summary.text()


def test_cleanup_preview_then_run(studio, dialog, qtbot, monkeypatch):
    ghost = studio.paths.root / "activations" / "act_ghost"
    assert not dialog.clean_btn.isEnabled()
    dialog.preview_cleanup()
    qtbot.waitUntil(lambda: dialog.plan is not None, timeout=20_000)
    goes = dialog.plan_tree.topLevelItem(0)
    assert goes.childCount() == 1 and "activations/act_ghost" in goes.child(0).text(0)
    assert goes.child(0).toolTip(0) == str(ghost)
    assert ghost.exists() and dialog.clean_btn.isEnabled()
    monkeypatch.setattr(dialog, "_confirm", lambda *a: False)
    dialog.run_cleanup()
    assert ghost.exists()
    monkeypatch.setattr(dialog, "_confirm", lambda *a: True)
    dialog.run_cleanup()
    qtbot.waitUntil(lambda: dialog.plan is None and not dialog.busy(), timeout=20_000)
    assert not ghost.exists()
    assert "Deleted 1 item" in dialog.message.text()


def test_back_up_now_and_restore_after_confirmation(studio, dialog, qtbot, monkeypatch):
    studio.templates.save("Before", {"architecture": "topk", "k": 8})
    dialog.back_up_now()
    qtbot.waitUntil(lambda: dialog.backup_tree.topLevelItemCount() == 1 and not dialog.busy(),
                    timeout=20_000)
    studio.templates.save("After", {"architecture": "topk", "k": 4})
    dialog.backup_tree.setCurrentItem(dialog.backup_tree.topLevelItem(0))
    monkeypatch.setattr(dialog, "_confirm", lambda *a: False)
    dialog.restore_selected()
    assert studio.templates.find_saved("After") is not None
    monkeypatch.setattr(dialog, "_confirm", lambda *a: True)
    dialog.restore_selected()
    qtbot.waitUntil(lambda: "Restored" in dialog.message.text(), timeout=20_000)
    assert "integrity ok" in dialog.message.text()
    assert studio.templates.find_saved("After") is None
    assert studio.templates.find_saved("Before") is not None
    dialog.wait()


def test_file_menu_opens_it(studio, qtbot):
    from mistudio.ui.main_window import MainWindow
    from mistudio.ui.storage_dialog import StorageDialog

    win = MainWindow(studio, remember_layout=False)
    qtbot.addWidget(win)
    file_menu = win.menuBar().actions()[0].menu()
    assert win.storage_action in file_menu.actions()
    dlg = win.open_storage()
    assert isinstance(dlg, StorageDialog)
    qtbot.waitUntil(lambda: dlg.usage is not None and not dlg.busy(), timeout=20_000)
    dlg.close()
