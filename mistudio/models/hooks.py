"""Hook points: stable names mapped onto each architecture family's module paths.

Names follow TransformerLens/SAELens (``blocks.<L>.hook_resid_post`` ...), so SAEs trained
here carry the same ``hook_name`` as SAEs from those tools:

- ``blocks.L.hook_resid_pre``   residual stream entering block L (input of the block)
- ``blocks.L.hook_resid_post``  residual stream leaving block L (output of the block)
- ``blocks.L.hook_attn_out``    attention output, as added to the residual stream
- ``blocks.L.hook_mlp_out``     MLP output, as added to the residual stream
- ``blocks.L.hook_mlp_in``      MLP input (after its layer norm), for transcoders
- ``blocks.L.mlp.hook_post``    the MLP's inner activation (d_mlp wide: the input of its
                                output projection), the neuron basis

A raw module path (``module:transformer.h.3.mlp.c_fc``, optionally ``module-input:...``)
reaches any other module. This module never imports torch at import time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mistudio.errors import UserError

HOOK_TYPES = ("resid_pre", "resid_post", "attn_out", "mlp_out", "mlp_in", "mlp_post")
HOOK_LABELS = {
    "resid_pre": "Residual stream before the block",
    "resid_post": "Residual stream after the block",
    "attn_out": "Attention output",
    "mlp_out": "MLP output",
    "mlp_in": "MLP input (after its norm; for transcoders)",
    "mlp_post": "MLP neurons (inner activation, d_mlp wide)",
}


@dataclass(frozen=True)
class FamilyLayout:
    """Where one family keeps its blocks and their parts (relative to the block)."""

    name: str
    blocks: str  # path of the ModuleList of blocks
    attn_out: str  # module whose output is the attention contribution
    mlp_out: str  # module whose output is the MLP contribution
    mlp_in: str  # module whose *input* is the MLP input
    final_norm: str
    embed: str
    parallel: bool = False  # attention and MLP read the same input
    mlp_post: str = "mlp.down_proj"  # the MLP's output projection (its input: the neurons)


_LLAMA = FamilyLayout("llama", "model.layers", "self_attn", "mlp", "mlp", "model.norm",
                      "model.embed_tokens")
FAMILIES: dict[str, FamilyLayout] = {
    "gpt2": FamilyLayout("gpt2", "transformer.h", "attn", "mlp", "mlp", "transformer.ln_f",
                         "transformer.wte", mlp_post="mlp.c_proj"),
    "gpt_neox": FamilyLayout("gpt_neox", "gpt_neox.layers", "attention", "mlp", "mlp",
                             "gpt_neox.final_layer_norm", "gpt_neox.embed_in", parallel=True,
                             mlp_post="mlp.dense_4h_to_h"),
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "qwen2": _LLAMA,
    "qwen3": _LLAMA,
    "gemma": _LLAMA,
    # Gemma-2/3 normalise each branch before adding it to the residual stream; the branch
    # output "as added" is the output of those post-norms (as in TransformerLens).
    "gemma2": FamilyLayout("gemma2", "model.layers", "post_attention_layernorm",
                           "post_feedforward_layernorm", "mlp", "model.norm",
                           "model.embed_tokens"),
    "phi": FamilyLayout("phi", "model.layers", "self_attn", "mlp", "mlp", "model.final_layernorm",
                        "model.embed_tokens", parallel=True, mlp_post="mlp.fc2"),
    "phi3": _LLAMA,
}
FAMILIES["gemma3_text"] = FAMILIES["gemma2"]
FAMILY_ALIASES = {"smollm": "llama", "smollm2": "llama", "olmo": "llama", "olmo2": "llama"}
FAMILY_LABELS = {
    "gpt2": "GPT-2", "gpt_neox": "GPT-NeoX / Pythia", "llama": "Llama / SmolLM",
    "mistral": "Mistral", "qwen2": "Qwen2", "qwen3": "Qwen3", "gemma": "Gemma",
    "gemma2": "Gemma-2", "gemma3_text": "Gemma-3", "phi": "Phi", "phi3": "Phi-3",
}

_NAME_RE = re.compile(r"^blocks\.(\d+)\.(?:hook_(resid_pre|resid_post|attn_out|mlp_out|mlp_in)"
                      r"|mlp\.hook_(post))$")


@dataclass(frozen=True)
class HookTarget:
    """One hook point resolved onto a module: read its ``output`` or its ``input``."""

    name: str
    module_path: str
    io: str  # "output" | "input"
    layer: int | None  # block index (None for a raw module outside the blocks)
    hook_type: str  # one of HOOK_TYPES or "module"

    @property
    def stop_layer(self) -> int | None:
        """The deepest block that must run to produce this hook (None: unknown, run all)."""
        return self.layer


def family_of(model_type: str) -> FamilyLayout:
    key = FAMILY_ALIASES.get(model_type, model_type)
    layout = FAMILIES.get(key)
    if layout is None:
        raise UserError(
            f"Hook points are not mapped for the model family {model_type!r}.",
            hint="Supported: " + ", ".join(sorted(FAMILY_LABELS.values())) + ". You can "
            "still extract from a raw module path (module:<path>, see the module tree).")
    return layout


def hook_name(layer: int, hook_type: str) -> str:
    if hook_type not in HOOK_TYPES:
        raise UserError(f"Unknown hook type {hook_type!r}.", hint=f"Use one of {HOOK_TYPES}.")
    if hook_type == "mlp_post":
        return f"blocks.{int(layer)}.mlp.hook_post"  # TransformerLens's name
    return f"blocks.{int(layer)}.hook_{hook_type}"


def hook_width(hook_type: str, d_model: int, d_mlp: int | None) -> int:
    """How many numbers one token gives at a hook of this type: the MLP's inner activation is
    d_mlp wide (GPT-2: 4 x d_model when the config leaves it unset), every other point
    d_model. A raw ``module:`` path is estimated as d_model."""
    if hook_type == "mlp_post":
        return int(d_mlp or 4 * d_model)
    return int(d_model)


def parse_hook_name(name: str) -> tuple[int, str] | None:
    m = _NAME_RE.match(name.strip())
    if not m:
        return None
    return int(m.group(1)), m.group(2) or "mlp_" + m.group(3)


def available_hook_points(model_type: str, n_layers: int) -> list[str]:
    family_of(model_type)
    return [hook_name(layer, t) for layer in range(n_layers) for t in HOOK_TYPES]


def resolve(name: str, model_type: str, n_layers: int) -> HookTarget:
    """Map a stable hook name (or ``module:<path>``) to a module and input/output side."""
    name = name.strip()
    for prefix, io in (("module:", "output"), ("module-input:", "input")):
        if name.startswith(prefix):
            path = name[len(prefix):].strip()
            if not path:
                raise UserError("Empty module path.", hint="Write module:<dotted.path>.")
            return HookTarget(name, path, io, _layer_from_path(path, model_type), "module")
    parsed = parse_hook_name(name)
    if parsed is None:
        raise UserError(
            f"{name!r} is not a hook point name.",
            hint="Use blocks.<layer>.hook_<resid_pre|resid_post|attn_out|mlp_out|mlp_in>, "
            "blocks.<layer>.mlp.hook_post, or module:<path> for a raw module.")
    layer, hook_type = parsed
    if not 0 <= layer < n_layers:
        raise UserError(f"Hook point {name!r} asks for layer {layer}, but the model has "
                        f"{n_layers} layers (0..{n_layers - 1}).",
                        hint="Pick a layer in range.")
    fam = family_of(model_type)
    block = f"{fam.blocks}.{layer}"
    if hook_type == "resid_pre":
        return HookTarget(name, block, "input", layer, hook_type)
    if hook_type == "resid_post":
        return HookTarget(name, block, "output", layer, hook_type)
    if hook_type == "attn_out":
        return HookTarget(name, f"{block}.{fam.attn_out}", "output", layer, hook_type)
    if hook_type == "mlp_out":
        return HookTarget(name, f"{block}.{fam.mlp_out}", "output", layer, hook_type)
    if hook_type == "mlp_post":
        return HookTarget(name, f"{block}.{fam.mlp_post}", "input", layer, hook_type)
    return HookTarget(name, f"{block}.{fam.mlp_in}", "input", layer, hook_type)


def _layer_from_path(path: str, model_type: str) -> int | None:
    try:
        blocks = family_of(model_type).blocks
    except UserError:
        return None
    m = re.match(re.escape(blocks) + r"\.(\d+)(\.|$)", path)
    return int(m.group(1)) if m else None


def get_module(model, path: str):
    """The submodule at a dotted path, with a clear error when it does not exist."""
    try:
        return model.get_submodule(path)
    except AttributeError:
        raise UserError(f"The model has no module {path!r}.",
                        hint="Open the module tree in the inspector to pick an existing path."
                        ) from None


def first_tensor(value):
    """A block/attention output may be a tensor or a tuple whose first item is the tensor."""
    if isinstance(value, (tuple, list)):
        return value[0]
    return value


def input_tensor(args: tuple, kwargs: dict):
    """The hidden states a module received (first positional arg or ``hidden_states=``)."""
    if args:
        return args[0]
    for key in ("hidden_states", "hidden_state", "x", "input"):
        if key in kwargs:
            return kwargs[key]
    raise RuntimeError("could not find the hidden-states input of the hooked module")
