"""Independent references for the bitsandbytes tests: the model's forward recomputed in
float32 with each quantized layer's weight dequantized by hand (no bnb matmul involved)."""

from __future__ import annotations


def wait_completed(studio, job, timeout=120):
    rec = studio.jobs.wait(job.id, timeout)
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


# ---------------------------------------------------------------- per-layer check
#
# Why the 4-bit numbers depend on the CPU: bitsandbytes (0.50) has two CPU paths for a
# Linear4bit at inference (eval, no grad). On a CPU with AVX512-BF16 (``has_avx512bf16()``)
# the first forward repacks the weight (``packing_format_for_cpu``) and every later one runs
# a fused kernel that rounds the input and the block scales (absmax) to bfloat16, takes
# bf16 x bf16 products with float32 accumulation and rounds the output to bfloat16, whatever
# ``bnb_4bit_compute_dtype`` says. Elsewhere it dequantizes the weight to the compute dtype
# (float32 here) and calls ``torch.nn.functional.linear``: the arithmetic of a float32
# reference. oneDNN/MKL pick kernels by instruction set too (``ONEDNN_MAX_CPU_ISA``,
# ``MKL_ENABLE_INSTRUCTIONS``, ``ATEN_CPU_CAPABILITY`` select them), which changes float32
# summation order only. The check below therefore computes each quantized layer's output
# from the input it actually received, the way the library computes it (bf16-rounded input
# on the fused path), and allows what cannot be mirrored with a bound derived from the
# compute dtype's unit roundoff u (a dot product's rounding bound, Higham 3.1):
#     |got - ref| <= (2 u_c + K u_32) (|x| @ |W|^T) + u_c |ref|
# (2 u_c: the absmax and the dequantized weight rounded to the compute dtype; u_c |ref|: the
# output rounding; K u_32: float32 accumulation in any order). A weight block off by one quantization step breaks it (see the test).


def unit_roundoff(dtype) -> float:
    import torch

    return torch.finfo(dtype).eps / 2


def bnb_cpu_fused_bf16(layer) -> bool:
    """Did this Linear4bit run bitsandbytes' fused bf16 CPU kernel (see above)?"""
    return bool(getattr(layer.weight.quant_state, "packing_format_for_cpu", False))


def check_4bit_layers(qmodel, ids, reference_weights: dict | None = None) -> dict:
    """Run ``qmodel(ids)`` and check every Linear4bit's output against its input times the
    dequantized weight (``reference_weights``: name -> float32 [out, in], taken before the
    first forward, which may repack the weights). Returns ``{name: worst |err| / bound}``
    (<= 1 passes) and ``"_fused_bf16"``: which path ran."""
    import bitsandbytes as bnb
    import torch

    layers = {n: m for n, m in qmodel.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    weights = reference_weights or {n: dequantized_weight(m) for n, m in layers.items()}
    seen = {}
    hooks = [m.register_forward_hook(
        lambda mod, args, out, name=n: seen.__setitem__(name, (args[0].detach(), out.detach())))
        for n, m in layers.items()]
    try:
        with torch.no_grad():
            qmodel(ids)
    finally:
        for h in hooks:
            h.remove()
    u32 = unit_roundoff(torch.float32)
    worst, fused = {}, set()
    for name, layer in layers.items():
        x, got = seen[name]
        w = weights[name].double()
        if bnb_cpu_fused_bf16(layer):
            fused.add(name)
            x = x.to(torch.bfloat16)  # the kernel rounds its input, as the reference does
            u_c = unit_roundoff(torch.bfloat16)
        else:
            x = x.to(layer.compute_dtype or torch.float32)
            u_c = unit_roundoff(x.dtype)
        x = x.double()
        ref = x @ w.t()
        if layer.bias is not None:
            ref = ref + layer.bias.detach().double()
        bound = (2 * u_c + w.shape[1] * u32) * (x.abs() @ w.abs().t()) + u_c * ref.abs()
        worst[name] = float(((got.double() - ref).abs() / bound.clamp_min(1e-30)).max())
    worst["_fused_bf16"] = sorted(fused)
    return worst


def perturb_block(layer, block: int = 0, steps: int = 1) -> None:
    """Move every 4-bit code of one quantization block of ``layer`` (not yet repacked) by
    ``steps`` levels (clamped to the code table): a weight block off by one step."""
    import torch

    data = layer.weight.data.view(-1)
    half = layer.weight.quant_state.blocksize // 2  # two codes a byte
    sl = slice(block * half, (block + 1) * half)
    hi, lo = (data[sl] >> 4).long(), (data[sl] & 15).long()
    hi, lo = (hi + steps).clamp(0, 15), (lo + steps).clamp(0, 15)
    data[sl] = ((hi << 4) | lo).to(torch.uint8)
