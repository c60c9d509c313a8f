"""The Features tab's writes: labels, notes, favourites and lists, off the GUI thread.

A write is one SQLite transaction, a few milliseconds alone, but up to the database's busy
timeout when another process (a CLI job) holds the write lock, and a lasso's list may hold
tens of thousands of features. So writes run in order on a worker thread of their own
(``writes``); each has a key of its own, so none supersedes another, and the tab's
shutdown waits for those still queued (``wait_for_writes``), so nothing typed is lost.
The table row, the map's labels and the list menus update when a write is done.
"""

from __future__ import annotations

import itertools

from PySide6.QtCore import QObject

from mistudio.ui.features import loaders
from mistudio.ui.kit.background import BackgroundCalls


class FeatureAnnotations(QObject):
    def __init__(self, tab):
        super().__init__(tab)
        self.tab = tab
        self.writes = BackgroundCalls(self, name="features-writes")
        self._serial = itertools.count()
        self._pending: list = []

    def _write(self, fn, on_done) -> None:
        self._pending = [t for t in self._pending if t.running()]
        self._pending.append(self.writes.call(f"write{next(self._serial)}", fn, on_done,
                                              self.tab.show_error))

    def wait_for_writes(self, timeout: float = 10.0) -> None:
        """Block until the queued writes are done (at shutdown, before closing)."""
        for task in self._pending:
            task.wait(timeout)
        self._pending = []

    def close(self) -> None:
        self.wait_for_writes()
        self.writes.close()

    # ------------------------------------------------------------------ one feature

    def annotate(self, **changes) -> None:
        """Save a label, notes or favourite of the open feature."""
        tab = self.tab
        f, sae_id = tab.state.feature, tab.state.sae_id
        if f is None or sae_id is None:
            return
        svc = tab.studio.feature_labels
        if "label" in changes:
            work = lambda: svc.set_label(sae_id, f, changes["label"])  # noqa: E731
        elif "notes" in changes:
            work = lambda: svc.set_notes(sae_id, f, changes["notes"])  # noqa: E731
        else:
            work = lambda: svc.set_favourite(sae_id, f, changes["favourite"])  # noqa: E731

        def done(ann):
            if not tab.state.owns_table(sae_id):
                return
            tab.bundle.table.set_annotation(f, label=ann.label, notes=ann.notes,
                                            favourite=ann.favourite)
            tab.table.model.refresh_rows()
            self._labels_changed()

        self._write(work, done)

    def _labels_changed(self) -> None:
        plot = self.tab.pages.built("map")
        if plot is not None:
            plot.plot.labels = self.tab.state.labels()

    def reload_annotations(self) -> None:
        """Labels changed outside the panel (an import): re-read them into the table."""
        tab = self.tab
        sae_id = tab.state.sae_id
        if not sae_id:
            return

        def done(anns):
            if not tab.state.owns_table(sae_id):
                return
            tab.bundle.table.set_annotations(
                {i: a.label for i, a in anns.items() if a.label},
                {i: a.notes for i, a in anns.items() if a.notes},
                {i for i, a in anns.items() if a.favourite})
            tab.table.apply_filters()
            self._labels_changed()
            if tab.state.feature is not None:
                tab._load_detail(tab.state.feature)

        # after the writes queued so far: the re-read sees them
        self._write(lambda: tab.studio.feature_labels.annotations(sae_id), done)
        self.reload_lists()

    # ------------------------------------------------------------------ lists

    def reload_lists(self, then=None) -> None:
        tab = self.tab
        sae_id = tab.state.sae_id
        if not sae_id:
            return

        def done(got):
            if sae_id != tab.state.sae_id:
                return
            tab.state.set_lists(*got)
            tab.table.set_lists(tab.state.lists, tab.state.list_members)
            page = tab.pages.built("map")
            if page is not None:
                page.set_lists(tab.lists)
            if then is not None:
                then()

        tab.calls.call("lists", lambda: loaders.load_lists(tab.studio, sae_id), done,
                       tab.show_error)

    def add_current_to_list(self, list_id: str) -> None:
        """The open feature into a list ("": a new list, named by the user)."""
        tab = self.tab
        f, sae_id = tab.state.feature, tab.state.sae_id
        if f is None:
            return
        svc = tab.studio.feature_labels
        if not list_id:
            name = tab.ask_list_name()
            if name is None:
                return
            work = lambda: svc.create_list(sae_id, name, [f])  # noqa: E731
        else:
            work = lambda: svc.add_to_list(list_id, [f])  # noqa: E731
        self._write(work, lambda _rec: self.reload_lists(then=lambda: tab._load_detail(f)))

    def lasso(self, polygon) -> None:
        """A loop drawn on the map: the points inside (found on the worker: ~20-50 ms for
        65k points) become a new list."""
        from mistudio.feature_map.geometry import points_in_polygon

        page = self.tab.map_page
        coords, indices = page.plot.coords, page.plot.indices
        page.status.setText("Selecting the points inside the loop...")
        self.tab.calls.call("lasso", lambda: indices[points_in_polygon(coords, polygon)],
                            self.lasso_to_list, self.tab.show_error)

    def lasso_to_list(self, indices) -> None:
        tab = self.tab
        page = tab.map_page
        if not len(indices):
            page.status.setText("The loop enclosed no features.")
            return
        name = tab.ask_list_name(f"Map selection ({len(indices)})")
        if name is None:
            page.status.setText("")
            return
        sae_id = tab.state.sae_id
        page.status.setText(f"Saving the list of {len(indices):,} features...")

        def done(rec):
            page.status.setText(f"List {rec.name!r}: {rec.size} features.")
            page.lasso.setChecked(False)
            self.reload_lists(then=lambda: tab.table.show_list(rec.id))

        self._write(lambda: tab.studio.feature_labels.create_list(
            sae_id, name, [int(i) for i in indices]), done)
