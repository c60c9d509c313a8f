"""The Steering tab never builds its service or reads a model's SAEs on the GUI thread: its
first open builds the service on the tab's worker, and "Steer with this feature" shows the
feature at once, as pending, while the worker reads the SAE's model (issue #17 item 5)."""

from __future__ import annotations

import threading

import pytest

from tests.steering.conftest import HOOK, make_sae


@pytest.fixture
def two_models(data_dir, qtbot, tiny_gpt2_dir, tiny_llama_dir, tmp_path):
    """A studio (steering service not built yet) with two ready models, an SAE for each."""
    from mistudio.sae.formats import save_saelens
    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio
    from mistudio.ui.workers import JobBridge, qt_thread_factory

    s = Studio(data_dir, secrets=MemorySecrets(), thread_factory=qt_thread_factory)
    bridge = JobBridge()
    s.add_job_listener(bridge)
    saes = {}
    for name, folder in (("tiny-gpt2", tiny_gpt2_dir), ("tiny-llama", tiny_llama_dir)):
        m, _job = s.models.add_local(str(folder), name=name)
        qtbot.waitUntil(lambda m=m: s.models.get(m.id).status == "ready", timeout=60_000)
        save_saelens(tmp_path / name, make_sae("topk"), model_name=name, hook_name=HOOK)
        saes[m.id] = s.trainings.import_sae(str(tmp_path / name), name=f"{name}-sae")
    assert s._steering is None  # the tab's first read is what builds it
    yield s, bridge, saes
    s.close(timeout=10)
    bridge.stop()


def _record_threads(monkeypatch, cls, name: str, seen: list, named: bool = False) -> None:
    """Wrap ``cls.name`` so each call records the thread it ran on (with ``named``:
    (name, thread))."""
    original = getattr(cls, name)

    def wrapper(*args, **kwargs):
        seen.append((name, threading.current_thread()) if named else
                    threading.current_thread())
        return original(*args, **kwargs)

    monkeypatch.setattr(cls, name, wrapper)


def _off_main(threads: list) -> bool:
    return bool(threads) and all(t is not threading.main_thread() for t in threads)


def _sae_ids(tab) -> list:
    return [tab.sae_combo.itemData(i) for i in range(tab.sae_combo.count())]


def test_first_open_builds_the_service_and_reads_its_lists_off_the_gui_thread(
        two_models, qtbot, monkeypatch):
    from mistudio.app.steering import SteeringService
    from mistudio.ui.steering.tab import SteeringTab

    studio, bridge, saes = two_models
    built, lists_read = [], []
    _record_threads(monkeypatch, SteeringService, "__init__", built)
    for name in ("presets", "history", "saes_for_model"):
        _record_threads(monkeypatch, SteeringService, name, lists_read)
    tab = SteeringTab(studio, bridge)
    qtbot.addWidget(tab)
    assert studio._steering is None and not built  # building the tab built no service
    assert not tab.presets.isEnabled() and not tab.history.isEnabled()
    tab.show()
    qtbot.waitUntil(lambda: tab.loaded and not tab._calls.busy(), timeout=20_000)
    assert _off_main(built) and len(built) == 1
    assert _off_main(lists_read)
    assert tab.service is studio.steering  # the one the worker built, handed over
    assert tab.presets.isEnabled() and tab.history.isEnabled()
    assert tab.history.count.text() == "0 generations"
    # the first model and the SAE made for it, as the service decides (an independent read)
    model = tab.model_combo.currentData()
    assert _sae_ids(tab) == [r.id for r in studio.steering.saes_for_model(model)] == \
        [saes[model].id]
    tab.shutdown()


def test_steer_with_a_feature_shows_it_pending_and_reads_its_sae_off_the_gui_thread(
        two_models, qtbot, monkeypatch):
    from mistudio.app.steering import SteeringService
    from mistudio.ui.steering.tab import SteeringTab

    studio, bridge, saes = two_models
    tab = SteeringTab(studio, bridge)
    qtbot.addWidget(tab)
    tab.show()
    qtbot.waitUntil(lambda: tab.loaded and not tab._calls.busy(), timeout=20_000)
    shown_model = tab.model_combo.currentData()
    other_model = next(m for m in saes if m != shown_model)
    target = saes[other_model]
    assert tab.sae_combo.findData(target.id) < 0  # its model's SAEs must be read

    reads = []
    for name in ("sae_model", "saes_for_model", "feature_info"):
        _record_threads(monkeypatch, SteeringService, name, reads, named=True)
    arrived, read_before = [], []
    original = tab._handoff_arrived
    tab._handoff_arrived = lambda *a: (arrived.append(a[:2]), read_before.extend(reads),
                                       original(*a))

    tab.steer_feature(target.id, 7)  # each request supersedes the one before it
    tab.steer_feature(saes[shown_model].id, 2)
    tab.steer_feature(target.id, 3)
    # at once, before any read: the SAE chosen (pending) and the feature in the table
    assert tab.sae_combo.currentData() == target.id and "reading" in tab.sae_combo.currentText()
    assert [r.feature for r in tab.state.rows] == [3]
    assert tab.table.item(0, 0).text().startswith("#3")
    # nothing read on the clicks (the worker may have started the first request already)
    assert all(t is not threading.main_thread() for _name, t in reads)
    tab.prompt.setPlainText("Once")
    tab.max_new.setValue(3)
    tab.generate()  # pressed while pending: runs once the SAE is here
    assert not tab.state.running and "once the feature's SAE" in tab.status.text()

    qtbot.waitUntil(lambda: bool(arrived) and not tab._calls.busy(), timeout=20_000)
    # the SAE's model and its SAEs were read on the worker, and the feature's label after
    assert {"sae_model", "saes_for_model"} <= {name for name, _t in read_before}
    assert _off_main([t for _name, t in read_before])
    assert _off_main([t for name, t in reads if name == "feature_info"])
    monkeypatch.undo()  # the checks below read on this thread
    assert arrived == [(target.id, 3)]  # the older request was dropped, never shown
    assert tab.model_combo.currentData() == other_model
    assert tab.sae_combo.currentData() == target.id
    assert tab.sae_combo.currentText().startswith("tiny-llama-sae")
    assert _sae_ids(tab) == [r.id for r in studio.steering.saes_for_model(other_model)]
    assert [r.feature for r in tab.state.rows] == [3]
    qtbot.waitUntil(lambda: tab.state.result is not None, timeout=60_000)
    assert tab.state.result["columns"][1]["label"].startswith("#3")
    assert studio.steering.get(tab.state.generation_id).request["sae_id"] == target.id
    tab.shutdown()


def test_an_sae_that_fits_no_model_puts_back_what_was_chosen(two_models, qtbot, tmp_path):
    from mistudio.sae.formats import save_saelens
    from mistudio.ui.steering.tab import SteeringTab

    studio, bridge, saes = two_models
    wide = make_sae("topk", d=32)  # no registered model has d_model 32
    save_saelens(tmp_path / "wide", wide, model_name="tiny-gpt2", hook_name=HOOK)
    stray = studio.trainings.import_sae(str(tmp_path / "wide"), name="too-narrow")
    tab = SteeringTab(studio, bridge)
    qtbot.addWidget(tab)
    tab.show()
    qtbot.waitUntil(lambda: tab.loaded and not tab._calls.busy(), timeout=20_000)
    before = tab.sae_combo.currentData()
    tab.steer_feature(before, 2)
    assert [r.feature for r in tab.state.rows] == [2]  # listed: taken at once

    tab.steer_feature(stray.id, 9)
    assert [r.feature for r in tab.state.rows] == [9]  # pending
    qtbot.waitUntil(lambda: "No registered model fits the SAE too-narrow" in
                    tab.status.text(), timeout=20_000)
    qtbot.waitUntil(lambda: not tab._calls.busy(), timeout=20_000)
    assert tab.sae_combo.currentData() == before
    assert [r.feature for r in tab.state.rows] == [2]  # nothing the user had was lost
    tab.shutdown()
