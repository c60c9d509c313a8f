"""Shared fixtures: a temporary data dir, a Studio on it, tiny models with a tokenizer.

Qt runs offscreen. Tiny models are built from transformers configs and saved to
session-scoped temporary folders, then loaded through the same code path users use.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("MISTUDIO_NO_KEYRING", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# No test may touch the user's real data folder or settings: tests that forget the data_dir
# fixture (or a child process they start) land in a throw-away XDG home instead of
# ~/.local/share/mistudio and ~/.config/mistudio.
import atexit  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

_XDG = tempfile.mkdtemp(prefix="mistudio-tests-xdg-")
atexit.register(shutil.rmtree, _XDG, True)
os.environ["XDG_DATA_HOME"] = os.path.join(_XDG, "data")
os.environ["XDG_CONFIG_HOME"] = os.path.join(_XDG, "config")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

SAMPLE_TEXT = """The quick brown fox jumps over the lazy dog. A sparse autoencoder learns features.
Paris is the capital of France. Berlin is the capital of Germany. Rome is in Italy.
Mathematics studies numbers, shapes and patterns. Biology studies living things.
The cat sat on the mat. Once upon a time there was a little girl named Lily.
Neural networks compute with matrices; transformers use attention over tokens.
Water boils at one hundred degrees Celsius at sea level. The sun is a star.
""" * 4


#: Test folders whose tests run feature analyses (the analysis engine's numba kernels).
_ANALYSIS_USERS = ("tests/analysis", "tests/features_tab", "tests/steering", "tests/autointerp",
                   "tests/storage")


def pytest_collection_finish(session):
    """Compile the analysis kernels before the first test's timeout starts counting: cold,
    numba takes seconds on an idle machine and minutes on a loaded one (then it is cached)."""
    if any(item.nodeid.startswith(_ANALYSIS_USERS) for item in session.items):
        from mistudio.analysis.kernels import warm_up

        warm_up()


# Python's automatic garbage collection runs at whatever allocation crosses its threshold,
# also inside a Qt call that holds Qt's signal-slot mutex (PySide looks up a Python override
# there); if it then destroys a widget an earlier test left in a reference cycle, the widget's
# destructor waits for that same mutex and the process deadlocks where pytest-timeout's
# signal cannot reach it (seen once: QObject::disconnect -> gc -> ~QComboBox ->
# disconnectImpl). The app collects only on its GUI thread's timer (ui/app.py); the tests
# collect between tests, when no Qt call is on the stack.
import gc  # noqa: E402

_FULL_COLLECTION_EVERY = 20  # tests; the young generations are collected after every test
_tests_run = [0]


def pytest_configure(config):
    gc.disable()


@pytest.fixture(autouse=True)
def _collect_garbage_between_tests():
    yield
    _tests_run[0] += 1
    gc.collect(2 if _tests_run[0] % _FULL_COLLECTION_EVERY == 0 else 1)


@pytest.fixture(autouse=True)
def _no_modal_message_boxes(request, monkeypatch):
    """A modal QMessageBox in a test would wait for a click forever (offscreen, nobody
    clicks) inside Qt's C++ event loop, where pytest-timeout's signal cannot interrupt it.
    In Qt tests the static QMessageBox helpers raise instead, naming the dialog, so the
    test fails at once. A test that means to answer a dialog patches the helper itself."""
    import sys

    if "qtbot" not in request.fixturenames and "PySide6.QtWidgets" not in sys.modules:
        return
    from PySide6.QtWidgets import QMessageBox

    def refuse(kind):
        def modal(parent, title, text, *args, **kwargs):
            raise AssertionError(f"a modal QMessageBox.{kind} opened in a test: {title!r}: "
                                 f"{text!r}")
        return modal

    for kind in ("question", "warning", "critical", "information"):
        monkeypatch.setattr(QMessageBox, kind, staticmethod(refuse(kind)))


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "data"
    monkeypatch.setenv("MISTUDIO_DATA_DIR", str(d))
    return d


@pytest.fixture
def studio(data_dir):
    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio

    s = Studio(data_dir, secrets=MemorySecrets())
    yield s
    s.close(timeout=10)


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory) -> Path:
    """A small byte-level BPE tokenizer (vocab 512) trained on SAMPLE_TEXT, with BOS/EOS/PAD."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=["<|endoftext|>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(SAMPLE_TEXT.splitlines(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>", unk_token="<|endoftext|>",
                                   pad_token="<pad>")
    out = tmp_path_factory.mktemp("tiny_tokenizer")
    fast.save_pretrained(out)
    return out


def _save_tiny(cfg, out: Path, tokenizer_dir: Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg)
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    """GPT-2 shape: 3 layers, d_model 64, 4 heads, vocab 512, context 128."""
    from transformers import GPT2Config

    cfg = GPT2Config(vocab_size=512, n_positions=128, n_embd=64, n_layer=3, n_head=4,
                     bos_token_id=0, eos_token_id=0)
    return _save_tiny(cfg, tmp_path_factory.mktemp("tiny_gpt2"), tiny_tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    """Llama shape: 3 layers, d_model 64, 4 heads (2 KV), MLP 128, vocab 512, context 128."""
    from transformers import LlamaConfig

    cfg = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      bos_token_id=0, eos_token_id=0, pad_token_id=1)
    return _save_tiny(cfg, tmp_path_factory.mktemp("tiny_llama"), tiny_tokenizer_dir)
