"""Fixtures for the reliability tests: one complete data folder for the bad-input catalogue."""

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
