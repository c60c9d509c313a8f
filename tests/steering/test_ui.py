"""The Steering tab steers the tiny model: both outputs, KL colours, metrics, presets,
history, Stop, and opening a feature from elsewhere (steer_feature)."""

from __future__ import annotations

import pytest

from tests.steering.conftest import HOOK, make_sae


@pytest.fixture
def qt_steer(data_dir, qtbot, tiny_gpt2_dir, tmp_path):
    from mistudio.sae.formats import save_saelens
    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio
    from mistudio.ui.workers import JobBridge, qt_thread_factory

    s = Studio(data_dir, secrets=MemorySecrets(), thread_factory=qt_thread_factory)
    bridge = JobBridge()
    s.add_job_listener(bridge)
    m, job = s.models.add_local(str(tiny_gpt2_dir), name="tiny-gpt2")
    qtbot.waitUntil(lambda: s.models.get(m.id).status == "ready", timeout=60_000)
    save_saelens(tmp_path / "sae", make_sae("topk"), model_name="tiny-gpt2", hook_name=HOOK)
    sae = s.trainings.import_sae(str(tmp_path / "sae"), name="tiny-topk")
    yield s, bridge, sae
    s.close(timeout=10)
    bridge.stop()


def test_steering_tab_generates_both_outputs_with_metrics(qt_steer, qtbot, tmp_path, request):
    from mistudio.ui.steering.tab import SteeringTab

    studio, bridge, sae = qt_steer
    tab = SteeringTab(studio, bridge)
    qtbot.addWidget(tab)
    request.addfinalizer(tab.shutdown)  # its reads stop before qt_steer closes the database
    tab.resize(1300, 850)
    # the models, SAEs and features are read on the tab's worker thread
    qtbot.waitUntil(lambda: tab.loaded and "no analysis" in tab.analysis_note.text(),
                    timeout=10_000)
    assert tab.model_combo.currentText() == "tiny-gpt2"
    assert tab.sae_combo.currentData() == sae.id
    # no feature yet: a clear message, nothing queued
    tab.prompt.setPlainText("The cat sat")
    tab.generate()
    assert "Nothing to steer" in tab.status.text() and not tab.state.running

    tab.steer_feature(sae.id, 3)            # what the Features tab calls
    assert [r.feature for r in tab.state.rows] == [3]
    tab.table.editors[0].spin.setValue(40.0)
    assert tab.state.rows[0].value == 40.0
    tab.search.setText("5")
    qtbot.waitUntil(lambda: tab.feature_list.count() == 1, timeout=10_000)
    assert tab.feature_list.item(0).text().startswith("#5")
    tab.add_selected("clamp")
    tab.table.editors[1].spin.setValue(25.0)
    tab.max_new.setValue(10)
    tab.generate()
    assert tab.state.running and tab.stop_btn.isEnabled()
    qtbot.waitUntil(lambda: not tab.state.running, timeout=60_000)
    assert tab.state.result is not None, tab.status.text()
    texts = tab.outputs.texts()
    cols = tab.state.result["columns"]
    assert len(texts) == 2 and [c.title.text() for c in tab.outputs.columns] == \
        ["<b>baseline</b>", "<b>#3 +40, #5 = 25</b>"]
    for text, col in zip(texts, cols):
        assert text == "The cat sat" + col["text"]
    assert cols[0]["tokens"] != cols[1]["tokens"]
    assert "background-color" in tab.outputs.columns[1].body.toHtml()
    assert tab.metrics.rowCount() == 2
    assert tab.metrics.item(1, 1).text() == f"{cols[1]['kl_mean']:.4f}"
    assert "#3:" in tab.metrics.item(1, 4).text()
    assert "tokens/s" in tab.status.text()
    tab.grab().save(str(tmp_path / "steering.png"))

    # presets: save, then apply to an emptied tab
    tab.presets.save_current("cats")
    tab.state.rows = []
    tab._render_rows()
    tab.presets.list.setCurrentRow(0)
    tab.presets.apply_selected()
    assert [(r.feature, r.kind, r.value) for r in tab.state.rows] == \
        [(3, "add", 40.0), (5, "clamp", 25.0)]

    # history: open the generation again, then a sweep shown as a grid of columns
    assert tab.history.list.count() == 1
    tab.history.list.setCurrentRow(0)
    tab.open_generation(tab.history.selected())
    assert tab.outputs.texts() == texts
    tab.sweep.setText("3:-30..30:3")
    tab.generate()
    qtbot.waitUntil(lambda: not tab.state.running, timeout=60_000)
    assert len(tab.outputs.columns) == 4 and tab.metrics.rowCount() == 4

    # a contrastive vector row beside the features
    tab.sweep.setText("")
    tab.add_contrast("happy-sad", ["I am so happy", ""], ["I am so sad"])
    assert tab.table.item(2, 0).text() == "vector: happy-sad"
    tab.table.editors[2].spin.setValue(20.0)
    tab.generate()
    qtbot.waitUntil(lambda: not tab.state.running, timeout=60_000)
    assert tab.state.result["columns"][1]["label"] == "#3 +40, #5 = 25, happy-sad +20"
    tab.add_contrast("empty", [], ["x"])
    assert "at least one prompt" in tab.status.text()


def test_stop_works_mid_generation(qt_steer, qtbot, monkeypatch, request):
    from mistudio.steering import stream as stream_mod
    from mistudio.ui.steering.tab import SteeringTab

    studio, bridge, sae = qt_steer
    tab = SteeringTab(studio, bridge)
    qtbot.addWidget(tab)
    request.addfinalizer(tab.shutdown)  # its reads stop before qt_steer closes the database
    tab.steer_feature(sae.id, 3)
    tab.prompt.setPlainText("Once")
    tab.max_new.setValue(100)
    push = stream_mod.GenerationStream.push
    pushed = []

    def slow_push(self, pieces, finished):  # a model slow enough to press Stop in time
        push(self, pieces, finished)
        pushed.append(1)
        __import__("time").sleep(0.05)

    monkeypatch.setattr(stream_mod.GenerationStream, "push", slow_push)
    tab.generate()
    qtbot.waitUntil(lambda: len(pushed) >= 3 and bool(tab.outputs.columns), timeout=30_000)
    tab.stop()
    qtbot.waitUntil(lambda: not tab.state.running, timeout=30_000)
    assert tab.status.text() == "Stopped."
    assert studio.steering.get(tab.state.generation_id).status == "cancelled"
    assert 3 <= len(tab.state.live["pieces"][0]) < 100
    assert tab.generate_btn.isEnabled() and not tab.stop_btn.isEnabled()
