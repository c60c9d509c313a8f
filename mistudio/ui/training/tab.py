"""The Training tab: start, watch, control and compare SAE trainings.

Left: one card per training (a resume from a checkpoint continues the same card), and one
per extract-then-train workflow until its training starts (``chains.py``). Right: New
training (templates + form, or "extract first"), Charts (the selected run plus any ticked
"Compare"), Runs (a sortable table of every run and a diff of two runs' settings), Logs,
Checkpoints and Resources (GPU/CPU monitor). Live data comes from the JobBridge
signals, already batched at ~20 Hz; the charts redraw at most every 300 ms. Stored
history (``studio.jobs.metrics``) fills the charts of finished or interrupted runs, so they
look the same after the app restarts.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QMessageBox, QPushButton,
                               QSplitter, QTabWidget, QVBoxLayout, QWidget)

from mistudio.app.jobs import ACTIVE, JobRecord
from mistudio.app.trainings import TRAIN_KIND
from mistudio.errors import UserError
from mistudio.ui.kit.background import BackgroundCalls
from mistudio.ui.kit.palette import colour, css
from mistudio.ui.training.card_pages import CardPages
from mistudio.ui.training.card_actions import TrainingCardActions
from mistudio.ui.training.cards import JobCard, JobCardList
from mistudio.ui.training.charts import TrainingCharts
from mistudio.ui.training.chains import ChainCards
from mistudio.ui.training.checkpoints import CheckpointManager
from mistudio.ui.training.logs import JobLogView
from mistudio.ui.training.pacer import Pacer
# Imported with this module (the window imports the tab modules early, one per turn), not
# when the tab is first opened: each import is a few ms more before its first paint.
from mistudio.ui.training.new_training import NewTrainingPanel
from mistudio.ui.training.runs import RunsView
from mistudio.ui.training.runs_loader import RunsLoader
from mistudio.ui.training.saes_page import SAEsPage
from mistudio.ui.training.series import RunMetrics
from mistudio.ui.training.state import TrainingState

EMPTY_TEXT = ("No trainings yet. Choose an activation set and a template in <b>New training</b>, "
              "then press Start.")


class TrainingTab(TrainingCardActions, QWidget):
    def __init__(self, studio, bridge, parent: QWidget | None = None):
        super().__init__(parent)
        self.studio = studio
        self.bridge = bridge
        self.trainings = studio.trainings
        self.state = TrainingState()  # trainings, their jobs and metrics, what is selected
        # The store is read on a worker of this tab (a newer read of a key drops an older
        # one); the widgets are built a few milliseconds per event-loop turn (the pacer).
        self._calls = BackgroundCalls(self, name="training-tab")
        self.pacer = Pacer(self)
        self._can_resume: dict[str, bool] = {}  # job id -> read with the jobs, off-thread

        # --- left: cards
        self.new_btn = QPushButton("New training")
        self.new_btn.clicked.connect(lambda: self.pages.setCurrentWidget(self.new_page))
        self.banner = QLabel()
        self.banner.setWordWrap(True)
        self.banner.setObjectName("banner")
        self.banner.setStyleSheet(f"background: {colour('banner.warning.bg')}; "
                                  f"color: {colour('banner.warning.fg')}; padding: 6px; "
                                  "border-radius: 4px")
        self.banner.setVisible(False)
        self.cards = JobCardList()
        self.empty = QLabel("Loading trainings...")  # read off the GUI thread (reload)
        self.empty.setWordWrap(True)
        self.empty.setStyleSheet(css("text.muted", "padding: 12px"))
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()
        top.addWidget(QLabel("<b>Trainings</b>"))
        top.addStretch(1)
        top.addWidget(self.new_btn)
        ll.addLayout(top)
        ll.addWidget(self.banner)
        ll.addWidget(self.empty)
        ll.addWidget(self.cards, 1)
        self.more_cards_btn = QPushButton()
        ll.addWidget(self.more_cards_btn)
        self.card_pages = CardPages(self._build_card, self.more_cards_btn, self,
                                    pacer=self.pacer)

        # --- right: pages
        self.pages = QTabWidget()
        self._new_page_built = False
        self.new_page = QWidget()
        QVBoxLayout(self.new_page).setContentsMargins(0, 0, 0, 0)
        self.charts = TrainingCharts(pacer=self.pacer)
        self.logs = JobLogView()
        self.checkpoints = CheckpointManager()
        self.checkpoints.resume_requested.connect(self._resume_from_path)
        self.checkpoints.delete_requested.connect(self._delete_checkpoint)
        self.checkpoints.export_requested.connect(lambda: self._export(self.selected))
        self.checkpoints.export_checkpoint_requested.connect(self._export_checkpoint)
        self.runs = RunsView()
        self.runs.open_run.connect(self._open_run)
        self.runs_loader = RunsLoader(studio, self._training_records, self)
        self.runs_loader.rows_ready.connect(self.runs.set_rows)
        self.runs_loader.failed.connect(self.runs.show_error)
        self._runs_timer = QTimer(self)  # live best/last values while the page is shown
        self._runs_timer.setInterval(2000)
        self._runs_timer.timeout.connect(self._refresh_runs_if_live)
        self.monitor_page = QWidget()
        QVBoxLayout(self.monitor_page)
        self.monitor = None  # built on first view (NVML init)
        self.pages.addTab(self.new_page, "New training")
        self.pages.addTab(self.charts, "Charts")
        self.pages.addTab(self.runs, "Runs")
        self.pages.addTab(self.logs, "Logs")
        self.pages.addTab(self.checkpoints, "Checkpoints")
        self.saes_page = SAEsPage(studio, bridge)  # the SAE list: Add SAE > From the catalogue
        self.pages.addTab(self.saes_page, "SAEs")
        self.pages.addTab(self.monitor_page, "Resources")
        self.pages.currentChanged.connect(self._on_page)

        split = QSplitter(Qt.Horizontal)
        split.addWidget(left)
        split.addWidget(self.pages)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setSizes([360, 900])
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(split)

        bridge.status.connect(self._on_status)
        bridge.progress.connect(self._on_progress)
        bridge.metrics.connect(self._on_metrics)
        bridge.log.connect(self.logs.on_log)
        bridge.checkpoint.connect(self._on_checkpoint)

        self.chain_cards = ChainCards(self)
        self._jobs_loaded = False
        self._metrics_loading: set[str] = set()
        # someone with trainings comes back to watch them (one row read; all of them next)
        if self.studio.jobs.list(kind=TRAIN_KIND, limit=1):
            self.pages.setCurrentWidget(self.charts)
        self._on_page(self.pages.currentIndex())
        self.chain_cards.reload()  # the few open workflows now; the trainings on a thread
        self.empty.setVisible(not self.chain_cards.chains)
        # The read starts on the pacer's first turn: after the tab's first paint (a worker
        # thread starting and reading beside the paint made the paint late).
        self.pacer.add(lambda: self.reload(background=True) or False)

    # the state, under the names the rest of the tab (and its tests) read
    @property
    def jobs(self) -> dict[str, list[JobRecord]]:
        return self.state.jobs

    @property
    def metrics(self) -> dict[str, RunMetrics]:
        return self.state.metrics

    @property
    def selected(self) -> str | None:
        return self.state.selected

    @property
    def last_error(self) -> str:
        return self.state.last_error

    @property
    def jobs_loaded(self) -> bool:
        """The trainings were read (on the tab's worker) and shown at least once."""
        return self._jobs_loaded

    # ------------------------------------------------------------------ pages

    @property
    def new_training(self):
        """The New training page (built on first use: it reads templates and data sets)."""
        if not self._new_page_built:
            self._new_page_built = True
            self._new_panel = NewTrainingPanel(self.studio)
            self._new_panel.start_requested.connect(self._start)
            self._new_panel.extract_then_train_requested.connect(self._start_chain)
            self.new_page.layout().addWidget(self._new_panel)
        return self._new_panel

    def use_template(self, template_id: str) -> None:
        """Open New training with a template applied (the Templates tab's "Use", via the
        main window)."""
        self.pages.setCurrentWidget(self.new_page)
        panel = self.new_training
        panel.reload_templates()
        panel.select_template(template_id)

    def _on_page(self, index: int) -> None:
        page = self.pages.widget(index)
        if page is self.new_page:
            panel = self.new_training  # builds it
            if panel.extracting():
                panel.extract_box.reload()  # models and tokenizations added meanwhile
        elif page is self.monitor_page and self.monitor is None:
            from mistudio.ui.training.monitor import ResourceMonitor

            self.monitor = ResourceMonitor()
            self.monitor_page.layout().addWidget(self.monitor)
        if page is self.runs:
            self.refresh_runs()
            self._runs_timer.start()
        else:
            self._runs_timer.stop()

    # ------------------------------------------------------------------ loading

    def reload(self, *, background: bool = False) -> None:
        """Rebuild the cards from the store (start-up, after a delete). ``background``: the
        jobs are read on a thread and shown when they arrive (the tab's first view: hundreds
        of trainings must not hold the window)."""
        if background:
            self._calls.call("jobs", self._read_jobs, self._jobs_read, self._load_failed)
        else:
            self._calls.cancel("jobs")  # an older read in flight must not undo this one
            self._jobs_read(self._read_jobs(), merge=False)

    def _read_jobs(self) -> tuple[list, dict[str, bool]]:  # any thread
        """The training jobs, and which of the stopped ones can resume (their folders are
        looked at here, not once per card on the GUI thread)."""
        jobs = self.trainings.training_jobs()
        return jobs, {j.id: self.trainings.job_can_resume(j) for j in jobs}

    def _load_failed(self, message: str) -> None:
        self.empty.setText(f"Could not read the trainings: {message}")
        self.empty.setVisible(True)

    def _jobs_read(self, result: tuple, *, merge: bool = True) -> None:
        jobs, can_resume = result
        self._can_resume = can_resume
        self._show_jobs(jobs, merge=merge)

    def can_resume(self, job: JobRecord) -> bool:
        """Whether "resume" may be offered: as read with the jobs, asked again for a job
        that changed since (a live event)."""
        known = self._can_resume.get(job.id)
        return self.trainings.job_can_resume(job) if known is None else known

    def _show_jobs(self, jobs: list, *, merge: bool = True) -> None:
        """``merge``: keep what live events added since the read began (a newer state)."""
        self._jobs_loaded = True
        self.empty.setText(EMPTY_TEXT)
        if merge:
            for job in jobs:
                if self.state.key_of(job.id) is None:
                    self.state.remember(job)
            self.state.runs_dirty = True
        else:
            self.state.set_jobs(jobs)
        for key in list(self.cards.cards):
            if key not in self.jobs and key not in self.chain_cards.chains:
                self.cards.remove_card(key)
        for key in self.cards.cards:
            if key in self.jobs:
                self._refresh_card(key, reread=False)  # as just read
        newest_first = sorted((k for k in self.jobs if self.cards.card(k) is None),
                              key=lambda k: self.jobs[k][0].created_at, reverse=True)
        self.card_pages.show(newest_first)  # a page, a few cards per event-loop turn
        if not merge:  # the first (background) read: __init__ showed the workflows already
            self.chain_cards.reload()
        self.empty.setVisible(not self.jobs and not self.chain_cards.chains)
        self._update_banner()
        if self.pages.currentWidget() is self.runs:
            self.refresh_runs()
        if self.selected not in self.jobs and self.selected not in self.chain_cards.chains:
            self.select(newest_first[0] if newest_first else self.state.newest())

    def _build_card(self, key: str) -> None:
        """One card of ``card_pages`` (at the bottom: keys come newest first), shown as
        just read (no query per card)."""
        if key in self.jobs and self.cards.card(key) is None:
            self._add_card(key, top=False)
            self._refresh_card(key, reread=False)

    def latest(self, key: str) -> JobRecord:
        return self.state.latest(key)

    def _add_card(self, key: str, *, top: bool = True) -> JobCard:
        job = self.latest(key)
        card = JobCard(key, job.title or job.id)
        card.action.connect(self._on_card_action)
        card.compare.connect(self._on_compare)
        card.selected.connect(self.select)
        self.cards.add_card(card, top=top)
        self.card_pages.forget(key)
        return card

    def _refresh_card(self, key: str, *, reread: bool = True) -> None:
        """``reread``: the job's row is read again first (a status changed)."""
        card = self.cards.card(key)
        if card is None:
            return
        job = self.latest(key)
        if reread:
            job = self.studio.jobs.latest(job)
            self.state.remember(job)
            self._can_resume.pop(job.id, None)
        view = self.state.card_view(key, self.can_resume(job))
        card.title.setText(f"<b>{view.title}</b>")
        card.set_status(view.status, can_resume=view.can_resume, message=view.message)
        card.set_progress(view.fraction, step=view.step, total=view.total, eta_s=view.eta_s,
                          tokens_per_s=view.tokens_per_s)
        card.set_metrics(view.metrics)

    def run_metrics(self, key: str) -> RunMetrics:
        """The training's metric history: every job's stored rows, then live ones."""
        return self.state.run_metrics(key, self.studio.jobs.metrics)

    def _stored_metrics(self, key: str, jobs: list) -> RunMetrics:  # any thread
        cfg = jobs[-1].params.get("config", {})
        run = RunMetrics(key, jobs[-1].title or key, tokens_per_step=cfg.get("batch_size"))
        for job in jobs:
            run.add_stored_series(self.studio.jobs.metric_series(job.id))
        return run

    def _load_metrics(self, keys: list[str]) -> None:
        """Stored histories read on a thread (30,000 rows a run); the charts follow. A newer
        selection's read replaces an older one still running (its rows are dropped)."""
        snapshot = {k: list(self.jobs[k]) for k in keys}
        self._metrics_loading = set(keys)

        def read(task):  # worker thread
            runs = {}
            for k, jobs in snapshot.items():
                if task.cancelled():
                    break
                runs[k] = self._stored_metrics(k, jobs)
            return runs

        self._calls.call("metrics", read, self._metrics_loaded, self._metrics_failed,
                         pass_task=True)

    def _metrics_failed(self, message: str) -> None:
        self._metrics_loading = set()
        self.charts.show_message(f"Could not read the stored metrics: {message}")

    def _metrics_loaded(self, runs: dict) -> None:
        self._metrics_loading = set()
        for key, run in runs.items():
            self.metrics.setdefault(key, run)  # live rows may have loaded it meanwhile
        self._update_chart_runs()

    def _update_banner(self) -> None:
        text = self.state.banner_text(len(self.state.resumable(self.can_resume)))
        self.banner.setVisible(bool(text))
        if text:
            self.banner.setText(text)

    # ------------------------------------------------------------------ selection

    def select(self, key: str | None) -> None:
        self.state.selected = key
        if key in self.jobs and self.cards.card(key) is None:  # past the shown page
            self._build_card(key)
        self.cards.select(key)
        chain = self.chain_cards.chains.get(key) if key else None
        if chain is not None:  # a workflow still extracting (or stopped before training)
            job = self.studio.jobs.find(chain.extraction_job_id)
            self.logs.set_job(job.id if job else None, job.log_path if job else None,
                              job.title if job else None)
            self.checkpoints.set_checkpoints(
                f"<b>{chain.title}</b>: the training has not started yet; its checkpoints "
                "appear here once it runs.", [], running=False, completed=False)
            self.charts.set_runs([])
            return
        if key is None:
            self.logs.set_job(None, None)
            self.checkpoints.set_checkpoints("No training selected.", [], running=False,
                                             completed=False)
            self.charts.set_runs([])
            return
        job = self.latest(key)
        self.logs.set_job(job.id, job.log_path, job.title)
        self._refresh_checkpoints()
        self._update_chart_runs()

    def _update_chart_runs(self) -> None:
        keys = self.state.chart_keys()
        missing = [k for k in keys if k not in self.metrics]
        if missing and set(missing) != self._metrics_loading:
            self._load_metrics(missing)  # supersedes a read for an older selection
        self.charts.set_runs([self.metrics[k] for k in keys if k in self.metrics],
                             progressive=True, loading=bool(missing))

    def _refresh_checkpoints(self) -> None:
        key = self.selected
        if key is None:
            return
        job = self.latest(key)
        self.checkpoints.set_checkpoints(
            f"Checkpoints of <b>{job.title or key}</b>", self.trainings.job_checkpoints(job),
            running=job.status in ACTIVE, completed=job.status == "completed")

    def _on_compare(self, key: str, on: bool) -> None:
        self.state.set_compare(key, on)
        self._update_chart_runs()

    # ------------------------------------------------------------------ live events

    def _training_key(self, job_id: str, *, fetch: bool = False) -> str | None:
        key = self.state.key_of(job_id)
        if key is None and fetch and job_id not in self.state.other_jobs:
            job = self.studio.jobs.find(job_id)
            if job is not None and job.kind != TRAIN_KIND:
                self.state.other_jobs.add(job_id)  # not ours: no lookup per event
            if job is not None and job.kind == TRAIN_KIND:
                key = self.state.remember(job)
                if self.cards.card(key) is None:
                    self._add_card(key)
                    self.empty.setVisible(False)
        return key

    def _on_status(self, job_id: str, payload: dict) -> None:
        if self.chain_cards.on_status(job_id):
            return
        key = self._training_key(job_id, fetch=True)
        if key is None:
            return
        self._refresh_card(key)
        self._update_banner()
        self.state.runs_dirty = True
        if key == self.selected:
            job = self.latest(key)
            if self.logs.job_id != job.id:
                self.logs.set_job(job.id, job.log_path, job.title)
            self._refresh_checkpoints()

    def _on_progress(self, job_id: str, payload: dict) -> None:
        if self.chain_cards.chains and self.chain_cards.on_progress(job_id, payload):
            return
        key = self._training_key(job_id)
        card = self.cards.card(key) if key else None
        if card is None:
            return
        view = self.state.progress_view(key, payload)
        card.set_progress(view.pop("fraction"), **view)

    def _on_metrics(self, job_id: str, rows: list) -> None:
        key = self._training_key(job_id, fetch=True)
        if key is None:
            return
        self.run_metrics(key).add_live_rows(rows)
        self.state.runs_dirty = True
        card = self.cards.card(key)
        if card is not None:
            card.set_metrics(self.state.card_metrics(key))
        if self.state.charted(key):
            self.charts.mark_dirty()

    def _on_checkpoint(self, job_id: str, payload: dict) -> None:
        key = self._training_key(job_id)
        if key is not None and key == self.selected:
            self._refresh_checkpoints()

    # ------------------------------------------------------------------ actions

    def _guard(self, fn, *args):
        """Run an action; a UserError is shown (without blocking) and kept in last_error."""
        try:
            return fn(*args)
        except UserError as exc:
            self.state.last_error = str(exc)
            box = QMessageBox(QMessageBox.Warning, "Training", str(exc), QMessageBox.Ok, self)
            box.setAttribute(Qt.WA_DeleteOnClose)
            box.open()
            return None

    def _start(self, config: dict, activation_path: str, title: str) -> JobRecord | None:
        job = self._guard(lambda: self.trainings.start_training(
            config, activation_path=activation_path or None, title=title))
        if job is not None:
            key = self._training_key(job.id, fetch=True)
            self.select(key)
            self.pages.setCurrentWidget(self.charts)
        return job

    def _start_chain(self, extraction: dict, config: dict, title: str):
        """Extract first, then train: a workflow card until the training starts."""
        def start():
            return self.chain_cards.workflows.start_extract_then_train(
                extraction["model"], extraction["tokenization"], extraction["hook_name"],
                config=config, max_tokens=extraction["max_tokens"],
                device=config.get("device", "auto"), title=title)

        chain = self._guard(start)
        if chain is not None:
            self.chain_cards.refresh(chain.id)
            self.select(chain.id)
            self.pages.setCurrentWidget(self.logs)  # the extraction's log, live
        return chain

    # ------------------------------------------------------------------ runs table

    def _training_records(self):  # called on the runs loader's thread
        return self.trainings.records()

    def refresh_runs(self, *, wait: bool = False) -> None:
        """Reload the Runs table: computed off the GUI thread, the rows arrive by signal
        (``runs_loader.rows_ready``); ``wait=True`` computes them here (screenshots)."""
        self.state.runs_dirty = False
        if wait:
            self.runs.set_rows(self.runs_loader.load_now(self.jobs))
        else:
            self.runs_loader.request(self.jobs)

    def _refresh_runs_if_live(self) -> None:
        if self.state.runs_dirty and self.runs.isVisible():
            self.refresh_runs()

    def _open_run(self, key: str) -> None:
        if key in self.jobs:
            self.select(key)
            self.pages.setCurrentWidget(self.charts)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._new_page_built and self.pages.currentWidget() is self.new_page \
                and self.new_training.extracting():
            self.new_training.extract_box.reload()  # models added in another tab meanwhile

    def screenshot_states(self):
        """Extra screens for ``mistudio screenshot``: (name, widget or None for the window)."""
        panel = self.new_training
        self.pages.setCurrentWidget(self.new_page)
        yield "new training", None
        previous = panel.data_combo.currentIndex()
        panel.extract_first()
        panel.validate()
        yield "extract first", None
        panel.data_combo.setCurrentIndex(previous)
        self.pages.setCurrentWidget(self.runs)
        self.refresh_runs(wait=True)
        if len(self.runs.model.rows) >= 2:
            self.runs.select_runs([r.name for r in self.runs.model.rows[:2]])
        yield "runs", None
        if self.selected is not None:
            self.pages.setCurrentWidget(self.checkpoints)
            yield "checkpoints", None
            self.pages.setCurrentWidget(self.logs)
            yield "logs", None
        self.pages.setCurrentWidget(self.monitor_page)
        yield "resources", None

    def shutdown(self) -> None:
        """Stop the timers and threads this tab started (the main window calls it when it
        closes; a tab shown alone, when it closes)."""
        self._runs_timer.stop()
        self.pacer.stop()
        self._calls.close()  # a running read stops; its thread is joined
        self.runs_loader.close()
        self.saes_page.close_calls()
        self.charts.shutdown()
        if self._new_page_built:
            self.new_training.shutdown()
        if self.monitor is not None:
            self.monitor.close()
        self.chain_cards.close()

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)


if __name__ == "__main__":  # preview: python -m mistudio.ui.training.tab
    import sys
    import tempfile

    from PySide6.QtWidgets import QApplication

    from mistudio.studio import Studio
    from mistudio.ui.workers import JobBridge, qt_thread_factory

    app = QApplication(sys.argv)
    studio = Studio(tempfile.mkdtemp(prefix="mistudio-preview-"),
                    thread_factory=qt_thread_factory)
    bridge = JobBridge()
    studio.add_job_listener(bridge)
    tab = TrainingTab(studio, bridge)
    tab.resize(1400, 900)
    tab.show()
    code = app.exec()
    studio.close()
    sys.exit(code)
