"""The built-in extraction templates: where and how much to extract for common first SAEs.

Each holds extraction settings (``mistudio.activations.choices.DEFAULT_SETTINGS`` names);
layers are choices ("middle", "all", numbers) expanded against the model when applied.
"""

from __future__ import annotations

from mistudio.activations.choices import DEFAULT_SETTINGS as _DEFAULTS
from mistudio.templates.builtin import BuiltinTemplate

BUILTIN_EXTRACTION_TEMPLATES: tuple[BuiltinTemplate, ...] = (
    BuiltinTemplate(
        "resid_middle", "Residual stream, middle layer",
        "The residual stream after the middle block: the usual first SAE target.",
        {**_DEFAULTS, "layers": ["middle"], "hook_types": ["resid_post"],
         "max_tokens": 2_000_000, "store_dtype": "float32"}),
    BuiltinTemplate(
        "quick_look", "Quick look (100k tokens)",
        "A small sample of the middle residual stream for a fast first training run.",
        {**_DEFAULTS, "layers": ["middle"], "hook_types": ["resid_post"],
         "max_tokens": 100_000, "store_dtype": "float32"}),
    BuiltinTemplate(
        "transcoder_middle", "Transcoder pair, middle layer",
        "MLP input and MLP output of the middle block, for training a transcoder.",
        {**_DEFAULTS, "layers": ["middle"], "hook_types": ["mlp_in", "mlp_out"],
         "max_tokens": 2_000_000, "store_dtype": "float32"}),
    BuiltinTemplate(
        "resid_all_bf16", "All layers, residual (bf16)",
        "The residual stream after every block, stored in bfloat16 to halve the disk use.",
        {**_DEFAULTS, "layers": ["all"], "hook_types": ["resid_post"],
         "max_tokens": 500_000, "store_dtype": "bfloat16"}),
)
