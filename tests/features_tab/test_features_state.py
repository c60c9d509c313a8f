"""The Features tab's state without Qt: the loaded table follows the picked SAE, labels and
lists come from it, messages, and what each job event means for the tab."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mistudio.ui.features.loaders import TableBundle
from mistudio.ui.features.state import FeaturesState
from mistudio.ui.features.table_data import FeatureTable


@dataclass
class Sources:
    demo: bool


def _bundle(sae_id="sae_a", analysis_id="fa_1", demo=False) -> TableBundle:
    table = FeatureTable({"index": np.array([3, 7, 9], np.int64),
                          "label": np.array(["", "dates", "rivers"], dtype=object)})
    return TableBundle(sae_id, analysis_id, table, n_tokens=1000, meta={},
                       sources=Sources(demo))


def test_a_table_for_another_sae_is_dropped_and_a_new_sae_clears_it():
    state = FeaturesState()
    state.select_sae("sae_a")
    state.analysis_id = "fa_1"
    assert not state.take_table(_bundle(sae_id="sae_b"))  # picked another SAE meanwhile
    assert state.bundle is None and not state.shows_table_of("fa_1")
    assert state.take_table(_bundle())
    assert state.shows_table_of("fa_1") and not state.shows_table_of("fa_2")
    assert state.owns_table("sae_a") and not state.owns_table("sae_b")
    state.history.open(7)
    assert state.select_sae("sae_b")
    assert state.bundle is None and state.analysis_id is None and state.feature is None
    assert not state.select_sae("sae_b")  # the same one again: nothing changes


def test_labels_lists_and_the_credit_line_come_from_the_loaded_table():
    state = FeaturesState()
    assert state.labels() == {} and state.source_note() == ""
    state.select_sae("sae_a")
    state.take_table(_bundle(demo=True))
    assert state.labels() == {7: "dates", 9: "rivers"}  # unlabelled features are left out
    assert "CC BY-SA 4.0" in state.source_note()
    state.set_lists(["L"], {"fl_1": np.array([3, 9])})
    assert state.members_of("fl_1").tolist() == [3, 9]
    assert state.members_of("fl_none").tolist() == [] and state.members_of(None).size == 0


def test_messages_keep_the_last_error():
    state = FeaturesState()
    state.say("Analysis queued...")
    assert state.message_role == "text.muted" and state.last_error == ""
    state.say("No tokenization.", "error")
    assert state.message_role == "error" and state.last_error == "No tokenization."
    state.say("Saved.", "done")
    assert state.message_role == "success" and state.last_error == "No tokenization."
    state.say("", "error")  # an error cleared (a table loaded)
    assert state.last_error == ""


def test_what_a_job_event_means_here():
    state = FeaturesState()
    state.select_sae("sae_a")
    assert state.job_effect("sae.train", "completed") == "saes"
    assert state.job_effect("sae.train", "running") == ""
    assert state.job_effect("features.analyze", "completed") == "analyses"
    assert state.job_effect("features.analyze", "interrupted") == "analyses"
    assert state.job_effect("features.analyze", "running") == ""
    assert state.job_effect("features.map", "completed", "sae_a") == "map"
    assert state.job_effect("features.map", "failed", "sae_a") == "map_stopped"
    assert state.job_effect("features.map", "completed", "sae_other") == ""  # not shown here
    assert state.job_effect("datasets.import", "completed") == ""
    assert "Compute map" in state.map_empty_text("umap", computing=False)
    assert state.map_empty_text("tsne", computing=True) == "Computing the t-SNE map..."
