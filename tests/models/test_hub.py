"""Hub downloads against a local fake Hub: progress, gated, unknown id, resume."""

from __future__ import annotations

import pytest

from tests.models.fake_hub import FakeHub


@pytest.fixture
def hub(tiny_gpt2_dir, monkeypatch):
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)
    with FakeHub() as h:
        h.repos["acme/tiny-gpt2"] = tiny_gpt2_dir
        h.repos["acme/gated"] = tiny_gpt2_dir
        h.gated.add("acme/gated")
        yield h


def test_download_with_progress(studio, hub):
    events = []
    studio.add_job_listener(lambda j, k, p: events.append((k, p)))
    rec, job = studio.models.add_hub("acme/tiny-gpt2", endpoint=hub.endpoint)
    done = studio.jobs.wait(job.id, 120)
    assert done.status == "completed", (done.error, done.traceback)
    m = studio.models.get(rec.id)
    assert m.status == "ready" and m.family == "gpt2" and m.commit_sha.startswith("0123")
    sizes = {p.name: p.stat().st_size for p in hub.files("acme/tiny-gpt2")}
    from pathlib import Path

    for name, size in sizes.items():
        assert (Path(m.folder) / name).stat().st_size == size
    byte_progress = [p for k, p in events if k == "progress" and p.get("total")]
    assert byte_progress and byte_progress[-1]["done"] >= sizes["model.safetensors"]


def test_gated_and_unknown(studio, hub):
    rec, job = studio.models.add_hub("acme/gated", endpoint=hub.endpoint)
    done = studio.jobs.wait(job.id, 60)
    assert done.status == "failed" and "gated" in done.error and "token" in done.error
    # refused before any file came: nothing to resume, so no row and no folder stay
    assert studio.models.repo.get(rec.id) is None and not studio.models.folder(rec.id).exists()
    studio.set_hf_token("hf_good")
    rec, job = studio.models.add_hub("acme/gated", endpoint=hub.endpoint)
    assert studio.jobs.wait(job.id, 60).status == "completed"
    # the token never lands in the database
    raw = (studio.paths.db_file).read_bytes()
    assert b"hf_good" not in raw
    rec, job = studio.models.add_hub("acme/nothing", endpoint=hub.endpoint)
    done = studio.jobs.wait(job.id, 60)
    assert done.status == "failed" and "No model 'acme/nothing'" in done.error
    assert studio.models.repo.get(rec.id) is None


def test_broken_download_keeps_files_and_resumes(studio, hub, monkeypatch):
    import huggingface_hub.file_download as fd

    monkeypatch.setattr(fd.time, "sleep", lambda s: None)  # hf's retry back-off
    hub.fail_after_bytes = 20_000  # the weights file always breaks off: the job fails
    rec, job = studio.models.add_hub("acme/tiny-gpt2", endpoint=hub.endpoint)
    done = studio.jobs.wait(job.id, 120)
    assert done.status == "failed"
    m = studio.models.get(rec.id)
    assert m.status == "incomplete"
    # the card says what is kept and how to continue
    assert "downloaded so far are kept" in m.error and "Resume download" in m.error
    with pytest.raises(Exception, match="not ready"):
        studio.models.inspect(rec.id)
    got_first = set(hub.served)
    assert "config.json" in got_first and "model.safetensors" not in got_first
    hub.fail_after_bytes = None
    hub.served.clear()
    job = studio.models.resume_download(rec.id)
    assert studio.jobs.wait(job.id, 120).status == "completed"
    assert studio.models.get(rec.id).status == "ready"
    assert hub.served == ["model.safetensors"]  # complete files were not fetched again


def test_offline_mode_and_no_network(studio, monkeypatch):
    rec, job = studio.models.add_hub("acme/tiny", endpoint="http://127.0.0.1:9")
    done = studio.jobs.wait(job.id, 120)
    assert done.status == "failed" and "HF_HUB_OFFLINE" in done.error
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)
    rec, job = studio.models.add_hub("acme/tiny", endpoint="http://127.0.0.1:9")
    done = studio.jobs.wait(job.id, 120)
    assert done.status == "failed" and "network" in done.error.lower()
