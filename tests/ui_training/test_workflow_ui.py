"""The Training tab's "extract first" workflow cards, the Runs table with its settings diff,
and exporting an intermediate checkpoint from the checkpoint manager."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mistudio.app.workflows import workflows_of
from tests.e2e.conftest import JobStartGate, prepare_assets
from tests.ui_training.test_training_tab import TINY, _make_tab, _shot

HOOK = "blocks.1.hook_resid_post"


@pytest.fixture
def qt_assets(qt_studio, tiny_gpt2_dir, tmp_path):
    studio, _bridge = qt_studio
    return prepare_assets(studio, tiny_gpt2_dir, tmp_path,
                          wait=lambda job_id: studio.jobs.wait(job_id, 120))


def test_extract_first_form_and_chain_cards(qt_studio, qt_assets, qtbot, tmp_path):
    studio, bridge = qt_studio
    tab = _make_tab(studio, bridge, qtbot)
    qtbot.waitUntil(lambda: tab._jobs_loaded, timeout=10_000)
    panel = tab.new_training
    panel.form.set_config({**TINY, "k": 8, "total_tokens": 128 * 20, "batch_size": 128,
                           "checkpoint_every_tokens": 0})
    box = panel.extract_first()
    assert box.isVisible() and panel.start_btn.text() == "Extract, then train"
    # the model, its tokenization and the middle residual stream are chosen by default
    assert box.model_combo.currentData() == qt_assets.model_id
    assert box.tok_combo.currentData() == qt_assets.tokenization_id
    assert box.hook_combo.currentData() == HOOK
    assert panel.form.d_in == 64 and panel.form.num_rows == qt_assets.n_tokens  # 1M > all
    box.select(tokens="lots")
    assert "Tokens to extract" in panel.validate() and not panel.start_btn.isEnabled()
    box.select(tokens="100")  # fewer tokens than one batch of the training
    assert "fewer than one batch" in panel.validate()
    box.select(tokens="2k")
    assert panel.validate() == "" and "2,000 tokens × width 64" in box.info.text()
    _shot(tab, tmp_path, "10_extract_first")

    # --- a chain whose extraction is cancelled: its card says so and offers Resume
    tok_folder = Path(studio.datasets.get_tokenization(qt_assets.tokenization_id).path)
    # The extraction is held before its first batch until Cancel is clicked: unheld, a
    # pooled model extracts 2,000 tokens in well under a second, the chain starts its
    # training first and the click cancels that instead (a flaky test).
    with JobStartGate(studio, "activations.extract") as gate:
        assert panel.start()
        chain_id = tab.selected
        card = tab.cards.card(chain_id)
        assert chain_id.startswith("wf_") and card.status == "extracting"
        assert tab.pages.currentWidget() is tab.logs
        assert not card.cancel_btn.isHidden() and card.compare_box.isHidden()
        qtbot.waitUntil(gate.held.is_set, timeout=30_000)  # running, not just queued
        card.cancel_btn.click()
    qtbot.waitUntil(lambda: card.status == "cancelled", timeout=60_000)
    assert "Extraction cancelled; the training was not started" in card.message.text()
    assert card.resume_ckpt_btn.isVisible()
    assert studio.list_jobs(kind="sae.train") == []
    _shot(tab, tmp_path, "11_chain_cancelled")

    # --- a chain whose extraction fails: the card names the step that failed
    panel.name_edit.setText("doomed")
    blocker = studio.submit_job("demo.busy", {"seconds": 60})  # holds the GPU-job slot
    assert panel.start()
    failing = tab.selected
    assert tab.last_error == "" and failing != chain_id, (tab.last_error, failing)
    chain = workflows_of(studio).get(failing)
    assert studio.get_job(chain.extraction_job_id).status == "queued"
    shutil.rmtree(tok_folder)  # the tokens vanish under the queued extraction
    studio.cancel_job(blocker.id)
    qtbot.waitUntil(lambda: tab.cards.card(failing).status == "failed", timeout=60_000)
    assert tab.cards.card(failing).message.text().startswith("Extraction failed:")
    qtbot.waitUntil(lambda: any("job failed" in line for line in tab.logs.visible_lines()),
                    timeout=5000)  # the selected workflow's log shows the failure
    _shot(tab, tmp_path, "12_chain_failed")

    # --- the cards survive a new tab (the app restarted); delete forgets a chain
    tab2 = _make_tab(studio, bridge, qtbot)
    assert {chain_id, failing} <= set(tab2.cards.cards)
    assert tab2.cards.card(failing).status == "failed"
    assert tab2.chain_cards.delete(failing)
    assert tab2.cards.card(failing) is None
    assert [c.id for c in workflows_of(studio).list(open_only=True)] == [chain_id]


def test_runs_table_diff_and_checkpoint_export(qt_studio, qtbot, tmp_path, tiny_activation_dir):
    from mistudio.sae.formats import load_sae

    studio, bridge = qt_studio
    tab = _make_tab(studio, bridge, qtbot)
    panel = tab.new_training
    panel.set_activation_folder(str(tiny_activation_dir))
    base = {**TINY, "total_tokens": 256 * 40, "checkpoint_every_tokens": 256 * 10,
            "keep_checkpoints": 5}
    keys = []
    for name, k in (("run k4", 4), ("run k8", 8)):
        panel.form.set_config({**base, "k": k})
        panel.name_edit.setText(name)
        assert panel.start()
        keys.append(tab.selected)
    for key in keys:
        qtbot.waitUntil(lambda key=key: studio.jobs.find(tab.latest(key).id).status
                        == "completed", timeout=120_000)
    tab.pages.setCurrentWidget(tab.runs)
    qtbot.waitUntil(lambda: len(tab.runs.model.rows) == 2, timeout=5000)
    qtbot.waitUntil(lambda: all(r.last.get("explained_variance") is not None
                                for r in tab.runs.model.rows), timeout=10_000)
    tab.refresh_runs()
    rows = {r.name: r for r in tab.runs.model.rows}
    assert set(rows) == {"run k4", "run k8"}
    for key, row in zip(keys, (rows["run k4"], rows["run k8"])):
        stored = studio.jobs.metrics(tab.latest(key).id)
        ev = [m for m in stored if m["name"] == "explained_variance"]
        ev.sort(key=lambda m: m["step"])
        assert row.best["explained_variance"] == pytest.approx(max(m["value"] for m in ev))
        assert row.last["explained_variance"] == pytest.approx(ev[-1]["value"])
        l0 = [m["value"] for m in stored if m["name"] == "l0"]
        assert row.best["l0"] == pytest.approx(min(l0))
        assert row.d_sae == 32 * 4 and row.tokens == base["total_tokens"]
        assert row.sparsity_setting() == ("k", row.settings["k"])
    # sorting by a metric orders the rows by it, both ways
    from PySide6.QtCore import Qt

    col = tab.runs.model.headerData(8, Qt.Horizontal)
    assert col == "EV last"
    tab.runs.table.sortByColumn(8, Qt.AscendingOrder)
    ascending = tab.runs.column_values(col)
    assert ascending == sorted(ascending)
    tab.runs.table.sortByColumn(8, Qt.DescendingOrder)
    assert tab.runs.column_values(col) == sorted(ascending, reverse=True)
    # two runs selected: only their differences, then everything with differences marked
    tab.runs.select_runs(["run k4", "run k8"])
    diff = {key: (a, b) for key, a, b in tab.runs.diff_rows()}
    assert set(diff) == {"k", "name"} and sorted(diff["k"]) == [4, 8]
    assert tab.runs.diff_table.rowCount() == 2 and "2 setting(s) differ" in \
        tab.runs.diff_note.text()
    _shot(tab, tmp_path, "13_runs_diff")
    tab.runs.diff_only.setChecked(False)
    assert tab.runs.diff_table.rowCount() > 30
    tab.runs.select_runs(["run k4"])
    assert "Select two runs" in tab.runs.diff_note.text()

    # --- the checkpoint manager exports an intermediate checkpoint as a SAELens folder
    tab.select(keys[0])
    tab.pages.setCurrentWidget(tab.checkpoints)
    manager = tab.checkpoints
    steps = [e.step for e in manager.entries]
    assert steps == [40, 30, 20, 10]  # newest first
    manager.table.selectRow(2)  # step 20
    assert manager.export_ckpt_btn.isEnabled()
    job = tab.export_checkpoint(manager.selected().path, str(tmp_path / "ckpt20"))
    assert job is not None, tab.last_error
    done = studio.jobs.wait(job.id, 60)
    assert done.status == "completed", done.error
    sae, info = load_sae(tmp_path / "ckpt20")
    assert info["hook_name"] == "blocks.0.hook" and sae.k == 4 and sae.d_sae == 128
    import json

    cfg = json.loads((tmp_path / "ckpt20" / "cfg.json").read_text())
    assert cfg["metadata"]["mistudio"]["step"] == 20
    assert tab.runs.model.rowCount() == 2  # an export is not a run
    assert tab.cards.card(keys[0]) is not None and len(tab.cards.cards) == 2

    # --- the screenshot states the tab offers (`mistudio screenshot`) all render
    names = []
    for name, widget in tab.screenshot_states():
        names.append(name)
        assert not (widget or tab).grab().isNull()
    assert names == ["new training", "extract first", "runs", "checkpoints", "logs",
                     "resources"]
    assert len(tab.runs.selected_rows()) == 2 and not tab.new_training.extracting()
