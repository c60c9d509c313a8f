"""New training > "Train on the fly from a model…": the model/tokenization/hook box without a
token count, validation, and a real training started from it."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import prepare_assets
from tests.ui_training.test_training_tab import TINY, _make_tab, _shot

HOOK = "blocks.1.hook_resid_post"


@pytest.fixture
def qt_assets(qt_studio, tiny_gpt2_dir, tmp_path):
    studio, _bridge = qt_studio
    return prepare_assets(studio, tiny_gpt2_dir, tmp_path,
                          wait=lambda job_id: studio.jobs.wait(job_id, 120))


def test_train_on_the_fly_from_the_new_training_page(qt_studio, qt_assets, qtbot, tmp_path):
    studio, bridge = qt_studio
    tab = _make_tab(studio, bridge, qtbot)
    panel = tab.new_training
    panel.form.set_config({**TINY, "k": 4, "d_sae": 128, "total_tokens": 128 * 6,
                           "batch_size": 128, "eval_tokens": 0, "normalization_tokens": 256,
                           "checkpoint_every_tokens": 0})
    box = panel.on_the_fly()
    assert box.isVisible() and box.title() == "Train on the fly"
    assert panel.start_btn.text() == "Start training (on the fly)"
    assert not box.tokens_edit.isVisible()  # every token of the tokenization, no count
    assert box.model_combo.currentData() == qt_assets.model_id
    assert box.hook_combo.currentData() == HOOK
    assert panel.form.d_in == 64 and panel.form.num_rows == qt_assets.n_tokens
    assert "computed as training goes" in box.info.text()
    assert panel.validate() == ""
    config, _ = panel.full_config()
    assert (config["onthefly_model"], config["hook_name"]) == (qt_assets.model_id, HOOK)
    assert "activation_path" not in config or not config["activation_path"]
    _shot(tab, tmp_path, "13_on_the_fly")
    assert panel.start()
    job = studio.list_jobs(kind="sae.train")[0]
    done = studio.jobs.wait(job.id, 240)
    assert done.status == "completed", (done.error, done.traceback)
    sae = studio.trainings.list_saes(job.target)[0]
    assert sae.hook_name == HOOK and sae.d_in == 64
    assert not any((studio.paths.root / "activations").glob("*"))
    # back to "Extract first": the token count returns
    box = panel.extract_first()
    assert box.title() == "Extract first" and panel.start_btn.text() == "Extract, then train"
    assert not box.tokens_edit.isHidden()
