"""The layering of docs/architecture.md, checked by a machine.

`lint-imports` reads the contracts in pyproject.toml ([tool.importlinter]); these tests run it in
the normal suite, prove it would catch a wrong import, and grep the UI and the CLI for the store.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

# The UI and the CLI call services; reaching the store (or raw SQL) from them bypasses the
# application layer.
STORE_REACH = re.compile(r"studio\.store|studio\.queue\b|\.db\.execute|jobs_repo|from mistudio\.store|"
                         r"import mistudio\.store|"
                         # a service's repository, reached past the service
                         r"\.(repo|repos|\w+_repo)\.(get|list|find\w*|insert|update|delete|table)\b")


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    if not LINT_IMPORTS.exists():
        pytest.fail("lint-imports is missing: install the dev extras (pip install -e '.[dev]')")
    # PYTHONPATH first, so a copied tree is the `mistudio` that grimp reads
    env = {"PATH": str(LINT_IMPORTS.parent), "PYTHONPATH": str(cwd), "HOME": str(cwd)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=110)


def _copy_tree(dest: Path) -> Path:
    shutil.copytree(ROOT / "mistudio", dest / "mistudio",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def test_import_contracts_hold():
    out = _lint_imports(ROOT)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


@pytest.mark.parametrize("module, line, contract", [
    # the store knows no domain
    ("store/_probe_wrong.py", "import mistudio.sae.config\n", "Layers"),
    # the core never imports Qt
    ("data/_probe_wrong.py", "import PySide6.QtCore\n", "never imports Qt"),
    # the UI calls services, never the store
    ("ui/_probe_wrong.py", "from mistudio.store.db import Store\n", "never reach the store"),
])
def test_a_wrong_import_breaks_a_contract(tmp_path, module, line, contract):
    tree = _copy_tree(tmp_path)
    (tree / "mistudio" / module).write_text(line, encoding="utf-8")
    out = _lint_imports(tree)
    assert out.returncode != 0, out.stdout[-3000:]
    broken = [l for l in out.stdout.splitlines() if "BROKEN" in l]
    assert any(contract in l for l in broken), out.stdout[-3000:]
    assert f"mistudio.{module[:-3].replace('/', '.')}" in out.stdout


def test_ui_and_cli_never_reach_the_store():
    hits = []
    for folder in ("ui", "cli"):
        for path in sorted((ROOT / "mistudio" / folder).rglob("*.py")):
            for no, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if STORE_REACH.search(text):
                    hits.append(f"{path.relative_to(ROOT).as_posix()}:{no}: {text.strip()}")
    assert not hits, "UI/CLI reach the store:\n" + "\n".join(hits)


RAW_JOBS = re.compile(r"\bJobQueue\b|\bJobsRepo\b|jobs_repo|\bqueue\s*[=:,)]")


def test_services_reach_jobs_only_through_the_job_service():
    """The queue and the jobs table sit behind ``app/jobs.py``'s JobService: every other
    service is given the JobService (submit, listen, find), never the raw queue or table."""
    hits = []
    for path in sorted((ROOT / "mistudio" / "app").glob("*.py")):
        if path.name == "jobs.py":
            continue
        for no, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = text.split("#", 1)[0]
            if RAW_JOBS.search(code):
                hits.append(f"{path.relative_to(ROOT).as_posix()}:{no}: {text.strip()}")
    assert not hits, "services holding the raw queue / jobs table:\n" + "\n".join(hits)


def test_the_studio_keeps_the_queue_behind_the_job_service(studio):
    assert studio.features.jobs is studio.jobs and studio.storage.jobs is studio.jobs
    assert studio.feature_maps.jobs is studio.jobs and studio.autointerp.jobs is studio.jobs
    # the queue and the jobs table are reached through studio.jobs only
    assert not hasattr(studio, "queue") and not hasattr(studio, "jobs_repo")


def test_each_area_registers_its_own_job_kinds_and_each_resolves(studio):
    from mistudio.jobs.registry import job_kinds

    kinds = job_kinds()
    for area, prefix in (("data", "datasets."), ("models", "models."),
                         ("activations", "activations."), ("sae", "sae.")):
        own = [k for k in kinds.values() if k.name.startswith(prefix)]
        assert own, f"no {prefix}* kinds registered"
        assert all(k.target.startswith(f"mistudio.{area}.") for k in own), own
    for kind in kinds.values():
        assert callable(kind.load()), kind
    # the lowest layer names no area's function
    registry = (ROOT / "mistudio" / "jobs" / "registry.py").read_text(encoding="utf-8")
    assert not re.search(r'"mistudio\.(data|models|activations|sae)\.', registry)


def test_no_module_is_over_600_lines():
    """The size guideline of #11 (a module a maintainer can hold in mind), kept by a machine."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "mistudio"
    long = {str(p.relative_to(root)): n for p in root.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 600}
    assert not long, f"over 600 lines: {long}: split by responsibility"
