"""The Models tab with 8-/4-bit models: the extraction panel's precision choices (refused on
the CPU by default with the reason, offered with the setting), extracting from a model
quantized on the fly and from a saved quantized copy, and a failed "Save quantized copy".

Real bitsandbytes on the CPU (the ``allow_cpu_quantization`` setting turned on through the
Studio); the extracted rows are checked against the quantized model's own
``output_hidden_states``, computed here with the service's loader.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.models.quant_support import bnb_available, bnb_layers

pytestmark = pytest.mark.skipif(not bnb_available(), reason="bitsandbytes does not import")

SETTING = "Allow 8-/4-bit quantization on the CPU"


@pytest.fixture
def tab(data_dir, qtbot):
    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio
    from mistudio.ui.models.tab import ModelsTab
    from mistudio.ui.workers import JobBridge, qt_thread_factory

    studio = Studio(data_dir, secrets=MemorySecrets(), thread_factory=qt_thread_factory)
    studio.update_settings(default_device="cpu")
    bridge = JobBridge()
    studio.add_job_listener(bridge)
    tab = ModelsTab(studio, bridge)
    qtbot.addWidget(tab)
    yield tab
    studio.close(timeout=10)
    bridge.stop()


def _add(tab, qtbot, folder):
    rec, job = tab.add_local(str(folder))
    assert tab.studio.jobs.wait(job.id, 60).status == "completed"
    tab.reload()
    tab.select_model(rec.id)
    qtbot.waitUntil(lambda: tab.extract.model_id == rec.id, timeout=10_000)
    qtbot.waitUntil(tab.extract.precision.is_ready, timeout=60_000)
    return tab.studio.models.get(rec.id)


def _items(chooser):
    return {chooser.quant.itemText(i): chooser.quant.model().item(i)
            for i in range(chooser.quant.count())}


def _extract(tab, qtbot, tokenization, layer=1):
    panel = tab.extract
    panel.tokenization.setEditText(str(tokenization))
    panel.layers.setText(str(layer))
    for t, box in panel.hook_boxes.items():
        box.setChecked(t == "resid_post")
    panel.max_tokens.setValue(120)
    panel.batch.setValue(4)
    panel.device.setCurrentText("cpu")
    qtbot.waitUntil(panel.precision.is_ready, timeout=60_000)
    panel.start()
    assert panel.job_id, tab.message.text()
    job = tab.studio.jobs.wait(panel.job_id, 120)
    assert job.status == "completed", (job.error, job.traceback)
    qtbot.waitUntil(lambda: "Done" in panel.status.text(), timeout=30_000)
    qtbot.waitUntil(lambda: tab.sets.selected() is not None and
                    tab.sets.selected().id == panel.set_ids[0], timeout=10_000)
    return job, tab.studio.activations.get(panel.set_ids[0])


def _hidden_rows(loaded, tokenization, reader, layer):
    """The rows a set should hold: the loaded model's hidden state after block ``layer`` at
    each (sequence, position) the set records."""
    import torch

    from mistudio.data.tokenized import TokenizedDataset

    tok = TokenizedDataset(tokenization)
    pos = reader.positions()
    seqs = np.unique(pos[:, 0])
    ids = torch.from_numpy(np.asarray(tok.tokens[seqs[0]:seqs[-1] + 1]).astype(np.int64))
    with torch.no_grad():
        out = loaded.model(input_ids=ids, output_hidden_states=True)
    # index 0: the embeddings; the last entry has the final norm applied (not resid_post)
    assert layer + 1 < len(out.hidden_states) - 1
    hidden = out.hidden_states[layer + 1].float().numpy()
    return hidden[pos[:, 0] - seqs[0], pos[:, 1]]


def test_precision_choices_follow_the_setting_and_4bit_extraction(tab, qtbot, tiny_llama_dir,
                                                                   packed_tokenization):
    from PySide6.QtCore import QEvent
    from PySide6.QtWidgets import QApplication

    from mistudio.paths import human_bytes

    studio = tab.studio
    m = _add(tab, qtbot, tiny_llama_dir)
    chooser = tab.extract.precision
    items = _items(chooser)
    assert list(items) == ["none (full precision)", "8bit (LLM.int8)", "4bit (NF4)"]
    reason = studio.models.quantization_options("cpu")["4bit"]
    assert SETTING in reason
    for label in ("8bit (LLM.int8)", "4bit (NF4)"):
        assert not items[label].isEnabled() and items[label].toolTip() == reason
    assert items["none (full precision)"].isEnabled()
    assert chooser.note.text() == reason and not chooser.choose("4bit")
    # the same sentence as the Architecture view
    qtbot.waitUntil(tab.inspector.is_filled, timeout=60_000)
    assert tab.inspector.quant_note.text() == reason
    # the memory estimate of the current choice: full precision, float32 on the CPU
    n_params = m.n_params
    assert f"Model {human_bytes(n_params * 4)}" in chooser.memory.text()
    assert "(float32, none) on cpu" in chooser.memory.text()

    # the setting turned on (as File > Settings does): read again when the window is active
    studio.update_settings(allow_cpu_quantization=True)
    QApplication.sendEvent(chooser, QEvent(QEvent.Type.WindowActivate))
    qtbot.waitUntil(lambda: items["4bit (NF4)"].isEnabled(), timeout=60_000)
    assert items["8bit (LLM.int8)"].isEnabled() and chooser.note.text() == ""
    assert chooser.choose("4bit")
    tab.extract.tokenization.setEditText(str(packed_tokenization))
    tab.extract.batch.setValue(4)
    want = studio.models.memory_estimate(m.id, dtype="float32", quantization="4bit",
                                         device="cpu", batch_tokens=4 * 32)
    assert want["weights"] < 0.5 * n_params * 4  # 4-bit: a fraction of float32
    text = chooser.memory.text()
    assert f"Model {human_bytes(want['weights'])}" in text and "(float32, 4bit)" in text
    assert f"activations {human_bytes(want['activations'])}" in text

    job, s = _extract(tab, qtbot, packed_tokenization)
    assert job.params["quantization"] == "4bit" and job.params["model_folder"] == m.folder
    # the reference: the 4-bit model through the service's loader (the cached one the job
    # used), its own output_hidden_states after block 1
    loaded = studio.models.load(m.id, quantization="4bit", device="cpu", dtype="float32")
    assert bnb_layers(loaded.model)["Linear4bit"] == 21
    reader = studio.activations.open(s.id)
    assert reader.num_rows == 120
    np.testing.assert_allclose(reader.rows(0, 120), _hidden_rows(loaded, packed_tokenization,
                                                                 reader, 1),
                               atol=1e-4, rtol=1e-4)
    # the set says what precision it was extracted with (list and statistics)
    assert "Model precision: 4bit, float32 on cpu" in tab.sets.stats.text()
    row = [r.id for r in tab.sets.model.rows].index(s.id)
    col = [c[0] for c in __import__("mistudio.ui.models.sets_panel", fromlist=["COLUMNS"])
           .COLUMNS].index("precision")
    assert tab.sets.model.data(tab.sets.model.index(row, col)) == "4bit, float32"


def test_saved_copy_is_a_choice_and_extracts(tab, qtbot, tiny_llama_dir, packed_tokenization):
    import shutil
    from pathlib import Path

    studio = tab.studio
    studio.update_settings(allow_cpu_quantization=True)
    m = _add(tab, qtbot, tiny_llama_dir)
    chooser = tab.extract.precision
    assert "4bit (saved copy)" not in _items(chooser)
    job = tab.save_variant(m.id, "4bit", "float32")
    assert job is not None, tab.message.text()
    assert studio.jobs.wait(job.id, 120).status == "completed"
    qtbot.waitUntil(lambda: "4bit (saved copy)" in _items(chooser), timeout=10_000)
    qtbot.waitUntil(chooser.is_ready, timeout=60_000)
    assert "Extract activations offers it" in tab.message.text()
    assert _items(chooser)["4bit (saved copy)"].isEnabled()
    assert chooser.choose("4bit", "4bit")
    # a saved copy computes in the dtype it was saved with
    assert chooser.dtype.currentText() == "float32" and not chooser.dtype.isEnabled()
    assert "faster than quantizing on the fly" in chooser.note.text()
    assert chooser.values() == {"model_dtype": "float32", "quantization": "4bit",
                                "variant": "4bit"}

    variant = studio.models.get(m.id).variants["4bit"]["folder"]
    run, s = _extract(tab, qtbot, packed_tokenization, layer=0)
    assert run.params["model_folder"] == variant and run.params["variant"] == "4bit"
    loaded = studio.models.load(m.id, variant="4bit", device="cpu")
    assert loaded.folder == str(Path(variant).resolve())
    assert bnb_layers(loaded.model)["Linear4bit"] == 21
    reader = studio.activations.open(s.id)
    np.testing.assert_allclose(reader.rows(0, reader.num_rows),
                               _hidden_rows(loaded, packed_tokenization, reader, 0),
                               atol=1e-4, rtol=1e-4)
    assert "Model precision: 4bit (saved copy), float32 on cpu" in tab.sets.stats.text()

    # a saved copy whose folder is gone is shown, disabled, with what to do
    studio.models.release(m.id)
    shutil.rmtree(variant)
    tab.extract.refresh_precision()
    qtbot.waitUntil(chooser.is_ready, timeout=60_000)
    item = _items(chooser)["4bit (saved copy)"]
    assert not item.isEnabled() and "is gone" in item.toolTip() and "Save it again" in \
        item.toolTip()
    assert chooser.values()["variant"] == ""  # the choice fell back to full precision
    # without the setting, the saved copy is refused with the same reason as 4-bit
    studio.update_settings(allow_cpu_quantization=False)
    chooser.refresh_if_settings_changed()
    qtbot.waitUntil(chooser.is_ready, timeout=60_000)
    assert SETTING in chooser.reason("4bit", "4bit")


def test_failed_save_shows_on_the_card_and_retries(tab, qtbot, tiny_llama_dir):
    from mistudio.ui.models.cards import FAILURE_ROLE

    studio = tab.studio
    studio.update_settings(allow_cpu_quantization=True)
    m = _add(tab, qtbot, tiny_llama_dir)
    assert not tab.retry_btn.isVisibleTo(tab)
    # something in the way: a file where the variants folder must go
    blocker = studio.models.folder(m.id) / "variants"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder")
    job = tab.save_variant(m.id, "4bit", "float32")
    assert job is not None, tab.message.text()
    failed = studio.jobs.wait(job.id, 120)
    assert failed.status == "failed" and failed.error
    item = tab.models_list.item(0)
    qtbot.waitUntil(lambda: tab.models_list.item(0).data(FAILURE_ROLE) is not None,
                    timeout=10_000)
    item = tab.models_list.item(0)
    failure = item.data(FAILURE_ROLE)
    assert failure["quantization"] == "4bit" and failure["error"] == failed.error
    assert f"Saving the 4bit copy failed: {failed.error}" in item.text()
    assert "failed" in tab.message.text()
    # the model itself stays ready and usable
    rec = studio.models.get(m.id)
    assert rec.status == "ready" and not rec.variants
    assert tab.extract.model_id == m.id and tab.extract.start_btn.isEnabled()
    assert tab.retry_btn.isVisibleTo(tab) and "4bit" in tab.retry_btn.text()
    # the taller card paints its failure line
    image = tab.models_list.viewport().grab().toImage()
    assert tab.models_list.visualItemRect(item).height() > 96 and not image.isNull()

    blocker.unlink()
    tab.retry_btn.click()  # one click: same quantization and dtype as before
    retry = studio.list_jobs(kind="models.quantize", target=m.id, limit=1)[0]
    assert retry.id != job.id and retry.params["dtype"] == "float32"
    assert studio.jobs.wait(retry.id, 120).status == "completed"
    qtbot.waitUntil(lambda: "saved: 4bit" in tab.models_list.item(0).text(), timeout=10_000)
    assert tab.models_list.item(0).data(FAILURE_ROLE) is None
    assert "failed" not in tab.models_list.item(0).text()
    assert not tab.retry_btn.isVisibleTo(tab)
