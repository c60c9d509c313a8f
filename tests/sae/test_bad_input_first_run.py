"""Bad input a new user hit on a first run, each now one clear message with nothing left
behind: export destinations, a truncated SAE file, an SAE too large for the machine, a
.gguf of random bytes; and the CE-loss column of `sae list`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mistudio.errors import UserError


@pytest.fixture
def trained(studio, small_config, activation_set):
    """A completed training and its SAE record."""
    job = studio.trainings.start_training(small_config(activation_path=str(activation_set),
                                                       total_tokens=256 * 10, eval_tokens=0))
    assert studio.jobs.wait(job.id, 60).status == "completed"
    (sae,) = studio.trainings.list_saes(job.target)
    return sae


def test_export_writes_into_the_given_folder_and_never_nests(studio, trained, tmp_path):
    svc = studio.trainings
    dest = tmp_path / "out"
    assert svc.export_saelens(trained.id, destination=dest) == dest
    assert sorted(p.name for p in dest.iterdir()) >= ["cfg.json", "sae_weights.safetensors"]
    before = sorted(p.name for p in dest.iterdir())
    with pytest.raises(UserError, match="already holds files") as err:
        svc.export_saelens(trained.id, destination=dest)  # was: silently into out/sae
    assert str(dest / trained.id) in err.value.hint
    assert sorted(p.name for p in dest.iterdir()) == before  # nothing nested or replaced
    (tmp_path / "empty").mkdir()
    assert (svc.export_saelens(trained.id, destination=tmp_path / "empty")
            / "cfg.json").exists()
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    with pytest.raises(UserError, match="is a file"):
        svc.export_saelens(trained.id, destination=a_file)
    with pytest.raises(UserError, match="part of its path is a file"):
        svc.export_saelens(trained.id, destination=a_file / "sub")
    assert a_file.read_text() == "mine"


def test_cli_export_to_a_file_is_a_clear_error(studio, trained, tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    studio.close(timeout=10)
    run = subprocess.run([sys.executable, "-m", "mistudio", "sae", "export", trained.id,
                          str(a_file)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "MISTUDIO_DATA_DIR": str(studio.paths.root)})
    assert run.returncode == 2 and "is a file" in run.stderr
    assert "Traceback" not in run.stderr and "NotADirectoryError" not in run.stderr


def test_truncated_safetensors_import_is_a_clear_error(studio, trained, tmp_path):
    svc = studio.trainings
    dest = svc.export_saelens(trained.id, destination=tmp_path / "copy")
    weights = dest / "sae_weights.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a cut download
    before = sorted(p.name for p in (studio.paths.root / "trainings").iterdir())
    with pytest.raises(UserError, match="cannot be read") as err:
        svc.import_sae(str(dest))
    assert "copy them again" in err.value.hint
    assert [s.id for s in svc.list_saes()] == [trained.id]
    assert sorted(p.name for p in (studio.paths.root / "trainings").iterdir()) == before


def test_an_sae_too_large_for_the_machine_is_refused_before_anything_starts(
        studio, small_config, activation_set):
    svc = studio.trainings
    with pytest.raises(UserError, match="more than this machine's memory holds") as err:
        svc.start_training(small_config(activation_path=str(activation_set),
                                        d_sae=1_000_000_000_000, device="cpu"))
    assert "1,000,000,000,000" in str(err.value) and "d_sae" in err.value.hint
    assert svc.list_trainings() == [] and studio.list_jobs() == []
    trainings = studio.paths.root / "trainings"
    assert not trainings.exists() or not any(trainings.iterdir())


def test_random_bytes_gguf_is_one_clear_error(studio, tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(os.urandom(4096).replace(b"GGUF", b"XXXX"))
    with pytest.raises(UserError, match="not a GGUF file"):
        studio.models.add_local(str(fake))
    assert studio.models.list() == [] and studio.list_jobs() == []
    studio.close(timeout=10)
    run = subprocess.run([sys.executable, "-m", "mistudio", "models", "add", str(fake)],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "MISTUDIO_DATA_DIR": str(studio.paths.root)})
    assert run.returncode == 2
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "not a GGUF file" in errors[0] and "m_" not in errors[0]


def test_sae_list_shows_the_ce_loss_score(studio, trained, capsys):
    from mistudio.cli import main

    studio.trainings.saes_repo.update_metrics(trained.id, {**trained.metrics,
                                                           "ce_loss_score": 0.9137})
    studio.close(timeout=10)
    assert main(["sae", "list"]) == 0  # on $MISTUDIO_DATA_DIR, the studio fixture's folder
    header, row = capsys.readouterr().out.splitlines()[:2]
    assert header.split()[6] == "CE"
    assert row.split()[6] == "0.914"
