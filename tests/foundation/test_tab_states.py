"""Every tab's state object imports without Qt (so the tests that drive them need no
QApplication, and the logic in them cannot reach for a widget)."""

import subprocess
import sys

STATES = ["datasets", "models", "training", "features", "steering", "templates"]

BLOCK_QT = """
import sys
class _NoQt:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('PySide6', 'shiboken6', 'pyqtgraph'):
            raise ImportError('Qt is blocked: ' + name)
sys.meta_path.insert(0, _NoQt())
import importlib
for tab in sys.argv[1:]:
    importlib.import_module(f'mistudio.ui.{tab}.state')
print('ok')
"""


def test_every_tab_state_imports_with_qt_blocked():
    out = subprocess.run([sys.executable, "-c", BLOCK_QT, *STATES], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
