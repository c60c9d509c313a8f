"""Fixtures for the Training tab: a tiny activation set and a Studio with Qt job threads."""

from __future__ import annotations

import numpy as np
import pytest

from mistudio.jobs.registry import JobKind, job_kinds, register


def ensure_train_kind() -> None:
    # The SAE engine registers ``sae.train`` in mistudio/jobs/registry.py; until that line
    # lands, register the same kind here so the tests drive the real training job.
    if "sae.train" not in job_kinds():
        register(JobKind("sae.train", "mistudio.sae.job:train_job", gpu=True,
                         title="Train SAE", pausable=True))


@pytest.fixture(scope="session")
def tiny_activation_dir(tmp_path_factory):
    """20,000 rows of width 32 with 64 sparse ground-truth features."""
    from mistudio.activations.format import write_activation_set

    rng = np.random.default_rng(0)
    dirs = rng.normal(size=(64, 32)).astype(np.float32)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    fire = rng.random((20_000, 64)) < 0.05
    acts = (fire * rng.exponential(1.0, (20_000, 64))).astype(np.float32) @ dirs
    acts += 0.01 * rng.normal(size=acts.shape).astype(np.float32)
    folder = tmp_path_factory.mktemp("acts") / "set"
    write_activation_set(folder, acts, {"model_name": "synthetic", "hook_point": "blocks.0.hook",
                                        "seq_len": 100})
    return folder


@pytest.fixture
def qt_studio(data_dir, qtbot):
    """A Studio running jobs on QThreads with a JobBridge, like the app."""
    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio
    from mistudio.ui.workers import JobBridge, qt_thread_factory

    ensure_train_kind()
    studio = Studio(data_dir, secrets=MemorySecrets(), thread_factory=qt_thread_factory)
    bridge = JobBridge()
    studio.add_job_listener(bridge)
    yield studio, bridge
    studio.close(timeout=20)
    bridge.stop()


def pytest_runtest_logreport(report):
    # Print a failure at once: a crash while tearing down Qt threads would otherwise
    # swallow the report.
    if report.when == "call" and report.failed:
        import sys

        print(f"\n{report.nodeid} FAILED:\n{report.longreprtext}", file=sys.stderr, flush=True)
