"""The built-in training templates: published SAE recipes with their settings.

Each template is a dict of training settings (the field names of the training form /
``TrainingConfig``). Values that depend on the width (learning rate) are left out when
the recipe scales them, so the form's width-scaled default applies; see
:func:`mistudio.templates.scaling.scaled_learning_rate`.

Sources: Gao et al. 2024 "Scaling and evaluating sparse autoencoders" (OpenAI TopK with
AuxK); Bussmann et al. 2024 "BatchTopK Sparse Autoencoders"; Bussmann et al. 2025 "Learning
Multi-Level Features with Matryoshka Sparse Autoencoders"; Rajamanoharan et al. 2024
"Jumping Ahead" and Lieberum et al. 2024 "Gemma Scope" (JumpReLU); Anthropic's
"Circuits Updates - April 2024" (ReLU with decoder-norm-weighted L1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

BUILTIN_PREFIX = "builtin:"


@dataclass(frozen=True)
class BuiltinTemplate:
    key: str
    name: str
    description: str
    config: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return BUILTIN_PREFIX + self.key


BUILTIN_TEMPLATES: tuple[BuiltinTemplate, ...] = (
    BuiltinTemplate(
        "fast_prototype", "Fast prototype",
        "A small TopK SAE in minutes, to check a pipeline end to end: 4x width, k=32, "
        "5M tokens. Not meant to give good features.",
        {"architecture": "topk", "expansion_factor": 4, "k": 32, "total_tokens": 5_000_000,
         "batch_size": 1024, "lr": 1e-3, "lr_schedule": "constant", "lr_warmup_steps": 0,
         "checkpoint_every_tokens": 1_000_000, "normalize_activations": "expected_average_only_in"},
    ),
    BuiltinTemplate(
        "openai_topk", "OpenAI-style TopK",
        "TopK with the AuxK loss against dead latents (Gao et al. 2024): k=32, 32x width, "
        "AuxK coefficient 1/32, learning rate scaled by 1/sqrt(width), unit-norm decoder.",
        {"architecture": "topk", "expansion_factor": 32, "k": 32, "aux_k": 512,
         "aux_k_coefficient": 1 / 32, "total_tokens": 200_000_000, "batch_size": 4096,
         "adam_beta1": 0.9, "adam_beta2": 0.999, "adam_eps": 6.25e-10,
         "lr_schedule": "constant", "lr_warmup_steps": 0,
         "dead_window_tokens": 10_000_000, "checkpoint_every_tokens": 20_000_000,
         "normalize_activations": "expected_average_only_in"},
    ),
    BuiltinTemplate(
        "batchtopk", "BatchTopK",
        "BatchTopK (Bussmann et al. 2024): the top k x batch activations across the whole "
        "batch, a threshold estimated for inference; AuxK against dead latents.",
        {"architecture": "batchtopk", "expansion_factor": 16, "k": 32, "aux_k": 512,
         "aux_k_coefficient": 1 / 32, "total_tokens": 200_000_000, "batch_size": 4096,
         "lr": 3e-4, "adam_beta1": 0.9, "adam_beta2": 0.999, "lr_schedule": "constant",
         "lr_warmup_steps": 0, "checkpoint_every_tokens": 20_000_000,
         "normalize_activations": "expected_average_only_in"},
    ),
    BuiltinTemplate(
        "matryoshka_batchtopk", "Matryoshka BatchTopK",
        "Nested dictionaries (Bussmann et al. 2025, SAELens matryoshka_batchtopk): BatchTopK "
        "where the first d_sae/16 and d_sae/4 latents must also reconstruct the input on "
        "their own, which keeps general features early and reduces feature absorption. "
        "Set matryoshka_widths for other levels; use_matryoshka_aux_loss runs AuxK per level.",
        {"architecture": "matryoshka_batchtopk", "expansion_factor": 16, "k": 32,
         "matryoshka_widths": [], "aux_k": 512, "aux_k_coefficient": 1 / 32,
         "use_matryoshka_aux_loss": False,
         "total_tokens": 200_000_000, "batch_size": 4096, "lr": 3e-4, "adam_beta1": 0.9,
         "adam_beta2": 0.999, "lr_schedule": "constant", "lr_warmup_steps": 0,
         "checkpoint_every_tokens": 20_000_000,
         "normalize_activations": "expected_average_only_in"},
    ),
    BuiltinTemplate(
        "gemma_scope_jumprelu", "Gemma-Scope-style JumpReLU",
        "JumpReLU with a straight-through L0 penalty (Rajamanoharan et al. 2024, Gemma "
        "Scope): Adam betas (0, 0.999), lr 7e-5 with 1,000 warm-up steps, sparsity "
        "coefficient warmed up linearly (the paper: 10,000 of ~120,000 steps), bandwidth "
        "0.001, initial threshold 0.001.",
        {"architecture": "jumprelu", "expansion_factor": 16, "l0_coefficient": 1.0,
         "l1_warmup_fraction": 0.08, "jumprelu_bandwidth": 0.001,
         "jumprelu_init_threshold": 0.001, "lr": 7e-5, "adam_beta1": 0.0, "adam_beta2": 0.999,
         "lr_schedule": "constant", "lr_warmup_steps": 1000, "total_tokens": 200_000_000,
         "batch_size": 4096, "checkpoint_every_tokens": 20_000_000,
         "normalize_activations": "expected_average_only_in"},
    ),
    BuiltinTemplate(
        "april_update_relu", "April-update ReLU",
        "Anthropic's April 2024 recipe: ReLU, L1 penalty weighted by decoder norms "
        "(coefficient 5 on inputs normalised to norm sqrt(d_in)), lr 5e-5, L1 warmed up "
        "over the first 5% of steps, lr decayed to 0 over the last 20%, gradient clipping 1.",
        {"architecture": "relu", "expansion_factor": 16, "l1_coefficient": 5.0,
         "l1_warmup_fraction": 0.05, "lr": 5e-5, "adam_beta1": 0.9, "adam_beta2": 0.999,
         "lr_schedule": "linear", "lr_warmup_steps": 0, "lr_decay_fraction": 0.2,
         "lr_min_fraction": 0.0, "grad_clip_norm": 1.0,
         "total_tokens": 200_000_000, "batch_size": 4096,
         "checkpoint_every_tokens": 20_000_000,
         "normalize_activations": "expected_average_only_in"},
    ),
)


def builtin_by_id(template_id: str) -> BuiltinTemplate | None:
    for t in BUILTIN_TEMPLATES:
        if t.id == template_id or t.key == template_id:
            return t
    return None
