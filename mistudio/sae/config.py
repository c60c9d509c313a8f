"""The typed configuration of one SAE training run (or one sweep of runs).

A :class:`TrainingConfig` is what the Training tab edits, what ``mistudio train --config FILE``
reads (JSON or YAML-free JSON), and what the training job receives as ``params["config"]``.
It is Qt-free and torch-free (cheap to import from the UI).

Shared settings (data, batch size, token budget, schedule shape, device) apply to every SAE of
the run. ``sweep`` maps *per-SAE* fields (:data:`SWEEPABLE`) to lists of values; the run trains
one SAE per combination on the same activation stream (one read for all)::

    cfg = TrainingConfig(activation_id="ext_1", architecture="topk", k=32,
                         sweep={"k": [16, 32, 64]})
    [m.name for m in cfg.members()]   # ['k16', 'k32', 'k64']

Architectures (``architecture``): ``relu`` (ReLU + decoder-norm-weighted L1, Anthropic
April 2024), ``topk`` (TopK + AuxK, OpenAI 2024), ``batchtopk`` (top k*B over the batch with a
global inference threshold), ``jumprelu`` (Gemma Scope, L0 penalty with straight-through
estimators), ``matryoshka_batchtopk`` (BatchTopK with nested dictionaries: each prefix
``matryoshka_widths`` of the latents has its own reconstruction loss; SAELens's name).
``kind``: ``sae`` reconstructs its input; ``transcoder`` reads one hook point and
reconstructs another (``target_activation_id``/``target_activation_path``);
``skip_transcoder`` adds a linear skip connection ``W_skip``.

Metric names reported through ``ctx.metric`` (and ``metrics.jsonl``); for a sweep each name is
prefixed with the member name and a slash (``k16/l0``):

=====================  =====================================================================
``loss``               total training loss
``mse``                mean over tokens of the summed squared error (normalized units)
``explained_variance`` 1 - sum sq. error / sum sq. deviation from the batch mean (SAELens)
``l0``                 mean number of active latents per token
``l1``                 mean L1 norm of latent activations per token
``aux_loss``           AuxK loss (topk/batchtopk) — 0 when no latent is dead
``sparsity_loss``      L1 (relu) or L0 (jumprelu) penalty term, with its coefficient
``dead_fraction``      latents that did not fire in the last ``dead_window_tokens`` tokens
                       (SAELens's window; all tokens so far while the run is shorter)
``dense_fraction``     latents firing on more than 10% of tokens (over the metrics window)
``cosine_sim``         mean cosine similarity between input and reconstruction
``l2_ratio``           mean ||reconstruction|| / ||input||
``lr``                 learning rate of this step
``sparsity_coef``      current (warmed-up) sparsity coefficient
``threshold``          mean threshold (jumprelu, batchtopk)
``inner_mse_loss_W``   matryoshka_batchtopk: MSE of the reconstruction from the first W
                       latents, one per inner width (SAELens's loss names)
``tokens``             tokens seen so far (shared)
``tokens_per_s``       training throughput over the metrics window (shared)
``step_time_ms``       mean wall time per step over the metrics window (shared)
=====================  =====================================================================

With the SAE spliced into the model (``eval_tokens`` > 0, at the end and every
``eval_every_steps``; see :mod:`mistudio.sae.evaluation`): ``ce_loss_score``,
``kl_div_score``, ``ce_loss_with_sae``, ``ce_loss_without_sae``, ``ce_loss_with_ablation``,
``kl_div_with_sae``, ``kl_div_with_ablation``, ``eval_tokens`` (SAELens definitions).
"""

from __future__ import annotations

import difflib
import itertools
import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from mistudio.errors import UserError

ARCHITECTURES = ("relu", "topk", "batchtopk", "matryoshka_batchtopk", "jumprelu")
#: Architectures with k active latents per token (on average, for the batch-wide ones).
TOPK_FAMILY = ("topk", "batchtopk", "matryoshka_batchtopk")
KINDS = ("sae", "transcoder", "skip_transcoder")
LR_SCHEDULES = ("constant", "cosine", "linear")
NORMALIZATIONS = ("expected_average_only_in", "none")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")

#: Fields that may differ between the SAEs of one sweep (everything else is shared).
SWEEPABLE = ("architecture", "d_sae", "expansion_factor", "k", "l1_coefficient",
             "l0_coefficient", "lr", "init_seed", "aux_k", "aux_k_coefficient",
             "jumprelu_bandwidth", "jumprelu_init_threshold")

CONFIG_VERSION = 1


@dataclass
class TrainingConfig:
    """Everything that defines a training run. All fields have working defaults."""

    name: str = ""
    # -- data ---------------------------------------------------------------------------
    activation_id: str = ""          #: activation set in the store (``ext_...``)
    activation_path: str = ""        #: or a folder holding an activation set
    target_activation_id: str = ""   #: transcoders: the set to reconstruct (same rows)
    target_activation_path: str = ""
    shuffle: bool = True
    d_in: int = 0                    #: expected input width; 0: take it from the set
    #: or train on the fly: activations computed from this registered model (id, name or
    #: folder) over a tokenization, at ``hook_name``, never written to disk
    onthefly_model: str = ""
    onthefly_tokenization: str = ""  #: tokenization id or folder ("": one made with its tokenizer)
    onthefly_batch_sequences: int = 8  #: sequences per forward pass
    shuffle_buffer_tokens: int = 65_536  #: rows mixed at a time (memory: ~2x this x d_in)
    # -- architecture -------------------------------------------------------------------
    kind: str = "sae"
    architecture: str = "topk"
    d_sae: int = 0                   #: 0: ``expansion_factor * d_in``
    expansion_factor: float = 8.0
    k: int = 32                      #: topk / batchtopk: active latents per token
    aux_k: int = 0                   #: AuxK latents; 0: ``min(d_in // 2, d_sae // 2)``
    aux_k_coefficient: float = 1.0 / 32
    l1_coefficient: float = 5.0      #: relu: decoder-norm-weighted L1 penalty
    l1_warmup_fraction: float = 0.05  #: of total steps, linear from 0 (relu, jumprelu)
    l0_coefficient: float = 1.0      #: jumprelu: L0 penalty
    jumprelu_bandwidth: float = 0.05  #: width of the straight-through rectangle kernel
    jumprelu_init_threshold: float = 0.05
    #: matryoshka_batchtopk: increasing prefix widths, d_sae appended if missing; empty:
    #: d_sae/16, d_sae/4, d_sae
    matryoshka_widths: list[int] = field(default_factory=list)
    #: matryoshka_batchtopk: AuxK per level (each level's dead latents reconstruct that
    #: level's residual; SAELens's option of the same name) instead of on the whole SAE's
    use_matryoshka_aux_loss: bool = False
    # -- optimisation -------------------------------------------------------------------
    lr: float = 3e-4
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    lr_schedule: str = "constant"    #: after warm-up; "linear" decays over the last 20%
    lr_warmup_steps: int = 0
    lr_decay_fraction: float = 0.2   #: linear: fraction of steps at the end used to decay
    lr_min_fraction: float = 0.0     #: cosine/linear end value as a fraction of ``lr``
    grad_clip_norm: float = 1.0      #: 0 disables clipping
    batch_size: int = 4096           #: tokens per step (global, across DDP ranks)
    total_tokens: int = 2_000_000    #: training length; epochs repeat the data as needed
    seed: int = 0                    #: data order (shared by a sweep) and default init seed
    init_seed: int = -1              #: weight init; -1: ``seed`` (sweep this, not ``seed``)
    normalize_activations: str = "expected_average_only_in"
    normalization_tokens: int = 100_000  #: tokens used to estimate the scaling up front
    # -- bookkeeping --------------------------------------------------------------------
    dead_window_tokens: int = 1_000_000  #: a latent silent this long counts as dead
    metrics_every_steps: int = 10
    #: 0: every 10% of ``total_tokens`` (set it >= total_tokens for the final one only)
    checkpoint_every_tokens: int = 0
    #: also every this many seconds of wall time, the first after a quarter of it; 0: off
    checkpoint_every_seconds: float = 60.0
    keep_checkpoints: int = 3
    # -- spliced-in evaluation (needs the activation set's model registered in the app) --
    eval_tokens: int = 4096          #: CE loss / KL score on held-out tokens at the end; 0: off
    eval_every_steps: int = 0        #: also every this many steps (0: only at the end)
    # -- device -------------------------------------------------------------------------
    device: str = "auto"
    dtype: str = "auto"              #: autocast dtype for matmuls; weights stay fp32
    compile: bool = False            #: ``torch.compile`` the dense step (GPU)
    compile_backend: str = "inductor"  #: torch.compile backend ("aot_eager": no codegen)
    # -- provenance (filled from the activation set when empty) -------------------------
    model_name: str = ""
    hook_name: str = ""              #: on the fly: the hook point to read
    hook_name_out: str = ""
    # -- sweep --------------------------------------------------------------------------
    sweep: dict[str, list] = field(default_factory=dict)
    member_name: str = ""            #: set on each expanded member

    # ---------------------------------------------------------------- (de)serialisation

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["config_version"] = CONFIG_VERSION
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainingConfig":
        """Build from a dict; unknown keys are an error (typos must not pass silently)."""
        data = dict(data or {})
        data.pop("config_version", None)
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise unknown_settings_error(unknown)
        clean = {}
        for name, value in data.items():
            default = getattr(cls(), name)
            clean[name] = _coerce(name, value, default)
        return cls(**clean)

    @classmethod
    def load(cls, path: str | Path) -> "TrainingConfig":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UserError(f"Cannot read the config file {path}: {exc.strerror or exc}.") from exc
        except UnicodeDecodeError:
            raise UserError(f"The config file {path} is not UTF-8 text.",
                            hint="Write it as a JSON object of settings, saved as UTF-8.") \
                from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"The config file {path} is not valid JSON ({exc}).",
                            hint="Write it as a JSON object of settings.") from exc
        if not isinstance(data, dict):
            raise UserError(f"The config file {path} must hold a JSON object of settings.")
        return cls.from_dict(data)

    def with_changes(self, **changes) -> "TrainingConfig":
        return replace(self, **changes)

    # ---------------------------------------------------------------- derived values

    def resolved_d_sae(self, d_in: int) -> int:
        return int(self.d_sae) if self.d_sae else int(round(self.expansion_factor * d_in))

    def resolved_aux_k(self, d_in: int) -> int:
        return int(self.aux_k) if self.aux_k else max(1, min(d_in // 2, self.resolved_d_sae(d_in) // 2))

    @property
    def resolved_init_seed(self) -> int:
        return int(self.seed if self.init_seed < 0 else self.init_seed)

    @property
    def total_steps(self) -> int:
        return max(1, int(self.total_tokens) // max(1, int(self.batch_size)))

    @property
    def checkpoint_interval_tokens(self) -> int:
        """Tokens between checkpoints: the setting, or 10% of the run when it is 0."""
        if self.checkpoint_every_tokens:
            return int(self.checkpoint_every_tokens)
        return max(int(self.batch_size), int(self.total_tokens) // 10)

    @property
    def is_transcoder(self) -> bool:
        return self.kind in ("transcoder", "skip_transcoder")

    def members(self) -> list["TrainingConfig"]:
        """The SAEs this run trains: one per combination of the sweep values, in order."""
        if not self.sweep:
            return [replace(self, sweep={}, member_name=self.member_name or "sae")]
        keys = list(self.sweep)
        out = []
        for combo in itertools.product(*(self.sweep[k] for k in keys)):
            changes = {k: _coerce(k, v, getattr(self, k)) for k, v in zip(keys, combo)}
            name = "_".join(_member_label(k, changes[k]) for k in keys)
            out.append(replace(self, sweep={}, member_name=name, **changes))
        return out

    # ---------------------------------------------------------------- validation

    def validate(self, d_in: int | None = None, d_out: int | None = None,
                 num_rows: int | None = None) -> "TrainingConfig":
        """Raise :class:`UserError` naming the first bad setting; returns self.

        With ``d_in`` (and ``num_rows``) known from the activation set, sizes are checked too.
        """
        def bad(msg: str, hint: str = "") -> None:
            raise UserError(msg, hint=hint)

        if not (self.activation_id or self.activation_path or self.onthefly_model):
            bad("No activation set chosen for training.",
                "Pick an activation set (extract one in the Models tab first), or train on "
                "the fly from a model.")
        if self.onthefly_model:
            if not self.hook_name:
                bad("Training on the fly needs the hook point to read (hook_name).",
                    "For example blocks.6.hook_resid_post.")
            if self.is_transcoder:
                bad("Training on the fly reads one hook point: transcoders need activation "
                    "sets (extract both hook points first).")
            if self.onthefly_batch_sequences < 1 or self.shuffle_buffer_tokens < 1:
                bad("onthefly_batch_sequences and shuffle_buffer_tokens must be at least 1.")
        for key, allowed in (("kind", KINDS), ("lr_schedule", LR_SCHEDULES),
                             ("normalize_activations", NORMALIZATIONS), ("device", DEVICES),
                             ("dtype", DTYPES)):
            if getattr(self, key) not in allowed:
                bad(f"Unknown {key} {getattr(self, key)!r}.", f"Choose one of {', '.join(allowed)}.")
        if self.is_transcoder and not (self.target_activation_id or self.target_activation_path):
            bad("A transcoder needs a target activation set (the hook point to reconstruct).",
                "Extract the MLP output of the same tokens and choose it as the target.")
        for key, value in self.sweep.items():
            if key not in SWEEPABLE:
                bad(f"{key!r} cannot be swept: all SAEs of a sweep share the data stream and "
                    "schedule.", f"Sweepable settings: {', '.join(SWEEPABLE)}.")
            if not isinstance(value, (list, tuple)) or not value:
                bad(f"Sweep values for {key!r} must be a non-empty list.")
        if self.batch_size < 1:
            bad(f"Batch size must be at least 1 (got {self.batch_size}).")
        if self.total_tokens < self.batch_size:
            bad(f"Training length ({self.total_tokens} tokens) is shorter than one batch "
                f"({self.batch_size} tokens).", "Train on more tokens or use a smaller batch.")
        if self.compile and not self.compile_backend.strip():
            bad("compile_backend is empty.", "Use 'inductor' (the default).")
        if self.keep_checkpoints < 1:
            bad("Keep at least one checkpoint (keep_checkpoints >= 1).")
        if self.metrics_every_steps < 1:
            bad("metrics_every_steps must be at least 1.")
        if not 0 <= self.lr_decay_fraction <= 1 or not 0 <= self.lr_min_fraction <= 1:
            bad("lr_decay_fraction and lr_min_fraction must be between 0 and 1.")
        if self.eval_tokens < 0 or self.eval_every_steps < 0:
            bad("eval_tokens and eval_every_steps cannot be negative (0 turns them off).")
        if (self.lr_warmup_steps < 0 or self.checkpoint_every_tokens < 0
                or not self.checkpoint_every_seconds >= 0):
            bad("lr_warmup_steps, checkpoint_every_tokens and checkpoint_every_seconds cannot "
                "be negative.")
        if not 0 <= self.l1_warmup_fraction <= 1:
            bad("l1_warmup_fraction must be between 0 and 1.")
        if d_in is not None and self.d_in and self.d_in != d_in:
            bad(f"The config expects activations of width d_in = {self.d_in}, but the "
                f"activation set has width {d_in}.",
                "Pick an activation set from the intended hook point, or set d_in to 0.")
        if num_rows is not None and num_rows < self.batch_size:
            bad(f"The activation set has {num_rows} tokens, fewer than one batch "
                f"({self.batch_size}).", "Use a smaller batch size or extract more tokens.")
        for m in self.members():
            m._validate_member(d_in, d_out)
        return self

    def _validate_member(self, d_in: int | None, d_out: int | None) -> None:
        who = f" (sweep member {self.member_name})" if self.member_name not in ("", "sae") else ""

        def bad(msg: str, hint: str = "") -> None:
            raise UserError(msg + who + ".", hint=hint)

        if self.architecture not in ARCHITECTURES:
            bad(f"Unknown architecture {self.architecture!r}", f"Choose one of {', '.join(ARCHITECTURES)}.")
        if self.d_sae < 0 or (not self.d_sae and self.expansion_factor <= 0):
            bad("The SAE width must be positive", "Set d_sae or a positive expansion_factor.")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            bad(f"Learning rate must be a positive number (got {self.lr})")
        for key in ("l1_coefficient", "l0_coefficient", "aux_k_coefficient"):
            value = getattr(self, key)
            if not (value >= 0 and math.isfinite(value)):
                bad(f"{key} must be zero or positive (got {value})")
        if self.architecture == "jumprelu" and not (self.jumprelu_bandwidth > 0
                                                    and self.jumprelu_init_threshold >= 0):
            bad("JumpReLU needs a positive bandwidth and a non-negative initial threshold")
        if self.architecture in TOPK_FAMILY and self.k < 1:
            bad(f"k must be at least 1 (got {self.k})")
        if d_in is not None:
            d_sae = self.resolved_d_sae(d_in)
            if d_sae < 1:
                bad(f"The SAE width works out to {d_sae}", "Use a larger expansion factor.")
            if self.architecture in TOPK_FAMILY and self.k > d_sae:
                bad(f"k = {self.k} is larger than the SAE width d_sae = {d_sae}",
                    "Lower k or widen the SAE (d_sae / expansion_factor).")
            if self.architecture == "matryoshka_batchtopk":
                try:
                    resolve_matryoshka_widths(self.matryoshka_widths, d_sae)
                except ValueError as exc:
                    bad(str(exc), "List increasing widths up to d_sae, e.g. "
                        f"{max(1, d_sae // 16)}, {max(1, d_sae // 4)}, {d_sae}.")


def resolve_matryoshka_widths(widths, d_sae: int) -> list[int]:
    """The nested widths, ending at ``d_sae`` (appended when missing, as SAELens does);
    none given: ``d_sae/16, d_sae/4, d_sae``. Raises ValueError when not increasing."""
    d_sae = int(d_sae)
    if not widths:
        return sorted({max(1, d_sae // 16), max(1, d_sae // 4), d_sae})
    out = [int(w) for w in widths]
    if out[-1] != d_sae:
        out.append(d_sae)
    if any(w <= 0 for w in out):
        raise ValueError(f"Matryoshka widths must be positive (got {out})")
    if any(b <= a for a, b in zip(out, out[1:])):
        raise ValueError(f"Matryoshka widths must be strictly increasing and at most d_sae "
                         f"= {d_sae} (got {out})")
    return out


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Bring JSON/CLI values to the field's type, with a clear error."""
    if isinstance(default, bool):
        if isinstance(value, str):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
        if isinstance(value, (bool, int)):
            return bool(value)
    elif isinstance(default, int):
        try:
            f = float(value)
            if f == int(f):
                if abs(int(f)) >= 2 ** 63:  # beyond what any count can be (or SQLite store)
                    raise UserError(f"Setting {name!r} is too large: {value!r}.",
                                    hint="Use a realistic number.")
                return int(f)
        except (TypeError, ValueError, OverflowError):
            pass
    elif isinstance(default, float):
        try:
            return float(value)
        except (TypeError, ValueError):
            pass
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    elif isinstance(default, dict):
        if isinstance(value, dict):
            return dict(value)
    elif isinstance(default, list):  # of ints (matryoshka_widths): [64, 256] or "64, 256"
        items = value.replace(",", " ").split() if isinstance(value, str) else value
        if isinstance(items, (list, tuple)):
            try:
                out = [_coerce(name, v, 0) for v in items]
                return [int(v) for v in out]
            except UserError:
                pass
    else:
        return value
    expected = _TYPE_WORDS.get(type(default), f"a {type(default).__name__}")
    raise UserError(f"Setting {name!r} has the wrong type: {value!r}.",
                    hint=f"Expected {expected}.")


_TYPE_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "text",
               dict: "an object of settings"}


def setting_names() -> list[str]:
    """Every setting a TrainingConfig accepts (its field names)."""
    return [f.name for f in fields(TrainingConfig)]


def unknown_settings_error(unknown, where: str = "") -> UserError:
    """The error for misspelled or unknown setting names, with the closest valid names."""
    # Match against the names and the form's labels ("lerning_rate" -> "Learning rate" -> lr).
    candidates = {name: name for name in setting_names()}
    for name in setting_names():
        candidates.setdefault(setting_info(name).label.lower().replace(" ", "_"), name)
    parts = []
    for name in unknown:
        close = list(dict.fromkeys(
            candidates[c] for c in difflib.get_close_matches(str(name).lower(), candidates,
                                                             n=3, cutoff=0.6)))
        parts.append(f"'{name}' (did you mean {' or '.join(repr(c) for c in close)}?)"
                     if close else f"'{name}'")
    prefix = f"{where}: u" if where else "U"
    return UserError(f"{prefix}nknown training setting(s): {', '.join(parts)}.",
                     hint="Check the spelling; `docs/sae-engine.md` lists every setting.")


def coerce_setting(name: str, value: Any) -> Any:
    """``value`` brought to the type of setting ``name`` (a :class:`UserError` if it cannot be)."""
    return _coerce(name, value, getattr(TrainingConfig(), name))


def _member_label(key: str, value: Any) -> str:
    short = {"architecture": "", "l1_coefficient": "l1_", "l0_coefficient": "l0_",
             "expansion_factor": "x", "d_sae": "d", "aux_k_coefficient": "auxc",
             "jumprelu_bandwidth": "bw", "jumprelu_init_threshold": "th", "init_seed": "seed"}.get(key, key)
    if isinstance(value, float):
        text = f"{value:g}"
    else:
        text = str(value)
    return f"{short}{text}".replace("/", "_")


# ------------------------------------------------------------------ labels and help
@dataclass(frozen=True)
class SettingInfo:
    """How a setting is presented: the Training form's label, tooltip, unit and what its
    "automatic" value (0, or -1 for ``init_seed``) means. The form is generated from this."""

    label: str
    help: str
    unit: str = ""
    auto: str = ""   #: what the automatic value means, e.g. "automatic: from expansion factor"


def _i(label: str, help: str, unit: str = "", auto: str = "") -> SettingInfo:
    return SettingInfo(label, help, unit, auto)


SETTING_INFO: dict[str, SettingInfo] = {
    "name": _i("Name", "A name for the run (optional)."),
    "activation_id": _i("Activation set", "The activation set in the app to train on."),
    "activation_path": _i("Activation folder", "Or a folder holding an activation set."),
    "target_activation_id": _i("Target activation set",
                               "Transcoders: the activation set to reconstruct (same rows)."),
    "target_activation_path": _i("Target activation folder",
                                 "Transcoders: or a folder holding the target set."),
    "shuffle": _i("Shuffle rows", "Read the activation rows in a random order (recommended)."),
    "onthefly_model": _i("Model (on the fly)", "Train from this registered model's "
                         "activations, computed as training goes (nothing is written)."),
    "onthefly_tokenization": _i("Tokenized dataset (on the fly)", "The tokens fed to the "
                                "model; empty picks one made with its tokenizer."),
    "onthefly_batch_sequences": _i("Forward batch", "Sequences per forward pass when "
                                   "training on the fly.", "sequences"),
    "shuffle_buffer_tokens": _i("Shuffle buffer", "On the fly: activations mixed at a time "
                                "before batches are drawn; memory is about 2x this x the "
                                "width.", "tokens"),
    "d_in": _i("Input width", "The expected activation width; checked against the set.",
               "dimensions", "0 = automatic: from the activation set"),
    "kind": _i("Kind", "sae reconstructs its input; a transcoder reads one hook point and "
                       "reconstructs another; a skip transcoder adds a linear skip path."),
    "architecture": _i("Architecture",
                       "relu: L1 penalty (Anthropic April 2024); topk: k latents per token + "
                       "AuxK (OpenAI); batchtopk: k x batch over the batch; "
                       "matryoshka_batchtopk: BatchTopK with nested dictionaries, each prefix "
                       "also reconstructing on its own (Bussmann et al. 2025); jumprelu: "
                       "learned thresholds with an L0 penalty (Gemma Scope)."),
    "matryoshka_widths": _i("Matryoshka widths", "Nested dictionary sizes, increasing, "
                            "comma-separated (e.g. 512, 2048); the SAE width is added as the "
                            "last level.", "latents", "empty = automatic: d_sae/16, d_sae/4"),
    "use_matryoshka_aux_loss": _i("AuxK per level", "Matryoshka: each level's dead latents "
                                  "reconstruct that level's own residual (SAELens's "
                                  "use_matryoshka_aux_loss; slower, may revive latents "
                                  "better) instead of the whole SAE's."),
    "d_sae": _i("SAE width", "Number of latents. Set it to fix the width exactly.",
                "latents", "0 = automatic: from expansion factor"),
    "expansion_factor": _i("Expansion factor",
                           "SAE width = expansion factor x input width (used when the SAE "
                           "width is 0).", "x input width"),
    "k": _i("Active latents (k)", "Latents kept per token (TopK) or on average (BatchTopK).",
            "per token"),
    "aux_k": _i("AuxK latents", "Dead latents the AuxK loss uses to revive them.", "latents",
                "0 = automatic: half the input width (at most half the SAE width)"),
    "aux_k_coefficient": _i("AuxK loss weight", "Weight of the AuxK loss (OpenAI: 1/32)."),
    "l1_coefficient": _i("L1 penalty", "Sparsity penalty (ReLU). Higher: sparser, worse "
                                       "reconstruction."),
    "l1_warmup_fraction": _i("Penalty warm-up", "Fraction of training over which the "
                                                "sparsity penalty ramps up from 0.",
                             "of the steps"),
    "l0_coefficient": _i("L0 penalty", "L0 sparsity penalty (JumpReLU)."),
    "jumprelu_bandwidth": _i("Threshold bandwidth",
                             "Width of the straight-through estimator's kernel (JumpReLU)."),
    "jumprelu_init_threshold": _i("Initial threshold", "Initial threshold of every latent "
                                                       "(JumpReLU)."),
    "lr": _i("Learning rate", "Adam learning rate. In the form it follows the width "
                              "(2e-4/sqrt(d_sae/16384)) until you change it."),
    "adam_beta1": _i("Adam beta1", "Adam's first-moment decay."),
    "adam_beta2": _i("Adam beta2", "Adam's second-moment decay."),
    "adam_eps": _i("Adam epsilon", "Adam's denominator epsilon."),
    "lr_schedule": _i("LR schedule", "After warm-up: constant, cosine, or linear decay over "
                                     "the last part."),
    "lr_warmup_steps": _i("LR warm-up", "Steps of linear learning-rate warm-up.", "steps",
                          "0 = no warm-up"),
    "lr_decay_fraction": _i("LR decay part", "Linear schedule: the part of the steps at the "
                                             "end used to decay.", "of the steps"),
    "lr_min_fraction": _i("Final LR", "Final learning rate as a fraction of the peak.",
                          "of the peak"),
    "grad_clip_norm": _i("Gradient clipping", "Clip the gradient norm to this value.", "",
                         "0 = no clipping"),
    "batch_size": _i("Batch size", "Tokens per optimizer step (across all GPUs).", "tokens"),
    "total_tokens": _i("Training length", "How many activation rows to train on (the data "
                                          "repeats if needed). Accepts 2e6, 2M, 500k.",
                       "tokens"),
    "seed": _i("Seed", "Data order, and the weight initialisation unless the init seed is "
                       "set."),
    "init_seed": _i("Init seed", "Weight initialisation (sweep this, not the seed).", "",
                    "-1 = automatic: the seed"),
    "normalize_activations": _i("Input scaling", "Scale inputs so their mean norm is "
                                                 "sqrt(d_in) (SAELens), or none."),
    "normalization_tokens": _i("Scaling sample", "Tokens used to estimate the input scale up "
                                                 "front.", "tokens"),
    "dead_window_tokens": _i("Dead-latent window", "A latent silent for this many tokens "
                                                   "counts as dead (SAELens's window; in a "
                                                   "shorter run, silent in all of it).",
                             "tokens"),
    "metrics_every_steps": _i("Metrics interval", "How often metrics are computed and "
                                                  "charted.", "steps"),
    "checkpoint_every_tokens": _i("Checkpoint interval", "Save a resumable checkpoint every "
                                                         "this many tokens (and at the end, "
                                                         "and when stopped).", "tokens",
                                  "0 = automatic: every 10% of the training"),
    "checkpoint_every_seconds": _i("Checkpoint timer", "Also save one every this many seconds "
                                                       "of wall time (the first after a quarter "
                                                       "of it), so a crash loses little.",
                                   "seconds", "0 = off"),
    "keep_checkpoints": _i("Checkpoints kept", "How many recent checkpoints stay on disk.",
                           "checkpoints"),
    "eval_tokens": _i("Evaluation tokens", "Splice the SAE into its model at the end and "
                                           "measure the CE loss and KL scores on this many "
                                           "held-out tokens (needs the activation set's model "
                                           "in the app).", "tokens", "0 = no evaluation"),
    "eval_every_steps": _i("Evaluation interval", "Also evaluate every this many steps.",
                           "steps", "0 = only at the end"),
    "device": _i("Device", "Where to train: auto uses the GPU when there is one."),
    "dtype": _i("Precision", "Matmul precision (autocast); weights stay float32. auto: "
                             "bfloat16 on a GPU, float32 on the CPU."),
    "compile": _i("Compile", "torch.compile the training step (GPU; slower first steps)."),
    "compile_backend": _i("Compile backend", "torch.compile backend (inductor; aot_eager "
                                             "without code generation)."),
    "model_name": _i("Model", "The model the activations came from (filled in from the set)."),
    "hook_name": _i("Hook point", "The hook point read (filled in from the set; on the fly: "
                                  "the one to read)."),
    "hook_name_out": _i("Output hook point", "Transcoders: the hook point reconstructed."),
    "sweep": _i("Sweep", "Several values of per-SAE settings, trained together."),
    "member_name": _i("Sweep member", "Set by the app on each SAE of a sweep."),
}


def setting_info(name: str) -> SettingInfo:
    """The presentation of setting ``name`` (a plain label for a setting without an entry)."""
    return SETTING_INFO.get(name) or SettingInfo(name.replace("_", " ").capitalize(), "")
