"""Fixtures for the reliability tests: one complete data folder for the bad-input catalogue,
and the kill harness's prepared data folder, shared by the crash and disk-full tests.

Torch runs on one thread in the kill-harness tests: killed-and-resumed runs (children get
OMP_NUM_THREADS=1) and the in-process references must agree bit for bit.
"""

from __future__ import annotations

import pytest

from tests.autointerp.conftest import tiny_chat_dir  # noqa: F401 (fixture reused)
from tests.conftest import SAMPLE_TEXT


@pytest.fixture(scope="session")
def bad_input_assets(tmp_path_factory, tiny_gpt2_dir):
    """A data folder with one of everything (dataset, model, tokenization, activation set,
    training, SAE, template, preset), shared by every catalogue entry: each entry checks it
    is unchanged afterwards."""
    import torch

    from tests.reliability.bad_input_assets import build_assets

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only fight other processes
    try:
        return build_assets(tmp_path_factory.mktemp("bad_inputs"), tiny_gpt2_dir, SAMPLE_TEXT)
    finally:
        torch.set_num_threads(threads)



def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    return before


@pytest.fixture(scope="session")
def harness(tmp_path_factory):
    """A data folder with a tiny GPT-2, a dataset, its tokenization, an activation set and a
    trained SAE (tests/reliability/kill_harness.py ``prepare_base``)."""
    import torch

    from tests.reliability import kill_harness as kh

    before = _one_thread()
    try:
        return kh.prepare_harness(tmp_path_factory.mktemp("kill_harness"))
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_torch_thread():
    import torch

    before = _one_thread()
    yield
    torch.set_num_threads(before)
