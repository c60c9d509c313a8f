"""CLI parity for the catalogue (`mistudio sae catalogue`) and training on the fly
(`mistudio train --model ... --hook ...`), through real subprocesses."""

from __future__ import annotations

import json

from tests.sae.test_catalogue import TINY_YAML
from tests.sae.test_onthefly import HOOK, tokenization  # noqa: F401 - the fixture
from tests.sae.test_service import _mistudio


def test_cli_catalogue_browse_file_and_refusals(tmp_path):
    data = tmp_path / "data"
    run = _mistudio("sae", "catalogue", "--model", "gpt2-small", "--loadable", "--json",
                    "--limit", "3", data_dir=data)
    assert run.returncode == 0, run.stderr
    rows = json.loads(run.stdout)
    assert len(rows) == 3 and all(r["hub_model"] == "openai-community/gpt2" and r["loadable"]
                                  for r in rows)
    f = tmp_path / "p.yaml"
    f.write_text(TINY_YAML)
    assert _mistudio("sae", "catalogue", "--use-file", str(f), data_dir=data).returncode == 0
    run = _mistudio("sae", "catalogue", "--limit", "0", data_dir=data)
    assert run.returncode == 0 and len(run.stdout.splitlines()) == 4
    assert "[cannot load: needs SAELens's 'gemma_3' conversion" in run.stdout
    run = _mistudio("sae", "catalogue", "--download", "acme-gemma3/layer_0_width_16k_l0_small",
                    data_dir=data)
    assert run.returncode == 2 and "cannot be loaded" in run.stderr
    run = _mistudio("sae", "catalogue", "--download", "nope/x", data_dir=data)
    assert run.returncode == 2 and "No release 'nope'" in run.stderr
    assert "Traceback" not in run.stderr


def test_cli_train_on_the_fly(tmp_path, tiny_gpt2_dir, tokenization):  # noqa: F811
    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio

    data = tmp_path / "data"
    s = Studio(data, secrets=MemorySecrets())
    m, job = s.models.add_local(str(tiny_gpt2_dir), name="tiny-gpt2")
    assert s.jobs.wait(job.id, 120).status == "completed"
    s.close()
    run = _mistudio("train", "--model", "tiny-gpt2", "--tokenization", str(tokenization),
                    "--hook", HOOK, "--set", "k=4", "--set", "d_sae=128", "--set",
                    "batch_size=128", "--set", "total_tokens=1280", "--set", "eval_tokens=0",
                    "--set", "normalization_tokens=500", "--quiet", data_dir=data)
    assert run.returncode == 0, run.stderr
    rows = json.loads(_mistudio("sae", "list", "--json", data_dir=data).stdout)
    assert rows[0]["hook_name"] == HOOK and rows[0]["d_in"] == 64
    run = _mistudio("train", "--model", "tiny-gpt2", "--quiet", data_dir=data)
    assert run.returncode == 2 and "hook point to read" in run.stderr
