#!/usr/bin/env python3
"""Check a built .deb without installing it (the arm64 package cannot be installed here).

For every Python the package has a lock for: each locked wheel is in the package, and its
tags install on that Python and architecture with the oldest glibc we target (2.35: Ubuntu
22.04 / JetPack 6), judged from the wheel file names alone (packaging.tags, as pip does).
Also: no torch or CUDA wheel is shipped, the launcher, menu entry and icon are there, and for
arm64 the Jetson pins hold (PySide6-Essentials 6.8.0.2, pyqtgraph 0.14.x, NumPy 1.x) and the
venv sees the system site packages; and no lock pairs wheels that clash at import time
without saying so in their metadata (pyarrow 26+ with NumPy 1.x).

    python3 packaging/check_contents.py dist/mistudio_0.1.0-1_arm64.deb
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from packaging.tags import Tag, cpython_tags, compatible_tags
from packaging.utils import parse_wheel_filename

MACHINES = {"amd64": "x86_64", "arm64": "aarch64"}
GLIBC_MINOR = 35
REQUIRED = ["usr/bin/mistudio", "usr/bin/mistudio-setup-torch",
            "usr/share/applications/mistudio.desktop",
            "usr/share/icons/hicolor/256x256/apps/mistudio.png",
            "opt/mistudio/lib/mistudio_setup/launch.py"]
JETSON_PINS = {"pyside6-essentials": lambda v: v == "6.8.0.2",
               "pyqtgraph": lambda v: v.startswith("0.14."),
               "numpy": lambda v: int(v.split(".")[0]) < 2}


def _major(version: str) -> int:
    return int(version.split(".")[0])


# Import-time needs a wheel does not declare in its metadata, so pip's resolver cannot see a
# clash: (project, what it needs, the check on the lock's versions).
UNDECLARED_NEEDS = [
    ("pyarrow", "pyarrow 26+ imports only with NumPy 2+",
     lambda v: not ("pyarrow" in v and "numpy" in v and _major(v["pyarrow"]) >= 26
                    and _major(v["numpy"]) < 2)),
]


def undeclared_clashes(versions: dict[str, str]) -> list[str]:
    """The clashes in one Python's lock ({project: version}) that pip cannot see."""
    return [f"{need}, the lock has pyarrow {versions.get('pyarrow')} and numpy "
            f"{versions.get('numpy')}" for _, need, holds in UNDECLARED_NEEDS if not holds(versions)]


def supported_tags(python: tuple[int, int], machine: str) -> set[Tag]:
    platforms = [f"manylinux_2_{m}_{machine}" for m in range(GLIBC_MINOR, 16, -1)]
    platforms += [f"manylinux2014_{machine}", f"linux_{machine}"]
    return set(cpython_tags(python, platforms=platforms)) | set(
        compatible_tags(python, f"cp{python[0]}{python[1]}", platforms))


def check(deb: Path) -> list[str]:
    problems = []
    arch = subprocess.run(["dpkg-deb", "-f", str(deb), "Architecture"], capture_output=True,
                          text=True, check=True).stdout.strip()
    machine = MACHINES[arch]
    with tempfile.TemporaryDirectory() as tmp:
        data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True,
                              check=True).stdout
        Path(tmp, "data.tar").write_bytes(data)
        with tarfile.open(Path(tmp, "data.tar")) as tar:
            members = {m.name.lstrip("./"): m for m in tar.getmembers()}
            names = set(members)
            locks = {Path(n).stem: tar.extractfile(m).read().decode().split()
                     for n, m in members.items()
                     if n.startswith("opt/mistudio/locks/") and n.endswith(".txt")}
        postinst = subprocess.run(["dpkg-deb", "-I", str(deb), "postinst"], capture_output=True,
                                  text=True, check=True).stdout
    problems += [f"missing {p}" for p in REQUIRED if p not in names]
    shipped = [n for n in names if n.startswith("opt/mistudio/wheels/") and n.endswith(".whl")]
    problems += [f"ships {n}" for n in shipped
                 if Path(n).name.split("-")[0].lower() in ("torch", "triton")
                 or (Path(n).name.startswith("nvidia_") and not Path(n).name.startswith("nvidia_ml_py"))]
    if not locks:
        problems.append("no locks")
    for tag, files in sorted(locks.items()):
        before = len(problems)
        python = (int(tag[2]), int(tag[3:]))
        ok = supported_tags(python, machine)
        versions = {}
        for f in files:
            name = f.lstrip("/")
            if name not in names:
                problems.append(f"{tag}: {Path(f).name} is locked but not in the package")
                continue
            project, version, _, tags = parse_wheel_filename(Path(f).name)
            versions[str(project)] = str(version)
            if not tags & ok:
                problems.append(f"{tag}: {Path(f).name} does not install on {machine}/Python "
                                f"{python[0]}.{python[1]} with glibc 2.{GLIBC_MINOR}")
        problems += [f"{tag}: {c}" for c in undeclared_clashes(versions)]
        if arch == "arm64":
            for project, good in JETSON_PINS.items():
                if project not in versions or not good(versions[project]):
                    problems.append(f"{tag}: Jetson pin broken: {project} {versions.get(project)}")
        print(f"{deb.name} {tag}: {len(files)} wheels, all present and for {machine}/Python "
              f"{python[0]}.{python[1]}" + ("" if len(problems) == before else " EXCEPT the problems below"))
    if arch == "arm64" and "--system-site-packages" not in postinst:
        problems.append("arm64 venv does not see the system site packages (JetPack torch)")
    return problems


def main() -> int:
    bad = 0
    for deb in map(Path, sys.argv[1:]):
        problems = check(deb)
        for p in problems:
            print(f"PROBLEM {deb.name}: {p}")
        bad += bool(problems)
    print("contents: OK" if not bad else "contents: PROBLEMS")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
