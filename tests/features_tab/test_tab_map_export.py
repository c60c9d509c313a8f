"""The Features tab's map (compute, click, lasso into a list), heatmap, exports and the
"Steer with this feature" routing, on a real tiny analysis."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

from mistudio.errors import UserError
from tests.features_tab.test_features_tab import alive_feature, open_and_wait


def _mouse(widget, kind, pos, buttons):
    button = Qt.MouseButton.LeftButton if kind != QEvent.Type.MouseMove else Qt.MouseButton.NoButton
    ev = QMouseEvent(kind, QPointF(pos), QPointF(widget.mapToGlobal(pos)), button, buttons,
                     Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, ev)


@pytest.mark.timeout(600)  # may pay the session's numba compile if run alone
def test_compute_map_click_a_point_and_lasso_into_a_list(qtbot, features_tab, monkeypatch,
                                                          umap_map):
    tab, studio, sae_id, fa_id = features_tab
    tab.pages.setCurrentWidget(tab.map_page)
    qtbot.waitUntil(lambda: "No UMAP map" in tab.map_page.empty.text(), timeout=10_000)
    assert tab.map_page.compute.isEnabled()
    tab.map_page.compute.click()
    plot = tab.map_page.plot
    qtbot.waitUntil(lambda: len(plot.coords) == 96, timeout=300_000)
    assert np.allclose(plot.coords, studio.feature_maps.load_map(sae_id))

    # clicking a point (a real press and release on it) opens its feature
    plot.resize(600, 500)
    qtbot.wait(50)
    vb = plot.viewbox
    target = int(np.argmax(plot.coords[:, 0]))  # the rightmost point: nothing on top of it
    at = plot.mapFromScene(vb.mapViewToScene(QPointF(*map(float, plot.coords[target]))))
    assert plot.point_at(vb.mapViewToScene(QPointF(*map(float, plot.coords[target])))) == target
    _mouse(plot.viewport(), QEvent.Type.MouseButtonPress, at, Qt.MouseButton.LeftButton)
    _mouse(plot.viewport(), QEvent.Type.MouseButtonRelease, at, Qt.MouseButton.NoButton)
    qtbot.waitUntil(lambda: tab.detail.detail is not None
                    and tab.detail.detail.feature == target, timeout=10_000)

    # a freehand lasso (real mouse events on the plot) around the left half of the points
    monkeypatch.setattr(tab, "ask_list_name", lambda suggested="": "left half")
    tab.map_page.lasso.setChecked(True)
    xs = plot.coords[:, 0]
    mid = float(np.median(xs))
    (x0, _x1), (y0, y1) = vb.viewRange()  # corners just inside the visible area
    dy = 0.01 * (y1 - y0)
    left = x0 + 0.01 * (_x1 - x0)
    corners = [(left, y0 + dy), (mid, y0 + dy), (mid, y1 - dy), (left, y1 - dy),
               (left, y0 + dy)]
    view = plot.viewport()
    points = [plot.mapFromScene(vb.mapViewToScene(QPointF(x, y))) for x, y in corners]
    _mouse(view, QEvent.Type.MouseButtonPress, points[0], Qt.MouseButton.LeftButton)
    for a, b in zip(points, points[1:]):
        for t in np.linspace(0, 1, 8)[1:]:
            p = QPointF(a.x() + (b.x() - a.x()) * t, a.y() + (b.y() - a.y()) * t)
            _mouse(view, QEvent.Type.MouseMove, p.toPoint(), Qt.MouseButton.LeftButton)
            qtbot.wait(25)  # pyqtgraph drops mouse moves closer than ~20 ms apart
    _mouse(view, QEvent.Type.MouseButtonRelease, points[-1], Qt.MouseButton.NoButton)
    qtbot.waitUntil(lambda: any(l.name == "left half" for l in tab.lists), timeout=10_000)
    rec = next(l for l in studio.feature_labels.lists(sae_id) if l.name == "left half")
    got = set(studio.feature_labels.list_members(rec.id))
    # the loop's edge is drawn through mouse pixels: points near the cut may fall either way
    clearly_in = set(np.flatnonzero(xs < mid - 0.05 * np.ptp(xs)).tolist())
    clearly_out = set(np.flatnonzero(xs > mid + 0.05 * np.ptp(xs)).tolist())
    assert clearly_in <= got and not (got & clearly_out)
    # the table now filters by that list
    qtbot.waitUntil(lambda: tab.table.list_box.currentData() == rec.id, timeout=5000)
    assert set(tab.table.model.visible_features().tolist()) == got
    # colour the map by the list
    tab.map_page.colour.setCurrentIndex(tab.map_page.colour.findData("list"))
    assert plot.colour_mode == "list"


def test_heatmap_of_neighbours_is_clustered_activation_correlation(qtbot, features_tab):
    tab, studio, sae_id, fa_id = features_tab
    f, res = alive_feature(studio, sae_id, fa_id)
    open_and_wait(qtbot, tab, f)
    tab.pages.setCurrentWidget(tab.heatmap_page)
    tab.show_heatmap("neighbours")
    hm = tab.heatmap_page.heatmap
    qtbot.waitUntil(lambda: len(hm.indices) > 2, timeout=10_000)
    want = sorted({f, *[i for i, _ in res.correlated(f)], *[i for i, _ in res.decoder_neighbours(f)]})
    assert sorted(hm.indices.tolist()) == want
    # independent: dense codes of the random contexts, numpy corrcoef
    offsets = np.asarray(res.array("random_codes_offsets"))
    feats = np.asarray(res.array("random_codes_features"))
    vals = np.asarray(res.array("random_codes_values"))
    dense = np.zeros((len(offsets) - 1, res.d_sae))
    rows = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    dense[rows, feats] = vals
    sub = dense[:, hm.indices]
    live = sub.std(0) > 0
    ref = np.corrcoef(sub[:, live], rowvar=False)
    assert np.allclose(hm.matrix[np.ix_(live, live)], ref, atol=1e-5)
    assert "×" in hm.describe(0, 1)
    hm.feature_clicked.emit(int(hm.indices[1]))
    qtbot.waitUntil(lambda: tab.detail.detail.feature == int(hm.indices[1]), timeout=10_000)


def test_exports_labels_and_images(qtbot, features_tab, tmp_path):
    tab, studio, sae_id, fa_id = features_tab
    f, _ = alive_feature(studio, sae_id, fa_id)
    studio.feature_labels.set_label(sae_id, f, "shown in export")
    tab.reload_annotations()
    qtbot.waitUntil(lambda: tab.bundle.table.columns["label"][f] == "shown in export",
                    timeout=5000)
    path = tmp_path / "labels.json"
    tab.exports.export_labels(path)
    qtbot.waitUntil(lambda: path.exists() and "done" in tab.message.text(), timeout=10_000)
    data = json.loads(path.read_text())
    assert [(x["index"], x["label"]) for x in data["features"]] == [(f, "shown in export")]
    # import a CSV: the table shows the new label
    csv_path = tmp_path / "in.csv"
    csv_path.write_text(f"index,label\n{f},renamed by csv\n")
    tab.exports.import_labels(csv_path)
    qtbot.waitUntil(lambda: tab.bundle.table.columns["label"][f] == "renamed by csv",
                    timeout=10_000)
    open_and_wait(qtbot, tab, f)
    page = tab.detail.scroll.widget()
    qtbot.wait(100)  # the page lays out its examples
    size = page.size()
    for suffix in ("png", "svg"):
        out = tmp_path / f"detail.{suffix}"
        tab.exports.save_image(out)  # painted now, written on the worker
        qtbot.waitUntil(lambda: "Saving the view: done" in tab.message.text(), timeout=10_000)
        assert out.stat().st_size > 1000
    # painted in strips: the whole feature page, at its size
    from PySide6.QtGui import QImage
    assert QImage(str(tmp_path / "detail.png")).size() == size
    assert (tmp_path / "detail.svg").read_text().lstrip().startswith("<?xml")
    # a plot (a QGraphicsView) as SVG too: the map with a few points
    tab.pages.setCurrentWidget(tab.map_page)
    tab.map_page.plot.set_points(np.random.default_rng(0).normal(size=(50, 2)))
    tab.map_page.show_plot()
    tab.exports.save_image(tmp_path / "map.svg")
    qtbot.waitUntil(lambda: (tmp_path / "map.svg").exists(), timeout=10_000)
    assert "<svg" in (tmp_path / "map.svg").read_text()
    with pytest.raises(UserError, match=r"\.png or \.svg"):
        tab.exports.save_image(tmp_path / "map.gif")


def test_steer_with_this_feature_opens_the_steering_tab(qtbot, shared_analysis, monkeypatch):
    from mistudio.ui.main_window import MainWindow

    studio, sae_id, fa_id = shared_analysis
    win = MainWindow(studio, remember_layout=False)
    qtbot.addWidget(win)
    win.skip_close_confirmation = True
    tab = win.show_tab("Features")
    qtbot.waitUntil(lambda: tab.bundle is not None, timeout=20_000)
    open_and_wait(qtbot, tab, 3)
    got = []
    steering = win.lazy_tabs["Steering"].ensure_built()
    if hasattr(steering, "steer_feature"):  # the Steering tab of this build takes features
        orig = steering.steer_feature
        steering.steer_feature = lambda s, i: (got.append((s, i)), orig(s, i))
    win.tabs.setCurrentIndex(0)
    tab.detail.steer_btn.click()
    assert win.tabs.tabText(win.tabs.currentIndex()) == "Steering"
    if hasattr(steering, "steer_feature"):
        assert got == [(sae_id, 3)]
    else:
        assert "cannot take a feature" in win.statusBar().currentMessage()
    # close the window as the user does (every tab's and the jobs panel's background reads
    # stop, their threads joined, so none runs into later tests), but keep the session's
    # shared Studio open
    monkeypatch.setattr(studio, "close", lambda timeout=None: [])
    win.close()
    assert win._closing


def test_export_selected_features_as_neuronpedia_json_and_vectors(qtbot, features_tab, tmp_path):
    tab, studio, sae_id, fa_id = features_tab
    from safetensors.numpy import load_file
    from PySide6.QtCore import QItemSelectionModel

    view, model = tab.table.view, tab.table.model
    sm = view.selectionModel()
    for row in (2, 5, 9):
        sm.select(model.index(row, 0), QItemSelectionModel.SelectionFlag.Select
                  | QItemSelectionModel.SelectionFlag.Rows)
    chosen = [model.feature_at(r) for r in (2, 5, 9)]
    assert tab.exports.selected() == chosen
    folder = tmp_path / "np"
    tab.exports.export_neuronpedia(folder)
    qtbot.waitUntil(lambda: "done" in tab.message.text(), timeout=30_000)
    batch = json.loads((folder / "batch-0.json").read_text())
    assert [f["feature_index"] for f in batch["features"]] == chosen
    vec = tmp_path / "vectors.npy"
    tab.exports.export_vectors(vec)
    qtbot.waitUntil(lambda: vec.exists() and "vectors: done" in tab.message.text(),
                    timeout=30_000)
    w_dec = load_file(str(studio.trainings.get_sae(sae_id).folder + "/sae_weights.safetensors"))["W_dec"]
    assert np.allclose(np.load(vec), w_dec[chosen])
