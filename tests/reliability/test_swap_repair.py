"""A folder swap killed midway (``atomic_dir`` replacing a folder: the old one moved aside,
the process killed before the new one moved in) is put back by whichever READER comes first,
not only by the next writer: the window's dataset browser, an SAE load, a checkpoint list, a
model's files. And the repair is safe while another process swaps the same folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import torch

from mistudio import paths
from mistudio.secrets_test_support import MemorySecrets
from mistudio.studio import Studio
from tests.reliability.kill_harness import REPO, child_env, run_child

SWAP = "atomic.dir.swap"


def _set_aside(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir() if p.name.endswith(".old"))


def _killed_python(code: str, tmp_path: Path) -> None:
    """Run ``code`` in a child Python that SIGKILLs itself at the swap crash point."""
    proc = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), capture_output=True,
                          text=True, timeout=120, env=child_env(tmp_path / "unused", SWAP))
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]


def test_the_open_window_reads_a_tokenization_whose_re_tokenization_was_killed(
        data_dir, tiny_gpt2_dir, tmp_path):
    from tests.e2e.conftest import prepare_assets

    window = Studio(data_dir, secrets=MemorySecrets())  # open before the CLI job runs
    try:
        assets = prepare_assets(window, tiny_gpt2_dir, tmp_path,
                                wait=lambda job_id: window.jobs.wait(job_id, 120))
        tok = window.datasets.get_tokenization(assets.tokenization_id)
        before = np.array(window.datasets.open_tokenization(tok.id).tokens)
        rc, _s, err = run_child(["datasets", "tokenize", assets.dataset_id, "--tokenizer",
                                 assets.model_id, "--seq-len", "64", "--force"], data_dir,
                                crash_at=SWAP)
        assert rc == -signal.SIGKILL, err[-2000:]
        folder = Path(tok.path)
        assert not folder.exists() and len(_set_aside(folder)) == 1  # the state a kill leaves
        # READS only: the dataset browser opens it, as it was, with no leftover beside it
        browsed = window.datasets.open_tokenization(tok.id)
        np.testing.assert_array_equal(np.array(browsed.tokens), before)
        assert browsed.folder == folder and _set_aside(folder) == []
    finally:
        window.close(timeout=30)


def test_an_sae_and_a_checkpoint_killed_mid_swap_still_load(tmp_path):
    from mistudio.sae import checkpoints
    from mistudio.sae.formats import load_sae, save_saelens
    from tests.steering.test_service import make_sae

    sae_folder = tmp_path / "sae"
    save_saelens(sae_folder, make_sae("topk"), hook_name="blocks.1.hook_resid_post")
    weights = (sae_folder / "sae_weights.safetensors").read_bytes()
    training = tmp_path / "training"
    checkpoints.save_checkpoint(training, {"w": torch.arange(6.0)}, step=10, tokens=640)
    step = checkpoints.list_checkpoints(training)[0]
    # re-saved by another process (an export again, a resumed training's same step), killed
    # between its two renames
    _killed_python(
        "from mistudio.sae.formats import load_sae, save_saelens\n"
        "import torch\n"
        f"sae, _ = load_sae({str(sae_folder)!r})\n"
        f"save_saelens({str(sae_folder)!r}, sae, hook_name='blocks.1.hook_resid_post')\n",
        tmp_path)
    _killed_python(
        "import torch\nfrom mistudio.sae import checkpoints\n"
        f"checkpoints.save_checkpoint({str(training)!r}, {{'w': torch.zeros(6)}}, step=10, "
        "tokens=640)\n", tmp_path)
    assert not sae_folder.exists() and not Path(step.path).exists()
    # READS only
    sae, info = load_sae(sae_folder)
    assert info["hook_name"] == "blocks.1.hook_resid_post"
    assert (sae_folder / "sae_weights.safetensors").read_bytes() == weights
    listed = checkpoints.list_checkpoints(training)
    assert [(c.step, c.path) for c in listed] == [(10, step.path)]
    assert torch.equal(checkpoints.load_checkpoint(step.path)["w"], torch.arange(6.0))
    assert _set_aside(sae_folder) == [] and _set_aside(Path(step.path)) == []


WRITER = """
import sys
from pathlib import Path
from mistudio import paths

def pause_at_the_swap(name):
    if name == "atomic.dir.swap":  # the old folder aside, the new one not yet in place
        print("paused", flush=True)
        sys.stdin.readline()

paths.crash_point = pause_at_the_swap
with paths.atomic_dir(Path(sys.argv[1])) as tmp:
    (tmp / "data").write_text("new")
print("swapped", flush=True)
"""


def test_a_reader_never_undoes_a_live_writers_swap(tmp_path):
    """The window reads while a CLI job is between its two renames of the same folder: the
    reader waits for the swap (the folder lock) instead of putting the old folder back,
    which made the writer's second rename fail."""
    target = tmp_path / "tok"
    target.mkdir()
    (target / "data").write_text("old")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], cwd=str(REPO),
                              env=child_env(tmp_path / "unused"), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "paused", writer.stderr.read()
        assert not target.exists() and len(_set_aside(target)) == 1
        reader = threading.Thread(target=paths.settled_dir, args=(target,))
        reader.start()
        reader.join(2.0)  # unlocked, the reader would have put the old folder back by now
        writer.stdin.write("go\n")
        writer.stdin.flush()
        out, err = writer.communicate(timeout=60)
    finally:
        if writer.poll() is None:
            writer.kill()
    reader.join(30)
    assert writer.returncode == 0 and out.strip() == "swapped", err[-2000:]
    assert (target / "data").read_text() == "new" and _set_aside(target) == []
    assert sorted(os.listdir(tmp_path)) == ["tok"]
