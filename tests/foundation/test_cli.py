import json
import subprocess
import sys

from mistudio import __version__
from mistudio.cli import main


def test_version(capsys):
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert __version__ in capsys.readouterr().out


def test_python_dash_m_works(data_dir):
    out = subprocess.run([sys.executable, "-m", "mistudio", "--version"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and __version__ in out.stdout


def test_info_json(data_dir, capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["data_dir"] == str(data_dir.resolve())
    hw = info["hardware"]
    assert hw["cpu_count"] >= 1 and hw["ram_total_bytes"] > 0
    assert hw["best_device"] in ("cpu", "cuda")
    import torch

    assert hw["cuda_available"] == torch.cuda.is_available()


def test_jobs_list_show_cancel(data_dir, capsys):
    assert main(["jobs", "selftest", "--seconds", "0.1"]) == 0
    capsys.readouterr()
    assert main(["jobs", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1 and rows[0]["status"] == "completed"
    job_id = rows[0]["id"]
    assert main(["jobs", "show", job_id[:8]]) == 0  # unique prefix is enough
    out = capsys.readouterr().out
    assert job_id in out and "job completed" in out
    assert main(["jobs", "cancel", job_id]) == 1
    assert "already completed" in capsys.readouterr().out
    assert main(["jobs", "show", "job_nope"]) == 2
    assert "No job with id" in capsys.readouterr().err
