"""What the Templates tab shows and does, without Qt (tests drive it directly).

Three kinds of saved settings share one page: training templates and extraction templates
(``studio.templates``, one system with ``kind``) and steering presets (``studio.steering``,
files under ``steering/presets``). Favourites, use counts and last use of presets are kept
in the same usage rows as templates', under the id ``preset:<name>``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from mistudio.activations.choices import DEFAULT_SETTINGS as EXTRACTION_DEFAULTS
from mistudio.errors import UserError
from mistudio.sae.config import TrainingConfig, setting_info, setting_names

KINDS = ("training", "extraction", "steering")
KIND_TITLES = {"training": "Training templates", "extraction": "Extraction templates",
               "steering": "Steering presets"}
PRESET_PREFIX = "preset:"
# Where the data comes from is chosen when a template is used, never stored in one.
DATA_SETTINGS = {"name", "activation_id", "activation_path", "target_activation_id",
                 "target_activation_path", "sweep", "member_name"}
EXTRACTION_HELP = {
    "layers": "Layers to read: numbers, 'middle', 'all', 'last' or ranges like 2-5.",
    "hook_types": "Hook points per layer, e.g. resid_post, mlp_out, attn_out.",
    "max_tokens": "Tokens to extract (0 = the whole tokenized dataset).",
    "batch_size": "Sequences per forward pass.",
    "store_dtype": "How the activations are stored on disk.",
    "skip_bos": "Leave out the beginning-of-sequence token's activations.",
}


@dataclass
class Card:
    kind: str
    ref: str          # template id, or the preset's name
    name: str
    description: str
    builtin: bool
    favourite: bool
    use_count: int
    last_used_at: str
    summary: str      # a line of the settings that matter most

    @property
    def locked(self) -> bool:
        return self.builtin


@dataclass
class EditorField:
    key: str
    label: str
    help: str
    text: str         # the template's value as typed ("" = the default)
    default: str      # shown as the placeholder


def value_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value)


def parse_text(text: str):
    """What a field's text means: JSON when it parses (numbers, true, lists), else the text."""
    text = text.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _summary(kind: str, settings: dict) -> str:
    if kind == "training":
        keys = ("architecture", "expansion_factor", "d_sae", "k", "l1_coefficient",
                "total_tokens")
    else:
        keys = ("layers", "hook_types", "max_tokens", "store_dtype")
    return ", ".join(f"{k} {value_text(settings[k])}" for k in keys if k in settings)


class TemplatesState:
    def __init__(self, templates, steering=None):
        self.templates = templates   # TemplateService
        self.steering = steering     # SteeringService (presets), or None
        self.kind = "training"
        self.cards: list[Card] = []
        self.selected: str | None = None

    # ------------------------------------------------------------------ reading

    def _check_kind(self, kind: str) -> str:
        if kind not in KINDS:
            raise UserError(f"Unknown kind {kind!r}.", hint=f"Use one of {', '.join(KINDS)}.")
        if kind == "steering" and self.steering is None:
            raise UserError("Steering presets are not available here.")
        return kind

    def load(self, kind: str | None = None) -> list[Card]:
        self.kind = self._check_kind(kind or self.kind)
        if self.kind == "steering":
            usage = self.templates.usage()
            cards = []
            for p in self.steering.presets():
                u = usage.get(PRESET_PREFIX + p.name)
                feats = ", ".join(str(i.feature) for i in p.interventions
                                  if i.feature is not None)
                cards.append(Card("steering", p.name, p.name, p.description, False,
                                  bool(u and u.favourite), u.use_count if u else 0,
                                  u.last_used_at if u else "",
                                  f"SAE {p.sae.name or p.sae.sae_id or p.sae.hook_name}; "
                                  f"{len(p.interventions)} intervention(s)"
                                  + (f" on features {feats}" if feats else "")))
        else:
            cards = [Card(self.kind, t.id, t.name, t.description, t.builtin, t.favourite,
                          t.use_count, t.last_used_at, _summary(self.kind, t.settings))
                     for t in self.templates.list(kind=self.kind)]
        cards.sort(key=lambda c: not c.favourite)  # favourites first, order kept otherwise
        self.cards = cards
        if self.selected not in {c.ref for c in cards}:
            self.selected = cards[0].ref if cards else None
        return cards

    def card(self, ref: str | None = None) -> Card:
        ref = self.selected if ref is None else ref
        for c in self.cards:
            if c.ref == ref:
                return c
        raise UserError("Choose a template first.")

    def settings(self, ref: str | None = None) -> dict:
        card = self.card(ref)
        if card.kind == "steering":
            return self.steering.preset(card.ref).to_dict()
        return dict(self.templates.get(card.ref, kind=card.kind).settings)

    def editor_fields(self, ref: str | None = None) -> list[EditorField]:
        """The editor's rows, from the same schema the forms use: every training setting
        (labels and help from SETTING_INFO) or every extraction setting."""
        card = self.card(ref)
        values = self.settings(card.ref)
        if card.kind == "training":
            defaults = TrainingConfig()
            out = []
            for key in setting_names():
                if key in DATA_SETTINGS:
                    continue
                info = setting_info(key)
                label = info.label + (f" ({info.unit})" if info.unit else "")
                help_ = info.help + (f" {info.auto}." if info.auto else "")
                out.append(EditorField(key, label, help_, value_text(values.get(key)),
                                       value_text(getattr(defaults, key))))
            out.sort(key=lambda f: f.key not in values)  # what the template sets comes first
            return out
        if card.kind == "extraction":
            return [EditorField(k, k.replace("_", " ").capitalize(), EXTRACTION_HELP.get(k, ""),
                                value_text(values.get(k)), value_text(v))
                    for k, v in EXTRACTION_DEFAULTS.items()]
        raise UserError("Steering presets are edited in the Steering tab.",
                        hint="Use the preset there, change it and save it again.")

    # ------------------------------------------------------------------ writing

    def save_edit(self, texts: dict[str, str], description: str | None = None,
                  ref: str | None = None):
        """Store the editor's values; a blank field means the default. Checked by the same
        validation as a save from the form, so an error names the setting."""
        card = self.card(ref)
        if card.builtin:
            raise UserError("Built-in templates are locked.",
                            hint="Duplicate it and edit the copy.")
        settings = {}
        for key, text in texts.items():
            value = parse_text(text)
            if value is not None:
                settings[key] = value
        if card.kind == "extraction":
            settings = {k: v for k, v in settings.items() if v != EXTRACTION_DEFAULTS.get(k)}
        t = self.templates.update(card.ref, settings, description=description, kind=card.kind)
        self.load()
        return t

    def duplicate(self, ref: str | None = None) -> str:
        card = self.card(ref)
        if card.kind == "steering":
            new_ref = self.steering.duplicate_preset(card.ref).name
        else:
            new_ref = self.templates.duplicate(card.ref, kind=card.kind).id
        self.load()
        self.selected = new_ref
        return new_ref

    def rename(self, new_name: str, ref: str | None = None) -> str:
        card = self.card(ref)
        if card.kind == "steering":
            new_ref = self.steering.rename_preset(card.ref, new_name).name
            self.templates.move_usage(PRESET_PREFIX + card.ref, PRESET_PREFIX + new_ref)
        else:
            new_ref = self.templates.rename(card.ref, new_name, kind=card.kind).id
        self.load()
        self.selected = new_ref
        return new_ref

    def delete(self, ref: str | None = None) -> None:
        card = self.card(ref)
        if card.kind == "steering":
            self.steering.delete_preset(card.ref)
            self.templates.forget_usage(PRESET_PREFIX + card.ref)
        else:
            self.templates.delete(card.ref, kind=card.kind)
        self.selected = None
        self.load()

    def toggle_favourite(self, ref: str | None = None) -> bool:
        card = self.card(ref)
        if card.kind == "steering":
            self.templates.set_usage_favourite(PRESET_PREFIX + card.ref, not card.favourite)
        else:
            self.templates.set_favourite(card.ref, not card.favourite, kind=card.kind)
        self.load()
        return not card.favourite

    def use(self, ref: str | None = None) -> tuple[str, str]:
        """Count a use and say what to open: (kind, ref). Extraction templates are counted
        by the extraction panel when it applies one (``activations.apply_template``)."""
        card = self.card(ref)
        if card.kind == "training":
            self.templates.record_use(card.ref, kind="training")
        elif card.kind == "steering":
            self.templates.record_usage(PRESET_PREFIX + card.ref)
        self.load()
        return card.kind, card.ref

    # ------------------------------------------------------------------ files

    def export(self, path, refs: list[str] | None = None):
        """One template or a bundle (several of the current kind) to a JSON file. Presets
        are one per file (their own format)."""
        refs = refs or ([self.selected] if self.selected else [])
        if not refs:
            raise UserError("Choose a template to export.")
        if self.kind == "steering":
            if len(refs) != 1:
                raise UserError("Steering presets are exported one per file.")
            return self.steering.export_preset(refs[0], path)
        return self.templates.export(refs, path, kind=self.kind)

    def import_file(self, path) -> list[str]:
        """All or nothing: a bad file imports nothing and says which entry and key."""
        if self.kind == "steering":
            names = [self.steering.import_preset(path, keep_both=True).name]
        else:
            names = [t.id for t in self.templates.import_file(path, kind=self.kind)]
        self.load()
        if names:
            self.selected = names[0]
        return names
