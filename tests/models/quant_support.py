"""Independent references for the bitsandbytes tests: the model's forward recomputed in
float32 with each quantized layer's weight dequantized by hand (no bnb matmul involved)."""

from __future__ import annotations


def wait_completed(studio, job, timeout=120):
    rec = studio.queue.wait(job.id, timeout)
    assert rec.status == "completed", (rec.status, rec.error, rec.traceback)
    return rec


def add_model(studio, folder):
    """Register a local model folder through the service and wait until it is ready."""
    rec, job = studio.models.add_local(str(folder))
    wait_completed(studio, job)
    return studio.models.get(rec.id)


def bnb_available() -> bool:
    try:
        import bitsandbytes  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


def dequantized_weight(layer):
    """The float32 weight a bnb layer stands for: NF4 blocks times their absmax
    (``dequantize_4bit``), or int8 rows times their scale / 127 (LLM.int8 row-wise)."""
    import bitsandbytes as bnb
    import bitsandbytes.functional as F

    w = layer.weight
    if isinstance(layer, bnb.nn.Linear4bit):
        return F.dequantize_4bit(w.data, w.quant_state).float()
    if isinstance(layer, bnb.nn.Linear8bitLt):
        return w.data.float() * w.SCB.float()[:, None] / 127.0
    raise TypeError(type(layer))


def dequantized_reference(qmodel, fp_folder):
    """A float32 copy of the original model whose quantized layers hold the dequantized
    weights of ``qmodel`` (same module names)."""
    import bitsandbytes as bnb
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.pytorch_utils import Conv1D

    ref = AutoModelForCausalLM.from_pretrained(fp_folder, dtype=torch.float32).eval()
    n = 0
    with torch.no_grad():
        for name, module in qmodel.named_modules():
            if isinstance(module, (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)):
                target = ref.get_submodule(name)
                w = dequantized_weight(module)
                if isinstance(target, Conv1D):  # GPT-2 stores [in, out]; bnb [out, in]
                    w = w.t()
                target.weight.copy_(w)
                n += 1
    assert n, "no bitsandbytes layers in the quantized model"
    return ref, n


def bnb_layers(model) -> dict[str, int]:
    import bitsandbytes as bnb

    out = {"Linear4bit": 0, "Linear8bitLt": 0}
    for m in model.modules():
        if isinstance(m, bnb.nn.Linear4bit):
            out["Linear4bit"] += 1
        elif isinstance(m, bnb.nn.Linear8bitLt):
            out["Linear8bitLt"] += 1
    return out
