"""Layering, checked by a machine: the core never imports Qt; the window never imports torch."""

import os
import subprocess
import sys
import textwrap

CORE_CHECK = textwrap.dedent("""
    import importlib, pkgutil, sys
    import mistudio
    skipped = []
    for info in pkgutil.walk_packages(mistudio.__path__, "mistudio."):
        if info.name.startswith("mistudio.ui") or info.name == "mistudio.__main__":
            continue
        importlib.import_module(info.name)
    bad = sorted(m for m in sys.modules if m.split(".")[0] in ("PySide6", "pyqtgraph", "shiboken6"))
    print("QT_MODULES=" + ",".join(bad))
""")

WINDOW_CHECK = textwrap.dedent("""
    import sys, tempfile, time
    t0 = time.perf_counter()
    from mistudio.ui.app import build_window, create_app
    app = create_app()
    w = build_window(tempfile.mkdtemp())
    w.show()
    app.processEvents()
    print("TORCH_LOADED=" + str("torch" in sys.modules))
    print("TRANSFORMERS_LOADED=" + str("transformers" in sys.modules))
    w.skip_close_confirmation = True
    w.close()
""")


def _run(code: str) -> str:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", MISTUDIO_NO_KEYRING="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_core_packages_import_without_qt():
    out = _run(CORE_CHECK)
    line = next(l for l in out.splitlines() if l.startswith("QT_MODULES="))
    assert line == "QT_MODULES=", f"core modules pulled in Qt: {line}"


def test_opening_main_window_does_not_import_torch():
    out = _run(WINDOW_CHECK)
    assert "TORCH_LOADED=False" in out
    assert "TRANSFORMERS_LOADED=False" in out
