"""Features tab: the longest GUI-thread stall of each interaction, and of the tab's first open.

The stall probe of ``runs_table_bench.py`` (a 5 ms ``QTimer``; the longest gap between its
ticks is the longest the window could not repaint or react) runs while each interaction is
posted to the event loop and until the tab has finished what it started (background reads
included): ``--interactions`` on two real analyses the engine makes here (tiny-gpt2 and a
random TopK SAE, as the tests do): a small one (``--small`` features) and one of 65,536
features. Each interaction is repeated and the worst stall is printed with its median; the
target is 100 ms.

``--first-open FOLDER``: the tab's first open in a fresh process on a data folder (e.g. the
load folder of ``scripts/make_load_folder.py``): from the click to the tab's first paint, to
its table holding every row, and the longest stall over that span plus 0.3 s. With
``--baseline-tree DIR`` (a checkout of another commit, e.g. ``git worktree add /tmp/base
main``) the same runs alternate with that tree's code, and the ratio is printed.

    QT_QPA_PLATFORM=offscreen python benchmarks/features_stall_bench.py --interactions
    QT_QPA_PLATFORM=offscreen python benchmarks/features_stall_bench.py --first-open DIR \
        [--baseline-tree DIR] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TARGET_MS = 100.0


# ---------------------------------------------------------------------------- the analyses

class _Dirs:
    """The ``tmp_path_factory`` the test suite's builders take."""

    def __init__(self, root: Path):
        self.root = root

    def mktemp(self, name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=name + "-", dir=self.root))


def build_studio(root: Path, sizes: list[int]):
    """A Studio with tiny-gpt2 and one random TopK SAE per size, each analysed by the real
    engine (the test suite's fixtures, built the same way). Returns (studio, {size: (sae id,
    analysis id)}, seconds per analysis)."""
    sys.path.insert(0, str(ROOT))
    from mistudio.sae.formats import save_saelens
    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio
    from tests.analysis.conftest import random_sae
    from tests.conftest import _save_tiny, tiny_tokenizer_dir
    from tests.models.conftest import write_tokenization
    from transformers import GPT2Config

    studio = Studio(root / "data", secrets=MemorySecrets(), setup_logs=False)
    made = {}
    for d_sae in sizes:  # made by an earlier run in this folder (--data): reused
        sae = next((x for x in studio.trainings.list_saes()
                    if x.name == f"random TopK {d_sae:,}"), None)
        fa = studio.features.latest_analysis(sae.id) if sae else None
        if fa is not None:
            made[d_sae] = (sae.id, fa.id)
    if len(made) == len(sizes):
        return studio, made, {}
    studio.close(timeout=10)
    dirs = _Dirs(root)
    tok_dir = tiny_tokenizer_dir.__wrapped__(dirs)
    cfg = GPT2Config(vocab_size=512, n_positions=128, n_embd=64, n_layer=3, n_head=4,
                     bos_token_id=0, eos_token_id=0)
    model_dir = _save_tiny(cfg, dirs.mktemp("tiny_gpt2"), tok_dir)
    tokens = write_tokenization(dirs.mktemp("tokens"), tok_dir, seq_len=32)
    studio = Studio(root / "data", secrets=MemorySecrets(), setup_logs=False)
    _model, job = studio.models.add_local(str(model_dir), name="tiny-gpt2")
    studio.jobs.wait(job.id, timeout=300)
    out, took = dict(made), {}
    for d_sae in sizes:
        if d_sae in out:
            continue
        folder = dirs.mktemp(f"sae{d_sae}")
        save_saelens(folder, random_sae(d_sae=d_sae, seed=d_sae), model_name="tiny-gpt2",
                     hook_name="blocks.1.hook_resid_post")
        sae = studio.trainings.import_sae(str(folder), name=f"random TopK {d_sae:,}")
        t = time.perf_counter()
        job = studio.features.start_analysis(sae.id, tokenization=str(tokens), max_tokens=0,
                                             device="cpu", n_random=200, context_before=4,
                                             context_after=2)
        done = studio.jobs.wait(job.id, timeout=1800)
        if done.status != "completed":
            raise SystemExit(f"the analysis of {d_sae} features {done.status}: {done.error}")
        took[d_sae] = time.perf_counter() - t
        out[d_sae] = (sae.id, job.target)
    return studio, out, took


def write_pca_map(studio, sae_id: str) -> None:
    """The map file the map job writes, laid out by the decoder's first two principal
    components (UMAP of 65k rows costs minutes of compiling; the GUI's work is the same)."""
    import json

    import numpy as np

    from mistudio.feature_map import projection

    rows = projection.decoder_rows(studio.trainings.get_sae(sae_id).folder)
    coords = np.ascontiguousarray(projection.prepare(rows, dims=2), dtype=np.float32)
    out = projection.map_file(studio.paths.cache, sae_id, "umap", 0)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, coords)
    out.with_suffix(".json").write_text(json.dumps({"sae_id": sae_id, "method": "umap",
                                                    "seed": 0, "n": len(coords)}))


# ---------------------------------------------------------------------------- the probe

class Probe:
    """Runs ``op`` from the event loop with a 5 ms tick probe on, until ``done()`` holds;
    returns (longest gap between ticks, seconds until done). ``gc_pauses`` collects the
    garbage collector's pauses (generation, seconds) of the last run: a full collection
    holds the GIL, so it is a stall whoever triggered it."""

    def __init__(self, app):
        import gc

        self.app = app
        self.gc_pauses: list[tuple[int, float]] = []
        self._gc_start = 0.0

        def on_gc(phase, info):
            if phase == "start":
                self._gc_start = time.perf_counter()
            else:
                self.gc_pauses.append((info["generation"], time.perf_counter() - self._gc_start))

        gc.callbacks.append(on_gc)

    def run(self, op, done=lambda: True, settle: float = 0.05, timeout: float = 120.0):
        from PySide6.QtCore import QTimer

        ticks, started, failed = [], [], []
        probe = QTimer()
        probe.setInterval(5)
        probe.timeout.connect(lambda: ticks.append(time.perf_counter()))

        def go():
            started.append(time.perf_counter())
            try:
                op()
            except Exception as exc:  # noqa: BLE001  (reported below, with its name)
                failed.append(exc)

        probe.start()
        t0 = time.perf_counter()
        ticks.append(t0)
        self.gc_pauses = []
        QTimer.singleShot(0, go)
        finished = None
        while time.perf_counter() - t0 < timeout and not failed:
            self.app.processEvents()
            if started and finished is None and done():
                finished = time.perf_counter()
            if finished is not None and time.perf_counter() - finished > settle:
                break
            time.sleep(0.001)
        probe.stop()
        ticks.append(time.perf_counter())
        if failed:
            raise failed[0]
        if finished is None:
            raise TimeoutError(f"not finished in {timeout:.0f} s")
        return max(b - a for a, b in zip(ticks, ticks[1:])), finished - started[0]

    def idle(self, seconds: float) -> None:
        t = time.perf_counter()
        while time.perf_counter() - t < seconds:
            self.app.processEvents()
            time.sleep(0.002)


def interactions(tab, studio, sae_id: str, fa_id: str, out_dir: Path):
    """(name, op, done) of every interaction of the tab, in an order that makes sense."""
    import numpy as np

    res = studio.features.results(sae_id, fa_id)
    density = np.asarray(res.columns["density"])
    alive = np.flatnonzero(density > 0)
    busy = alive[np.argsort(-density[alive], kind="stable")]  # most examples first
    feats = [int(f) for f in busy[:: max(1, len(busy) // 6)][:6]]
    d = tab.detail
    state = {"i": 0, "target": None}

    def feature_shown(f):
        return lambda: (d.detail is not None and d.detail.feature == f
                        and d.interp.info is not None and d.interp.info.feature == f)

    def open_next():
        f = feats[state["i"] % len(feats)]
        state["i"] += 1
        state["target"] = f
        tab.table.select_feature(f, emit=True)

    def opened():
        return feature_shown(state["target"])()

    def chip():
        chips = d.neighbours if d.neighbours.count() else d.correlated
        state["target"] = int(chips.item(0).data(256))
        chips.itemClicked.emit(chips.item(0))

    def back():
        state["target"] = tab.state.history.back_stack[-1]
        tab.back()

    def forward():
        state["target"] = tab.state.history.forward_stack[-1]
        tab.forward()

    def wait_for(cond, timeout=60.0):
        t = time.perf_counter()
        while not cond() and time.perf_counter() - t < timeout:
            QApplication.processEvents()
            time.sleep(0.002)

    def prepare_ablation():  # an alive feature open, its panel shown, no ablation yet
        d.detail = None  # wait for this open's read (a later one would clear the ablation)
        tab.open_feature(feats[0])
        tab.pages.setCurrentWidget(d)
        wait_for(feature_shown(feats[0]))
        d.ablation = {}

    def prepare_map():  # the map page shown with its points
        tab.pages.setCurrentWidget(m)
        wait_for(lambda: len(m.plot.coords) == len(density))

    def exported(what):
        def done():
            if "failed" in tab.state.message:
                raise RuntimeError(tab.state.message)
            return tab.state.message.startswith(what) and "done" in tab.state.message
        return done

    def cycle(box):
        return lambda: box.setCurrentIndex((box.currentIndex() + 1) % box.count())

    def hover_all():  # the hover text of every token of the top examples
        view = d.top_view
        for _rect, e, i in view._boxes:
            view.tooltip_text(e, i)

    m = tab.map_page
    h = tab.heatmap_page
    p = tab.prompt
    coords = {}

    def lasso():
        xy = m.plot.coords
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        t = np.linspace(0, 2 * np.pi, 300)
        ring = np.c_[lo[0] + (hi[0] - lo[0]) * (0.5 + 0.3 * np.cos(t)),
                     lo[1] + (hi[1] - lo[1]) * (0.5 + 0.3 * np.sin(t))]
        n = len(tab.lists)
        coords["lists"] = n
        m.plot.lasso_drawn.emit(ring)

    def labelled(text):
        def op():
            d.label_edit.setText(text)
            d.flush_edits()
        return op

    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    from mistudio.ui.features.table_data import KEYS
    ASC, DESC = Qt.SortOrder.AscendingOrder, Qt.SortOrder.DescendingOrder
    ops = [
        ("open a feature (table row)", open_next, opened, 6),
        ("context width toggle", cycle(d.context_box), lambda: True, 4),
        ("interval scheme switch", cycle(d.scheme_box), lambda: True, 4),
        ("logit-lens convention switch", cycle(d.convention_box), lambda: True, 4),
        ("hover every top-example token", hover_all, lambda: True, 2),
        ("neighbour chip", chip, opened, 3),
        ("back", back, opened, 2),
        ("forward", forward, opened, 2),
        ("label edit (saved)", labelled("bench label"), lambda: True, 3),
        ("favourite toggle", lambda: d.fav.setChecked(not d.fav.isChecked()), lambda: True, 4),
        ("search 'the' (debounced)", lambda: tab.table.search.setText("the"),
         lambda: not tab.table._search_timer.isActive(), 1),
        ("clear search", lambda: tab.table.search.setText(""),
         lambda: not tab.table._search_timer.isActive(), 1),
        ("sort by label", lambda: tab.table.view.sortByColumn(KEYS.index("label"), ASC),
         lambda: True, 2),
        ("sort by density", lambda: tab.table.view.sortByColumn(KEYS.index("density"), DESC),
         lambda: True, 2),
        ("filter: alive only", lambda: tab.table.alive.setCurrentIndex(1), lambda: True, 1),
        ("filter: all", lambda: tab.table.alive.setCurrentIndex(0), lambda: True, 1),
        ("map page (points, colours)", lambda: tab.pages.setCurrentWidget(m),
         lambda: len(m.plot.coords) == len(density), 1),
        ("map: colour by label", lambda: m.colour.setCurrentIndex(1), lambda: True, 1,
         prepare_map),
        ("map: colour by density", lambda: m.colour.setCurrentIndex(0), lambda: True, 1,
         prepare_map),
        ("map: pan and repaint", lambda: (m.plot.viewbox.translateBy(x=0.05),
                                          m.plot.viewport().repaint()), lambda: True, 3,
         prepare_map),
        ("map: lasso into a list", lasso, lambda: len(tab.lists) > coords.get("lists", 1e9), 1,
         prepare_map),
        ("heatmap of 200 shown rows (corr.)", lambda: (tab.pages.setCurrentWidget(h),
                                                      h.source.setCurrentIndex(1),
                                                      h.what.setCurrentIndex(0),
                                                      h.show_btn.click()),
         lambda: len(h.heatmap.indices) == min(200, len(density)), 1),
        ("heatmap of 200 (decoder cosine)", lambda: (h.heatmap.set_matrix([], np.zeros((0, 0))),
                                                     h.what.setCurrentIndex(1),
                                                     h.show_btn.click()),
         lambda: len(h.heatmap.indices) == min(200, len(density)), 1),
        ("prompt view: run", lambda: (tab.pages.setCurrentWidget(p), p.run()),
         lambda: p.result is not None and p.run_btn.isEnabled(), 2),
        ("prompt view: click a token", lambda: p._token_clicked(0, 1), lambda: True, 2),
        ("prompt view: highlight feature", lambda: p.highlight.toggle(), lambda: True, 2),
        ("ablation (model loads once)", tab.ablate_current, lambda: bool(d.ablation), 2,
         prepare_ablation),
        ("export labels (JSON)", lambda: tab.exports.export_labels(out_dir / "labels.json"),
         exported("Exporting labels"), 1),
        ("export Neuronpedia JSON (all)",
         lambda: tab.exports.export_neuronpedia(out_dir / "np"),
         exported("Exporting Neuronpedia JSON"), 1),
        ("export vectors (all, .npy)", lambda: tab.exports.export_vectors(out_dir / "v.npy"),
         exported("Exporting feature vectors"), 1),
        ("save the map as PNG", lambda: tab.exports.save_image(out_dir / "map.png"),
         exported("Saving the view"), 1, prepare_map),
        ("save the map as SVG", lambda: tab.exports.save_image(out_dir / "map.svg"),
         exported("Saving the view"), 1, prepare_map),
        ("save the feature page as PNG", lambda: tab.exports.save_image(out_dir / "f.png"),
         exported("Saving the view"), 1, prepare_ablation),
    ]
    return ops


def run_interactions(app, studio, sae_id: str, fa_id: str, repeat: int,
                     only: list[str] = ()) -> dict:
    """{interaction: [stall seconds per run]} on one analysis, through a fresh tab."""
    from mistudio.ui.features.tab import FeaturesTab
    from mistudio.ui.workers import JobBridge

    probe = Probe(app)
    bridge = JobBridge()
    studio.add_job_listener(bridge)
    tab = FeaturesTab(studio, bridge)
    tab.resize(1300, 850)
    tab.show()
    tab.ask_list_name = lambda suggested="": f"{suggested or 'bench list'} {time.time_ns()}"
    for rec in studio.feature_labels.lists(sae_id):  # left by an interrupted run
        studio.feature_labels.delete_list(rec.id)
    out: dict[str, list[float]] = {}
    gcs: dict[str, list[float]] = {}
    d_sae = studio.trainings.get_sae(sae_id).d_sae

    def on_sae():
        box = tab.picker.sae_box
        return box.findData(sae_id) >= 0

    s, _ = probe.run(lambda: None, on_sae)
    s, _ = probe.run(lambda: tab.picker.sae_box.setCurrentIndex(
        tab.picker.sae_box.findData(sae_id)), lambda: tab.table.model.rowCount() == d_sae
        and tab.bundle is not None and tab.bundle.sae_id == sae_id, settle=0.3)
    out["pick the SAE: its table arrives"] = [s]
    probe.idle(0.5)  # the pages build when idle
    out_dir = Path(tempfile.mkdtemp(prefix="features-stall-out-"))
    for name, op, done, n, *prepare in interactions(tab, studio, sae_id, fa_id, out_dir):
        if only and not any(o in name for o in only):
            continue
        for _ in range(max(1, n * repeat // 2)):
            for prep in prepare:
                prep()
            try:
                s, _t = probe.run(op, done, timeout=120)
                gc_max = max((t for _g, t in probe.gc_pauses), default=0.0)
                gcs.setdefault(name, []).append(gc_max)
            except Exception as exc:
                raise SystemExit(f"{name}: {type(exc).__name__}: {exc} (the tab says: "
                                 f"{tab.state.message!r})") from exc
            out.setdefault(name, []).append(s)
    tab.shutdown()
    bridge.stop()
    studio.jobs.remove_listener(bridge)
    for rec in studio.feature_labels.lists(sae_id):  # the lasso's: a rerun starts the same
        studio.feature_labels.delete_list(rec.id)
    tab.close()
    tab.deleteLater()
    app.processEvents()
    out["_gc"] = gcs
    return out


def interactions_bench(args) -> None:
    from PySide6.QtWidgets import QApplication

    from mistudio.ui.app import create_app

    app = QApplication.instance() or create_app([])
    import pyqtgraph  # noqa: F401  (the window imports it before its first paint)

    root = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="features-stall-"))
    root.mkdir(parents=True, exist_ok=True)
    sizes = [args.small, args.large]
    print(f"building tiny-gpt2 and analyses of {', '.join(f'{n:,}' for n in sizes)} random "
          f"TopK features in {root} ...", flush=True)
    studio, made, took = build_studio(root, sizes)
    if took:
        print("analysis took " + ", ".join(f"{n:,} features {t:.0f} s" for n, t in took.items()),
              flush=True)
    results = {}
    for n in sizes:
        sae_id, fa_id = made[n]
        write_pca_map(studio, sae_id)
        results[n] = run_interactions(app, studio, sae_id, fa_id, args.repeat,
                                      [o for o in args.only.split(',') if o])
    studio.close(timeout=10)
    med = statistics.median
    print(f"\nlongest GUI-thread stall per interaction, ms (worst / median of the runs; "
          f"target {TARGET_MS:.0f} ms; load average {os.getloadavg()[0]:.2f})")
    head = "".join(f" {f'{n:,} features':>22s}" for n in sizes)
    print(f"{'interaction':38s}{head}")
    over = []
    for name in results[sizes[0]]:
        if name == "_gc":
            continue
        cells = ""
        for n in sizes:
            v = results[n].get(name)
            if not v:
                cells += f" {'-':>22s}"
                continue
            mark = " !" if max(v) * 1000 > TARGET_MS else "  "
            cells += f" {max(v) * 1000:9.1f} /{med(v) * 1000:7.1f}{mark}  "
            if max(v) * 1000 > TARGET_MS:
                g = max(results[n]["_gc"].get(name, [0.0]))
                over.append(f"{name} ({n:,}): {max(v) * 1000:.0f} ms (longest garbage "
                            f"collection in it {g * 1000:.0f} ms)")
        print(f"{name:38s}{cells}")
    print("over the target: " + ("none" if not over else "; ".join(over)))


FIRST_OPEN = r"""
import sys, time
sys.path.insert(0, sys.argv[2])
from load_bench import FirstPaint, StallProbe, pump_until
from mistudio.ui.app import build_window, create_app
app = create_app([])
probe = StallProbe()
w = build_window(sys.argv[1], remember_layout=False)
w.show()
pump_until(app, lambda: False, 3.0)  # the user looks at the window before clicking
page = w.lazy_tabs["Features"]
paint = FirstPaint(page)
t = time.perf_counter()
w.show_tab("Features")
pump_until(app, lambda: paint.at is not None, 60)
n = int(sys.argv[3])
pump_until(app, lambda: page.inner is not None and page.inner.table.model.rowCount() >= n, 60)
rows = time.perf_counter()
pump_until(app, lambda: False, 0.3)
end = time.perf_counter()
print("FIRST", paint.at - t, rows - t, probe.longest(t, end), probe.longest(paint.at, end))
w.skip_close_confirmation = True
w.close()
"""


def first_open(folder: str, trees: dict[str, Path], repeats: int) -> None:
    """The tab's first open, a fresh process each, the trees' runs interleaved."""
    import sqlite3

    con = sqlite3.connect(Path(folder) / "mistudio.db")
    n = con.execute("select d_sae from saes order by created_at desc limit 1").fetchone()[0]
    con.close()
    got: dict[str, list] = {name: [] for name in trees}
    for _ in range(repeats):
        for name, tree in trees.items():
            work = tempfile.mkdtemp(prefix="features-first-open-")
            env = dict(os.environ, PYTHONPATH=str(tree))
            proc = subprocess.run([sys.executable, "-c", FIRST_OPEN, folder,
                                   str(tree / "benchmarks"), str(n)], capture_output=True,
                                  text=True, env=env, cwd=work, check=True)
            line = next(x for x in proc.stdout.splitlines() if x.startswith("FIRST"))
            got[name].append([float(v) for v in line.split()[1:]])
    med = statistics.median
    print(f"Features tab first open on {folder} ({n:,} rows), median of {repeats} fresh "
          f"processes, ms (load average {os.getloadavg()[0]:.2f}):")
    print(f"{'code':10s} {'paint':>7s} {'rows':>7s} {'stall':>7s} {'stall after paint':>18s}")
    for name, runs in got.items():
        cols = [med(r[i] for r in runs) * 1000 for i in range(4)]
        print(f"{name:10s} {cols[0]:7.1f} {cols[1]:7.1f} {cols[2]:7.1f} {cols[3]:18.1f}")
    if len(got) == 2:
        (a, ra), (b, rb) = got.items()
        ratio = [med(r[i] for r in rb) / med(r[i] for r in ra) for i in range(4)]
        print(f"ratio {b}/{a}: paint x{ratio[0]:.2f}, rows x{ratio[1]:.2f}, stall "
              f"x{ratio[2]:.2f}, stall after paint x{ratio[3]:.2f}")


if __name__ == "__main__" and "--build-only" in sys.argv:
    root = Path(tempfile.mkdtemp(prefix="features-stall-"))
    s, got, took = build_studio(root, [int(x) for x in sys.argv[-1].split(",")])
    print(got, took)
    s.close(timeout=10)
elif __name__ == "__main__":
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("MISTUDIO_NO_KEYRING", "1")
    ap = argparse.ArgumentParser()
    ap.add_argument("--interactions", action="store_true")
    ap.add_argument("--small", type=int, default=2304, help="features of the demo-sized SAE")
    ap.add_argument("--large", type=int, default=65536)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--only", default="", help="comma-separated parts of interaction names")
    ap.add_argument("--data", default="", help="a folder to build the analyses in, or "
                    "where an earlier run built them (reused; the 65k analysis takes ~1 min)")
    ap.add_argument("--first-open", default="", metavar="FOLDER",
                    help="time the tab's first open on this data folder instead")
    ap.add_argument("--baseline-tree", default="", help="with --first-open: a checkout of "
                    "the code to compare with (its runs interleave with this tree's)")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    if a.first_open:
        trees = {"baseline": Path(a.baseline_tree)} if a.baseline_tree else {}
        trees["this tree"] = ROOT
        first_open(a.first_open, trees, a.repeats)
    else:
        interactions_bench(a)
