"""transformers' classes resolve from many threads at once in a fresh process.

The race (see mistudio/hf.py): while one thread runs transformers/__init__.py, an import
statement in another thread returns the module object that __init__ is about to replace
with its lazy module, and ``from transformers import AutoConfig`` fails with "cannot
import name". With a plain ``from transformers import X`` in each thread, most cold starts
of this script fail (7 of 8 in the first reproduction); through ``transformers_names``
none may.
"""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import mistudio

THREADS = textwrap.dedent("""
    import threading
    from mistudio.hf import transformers_names
    names = ["AutoConfig", "AutoModelForCausalLM", "AutoTokenizer", "GPT2Config",
             "LlamaConfig", "BitsAndBytesConfig"]
    errors, barrier = [], threading.Barrier(2 * len(names))
    def work(name):
        barrier.wait()  # all threads start the first import together
        try:
            value = transformers_names(name)
            assert value.__name__ == name, value
        except Exception as exc:
            errors.append(f"{name}: {exc!r}")
    ts = [threading.Thread(target=work, args=(n,)) for n in names * 2]
    [t.start() for t in ts]; [t.join() for t in ts]
    print("ERRORS=" + " | ".join(errors))
""")


def test_transformers_names_resolve_from_many_threads_on_a_cold_start():
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    for _ in range(2):  # a fresh process each time: the race is on the first import only
        out = subprocess.run([sys.executable, "-X", "faulthandler", "-c", THREADS],
                             capture_output=True, text=True, env=env, timeout=100)
        assert out.returncode == 0, out.stderr[-3000:]
        lines = out.stdout.splitlines()
        assert next(l for l in lines if l.startswith("ERRORS=")) == "ERRORS="


def test_the_app_imports_transformers_classes_only_through_mistudio_hf():
    # a plain `from transformers import X` on a worker thread reopens the race
    root = Path(mistudio.__file__).parent
    pattern = re.compile(r"^\s*(from transformers(\.\w+)* import|import transformers)", re.M)
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                 if p.name != "hf.py" and pattern.search(p.read_text(encoding="utf-8"))]
    assert offenders == []
