"""The Training, Steering and Templates tabs on a generated data folder
(``scripts/make_load_folder.py``, small): what grows with the folder is read on a worker
thread, a newer request drops an older one still on its way, and the rows arrive.

Speed is measured by ``benchmarks/load_bench.py``; these tests check the behaviour only.
"""

from __future__ import annotations

import threading

import pytest

from tests.foundation.load_folder_support import db_rows as _db
from tests.foundation.load_folder_support import make_small_load_folder
from tests.foundation.load_folder_support import record_threads as _spy

SIZE = dict(datasets=2, models=3, sets=4, trainings=9, steps=30, analyses=1,
            docs_per_dataset=5)


@pytest.fixture(scope="module")
def load_folder(tmp_path_factory):
    return make_small_load_folder(tmp_path_factory, "load-training", **SIZE)


@pytest.fixture
def studio(load_folder, qtbot):
    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio
    from mistudio.ui.workers import JobBridge, qt_thread_factory

    s = Studio(load_folder, thread_factory=qt_thread_factory, secrets=MemorySecrets())
    bridge = JobBridge()
    s.add_job_listener(bridge)
    yield s, bridge
    s.close(timeout=10)
    bridge.stop()


def _off_main(threads: list) -> bool:
    main = threading.main_thread()
    return bool(threads) and all(t is not main for t in threads)


def test_training_tab_reads_off_the_gui_thread_and_shows_every_card(studio, qtbot,
                                                                     load_folder, monkeypatch):
    from mistudio.ui.training.tab import TrainingTab

    s, bridge = studio
    jobs_read, resume_checked, metrics_read, saes_read, rows_reread = [], [], [], [], []
    _spy(monkeypatch, s.trainings, "training_jobs", jobs_read)
    _spy(monkeypatch, s.trainings, "job_can_resume", resume_checked)
    _spy(monkeypatch, s.jobs, "metric_series", metrics_read)
    _spy(monkeypatch, s.trainings, "list_saes", saes_read)
    _spy(monkeypatch, s.jobs, "latest", rows_reread)
    # one training stopped with nothing to resume from: its card asks the folder, off-thread
    stopped = _db(load_folder, "select job_id from trainings order by created_at limit 1")[0][0]
    s.jobs.repo.update(stopped, status="interrupted")

    tab = TrainingTab(s, bridge)
    qtbot.addWidget(tab)
    tab.resize(1300, 800)
    tab.show()
    assert tab.cards.cards == {}  # nothing read on the GUI thread while building the tab
    qtbot.waitUntil(lambda: len(tab.cards.cards) == SIZE["trainings"], timeout=20_000)
    newest = _db(load_folder, "select id from trainings order by created_at desc limit 1")[0][0]
    assert tab.selected == newest and tab.cards.box.itemAt(0).widget().job_id == newest
    assert tab.cards.card(newest).is_selected()
    oldest = _db(load_folder, "select id from trainings order by created_at limit 1")[0][0]
    assert tab.cards.card(oldest).status == "interrupted"
    assert not tab.cards.card(oldest).resume_ckpt_btn.isVisibleTo(tab.cards.card(oldest))

    # the selected run's stored history reaches the charts, each series complete
    qtbot.waitUntil(lambda: newest in tab.metrics, timeout=20_000)
    stored = dict(_db(load_folder, "select m.name, count(*) from job_metrics m join trainings t "
                                   "on t.job_id = m.job_id where t.id = ? group by m.name",
                      newest))
    assert {n: len(v) for n, v in tab.metrics[newest].series.items()} == stored
    qtbot.waitUntil(lambda: "Loss" in tab.charts.charts and bool(tab.charts.charts["Loss"].curves),
                    timeout=20_000)
    assert {k for k, _m in tab.charts.charts["Loss"].curves} == {newest}

    # the SAE list is read when its page is first shown, on a worker too
    assert saes_read == []
    tab.pages.setCurrentWidget(tab.saes_page)
    n_saes = _db(load_folder, "select count(*) from saes")[0][0]
    qtbot.waitUntil(lambda: tab.saes_page.table.rowCount() == n_saes, timeout=10_000)

    assert _off_main(jobs_read) and _off_main(metrics_read) and _off_main(saes_read)
    assert _off_main(resume_checked)  # the stopped run's folder, looked at with the jobs
    assert rows_reread == []  # the cards show the jobs as read: no query per card
    tab.close()


def test_a_newer_selection_drops_the_older_runs_metrics(studio, qtbot, load_folder):
    from mistudio.ui.training.tab import TrainingTab

    s, bridge = studio
    tab = TrainingTab(s, bridge)
    qtbot.addWidget(tab)
    tab.show()
    qtbot.waitUntil(lambda: tab.jobs_loaded, timeout=20_000)
    qtbot.waitUntil(lambda: tab.selected in tab.metrics, timeout=20_000)
    first = tab.selected
    older = [k for (k,) in _db(load_folder, "select id from trainings order by created_at")]
    a, b = older[0], older[1]
    assert first not in (a, b)
    tab.select(a)  # its read is queued...
    tab.select(b)  # ...and superseded before the event loop could deliver it
    qtbot.waitUntil(lambda: b in tab.metrics, timeout=20_000)
    qtbot.waitUntil(lambda: not tab._calls.busy(), timeout=20_000)
    assert a not in tab.metrics  # its rows were dropped, never shown
    assert set(tab.metrics) == {first, b}
    # selecting it again reads it now
    tab.select(a)
    qtbot.waitUntil(lambda: a in tab.metrics, timeout=20_000)
    tab.close()


def test_steering_tab_reads_models_saes_and_features_off_the_gui_thread(studio, qtbot,
                                                                         load_folder,
                                                                         monkeypatch):
    from mistudio.ui.steering.tab import SteeringTab

    s, bridge = studio
    models_read, saes_read, features_read = [], [], []
    _spy(monkeypatch, s.models, "list", models_read)
    _spy(monkeypatch, s.steering, "saes_for_model", saes_read)
    _spy(monkeypatch, s.steering, "feature_info", features_read)
    tab = SteeringTab(s, bridge)
    qtbot.addWidget(tab)
    assert tab.model_combo.count() == 0 and not tab.loaded  # nothing read while building
    tab.show()
    ready = [name for (name,) in _db(load_folder, "select name from models where "
                                     "status = 'ready' order by created_at")]
    qtbot.waitUntil(lambda: tab.loaded, timeout=10_000)
    assert sorted(tab.model_combo.itemText(i) for i in range(tab.model_combo.count())) == \
        sorted(ready)
    # the SAEs that fit the first model, as the service decides (an independent read)
    expected = [r.id for r in s.steering.saes_for_model(tab.model_combo.currentData())]
    assert [tab.sae_combo.itemData(i) for i in range(tab.sae_combo.count())] == expected
    assert expected, "the generated folder has SAEs for its first model"
    qtbot.waitUntil(lambda: tab.feature_list.count() > 0, timeout=10_000)

    # typing fast: each keystroke supersedes the search before it; only the last one lands
    shown = []
    original = tab._show_features
    tab._show_features = lambda result: (shown.append(result), original(result))
    tab.search.setText("1")
    tab.search.setText("12")
    qtbot.waitUntil(lambda: bool(shown), timeout=10_000)
    qtbot.waitUntil(lambda: not tab._calls.busy(), timeout=10_000)
    assert len(shown) == 1
    assert [tab.feature_list.item(i).text().split()[0]
            for i in range(tab.feature_list.count())] == ["#12"]

    # another model: its SAEs arrive from the worker
    if tab.model_combo.count() > 1:
        tab.model_combo.setCurrentIndex(1)
        other = [r.id for r in s.steering.saes_for_model(tab.model_combo.currentData())]
        qtbot.waitUntil(lambda: [tab.sae_combo.itemData(i) for i in
                                 range(tab.sae_combo.count())] == other, timeout=10_000)
    assert _off_main(models_read[:1]) and _off_main(saes_read[:1])
    main = threading.main_thread()
    assert features_read and all(t is not main for t in features_read)
    tab.shutdown()


def test_steering_takes_a_feature_at_once_and_reads_its_label_off_the_gui_thread(
        studio, qtbot, load_folder, monkeypatch):
    from mistudio.ui.steering.tab import SteeringTab

    s, bridge = studio
    sae_id = _db(load_folder, "select sae_id from feature_analyses limit 1")[0][0]
    tab = SteeringTab(s, bridge)
    qtbot.addWidget(tab)
    searched = []
    _spy(monkeypatch, s.steering, "feature_info", searched)
    tab.steer_feature(sae_id, 5)  # what the Features tab calls
    assert tab.sae_combo.currentData() == sae_id
    assert [r.feature for r in tab.state.rows] == [5]  # at once
    qtbot.waitUntil(lambda: bool(searched) and not tab._calls.busy(), timeout=10_000)
    assert _off_main(searched)  # the label lookup searched the analysis on the worker
    tab.shutdown()


def test_templates_tab_shows_its_cards(studio, qtbot):
    """Templates do not grow with the data folder: the tab reads its few rows at once."""
    from mistudio.ui.templates.tab import TemplatesTab

    s, bridge = studio
    tab = TemplatesTab(s, bridge)
    qtbot.addWidget(tab)
    assert tab.cards.count() == len(s.templates.list(kind="training")) > 0


def test_a_run_read_per_metric_equals_the_run_read_row_by_row(studio, load_folder):
    """The tab's cheaper read (``metric_series``) builds the same series as the stored rows,
    a resume's replayed steps included."""
    from mistudio.ui.training.series import RunMetrics

    s, _bridge = studio
    job_id = _db(load_folder, "select job_id from trainings limit 1")[0][0]
    rows = s.jobs.metrics(job_id)
    by_rows, by_series = RunMetrics("a"), RunMetrics("b")
    by_rows.add_stored_rows(rows)
    by_series.add_stored_series(s.jobs.metric_series(job_id))
    assert by_series.names() == by_rows.names() and len(by_rows.names()) == 15
    for name in by_rows.names():
        for mine, theirs in zip(by_series.series[name].view(), by_rows.series[name].view()):
            assert mine.tolist() == theirs.tolist()
    # a resumed job logs steps 3.. again: both paths keep what the resumed run did
    resumed = [{"name": "loss", "step": st, "value": v, "t": t} for st, v, t in
               [(1, 9.0, 0.1), (2, 8.0, 0.2), (3, 7.0, 0.3), (4, 6.0, 0.4), (3, 5.0, 0.5),
                (4, 4.0, 0.6), (5, 3.0, 0.7)]]
    a, b = RunMetrics("a"), RunMetrics("b")
    a.add_stored_rows(resumed)
    b.add_stored_series({"loss": [(r["t"], r["step"], r["value"]) for r in reversed(resumed)]})
    assert a.series["loss"].view()[0].tolist() == b.series["loss"].view()[0].tolist() == \
        [1, 2, 3, 4, 5]
    assert b.series["loss"].view()[1].tolist() == [9.0, 8.0, 5.0, 4.0, 3.0]


def test_metric_series_keeps_every_value_exactly(data_dir):
    """Values pass through SQLite's text exactly (17 digits); NaN (stored as NULL) and the
    infinities of a diverging run come back as themselves."""
    import math

    from mistudio.jobs.repository import JobRecord
    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio

    s = Studio(data_dir, secrets=MemorySecrets())
    try:
        s.jobs.repo.insert(JobRecord(id="job_probe", kind="demo.sleep", status="completed",
                                     title="probe"))
        values = [0.1, 1 / 3, 1e-300, 123456789.123456789, float("nan"), float("inf"),
                  -float("inf"), -2.5e-7]
        s.jobs.repo.add_metrics([{"job_id": "job_probe", "step": i + 1, "name": "loss",
                                  "value": v, "t": 10.0 + i / 7} for i, v in enumerate(values)])
        arr = s.jobs.metric_series("job_probe")["loss"]
        assert arr[:, 1].tolist() == list(range(1, len(values) + 1))
        assert arr[:, 0].tolist() == [10.0 + i / 7 for i in range(len(values))]
        got = arr[:, 2].tolist()
        assert [g for g, v in zip(got, values) if not math.isnan(v)] == \
            [v for v in values if not math.isnan(v)]
        assert math.isnan(got[4])
    finally:
        s.close()


def test_pacer_interleaves_steps_and_yields_between_turns(qtbot):
    from mistudio.ui.training.pacer import Pacer

    pacer = Pacer(budget_s=0.0)  # one step per turn
    done: list[str] = []

    def stepper(name: str, n: int):
        left = [n]

        def step() -> bool:
            done.append(name)
            left[0] -= 1
            return left[0] > 0
        return step

    a, b = stepper("a", 3), stepper("b", 2)
    pacer.add(a)
    pacer.add(b)
    pacer.add(a)  # already waiting: not queued twice
    assert done == []  # nothing runs before the event loop turns
    qtbot.waitUntil(lambda: not pacer.busy(), timeout=5000)
    assert done == ["a", "b", "a", "b", "a"]
    c = stepper("c", 4)
    pacer.add(c)
    pacer.finish()  # what a screenshot needs at once
    assert done[-4:] == ["c"] * 4 and not pacer.busy()
