"""The SAE jobs: ``sae.train`` (GPU, pausable; thin: builds the source and the trainer) and
``sae.import`` (:func:`import_job`).

``params``: ``config`` (a :class:`~mistudio.sae.config.TrainingConfig` dict),
``activation_path`` (and ``target_activation_path`` for transcoders), optionally
``resume_from`` (a checkpoint folder), ``out_dir`` (default: the job's artifact folder,
which the service sets to ``trainings/<id>/``) and ``evaluation`` (``{"spec": EvalSpec
dict}`` or ``{"skip_reason": ...}``, for the spliced-in CE/KL evaluation) and, under
``torchrun``, ``distributed`` (``world_size``, this process's ``rank`` and ``device``: only
rank 0 writes). Returns the result summary (also written to ``result.json``).
"""

from __future__ import annotations

from pathlib import Path

from mistudio.errors import JobCancelled as JobCancelledError
from mistudio.errors import UserError
from mistudio.sae.config import TOPK_FAMILY


def train_job(params: dict, ctx) -> dict:
    from mistudio.hardware import resolve_device
    from mistudio.sae.config import TrainingConfig
    from mistudio.sae.data import open_source
    from mistudio.sae.trainer import Trainer

    cfg = TrainingConfig.from_dict(params["config"])
    path = params.get("activation_path") or cfg.activation_path
    onthefly = params.get("onthefly")
    if not path and not onthefly:
        raise UserError("The training job has no activation set.",
                        hint="Start trainings from the Training tab or `mistudio train`.")
    target = params.get("target_activation_path") or cfg.target_activation_path or None
    dist = params.get("distributed") or {}
    world = int(dist.get("world_size", 1))
    if world > 1:  # one process of a torchrun group (mistudio.cli.train)
        device = dist.get("device") or "cpu"
    else:
        device = resolve_device(cfg.device if cfg.device != "auto" else ctx.device)
        if cfg.device == "cuda" and device != "cuda":
            ctx.log("CUDA was requested but is not available; training on the CPU.", "warning")
    if onthefly and not path:  # activations computed from the model as training goes
        from mistudio.sae.onthefly import ModelActivationSource

        ctx.progress(0, None, f"Loading {onthefly.get('model_name') or 'the model'} to "
                     "compute activations on the fly...")
        source = ModelActivationSource(onthefly, device=device)
    else:
        source = open_source(path, target)
    rank = int(dist.get("rank", 0))
    out = params.get("out_dir") or ctx.artifact_dir
    trainer = Trainer(cfg, source, Path(out) if out and rank == 0 else None, ctx=ctx,
                      device=device, rank=rank, world_size=world,
                      resume_from=params.get("resume_from") or None,
                      evaluation=params.get("evaluation"))
    try:
        return trainer.run()
    finally:
        if onthefly and not path:
            source.close()  # the model's lease in the pool


def import_job(params: dict, ctx) -> dict:
    """Job ``sae.import``: read an SAE in any supported layout, save it in SAELens layout."""
    from mistudio.paths import DataPaths
    from mistudio.sae.formats import download_sae, load_sae, save_saelens

    paths = DataPaths(Path(params["data_dir"]))
    source = str(params["source"])
    subfolder = params.get("subfolder") or ""
    folder = Path(source).expanduser()
    if not folder.exists():
        if "/" not in source or source.startswith((".", "/", "~")):
            raise UserError(f"{source} is neither a folder nor a Hugging Face repo id.",
                            hint="Give a local folder or 'owner/repo' with the SAE's subfolder.")
        ctx.log(f"Downloading {source}/{subfolder} from the Hugging Face Hub...")
        folder = download_sae(source, subfolder, cache_dir=paths.cache / "hub",
                              token=params.get("token"), revision=params.get("revision"))
    elif subfolder:
        folder = folder / subfolder
    sae, info = load_sae(folder)
    sae_id = params["sae_id"]
    dest = paths.entity_dir("trainings", sae_id)
    save_saelens(dest, sae, model_name=info.get("model_name", ""),
                 hook_name=info.get("hook_name", ""),
                 extra_metadata={"imported_from": source, "original_format": info["format"]})
    kind = ("skip_transcoder" if sae.W_skip is not None else
            "transcoder" if sae.transcoder else "sae")
    return {"id": sae_id, "folder": str(dest), "name": params.get("name") or
            f"{Path(source).name}{'/' + subfolder if subfolder else ''}",
            "source_ref": f"{source}{'/' + subfolder if subfolder else ''}",
            "format": info["format"], "architecture": sae.architecture, "kind": kind,
            "d_in": sae.d_in, "d_sae": sae.d_sae, "d_out": sae.d_out,
            "k": sae.k if sae.architecture in TOPK_FAMILY else None,
            "model_name": info.get("model_name", ""), "hook_name": info.get("hook_name", "")}


def catalogue_import_job(params: dict, ctx) -> dict:
    """Job ``sae.catalogue_download``: one SAE of the catalogue (``release``, ``sae_id``),
    downloaded with byte progress (resumable: the Hub cache keeps partial files), then
    imported like any other SAE, with the catalogue's model and hook filled in where the
    files do not name them. Params: ``catalogue_file`` ("" for the snapshot), ``sae_id_new``
    (the record id), ``data_dir``, ``endpoint`` (tests)."""
    from mistudio.models.sources import _progress_bar_class, _take_token
    from mistudio.paths import DataPaths
    from mistudio.sae.catalogue import load_catalogue
    from mistudio.sae.formats import download_sae, load_sae, save_saelens

    entry = load_catalogue(params.get("catalogue_file") or None).get(
        f"{params['release']}/{params['sae_id']}")
    if not entry.loadable:
        raise UserError(f"{entry.key} cannot be loaded by this app: {entry.reason}.",
                        hint="Pick an entry without a warning (`mistudio sae catalogue "
                             "--loadable`), or convert it with SAELens and import the folder.")
    paths = DataPaths(Path(params["data_dir"]))
    ctx.progress(0, None, f"Downloading {entry.repo_id}/{entry.path} from the Hub...")
    try:
        folder = download_sae(entry.repo_id, entry.path, cache_dir=paths.cache / "hub",
                              token=_take_token(ctx.job_id), endpoint=params.get("endpoint"),
                              tqdm_class=_progress_bar_class(ctx))
    except (UserError, JobCancelledError):
        raise
    except Exception as exc:
        if "JobCancelled" in repr(exc) or isinstance(exc.__cause__, JobCancelledError):
            raise JobCancelledError() from exc
        raise UserError(f"Downloading {entry.key} failed: {type(exc).__name__}: {exc}",
                        hint="Check the network and retry: the bytes downloaded so far are "
                             "kept and the download resumes.") from exc
    ctx.progress(1, 1, "Reading the SAE...")
    sae, info = load_sae(folder)
    sae_id = params["sae_id_new"]
    dest = paths.entity_dir("trainings", sae_id)
    model = info.get("model_name") or entry.hub_model
    hook = info.get("hook_name") or entry.hook_name
    save_saelens(dest, sae, model_name=model, hook_name=hook,
                 extra_metadata={"imported_from": f"{entry.repo_id}/{entry.path}",
                                 "catalogue": entry.key, "original_format": info["format"],
                                 "hub_model": entry.hub_model})
    kind = ("skip_transcoder" if sae.W_skip is not None else
            "transcoder" if sae.transcoder else "sae")
    return {"id": sae_id, "folder": str(dest), "name": entry.key,
            "source_ref": f"catalogue:{entry.key}", "format": info["format"],
            "architecture": sae.architecture, "kind": kind, "d_in": sae.d_in,
            "d_sae": sae.d_sae, "d_out": sae.d_out,
            "k": sae.k if sae.architecture in TOPK_FAMILY else None,
            "model_name": model, "hook_name": hook}
