#!/usr/bin/env python3
"""Write FOLDER/simple/<project>/index.html (PEP 503) for the wheels in FOLDER/files.

check_deb.sh serves PyTorch to the clean roots this way: download.pytorch.org is not
reachable from the build machines, and a file:// index is what MISTUDIO_TORCH_INDEX accepts.
"""

import re
import sys
from pathlib import Path

folder = Path(sys.argv[1])
by_project: dict[str, list[str]] = {}
for wheel in sorted((folder / "files").glob("*.whl")):
    project = re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()
    by_project.setdefault(project, []).append(wheel.name)
for project, names in by_project.items():
    page = folder / "simple" / project / "index.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text("".join(f'<a href="../../files/{n}">{n}</a><br>\n' for n in names))
print(f"{len(by_project)} projects in {folder / 'simple'}")
