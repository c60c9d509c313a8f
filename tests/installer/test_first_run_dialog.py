"""The first-run window: a real pip run (loopback index) with progress, then it closes
accepted; with the index unreachable it says so and offers Retry, leaving nothing behind."""

from __future__ import annotations

import sys

import pytest

pytest.importorskip("PySide6")

from mistudio_setup import torch_layer  # noqa: E402
from mistudio_setup.first_run import FirstRunDialog  # noqa: E402
from mistudio_setup.torch_choice import TorchChoice  # noqa: E402
from tests.installer.wheel_index import WheelIndex, closed_port_url, make_wheel  # noqa: E402


@pytest.fixture
def layer(tmp_path, monkeypatch):
    path = tmp_path / "runtime" / f"torch-{torch_layer.python_tag()}"
    monkeypatch.setenv("MISTUDIO_TORCH_LAYER", str(path))
    saved = list(sys.path)
    yield path
    sys.path[:] = saved


def test_installs_with_progress_then_accepts(qtbot, tmp_path, layer):
    (tmp_path / "w").mkdir()
    make_wheel(tmp_path / "w")
    with WheelIndex(tmp_path / "w") as index:
        choice = TorchChoice("cpu", ("layerprobe", "--index-url", index.url), "no NVIDIA driver found", "cpu")
        dialog = FirstRunDialog(choice, layer=layer)
        qtbot.addWidget(dialog)
        assert "for the CPU (about 200 MB). Why: no NVIDIA driver found" in dialog.intro.text()
        with qtbot.waitSignal(dialog.accepted, timeout=90_000):
            dialog.start()
    assert (layer / "layerprobe" / "__init__.py").is_file()
    assert not layer.with_name(layer.name + ".partial").exists()
    assert dialog.output.progress.files_done == 1  # the download was followed
    assert "Installed" in dialog.status.text()


def test_offline_says_so_and_offers_retry(qtbot, layer):
    url = closed_port_url()
    dialog = FirstRunDialog(TorchChoice("cpu", ("torch", "--index-url", url), "no driver", "cpu"),
                            layer=layer)
    qtbot.addWidget(dialog)
    dialog.start()
    assert "cannot reach it now" in dialog.status.text()
    assert "127.0.0.1" in dialog.status.text()
    assert dialog.retry.isEnabled()
    assert not layer.exists() and not layer.with_name(layer.name + ".partial").exists()


def test_jetson_explains_instead_of_downloading(qtbot, layer):
    dialog = FirstRunDialog(TorchChoice("jetson", (), "a Jetson", "jetson"), layer=layer)
    qtbot.addWidget(dialog)
    assert "JetPack" in dialog.intro.text() and dialog.retry.text() == "Check again"
    assert dialog.bar.isHidden()
