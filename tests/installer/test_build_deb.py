"""The package builder's own logic: what is left out with torch, and the staged package."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.installer.wheel_index import make_wheel

BUILD = Path(__file__).resolve().parents[2] / "packaging" / "build_deb.py"


@pytest.fixture(scope="module")
def build_deb():
    spec = importlib.util.spec_from_file_location("build_deb", BUILD)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def item(name, version, requires=(), requested=False, extras=()):
    return {"metadata": {"name": name, "version": version, "requires_dist": list(requires)},
            "download_info": {"url": f"https://files.example/{name}-{version}-py3-none-any.whl"},
            "requested": requested, "requested_extras": list(extras)}


def test_torch_and_what_only_torch_needs_are_left_out(build_deb):
    report = {"install": [
        item("mistudio", "0.1.0", ["torch>=2.3", "huggingface_hub", "accelerate",
                                   "bitsandbytes; extra == 'quant'",
                                   "colorama; sys_platform == 'win32'"],
             requested=True, extras=["quant"]),
        item("torch", "2.14.1", ["filelock", "sympy>=1.13", "nvidia-cublas; platform_machine == 'x86_64'"]),
        item("sympy", "1.14.0", ["mpmath"]), item("mpmath", "1.3.0"),
        item("nvidia-cublas", "13.1"), item("filelock", "4.3.2"),
        item("huggingface_hub", "2.4.0", ["filelock"]),
        item("accelerate", "1.16.0", ["torch>=2.0", "numpy"]), item("numpy", "2.4.6"),
        item("bitsandbytes", "0.50.2", ["torch"]), item("colorama", "0.4.6"),
    ]}
    kept = {i["metadata"]["name"] for i in build_deb.without_torch(report, "x86_64", "3.11")}
    # filelock is needed by torch AND huggingface_hub: kept; sympy/mpmath/cublas only by torch
    assert kept == {"mistudio", "huggingface_hub", "filelock", "accelerate", "numpy", "bitsandbytes"}


@pytest.mark.skipif(not shutil.which("dpkg-deb"), reason="needs dpkg-deb")
def test_staged_package_has_launcher_menu_entry_icon_and_locks(build_deb, tmp_path):
    wheels = tmp_path / "w"
    wheels.mkdir()
    a = make_wheel(wheels, "alpha", "1.0", payload_bytes=10)
    b = make_wheel(wheels, "beta", "2.0", payload_bytes=10)
    root = tmp_path / "root"
    build_deb.stage(root, "arm64", "0.1.0-1", {a, b}, {"cp310": [a.name, b.name], "cp312": [a.name]})
    deb = tmp_path / "t.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb)],
                   check=True, capture_output=True)
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True).stdout
    for path in ("./usr/bin/mistudio", "./usr/bin/mistudio-setup-torch",
                 "./usr/share/applications/mistudio.desktop",
                 "./usr/share/icons/hicolor/256x256/apps/mistudio.png",
                 f"./opt/mistudio/wheels/{a.name}", "./opt/mistudio/locks/cp310.txt",
                 "./opt/mistudio/lib/mistudio_setup/launch.py"):
        assert path in listing, path
    assert "-rwxr-xr-x root/root" in next(ln for ln in listing.splitlines() if ln.endswith("usr/bin/mistudio"))
    lock = (root / "opt/mistudio/locks/cp310.txt").read_text().split()
    assert lock == [f"/opt/mistudio/wheels/{a.name}", f"/opt/mistudio/wheels/{b.name}"]
    fields = subprocess.run(["dpkg-deb", "-f", str(deb), "Architecture", "Depends"],
                            capture_output=True, text=True).stdout
    assert "Architecture: arm64" in fields and "python3-venv" in fields and "libxcb-cursor0" in fields
    # Jetson: the venv sees JetPack's torch through the system site packages
    assert "-m venv --system-site-packages" in (root / "DEBIAN/postinst").read_text()
    desktop = (root / "usr/share/applications/mistudio.desktop").read_text()
    assert "Exec=mistudio" in desktop and "Icon=mistudio" in desktop


def test_contents_check_judges_wheels_by_their_tags():
    import sys

    sys.path.insert(0, str(BUILD.parent))
    try:
        from check_contents import supported_tags
    finally:
        sys.path.remove(str(BUILD.parent))
    from packaging.utils import parse_wheel_filename

    jetson = supported_tags((3, 10), "aarch64")

    def fits(name):
        return bool(parse_wheel_filename(name)[3] & jetson)

    assert fits("PySide6_Essentials-6.8.0.2-cp39-abi3-manylinux_2_31_aarch64.whl")
    assert fits("numpy-1.26.4-cp310-cp310-manylinux_2_17_aarch64.manylinux2014_aarch64.whl")
    assert fits("pyqtgraph-0.14.0-py3-none-any.whl")
    # glibc 2.39 is newer than JetPack 6's 2.35; x86-64 and cp311 wheels are the wrong target
    assert not fits("PySide6_Essentials-6.9.0-cp39-abi3-manylinux_2_39_aarch64.whl")
    assert not fits("numpy-1.26.4-cp310-cp310-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
    assert not fits("numpy-2.4.6-cp311-cp311-manylinux_2_27_aarch64.manylinux_2_28_aarch64.whl")


def test_contents_check_finds_clashes_the_resolver_cannot_see(build_deb):
    """pyarrow 26 needs NumPy 2 at import but does not declare numpy: the first arm64 package
    paired it with the Jetson's NumPy 1.26 and the window stopped at start (seen under qemu)."""
    import sys

    sys.path.insert(0, str(BUILD.parent))
    try:
        from check_contents import undeclared_clashes
    finally:
        sys.path.remove(str(BUILD.parent))
    assert undeclared_clashes({"numpy": "1.26.4", "pyarrow": "26.0.1"})
    assert not undeclared_clashes({"numpy": "1.26.4", "pyarrow": "25.0.1"})
    assert not undeclared_clashes({"numpy": "2.4.6", "pyarrow": "26.0.1"})
    assert not undeclared_clashes({"numpy": "1.26.4"})
    assert "pyarrow<26" in build_deb.ARCHES["arm64"]["constraints"]
