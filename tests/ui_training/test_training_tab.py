"""The Training tab end to end on a real (tiny) training: form, start, live metrics, pause,
resume, cancel, restart the app on the same data folder, resume from the checkpoint, and
the event loop's responsiveness meanwhile. Screenshots of each state go to
$MISTUDIO_SHOTS (default: the test's tmp folder)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from PySide6.QtCore import QTimer

from mistudio.jobs.repository import JobsRepo

# long enough (1,200 steps) that on an idle machine (~300 steps/s) the run is still going
# after the screenshots, the pause and the continue; short enough to finish under load
TINY = {"architecture": "topk", "expansion_factor": 4, "k": 4, "batch_size": 256,
        "total_tokens": 256 * 1200, "checkpoint_every_tokens": 256 * 100,
        "normalization_tokens": 2048, "metrics_every_steps": 5, "device": "cpu",
        "dead_window_tokens": 10_000}


def _shot(widget, tmp_path, name):
    folder = Path(os.environ.get("MISTUDIO_SHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    pacer = getattr(widget, "pacer", None)
    if pacer is not None:  # the charts and cards still to build, built now (a whole picture)
        pacer.finish()
    widget.grab().save(str(folder / f"training_{name}.png"))


class TickGaps:
    """Counts a 20 ms main-thread timer; the longest gap says how long the loop stalled."""

    def __init__(self):
        self.timer = QTimer()
        self.timer.setInterval(20)
        self.timer.timeout.connect(self._tick)
        self.last = None
        self.max_gap = 0.0
        self.ticks = 0

    def _tick(self):
        now = time.perf_counter()
        if self.last is not None:
            self.max_gap = max(self.max_gap, now - self.last)
        self.last = now
        self.ticks += 1

    def start(self):
        self.last = time.perf_counter()
        self.timer.start()

    def stop(self):
        self.timer.stop()


def _make_tab(studio, bridge, qtbot):
    from mistudio.ui.training.tab import TrainingTab

    tab = TrainingTab(studio, bridge)
    qtbot.addWidget(tab)
    tab.resize(1400, 900)
    tab.show()
    return tab


def _job(studio):
    return studio.list_jobs(kind="sae.train")[0]


def test_form_start_watch_pause_cancel_restart_resume(qt_studio, qtbot, tmp_path, data_dir,
                                                      tiny_activation_dir):
    import torch  # noqa: F401 - imported once up front, as a warm app would have it

    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio
    from mistudio.ui.workers import JobBridge, qt_thread_factory

    studio, bridge = qt_studio
    tab = _make_tab(studio, bridge, qtbot)
    assert tab.empty.isVisible()
    panel = tab.new_training

    # --- fill the form: data, settings; a bad value is reported and blocks Start
    panel.set_activation_folder(str(tiny_activation_dir))
    assert "20,000 tokens of width 32" in panel.data_info.text()
    panel.form.set_config(TINY)
    panel.form.editors["k"].setText("500")
    panel.form.editors["k"].textEdited.emit("500")
    assert "larger than the SAE width" in panel.validate()
    assert not panel.start_btn.isEnabled()
    panel.form.editors["batch_size"].setText("lots")
    assert "Batch size" in panel.validate()
    panel.form.set_config(TINY)
    panel.name_edit.setText("tiny topk")
    assert panel.validate() == "" and panel.start_btn.isEnabled()
    assert "fits" in panel.estimate_label.text()
    _shot(tab, tmp_path, "1_new_training")

    # --- start, watch live metrics while measuring the event loop
    gaps = TickGaps()
    assert panel.start()
    key = tab.selected
    card = tab.cards.card(key)
    assert card is not None and tab.pages.currentWidget() is tab.charts
    qtbot.waitUntil(lambda: len(tab.run_metrics(key).series.get("loss", ())) >= 3,
                    timeout=90_000)
    gaps.start()
    qtbot.waitUntil(lambda: len(tab.run_metrics(key).series["loss"]) >= 12, timeout=60_000)
    assert card.status == "running" and "loss" in card.metrics.text()
    qtbot.waitUntil(lambda: "Loss" in tab.charts.charts, timeout=10_000)  # built per turn
    curves = tab.charts.charts["Loss"].curves  # drawn on the throttled chart timer
    qtbot.waitUntil(lambda: (key, "loss") in curves and len(
        curves[(key, "loss")]["smooth"].getOriginalDataset()[0]) >= 10, timeout=10_000)
    gaps.stop()  # a screenshot paints every chart at once: the test's cost, not the app's
    _shot(tab, tmp_path, "2_running")
    gaps.start()

    # --- pause and resume
    card.pause_btn.click()
    qtbot.waitUntil(lambda: card.status == "paused", timeout=30_000)
    assert card.pause_btn.text() == "Continue"
    n_paused = len(tab.run_metrics(key).series["loss"])
    qtbot.wait(600)
    assert len(tab.run_metrics(key).series["loss"]) == n_paused  # nothing while paused
    gaps.stop()
    _shot(tab, tmp_path, "3_paused")
    gaps.start()
    card.pause_btn.click()
    qtbot.waitUntil(lambda: card.status == "running", timeout=30_000)
    qtbot.waitUntil(lambda: len(tab.run_metrics(key).series["loss"]) > n_paused + 2,
                    timeout=60_000)
    gaps.stop()
    # The loop kept running while the training worked at full speed (not a speed test:
    # benchmarks/runs_table_bench.py measures stalls). Measured on the 2-core test machine:
    # longest gaps 0.2-0.4 s when it is otherwise idle, up to ~1.2 s at load average 16. A
    # frozen loop (a blocking call on the GUI thread, waiting for the training) never ticks
    # again until the phase ends, which this bound still catches on a loaded machine.
    assert gaps.ticks > 10
    assert gaps.max_gap < 5.0, f"the GUI froze for {gaps.max_gap:.2f} s"

    # --- cancel: the training writes a checkpoint, the card offers Resume
    card.cancel_btn.click()
    qtbot.waitUntil(lambda: card.status == "cancelled", timeout=60_000)
    assert card.resume_ckpt_btn.isVisible()
    steps_before = list(tab.run_metrics(key).series["loss"].view()[0])
    ckpts = studio.trainings.job_checkpoints(_job(studio))
    assert ckpts and ckpts[-1].step >= steps_before[-1]  # saved where it stopped
    tab.pages.setCurrentWidget(tab.checkpoints)
    assert tab.checkpoints.table.rowCount() == len(ckpts)
    _shot(tab, tmp_path, "4_cancelled_checkpoints")

    # --- simulate a crash while running, then restart the app on the same data folder
    job_id = _job(studio).id
    JobsRepo(studio.store).update(job_id, status="running")
    tab.close()
    studio.close(timeout=10)
    studio2 = Studio(data_dir, secrets=MemorySecrets(), thread_factory=qt_thread_factory)
    bridge2 = JobBridge()
    studio2.add_job_listener(bridge2)
    try:
        assert job_id in studio2.interrupted_at_start
        tab2 = _make_tab(studio2, bridge2, qtbot)
        # the trainings are read off the GUI thread; their cards follow
        qtbot.waitUntil(lambda: tab2.cards.card(key) is not None
                        and tab2.cards.card(key).isVisible(), timeout=10_000)
        card2 = tab2.cards.card(key)
        assert card2.status == "interrupted" and card2.resume_ckpt_btn.isVisible()
        assert tab2.banner.isVisible() and "interrupted" in tab2.banner.text()
        # The stored history is back in the charts after the restart.
        restored = list(tab2.run_metrics(key).series["loss"].view()[0])
        assert restored == steps_before
        _shot(tab2, tmp_path, "5_after_restart")

        # --- resume from the last checkpoint: the same card continues to completion
        card2.resume_ckpt_btn.click()
        qtbot.waitUntil(lambda: card2.status == "completed", timeout=120_000)
        assert len(tab2.jobs[key]) == 2 and not tab2.banner.isVisible()
        steps, values, _ = tab2.run_metrics(key).series["loss"].view()
        assert steps[-1] == TINY["total_tokens"] // TINY["batch_size"]
        assert (steps[1:] > steps[:-1]).all()  # one clean curve across the resume
        tab2.select(key)
        tab2.pages.setCurrentWidget(tab2.charts)
        qtbot.wait(400)
        _shot(tab2, tmp_path, "6_completed")
        tab2.pages.setCurrentWidget(tab2.logs)
        assert any("Checkpoint" in line for line in tab2.logs.visible_lines())
        tab2.logs.level_combo.setCurrentIndex(3)  # errors only
        assert not any("Checkpoint" in line for line in tab2.logs.visible_lines())
        _shot(tab2, tmp_path, "7_logs")
        result = studio2.trainings.job_result(tab2.latest(key))
        assert result["saes"] and Path(result["saes"][0]["path"], "cfg.json").exists()
        exported = studio2.trainings.export_saelens(tab2.latest(key).target,
                                                    result["saes"][0]["member"],
                                                    tmp_path / "export")
        assert (exported / "cfg.json").exists()

        # --- duplicate fills the form; delete removes the training and its files
        tab2.duplicate(key)
        assert tab2.new_training.form.config()[0]["k"] == TINY["k"]
        assert tab2.new_training.name_edit.text() == "tiny topk copy"
        folder = studio2.trainings.job_dir(tab2.latest(key))
        assert folder.exists()
        assert tab2.delete_training(key), tab2.last_error
        assert not folder.exists() and studio2.list_jobs(kind="sae.train") == []
        assert tab2.cards.card(key) is None and tab2.empty.isVisible()
        assert tab2.last_error == "" and tab.last_error == ""
    finally:
        studio2.close(timeout=20)
        bridge2.stop()


def test_templates_apply_save_and_last_used(qt_studio, qtbot, tmp_path, tiny_activation_dir):
    studio, bridge = qt_studio
    tab = _make_tab(studio, bridge, qtbot)
    panel = tab.new_training
    panel.set_activation_folder(str(tiny_activation_dir))
    names = [panel.template_combo.itemText(i) for i in range(panel.template_combo.count())]
    assert any("Gemma-Scope-style JumpReLU" in n for n in names)

    # Apply a built-in: its recipe lands in the form, irrelevant fields hide.
    panel.template_combo.setCurrentIndex(panel.template_combo.findData(
        "builtin:gemma_scope_jumprelu"))
    assert panel.apply_selected_template() == []
    cfg, problems = panel.form.config()
    assert not problems and cfg["architecture"] == "jumprelu" and cfg["lr"] == 7e-5
    assert cfg["adam_beta1"] == 0.0 and cfg["jumprelu_bandwidth"] == 0.001
    assert panel.form.editors["k"].isHidden() and not panel.form.editors["l0_coefficient"].isHidden()
    # TopK without a fixed lr: the width-scaled default applies (d_in 32 x 32 = 1024 latents).
    panel.template_combo.setCurrentIndex(panel.template_combo.findData("builtin:openai_topk"))
    panel.apply_selected_template()
    cfg, _ = panel.form.config()
    assert cfg["lr"] == pytest.approx(2e-4 / (1024 / 2 ** 14) ** 0.5, rel=1e-5)
    _shot(tab, tmp_path, "8_template_applied")

    # Save the form as a template, favourite it, and find it first in the list.
    panel.form.editors["k"].setText("7")
    t = panel.save_template("My k7")
    assert studio.templates.get("My k7").settings["k"] == 7
    panel.template_combo.setCurrentIndex(panel.template_combo.findData(t.id))
    panel._toggle_favourite()
    assert panel.template_combo.itemData(0) == ""  # the form's own settings come first
    assert panel.template_combo.itemData(1) == t.id
    assert panel.template_combo.itemText(1).startswith("★")

    # A sweep is one job whose members chart as separate runs; starting remembers the
    # settings and a new tab restores them.
    panel.form.set_config({**TINY, "k": 3, "total_tokens": 1024})
    panel.form.sweep_key.setCurrentIndex(panel.form.sweep_key.findData("k"))
    panel.form.sweep_values.setText("2, 3")
    assert panel.validate() == ""
    assert panel.start()
    sweep_key = tab.selected
    qtbot.waitUntil(lambda: _job(studio).status in ("completed", "failed"), timeout=120_000)
    assert _job(studio).status == "completed", _job(studio).error
    members = {f"{sweep_key}/k2", f"{sweep_key}/k3"}
    # The job's end is recorded before the bridge's next drain delivers its last metrics.
    qtbot.waitUntil(lambda: {v.job_id for v in tab.run_metrics(sweep_key).member_views()}
                    == members, timeout=10_000)
    # the charts are built one per event-loop turn: L0 may still be on its way
    qtbot.waitUntil(lambda: "L0" in tab.charts.charts and
                    {k[0] for k in tab.charts.charts["L0"].curves} == members, timeout=10_000)
    tab2 = _make_tab(studio, bridge, qtbot)
    cfg2, _ = tab2.new_training.form.config()
    assert cfg2["k"] == 3 and cfg2["total_tokens"] == 1024 and cfg2["sweep"] == {"k": [2, 3]}
    assert tab2.new_training.data_combo.currentData() == f"path:{tiny_activation_dir}"

    # A second training, then Compare overlays the sweep on it.
    tab2.new_training.form.sweep_key.setCurrentIndex(0)
    assert tab2.new_training.start()
    single = tab2.selected
    qtbot.waitUntil(lambda: tab2.latest(single).status == "completed" or
                    studio.jobs.find(tab2.latest(single).id).status == "completed",
                    timeout=120_000)
    qtbot.waitUntil(lambda: tab2.cards.card(sweep_key) is not None, timeout=10_000)
    tab2.cards.card(sweep_key).compare_box.setChecked(True)
    # a stored history is read off the GUI thread; the chart shows it when it arrives
    qtbot.waitUntil(lambda: {v.job_id for v in tab2.charts.views()} == {single} | members,
                    timeout=10_000)
    tab2.pages.setCurrentWidget(tab2.charts)
    qtbot.wait(1500)
    _shot(tab2, tmp_path, "9_compare")
