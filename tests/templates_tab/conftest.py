import pytest


@pytest.fixture
def preset(studio):
    """A steering preset file as the Steering tab saves one (no SAE needed to list it)."""
    from mistudio.steering.interventions import Intervention
    from mistudio.steering.presets import Preset, SAEIdentity

    p = Preset("Calm tone", SAEIdentity(hook_name="blocks.0.hook_resid_post", d_sae=64,
                                        file_hash="abc", sae_id="sae_x", name="tiny sae"),
               [Intervention("add", 3, 2.0)], description="feature 3 up")
    studio.steering.presets_store.save(p)
    return p
