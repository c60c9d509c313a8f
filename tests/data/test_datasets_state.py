"""The Datasets tab's state without Qt: selection, actions, the job banner, the demo rule."""

from __future__ import annotations

from dataclasses import dataclass, field

from mistudio.ui.datasets.state import DatasetsState, overview_html


@dataclass
class Rec:  # the fields of a DatasetRecord the state reads
    id: str
    name: str
    status: str = "ready"
    source_kind: str = "local"
    source: dict = field(default_factory=dict)
    size_bytes: int = 0
    n_docs: int = 0
    n_chars: int = 0
    text_column: str = "text"


@dataclass
class Job:
    id: str
    kind: str
    target: str
    title: str = ""
    error: str = ""


def test_the_selection_survives_a_reload_and_falls_back_to_the_first():
    state = DatasetsState()
    a, b = Rec("ds_a", "alpha"), Rec("ds_b", "beta")
    assert state.set_records([a, b]) == "ds_a"  # nothing selected yet: the first
    assert state.select("ds_b", "ready") is True
    assert state.set_records([a, b]) == "ds_b"  # kept
    assert state.set_records([a, b], keep="ds_a") == "ds_a"  # asked for
    assert state.set_records([a]) == "ds_a"  # the selected one went away
    assert state.set_records([]) is None


def test_select_says_what_must_be_redrawn():
    state = DatasetsState()
    assert state.select("ds_a", "importing") is True
    assert state.select("ds_a", "ready") is None  # same dataset, not forced: nothing
    assert state.select("ds_a", "ready", force=True) is True  # its status changed
    assert state.select("ds_a", "ready", force=True) is False  # only the overview
    assert state.select("ds_b", "ready") is True


def test_actions_follow_the_status():
    allowed = DatasetsState.actions(Rec("ds_a", "alpha", status="importing"))
    assert (allowed.title, allowed.tokenize, allowed.rename, allowed.delete) == (
        "alpha", False, True, False)
    ready = DatasetsState.actions(Rec("ds_a", "alpha"))
    assert ready.tokenize and ready.delete
    none = DatasetsState.actions(None)
    assert not (none.tokenize or none.rename or none.delete) and none.title == ""


def test_add_demo_shows_the_whole_demo_instead_of_a_second_copy():
    state = DatasetsState()
    limited = Rec("ds_l", "demo 100", source_kind="demo", source={"spec": {"limit": 100}})
    state.set_records([limited])
    assert state.existing_demo() is None  # a limited copy is not the corpus
    whole = Rec("ds_w", "demo", status="importing", source_kind="demo",
                source={"spec": {"kind": "demo"}})
    state.set_records([limited, whole])
    assert state.existing_demo() == "ds_w"
    state.set_records([limited, Rec("ds_w", "demo", status="failed", source_kind="demo")])
    assert state.existing_demo() is None  # a failed import is imported again


def test_the_banner_follows_progress_and_keeps_errors_until_dismissed():
    state = DatasetsState()
    state.set_records([Rec("ds_a", "alpha")])
    imp = Job("job_1", "datasets.import", "ds_a", title="Import alpha")
    assert not state.on_progress(Job("job_x", "sae.train", "tr_1"), {"done": 1, "total": 2})
    assert state.on_progress(imp, {"done": 250, "total": 1000, "message": "reading"})
    assert state.banner.kind == "running" and state.banner.job_id == "job_1"
    assert state.banner.text == "Importing alpha: reading" and state.banner.fraction == 0.25
    assert state.progress == {"ds_a": "25%"}
    assert state.on_progress(imp, {"done": 3, "total": None})
    assert state.banner.fraction is None and state.progress == {"ds_a": "…"}

    assert not state.on_ended(imp, "running")
    assert state.on_ended(imp, "completed")  # its own banner goes; the card's progress too
    assert not state.banner.visible and state.progress == {}

    tok = Job("job_2", "datasets.tokenize", "ds_a", title="Tokenize alpha", error="bad file")
    state.on_progress(tok, {"done": 1, "total": 4})
    assert state.on_ended(tok, "failed")
    assert state.banner.kind == "failed" and state.banner.text == "Tokenize alpha failed: bad file"
    other = Job("job_3", "datasets.stats", "ds_a", title="Stats")
    assert state.on_ended(other, "completed")  # another job ending keeps the error shown
    assert state.banner.kind == "failed"
    state.dismiss()
    assert not state.banner.visible
    assert state.on_ended(other, "cancelled")
    assert state.banner.text == "Stats was cancelled; nothing was kept."


def test_overview_lists_source_and_tokenizations_escaped():
    @dataclass
    class Tok:
        id: str = "tok_1"
        status: str = "ready"
        tokenizer: str = "gpt2"
        seq_len: int = 128
        settings: dict = field(default_factory=lambda: {"packing": "pack", "prepend_bos": True})
        n_seq: int = 1200
        n_tokens: int = 153600
        size_bytes: int = 0

    ds = Rec("ds_a", "<b>x</b>", n_docs=12_345, source={"path": "/d", "spec": {"hidden": 1}})
    page = overview_html(ds, [Tok()])
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "12,345 documents" in page
    assert "<td>/d</td>" in page and "hidden" not in page  # the spec stays out
    assert "<td>pack, BOS</td>" in page and "<td>153,600</td>" in page
    assert "None yet" in overview_html(ds, []) and overview_html(None, []) == ""
