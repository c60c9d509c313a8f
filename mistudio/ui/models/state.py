"""What the Models tab shows and allows, without Qt: tests drive it, the tab renders it.

The model list (with each model's failed "save quantized copy", if any), the selected model
and the status the inspector drew it in, the copies being saved, which buttons the selected
model allows, and the message line under them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mistudio.paths import human_bytes

ENDED = ("completed", "failed", "cancelled", "interrupted")


def failure_line(failure: dict) -> str:
    return (f"Saving the {failure['quantization']} copy failed: {failure['error']} "
            "(the model itself is unchanged; Retry saves it again)")


def model_card_text(rec, failure: dict | None = None) -> str:
    """The card's text (and its accessible text): name, shape, status and files."""
    params = f"{rec.n_params / 1e6:.1f}M params" if rec.n_params else ""
    shape = f"{rec.n_layers} layers x {rec.d_model}" if rec.n_layers else ""
    size = human_bytes(rec.size_bytes) if rec.size_bytes else ""
    quant = ", ".join(rec.variants) if rec.variants else ""
    line2 = "  ·  ".join(x for x in (rec.family, shape, params) if x)
    line3 = "  ·  ".join(x for x in (rec.status, rec.dtype, size, quant and f"saved: {quant}",
                                     rec.source) if x)
    return f"{rec.name}\n{line2}\n{line3}" + (f"\n{failure_line(failure)}" if failure else "")


@dataclass
class ModelActions:
    resume: bool = False  # an interrupted Hub download
    release: bool = False  # unload from memory
    rename: bool = False
    delete: bool = False
    retry_label: str = ""  # "" hides Retry (no failed save)
    retry_tip: str = ""


@dataclass
class Message:
    text: str = ""
    error: bool = True


@dataclass
class ModelsState:
    records: list = field(default_factory=list)  # ModelRecord, as the list shows them
    failures: dict[str, dict] = field(default_factory=dict)  # model id -> its failed save
    selected_id: str | None = None
    shown: dict[str, str] = field(default_factory=dict)  # model id -> status the inspector drew
    saving: dict[str, str] = field(default_factory=dict)  # job id -> quantization being saved
    message: Message = field(default_factory=Message)

    # ------------------------------------------------------------------ list, selection

    def set_records(self, records: list, failures: dict[str, dict],
                    keep: str | None = None) -> str | None:
        """Take a fresh list; returns the model to select: ``keep`` (a model asked for
        before the list had it), else the selected one while it is listed, else the first,
        else None."""
        self.records = list(records)
        self.failures = dict(failures)
        for wanted in (keep, self.selected_id):
            if wanted and self.record(wanted) is not None:
                return wanted
        return self.records[0].id if self.records else None

    def record(self, model_id: str | None):
        return next((r for r in self.records if r.id == model_id), None)

    def select(self, model_id: str | None, shown_status: str | None = None) -> None:
        """``shown_status``: the status the inspector read when it drew the model (not a
        second read: a job ending in between must still make the view refresh)."""
        self.selected_id = model_id
        if model_id is not None and shown_status is not None:
            self.shown[model_id] = shown_status

    def status_changed(self, model_id: str) -> bool:
        """The model's listed status differs from what its view shows (e.g. became ready)."""
        rec = self.record(model_id)
        return rec is not None and rec.status != self.shown.get(model_id)

    def actions(self, rec) -> ModelActions:
        """What the buttons allow for the model ``rec`` (None: nothing)."""
        if rec is None:
            return ModelActions()
        failure = self.failures.get(rec.id)
        return ModelActions(
            resume=rec.source == "hub" and rec.status == "incomplete",
            release=rec.status == "ready", rename=True, delete=True,
            retry_label=f"Retry saving {failure['quantization']} copy" if failure else "",
            retry_tip=failure_line(failure) if failure else "")

    def retry_request(self) -> tuple | None:
        """(model id, quantization, dtype, device) of the selected model's failed save."""
        failure = self.failures.get(self.selected_id) if self.selected_id else None
        if failure is None:
            return None
        return (self.selected_id, failure["quantization"], failure["dtype"], failure["device"])

    # ------------------------------------------------------------------ messages, jobs

    def say(self, text: str, *, error: bool = True) -> None:
        self.message = Message(text, error)

    def clear_message(self) -> None:
        self.message = Message("", self.message.error)

    def saving_started(self, job_id: str, title: str, quantization: str) -> None:
        self.saving[job_id] = quantization
        self.say(f"Saving a {quantization} copy ({title})...", error=False)

    def on_job_status(self, job_id: str, status: str) -> bool:
        """A job's status changed; True when the message line changed (a copy being saved
        ended)."""
        quantization = self.saving.get(job_id)
        if not quantization or status not in ENDED:
            return False
        del self.saving[job_id]
        if status == "completed":
            self.say(f"Saved the {quantization} copy: Extract activations offers it as a "
                     "model precision.", error=False)
        elif status == "failed":
            self.say(f"Saving the {quantization} copy failed (see the model card; Retry "
                     "saving tries again).")
        else:
            self.clear_message()
        return True

    @staticmethod
    def reload_after(status: str | None) -> bool:
        """Whether a job reaching ``status`` changes what the list shows."""
        return status in ENDED + ("running",)
