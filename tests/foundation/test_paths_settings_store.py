import json
import os
import stat

import pytest

from mistudio import paths
from mistudio.errors import UserError
from mistudio.paths import (DataPaths, InsufficientDiskSpace, atomic_dir, atomic_path,
                            atomic_write_json, check_free_space, human_bytes)
from mistudio.settings import SecretStore, Settings, SettingsRepo
from mistudio.store import Store, new_id
from mistudio.store.migrations import latest_version


def test_data_dir_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv("MISTUDIO_DATA_DIR", str(tmp_path / "x"))
    assert paths.resolve_data_dir() == (tmp_path / "x").resolve()
    assert paths.resolve_data_dir(tmp_path / "y") == (tmp_path / "y").resolve()


def test_data_dir_pointer_from_settings(tmp_path, monkeypatch):
    monkeypatch.delenv("MISTUDIO_DATA_DIR", raising=False)
    monkeypatch.setattr(paths, "config_dir", lambda: tmp_path / "cfg")
    assert paths.resolve_data_dir() == paths.default_data_dir()
    paths.remember_data_dir(tmp_path / "chosen")
    assert paths.resolve_data_dir() == (tmp_path / "chosen").resolve()
    paths.remember_data_dir(None)
    assert paths.resolve_data_dir() == paths.default_data_dir()


def test_unwritable_data_dir_gives_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match="Cannot create the data folder"):
        DataPaths(blocker / "data").ensure()


def test_atomic_write_replaces_whole_file_or_nothing(tmp_path):
    target = tmp_path / "a" / "cfg.json"
    atomic_write_json(target, {"v": 1})
    assert json.loads(target.read_text()) == {"v": 1}

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with atomic_path(target) as tmp:
            tmp.write_text('{"v": 2, "trunc')
            raise Boom()
    assert json.loads(target.read_text()) == {"v": 1}  # the old file is intact
    assert [p.name for p in target.parent.iterdir()] == ["cfg.json"]  # no temp left behind


def test_atomic_dir_only_appears_when_complete(tmp_path):
    final = tmp_path / "ds"
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as tmp:
            (tmp / "part.bin").write_bytes(b"x")
            raise RuntimeError("killed")
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(final) as tmp:
        (tmp / "part.bin").write_bytes(b"y")
    assert (final / "part.bin").read_bytes() == b"y"
    with atomic_dir(final) as tmp:  # replacing keeps only the new content
        (tmp / "new.bin").write_bytes(b"z")
    assert sorted(p.name for p in final.iterdir()) == ["new.bin"]


def test_free_space_check(tmp_path):
    check_free_space(tmp_path, 1024)
    free = paths.free_bytes(tmp_path)
    with pytest.raises(InsufficientDiskSpace) as err:
        check_free_space(tmp_path / "not" / "yet", free * 4, what="the extraction")
    assert "the extraction" in str(err.value) and "Free some space" in str(err.value)
    assert human_bytes(1536) == "1.5 KB"


def test_store_migrates_and_uses_wal(tmp_path):
    store = Store(tmp_path / "m.db")
    assert store.schema_version() == latest_version() >= 1
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA busy_timeout").fetchone()[0] == Store.BUSY_TIMEOUT_MS
    assert {"jobs", "settings", "job_metrics"} <= set(store.db.table_names())
    store.close()
    again = Store(tmp_path / "m.db")  # re-opening applies nothing twice
    assert again.schema_version() == latest_version()
    assert again.integrity_ok()
    again.close()


def test_corrupt_database_gives_clear_error(tmp_path):
    bad = tmp_path / "m.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(UserError, match="cannot be read"):
        Store(bad)


def test_new_id_is_prefixed_and_unique():
    ids = {new_id("ds") for _ in range(1000)}
    assert len(ids) == 1000 and all(i.startswith("ds_") for i in ids)


def test_settings_round_trip_and_validation(tmp_path):
    store = Store(tmp_path / "m.db")
    repo = SettingsRepo(store)
    assert repo.load() == Settings()
    repo.save(Settings(default_device="cpu", max_concurrent_jobs=4, max_gpu_jobs=2))
    loaded = repo.load()
    assert (loaded.default_device, loaded.max_concurrent_jobs, loaded.max_gpu_jobs) == ("cpu", 4, 2)
    assert loaded.schema_version == Settings().schema_version
    with pytest.raises(UserError, match="default_device"):
        repo.save(Settings(default_device="tpu"))
    # a value written by a newer/broken version is ignored, not fatal
    store.db["settings"].upsert({"key": "max_concurrent_jobs", "value": "\"lots\""}, pk="key")
    assert repo.load().max_concurrent_jobs == Settings().max_concurrent_jobs
    store.close()


def test_secret_file_is_private_and_token_never_in_db(tmp_path, studio):
    secrets = SecretStore(tmp_path / "cfg", use_keyring=False)
    secrets.set("hf_token", "hf_abcdefghijklmnop")
    f = tmp_path / "cfg" / "hf_token.secret"
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    assert secrets.get("hf_token") == "hf_abcdefghijklmnop"
    secrets.set("hf_token", None)
    assert secrets.get("hf_token") is None and not f.exists()

    studio.set_hf_token("hf_secretvalue123")
    assert studio.hf_token == "hf_secretvalue123"
    studio.update_settings(max_concurrent_jobs=3)
    raw = studio.paths.db_file.read_bytes()
    for extra in ("-wal", "-shm"):
        p = studio.paths.db_file.with_name(studio.paths.db_file.name + extra)
        if p.exists():
            raw += p.read_bytes()
    assert b"hf_secretvalue123" not in raw
    with pytest.raises(UserError, match="Hugging Face token"):
        studio.set_hf_token("not-a-token")
