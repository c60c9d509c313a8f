"""Reading a corpus from the Hugging Face Hub: streamed rows and clear errors. ``datasets`` is
imported only here, when a Hub source is read."""

from __future__ import annotations

import re
from typing import Iterator

import pyarrow as pa

from mistudio.data.sources import SourceReader, SourceSpec, stringify
from mistudio.errors import UserError


class HubReader(SourceReader):
    """A Hugging Face dataset, streamed so that only what is read is downloaded."""

    unit = "rows"

    def __init__(self, spec: SourceSpec, token: str | None = None):
        super().__init__(spec)
        self.token = token
        self.dataset = self._open()
        try:
            splits = self.dataset.info.splits or {}
            n = splits[spec.split].num_examples if spec.split in splits else None
        except Exception:  # info is optional on streamed sets
            n = None
        self.total = min(n, spec.limit) if (n and spec.limit) else (n or spec.limit)

    def _open(self):
        import datasets

        spec = self.spec
        try:
            return datasets.load_dataset(spec.hub_id, spec.config or None, split=spec.split or None,
                                         streaming=True, token=self.token or None,
                                         revision=spec.revision or None)
        except Exception as exc:  # translate the library's errors into what to do
            raise hub_error(spec, exc) from exc

    def provenance(self) -> dict:
        info = self.dataset.info
        return {"kind": "hub", "hub_id": self.spec.hub_id, "config": self.spec.config,
                "split": self.spec.split, "revision": self.spec.revision or "main",
                "license": getattr(info, "license", "") or "",
                "homepage": getattr(info, "homepage", "") or ""}

    def tables(self) -> Iterator[tuple[pa.Table, int]]:
        done = 0
        try:
            for batch in self.dataset.iter(batch_size=1024):
                table = _hub_batch_table(batch)
                done += len(table)
                yield table, done
        except UserError:
            raise
        except Exception as exc:
            raise hub_error(self.spec, exc) from exc


def _hub_batch_table(batch: dict) -> pa.Table:
    cols = {}
    for name, values in batch.items():
        try:
            cols[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            cols[name] = pa.array([stringify(v) for v in values], type=pa.string())
    return pa.table(cols)


def hub_error(spec: SourceSpec, exc: Exception) -> UserError:
    text = str(exc)
    low = text.lower()
    name = type(exc).__name__
    if "gated" in low or name == "GatedRepoError":
        return UserError(f"The Hugging Face dataset {spec.hub_id!r} is gated.",
                         hint="Accept its terms on the dataset's Hub page, then add your access "
                         "token in File > Settings (or set HF_TOKEN).")
    if ("offline" in low or "connection" in low or "couldn't reach" in low
            or ("resolve" in low and "host" in low)
            or name in ("ConnectionError", "ConnectTimeout", "OfflineModeIsEnabled")):
        return UserError(f"Could not reach the Hugging Face Hub to read {spec.hub_id!r}.",
                         hint="Check the network connection (and that HF_HUB_OFFLINE is not "
                         "set), or import local files instead.")
    if (name in ("DatasetNotFoundError", "FileNotFoundError", "RepositoryNotFoundError")
            or "doesn't exist" in low or ("not found" in low and "config" not in low)):
        return UserError(f"There is no Hugging Face dataset {spec.hub_id!r} (or it is private).",
                         hint="Check the id on huggingface.co/datasets; for a private dataset "
                         "add your token in File > Settings.")
    m = re.search(r"available[^:\[]*[:\s]*(\[.*?\]|\{.*?\})", text, re.IGNORECASE | re.DOTALL)
    if "config" in low:
        return UserError(f"{spec.hub_id!r} has no configuration {spec.config!r}."
                         + (f" Available: {m.group(1)}." if m else ""),
                         hint="Choose one of its configurations.")
    if "split" in low:
        return UserError(f"{spec.hub_id!r} has no split {spec.split!r}."
                         + (f" Available: {m.group(1)}." if m else ""),
                         hint="Choose one of its splits (often 'train').")
    first = text.splitlines()[0] if text else name
    return UserError(f"Reading {spec.hub_id!r} from the Hub failed: {first[:300]}",
                     hint="See the job log for details.")
