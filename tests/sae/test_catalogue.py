"""The pretrained-SAE catalogue: the shipped snapshot, a newer file, filters, loadability
flags, and downloads (progress, resume) against the local fake Hub, ending as imported SAEs."""

from __future__ import annotations

import gzip
import json
import re

import numpy as np
import pytest
import torch

from mistudio.errors import UserError
from mistudio.sae.catalogue import SNAPSHOT, load_catalogue
from tests.models.fake_hub import FakeHub

TINY_YAML = """
acme-gpt2-res:
  conversion_func: null
  model: gpt2-small
  repo_id: acme/saes
  saes:
  - id: blocks.0.hook_resid_pre
    path: blocks.0.hook_resid_pre
    l0: 12.5
    variance_explained: 0.9
  - id: blocks.1.hook_resid_pre
    path: blocks.1.hook_resid_pre
acme-gemma-scope-res:
  conversion_func: gemma_2
  model: gemma-2-2b
  repo_id: acme/scope
  saes:
  - id: layer_2/width_1k/average_l0_5
    path: layer_2/width_1k/average_l0_5
acme-gemma3:
  conversion_func: gemma_3
  model: google/gemma-3-1b-pt
  repo_id: acme/g3
  saes:
  - id: layer_0_width_16k_l0_small
    path: resid_post/layer_0_width_16k_l0_small
"""


def test_snapshot_is_the_whole_saelens_file_with_its_fields():
    text = gzip.open(SNAPSHOT, "rt", encoding="utf-8").read()
    cat = load_catalogue()
    # every "- id:" entry of the file became an entry (counted independently of the parser)
    assert len(cat.entries) == len(re.findall(r"^  - ", text, re.M)) > 10_000
    assert "MIT" in cat.description and "2026-12-05" in cat.description
    e = cat.get("gpt2-small-res-jb/blocks.3.hook_resid_pre")
    assert (e.repo_id, e.path, e.l0, e.model, e.hub_model) == (
        "jbloom/GPT2-Small-SAEs-Reformatted", "blocks.3.hook_resid_pre", 23.0, "gpt2-small",
        "openai-community/gpt2")
    assert e.loadable and e.hook_name == "blocks.3.hook_resid_pre" and not e.hook_inferred
    # TransformerLens aliases and Hub ids select the same entries
    by_alias = cat.filter(model="gpt2-small")
    assert by_alias and by_alias == cat.filter(model="openai-community/gpt2")
    assert {x.hub_model for x in by_alias} == {"openai-community/gpt2"}
    # Gemma Scope: params.npz the app reads; hook and width read from the names
    g = cat.filter(release="gemma-scope-2b-pt-res", text="layer_5 width_16k")[0]
    assert g.loadable and g.hook_name == "blocks.5.hook_resid_post" and g.hook_inferred
    assert g.d_sae == 16384 and g.hub_model == "google/gemma-2-2b"
    # flagged before any download, with the reason
    att = cat.filter(release="gemma-scope-2b-pt-att")[0]
    assert not att.loadable and "hook_z" in att.reason
    g3 = next(x for x in cat.entries if x.conversion == "gemma_3")
    assert not g3.loadable and "'gemma_3' conversion" in g3.reason


def test_a_newer_file_the_user_points_at(studio, tmp_path):
    f = tmp_path / "pretrained_saes.yaml"
    f.write_text(TINY_YAML)
    svc = studio.sae_catalogue
    assert len(svc.catalogue().entries) > 10_000  # the snapshot first
    cat = svc.set_catalogue_file(f)
    assert [e.key for e in cat.entries][:2] == ["acme-gpt2-res/blocks.0.hook_resid_pre",
                                               "acme-gpt2-res/blocks.1.hook_resid_pre"]
    assert studio.settings.sae_catalogue_file == str(f)
    assert len(svc.catalogue().entries) == 4  # remembered
    assert [e.loadable for e in svc.catalogue().entries] == [True, True, True, False]
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(UserError, match="SAELens's catalogue"):
        svc.set_catalogue_file(bad)
    assert studio.settings.sae_catalogue_file == str(f)  # a bad file changes nothing
    with pytest.raises(UserError, match="Cannot read"):
        svc.set_catalogue_file(tmp_path / "missing.yaml")
    with pytest.raises(UserError, match="no SAE 'blocks.9"):
        svc.entry("acme-gpt2-res/blocks.9.hook_resid_pre")
    svc.set_catalogue_file("")
    assert studio.settings.sae_catalogue_file == ""


def test_filter_by_registered_models(studio, tmp_path):
    from mistudio.models.repository import ModelRecord

    f = tmp_path / "p.yaml"
    f.write_text(TINY_YAML)
    svc = studio.sae_catalogue
    svc.set_catalogue_file(f)
    assert svc.browse(registered_only=True) == []
    studio.models.repo.insert(ModelRecord(id="m_1", name="gpt2", source="hub",
                                          source_ref="openai-community/gpt2"))
    assert {e.release for e in svc.browse(registered_only=True)} == {"acme-gpt2-res"}
    assert [e.sae_id for e in svc.browse(model="gemma-2-2b")] == ["layer_2/width_1k/average_l0_5"]


def _saelens_repo(root):
    """A Hub repo with two SAELens-format SAEs in subfolders (no model named in their cfg)."""
    from mistudio.sae.architectures import ReluSAE
    from mistudio.sae.formats import save_saelens

    saes = {}
    for layer in (0, 1):
        sae = ReluSAE(64, 256, seed=layer).eval()
        with torch.no_grad():
            sae.b_enc.fill_(-0.05)
        save_saelens(root / f"blocks.{layer}.hook_resid_pre", sae)
        saes[layer] = sae
    return saes


@pytest.fixture
def hub(tmp_path, monkeypatch):
    import huggingface_hub.constants as c
    import huggingface_hub.file_download as fd

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(fd.time, "sleep", lambda s: None)  # hf's retry back-off
    with FakeHub() as h:
        yield h


def test_download_with_progress_and_resume_becomes_an_imported_sae(studio, hub, tmp_path):
    saes = _saelens_repo(tmp_path / "repo")
    hub.repos["acme/saes"] = tmp_path / "repo"
    f = tmp_path / "p.yaml"
    f.write_text(TINY_YAML)
    svc = studio.sae_catalogue
    svc.set_catalogue_file(f)
    events = []
    studio.add_job_listener(lambda j, k, p: events.append((k, p)))
    key = "acme-gpt2-res/blocks.1.hook_resid_pre"
    # the link drops in the middle of the weights: the job fails, saying what is kept
    hub.fail_after_bytes = 20_000
    job = svc.start_download(key, endpoint=hub.endpoint)
    done = studio.jobs.wait(job.id, 120)
    assert done.status == "failed" and "downloaded so far are kept" in done.error
    assert studio.trainings.list_saes() == []
    assert hub.served == ["blocks.1.hook_resid_pre/cfg.json"]  # only the chosen folder
    # again: the files that came whole are kept (huggingface_hub 2.x restarts a file that
    # broke off; within one job it retries with range requests)
    hub.fail_after_bytes = None
    hub.served.clear()
    job = svc.start_download(key, endpoint=hub.endpoint)
    done = studio.jobs.wait(job.id, 120)
    assert done.status == "completed", (done.error, done.traceback)
    assert hub.served == ["blocks.1.hook_resid_pre/sae_weights.safetensors"]
    weights = (tmp_path / "repo" / "blocks.1.hook_resid_pre" / "sae_weights.safetensors")
    byte_progress = [p for k, p in events if k == "progress" and " KB of " in (p["message"] or "")]
    assert byte_progress and max(p["done"] for p in byte_progress) >= weights.stat().st_size
    # an imported SAE like any other: recorded, with the catalogue's model filled in
    rec = svc.imported(key)[0]
    assert rec.source == "imported" and rec.d_in == 64 and rec.d_sae == 256
    assert rec.model_name == "openai-community/gpt2"
    assert rec.hook_name == "blocks.1.hook_resid_pre"
    loaded = studio.trainings.load_sae(rec.id)
    x = torch.randn(8, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), saes[1](x))
    cfg = json.loads((tmp_path / "repo" / "blocks.1.hook_resid_pre" / "cfg.json").read_text())
    assert cfg["architecture"] == "standard"


def test_gemma_scope_entry_and_refusals(studio, hub, tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "scope" / "layer_2" / "width_1k" / "average_l0_5"
    folder.mkdir(parents=True)
    p = {"W_enc": rng.normal(size=(16, 1024)), "W_dec": rng.normal(size=(1024, 16)),
         "b_enc": rng.normal(size=1024), "b_dec": rng.normal(size=16),
         "threshold": rng.uniform(0, 0.5, size=1024)}
    np.savez(folder / "params.npz", **p)
    hub.repos["acme/scope"] = tmp_path / "scope"
    f = tmp_path / "p.yaml"
    f.write_text(TINY_YAML)
    svc = studio.sae_catalogue
    svc.set_catalogue_file(f)
    job = svc.start_download("acme-gemma-scope-res/layer_2/width_1k/average_l0_5",
                             endpoint=hub.endpoint)
    done = studio.jobs.wait(job.id, 120)
    assert done.status == "completed", (done.error, done.traceback)
    rec = studio.trainings.get_sae(job.target)
    assert rec.architecture == "jumprelu" and rec.d_sae == 1024
    assert (rec.model_name, rec.hook_name) == ("google/gemma-2-2b", "blocks.2.hook_resid_post")
    # entries the app cannot load are refused before anything is downloaded
    served = list(hub.served)
    with pytest.raises(UserError, match="gemma_3"):
        svc.start_download("acme-gemma3/layer_0_width_16k_l0_small", endpoint=hub.endpoint)
    with pytest.raises(UserError, match="RELEASE/ID"):
        svc.start_download("acme-gemma3", endpoint=hub.endpoint)
    assert hub.served == served


def test_widths_read_from_names():
    from mistudio.sae.catalogue import _width_of

    assert [_width_of(t) for t in ("layer_3/width_16k/x", "width_65k", "width_1m",
                                   "v5_32k_layer_0", "24k", "blocks.3.hook_resid_pre")] == \
        [16384, 65536, 2 ** 20, 32768, 24576, None]
