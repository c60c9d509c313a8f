"""Screenshots of each view of the Features tab (for docs/features.md).

    python scripts/features_demo.py DATA_DIR --shots docs/images
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np


def _settle(app, seconds: float = 0.4, until=None, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while until is not None and not until() and time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        app.processEvents()
        time.sleep(0.01)


def pick_feature(tab) -> int:
    """A feature worth showing: alive, not too dense, with a strong maximum, whose top
    examples are inside documents (not the first tokens after BOS)."""
    c = tab.bundle.table.columns
    res = tab.studio.features.results(tab.state.sae_id, tab.state.analysis_id)
    pos = np.asarray(res.array("top_pos"))
    ok = (c["density"] > 1e-3) & (c["density"] < 2e-2) & (np.median(pos, axis=1) >= 8)
    score = np.where(ok, np.nan_to_num(c["max"]), -1)
    return int(c["index"][int(np.argmax(score))])


def take_feature_shots(out_dir: Path, data_dir, *, size=(1500, 950)) -> list[Path]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from mistudio.ui.app import build_window, create_app

    app = create_app()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []

    def shot(widget, name):
        path = out_dir / f"features-{name}.png"
        widget.grab().save(str(path))
        saved.append(path)

    # the empty state of a fresh data folder
    empty = build_window(tempfile.mkdtemp(prefix="mistudio-empty-"))
    empty.resize(*size)
    empty.show()
    empty.show_tab("Features")
    _settle(app)
    shot(empty, "empty")
    empty.skip_close_confirmation = True
    empty.close()

    window = build_window(data_dir)
    window.resize(*size)
    window.show()
    tab = window.show_tab("Features")
    _settle(app, until=lambda: tab.bundle is not None)
    f = pick_feature(tab)
    tab.open_feature(f)
    _settle(app, 0.8, until=lambda: tab.detail.detail is not None)
    shot(window, "table-detail")
    d = tab.detail
    d.scroll.widget().adjustSize()
    for name, box in (("examples", d.top_view.parentWidget()),
                      ("intervals", d.interval_view.parentWidget()),
                      ("logit-lens", d.lens.parentWidget()),
                      ("related", d.correlated.parentWidget())):
        d.scroll.ensureWidgetVisible(box)
        _settle(app, 0.2)
        shot(box, name)
    shot(d.hist, "histogram")

    tab.pages.setCurrentWidget(tab.map_page)
    _settle(app, 1.0, until=lambda: len(tab.map_page.plot.coords) > 0, timeout=30)
    tab.map_page.plot.mark(f)
    _settle(app, 0.5)
    shot(tab.pages, "map")

    tab.pages.setCurrentWidget(tab.heatmap_page)
    tab.heatmap_page.source.setCurrentIndex(tab.heatmap_page.source.findData("neighbours"))
    tab.show_heatmap("neighbours")
    _settle(app, 0.6, until=lambda: len(tab.heatmap_page.heatmap.indices) > 0, timeout=30)
    shot(tab.pages, "heatmap")

    tab.pages.setCurrentWidget(tab.prompt)
    tab.prompt.run()
    _settle(app, 0.6, until=lambda: tab.prompt.result is not None or
            tab.prompt.run_btn.isEnabled(), timeout=180)
    if tab.prompt.result is not None:
        top = int(tab.prompt.arrays()[1][:, 0].argmax())
        tab.prompt._token_clicked(0, top)
        _settle(app, 0.3)
    shot(tab.pages, "prompt")
    window.skip_close_confirmation = True
    window.close()
    _settle(app, 0.3)
    return saved
