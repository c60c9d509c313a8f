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


@pytest.fixture
def models_tab(qt_studio, qtbot):
    """Makes the Models tab; stops its background reads (threads joined) before
    ``qt_studio`` closes the database, as the main window does: a read still running when
    its connection is closed crashed the test process (a segfault in sqlite)."""
    from mistudio.ui.models.tab import ModelsTab

    made = []

    def make():
        tab = ModelsTab(*qt_studio)
        qtbot.addWidget(tab)
        made.append(tab)
        return tab

    yield make
    for tab in made:
        tab.shutdown()


def test_import_inspect_extract_and_show_set(qt_studio, models_tab, qtbot, tiny_gpt2_dir,
                                             packed_tokenization):
    studio, bridge = qt_studio
    tab = models_tab()
    assert tab.models_list.count() == 0
    assert not any(b.isEnabled() for b in (tab.resume_btn, tab.release_btn, tab.rename_btn,
                                           tab.delete_btn))
    with qtbot.waitSignal(tab.inspector.loaded, timeout=60_000):
        rec, job = tab.add_local(str(tiny_gpt2_dir))
        qtbot.waitUntil(lambda: studio.models.get(rec.id).status == "ready", timeout=60_000)
        qtbot.waitUntil(lambda: tab.models_list.count() > 0 and  # read in the background
                        "ready" in tab.models_list.item(0).text(), timeout=10_000)
    assert "gpt2" in tab.models_list.item(0).text()
    assert tab.inspector.fields["n_layers"].text() == "3"
    assert tab.inspector.hooks.topLevelItemCount() == 18
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
    hooks = sorted(r.hook_name for r in tab.sets.model.rows)
    assert hooks == ["blocks.1.hook_mlp_out", "blocks.1.hook_resid_post"]
    assert tab.sets.selected().id == panel.set_ids[0]  # the new set is shown, unasked
    tab.rename_selected("tiny one")
    qtbot.waitUntil(tab.is_loaded, timeout=10_000)  # the list is read in the background
    assert "tiny one" in tab.models_list.item(0).text() and not tab.message.text()
    tab.rename_selected("   ")
    assert "cannot be empty" in tab.message.text()
    tab.tabs.setCurrentWidget(tab.sets)
    tab.sets.view.selectRow(0)
    rec = tab.sets.selected()
    assert "150 tokens" in tab.sets.stats.text()
    heights = np.asarray(tab.sets.bars.opts["height"])
    assert heights.sum() == 150
    reader = studio.activations.open(rec.id)
    norms = np.linalg.norm(reader.rows(0, reader.num_rows).astype(np.float64), axis=1)
    assert f"{norms.mean():.3f}" in tab.sets.stats.text()


def test_errors_show_in_the_tab(qt_studio, models_tab, qtbot, tmp_path):
    studio, bridge = qt_studio
    tab = models_tab()
    tab.add_hub("not a hub id")
    assert "not a Hugging Face model id" in tab.message.text()
    tab.add_local(str(tmp_path / "missing"))
    assert "does not exist" in tab.message.text()
    tab.extract.start()
    assert tab.models_list.count() == 0


def test_switching_models_keeps_the_inspector_and_form_consistent(qt_studio, models_tab, qtbot,
                                                                 tiny_gpt2_dir, tiny_llama_dir,
                                                                 packed_tokenization):
    from transformers import AutoModelForCausalLM

    from mistudio.paths import human_bytes

    studio, bridge = qt_studio
    tab = models_tab()
    recs = {}
    for name, folder in (("gpt2", tiny_gpt2_dir), ("llama", tiny_llama_dir)):
        rec, job = tab.add_local(str(folder))
        assert studio.jobs.wait(job.id, 60).status == "completed"
        recs[name] = rec.id
    tab.reload()
    qtbot.waitUntil(tab.is_loaded, timeout=10_000)  # the list is read in the background
    inspector = tab.inspector
    # switch back and forth faster than the background reads answer: only the last counts
    for _ in range(3):
        tab.select_model(recs["gpt2"])
        tab.select_model(recs["llama"])
    qtbot.waitUntil(inspector.is_filled, timeout=60_000)
    llama = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    n_params = sum(p.numel() for p in llama.parameters())
    assert "Llama" in inspector.fields["family"].text()
    assert inspector.fields["n_params"].text().startswith(f"{n_params:,}")
    modules = {inspector.hooks.topLevelItem(i).text(1)
               for i in range(inspector.hooks.topLevelItemCount())}
    assert "model.layers.0" in modules and not any(m.startswith("transformer.") for m in modules)
    assert inspector.tree.topLevelItem(0).text(1) == "LlamaForCausalLM"
    assert f"Weights {human_bytes(n_params * 4)}" in inspector.memory.text()
    inspector.dtype.setCurrentText("bfloat16")
    assert f"Weights {human_bytes(n_params * 2)}" in inspector.memory.text()
    inspector.hook_filter.setText("blocks.2 mlp")
    shown = [inspector.hooks.topLevelItem(i).text(0)
             for i in range(inspector.hooks.topLevelItemCount())
             if not inspector.hooks.topLevelItem(i).isHidden()]
    assert shown == ["blocks.2.hook_mlp_out", "blocks.2.hook_mlp_in", "blocks.2.mlp.hook_post"]

    tab.select_model(recs["gpt2"])
    qtbot.waitUntil(inspector.is_filled, timeout=60_000)
    assert inspector.fields["family"].text().startswith("GPT-2")
    assert inspector.tree.topLevelItem(0).text(1) == "GPT2LMHeadModel"
    assert inspector.hooks.topLevelItem(0).text(1) == "transformer.h.0"

    # the extraction form resolves the layer choice for the selected model, and sizes it
    panel = tab.extract  # built now (first use): its model summary is read in the background
    qtbot.waitUntil(panel.is_ready, timeout=60_000)
    assert panel.model_id == recs["gpt2"]
    panel.tokenization.setEditText(str(packed_tokenization))
    panel.layers.setText("middle")
    assert panel.layers_info.text().startswith("→ 1 ")
    panel.layers.setText("all")
    assert panel.layers_info.text().startswith("→ 0, 1, 2 ")
    panel.hook_boxes["mlp_out"].setChecked(True)
    panel.max_tokens.setValue(1000)
    panel.store_dtype.setCurrentText("float16")
    assert "<b>6</b> hook point(s)" in panel.plan.text()
    assert human_bytes(6 * 1000 * 64 * 2) in panel.plan.text()
    # the MLP's inner activation is d_mlp wide (GPT-2's n_inner unset: 4 x 64), not d_model
    panel.hook_boxes["mlp_post"].setChecked(True)
    assert "<b>9</b> hook point(s)" in panel.plan.text()
    assert human_bytes((6 * 64 + 3 * 256) * 1000 * 2) in panel.plan.text()
    panel.hook_boxes["mlp_post"].setChecked(False)
    panel.layers.setText("7")
    assert "do not exist" in panel.layers_info.text() and panel.plan.text() == ""

    # the screenshot states wait for the inspector to be filled, then show each page
    tab.inspector.show_model(recs["llama"])
    states = tab.screenshot_states()
    name, _ = next(states)
    assert name == "architecture" and inspector.is_filled()
    assert inspector.fields["n_layers"].text() == "3" and inspector.tree.topLevelItemCount()
    tab.extract.precision.read()  # as when the device changes: the estimate is read again
    names = []
    for name, _ in states:
        names.append(name)
        if name == "extract":  # taken once the memory estimate is shown, not while reading
            assert tab.extract.precision.is_ready(), "extract screenshot taken mid-estimate"
            assert "Estimating memory" not in tab.extract.precision.memory.text()
    assert names == ["architecture-hooks-filtered", "extract", "activation-sets"]


def test_inspector_reads_label_their_result_or_error():
    # no retry on ImportError any more: mistudio.hf resolves transformers' names safely
    # from any thread (tests/foundation/test_hf_threads.py)
    from mistudio.ui.models.inspector import _tagged

    def broken():
        raise ImportError("no module named nowhere")

    assert _tagged("m_1", "tree", lambda: "tree")() == ("m_1", "tree", "tree")
    model_id, part, value = _tagged("m_1", "tree", broken)()
    assert isinstance(value, ImportError) and (model_id, part) == ("m_1", "tree")
    assert isinstance(_tagged("m_1", "memory", lambda: 1 / 0)()[2], ZeroDivisionError)


def test_quantization_choices_follow_the_cpu_setting(qt_studio, models_tab, qtbot, tiny_llama_dir):
    pytest.importorskip("bitsandbytes")
    studio, bridge = qt_studio
    studio.update_settings(default_device="cpu")
    tab = models_tab()
    inspector = tab.inspector
    with qtbot.waitSignal(inspector.loaded, timeout=60_000):
        rec, job = tab.add_local(str(tiny_llama_dir))
        qtbot.waitUntil(lambda: studio.models.get(rec.id).status == "ready", timeout=60_000)
    qtbot.waitUntil(inspector.is_filled, timeout=60_000)
    items = [inspector.quant.model().item(i) for i in range(3)]
    assert items[0].isEnabled() and not items[1].isEnabled() and not items[2].isEnabled()
    setting = "Allow 8-/4-bit quantization on the CPU"
    assert setting in items[2].toolTip() and setting in inspector.quant_note.text()
    assert not inspector.save_quant.isEnabled()

    studio.update_settings(allow_cpu_quantization=True)
    inspector.refresh_quantization()
    qtbot.waitUntil(lambda: items[2].isEnabled(), timeout=60_000)
    assert items[1].isEnabled() and items[2].toolTip() == "" and inspector.quant_note.text() == ""
    inspector.quant.setCurrentText("4bit")
    assert inspector.save_quant.isEnabled()
    assert "Weights" in inspector.memory.text()
    inspector.dtype.setCurrentText("float32")
    inspector.save_quant.click()
    jobs = studio.list_jobs(kind="models.quantize")
    assert jobs and jobs[0].params["dtype"] == "float32", tab.message.text()
    assert studio.jobs.wait(jobs[0].id, 120).status == "completed"
    qtbot.waitUntil(lambda: "saved: 4bit" in tab.models_list.item(0).text(), timeout=10_000)
