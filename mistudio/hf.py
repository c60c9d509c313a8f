"""transformers' classes, safe to resolve from any thread.

``import transformers`` runs ``transformers/__init__.py``, which ends by replacing its own
``sys.modules`` entry with a lazy module (``_LazyModule``) that imports each class on first
use. CPython's import statement looks the module up in ``sys.modules`` *before* waiting
for the thread that is still running that ``__init__``, and after the wait returns the
object it found: the original module, which has none of the lazy names. So while one
thread imports transformers for the first time, ``from transformers import AutoConfig``
in another thread fails with "cannot import name 'AutoConfig' from 'transformers'"
(tests/foundation/test_hf_threads.py reproduces it in most cold starts with 12 threads).

:func:`transformers_names` waits for that import the same way, then reads the module
from ``sys.modules`` again, which by then is the finished lazy module. No lock is held
across an import (a lock around imports forms a cycle with Python's per-module import
locks that its deadlock detection cannot see). Every import of transformers classes in
the app goes through here; once resolved, a name is a plain attribute of the module.
"""

from __future__ import annotations

import sys


def transformers_module():
    """The fully initialized ``transformers`` module, from any thread."""
    import transformers  # noqa: F401  waits while another thread runs its __init__

    return sys.modules["transformers"]  # not the name bound above: it can be the stale one


def transformers_names(*names: str):
    """``AutoConfig, AutoTokenizer = transformers_names("AutoConfig", "AutoTokenizer")``."""
    module = transformers_module()
    values = tuple(getattr(module, n) for n in names)
    return values[0] if len(values) == 1 else values
