"""Smaller Training-tab widgets: log viewer, resource monitor, job card, number parsing."""

from __future__ import annotations

import time

import pytest

from mistudio.hardware_monitor import GpuSample, ResourceSample, ResourceSampler
from mistudio.ui.training.cards import JobCard, format_eta, format_rate
from mistudio.ui.training.form import parse_number
from mistudio.ui.training.logs import JobLogView, parse_log_text
from mistudio.ui.training.monitor import ResourceMonitor

LOG = """2026-01-01 10:00:00,001 INFO    job started
2026-01-01 10:00:01,002 DEBUG   batch 1
2026-01-01 10:00:02,003 WARNING CUDA was requested but is not available
2026-01-01 10:00:03,004 ERROR   job failed: boom
Traceback (most recent call last):
  File "x.py", line 1
RuntimeError: boom
"""


def test_parse_log_keeps_traceback_with_its_entry():
    levels = [lvl for lvl, _ in parse_log_text(LOG)]
    assert levels == ["info", "debug", "warning", "error", "error", "error", "error"]


def test_log_view_tail_filter_and_live_lines(qtbot, tmp_path):
    path = tmp_path / "job.log"
    path.write_text(LOG)
    view = JobLogView()
    qtbot.addWidget(view)
    view.set_job("job_1", str(path), "run")
    assert len(view.visible_lines()) == 6  # "Info and above" hides the debug line
    view.level_combo.setCurrentIndex(0)
    assert len(view.visible_lines()) == 7
    view.level_combo.setCurrentIndex(2)  # warnings and errors
    assert view.visible_lines()[0].endswith("not available") and len(view.visible_lines()) == 5
    view.level_combo.setCurrentIndex(1)
    view.on_log("job_2", {"level": "info", "message": "other job", "t": time.time()})
    view.on_log("job_1", {"level": "info", "message": "step 10", "t": time.time()})
    view.on_log("job_1", {"level": "debug", "message": "hidden", "t": time.time()})
    lines = view.visible_lines()
    assert lines[-1].endswith("step 10") and not any("other job" in x for x in lines)
    view.search.setText("boom")
    assert all("boom" in x.lower() for x in view.visible_lines()) and view.visible_lines()


def test_monitor_without_gpu_says_so_and_shows_cpu_ram(qtbot):
    mon = ResourceMonitor(ResourceSampler(use_nvml=False))
    qtbot.addWidget(mon)
    mon.show()
    s = mon.refresh()
    assert "CPU" in mon.device_label.text() and mon.note.text() == s.gpu_note != ""
    assert mon.bars["cpu"].isVisible() and not mon.bars["gpu"].isVisible()
    assert "this app" in mon.values["ram"].text()
    mon.close()


def test_monitor_with_a_gpu_sample(qtbot):
    mon = ResourceMonitor(ResourceSampler(use_nvml=False))
    qtbot.addWidget(mon)
    mon.show()
    g = GpuSample(0, "NVIDIA H100", utilization=87.0, memory_used_bytes=40 * 2**30,
                  memory_total_bytes=80 * 2**30, process_memory_bytes=30 * 2**30,
                  temperature_c=61.0, power_w=412.0, power_limit_w=700.0)
    mon.show_sample(ResourceSample(t=0, cpu_percent=12.0, cpu_count=16, ram_used_bytes=2**34,
                                   ram_total_bytes=2**37, ram_available_bytes=2**36,
                                   process_cpu_percent=6.0, process_rss_bytes=2**31, gpus=[g]))
    assert "H100" in mon.device_label.text() and mon.bars["gpu"].value() == 87
    assert mon.bars["gpu_mem"].value() == 50 and "this app 30.0 GB" in mon.values["gpu_mem"].text()
    assert mon.values["gpu_temp"].text() == "61 °C" and "412 W of 700 W" in mon.values["gpu_power"].text()
    g.power_w = None
    g.memory_total_bytes = None
    mon.show_sample(ResourceSample(0, 1.0, 16, 1, 2, 1, 0.0, 1, gpus=[g]))
    assert mon.values["gpu_power"].text() == "not reported"
    assert "not reported" in mon.values["gpu_mem"].text()
    mon.close()


def test_job_card_states(qtbot):
    card = JobCard("tr_1", "run")
    qtbot.addWidget(card)
    card.show()
    seen = []
    card.action.connect(lambda a, k: seen.append((a, k)))
    card.set_status("running")
    assert card.pause_btn.isVisible() and card.cancel_btn.isVisible()
    assert not card.resume_ckpt_btn.isVisible() and not card.delete_act.isEnabled()
    card.pause_btn.click()
    card.set_status("paused")
    assert card.pause_btn.text() == "Continue"
    card.pause_btn.click()
    card.set_progress(0.25, step=25, total=100, eta_s=125, tokens_per_s=12_345)
    assert card.stats.text() == "25.0% · step 25/100 · 12.3k tok/s"  # no ETA while paused
    card.set_status("interrupted", can_resume=True, message="Interrupted.")
    assert card.resume_ckpt_btn.isVisible() and not card.cancel_btn.isVisible()
    assert card.delete_act.isEnabled() and card.message.text() == "Interrupted."
    assert card.badge.text() == "interrupted — can resume"
    card.resume_ckpt_btn.click()
    # killed before its first checkpoint: nothing to resume, and the badge says so
    card.set_status("interrupted", can_resume=False)
    assert card.badge.text() == "interrupted — no checkpoint"
    assert not card.resume_ckpt_btn.isVisible()
    card.set_status("completed")
    assert not card.resume_ckpt_btn.isVisible() and card.export_act.isEnabled()
    assert not card.message.isVisible()
    assert seen == [("pause", "tr_1"), ("resume", "tr_1"), ("resume_checkpoint", "tr_1")]
    card.set_metrics({"loss": 0.5, "l0": 31.7, "explained_variance": 0.91234,
                      "dead_fraction": 0.021})
    assert card.metrics.text() == "loss 0.5 · L0 31.7 · EV 0.9123 · dead 2.1%"


def test_formatting():
    assert format_eta(3725) == "1h 02m" and format_eta(65) == "1m 05s" and format_eta(None) == "–"
    assert format_rate(2_500_000) == "2.50M tok/s" and format_rate(999) == "999 tok/s"


@pytest.mark.parametrize("text, integer, value", [
    ("2e6", True, 2_000_000), ("2M", True, 2_000_000), ("500k", True, 500_000),
    ("1_000", True, 1000), ("0.5", False, 0.5), ("3e-4", False, 3e-4), ("1,024", True, 1024),
])
def test_parse_number(text, integer, value):
    assert parse_number(text, integer) == value


@pytest.mark.parametrize("text, integer, message", [
    ("abc", True, "not a number"), ("1.5", True, "whole number"), ("1e999", False, "finite"),
])
def test_parse_number_errors(text, integer, message):
    with pytest.raises(ValueError, match=message):
        parse_number(text, integer)


def test_form_sweep_and_width_scaled_lr(qtbot):
    from mistudio.ui.training.form import TrainingForm

    form = TrainingForm()
    qtbot.addWidget(form)
    form.set_data_shape(64, 10_000)
    cfg, problems = form.config()
    assert not problems and cfg["lr"] == pytest.approx(2e-4 / (512 / 2 ** 14) ** 0.5, rel=1e-5)
    form.editors["expansion_factor"].setText("32")
    form.editors["expansion_factor"].textEdited.emit("32")
    assert form.config()[0]["lr"] == pytest.approx(2e-4 / (2048 / 2 ** 14) ** 0.5, rel=1e-5)
    form.editors["lr"].setText("0.01")
    form.editors["lr"].textEdited.emit("0.01")  # the user's own value is kept from now on
    form.editors["expansion_factor"].setText("4")
    form.editors["expansion_factor"].textEdited.emit("4")
    assert form.config()[0]["lr"] == 0.01 and "you set your own" in form.lr_hint.text()
    form.sweep_key.setCurrentIndex(form.sweep_key.findData("k"))
    form.sweep_values.setText("16, 32 64")
    assert form.config()[0]["sweep"] == {"k": [16, 32, 64]}
    form.sweep_values.setText("16, x")
    assert "Sweep values" in form.config()[1][0]
    form.sweep_values.setText("")
    assert "give the values of Active latents (k)" in form.config()[1][0]


def test_form_matryoshka_widths(qtbot):
    from mistudio.sae.config import TrainingConfig
    from mistudio.templates.builtin import builtin_by_id
    from mistudio.ui.training.form import TrainingForm

    form = TrainingForm()
    qtbot.addWidget(form)
    form.show()
    assert form.editors["matryoshka_widths"].isHidden()  # topk by default
    form.set_config(builtin_by_id("matryoshka_batchtopk").config)
    assert not form.editors["matryoshka_widths"].isHidden()
    assert not form.editors["k"].isHidden() and form.editors["l1_coefficient"].isHidden()
    form.editors["matryoshka_widths"].setText("64, 256")
    cfg, problems = form.config()
    assert not problems and cfg["matryoshka_widths"] == [64, 256]
    assert TrainingConfig.from_dict({**cfg, "activation_path": "x"}).validate(d_in=64)
    form.set_config({"architecture": "matryoshka_batchtopk", "matryoshka_widths": [8, 32]})
    assert form.editors["matryoshka_widths"].text() == "8, 32"
    form.editors["matryoshka_widths"].setText("8, lots")
    assert "matryoshka widths" in form.config()[1][0]
