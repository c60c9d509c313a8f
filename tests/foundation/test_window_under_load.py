"""The window on a data folder with many entities (``scripts/make_load_folder.py``, small):
every tab shows its rows, the long lists arrive from a background thread rather than being
read on the GUI thread, and the Training tab shows its cards a page at a time.

Speed is measured by ``benchmarks/load_bench.py``; this test checks the behaviour only.
"""

from __future__ import annotations

import sys
import threading

import pytest

from tests.foundation.load_folder_support import db_rows as _db_rows
from tests.foundation.load_folder_support import make_small_load_folder
from tests.foundation.load_folder_support import record_threads as _record_threads

SIZE = dict(datasets=12, models=6, sets=20, trainings=70, steps=40, analyses=2,
            docs_per_dataset=30)


@pytest.fixture(scope="session")
def load_folder(tmp_path_factory):
    return make_small_load_folder(tmp_path_factory, "load", **SIZE)


def test_generated_folder_holds_what_was_asked(load_folder):
    count = lambda table: _db_rows(load_folder, f"select count(*) from {table}")[0][0]  # noqa
    assert count("datasets") == SIZE["datasets"] and count("models") == SIZE["models"]
    assert count("activation_sets") == SIZE["sets"]
    assert count("trainings") == SIZE["trainings"] == count("saes")
    assert count("job_metrics") == SIZE["trainings"] * SIZE["steps"] * 15
    d_saes = _db_rows(load_folder, "select d_sae from feature_analyses")
    assert count("analysis_features") == sum(d for (d,) in d_saes)
    # a model's weights file is full size to its readers and (almost) nothing on disk
    weights = next((load_folder / "models").glob("*/model.safetensors"))
    assert weights.stat().st_size > 50 * 2**20 > weights.stat().st_blocks * 512


def test_every_tab_shows_its_rows_loaded_off_the_gui_thread(qtbot, load_folder, monkeypatch):
    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio
    from mistudio.ui.main_window import MainWindow
    from mistudio.ui.training.card_pages import PAGE_SIZE
    from mistudio.ui.workers import qt_thread_factory

    studio = Studio(load_folder, thread_factory=qt_thread_factory, secrets=MemorySecrets())
    jobs_read, metrics_read, analysis_read = [], [], []
    _record_threads(monkeypatch, studio.trainings, "training_jobs", jobs_read)
    _record_threads(monkeypatch, studio.jobs, "metric_series", metrics_read)
    _record_threads(monkeypatch, studio.features, "results", analysis_read)
    w = MainWindow(studio, remember_layout=False)
    w.skip_close_confirmation = True
    qtbot.addWidget(w)
    w.show()
    try:
        datasets = w.show_tab("Datasets")  # its list arrives from a background read
        qtbot.waitUntil(lambda: datasets.list_model.rowCount() == SIZE["datasets"],
                        timeout=20_000)
        models = w.show_tab("Models")  # its list arrives from a background read
        qtbot.waitUntil(lambda: models.models_list.count() == SIZE["models"], timeout=20_000)

        training = w.show_tab("Training")
        # a page of cards, newest first, built a few per event-loop turn
        qtbot.waitUntil(lambda: len(training.cards.cards) == PAGE_SIZE, timeout=20_000)
        older = SIZE["trainings"] - PAGE_SIZE
        assert training.more_cards_btn.isVisible()
        assert f"{older:,} not shown" in training.more_cards_btn.text()
        newest = _db_rows(load_folder, "select id, name from trainings order by created_at "
                          "desc limit 1")[0]
        assert training.selected == newest[0]
        box = training.cards.box  # the top card is the newest training
        assert box.itemAt(0).widget().job_id == newest[0]
        training.more_cards_btn.click()
        qtbot.waitUntil(lambda: len(training.cards.cards) == SIZE["trainings"], timeout=20_000)
        assert not training.more_cards_btn.isVisible()
        # the selected run's stored history reaches the charts
        qtbot.waitUntil(lambda: newest[0] in training.metrics, timeout=20_000)
        loss = training.metrics[newest[0]].series["loss"]
        stored = _db_rows(load_folder, "select count(*) from job_metrics m join trainings t "
                          "on t.job_id = m.job_id where t.id = ? and m.name = 'loss'",
                          newest[0])[0][0]
        assert len(loss) == stored == SIZE["steps"]

        features = w.show_tab("Features")
        newest_sae_d = _db_rows(load_folder, "select d_sae from saes order by created_at "
                                "desc limit 1")[0][0]
        qtbot.waitUntil(lambda: features.table.model.rowCount() == newest_sae_d,
                        timeout=30_000)
        steering = w.show_tab("Steering")
        qtbot.waitUntil(lambda: steering.model_combo.count() == SIZE["models"],
                        timeout=10_000)  # read on the tab's worker thread
        templates = w.show_tab("Templates")
        assert templates.cards.count() > 0

        main = threading.main_thread()
        assert jobs_read and all(t is not main for t in jobs_read)
        assert metrics_read and all(t is not main for t in metrics_read)
        assert analysis_read and all(t is not main for t in analysis_read)
        # the tabs' modules (pyqtgraph with them) are imported early, on the GUI thread (a
        # worker thread importing pyqtgraph crashed about one start in ten)
        qtbot.waitUntil(w.tab_modules_imported, timeout=30_000)
        assert "pyqtgraph" in sys.modules
    finally:
        w.close()
