"""Out of memory (issue #17 item 6): a job that runs out of GPU memory (simulated: the step
raises torch.cuda.OutOfMemoryError) or of RAM (a real size-limited child process) fails with
a message naming the settings of its kind to lower; the job row is 'failed' with that message
(the traceback only in the log); nothing saved is lost; the window stays usable."""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest

from mistudio.cli import main
from tests.conftest import SAMPLE_TEXT
from tests.reliability.snapshot import snapshot

LONG_KINDS = ("activations.extract", "sae.train", "features.analyze", "steering.generate",
              "autointerp.run", "sae.evaluate")


def test_every_long_job_kind_names_what_to_lower():
    import mistudio.app.job_kinds  # noqa: F401 - registers every area's kinds
    from mistudio.errors import describe_exception
    from mistudio.jobs.registry import job_kinds

    kinds = job_kinds()
    for name in LONG_KINDS + tuple(k for k, v in kinds.items()
                                   if v.gpu and not k.startswith("demo.")):
        hint = kinds[name].memory_hint
        assert hint, name
        for exc in (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                    MemoryError(), RuntimeError("DefaultCPUAllocator: can't allocate memory: "
                                                "you tried to allocate 8589934592 bytes.")):
            text = describe_exception(exc, memory_hint=hint)
            assert hint in text and "ran out of memory" in text, (name, text)


@pytest.fixture(scope="module")
def oom_assets(tmp_path_factory, tiny_gpt2_dir, tiny_chat_dir):
    from tests.reliability.bad_input_assets import build_assets

    assets = build_assets(tmp_path_factory.mktemp("oom"), tiny_gpt2_dir, SAMPLE_TEXT)
    assets.chat_dir = tiny_chat_dir
    return assets


def _gpu_oom(*args, **kwargs):
    import torch

    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB "
                                      "(GPU 0; 7.79 GiB total capacity)")


CASES = {  # kind: (command line, what to patch to fail at the step, a setting the message names)
    "activations.extract": (lambda a: ["extract", "run", a.model, a.tokenization, "--layers",
                                       "0"], "model", "--batch-size"),
    "sae.train": (lambda a: ["train", "--activations", a.activation_set, "--set",
                             "batch_size=256", "--set", "total_tokens=2048"], "sae", "batch_size"),
    "features.analyze": (lambda a: ["analyze", a.sae, "--max-tokens", "512"], "model",
                         "--max-tokens"),
    "steering.generate": (lambda a: ["steer", a.model, "--sae", a.sae, "--prompt", "Once",
                                     "--feature", "3:+4"], "model", "--max-new-tokens"),
}


def _explain(a):
    """`mistudio features explain` with the tiny chat model: the SAE needs an analysis first
    (a real one, before the step is made to fail) and the model must be registered."""
    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio

    studio = Studio(a.data, secrets=MemorySecrets())
    try:
        if not [m for m in studio.models.list() if m.name == "tiny-chat"]:
            _m, job = studio.models.add_local(str(a.chat_dir), name="tiny-chat")
            assert studio.jobs.wait(job.id, 120).status == "completed"
    finally:
        studio.close(timeout=10)
    if main(["--data-dir", str(a.data), "analyze", a.sae, "--max-tokens", "512"]) != 0:
        raise AssertionError("the analysis before the explanation failed")
    return ["features", "explain", a.sae, "--features", "top2", "--model", "tiny-chat",
            "--device", "cpu"]


CASES["autointerp.run"] = (_explain, "chat model", "--features")


@pytest.mark.parametrize("kind", list(CASES))
def test_gpu_out_of_memory_fails_the_job_with_what_to_lower(kind, oom_assets, capsys,
                                                             monkeypatch):
    from transformers.models.gpt2 import modeling_gpt2
    from transformers.models.llama import modeling_llama

    from mistudio.sae import architectures

    a = oom_assets
    make_argv, where, setting = CASES[kind]
    argv = make_argv(a)
    before = snapshot(a.data)
    if where == "model":
        monkeypatch.setattr(modeling_gpt2.GPT2Block, "forward", _gpu_oom)
    elif where == "chat model":
        monkeypatch.setattr(modeling_llama.LlamaDecoderLayer, "forward", _gpu_oom)
    else:
        monkeypatch.setattr(architectures.TopKSAE, "training_step", _gpu_oom)
    rc = main(["--data-dir", str(a.data), *argv])
    out, err = capsys.readouterr()
    assert rc in (1, 2) and "Traceback" not in out + err, err
    assert "ran out of memory" in err and setting in err, err
    after = snapshot(a.data)
    # nothing saved is lost: every file and row there before is still there, unchanged
    for name, digest in before["files"].items():
        assert after["files"].get(name) == digest, name
    for table, rows in before["rows"].items():
        if table not in ("jobs", "activation_sets", "trainings", "steering_generations",
                         "feature_analyses", "autointerp_runs"):
            assert set(rows) <= set(after["rows"][table]), table
    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio

    studio = Studio(a.data, secrets=MemorySecrets())
    try:
        (job,) = [j for j in studio.jobs.list() if j.kind == kind and j.status == "failed"
                  and "ran out of memory" in (j.error or "")][:1]
        assert setting in job.error and "Traceback" not in job.error
        assert "OutOfMemoryError" in job.traceback  # the details stay in the log/row
        studio.jobs.delete(job.id)
    finally:
        studio.close(timeout=10)


def test_ram_exhausted_in_a_size_limited_child(oom_assets, tmp_path):
    """A real allocation failure: `mistudio train` in a child whose address space is limited
    (RLIMIT_AS) to what it uses after start-up plus 768 MB, asked for an SAE whose weights
    alone take 1 GB (~4 GB with gradients and optimizer state: less than the RAM of any
    machine that runs the tests, so the app's own size check lets it start)."""
    a = oom_assets
    code = (
        "import resource, sys, torch\n"
        "from mistudio.cli import main\n"
        "import mistudio.sae.trainer, mistudio.studio\n"
        "vm = int([l for l in open('/proc/self/status') if l.startswith('VmSize')][0]"
        ".split()[1]) * 1024\n"
        "limit = vm + 768 * 2**20\n"
        "resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
        "sys.exit(main(sys.argv[1:]))\n")
    env = {**os.environ, "MALLOC_ARENA_MAX": "2", "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-c", code, "--data-dir", str(a.data), "train",
                          "--activations", a.activation_set, "--set", "batch_size=256",
                          "--set", "d_sae=2000000", "--set", "total_tokens=1024",
                          "--set", "eval_tokens=0"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert "Traceback" not in run.stdout + run.stderr, run.stderr[-3000:]
    assert run.returncode == 1, run.stderr[-3000:]
    assert "ran out of memory (RAM)" in run.stderr and "batch_size" in run.stderr, run.stderr
    assert "d_sae" in run.stderr


def test_window_stays_usable_after_an_out_of_memory_job(oom_assets, qtbot, monkeypatch):
    from transformers.models.gpt2 import modeling_gpt2

    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio
    from mistudio.ui.main_window import MainWindow
    from mistudio.ui.workers import qt_thread_factory

    a = oom_assets
    monkeypatch.setattr(modeling_gpt2.GPT2Block, "forward", _gpu_oom)
    studio = Studio(a.data, thread_factory=qt_thread_factory, secrets=MemorySecrets())
    w = MainWindow(studio)
    qtbot.addWidget(w)
    w.show()
    dock = w.jobs_dock
    try:
        _sets, job = studio.activations.start_extraction(a.model, a.tokenization, layers=[2],
                                                         max_tokens=512, batch_size=4)

        def row(job_id):
            rows = [dock.model.record(i) for i in range(dock.model.rowCount())]
            return next((r for r in rows if r.id == job_id), None)

        qtbot.waitUntil(lambda: row(job.id) is not None and row(job.id).status == "failed",
                        timeout=60_000)
        assert "ran out of memory" in row(job.id).error and "--batch-size" in row(job.id).error
        # the window still works: another job runs to the end, tabs open
        ok = studio.submit_job("demo.sleep", {"seconds": 0.05}, title="After the failure")
        qtbot.waitUntil(lambda: row(ok.id) is not None and row(ok.id).status == "completed",
                        timeout=30_000)
        for i in range(w.tabs.count()):
            w.tabs.setCurrentIndex(i)
            qtbot.wait(20)
        assert w.isVisible()
    finally:
        w.skip_close_confirmation = True
        w.close()
        qtbot.waitUntil(lambda: not studio.jobs.active_ids(), timeout=15000)
