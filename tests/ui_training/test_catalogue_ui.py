"""Training tab > SAEs > Add SAE > From the catalogue: browse, filter, refuse what cannot
load, download (against the local fake Hub) and see the SAE in the list."""

from __future__ import annotations

import pytest

from tests.models.fake_hub import FakeHub
from tests.sae.test_catalogue import TINY_YAML, _saelens_repo


@pytest.fixture
def hub(tmp_path, monkeypatch):
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)
    with FakeHub() as h:
        yield h


def test_browse_filter_and_download_from_the_catalogue(qt_studio, qtbot, hub, tmp_path):
    from mistudio.models.repository import ModelRecord
    from mistudio.ui.training.tab import TrainingTab

    studio, bridge = qt_studio
    _saelens_repo(tmp_path / "repo")
    hub.repos["acme/saes"] = tmp_path / "repo"
    f = tmp_path / "p.yaml"
    f.write_text(TINY_YAML)
    studio.sae_catalogue.set_catalogue_file(f)
    studio.sae_catalogue.endpoint = hub.endpoint
    studio.models.repo.insert(ModelRecord(id="m_1", name="gpt2", source="hub",
                                          source_ref="openai-community/gpt2"))
    tab = TrainingTab(studio, bridge)
    qtbot.addWidget(tab)
    tab.resize(1300, 800)
    tab.show()
    page = tab.saes_page
    tab.pages.setCurrentWidget(page)
    assert page.empty.isVisible() and "From the catalogue" in page.catalogue_action.text()
    browser = page.open_catalogue()
    qtbot.waitUntil(lambda: browser.loaded, timeout=20_000)
    assert browser.table.rowCount() == 4 and "4 SAEs match" in browser.summary.text()
    # registered models first, starred; the model filter narrows the releases
    assert browser.model_combo.itemText(1) == "★ openai-community/gpt2"
    browser.model_combo.setCurrentIndex(1)
    assert browser.table.rowCount() == 2
    assert [browser.release_combo.itemText(i) for i in range(browser.release_combo.count())] \
        == ["All releases", "acme-gpt2-res"]
    browser.model_combo.setCurrentIndex(0)
    browser.loadable.setChecked(True)
    assert browser.table.rowCount() == 3
    browser.loadable.setChecked(False)
    browser.mine.setChecked(True)
    assert browser.table.rowCount() == 2
    browser.mine.setChecked(False)
    # an entry the app cannot load: flagged, and the download button is off
    browser.select("acme-gemma3/layer_0_width_16k_l0_small")
    assert not browser.download_btn.isEnabled() and "gemma_3" in browser.details.text()
    browser.search.setText("blocks.1")
    assert browser.table.rowCount() == 1
    browser.select("acme-gpt2-res/blocks.1.hook_resid_pre")
    assert browser.download_btn.isEnabled()
    job = browser.download_selected()
    assert studio.jobs.wait(job.id, 60).status == "completed"
    qtbot.waitUntil(lambda: page.table.rowCount() == 1, timeout=10_000)
    assert page.table.item(0, 6).text() == "blocks.1.hook_resid_pre"
    assert page.table.item(0, 5).text() == "openai-community/gpt2"
    browser._show_details()
    assert "already imported" in browser.details.text()
    shots = tmp_path / "shots"
    shots.mkdir()
    browser.grab().save(str(shots / "catalogue.png"))
    assert (shots / "catalogue.png").stat().st_size > 5000
    browser.close()
