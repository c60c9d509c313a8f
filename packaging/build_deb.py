#!/usr/bin/env python3
"""Build mistudio_<version>_amd64.deb and mistudio_<version>_arm64.deb (see packaging/README.md).

What goes in a package:
- /opt/mistudio/wheels: the app's wheel and every dependency's wheel, for each Python the
  package supports, except PyTorch (several GB in CUDA variants; installed at first launch,
  see mistudio_setup/torch_layer.py, or on a Jetson provided by JetPack);
- /opt/mistudio/locks/cp3XX.txt: the exact wheel files for that Python, resolved here once by
  pip (so the install is the same on every machine and needs no network);
- /opt/mistudio/lib/mistudio_setup: launcher, torch choice, first-run window;
- /usr/bin/mistudio, /usr/bin/mistudio-setup-torch, the .desktop entry and the icon;
- DEBIAN/postinst builds /opt/mistudio/venv with the machine's python3 from the locks.

Usage: python3 packaging/build_deb.py [--arch amd64 arm64] [--out DIR] [--revision N]
Downloads are cached under --cache (default /work/pkgcache or ~/.cache/mistudio-deb).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# Pythons each package carries wheels for: Ubuntu 22.04 / JetPack 6 (3.10), Debian 12 (3.11),
# Ubuntu 24.04 / JetPack 7 (3.12), Debian 13 (3.13).
ARCHES = {
    "amd64": {"machine": "x86_64", "pythons": ["3.10", "3.11", "3.12", "3.13"],
              "constraints": [], "venv_flags": ""},
    # Jetson: the venv sees JetPack's torch (system site packages). NVIDIA builds that torch
    # against NumPy 1.x, and PySide6-Essentials 6.8.0.2 is the newest with a wheel for JetPack
    # 6's glibc 2.35 (later aarch64 wheels need 2.39). pyarrow 26 needs NumPy 2 at import
    # time but does not declare numpy in its metadata, so the resolver cannot see the clash:
    # the first arm64 package shipped pyarrow 26 beside numpy 1.26 and the window stopped with
    # "pyarrow requires NumPy 2.0 or newer" (seen under qemu by check_deb.sh).
    "arm64": {"machine": "aarch64", "pythons": ["3.10", "3.11", "3.12"],
              "constraints": ["PySide6-Essentials==6.8.0.2", "numpy<2", "pyarrow<26",
                              "pyqtgraph>=0.14,<0.15"],
              "venv_flags": "--system-site-packages"},
}
# glibc of the oldest target (Ubuntu 22.04: 2.35): wheels for newer glibc would not load there
MAX_GLIBC_MINOR = 35
EXTRA_REQUIREMENTS = ["pip>=24.1"]  # the venv's pip shows raw progress for the torch install

# Debian packages the Qt wheels' libraries and plugins load (X11 + Wayland platforms, GL,
# fonts, input), and the Python to build the venv with. Alternatives cover the 64-bit time_t
# renames of Debian 13 / Ubuntu 24.04. packaging/check_deb.sh runs ldd on every plugin.
DEPENDS = [
    "python3 (>= 3.10)", "python3 (<< 3.14)", "python3-venv",
    "libegl1", "libgl1", "libopengl0", "libfontconfig1", "libfreetype6", "libx11-6",
    "libx11-xcb1", "libxcb1", "libxcb-cursor0", "libxcb-glx0", "libxcb-icccm4", "libxcb-image0",
    "libxcb-keysyms1", "libxcb-randr0", "libxcb-render-util0", "libxcb-render0", "libxcb-shape0",
    "libxcb-shm0", "libxcb-sync1", "libxcb-xfixes0", "libxcb-xinerama0", "libxcb-xinput0",
    "libxcb-xkb1", "libxkbcommon0", "libxkbcommon-x11-0", "libxrender1", "libxext6",
    "libdbus-1-3", "libglib2.0-0t64 | libglib2.0-0", "libwayland-client0", "libwayland-cursor0",
    "libwayland-egl1", "libsm6", "libice6", "libgssapi-krb5-2", "libcups2t64 | libcups2",
    "libdrm2", "libgbm1", "libgtk-3-0t64 | libgtk-3-0",
]
RECOMMENDS = ["fonts-dejavu-core", "xdg-utils"]


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kw)


def platform_flags(machine: str) -> list[str]:
    tags = [f"manylinux_2_{v}_{machine}" for v in range(MAX_GLIBC_MINOR, 16, -1)]
    tags += [f"manylinux2014_{machine}", f"linux_{machine}", "any"]
    return [x for t in tags for x in ("--platform", t)]


def target_flags(machine: str, python: str) -> list[str]:
    tag = "cp" + python.replace(".", "")
    return ["--only-binary=:all:", "--python-version", python, "--implementation", "cp",
            "--abi", tag, "--abi", "abi3", "--abi", "none", *platform_flags(machine)]


def build_app_wheel(cache: Path) -> Path:
    out = cache / "app"
    shutil.rmtree(out, ignore_errors=True)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(REPO)])
    (wheel,) = out.glob("mistudio-*.whl")
    return wheel


def requirements_of(wheel: Path) -> list[str]:
    """The wheel's Requires-Dist: all a resolution depends on (a rebuilt wheel differs in
    timestamps, not in what it needs)."""
    import zipfile

    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return [ln for ln in zf.read(meta).decode().splitlines() if ln.startswith("Requires-Dist:")]


def resolve(wheel: Path, arch: str, python: str, cache: Path) -> dict:
    """pip's resolution of the app (with its [quant] extra) for one target, cached."""
    spec = ARCHES[arch]
    key = hashlib.sha256(json.dumps([requirements_of(wheel), arch, python, spec["constraints"],
                                     EXTRA_REQUIREMENTS]).encode()).hexdigest()
    report = cache / "resolve" / f"{arch}-{python}-{key[:16]}.json"
    if report.exists():
        return json.loads(report.read_text())
    report.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cons = Path(tmp) / "constraints.txt"
        cons.write_text("\n".join(spec["constraints"]) + "\n")
        run([sys.executable, "-m", "pip", "install", "-q", "--dry-run", "--ignore-installed",
             "--target", f"{tmp}/t", *target_flags(spec["machine"], python), "-c", str(cons),
             "--report", f"{tmp}/r.json", f"{wheel}[quant]", *EXTRA_REQUIREMENTS],
            stderr=subprocess.DEVNULL)
        shutil.copy(f"{tmp}/r.json", report)
    return json.loads(report.read_text())


def without_torch(report: dict, machine: str, python: str) -> list[dict]:
    """The resolved packages reachable from the app without passing through torch: torch and
    what only torch needs (triton, the nvidia-* CUDA libraries, sympy...) are left out."""
    items = {canonicalize_name(i["metadata"]["name"]): i for i in report["install"]}
    env = {"python_version": python, "python_full_version": python + ".0",
           "platform_machine": machine, "sys_platform": "linux", "platform_system": "Linux",
           "os_name": "posix", "implementation_name": "cpython",
           "platform_python_implementation": "CPython"}
    keep: dict[str, set[str]] = {}
    todo = [(canonicalize_name(i["metadata"]["name"]), set(i.get("requested_extras") or []))
            for i in report["install"] if i.get("requested")]
    while todo:
        name, extras = todo.pop()
        if name == "torch" or name not in items:
            continue
        if name in keep and extras <= keep[name]:
            continue
        keep.setdefault(name, set()).update(extras)
        for text in items[name]["metadata"].get("requires_dist") or []:
            req = Requirement(text)
            if req.marker and not any(req.marker.evaluate({**env, "extra": e})
                                      for e in (keep[name] | {""})):
                continue
            todo.append((canonicalize_name(req.name), set(req.extras)))
    return [items[n] for n in sorted(keep)]


def file_name(item: dict) -> str:
    return item["download_info"]["url"].rsplit("/", 1)[-1]


def download(items: list[dict], arch: str, python: str, dest: Path) -> None:
    missing = [i for i in items if not (dest / file_name(i)).exists()
               and not i["download_info"]["url"].startswith("file:")]
    for i in items:  # the report points at the app wheel and at local mirrors as files
        url = i["download_info"]["url"]
        if url.startswith("file:") and not (dest / file_name(i)).exists():
            shutil.copy(url[len("file://"):], dest / file_name(i))
    if missing:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as req:
            for i in missing:
                sha = i["download_info"].get("archive_info", {}).get("hashes", {}).get("sha256")
                req.write(f"{i['metadata']['name']}=={i['metadata']['version']}"
                          + (f" --hash=sha256:{sha}" if sha else "") + "\n")
        try:
            run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(dest),
                 *target_flags(ARCHES[arch]["machine"], python), "-r", req.name],
                stderr=subprocess.DEVNULL)
        finally:
            os.unlink(req.name)
    absent = [file_name(i) for i in items if not (dest / file_name(i)).exists()]
    if absent:
        raise SystemExit(f"not downloaded for {arch}/{python}: {absent}")


def control(version: str, arch: str, installed_kib: int) -> str:
    pythons = ", ".join(ARCHES[arch]["pythons"])
    return f"""Package: mistudio
Version: {version}
Architecture: {arch}
Maintainer: MechInterp Studio developers <mistudio@noreply.invalid>
Installed-Size: {installed_kib}
Depends: {", ".join(DEPENDS)}
Recommends: {", ".join(RECOMMENDS)}
Section: science
Priority: optional
Description: MechInterp Studio: sparse-autoencoder interpretability on your machine
 A desktop application for mechanistic interpretability with sparse
 autoencoders: import datasets and language models, extract activations,
 train SAEs, inspect their features. Runs offline once assets are local.
 .
 The application is installed into /opt/mistudio/venv with this machine's
 python3 ({pythons}) from the wheels in the package. PyTorch is installed at
 the first start for the machine's GPU (CUDA matched to the NVIDIA driver, or
 the CPU build); on an NVIDIA Jetson the app uses JetPack's PyTorch.
"""


def stage(root: Path, arch: str, version: str, wheels: set[Path], locks: dict[str, list[str]]) -> None:
    opt = root / "opt/mistudio"
    (opt / "wheels").mkdir(parents=True)
    (opt / "locks").mkdir()
    names = [w.name for w in wheels]
    if len(set(names)) != len(names):
        raise SystemExit(f"two wheels with one name: {sorted(n for n in names if names.count(n) > 1)}")
    for w in sorted(wheels):  # hard links: the staging folder sits beside the wheel cache
        try:
            os.link(w, opt / "wheels" / w.name)
        except OSError:  # another file system: copy (never into an existing link)
            shutil.copy(w, opt / "wheels" / w.name)
    for tag, files in locks.items():
        (opt / "locks" / f"{tag}.txt").write_text(
            "".join(f"/opt/mistudio/wheels/{f}\n" for f in sorted(files)))
    shutil.copytree(HERE / "mistudio_setup", opt / "lib/mistudio_setup",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    bindir = root / "usr/bin"
    bindir.mkdir(parents=True)
    for script in ("mistudio", "mistudio-setup-torch"):
        shutil.copy(HERE / "deb" / script, bindir / script)
        (bindir / script).chmod(0o755)
    share = root / "usr/share"
    (share / "applications").mkdir(parents=True)
    shutil.copy(REPO / "resources/mistudio.desktop", share / "applications/mistudio.desktop")
    icon = share / "icons/hicolor/256x256/apps"
    icon.mkdir(parents=True)
    shutil.copy(REPO / "mistudio/resources/mistudio.png", icon / "mistudio.png")
    doc = share / "doc/mistudio"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(
        "MechInterp Studio\nLicense: Apache-2.0 (see /usr/share/common-licenses/Apache-2.0)\n\n"
        "/opt/mistudio/wheels holds third-party Python wheels under their own licences, listed "
        "in each wheel's METADATA.\n")
    debian = root / "DEBIAN"
    debian.mkdir()
    for script in ("postinst", "prerm", "postrm"):
        text = (HERE / "deb" / script).read_text().replace("@VENV_FLAGS@", ARCHES[arch]["venv_flags"])
        (debian / script).write_text(text)
        (debian / script).chmod(0o755)
    size_kib = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) // 1024
    (debian / "control").write_text(control(version, arch, size_kib))
    for d in [root, *root.rglob("*")]:  # dpkg-deb wants 0755 dirs whatever the umask
        if d.is_dir():
            d.chmod(0o755)


def build(arch: str, wheel: Path, cache: Path, out: Path, revision: str, deb_version: str | None) -> Path:
    spec = ARCHES[arch]
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(spec["pythons"])) as pool:
        reports = dict(zip(spec["pythons"], pool.map(
            lambda py: resolve(wheel, arch, py, cache), spec["pythons"])))
    dest = cache / "wheels" / arch
    dest.mkdir(parents=True, exist_ok=True)
    locks, files = {}, set()
    for py, report in reports.items():
        items = without_torch(report, spec["machine"], py)
        # the app wheel is the one just built (cache/app), never a copy in the wheel cache
        deps = [i for i in items if canonicalize_name(i["metadata"]["name"]) != "mistudio"]
        download(deps, arch, py, dest)
        locks["cp" + py.replace(".", "")] = [wheel.name] + [file_name(i) for i in deps]
        files |= {dest / file_name(i) for i in deps}
    files.add(wheel)
    stale = dest / wheel.name
    if stale.exists():  # an older build's app wheel would shadow this one in the package
        stale.unlink()
    version = deb_version or f"{wheel.name.split('-')[1]}-{revision}"
    out.mkdir(parents=True, exist_ok=True)
    deb = out / f"mistudio_{version}_{arch}.deb"
    (cache / "stage").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache / "stage") as tmp:
        root = Path(tmp) / "root"
        stage(root, arch, version, files, locks)
        run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-z6", "--build", str(root), str(deb)],
            stdout=subprocess.DEVNULL)
    print(f"{deb.name}: {deb.stat().st_size / 2**20:.1f} MiB, {len(files)} wheels for "
          f"{', '.join(locks)} ({time.monotonic() - t0:.0f} s)")
    return deb


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", nargs="+", choices=sorted(ARCHES), default=sorted(ARCHES))
    ap.add_argument("--out", type=Path, default=REPO / "dist")
    default_cache = Path("/work/pkgcache") if Path("/work/pkgcache").is_dir() else \
        Path.home() / ".cache/mistudio-deb"
    ap.add_argument("--cache", type=Path, default=default_cache)
    ap.add_argument("--revision", default="1", help="Debian revision (the -N of the version)")
    ap.add_argument("--deb-version", help="the whole package version (default: app version-revision)")
    args = ap.parse_args()
    if not shutil.which("dpkg-deb"):
        raise SystemExit("dpkg-deb is needed (apt-get install dpkg)")
    wheel = build_app_wheel(args.cache)
    for arch in args.arch:
        build(arch, wheel, args.cache, args.out, args.revision, args.deb_version)
    return 0


if __name__ == "__main__":
    sys.exit(main())
