"""Thread-safe access to transformers' lazily imported classes.

transformers resolves its public names lazily; two threads resolving them for the first time
at once (a job and the inspector, say) can make ``from transformers import X`` fail with an
ImportError. Every import of transformers classes in the app goes through :func:`transformers_names`,
which serialises that first resolution; afterwards it is a cached attribute lookup.
"""

from __future__ import annotations

import threading

_LOCK = threading.Lock()


def transformers_names(*names: str):
    """``AutoConfig, AutoTokenizer = transformers_names("AutoConfig", "AutoTokenizer")``."""
    with _LOCK:
        import transformers

        values = tuple(getattr(transformers, n) for n in names)
    return values[0] if len(values) == 1 else values
