"""A small but complete data folder for the bad-input catalogue: a dataset, a model, a
tokenization, an activation set, a trained SAE, an SAE folder exported from it, a saved
training template and a steering preset; all made through the app's services."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Assets:
    data: Path  # the data folder
    files: Path  # a folder outside it for the users' files (good and bad)
    model_dir: Path
    dataset: str
    model: str
    tokenization: str
    activation_set: str
    training: str
    sae: str
    sae_folder: Path  # the trained SAE exported in SAELens layout (outside the data folder)
    template: str  # a saved training template's name
    preset: str  # a steering preset's name


def build_assets(root: Path, model_dir: Path, text: str) -> Assets:
    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.steering.interventions import Intervention
    from mistudio.studio import Studio

    data, files = root / "data", root / "files"
    files.mkdir(parents=True)
    corpus = files / "corpus.txt"
    paragraphs = [p for p in text.split("\n") if p.strip()]
    corpus.write_text("\n\n".join(paragraphs * 4), encoding="utf-8")
    studio = Studio(data, secrets=MemorySecrets())
    try:
        def wait(job):
            rec = studio.jobs.wait(job.id, 120)
            assert rec.status == "completed", rec.error
            return rec

        ds, job = studio.datasets.add_local(str(corpus), name="corpus")
        wait(job)
        model, job = studio.models.add_local(str(model_dir), name="tiny-gpt2")
        wait(job)
        tok, job = studio.datasets.tokenize(ds.id, model.id, {"seq_len": 64})
        wait(job)
        sets, job = studio.activations.start_extraction(
            model.id, tok.id, layers=[1], max_tokens=2048, batch_size=8)
        wait(job)
        job = studio.trainings.start_training(dict(
            activation_id=sets[0].id, architecture="topk", k=4, d_sae=128, batch_size=256,
            total_tokens=256 * 4, eval_tokens=0, checkpoint_every_seconds=0))
        wait(job)
        (sae,) = studio.trainings.list_saes(job.target)
        sae_folder = studio.trainings.export_saelens(sae.id, None, files / "sae_export")
        template = studio.templates.save("my topk", {"architecture": "topk", "k": 8,
                                                     "d_sae": 256})
        studio.steering.save_preset("calm", sae.id, [Intervention("add", feature=3,
                                                                  value=4.0)])
        return Assets(data, files, Path(model_dir), ds.id, model.id, tok.id, sets[0].id,
                      job.target, sae.id, Path(sae_folder), template.name, "calm")
    finally:
        studio.close(timeout=30)
