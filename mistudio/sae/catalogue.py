"""The catalogue of published SAEs: SAELens's ``pretrained_saes.yaml``, browsable and checked.

The app ships a snapshot of that file (MIT licence, SAELens; see ``resources/README.md``
beside it for the version and date) and reads a newer copy when the user points at one.
Each entry (release + SAE id) becomes a :class:`CatalogueEntry` with what the file gives
(repo, path, model, L0, variance explained, Neuronpedia id) and what can be read from its
names (hook point, layer, width), and a verdict on whether this app can load it *before*
anything is downloaded: SAELens-format folders and Gemma Scope ``params.npz`` files load;
entries that need one of SAELens's other conversion functions, hooks the resolver lacks
(``hook_z``) or an input scaling that is not folded into the weights are flagged with the
reason.

Model names in the file are TransformerLens aliases (``gpt2-small``); :data:`TL_ALIASES`
maps them to Hugging Face ids (the ids TransformerLens's ``OFFICIAL_MODEL_NAMES`` lists),
so entries can be matched with the user's registered models. Torch-free.
"""

from __future__ import annotations

import gzip
import re
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from mistudio.errors import UserError

SNAPSHOT = Path(__file__).resolve().parents[1] / "resources" / "pretrained_saes.yaml.gz"
#: The SAELens release the snapshot was taken from, and when.
SNAPSHOT_SOURCE = "sae-lens 6.54.12 (PyPI wheel), sae_lens/pretrained_saes.yaml"
SNAPSHOT_DATE = "2026-12-05"

#: TransformerLens model aliases used in the catalogue -> Hugging Face Hub ids.
TL_ALIASES = {
    "gpt2-small": "openai-community/gpt2", "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "pythia-70m-deduped": "EleutherAI/pythia-70m-deduped",
    "pythia-70m": "EleutherAI/pythia-70m", "pythia-160m-deduped": "EleutherAI/pythia-160m-deduped",
    "gemma-2b": "google/gemma-2b", "gemma-2b-it": "google/gemma-2b-it",
    "gemma-2-2b": "google/gemma-2-2b", "gemma-2-2b-it": "google/gemma-2-2b-it",
    "gemma-2-9b": "google/gemma-2-9b", "gemma-2-9b-it": "google/gemma-2-9b-it",
    "gemma-2-27b": "google/gemma-2-27b", "mistral-7b": "mistralai/Mistral-7B-v0.1",
    "qwen3-0.6b": "Qwen/Qwen3-0.6B", "qwen3-1.7b": "Qwen/Qwen3-1.7B",
    "qwen3-4b": "Qwen/Qwen3-4B", "qwen3-8b": "Qwen/Qwen3-8B", "qwen3-14b": "Qwen/Qwen3-14B",
}

#: Conversion functions whose files this app reads (None: SAELens's own layout).
LOADABLE_CONVERSIONS = {None: "saelens", "gemma_2": "gemma_scope"}
#: Model name patterns of the families the hook resolver knows (mistudio.models.hooks).
_KNOWN_FAMILY = re.compile(r"gpt2|pythia|gpt-neox|llama|smollm|mistral|qwen|gemma|olmo",
                           re.IGNORECASE)
_HOOK = re.compile(r"blocks\.(\d+)\.(?:attn\.)?hook_([a-z_]+)")
_LAYER = re.compile(r"(?:layer|layers|blocks|block)[._-]?(\d+)(?![0-9k])", re.IGNORECASE)
_WIDTH = re.compile(r"width[_-]?(\d+)([km]?)|(?<![a-z0-9])(\d+)([km])(?![a-z0-9])",
                    re.IGNORECASE)
_SUPPORTED_HOOKS = ("resid_pre", "resid_post", "attn_out", "mlp_out", "mlp_in")


@dataclass(frozen=True)
class CatalogueEntry:
    release: str
    sae_id: str
    repo_id: str
    path: str
    model: str              #: as the file names it (a TransformerLens alias or a Hub id)
    hub_model: str          #: the Hugging Face id
    conversion: str         #: SAELens conversion function ("" for its own layout)
    hook_name: str          #: TransformerLens name; read from the id, or inferred
    hook_inferred: bool     #: True when guessed from the release name
    layer: int | None
    d_sae: int | None       #: from "width_16k"-style names
    l0: float | None
    variance_explained: float | None
    neuronpedia: str
    loadable: bool
    reason: str             #: why it cannot be loaded ("" when it can)

    @property
    def key(self) -> str:
        return f"{self.release}/{self.sae_id}"

    def to_dict(self) -> dict:
        return {**asdict(self), "key": self.key}


@dataclass
class Catalogue:
    entries: list[CatalogueEntry]
    source: str             #: "snapshot" or the file's path
    description: str        #: where it comes from, with the date

    def releases(self) -> list[str]:
        return sorted({e.release for e in self.entries})

    def models(self) -> list[str]:
        return sorted({e.hub_model for e in self.entries})

    def get(self, key: str) -> CatalogueEntry:
        release, _, sae_id = key.partition("/")
        for e in self.entries:
            if e.release == release and e.sae_id == sae_id:
                return e
        if not any(e.release == release for e in self.entries):
            raise UserError(f"No release {release!r} in the SAE catalogue.",
                            hint="`mistudio sae catalogue` lists the releases.")
        raise UserError(f"Release {release!r} has no SAE {sae_id!r}.",
                        hint=f"`mistudio sae catalogue --release {release}` lists its SAEs.")

    def filter(self, *, model: str = "", release: str = "", text: str = "",
               registered: list[str] | None = None, loadable_only: bool = False
               ) -> list[CatalogueEntry]:
        """Entries matching a model (alias or Hub id), a release, a free-text search over
        release/id/hook, the user's registered models (Hub ids or names), loadability."""
        want_model = hub_model_id(model).lower() if model else ""
        regs = {model_key(r) for r in registered or []} if registered is not None else None
        words = text.lower().split()
        out = []
        for e in self.entries:
            if want_model and model_key(e.hub_model) != model_key(want_model):
                continue
            if release and e.release != release:
                continue
            if regs is not None and model_key(e.hub_model) not in regs:
                continue
            if loadable_only and not e.loadable:
                continue
            if words:
                hay = f"{e.release} {e.sae_id} {e.hook_name} {e.model}".lower()
                if not all(w in hay for w in words):
                    continue
            out.append(e)
        return out


def hub_model_id(name: str) -> str:
    """A TransformerLens alias (``gpt2-small``) as its Hub id; Hub ids pass through."""
    return TL_ALIASES.get(name.strip().lower(), name.strip())


def model_key(name: str) -> str:
    """Compare models by their Hub id's last part, case-insensitively (``gpt2`` matches
    ``openai-community/gpt2``)."""
    return hub_model_id(name).rsplit("/", 1)[-1].lower()


_CACHE: dict[tuple, Catalogue] = {}
_CACHE_LOCK = threading.Lock()


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """The shipped snapshot, or the ``pretrained_saes.yaml`` at ``path`` (parsed once per
    file version: the snapshot takes about a second with libyaml)."""
    source = Path(path).expanduser() if path else SNAPSHOT
    try:
        stat = source.stat()
    except OSError as exc:
        raise UserError(f"Cannot read the SAE catalogue {source}: {exc.strerror or exc}.",
                        hint="Point at SAELens's pretrained_saes.yaml (it is inside the "
                             "sae-lens package: sae_lens/pretrained_saes.yaml).") from exc
    key = (str(source), stat.st_mtime_ns, stat.st_size)
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
    data = _parse_yaml(source)
    entries = parse_entries(data, source)
    desc = (f"SAELens's pretrained_saes.yaml, snapshot of {SNAPSHOT_SOURCE}, taken "
            f"{SNAPSHOT_DATE} (MIT licence, (c) Joseph Bloom and the SAELens contributors)"
            if not path else f"{source} (your copy of SAELens's pretrained_saes.yaml)")
    cat = Catalogue(entries, "snapshot" if not path else str(source), desc)
    with _CACHE_LOCK:
        _CACHE[key] = cat
    return cat


def _parse_yaml(source: Path) -> dict:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    opener = gzip.open if source.suffix == ".gz" else open
    try:
        with opener(source, "rt", encoding="utf-8") as fh:
            data = yaml.load(fh, Loader=loader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UserError(f"{source} is not a readable YAML file ({exc}).",
                        hint="Point at SAELens's pretrained_saes.yaml.") from exc
    if not isinstance(data, dict):
        raise UserError(f"{source} does not hold SAELens's catalogue (a mapping of releases).",
                        hint="Point at SAELens's pretrained_saes.yaml.")
    return data


def parse_entries(data: dict, source: Path | str = "") -> list[CatalogueEntry]:
    entries = []
    for release, value in data.items():
        if not isinstance(value, dict) or "saes" not in value or "repo_id" not in value:
            raise UserError(f"Release {release!r} in {source} lacks 'repo_id' or 'saes'.",
                            hint="Is this SAELens's pretrained_saes.yaml?")
        model = str(value.get("model") or "")
        conversion = value.get("conversion_func") or None
        overrides = value.get("config_overrides") or {}
        for item in value["saes"] or []:
            entries.append(_entry(str(release), value, item, model, conversion, overrides))
    return entries


def _entry(release, value, item, model, conversion, overrides) -> CatalogueEntry:
    sae_id, path = str(item["id"]), str(item.get("path", ""))
    hook, inferred, layer = _hook_of(release, sae_id, path, overrides)
    width = _width_of(f"{sae_id} {path}")
    hub = hub_model_id(model)
    reasons = []
    if conversion not in LOADABLE_CONVERSIONS:
        reasons.append(f"needs SAELens's '{conversion}' conversion, which this app lacks")
    hook_type = (_HOOK.search(hook).group(2) if _HOOK.search(hook) else hook)
    if not hook and conversion is not None:  # (SAELens-format files name their hook)
        reasons.append("its hook point cannot be read from its name")
    elif hook_type and hook_type not in _SUPPORTED_HOOKS:
        reasons.append(f"hook {hook} is not one the app can hook (it has "
                       f"{', '.join(_SUPPORTED_HOOKS)})")
    if "norm_scaling_factor" in item or (overrides.get("normalize_activations")
                                          not in (None, "none")):
        reasons.append("its inputs need a scaling that is not folded into its weights")
    if not _KNOWN_FAMILY.search(hub):
        reasons.append(f"the model family of {hub} is not one the hook resolver knows")
    return CatalogueEntry(
        release=release, sae_id=sae_id, repo_id=str(value["repo_id"]), path=path,
        model=model, hub_model=hub, conversion=conversion or "", hook_name=hook,
        hook_inferred=inferred, layer=layer, d_sae=width, l0=_num(item.get("l0")),
        variance_explained=_num(item.get("variance_explained")),
        neuronpedia=str(item.get("neuronpedia") or ""), loadable=not reasons,
        reason="; ".join(reasons))


def _num(v) -> float | None:
    try:
        return float(v) if v is not None else None
    except (TypeError, ValueError):
        return None


def _hook_of(release: str, sae_id: str, path: str, overrides: dict):
    """(hook name, inferred?, layer): exact when the id or path is a TransformerLens hook
    name (SAELens-format releases), else guessed from the layer and the release's kind."""
    given = overrides.get("hook_name")
    for text in (str(given or ""), sae_id, path):
        m = _HOOK.search(text)
        if m:
            return m.group(0), False, int(m.group(1))
    if "embed" in sae_id.lower():
        return "hook_embed", True, None
    m = _LAYER.search(sae_id) or _LAYER.search(path)
    layer = int(m.group(1)) if m else None
    if layer is None:
        return "", True, None
    r = release.lower()
    if "transcoder" in r or "-tc" in r or "clt" in r:
        kind = "mlp_in"
    elif re.search(r"att", r):
        return f"blocks.{layer}.attn.hook_z", True, layer
    elif "mlp" in r:
        kind = "mlp_out"
    else:
        kind = "resid_post"
    return f"blocks.{layer}.hook_{kind}", True, layer


def _width_of(text: str) -> int | None:
    m = _WIDTH.search(text)
    if not m:
        return None
    number, unit = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    n, unit = int(number), unit.lower()
    if not unit:
        return n
    # "16k", "65k", "1m" name powers of two (16384, 65536, 2^20); "24k" is 24 x 1024
    approx = n * (1000 if unit == "k" else 1_000_000)
    pow2 = 1 << round(approx).bit_length()
    nearest = min((pow2 // 2, pow2), key=lambda v: abs(v - approx))
    return nearest if abs(nearest - approx) <= 0.05 * approx else n * (1024 if unit == "k"
                                                                         else 1024 ** 2)
