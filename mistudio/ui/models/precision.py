"""The model precision an extraction loads: dtype, and full precision, 8-/4-bit on the fly,
or a saved quantized copy; with the memory estimate of that choice.

Which quantizations are possible (and why not) comes from ``studio.models.quantization_options``
(the same reason text as the Architecture view), read off the GUI thread because it needs
torch to see the device; it is read again when the device or the settings change.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEvent, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from mistudio.errors import describe_exception
from mistudio.paths import human_bytes
from mistudio.ui.kit.background import BackgroundCalls
from mistudio.ui.kit.palette import verdict_colour
from mistudio.ui.kit.labels import hint_label
from mistudio.ui.kit.native_libraries import import_torch_quietly

LOAD_DTYPES = ("auto", "float32", "bfloat16", "float16")
_QUANT_LABELS = {"none": "none (full precision)", "8bit": "8bit (LLM.int8)",
                 "4bit": "4bit (NF4)"}


def precision_label(quantization: str = "none", variant: str = "", model_dtype: str = "") -> str:
    """'4bit (saved copy), float32' / '8bit, bfloat16' / 'float32' (for lists and cards)."""
    dtype = model_dtype
    parts = []
    if variant:
        parts.append(f"{variant} (saved copy)")
    elif quantization and quantization != "none":
        parts.append(quantization)
    if dtype and dtype != "auto":
        parts.append(dtype)
    return ", ".join(parts) or "full precision"


class PrecisionChooser(QWidget):
    """``values()`` -> {model_dtype, quantization, variant} for ``start_extraction``."""

    changed = Signal()
    ready = Signal(str)  # model id whose choices were read (tests wait on it)

    def __init__(self, studio, parent: QWidget | None = None):
        super().__init__(parent)
        self.studio = studio
        self.model_id: str | None = None
        self.device_choice = "auto"
        self.batch_tokens = 0
        self._summary: dict | None = None
        self._variants: dict = {}
        self._reasons: dict[str, str] = {}  # item index -> why it is disabled
        self._env: dict | None = None  # device, auto dtype, free memory (background read)
        self._seen_settings: tuple | None = None
        self._pending = False
        self.calls = BackgroundCalls(self, name="precision")  # the device reads
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.dtype = QComboBox()
        self.dtype.addItems(LOAD_DTYPES)
        self.dtype.setToolTip("The dtype the model computes in ('auto': the Settings default; "
                              "float32 on the CPU).")
        self.quant = QComboBox()
        self.quant.setToolTip("Full precision, 8-/4-bit quantized on the fly (bitsandbytes), "
                              "or a saved quantized copy (loads faster).")
        self.quant.setMinimumContentsLength(22)
        row.addWidget(self.dtype)
        row.addWidget(self.quant, 1)
        lay.addLayout(row)
        self.note = hint_label()
        lay.addWidget(self.note)
        self.memory = QLabel("")
        self.memory.setWordWrap(True)
        lay.addWidget(self.memory)
        self.dtype.currentIndexChanged.connect(lambda _i: self._update())
        self.quant.currentIndexChanged.connect(lambda _i: self._on_quant())
        self._fill_quant_items()

    # ------------------------------------------------------------------ state

    def set_model(self, model_id: str | None, summary: dict | None = None, *,
                  record=None) -> None:
        """Offer the choices for this model; ``record``: its row as the caller read it (its
        saved copies), else it is read here."""
        self.model_id = model_id
        self._summary = summary
        self._env = None
        rec = record
        if model_id and rec is None:
            try:
                rec = self.studio.models.get(model_id)
            except Exception:  # the tab shows why; the chooser stays empty
                rec = None
        self._variants = dict(rec.variants) if rec is not None else {}
        self._fill_quant_items()
        self.read()

    def expect(self, model_id: str) -> None:
        """The caller is reading this model (its row and summary) and will ``set_model`` it:
        until then the chooser says it is estimating, and is not ready."""
        self.model_id = model_id
        self._summary = None
        self._env = None
        self._pending = True
        self.memory.setText("Estimating memory...")

    def sync_variants(self, record=None) -> None:
        """Offer the model's saved copies as they are now (after a save finished);
        ``record``: the model's row as the caller read it."""
        if not self.model_id:
            return
        try:
            variants = dict((record or self.studio.models.get(self.model_id)).variants)
        except Exception:
            return
        if variants != self._variants:
            self.set_model(self.model_id, self._summary, record=record)

    def set_device(self, device: str) -> None:
        if device != self.device_choice:
            self.device_choice = device
            self.read()

    def set_batch_tokens(self, n: int) -> None:
        self.batch_tokens = max(0, int(n))
        self._update()

    def values(self) -> dict:
        quant, variant = self.quant.currentData() or ("none", "")
        return {"model_dtype": self.dtype.currentText(), "quantization": quant,
                "variant": variant}

    def choose(self, quantization: str, variant: str = "") -> bool:
        """Select a choice (False when it is not offered or not available)."""
        for i in range(self.quant.count()):
            if tuple(self.quant.itemData(i)) == (quantization, variant or ""):
                if not self.quant.model().item(i).isEnabled():
                    return False
                self.quant.setCurrentIndex(i)
                return True
        return False

    def reason(self, quantization: str, variant: str = "") -> str:
        for i in range(self.quant.count()):
            if tuple(self.quant.itemData(i)) == (quantization, variant or ""):
                return self._reasons.get(i, "")
        return "not offered"

    def is_ready(self) -> bool:
        return not self._pending

    def estimate(self) -> dict | None:
        """The memory estimate of the current choice (None while reading)."""
        if self._env is None or self._summary is None:
            return None
        from mistudio.models.inspect import estimate_memory

        v = self.values()
        dtype = v["model_dtype"]
        if v["variant"]:
            dtype = self._variants.get(v["variant"], {}).get("dtype") or dtype
        if dtype == "auto":
            dtype = self._env["auto_dtype"]
        est = estimate_memory(self._summary, dtype=dtype, quantization=v["quantization"],
                              device=self._env["device"], batch_tokens=self.batch_tokens,
                              available=self._env["available"])
        est["available_what"] = self._env["available_what"]
        est["already_loaded_bytes"] = self._env["loaded"]
        return est

    # ------------------------------------------------------------------ reading

    def _settings_key(self) -> tuple:
        s = self.studio.settings
        return (bool(s.allow_cpu_quantization), s.default_device, s.default_dtype)

    def read(self) -> None:
        """Read the choices again in the background (device, settings, free memory)."""
        self._seen_settings = self._settings_key()
        if not self.model_id:
            self._pending = False
            self.memory.setText("")
            return
        self._pending = True
        self.memory.setText("Estimating memory...")
        studio, device, model_id = self.studio, self.device_choice, self.model_id
        token = (model_id, device, self._seen_settings)

        def read():
            try:
                import_torch_quietly()  # the GUI thread stays live while torch loads
                from mistudio.hardware import resolve_device, resolve_dtype
                from mistudio.models.inspect import available_memory

                dev = resolve_device(device if device != "auto"
                                     else studio.settings.default_device)
                available, what = available_memory(dev)
                env = {"device": dev, "available": available, "available_what": what,
                       "auto_dtype": resolve_dtype(studio.settings.default_dtype, dev),
                       "loaded": studio.models.held_bytes(dev),
                       "options": studio.models.quantization_options(device)}
                return token, env
            except Exception as exc:  # shown under the choice, never raised into Qt
                return token, exc

        self.calls.call("env", read, self._deliver)  # a newer read makes this one stale

    def _deliver(self, result) -> None:
        token, env = result
        if token != (self.model_id, self.device_choice, self._seen_settings):
            return  # an older read: the model, device or settings changed since
        self._pending = False
        if isinstance(env, Exception):
            self._env = None
            self.memory.setText(f"Could not read the device: {describe_exception(env)}")
        else:
            self._env = env
            self._apply_options(env["options"])
            self._update()
        self.ready.emit(self.model_id or "")

    def shutdown(self) -> None:
        self.calls.close()

    def refresh_if_settings_changed(self) -> None:
        if self.model_id and self._seen_settings != self._settings_key():
            self.read()

    def event(self, e) -> bool:
        # back from File > Settings (or shown again): offer what the settings now allow
        if e.type() in (QEvent.Type.WindowActivate, QEvent.Type.Show):
            self.refresh_if_settings_changed()
        return super().event(e)

    # ------------------------------------------------------------------ items

    def _fill_quant_items(self) -> None:
        current = self.quant.currentData()
        self.quant.blockSignals(True)
        self.quant.clear()
        for q in ("none", "8bit", "4bit"):
            self.quant.addItem(_QUANT_LABELS[q], (q, ""))
        for q in sorted(self._variants):
            self.quant.addItem(f"{q} (saved copy)", (q, q))
        self._reasons = {}
        i = self.quant.findData(current) if current is not None else -1
        self.quant.setCurrentIndex(max(0, i))
        self.quant.blockSignals(False)
        self._sync_dtype()
        self._show_note()

    def _apply_options(self, options: dict) -> None:
        self._reasons = {}
        for i in range(self.quant.count()):
            q, variant = self.quant.itemData(i)
            why = options.get(q, "") if q != "none" else ""
            if variant and not why:
                folder = self._variants.get(variant, {}).get("folder", "")
                if not folder or not Path(folder).is_dir():
                    why = (f"The saved {variant} copy is gone ({folder}). Save it again in "
                           "the Architecture view, or quantize on the fly.")
            item = self.quant.model().item(i)
            item.setEnabled(not why)
            item.setToolTip(why or self._item_tip(q, variant))
            if why:
                self._reasons[i] = why
        if self.quant.currentIndex() in self._reasons:
            self.quant.setCurrentIndex(0)
        self._show_note()

    def _show_note(self) -> None:
        """Why choices are disabled (the reasons of 8bit and 4bit are the same sentence),
        else what a chosen saved copy is; hidden when there is nothing to say."""
        text = " ".join(dict.fromkeys(self._reasons.values()))
        q, variant = self.quant.currentData() or ("none", "")
        if not text and variant:
            text = self._item_tip(q, variant)
        self.note.setText(text)
        self.note.setVisible(bool(text))

    def _item_tip(self, q: str, variant: str) -> str:
        if variant:
            v = self._variants.get(variant, {})
            return (f"Loads the {variant} copy saved in {v.get('folder', '?')} "
                    f"({human_bytes(v.get('bytes') or 0)}, {v.get('dtype') or '?'}): faster "
                    "than quantizing on the fly.")
        return {"none": "The model's weights as they are, in the chosen dtype.",
                "8bit": "Quantize the Linear layers to 8 bits (bitsandbytes) while loading.",
                "4bit": "Quantize the Linear layers to 4-bit NF4 (bitsandbytes) while "
                        "loading."}[q]

    def _on_quant(self) -> None:
        self._sync_dtype()
        self._show_note()
        self._update()

    def _sync_dtype(self) -> None:
        """A saved copy computes in the dtype it was saved with."""
        _q, variant = self.quant.currentData() or ("none", "")
        if variant:
            saved = self._variants.get(variant, {}).get("dtype") or "auto"
            self.dtype.blockSignals(True)
            self.dtype.setCurrentText(saved if saved in LOAD_DTYPES else "auto")
            self.dtype.blockSignals(False)
            self.dtype.setEnabled(False)
            self.dtype.setToolTip(f"A saved copy loads in the dtype it was saved with "
                                  f"({saved}).")
        else:
            self.dtype.setEnabled(True)
            self.dtype.setToolTip("The dtype the model computes in ('auto': the Settings "
                                  "default; float32 on the CPU).")

    def _update(self) -> None:
        est = self.estimate()
        if est is not None:
            colour = verdict_colour(est["verdict"])
            acts = (f" + activations {human_bytes(est['activations'])}"
                    if est["activations"] else "")
            self.memory.setText(
                f"Model {human_bytes(est['weights'])}{acts} + overhead "
                f"{human_bytes(est['overhead'])} = <b>{human_bytes(est['total'])}</b> "
                f"({est['dtype']}, {est['quantization']}) on {est['device']}; "
                f"{human_bytes(est['available'])} {est['available_what']}: "
                f"<b style='color:{colour}'>{est['verdict']}</b>"
                + (f"<br>Models this app holds in memory now: "
                   f"{human_bytes(est['already_loaded_bytes'])} (Release memory frees them)"
                   if est.get("already_loaded_bytes") else ""))
        self.changed.emit()
