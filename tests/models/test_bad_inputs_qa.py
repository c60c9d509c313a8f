"""Regression tests from the bad-input QA pass: wrong input is refused before anything is made."""

from __future__ import annotations

from pathlib import Path

import pytest

from mistudio.errors import UserError


def _ready_model(studio, folder, name):
    rec, job = studio.models.add_local(str(folder), name=name)
    assert studio.jobs.wait(job.id, 60).status == "completed"
    return studio.models.get(rec.id)


def test_missing_module_path_is_refused_before_any_set_is_registered(studio, tiny_gpt2_dir,
                                                                     packed_tokenization):
    m = _ready_model(studio, tiny_gpt2_dir, "tiny")
    with pytest.raises(UserError, match="no module 'transformer.h.9'"):
        studio.activations.start_extraction(m.id, str(packed_tokenization),
                                            hook_points=["module:transformer.h.9"])
    assert studio.activations.list() == []
    assert not any((studio.paths.root / "activations").iterdir())
    # an existing raw path is accepted (and checked without loading weights)
    sets, job = studio.activations.start_extraction(
        m.id, str(packed_tokenization), hook_points=["module:transformer.h.1.mlp"],
        max_tokens=64)
    assert studio.jobs.wait(job.id, 60).status == "completed"
    assert studio.activations.get(sets[0].id).status == "ready"


def test_linked_model_whose_folder_was_deleted_says_so(studio, tiny_gpt2_dir, tmp_path,
                                                       packed_tokenization):
    import shutil

    folder = tmp_path / "linked_model"
    shutil.copytree(tiny_gpt2_dir, folder)
    m = _ready_model(studio, folder, "linked")
    assert m.linked
    shutil.rmtree(folder)
    with pytest.raises(UserError, match="files of the model 'linked' are gone") as err:
        studio.activations.start_extraction(m.id, str(packed_tokenization), layers=[1])
    assert "delete the model and add it again" in err.value.hint
    assert studio.activations.list() == []
    assert studio.models.get(m.id).status == "ready"  # the record is kept for when it returns


def test_sequences_longer_than_the_model_context_are_refused_up_front(studio, tiny_gpt2_dir,
                                                                      tiny_tokenizer_dir,
                                                                      tmp_path):
    from tests.models.conftest import write_tokenization

    import json

    m = _ready_model(studio, tiny_gpt2_dir, "tiny")
    context = json.loads((tiny_gpt2_dir / "config.json").read_text())["n_positions"]
    too_long = write_tokenization(tmp_path / "tok_long", tiny_tokenizer_dir,
                                  seq_len=context * 2, n_seq=2)
    with pytest.raises(UserError, match=f"at most {context} tokens") as err:
        studio.activations.start_extraction(m.id, str(too_long), layers=[1])
    assert f"context length of {context} or less" in err.value.hint
    assert studio.activations.list() == []
    fits = write_tokenization(tmp_path / "tok_fits", tiny_tokenizer_dir, seq_len=context, n_seq=2)
    sets, job = studio.activations.start_extraction(m.id, str(fits), layers=[1])
    assert studio.jobs.wait(job.id, 60).status == "completed"
    assert studio.activations.get(sets[0].id).num_rows > 0


def test_model_cannot_be_deleted_while_an_extraction_uses_it(studio, tiny_gpt2_dir,
                                                             packed_tokenization):
    import threading

    rec, job = studio.models.add_local(str(tiny_gpt2_dir), name="copied", copy=True)
    assert studio.jobs.wait(job.id, 60).status == "completed"
    m = studio.models.get(rec.id)
    release = threading.Event()

    def hold(job_id, kind, payload):  # the only job now: keep it running meanwhile
        if kind == "progress":
            release.wait(30)

    studio.add_job_listener(hold)
    try:
        sets, ejob = studio.activations.start_extraction(m.id, str(packed_tokenization),
                                                         layers=[1], batch_size=1)
        with pytest.raises(UserError, match="job is using the model 'copied'"):
            studio.models.delete(m.id)
        assert studio.models.get(m.id).status == "ready"
        assert (Path(m.folder) / "config.json").exists()
    finally:
        release.set()
        studio.jobs.remove_listener(hold)
    assert studio.jobs.wait(ejob.id, 60).status == "completed"
    studio.models.delete(m.id)  # once the job is done the model goes, the set stays
    assert studio.activations.get(sets[0].id).status == "ready"


def test_damaged_config_json_gets_a_clear_message(studio, tiny_gpt2_dir, tmp_path):
    import shutil

    folder = tmp_path / "damaged"
    shutil.copytree(tiny_gpt2_dir, folder)
    (folder / "config.json").write_text('{"model_type": "gpt2", "n_embd": 64,')  # cut short
    rec, job = studio.models.add_local(str(folder))
    done = studio.jobs.wait(job.id, 60)
    assert done.status == "failed"
    assert "config.json is not valid JSON" in done.error and "download or copy" in done.error
    assert "OSError" not in done.error


def test_model_folder_without_tokenizer_is_not_registered_ready(studio, tiny_gpt2_dir, tmp_path):
    """transformers builds an empty tokenizer from config.json alone; the import must refuse."""
    import shutil

    from mistudio.data.tokenize import TOKENIZER_FILES

    bare = tmp_path / "weights_only"
    bare.mkdir()
    for f in tiny_gpt2_dir.iterdir():
        if f.name not in TOKENIZER_FILES and not f.name.startswith(("special_tokens", "merges")):
            shutil.copy(f, bare / f.name)
    rec, job = studio.models.add_local(str(bare))
    done = studio.jobs.wait(job.id, 60)
    assert done.status == "failed"
    assert "no tokenizer files" in done.error
    # a failed import leaves nothing behind (as a failed dataset import): no row, no folder
    assert studio.models.repo.get(rec.id) is None
    assert not studio.models.folder(rec.id).exists() and bare.is_dir()
    with pytest.raises(UserError, match="import failed.*no tokenizer files"):
        studio.models.get(rec.id)


def test_bad_layer_ranges_have_clear_messages():
    from mistudio.activations.choices import expand_layers

    assert expand_layers(["1-2", "last", -3], 3) == [0, 1, 2]
    with pytest.raises(UserError, match="runs backwards") as err:
        expand_layers("2-1", 3)
    assert "1-2" in err.value.hint
    with pytest.raises(UserError, match="Cannot read the layer range '1-x'"):
        expand_layers("1-x", 3)
