"""Where an SAE's spliced evaluation (and an on-the-fly training) reads from: the model and
the tokenization, resolved from an activation set's metadata, a name, or a model's fitting
tokenizations. Used by :class:`mistudio.app.trainings.TrainingService`."""

from __future__ import annotations

from pathlib import Path

from mistudio.app.datasets import DatasetService
from mistudio.app.models import ModelService
from mistudio.errors import UserError
from mistudio.sae.config import TrainingConfig


class EvaluationSources:
    def __init__(self, *, models: ModelService, datasets: DatasetService):
        self.models = models
        self.datasets = datasets

    def spec_from_activations(self, path: str, target: str = "", *, model: str = "",
                               tokenization: str = "", hook_name: str = ""):
        from mistudio.activations.format import ActivationSet
        from mistudio.sae.evaluation import EvalSpec, held_out_start

        try:
            meta = ActivationSet(path).meta
        except (OSError, UserError) as exc:
            raise UserError(f"The activation set {path} cannot be read ({exc}).",
                            hint="Evaluate with a model and tokenization given explicitly.") \
                from exc
        model_rec = (self.model(model, "", given=True) if model
                     else self.model(meta.get("model_id") or "", meta.get("model_name") or ""))
        own_tokens = str(meta.get("tokenization") or "")
        tok_folder = self.tokenization(tokenization or own_tokens, model_rec)
        same = bool(own_tokens) and Path(tok_folder).resolve() == Path(own_tokens).resolve()
        hook_out = ""
        if target:
            try:
                hook_out = ActivationSet(target).hook_name
            except (OSError, UserError):
                hook_out = ""
        hook = hook_name or str(meta.get("hook_name") or "")
        if not hook:
            raise UserError("The activation set does not name its hook point.",
                            hint="Give the hook point to evaluate at.")
        self.check_hook(model_rec, hook)
        return EvalSpec(model_folder=model_rec.folder, model_name=model_rec.name,
                        trust_remote_code=model_rec.trust_remote_code,
                        model_dtype=str(meta.get("model_dtype") or "auto"),
                        tokenization=tok_folder, hook_name=hook, hook_name_out=hook_out,
                        start_seq=held_out_start(path) if same else 0,
                        held_out=True if same else None)

    def onthefly_spec(self, cfg: TrainingConfig) -> tuple[dict, int]:
        """The job's ``onthefly`` source spec (model and tokenization resolved to folders)
        and the input width; the settings are validated against the tokenization."""
        from mistudio.activations.extract import count_valid_tokens
        from mistudio.data.tokenized import TokenizedDataset

        model = self.models.require_ready(cfg.onthefly_model)
        if cfg.hook_name:
            self.check_hook(model, cfg.hook_name)
        tok_folder = self.tokenization(cfg.onthefly_tokenization, model)
        tok = TokenizedDataset(Path(tok_folder))
        if model.tokenizer_fingerprint and tok.fingerprint != model.tokenizer_fingerprint:
            raise UserError(f"The tokenization was made with another tokenizer than "
                            f"{model.name}'s.", hint="Pick one made with this model.")
        num_rows = count_valid_tokens(tok, True, tok.meta.get("bos_token_id"))
        d_in = int(model.d_model or 0)
        cfg.validate(d_in=d_in or None, num_rows=num_rows)
        spec = {"model_folder": model.folder, "model_name": model.name, "model_id": model.id,
                "trust_remote_code": model.trust_remote_code, "tokenization": tok_folder,
                "hook_name": cfg.hook_name, "batch_sequences": cfg.onthefly_batch_sequences,
                "buffer_rows": cfg.shuffle_buffer_tokens, "model_dtype": "auto"}
        return spec, d_in

    def check_hook(self, model_rec, hook_name: str) -> None:
        """A hook name that does not exist in the model is refused before any job starts
        (the job would fail after loading the model, leaving a failed record behind)."""
        from mistudio.models import hooks

        summary = self.models.inspect(model_rec.id)
        target = hooks.resolve(hook_name, summary["model_type"], summary["n_layers"])
        if target.hook_type == "module":
            self.models.check_module_path(model_rec.id, target.module_path)

    def model(self, ref: str, name: str, *, given: bool = False):
        """The registered model ``ref``; ``given``: the user named it (an unknown name is
        then simply "No model 'x'"), else it comes from the SAE's or set's metadata."""
        label = name or ref
        if not ref:
            raise UserError(
                f"The activations were not extracted from a model registered in the app"
                f"{f' (they name {name!r})' if name else ''}, so the SAE cannot be spliced in.",
                hint="Add the model in the Models tab, then evaluate the SAE with it "
                     "(`mistudio sae evaluate ID --model NAME --tokenization ID`).")
        try:
            return self.models.require_ready(ref)
        except UserError as exc:
            if given:
                raise
            raise UserError(f"The model {label!r} is not available in the app: {exc}",
                            hint="Add (or finish adding) it in the Models tab, then evaluate "
                                 "with `mistudio sae evaluate`.") from exc

    def tokenization(self, tokenization: str, model_rec) -> str:
        if tokenization:
            path = Path(tokenization).expanduser()
            if path.is_dir():
                return str(path)
            try:
                return str(self.datasets.get_tokenization(tokenization).path)
            except UserError:
                raise UserError(f"No tokenization {tokenization!r}.",
                                hint="Give a tokenization id (Datasets tab) or folder.") from None
        fitting = [t for t in self.datasets.tokenizations()
                   if t.status == "ready" and model_rec.tokenizer_fingerprint
                   and t.tokenizer_fingerprint == model_rec.tokenizer_fingerprint]
        if not fitting:
            raise UserError(f"No tokenization was made with {model_rec.name}'s tokenizer.",
                            hint="Tokenize a dataset with this model in the Datasets tab, or "
                                 "give a tokenization.")
        return str(fitting[0].path)
