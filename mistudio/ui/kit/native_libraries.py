"""Import torch on a worker thread without freezing the GUI thread.

A tab's background read that needs torch (the Models tab's memory badge and module tree, the
extraction panel's device check) imports it on a worker the first time. Python's import of
an extension module holds the GIL while the dynamic loader maps the library and runs its
static initialisers; for ``libtorch_cpu.so`` that is one uninterrupted 150-200 ms (longer on a
loaded machine) in which the GUI thread cannot run a line of Python: a visible freeze, the
Models tab's longest on its first open. ``preload_torch_libraries()`` asks the loader for the
same library first through ``ctypes``, which releases the GIL around a foreign call, so the
later ``import torch`` finds it loaded and the GUI thread keeps running meanwhile.

Best effort: Linux only, and any failure leaves the ordinary import to load it.

The other long hold is the garbage collector: torch's import makes ~10^6 objects, and each
full collection it triggers walks every object of the process with the GIL held (three of
them, 50-200 ms each here). ``import_torch_quietly()`` pauses the collector for the import
and then moves everything alive into the permanent generation (``gc.freeze()``, meant for
this: long-lived objects made at start-up), so neither the import nor later collections walk
torch's objects again. The cost: a reference cycle among objects alive at that moment that
becomes garbage later is not collected (reference counting still frees everything else).
"""

from __future__ import annotations

import gc
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)

# torch/lib files in the order torch's own import loads them: its small global-deps shim
# first with RTLD_GLOBAL (torch/__init__.py _load_global_deps), then the large libraries
# (local scope, as when _C.so pulls them in); those whose loading is long come last
LIBRARIES = (("libtorch_global_deps.so", True), ("libtorch_cpu.so", False),
             ("libtorch_cuda.so", False))
RTLD_NOW, RTLD_GLOBAL = 2, 0x100

_done: list[bool] = []
_quiet: list[bool] = []  # the first quiet import started (only it touches the collector)


def preload_torch_libraries() -> bool:
    """Map torch's large native libraries with the GIL released (call it on a worker
    thread before importing torch). Returns whether anything was loaded here."""
    if _done or "torch" in sys.modules or not sys.platform.startswith("linux"):
        return False
    # Two workers may get here at once: both ask the loader, which serialises dlopen itself
    # (the second waits there with the GIL released) and hands both the same mapping.
    try:
        import ctypes
        import importlib.util

        spec = importlib.util.find_spec("torch")
        if spec is None or not spec.origin:
            return False
        folder = Path(spec.origin).parent / "lib"
        dlopen = ctypes.CDLL(None).dlopen  # a foreign call: ctypes releases the GIL
        dlopen.restype = ctypes.c_void_p
        dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
        loaded = False
        for name, shared in LIBRARIES:
            path = folder / name
            if path.is_file():
                mode = RTLD_NOW | (RTLD_GLOBAL if shared else 0)
                loaded = bool(dlopen(str(path).encode(), mode)) or loaded
        _done.append(True)
        return loaded
    except Exception:  # the import that follows loads them the ordinary way
        log.debug("preloading torch's libraries failed", exc_info=True)
        return False


def import_torch_quietly() -> None:
    """Import torch (on a worker thread) with its libraries preloaded and the collector
    paused, then freeze what is alive (see the module's docstring)."""
    if "torch" in sys.modules:
        return
    import importlib

    preload_torch_libraries()
    if _quiet:  # another thread is at it (it freezes and restores the collector)
        importlib.import_module("torch")
        return
    _quiet.append(True)
    # the app collects on its GUI thread's timer (automatic collection off): torch's objects
    # are frozen all the same, and the collector is left as it was found
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        importlib.import_module("torch")
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()
