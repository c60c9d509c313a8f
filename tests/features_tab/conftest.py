"""Fixtures of the Features tab tests: a real SAELens-layout SAE folder registered in a Studio.

The decoder has ``N_CLUSTERS`` groups of directions (each a random centre plus small noise),
so a map must keep each group together: a check that does not depend on the code under test.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

N_FEATURES = 1200  # tests stay <= 2,000 points (UMAP cost)
D_IN = 32
N_CLUSTERS = 4


def write_sae_folder(folder, d_sae: int = N_FEATURES, d_in: int = D_IN, seed: int = 0):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(N_CLUSTERS, d_in)).astype(np.float32)
    cluster = np.arange(d_sae) % N_CLUSTERS
    w_dec = centres[cluster] + 0.15 * rng.normal(size=(d_sae, d_in)).astype(np.float32)
    w_dec /= np.linalg.norm(w_dec, axis=1, keepdims=True)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"W_enc": np.ascontiguousarray(w_dec.T), "b_enc": np.zeros(d_sae, np.float32),
               "W_dec": w_dec, "b_dec": np.zeros(d_in, np.float32)},
              str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({
        "architecture": "standard", "d_in": d_in, "d_sae": d_sae, "dtype": "float32",
        "device": "cpu", "apply_b_dec_to_input": False, "normalize_activations": "none",
        "metadata": {"model_name": "tiny", "hook_name": "blocks.1.hook_resid_post"}}))
    return w_dec, cluster


@pytest.fixture(scope="session")
def clustered_sae_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clustered_sae")
    w_dec, cluster = write_sae_folder(folder)
    return folder, w_dec, cluster


def register_sae(studio, folder, sae_id: str = "sae_test0001", d_sae: int = N_FEATURES):
    from mistudio.sae.repository import SAERecord, SAEsRepo

    return SAEsRepo(studio.store).insert(SAERecord(
        id=sae_id, folder=str(folder), source="imported", name="clustered test SAE",
        architecture="relu", d_in=D_IN, d_sae=d_sae, model_name="tiny",
        hook_name="blocks.1.hook_resid_post"))


@pytest.fixture
def sae_in_studio(studio, clustered_sae_folder):
    folder, w_dec, cluster = clustered_sae_folder
    return register_sae(studio, folder), w_dec, cluster


@pytest.fixture(scope="session")
def umap_map(tmp_path_factory, clustered_sae_folder):
    """The UMAP map of the clustered SAE, computed once per session through the real job
    (the queue of a Studio): numba compiles UMAP's kernels once, into that data folder's
    cache/numba. Returns (coords, data_dir, job record)."""
    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio

    folder, _w, _c = clustered_sae_folder
    data_dir = tmp_path_factory.mktemp("map_data")
    studio = Studio(data_dir, secrets=MemorySecrets(), setup_logs=False)
    try:
        sae = register_sae(studio, folder)
        job = studio.feature_maps.start_map(sae.id, "umap")
        done = studio.jobs.wait(job.id, timeout=600)
        assert done.status == "completed", done.error
        coords = studio.feature_maps.load_map(sae.id, "umap")
        info = studio.feature_maps.map_info(sae.id, "umap")
    finally:
        studio.close(timeout=10)
    return coords, data_dir, done, info


# The analysis engine's fixtures: a Studio with tiny-gpt2, a random TopK SAE and one
# completed analysis, made through the app (what the tab reads).
from tests.analysis.conftest import (_one_torch_thread, analysis_tokens, random_sae,  # noqa: E402,F401
                                     studio_analysis)


@pytest.fixture(scope="session")
def shared_analysis(tmp_path_factory, tiny_gpt2_dir, analysis_tokens):
    """``studio_analysis`` built once per session (the tab tests only read the analysis; what
    they write, labels and lists, is cleared after each test by ``features_tab``)."""
    from mistudio.sae.formats import save_saelens
    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio

    root = tmp_path_factory.mktemp("features_tab")
    studio = Studio(root / "data", secrets=MemorySecrets(), setup_logs=False)
    model, job = studio.models.add_local(str(tiny_gpt2_dir), name="tiny-gpt2")
    studio.jobs.wait(job.id, timeout=120)
    save_saelens(root / "sae", random_sae(), model_name="tiny-gpt2",
                 hook_name="blocks.1.hook_resid_post")
    sae = studio.trainings.import_sae(str(root / "sae"), name="random topk")
    job = studio.features.start_analysis(sae.id, tokenization=str(analysis_tokens),
                                         max_tokens=0, device="cpu", n_random=20,
                                         context_before=4, context_after=2)
    done = studio.jobs.wait(job.id, timeout=120)
    assert done.status == "completed", done.error
    yield studio, sae.id, job.target
    studio.close(timeout=10)


def make_tab(qtbot, studio):
    from mistudio.ui.features.tab import FeaturesTab
    from mistudio.ui.workers import JobBridge

    bridge = JobBridge()
    studio.add_job_listener(bridge)
    tab = FeaturesTab(studio, bridge)
    qtbot.addWidget(tab)
    tab.resize(1300, 850)
    tab.show()
    qtbot.waitUntil(lambda: tab.bundle is not None, timeout=20_000)
    return tab, bridge


@pytest.fixture
def features_tab(qtbot, shared_analysis):
    """The Features tab on the analysed SAE, its table loaded."""
    from mistudio.labels.repository import FeatureLabelsRepo

    studio, sae_id, fa_id = shared_analysis
    tab, bridge = make_tab(qtbot, studio)
    yield tab, studio, sae_id, fa_id
    tab.shutdown()
    bridge.stop()
    studio.jobs.remove_listener(bridge)
    FeatureLabelsRepo(studio.store).delete_for_sae(sae_id)


@pytest.fixture
def own_features_tab(qtbot, studio_analysis):
    """As ``features_tab`` on a Studio of its own (for tests that add SAEs or analyses)."""
    studio, sae_id, fa_id = studio_analysis
    tab, bridge = make_tab(qtbot, studio)
    yield tab, studio, sae_id, fa_id
    tab.shutdown()
    bridge.stop()
    studio.jobs.remove_listener(bridge)
