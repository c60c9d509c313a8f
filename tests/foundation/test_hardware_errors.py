import errno
import logging
import sys

from mistudio import hardware
from mistudio.errors import UserError, describe_exception


def test_jetson_detection_from_device_tree(tmp_path):
    model = tmp_path / "model"
    model.write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    assert hardware.detect_jetson([str(model)], str(tmp_path / "none")) == (
        True, "NVIDIA Jetson AGX Orin Developer Kit")
    pc = tmp_path / "pc"
    pc.write_bytes(b"Some x86 board\x00")
    assert hardware.detect_jetson([str(pc)], str(tmp_path / "none")) == (False, None)
    rel = tmp_path / "nv_tegra_release"
    rel.write_text("# R36 (release), REVISION: 3.0")
    assert hardware.detect_jetson([str(tmp_path / "missing")], str(rel))[0] is True


def test_probe_matches_torch():
    import torch

    info = hardware.probe()
    assert info.cuda_available == torch.cuda.is_available()
    assert info.torch_version == torch.__version__
    assert info.best_device == ("cuda" if torch.cuda.is_available() else "cpu")
    if not info.cuda_available:
        assert info.fallback_reason  # says why work runs on the CPU
        assert info.device_label().startswith("CPU")
    assert hardware.resolve_device("cpu") == "cpu"
    assert hardware.resolve_dtype("auto", "cpu") == "float32"


def test_error_messages_are_short_and_actionable():
    assert "smaller batch" in describe_exception(RuntimeError("CUDA out of memory. Tried ..."))
    assert "disk is full" in describe_exception(OSError(errno.ENOSPC, "No space left on device"))
    assert describe_exception(UserError("Bad file.", hint="Pick another.")) == "Bad file. Pick another."
    long = describe_exception(ValueError("x" * 1000))
    assert long.startswith("ValueError: ") and len(long) < 320


def test_uncaught_exception_is_logged_and_shown(qtbot, caplog):
    from PySide6.QtWidgets import QApplication, QMessageBox

    from mistudio.ui import app as app_mod

    old = sys.excepthook
    app_mod.install_excepthook(QApplication.instance())
    try:
        with caplog.at_level(logging.ERROR, logger="mistudio"):
            try:
                raise KeyError("missing_column")
            except KeyError:
                sys.excepthook(*sys.exc_info())
        assert "missing_column" in caplog.text
        boxes = [w for w in QApplication.topLevelWidgets()
                 if isinstance(w, QMessageBox) and w.isVisible()]
        assert boxes and "missing_column" in boxes[-1].text()
        assert "Traceback" in boxes[-1].detailedText()
        for b in boxes:
            b.close()
    finally:
        sys.excepthook = old


def test_cpu_summary_names_the_model_and_its_instruction_sets():
    """Benchmarks print it: a speed figure is quoted with the CPU it came from."""
    from mistudio.hardware import cpu_summary

    intel = ("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
             "flags\t\t: fpu sse avx2 fma avx512f avx512bw avx512_bf16 avx512_fp16 amx_tile "
             "amx_bf16 amx_int8\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n")
    text = cpu_summary(intel)
    assert text.startswith("Intel(R) Xeon(R) Platinum 8480+ (")
    assert "avx512_bf16, avx512_fp16, amx_tile, amx_bf16, amx_int8)" in text
    assert "sse" not in text
    arm = "processor\t: 0\nFeatures\t: fp asimd sve\nCPU part\t: 0xd40\n"
    assert "asimd, sve" in cpu_summary(arm)
    assert "no AVX2/AVX-512/AMX/NEON" in cpu_summary("")
