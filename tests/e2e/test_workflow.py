"""The whole workflow in the real main window, on tiny assets: a local text dataset, the
tiny GPT-2, a tokenization, then "extract first" and a training started from the Training
tab's form; the finished SAE is listed, its SAELens folder loads with our loader, and its
reconstructions are checked against a numpy computation (and the extracted activations
against the model's own hidden states)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mistudio.secrets_test_support import MemorySecrets
from mistudio.studio import Studio
from mistudio.ui.main_window import MainWindow
from mistudio.ui.workers import qt_thread_factory
from tests.e2e.conftest import assert_same_reconstruction, explained_variance, prepare_assets

HOOK = "blocks.1.hook_resid_post"
TRAIN = {"architecture": "topk", "expansion_factor": 4, "k": 8, "batch_size": 128,
         "total_tokens": 128 * 60, "normalization_tokens": 1024, "metrics_every_steps": 5,
         "checkpoint_every_tokens": 128 * 30, "device": "cpu", "lr": 3e-3}


@pytest.fixture
def window(qtbot, data_dir):
    switch_interval = sys.getswitchinterval()
    studio = Studio(data_dir, thread_factory=qt_thread_factory, secrets=MemorySecrets())
    w = MainWindow(studio)
    qtbot.addWidget(w)
    w.resize(1400, 900)
    w.show()
    yield w
    w.skip_close_confirmation = True
    if not w._closing:
        w.close()
    qtbot.waitUntil(lambda: w._closing and not studio.jobs.active_ids(), timeout=20000)
    # nothing the window started keeps running into the next test (tests/foundation/
    # test_shutdown.py checks threads too)
    from PySide6.QtCore import QTimer

    assert [t.interval() for t in w.findChildren(QTimer) if t.isActive()] == []
    assert sys.getswitchinterval() == switch_interval


def _shot(widget, tmp_path, name):
    folder = Path(os.environ.get("MISTUDIO_SHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    widget.grab().save(str(folder / f"e2e_{name}.png"))


def test_dataset_model_tokenize_extract_train_in_the_window(window, qtbot, tmp_path,
                                                           tiny_gpt2_dir):
    t0 = time.monotonic()
    studio = window.studio
    tab = window.show_tab("Training")  # opened before there is anything to train on
    panel = tab.new_training
    box = panel.extract_first()
    assert box.model_combo.currentData() == "" and "choose a model" in panel.validate()
    datasets_tab = window.show_tab("Datasets")
    assets = prepare_assets(studio, tiny_gpt2_dir, tmp_path,
                            wait=lambda job_id: studio.jobs.wait(job_id, 120))
    qtbot.waitUntil(lambda: any(d.id == assets.dataset_id for d in studio.datasets.list()))
    assert datasets_tab is not None

    # --- the Training tab's form: extract first (model, tokenization, hook), then train
    window.show_tab("Training")
    tab.pages.setCurrentWidget(tab.new_page)  # the new model and tokenization are listed
    assert box.model_combo.currentData() == assets.model_id
    box.select(model=assets.model_id, tokenization=assets.tokenization_id, hook_name=HOOK,
               tokens="2000")
    panel.form.set_config(TRAIN)
    panel.name_edit.setText("e2e topk")
    assert panel.validate() == "", panel.problem
    qtbot.wait(50)
    _shot(window, tmp_path, "1_form")
    panel.start_btn.click()
    chain_id = tab.selected
    assert chain_id.startswith("wf_") and tab.cards.card(chain_id).status == "extracting"

    # --- the extraction runs, then the training starts on its own and completes
    qtbot.waitUntil(lambda: tab.cards.card(chain_id) is None, timeout=60_000)
    key = tab.selected
    assert key.startswith("tr_"), key
    card = tab.cards.card(key)
    qtbot.waitUntil(lambda: card.status == "completed", timeout=90_000)
    assert tab.latest(key).title == "e2e topk"
    tab.pages.setCurrentWidget(tab.charts)
    qtbot.wait(300)
    _shot(window, tmp_path, "2_completed")

    # --- the SAE is listed (service and the Runs table) and its folder loads
    saes = studio.trainings.list_saes(key)
    assert len(saes) == 1
    sae_rec = saes[0]
    assert sae_rec.hook_name == HOOK and sae_rec.d_in == 64 and sae_rec.d_sae == 256
    tab.pages.setCurrentWidget(tab.runs)
    qtbot.waitUntil(lambda: [r.name for r in tab.runs.model.rows] == ["e2e topk"],
                    timeout=5000)
    row = tab.runs.model.rows[0]
    _shot(window, tmp_path, "3_runs")

    from mistudio.activations.format import ActivationSet
    from mistudio.sae.formats import load_sae

    folder = Path(sae_rec.folder)
    sae, info = load_sae(folder)
    assert info["format"] == "saelens" and info["hook_name"] == HOOK
    tr = studio.trainings.get_training(key)
    acts = ActivationSet(tr.activation_path)
    x = acts.rows(0, acts.num_rows)
    assert 1000 < len(x) <= 2000 and x.shape[1] == 64

    # the extracted rows are the model's residual stream after block 1
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir).eval()
    tokens = studio.datasets.open_tokenization(assets.tokenization_id).tokens
    pos = acts.positions()
    first = pos[:, 0] == pos[0, 0]
    with torch.no_grad():
        hidden = model(torch.as_tensor(tokens[pos[0, 0]][None].astype(np.int64)),
                       output_hidden_states=True).hidden_states[2][0].numpy()
    np.testing.assert_allclose(x[first], hidden[pos[first, 1]], rtol=1e-4, atol=1e-4)

    # the SAE reconstructs them: numpy from the SAELens files == our torch loader
    ours = assert_same_reconstruction(folder, sae, x)
    ev = explained_variance(x, ours)
    assert ev > 0.5, ev
    # ...and agrees with what the training reported (its last window of batches)
    assert row.last["explained_variance"] == pytest.approx(ev, abs=0.1)
    assert time.monotonic() - t0 < 90  # budget ~60 s on the 2-core test machine
