"""Opening any corpus source: local files, the demo corpus or the Hugging Face Hub
(``open_source``), a first look at its columns (``inspect_source``), and the overview of a
Hub dataset the import dialog's Check shows (``hub_overview``)."""

from __future__ import annotations

from mistudio.data.hub_source import HubReader, hub_error
from mistudio.data.sources import (DemoReader, LocalFileReader, SourceReader, SourceSpec,
                                   guess_text_column)
from mistudio.errors import UserError


def open_source(spec: SourceSpec, token: str | None = None) -> SourceReader:
    if spec.kind == "local":
        return LocalFileReader(spec)
    if spec.kind == "demo":
        return DemoReader(spec)
    return HubReader(spec, token=token)


def inspect_source(spec: SourceSpec, token: str | None = None, rows: int = 5) -> dict:
    """Columns, the guessed text column and a few rows: for the column picker."""
    reader = open_source(spec, token)
    first = next(iter(reader.tables()), None)
    if first is None:
        raise UserError(f"{reader.where} holds no records.", hint="Pick another source.")
    table = first[0]
    guess, candidates = guess_text_column(table.schema)
    return {
        "columns": [{"name": f.name, "type": str(f.type)} for f in table.schema],
        "text_column": guess,
        "text_candidates": candidates,
        "preview": table.slice(0, rows).to_pylist(),
        "format": getattr(reader, "format", spec.kind),
    }


def hub_overview(spec: SourceSpec, token: str | None = None, rows: int = 3) -> dict:
    """What a Hub dataset offers, for the import dialog's Check: its configurations, the
    splits of the chosen (or only) configuration, and that split's columns with the guessed
    text column and a few rows (streamed: one batch is downloaded). Uses the network."""
    import datasets

    kw = {"token": token or None, "revision": spec.revision or None}
    try:
        configs = list(datasets.get_dataset_config_names(spec.hub_id, **kw))
    except Exception as exc:  # translate the library's errors into what to do
        raise hub_error(spec, exc) from exc
    out = {"hub_id": spec.hub_id, "configs": configs, "config": spec.config, "splits": [],
           "split": "", "columns": [], "text_column": None, "text_candidates": [],
           "preview": [], "message": ""}
    if spec.config and configs and spec.config not in configs:
        raise UserError(f"{spec.hub_id!r} has no configuration {spec.config!r}. Available: "
                        f"{', '.join(configs)}.", hint="Choose one of its configurations.")
    config = spec.config or (configs[0] if len(configs) == 1 else "")
    if not config and len(configs) > 1:
        out["message"] = (f"{len(configs)} configurations: choose one to see its splits and "
                          "columns.")
        return out
    out["config"] = config
    try:
        splits = list(datasets.get_dataset_split_names(spec.hub_id, config or None, **kw))
    except Exception as exc:
        raise hub_error(SourceSpec(**{**spec.to_dict(), "config": config}), exc) from exc
    out["splits"] = splits
    split = spec.split if spec.split in splits else (splits[0] if splits else "")
    out["split"] = split
    if spec.split and splits and spec.split not in splits:
        out["message"] = f"No split {spec.split!r}; showing {split!r}."
    if split:
        info = inspect_source(SourceSpec(**{**spec.to_dict(), "config": config, "split": split,
                                            "kind": "hub"}), token=token, rows=rows)
        out.update(columns=info["columns"], text_column=info["text_column"],
                   text_candidates=info["text_candidates"], preview=info["preview"])
    return out
