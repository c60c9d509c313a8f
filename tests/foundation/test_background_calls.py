"""The UI kit's one background-call helper (ui/kit/background.py), and that no tab runs
threads of its own."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from mistudio.errors import UserError

UI = Path(__file__).resolve().parents[2] / "mistudio" / "ui"
# Where threads may be made or named: the kit's helper, and the job runner (ui/workers.py:
# jobs on QThreads and the bridge that drains their events).
THREAD_HOMES = {"kit/background.py", "workers.py"}
THREADS = re.compile(r"\bQThread|\bthreading\b|ThreadPoolExecutor|concurrent\.futures|"
                     r"QRunnable|QThreadPool|moveToThread|\bimport _thread\b")


def test_no_tab_runs_threads_of_its_own():
    hits = []
    for path in sorted(UI.rglob("*.py")):
        rel = path.relative_to(UI).as_posix()
        if rel in THREAD_HOMES:
            continue
        for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if THREADS.search(line):
                hits.append(f"ui/{rel}:{no}: {line.strip()}")
    assert not hits, ("threads outside ui/kit/background.py and ui/workers.py (use "
                      "BackgroundCalls):\n" + "\n".join(hits))


@pytest.fixture
def calls(qtbot):
    from PySide6.QtWidgets import QWidget

    from mistudio.ui.kit.background import BackgroundCalls

    owner = QWidget()
    qtbot.addWidget(owner)
    calls = BackgroundCalls(owner, name="kit-test")
    yield calls
    calls.close()


def _threads_named(prefix: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(prefix)]


def test_results_reach_the_gui_thread_from_one_worker(calls, qtbot):
    ran_on, got = [], []

    def work(n):
        ran_on.append(threading.current_thread())
        return n * n

    for n in range(3):  # different keys: none supersedes another
        calls.call(f"k{n}", lambda n=n: work(n),
                   lambda value: got.append((value, threading.current_thread())))
    qtbot.waitUntil(lambda: len(got) == 3 and not calls.busy(), timeout=10_000)
    assert [v for v, _t in got] == [0, 1, 4]  # in the order asked
    assert all(t is threading.main_thread() for _v, t in got)
    assert len(set(ran_on)) == 1 and ran_on[0] is not threading.main_thread()
    assert _threads_named(calls.thread_prefix) == [ran_on[0].name]


def test_a_newer_call_with_the_same_key_makes_the_older_stale(calls, qtbot):
    started, release = threading.Event(), threading.Event()
    seen_cancel, runs, got = [], [], []

    def slow(task):
        started.set()
        release.wait(10)
        seen_cancel.append(task.cancelled())
        return "old"

    first = calls.call("rows", slow, got.append, pass_task=True)
    assert started.wait(10)
    middle = calls.call("rows", lambda: runs.append("middle") or "middle", got.append)
    last = calls.call("rows", lambda: runs.append("last") or "last", got.append)
    release.set()
    qtbot.waitUntil(lambda: not calls.busy(), timeout=10_000)
    assert got == ["last"]  # only the latest request is shown
    assert seen_cancel == [True]  # the running one could see it was superseded
    assert runs == ["last"]  # the one queued in between never ran
    assert first.cancelled() and middle.cancelled() and not last.cancelled()


def test_errors_become_a_message_and_reports_arrive_in_order(calls, qtbot):
    errors, reports, done = [], [], []

    def bad():
        raise UserError("No column 'x'.", hint="Pick another.")

    calls.call("a", bad, done.append, errors.append)

    def counting(task):
        for i in range(5):
            task.report(i)
        return "finished"

    calls.call("b", counting, done.append, on_report=reports.append, pass_task=True)
    qtbot.waitUntil(lambda: not calls.busy(), timeout=10_000)
    assert errors and "No column 'x'." in errors[0]
    assert reports == [0, 1, 2, 3, 4] and done == ["finished"]


def test_a_cancelled_call_delivers_nothing(calls, qtbot):
    release = threading.Event()
    got, reports = [], []

    def work(task):
        release.wait(10)
        task.report("late")
        return "late"

    task = calls.call("search", work, got.append, on_report=reports.append, pass_task=True)
    task.cancel()
    release.set()
    assert task.wait(10)
    qtbot.wait(100)
    assert got == [] and reports == [] and not calls.busy()


def test_close_joins_the_thread_and_later_calls_never_run(calls, qtbot):
    started, ran_after = threading.Event(), []

    def loop(task):
        started.set()
        while not task.cancelled():
            threading.Event().wait(0.01)
        return "stopped"

    got = []
    calls.call("loop", loop, got.append, pass_task=True)
    assert started.wait(10)
    calls.close()  # the running call sees cancelled(), the thread is joined
    assert _threads_named(calls.thread_prefix) == []
    task = calls.call("again", lambda: ran_after.append(1), got.append)
    qtbot.wait(100)
    assert task.cancelled() and ran_after == [] and got == []


def test_deleting_the_owner_ends_the_worker(qtbot):
    from PySide6.QtWidgets import QWidget

    from mistudio.ui.kit.background import BackgroundCalls

    owner = QWidget()
    calls = BackgroundCalls(owner, name="kit-owner")
    prefix = calls.thread_prefix
    done = []
    calls.call("x", lambda: 1, done.append)
    qtbot.waitUntil(lambda: bool(done), timeout=10_000)
    assert _threads_named(prefix)
    owner.deleteLater()
    qtbot.waitUntil(lambda: not _threads_named(prefix), timeout=10_000)


def test_one_off_call_reports_and_its_thread_ends(qtbot):
    from mistudio.ui.kit.background import BackgroundCall

    got = []
    call = BackgroundCall(lambda: threading.current_thread().name, got.append)
    assert call.wait(10)
    qtbot.waitUntil(lambda: bool(got), timeout=10_000)
    assert got[0].startswith("ui-background") and not call.running()
    qtbot.waitUntil(lambda: got[0] not in _threads_named("ui-background"), timeout=10_000)


def test_one_off_call_hands_its_error_over_as_the_exception(qtbot):
    from mistudio.errors import JobCancelled
    from mistudio.ui.kit.background import BackgroundCall

    errors = []

    def stopped():
        raise JobCancelled()

    call = BackgroundCall(stopped, lambda _v: None, errors.append)
    assert call.wait(10)
    qtbot.waitUntil(lambda: bool(errors), timeout=10_000)
    assert isinstance(errors[0], JobCancelled)  # the caller tells a cancel from a failure
