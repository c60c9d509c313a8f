"""Save a PNG of every tab and dialog (``mistudio screenshot --out DIR``).

Runs offscreen unless a display is asked for; each tab is built and shown the way a user
would open it, events are processed so it has drawn its content, then grabbed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _settle(app, ms: int = 300) -> None:
    import time

    end = time.monotonic() + ms / 1000
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


def take_screenshots(out_dir: Path, data_dir=None, *, size=(1400, 900)) -> list[Path]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from mistudio.ui.app import build_window, create_app

    app = create_app()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    window = build_window(data_dir, remember_layout=False)  # the user's ui.ini stays as it is
    window.resize(*size)
    window.show()
    _settle(app)
    saved = []
    for i in range(window.tabs.count()):
        window.tabs.setCurrentIndex(i)
        _settle(app)
        path = out_dir / f"tab-{i + 1}-{_slug(window.tabs.tabText(i))}.png"
        window.grab().save(str(path))
        saved.append(path)
    for name, opener in (("settings", window.open_settings), ("about", window.open_about)):
        dlg = opener()
        _settle(app, 300)
        if name == "about":  # wait for the background torch probe (bounded)
            import time

            deadline = time.monotonic() + 20
            while getattr(dlg, "hw", None) is None or dlg.hw.cuda_available is None:
                if time.monotonic() > deadline:
                    break
                _settle(app, 100)
            _settle(app, 100)
        path = out_dir / f"dialog-{name}.png"
        dlg.grab().save(str(path))
        saved.append(path)
        dlg.close()
    # extra screens a tab wants captured: an optional `screenshot_states()` generator per tab
    for title, page in window.lazy_tabs.items():
        inner = page.ensure_built()
        states = getattr(inner, "screenshot_states", None)
        if states is None:
            continue
        window.show_tab(title)
        for state_name, widget in states():
            _settle(app)
            path = out_dir / f"tab-{_slug(title)}-{_slug(state_name)}.png"
            (widget or window).grab().save(str(path))
            saved.append(path)
    window.skip_close_confirmation = True
    window.close()
    _settle(app, 200)
    return saved
