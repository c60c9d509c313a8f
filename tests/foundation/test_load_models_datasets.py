"""The Models and Datasets tabs, the Jobs dock and the status bar on a data folder with many
entities (``scripts/make_load_folder.py``, small): every list they show is read off the GUI
thread and its rows arrive; the Models tab builds its extraction and activation-set pages
only when they are first shown; torch's import on a worker thread leaves the collector as it
found it.

Speed is measured by ``benchmarks/load_bench.py``; these tests check the behaviour only.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.foundation.load_folder_support import ROOT, make_small_load_folder
from tests.foundation.load_folder_support import db_rows as _db

SIZE = dict(datasets=9, models=5, sets=14, trainings=6, steps=5, analyses=0,
            docs_per_dataset=20)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_small_load_folder(tmp_path_factory, "load-lists", **SIZE)


class Reads:
    """Records the thread of every call to the spied service methods."""

    def __init__(self, monkeypatch):
        self.monkeypatch = monkeypatch
        self.threads: dict[str, list] = {}

    def spy(self, obj, name: str, label: str) -> None:
        original = getattr(obj, name)
        seen = self.threads.setdefault(label, [])

        def spy(*args, **kwargs):
            seen.append(threading.current_thread())
            return original(*args, **kwargs)

        self.monkeypatch.setattr(obj, name, spy)

    def on_gui_thread(self) -> dict[str, int]:
        main = threading.main_thread()
        return {label: sum(t is main for t in seen) for label, seen in self.threads.items()
                if any(t is main for t in seen)}


@pytest.fixture
def window(qtbot, folder, monkeypatch):
    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio
    from mistudio.ui.main_window import MainWindow
    from mistudio.ui.workers import qt_thread_factory

    studio = Studio(folder, thread_factory=qt_thread_factory, secrets=MemorySecrets())
    reads = Reads(monkeypatch)
    for obj, name, label in ((studio.models, "list", "models"),
                             (studio.models, "inspect", "model summary"),
                             (studio.datasets, "list", "datasets"),
                             (studio.datasets, "tokenizations", "tokenizations"),
                             (studio.activations, "list", "activation sets"),
                             (studio.templates, "list", "templates"),
                             (studio.jobs, "list", "jobs"),
                             (studio.jobs, "change_token", "jobs change token")):
        reads.spy(obj, name, label)
    w = MainWindow(studio, remember_layout=False)
    w.skip_close_confirmation = True
    qtbot.addWidget(w)
    w.show()
    yield w, reads
    w.close()


def test_the_lists_arrive_and_are_read_off_the_gui_thread(qtbot, window, folder):
    w, reads = window
    datasets = w.show_tab("Datasets")
    qtbot.waitUntil(datasets.is_loaded, timeout=20_000)
    names = [r.name for r in datasets.list_model.records]
    assert sorted(names) == sorted(n for (n,) in _db(folder, "select name from datasets"))
    assert len(names) == SIZE["datasets"]
    # the selected dataset's pages are drawn from the list read
    assert datasets.selected_id == datasets.list_model.records[0].id
    assert datasets.title.text() == names[0] and not datasets.empty.isVisible()

    models = w.show_tab("Models")
    qtbot.waitUntil(models.is_loaded, timeout=20_000)
    listed = [models.models_list.item(i).data(0x0100) for i in
              range(models.models_list.count())]  # Qt.UserRole: the model id
    assert sorted(listed) == sorted(i for (i,) in _db(folder, "select id from models"))
    assert models.current_model_id() == listed[0]
    qtbot.waitUntil(models.inspector.is_filled, timeout=60_000)
    assert models.inspector.fields["n_layers"].text() != "-"

    # the pages the user has not opened are not built; opening one builds and fills it
    assert models._extract is None and models._sets is None
    models.tabs.setCurrentIndex(2)  # Activation sets
    assert models.tabs.currentWidget() is models.sets  # the built page took the tab's place
    qtbot.waitUntil(models.sets.is_loaded, timeout=20_000)
    ids = {r.id for r in models.sets.model.rows}
    assert ids == {i for (i,) in _db(folder, "select id from activation_sets")}
    assert len(ids) == SIZE["sets"] and models.sets.selected() is not None
    header = models.sets.view.horizontalHeader()
    assert all(header.sectionSize(c) > 20 for c in range(models.sets.model.columnCount()))
    models.tabs.setCurrentIndex(1)  # Extract activations
    panel = models.extract
    assert models.tabs.currentWidget() is panel
    qtbot.waitUntil(panel.is_ready, timeout=60_000)
    assert panel.model_id == listed[0] and panel.layers_info.text().startswith("→")
    assert panel.template.count() > 1  # "Choose a template…" and the built-in ones

    dock = w.jobs_dock
    qtbot.waitUntil(dock.is_loaded, timeout=20_000)
    n_jobs = _db(folder, "select count(*) from jobs")[0][0]
    assert dock.model.rowCount() == min(n_jobs, 500) > 0
    newest = _db(folder, "select id from jobs order by created_at desc limit 1")[0][0]
    assert dock.model.rows[0].id == newest

    # the dock's poll of the change token runs on its thread too (skipped while another read
    # of the dock is on its way: then its 2 s timer polls next)
    polls = reads.threads["jobs change token"]
    polled = len(polls)
    dock._poll_other_processes()
    qtbot.waitUntil(lambda: len(polls) > polled and not dock.calls.busy(), timeout=20_000)

    # every list was read, and none of them on the GUI thread (the status bar reads none)
    for label in ("models", "model summary", "datasets", "tokenizations", "activation sets",
                  "templates", "jobs", "jobs change token"):
        assert reads.threads.get(label), f"{label} never read"
    assert reads.on_gui_thread() == {}


def test_a_model_asked_for_before_its_row_arrives_is_selected(qtbot, window, folder):
    w, _reads = window
    models = w.show_tab("Models")
    last = _db(folder, "select id from models order by created_at")[-1][0]
    models.reload()
    models.select_model(last)  # the list is still being read
    qtbot.waitUntil(models.is_loaded, timeout=20_000)
    assert models.current_model_id() == last
    assert models.models_list.currentItem().data(0x0100) == last


def test_clear_finished_deletes_the_ended_jobs_off_the_gui_thread(qtbot, window, folder,
                                                                   monkeypatch):
    w, reads = window
    dock = w.jobs_dock
    reads.spy(w.studio.jobs, "delete", "job deletes")
    qtbot.waitUntil(dock.is_loaded, timeout=20_000)
    listed = {r.id for r in dock.model.rows}
    assert listed and all(r.status == "completed" for r in dock.model.rows)
    dock.clear_finished()
    qtbot.waitUntil(lambda: dock.is_loaded() and dock.model.rowCount() == 0, timeout=30_000)
    left = {i for (i,) in _db(folder, "select id from jobs")}
    assert not listed & left and dock.clear_btn.isEnabled()
    assert len(reads.threads["job deletes"]) == len(listed)
    assert reads.on_gui_thread() == {}


QUIET_IMPORT = """
import gc, sys, threading
from mistudio.ui.kit.native_libraries import import_torch_quietly
if sys.argv[1] == "off":  # as in the app, which collects on its GUI thread's timer
    gc.disable()
assert "torch" not in sys.modules
t = threading.Thread(target=import_torch_quietly)
t.start(); t.join()
import torch
print("OK", gc.isenabled(), gc.get_freeze_count() > 0, float(torch.ones(3).sum()))
"""


@pytest.mark.parametrize("collector", ["on", "off"])
def test_torch_imported_quietly_on_a_worker_works_and_restores_the_collector(collector):
    """torch's objects are frozen whether or not automatic collection is on, and the
    collector is left as it was found."""
    out = subprocess.run([sys.executable, "-c", QUIET_IMPORT, collector], capture_output=True,
                         text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["OK", str(collector == "on"), "True", "3.0"]


def test_columns_are_sized_from_their_longest_text_once(qtbot):
    from PySide6.QtGui import QStandardItemModel
    from PySide6.QtWidgets import QHeaderView, QTableView

    from mistudio.ui.kit.table_columns import MAX_WIDTH, PADDING, fit_columns_to_text

    view = QTableView()
    qtbot.addWidget(view)
    view.setModel(QStandardItemModel(3, 3))
    rows = [["a", "x" * 10, ""], ["W" * 20, "y", ""], ["cc", "z" * 600, ""]]
    widths = fit_columns_to_text(view, ["Name", "Long", "Empty column"], rows)
    cells, titles = view.fontMetrics(), view.horizontalHeader().fontMetrics()
    assert widths[0] == max(titles.horizontalAdvance("Name"),
                            cells.horizontalAdvance("W" * 20)) + PADDING
    assert widths[1] == MAX_WIDTH  # a long text is elided, not a window-wide column
    assert widths[2] == titles.horizontalAdvance("Empty column") + PADDING
    assert [view.columnWidth(c) for c in range(3)] == widths
    # the user can still drag them; nothing measures the cells again on a reset
    assert view.horizontalHeader().sectionResizeMode(0) == QHeaderView.ResizeMode.Interactive
