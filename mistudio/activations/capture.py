"""Capture hook-point activations from a forward pass, stopping as soon as all are captured.

``ActivationCapture`` registers one PyTorch hook per target; the hook that completes the set
raises :class:`StopForward`, so the layers after the deepest requested one never run (and
neither do the final norm and the unembedding, often the largest matmul). Captured tensors
are the model's own outputs, not copies.
"""

from __future__ import annotations

from mistudio.models.hooks import HookTarget, first_tensor, get_module, input_tensor


class StopForward(Exception):
    """Raised from a hook to end the forward pass once every target was captured."""


class ActivationCapture:
    """Context manager: ``with ActivationCapture(model, targets) as cap: acts = cap.run(ids)``."""

    def __init__(self, model, targets: list[HookTarget], *, stop_early: bool = True):
        if not targets:
            raise ValueError("no hook targets")
        self.model = model
        self.targets = list(targets)
        self.stop_early = stop_early
        self._handles = []
        self._captured: dict[str, object] = {}
        self._modules = [get_module(model, t.module_path) for t in self.targets]

    def __enter__(self) -> "ActivationCapture":
        for target, module in zip(self.targets, self._modules):
            if target.io == "output":
                self._handles.append(module.register_forward_hook(self._output_hook(target)))
            else:
                self._handles.append(module.register_forward_pre_hook(
                    self._input_hook(target), with_kwargs=True))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _store(self, name: str, tensor) -> None:
        self._captured[name] = tensor
        if self.stop_early and len(self._captured) == len(self.targets):
            raise StopForward()

    def _output_hook(self, target: HookTarget):
        def hook(_module, _args, output):
            self._store(target.name, first_tensor(output))

        return hook

    def _input_hook(self, target: HookTarget):
        def hook(_module, args, kwargs):
            self._store(target.name, input_tensor(args, kwargs))

        return hook

    def run(self, input_ids, attention_mask=None) -> dict:
        """One forward pass; returns {hook name: tensor [batch, seq, d]} (the model's own tensors)."""
        import torch

        self._captured = {}
        kwargs = {"use_cache": False}
        if attention_mask is not None:
            kwargs["attention_mask"] = attention_mask
        with torch.inference_mode():
            try:
                self.model(input_ids=input_ids, **kwargs)
            except StopForward:
                pass
        missing = [t.name for t in self.targets if t.name not in self._captured]
        if missing:
            raise RuntimeError(f"hook points never ran during the forward pass: {missing}")
        out, self._captured = self._captured, {}
        return out


def capture_once(model, targets: list[HookTarget], input_ids, attention_mask=None,
                 stop_early: bool = True) -> dict:
    with ActivationCapture(model, targets, stop_early=stop_early) as cap:
        return cap.run(input_ids, attention_mask)
