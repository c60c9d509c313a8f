"""Fixtures for the SAE engine: synthetic activation sets with known sparse directions.

Tests run torch on one thread: on a shared 2-core machine, OpenMP threads fighting other
processes make tiny SAE steps ~10x slower.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def synthetic():
    """(activations [40000, 32], true directions [48, 32]) with ~3 features per token."""
    from mistudio.sae.synthetic import sparse_features

    return sparse_features(40_000, 32, 48, seed=0, p_min=0.03, p_max=0.1)


@pytest.fixture(scope="session")
def activation_set(tmp_path_factory, synthetic):
    """The synthetic activations written as an activation set folder (small shards)."""
    from mistudio.activations.format import write_activation_set

    x, _ = synthetic
    folder = tmp_path_factory.mktemp("acts") / "set"
    return write_activation_set(folder, x.numpy(), {"model_name": "synthetic",
                                                    "hook_point": "blocks.0.hook_resid_post",
                                                    "seq_len": 100}, shard_rows=8192)


@pytest.fixture
def small_config():
    """A factory of small, fast TrainingConfigs (keyword overrides)."""
    return make_small_config


def make_small_config(**kw):
    from mistudio.sae.config import TrainingConfig

    base = dict(activation_path="mem", architecture="topk", k=4, d_sae=96, batch_size=256,
                total_tokens=256 * 60, lr=3e-3, metrics_every_steps=10,
                dead_window_tokens=256 * 20,
                checkpoint_every_seconds=0)  # wall-time checkpoints would make counts flaky
    base.update(kw)
    return TrainingConfig(**base)
