"""The dialog entries of the bad-input catalogue: the real tab or dialog is given the bad
input the way a user gives it (a file picked, a path typed, OK pressed); it shows the message,
nothing raises out of a Qt slot, and the data folder and database are unchanged."""

from __future__ import annotations


import pytest

from tests.reliability.bad_input_catalogue import BINARY, CATALOGUE, LATIN1, write
from tests.reliability.snapshot import differences, snapshot
from tests.reliability.test_bad_inputs import check_message

DIALOG_ENTRIES = [e for e in CATALOGUE if e.dialog]


def templates_import_not_json(qtbot, studio, bridge, a, b) -> str:
    from mistudio.ui.templates.tab import TemplatesTab

    tab = TemplatesTab(studio, bridge)
    qtbot.addWidget(tab)
    tab.import_dialog(str(write(b, "t.json", "{nope")))  # the path a file dialog returns
    return tab.error.text()


def templates_import_unknown_setting(qtbot, studio, bridge, a, b) -> str:
    from mistudio.ui.templates.tab import TemplatesTab

    tab = TemplatesTab(studio, bridge)
    qtbot.addWidget(tab)
    names = tab.card_names()
    tab.import_dialog(str(write(b, "t.json",
                                {"templates": [{"name": "x", "config": {"kk": 3}}]})))
    assert tab.card_names() == names  # nothing imported, the list unchanged
    return tab.error.text()


def dataset_add_binary(qtbot, studio, bridge, a, b) -> str:
    from mistudio.ui.datasets.tab import DatasetsTab

    tab = DatasetsTab(studio, bridge)
    qtbot.addWidget(tab)
    dlg = tab.open_add_dialog(str(write(b, "d.txt", BINARY)))
    dlg._try_accept()  # OK: the dialog accepts the source, the tab starts the import
    return tab.banner.label.text().removeprefix("Cannot import: ")


def dataset_preview_latin1(qtbot, studio, bridge, a, b) -> str:
    from mistudio.ui.datasets.dialogs import AddDatasetDialog

    dlg = AddDatasetDialog(studio, path=str(write(b, "d.txt", LATIN1)))
    qtbot.addWidget(dlg)
    dlg.inspect_local()  # what choosing the file does
    return dlg.error_label.text()


def preset_import_not_a_preset(qtbot, studio, bridge, a, b) -> str:
    from mistudio.ui.steering.library import PresetsPanel

    panel = PresetsPanel(studio.steering, lambda: (a.sae, [], "all"))
    qtbot.addWidget(panel)
    shown = []
    panel.message.connect(shown.append)
    panel.import_file(str(write(b, "p.json", {"name": "x", "interventions": []})))
    assert panel.list.count() == 1  # the one saved preset, nothing added
    return shown[-1]


def tokenize_folder_without_tokenizer(qtbot, studio, bridge, a, b) -> str:
    from mistudio.ui.datasets.dialogs import TokenizeDialog

    dlg = TokenizeDialog(studio, studio.datasets.get(a.dataset))
    qtbot.addWidget(dlg)
    dlg.model_combo.setCurrentIndex(dlg.model_combo.count() - 1)  # "Tokenizer folder…"
    (b / "empty").mkdir()
    dlg.folder_edit.setText(str(b / "empty"))
    dlg._try_accept()  # the Tokenize button
    assert dlg.result() == 0  # not accepted: the dialog stays open with the message
    return dlg.error_label.text()


def extract_layer_out_of_range(qtbot, studio, bridge, a, b) -> str:
    from mistudio.ui.models.extract_panel import ExtractionPanel

    panel = ExtractionPanel(studio)
    qtbot.addWidget(panel)
    panel.set_model(a.model)
    qtbot.waitUntil(panel.is_ready, timeout=60_000)  # the model is read in the background
    panel.layers.setText("7")
    assert "3 layers" in panel.layers_info.text()  # the form shows the problem as typed...
    shown = []
    panel.error.connect(shown.append)
    panel.start()  # ...and Start refuses it
    assert panel.job_id is None
    return shown[-1]


def sae_import_empty_folder(qtbot, studio, bridge, a, b, monkeypatch) -> str:
    from PySide6.QtWidgets import QMessageBox

    from mistudio.ui.training.saes_page import SAEsPage

    page = SAEsPage(studio, bridge)
    qtbot.addWidget(page)
    shown = []
    monkeypatch.setattr(QMessageBox, "warning",
                        staticmethod(lambda parent, title, text: shown.append(text)))
    (b / "empty").mkdir()
    monkeypatch.setattr("PySide6.QtWidgets.QFileDialog.getExistingDirectory",
                        staticmethod(lambda *args, **kw: str(b / "empty")))
    page._import_folder()  # the user picked an empty folder
    return shown[-1]


@pytest.mark.parametrize("entry", DIALOG_ENTRIES, ids=[e.id for e in DIALOG_ENTRIES])
def test_dialog_shows_the_message_and_changes_nothing(entry, bad_input_assets, tmp_path,
                                                      qtbot, monkeypatch):
    from PySide6.QtWidgets import QApplication

    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio
    from mistudio.ui.kit.background import BackgroundCalls
    from mistudio.ui.workers import JobBridge, qt_thread_factory

    a = bad_input_assets
    b = tmp_path / "files"
    b.mkdir()
    before = snapshot(a.data)
    studio = Studio(a.data, secrets=MemorySecrets(), thread_factory=qt_thread_factory)
    bridge = JobBridge()
    studio.add_job_listener(bridge)
    jobs_before = [j.id for j in studio.jobs.list()]
    widgets_before = set(QApplication.topLevelWidgets())
    try:
        action = globals()[entry.dialog]
        extra = {"monkeypatch": monkeypatch} if "monkeypatch" in action.__code__.co_varnames \
            else {}
        message = action(qtbot, studio, bridge, a, b, **extra)
        assert [j.id for j in studio.jobs.list()] == jobs_before  # no job was started
    finally:
        # the background reads of what the action opened stop (threads joined) before the
        # database closes, as the main window does: a read still running on a closed sqlite
        # connection crashes the process
        for widget in set(QApplication.topLevelWidgets()) - widgets_before:
            for calls in widget.findChildren(BackgroundCalls):
                calls.close()
        studio.close(timeout=10)
        bridge.stop()
    assert message and "Traceback" not in message
    assert differences(before, snapshot(a.data)) == []
    check_message(entry, message, a, b)


def test_every_dialog_entry_has_its_action():
    for e in DIALOG_ENTRIES:
        assert callable(globals().get(e.dialog)), e.dialog
