"""The pretrained-SAE catalogue as user actions: browse, filter, choose the file, download.

Built by the facade with explicit dependencies (``Studio.sae_catalogue``). Downloads are
``sae.catalogue_download`` jobs (:func:`mistudio.sae.job.catalogue_import_job`); when one
completes, the training service records the SAE like any other import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from mistudio.errors import UserError
from mistudio.sae.catalogue import Catalogue, CatalogueEntry, load_catalogue, model_key
from mistudio.store.db import new_id

DOWNLOAD_KIND = "sae.catalogue_download"


class SAECatalogueService:
    def __init__(self, *, paths, settings: Callable, update_settings: Callable,
                 submit_job: Callable, hf_token: Callable[[], str | None],
                 registered_models: Callable[[], list[str]],
                 find_imported: Callable[[str], list]):
        self.paths = paths
        self._settings = settings
        self._update_settings = update_settings
        self._submit_job = submit_job
        self._hf_token = hf_token
        self._registered_models = registered_models
        self._find_imported = find_imported
        #: Hub address for downloads (None: HF_ENDPOINT or huggingface.co); tests and
        #: mirrors set it
        self.endpoint: str | None = None

    # ------------------------------------------------------------------ reading

    def catalogue_file(self) -> str:
        """The user's newer pretrained_saes.yaml, or "" for the shipped snapshot."""
        return self._settings().sae_catalogue_file

    def catalogue(self, path: str | Path | None = None) -> Catalogue:
        """The catalogue (parsed once per file version; ~2 s the first time)."""
        chosen = path if path is not None else self.catalogue_file()
        return load_catalogue(chosen or None)

    def set_catalogue_file(self, path: str | Path | None) -> Catalogue:
        """Read the catalogue from ``path`` from now on ("" / None: back to the snapshot).
        The file is parsed first: a file that is not SAELens's catalogue is refused."""
        text = str(Path(path).expanduser().resolve()) if path else ""
        cat = load_catalogue(text or None)
        self._update_settings(sae_catalogue_file=text)
        return cat

    def registered_models(self) -> list[str]:
        return self._registered_models()

    def model_choices(self) -> list[tuple[str, bool]]:
        """(Hub id, registered?) of every model in the catalogue, registered ones first."""
        regs = {model_key(r) for r in self.registered_models()}
        models = self.catalogue().models()
        return ([(m, True) for m in models if model_key(m) in regs]
                + [(m, False) for m in models if model_key(m) not in regs])

    def browse(self, *, model: str = "", release: str = "", text: str = "",
               registered_only: bool = False, loadable_only: bool = False,
               path: str | Path | None = None) -> list[CatalogueEntry]:
        regs = self.registered_models() if registered_only else None
        return self.catalogue(path).filter(model=model, release=release, text=text,
                                           registered=regs, loadable_only=loadable_only)

    def entry(self, key: str, path: str | Path | None = None) -> CatalogueEntry:
        if "/" not in key:
            raise UserError(f"{key!r} is not RELEASE/ID.",
                            hint="For example gpt2-small-res-jb/blocks.8.hook_resid_pre.")
        return self.catalogue(path).get(key)

    def imported(self, key: str) -> list:
        """SAE records already imported from this catalogue entry."""
        return self._find_imported(f"catalogue:{key}")

    # ------------------------------------------------------------------ downloading

    def start_download(self, key: str, *, endpoint: str | None = None):
        """Download and import one entry as a background job; refused up front (with the
        reason) when the app cannot load it."""
        entry = self.entry(key)
        if not entry.loadable:
            raise UserError(f"{entry.key} cannot be loaded by this app: {entry.reason}.",
                            hint="Pick an entry without a warning, or convert it with SAELens "
                                 "and import the folder (Add SAE > From a folder).")
        sae_id = new_id("sae")
        job_id = new_id("job")
        token = self._hf_token()
        if token:  # handed to the job in memory, never written into its parameters
            from mistudio.models.sources import set_job_token

            set_job_token(job_id, token)
        return self._submit_job(DOWNLOAD_KIND, {
            "release": entry.release, "sae_id": entry.sae_id, "sae_id_new": sae_id,
            "catalogue_file": self.catalogue_file(), "data_dir": str(self.paths.root),
            "endpoint": endpoint or self.endpoint},
            title=f"Download SAE {entry.key}", target=sae_id, job_id=job_id)
