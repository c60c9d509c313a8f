"""Job ``datasets.import``: read a source into ``datasets/<id>/documents.arrow``.

The dataset is built in ``tmp/`` and moved into place only when complete; its row turns
``ready`` after that. On any failure or cancel the build folder and the row are removed,
so no half-imported dataset is left behind and nothing existing is touched.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

from mistudio.data.raw_store import DOCUMENTS_FILE, RawCorpusWriter
from mistudio.data.reading import open_source
from mistudio.data.sources import SourceSpec
from mistudio.manifest import write_manifest
from mistudio.paths import (atomic_write_json, check_free_space, dir_size, human_bytes,
                            no_room_as_user_error)
from mistudio.reliability import crash_point
from mistudio.store.db import now_iso

# The Hub token is handed from the service to the job in memory, never through the jobs
# table (whose params are stored in clear text).
_TOKENS: dict[str, str] = {}
_TOKENS_LOCK = threading.Lock()


def hand_over_token(dataset_id: str, token: str | None) -> None:
    if token:
        with _TOKENS_LOCK:
            _TOKENS[dataset_id] = token


def _take_token(dataset_id: str) -> str | None:
    with _TOKENS_LOCK:
        token = _TOKENS.pop(dataset_id, None)
    return token or os.environ.get("HF_TOKEN") or None


def build_dataset_folder(spec: SourceSpec, folder: Path, ctx, *, token: str | None = None) -> dict:
    """Read ``spec`` into ``folder`` (documents.arrow, source.json, stats.json); return stats."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ctx.progress(0, None, "Opening the source...")
    reader = open_source(spec, token=token)
    if reader.unit == "bytes" and reader.total:
        # Arrow text plus offsets is about the size of the input text.
        check_free_space(folder, int(reader.total * 1.3), what="importing this dataset")
    writer = RawCorpusWriter(folder / DOCUMENTS_FILE, text_column=spec.text_column,
                             where=reader.where, limit=spec.limit)
    unit = "rows" if reader.unit == "rows" else "bytes"
    for table, done in reader.tables():
        ctx.check_cancelled()
        writer.write(table)
        if spec.limit:
            ctx.progress(writer.n_docs, spec.limit, f"{writer.n_docs:,} documents")
        elif reader.total:
            what = human_bytes(done) if unit == "bytes" else f"{done:,} rows"
            ctx.progress(done, reader.total, f"{writer.n_docs:,} documents ({what} read)")
        else:
            ctx.progress(writer.n_docs, None, f"{writer.n_docs:,} documents")
        if writer.full:
            break
    stats = writer.close()
    provenance = {**reader.provenance(), "spec": spec.to_dict(), "imported_at": now_iso()}
    atomic_write_json(folder / "source.json", provenance)
    atomic_write_json(folder / "stats.json", stats)
    return {"stats": stats, "provenance": provenance}


def run_import(params: dict, ctx) -> dict:
    from mistudio.data.repository import DataRepos

    repos = DataRepos.open(params["data_dir"])
    dataset_id = params["dataset_id"]
    final = repos.paths.entity_dir("datasets", dataset_id)
    build = repos.paths.tmp / f"import-{dataset_id}"
    moved = False
    try:
        spec = SourceSpec.from_dict(params["source"])
        if build.exists():
            shutil.rmtree(build)
        with no_room_as_user_error(final):
            out = build_dataset_folder(spec, build, ctx, token=_take_token(dataset_id))
        if final.exists():  # never overwrite: ids are fresh, so this is a leftover
            raise RuntimeError(f"dataset folder {final} already exists")
        write_manifest(build)  # last into the folder: what "ready" promises is all there
        crash_point("import.rename")
        os.replace(build, final)
        moved = True
        crash_point("import.row.ready")  # in place, its row still "importing"
        stats = out["stats"]
        repos.datasets.update(
            dataset_id, status="ready", source=out["provenance"],
            text_column=stats["text_column"], columns=stats["columns"], n_docs=stats["n_docs"],
            n_chars=stats["n_chars"], size_bytes=dir_size(final), stats=stats, job_id="")
        ctx.log(f"Imported {stats['n_docs']:,} documents ({stats['n_chars']:,} characters)"
                + (f"; {stats['n_empty_skipped']:,} empty ones skipped" if
                   stats["n_empty_skipped"] else "") + ".")
        if stats["dropped_columns"]:
            ctx.log("Columns not kept (not plain values): "
                    + ", ".join(stats["dropped_columns"]), "warning")
        return {"dataset_id": dataset_id, "n_docs": stats["n_docs"], "n_chars": stats["n_chars"]}
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        if moved:
            shutil.rmtree(final, ignore_errors=True)
        repos.datasets.delete(dataset_id)
        raise
    finally:
        repos.close()
