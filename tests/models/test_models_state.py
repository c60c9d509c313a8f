"""The Models tab's state without Qt: selection across reloads, the buttons a model allows,
the copies being saved and the message line."""

from __future__ import annotations

from dataclasses import dataclass, field

from mistudio.ui.models.state import ModelsState, failure_line, model_card_text


@dataclass
class Rec:  # the fields of a ModelRecord the state reads
    id: str
    name: str = "m"
    status: str = "ready"
    source: str = "local"
    n_params: int = 0
    n_layers: int = 0
    d_model: int = 0
    size_bytes: int = 0
    variants: list = field(default_factory=list)
    family: str = ""
    dtype: str = ""


FAILED = {"quantization": "4bit", "dtype": "bfloat16", "device": "cuda", "error": "no CUDA",
          "job_id": "job_q"}


def test_selection_is_kept_across_reloads_and_falls_back_to_the_first():
    state = ModelsState()
    assert state.set_records([Rec("m_a"), Rec("m_b")], {}) == "m_a"
    state.select("m_b", "ready")
    assert state.set_records([Rec("m_a"), Rec("m_b")], {}) == "m_b"
    assert state.set_records([Rec("m_a")], {}) == "m_a"  # the selected one was deleted
    assert state.set_records([], {}) is None


def test_a_status_change_the_view_has_not_drawn_is_noticed():
    state = ModelsState()
    state.set_records([Rec("m_a", status="downloading")], {})
    state.select("m_a", "downloading")
    assert not state.status_changed("m_a")
    state.set_records([Rec("m_a", status="ready")], {})
    assert state.status_changed("m_a")  # e.g. the download finished: redraw
    state.select("m_a", "ready")
    assert not state.status_changed("m_a")


def test_actions_follow_source_status_and_a_failed_save():
    state = ModelsState()
    hub = Rec("m_h", source="hub", status="incomplete")
    ready = Rec("m_r")
    state.set_records([hub, ready], {"m_r": FAILED})
    a = state.actions(hub)
    assert (a.resume, a.release, a.rename, a.delete, a.retry_label) == (True, False, True,
                                                                         True, "")
    b = state.actions(ready)
    assert not b.resume and b.release and b.retry_label == "Retry saving 4bit copy"
    assert b.retry_tip == failure_line(FAILED) and "no CUDA" in b.retry_tip
    none = state.actions(None)
    assert not (none.resume or none.release or none.rename or none.delete)
    state.select("m_r", "ready")
    assert state.retry_request() == ("m_r", "4bit", "bfloat16", "cuda")
    state.select("m_h", "incomplete")
    assert state.retry_request() is None


def test_saving_a_copy_sets_the_message_until_its_job_ends():
    state = ModelsState()
    state.saving_started("job_1", "Quantize m", "8bit")
    assert state.message.text == "Saving a 8bit copy (Quantize m)..." and not state.message.error
    assert not state.on_job_status("job_1", "running")  # still saving: nothing changes
    assert not state.on_job_status("job_other", "completed")  # not a save of this tab
    assert state.on_job_status("job_1", "completed")
    assert "Saved the 8bit copy" in state.message.text and not state.message.error
    assert state.saving == {}

    state.saving_started("job_2", "Quantize m", "4bit")
    assert state.on_job_status("job_2", "failed")
    assert "failed" in state.message.text and state.message.error
    state.saving_started("job_3", "Quantize m", "4bit")
    assert state.on_job_status("job_3", "cancelled") and state.message.text == ""
    assert ModelsState.reload_after("running") and ModelsState.reload_after("interrupted")
    assert not ModelsState.reload_after("paused")


def test_card_text_names_shape_status_and_a_failed_save():
    rec = Rec("m_a", name="tiny", n_params=2_500_000, n_layers=2, d_model=64,
              size_bytes=10 * 1024 * 1024, variants=["8bit"], family="gpt2", dtype="float32")
    lines = model_card_text(rec).split("\n")
    assert lines[0] == "tiny"
    assert lines[1] == "gpt2  ·  2 layers x 64  ·  2.5M params"
    assert lines[2].startswith("ready  ·  float32  ·  10") and "saved: 8bit" in lines[2]
    assert model_card_text(rec, FAILED).split("\n")[3] == failure_line(FAILED)
