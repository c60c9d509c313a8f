"""The Models tab: import a tiny model, inspect it, extract, and see the activation set."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def qt_studio(data_dir, qtbot):
    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio
    from mistudio.ui.workers import JobBridge, qt_thread_factory

    s = Studio(data_dir, secrets=MemorySecrets(), thread_factory=qt_thread_factory)
    bridge = JobBridge()
    s.add_job_listener(bridge)
    yield s, bridge
    s.close(timeout=10)
    bridge.stop()


def test_import_inspect_extract_and_show_set(qt_studio, qtbot, tiny_gpt2_dir,
                                             packed_tokenization):
    from mistudio.ui.models.tab import ModelsTab

    studio, bridge = qt_studio
    tab = ModelsTab(studio, bridge)
    qtbot.addWidget(tab)
    assert tab.models_list.count() == 0
    with qtbot.waitSignal(tab.inspector.loaded, timeout=60_000):
        rec, job = tab.add_local(str(tiny_gpt2_dir))
        qtbot.waitUntil(lambda: studio.models.get(rec.id).status == "ready", timeout=60_000)
        qtbot.waitUntil(lambda: "ready" in tab.models_list.item(0).text(), timeout=10_000)
    assert "gpt2" in tab.models_list.item(0).text()
    assert tab.inspector.fields["n_layers"].text() == "3"
    assert tab.inspector.hooks.topLevelItemCount() == 15
    # the 3 transformer blocks collapse into one node "x3"
    found = tab.inspector.tree.findItems("×3", __import__("PySide6.QtCore").QtCore.Qt
                                         .MatchFlag.MatchContains |
                                         __import__("PySide6.QtCore").QtCore.Qt
                                         .MatchFlag.MatchRecursive)
    assert found
    # 4-bit is offered only with a reason on this CPU machine
    assert not tab.inspector.quant.model().item(2).isEnabled()
    assert "CUDA" in tab.inspector.quant.model().item(2).toolTip()

    panel = tab.extract
    panel.apply_template("Quick look (100k tokens)")
    assert panel.layers.text() == "1"
    panel.tokenization.setEditText(str(packed_tokenization))
    panel.max_tokens.setValue(150)
    panel.batch.setValue(4)
    panel.device.setCurrentText("cpu")
    panel.hook_boxes["mlp_out"].setChecked(True)
    panel.start()
    assert panel.job_id, tab.message.text()
    qtbot.waitUntil(lambda: "Done" in panel.status.text(), timeout=60_000)
    qtbot.waitUntil(lambda: tab.sets.model.rowCount() == 2 and all(
        r.status == "ready" for r in tab.sets.model.rows), timeout=10_000)
    hooks = sorted(r.hook_point for r in tab.sets.model.rows)
    assert hooks == ["blocks.1.hook_mlp_out", "blocks.1.hook_resid_post"]
    tab.tabs.setCurrentWidget(tab.sets)
    tab.sets.view.selectRow(0)
    rec = tab.sets.selected()
    assert "150 tokens" in tab.sets.stats.text()
    heights = np.asarray(tab.sets.bars.opts["height"])
    assert heights.sum() == 150
    reader = studio.activations.open(rec.id)
    norms = np.linalg.norm(reader.rows(0, reader.num_rows).astype(np.float64), axis=1)
    assert f"{norms.mean():.3f}" in tab.sets.stats.text()


def test_errors_show_in_the_tab(qt_studio, qtbot, tmp_path):
    from mistudio.ui.models.tab import ModelsTab

    studio, bridge = qt_studio
    tab = ModelsTab(studio, bridge)
    qtbot.addWidget(tab)
    tab.add_hub("not a hub id")
    assert "not a Hugging Face model id" in tab.message.text()
    tab.add_local(str(tmp_path / "missing"))
    assert "does not exist" in tab.message.text()
    tab.extract.start()
    assert tab.models_list.count() == 0
