"""The torch layer: a real pip install from a loopback index into the layer, its progress,
the atomic move into place, sys.path order, and what 'offline' looks like."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mistudio_setup import torch_layer
from tests.installer.wheel_index import WheelIndex, closed_port_url, make_wheel


@pytest.fixture
def layer_env(tmp_path, monkeypatch):
    layer = tmp_path / "home/mistudio-runtime" / f"torch-{torch_layer.python_tag()}"
    monkeypatch.setenv("MISTUDIO_TORCH_LAYER", str(layer))
    monkeypatch.setattr(torch_layer, "SYSTEM_ROOT", tmp_path / "opt")
    saved = list(sys.path)
    yield layer
    sys.path[:] = saved
    sys.modules.pop("layerprobe", None)


def pip_run(cmd):
    out = torch_layer.PipOutput()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env=torch_layer.pip_environment())
    for line in (proc.stdout + proc.stderr).splitlines():
        out.feed(line)
    return proc.returncode, out


def test_install_into_layer_reports_progress_and_becomes_importable(tmp_path, layer_env):
    wheels = tmp_path / "index"
    wheels.mkdir()
    wheel = make_wheel(wheels)
    with WheelIndex(wheels) as index:
        partial = torch_layer.partial_dir(layer_env)
        rc, out = pip_run(torch_layer.pip_command(partial, ["layerprobe", "--index-url", index.url]))
    assert rc == 0, "\n".join(out.lines)
    # pip's raw progress ends at the wheel's size on disk, counted once
    assert out.progress.files_done == 1
    assert out.progress.bytes_done == wheel.stat().st_size
    assert not layer_env.exists()  # nothing is in place until the install is complete
    torch_layer.finish_install(partial, layer_env)
    assert layer_env.is_dir() and not partial.exists()
    assert torch_layer.add_layers() == [str(layer_env)]
    import layerprobe

    assert layerprobe.VERSION == "1.0"


def test_layer_comes_after_the_venv_packages(layer_env):
    # a copy of a venv package pip put beside torch must not shadow the venv's pinned one
    shadow = layer_env / "pytest"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('the layer shadowed the venv')\n")
    torch_layer.add_layers()
    assert sys.path.index(str(layer_env)) > max(
        i for i, p in enumerate(sys.path) if p.endswith("site-packages"))
    code = ("import sys; sys.path.append(sys.argv[1]); import pytest; print(pytest.__file__)")
    r = subprocess.run([sys.executable, "-c", code, str(layer_env)], capture_output=True, text=True)
    assert r.returncode == 0 and str(layer_env) not in r.stdout


def test_offline_is_recognised_before_and_during_pip(tmp_path, layer_env):
    url = closed_port_url()
    why = torch_layer.reachable(url, timeout=2)
    assert why and "127.0.0.1 cannot be reached" in why
    message = torch_layer.offline_message("PyTorch for the CPU", url, why)
    assert "Retry" in message and "sudo mistudio-setup-torch --system" in message
    # pip itself against the dead index: its output is classified as offline too
    partial = torch_layer.partial_dir(layer_env)
    cmd = torch_layer.pip_command(partial, ["layerprobe", "--index-url", url]) + ["--retries", "1", "--timeout", "2"]
    rc, out = pip_run(cmd)
    assert rc != 0
    detail, offline = out.failure(rc)
    assert offline, out.lines
    assert "layerprobe" in detail


def test_pip_runs_without_the_users_pip_configuration(tmp_path):
    # an extra index or find-links of the user's could offer another torch than the chosen one
    env = torch_layer.pip_environment({"PIP_FIND_LINKS": "/opt/wheels", "PIP_CERT": "/ca.pem",
                                       "PIP_EXTRA_INDEX_URL": "file:///x", "HOME": "/home/u"})
    assert env == {"PIP_CERT": "/ca.pem", "HOME": "/home/u", "PIP_CONFIG_FILE": os.devnull}


def test_a_reachable_index_is_not_called_offline(tmp_path):
    (tmp_path / "w").mkdir()
    with WheelIndex(tmp_path / "w") as index:
        assert torch_layer.reachable(index.url, timeout=2) is None
