"""The bad-input catalogue: every entry is one bad input a user can give (a command line, a
file they import, a dialog's field, a data folder they cannot write) and what its message
must name. ``test_bad_inputs.py`` runs each against a complete data folder and checks: the
message names the key or path at fault and equals the recorded one
(``bad_input_messages.json``), exit code 2, no traceback, nothing changed in the data folder
or the database. ``docs/reliability.md`` lists them (``scripts/bad_input_catalogue.py``).

``argv(a, b)`` and ``names(a, b)`` get the :class:`Assets` and ``b``, a folder for the bad
files (outside the data folder); helpers below write the files."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

MESSAGES_FILE = Path(__file__).with_name("bad_input_messages.json")


@dataclass(frozen=True)
class BadInput:
    id: str
    area: str  # where the input goes: "training config", "SAE folder", "dialog", ...
    what: str  # the bad input, in words
    names: Callable  # (a, b) -> the strings the message must contain
    argv: Callable | None = None  # (a, b) -> the command line (CLI entries)
    dialog: str = ""  # the name of a function in test_bad_input_dialogs.py (dialog entries)
    read_only: bool = False  # run with the data folder not writable
    tags: tuple = field(default=())

    @property
    def surface(self) -> str:
        return "dialog" if self.dialog else "CLI"


def write(b: Path, name: str, data) -> Path:
    path = b / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    elif isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_text(json.dumps(data), encoding="utf-8")
    return path


BINARY = bytes(range(256)) * 16
LATIN1 = ("Caf\xe9 au lait, cr\xe8me br\xfbl\xe9e.\n\n" * 40).encode("latin-1")


def sae_copy(a, b: Path, name: str, change: Callable[[Path], None]) -> Path:
    """The good exported SAE copied to ``b/name`` and damaged by ``change(folder)``."""
    folder = b / name
    shutil.copytree(a.sae_folder, folder)
    change(folder)
    return folder


def _tensors(change):
    def apply(folder: Path) -> None:
        from safetensors.torch import load_file, save_file

        path = folder / "sae_weights.safetensors"
        tensors = load_file(str(path))
        change(tensors)
        save_file(tensors, str(path))
    return apply


def _cfg(**values):
    def apply(folder: Path) -> None:
        cfg = json.loads((folder / "cfg.json").read_text())
        cfg.update(values)
        (folder / "cfg.json").write_text(json.dumps(cfg))
    return apply


def _nan(t):
    t["W_enc"][0, 0] = float("nan")


def _wrong_shape(t):
    import torch

    t["W_dec"] = torch.zeros(100, t["W_dec"].shape[1])


def _extra(t):
    import torch

    t["mystery"] = torch.zeros(3)


def _truncate(folder: Path) -> None:
    path = folder / "sae_weights.safetensors"
    path.write_bytes(path.read_bytes()[:300])


def train(a, *extra):
    return ["train", "--activations", a.activation_set, "--set", "batch_size=256", *extra]


def steer(a, *extra):
    return ["steer", a.model, "--sae", a.sae, "--prompt", "Once upon a time", *extra]


C = BadInput
CATALOGUE: list[BadInput] = [
    # -------------------------------------------------------------- training config files
    C("config-not-json", "training config", "a config file that is not JSON",
      lambda a, b: [str(b / "c.json")],
      lambda a, b: ["train", "--config", str(write(b, "c.json", "{architecture: topk")),
                    "--activations", a.activation_set]),
    C("config-not-object", "training config", "a config file holding a JSON list",
      lambda a, b: [str(b / "c.json")],
      lambda a, b: ["train", "--config", str(write(b, "c.json", [1, 2])),
                    "--activations", a.activation_set]),
    C("config-binary", "training config", "a binary file as the config",
      lambda a, b: [str(b / "c.json")],
      lambda a, b: ["train", "--config", str(write(b, "c.json", BINARY)),
                    "--activations", a.activation_set]),
    C("config-latin1", "training config", "a config file in Latin-1, not UTF-8",
      lambda a, b: [str(b / "c.json")],
      lambda a, b: ["train", "--config", str(write(b, "c.json",
                                                   '{"name": "caf\xe9"}'.encode("latin-1"))),
                    "--activations", a.activation_set]),
    C("config-missing-file", "training config", "a config file that does not exist",
      lambda a, b: [str(b / "nothing.json")],
      lambda a, b: ["train", "--config", str(b / "nothing.json"),
                    "--activations", a.activation_set]),
    C("config-misspelled-key", "training config", "a misspelled setting (architecure)",
      lambda a, b: ["'architecure'", "'architecture'"],
      lambda a, b: ["train", "--config", str(write(b, "c.json", {"architecure": "topk"})),
                    "--activations", a.activation_set]),
    C("config-wrong-type", "training config", "a setting of the wrong type (k: \"many\")",
      lambda a, b: ["'k'", "'many'"],
      lambda a, b: ["train", "--config", str(write(b, "c.json", {"k": "many"})),
                    "--activations", a.activation_set]),
    C("config-negative-batch", "training config", "a negative batch size",
      lambda a, b: ["Batch size", "-5"],
      lambda a, b: ["train", "--config", str(write(b, "c.json", {"batch_size": -5})),
                    "--activations", a.activation_set]),
    C("config-huge-width", "training config", "an SAE width of 10^15 latents",
      lambda a, b: ["d_sae"],
      lambda a, b: train(a, "--config", str(write(b, "c.json", {"d_sae": 10 ** 15})))),
    C("config-unknown-architecture", "training config", "an unknown architecture",
      lambda a, b: ["architecture", "'magic'"],
      lambda a, b: train(a, "--config", str(write(b, "c.json", {"architecture": "magic"})))),
    C("set-negative-lr", "training config", "--set lr=-1",
      lambda a, b: ["Learning rate", "-1"], lambda a, b: train(a, "--set", "lr=-1")),
    C("set-nan-lr", "training config", "--set lr=NaN",
      lambda a, b: ["Learning rate", "nan"], lambda a, b: train(a, "--set", "lr=NaN")),
    C("set-k-zero", "training config", "--set k=0",
      lambda a, b: ["k must"], lambda a, b: train(a, "--set", "k=0")),
    C("set-k-wider-than-sae", "training config", "k larger than the SAE width",
      lambda a, b: ["k = 100000", "d_sae"],
      lambda a, b: train(a, "--set", "k=100000", "--set", "d_sae=128")),
    C("set-huge-total-tokens", "training config", "--set total_tokens=1e30",
      lambda a, b: ["'total_tokens'"], lambda a, b: train(a, "--set", "total_tokens=1e30")),
    C("set-negative-total-tokens", "training config", "--set total_tokens=-100",
      lambda a, b: ["-100 tokens"], lambda a, b: train(a, "--set", "total_tokens=-100")),
    C("set-not-key-value", "training config", "--set without =VALUE",
      lambda a, b: ["--set", "'k'"], lambda a, b: train(a, "--set", "k")),
    C("set-unknown-dtype", "training config", "--set dtype=float8",
      lambda a, b: ["dtype", "'float8'"], lambda a, b: train(a, "--set", "dtype=float8")),
    C("set-unknown-device", "training config", "--set device=tpu",
      lambda a, b: ["device", "'tpu'"], lambda a, b: train(a, "--set", "device=tpu")),
    C("set-sweep-not-a-list", "training config", "a sweep whose values are not a list",
      lambda a, b: ["'k'"], lambda a, b: train(a, "--set", 'sweep={"k": "x"}')),
    C("set-matryoshka-widths", "training config", "Matryoshka widths not increasing",
      lambda a, b: ["Matryoshka widths", "[1000, 5, 512]"],
      lambda a, b: train(a, "--set", "architecture=matryoshka_batchtopk",
                         "--set", "matryoshka_widths=[1000,5]")),
    C("train-unknown-activation-set", "training", "an activation set id that does not exist",
      lambda a, b: ["act_nonexist"], lambda a, b: ["train", "--activations", "act_nonexist"]),
    C("train-activation-folder-missing", "training", "an activation folder that does not exist",
      lambda a, b: [str(b / "nofolder")],
      lambda a, b: ["train", "--activations", str(b / "nofolder")]),
    C("train-unknown-model", "training", "on the fly from a model that does not exist",
      lambda a, b: ["'nomodel'"],
      lambda a, b: ["train", "--model", "nomodel", "--hook", "blocks.1.hook_resid_post"]),
    C("train-layer-out-of-range", "training", "on the fly at layer 9 of a 3-layer model",
      lambda a, b: ["blocks.9.hook_resid_post", "3 layers"],
      lambda a, b: ["train", "--model", a.model, "--hook", "blocks.9.hook_resid_post",
                    "--set", "batch_size=256"]),
    C("train-unknown-hook", "training", "on the fly at a hook name that does not exist",
      lambda a, b: ["'blocks.1.hook_bogus'"],
      lambda a, b: ["train", "--model", a.model, "--hook", "blocks.1.hook_bogus",
                    "--set", "batch_size=256"]),
    C("train-unknown-tokenization", "training", "on the fly over a tokenization that does not "
      "exist", lambda a, b: ["'tok_nope'"],
      lambda a, b: ["train", "--model", a.model, "--tokenization", "tok_nope",
                    "--hook", "blocks.1.hook_resid_post", "--set", "batch_size=256"]),
    # -------------------------------------------------------------- SAE folders
    C("sae-no-weights", "SAE folder", "an SAE folder without sae_weights.safetensors",
      lambda a, b: [str(b / "sae")],
      lambda a, b: ["sae", "import", str(sae_copy(
          a, b, "sae", lambda f: (f / "sae_weights.safetensors").unlink()))]),
    C("sae-no-cfg", "SAE folder", "an SAE folder without cfg.json",
      lambda a, b: [str(b / "sae")],
      lambda a, b: ["sae", "import", str(sae_copy(a, b, "sae",
                                                  lambda f: (f / "cfg.json").unlink()))]),
    C("sae-truncated-weights", "SAE folder", "sae_weights.safetensors cut after 300 bytes",
      lambda a, b: [str(b / "sae")],
      lambda a, b: ["sae", "import", str(sae_copy(a, b, "sae", _truncate))]),
    C("sae-nan-weights", "SAE folder", "a NaN in W_enc",
      lambda a, b: ["'W_enc'", "NaN", str(b / "sae" / "sae_weights.safetensors")],
      lambda a, b: ["sae", "import", str(sae_copy(a, b, "sae", _tensors(_nan)))]),
    C("sae-wrong-shape", "SAE folder", "W_dec with 100 rows where cfg.json says 128",
      lambda a, b: ["'W_dec'", "[100, 64]"],
      lambda a, b: ["sae", "import", str(sae_copy(a, b, "sae", _tensors(_wrong_shape)))]),
    C("sae-extra-tensor", "SAE folder", "an extra tensor in the weights file",
      lambda a, b: ["'mystery'"],
      lambda a, b: ["sae", "import", str(sae_copy(a, b, "sae", _tensors(_extra)))]),
    C("sae-missing-tensor", "SAE folder", "b_enc missing from the weights file",
      lambda a, b: ["'b_enc'"],
      lambda a, b: ["sae", "import", str(sae_copy(
          a, b, "sae", _tensors(lambda t: t.pop("b_enc"))))]),
    C("sae-cfg-wrong-type", "SAE folder", "cfg.json with d_sae: \"lots\"",
      lambda a, b: ["'d_sae'", "'lots'", str(b / "sae" / "cfg.json")],
      lambda a, b: ["sae", "import", str(sae_copy(a, b, "sae", _cfg(d_sae="lots")))]),
    C("sae-cfg-wrong-width", "SAE folder", "cfg.json with d_in 65 for 64-wide weights",
      lambda a, b: ["'W_enc'", "d_in 65"],
      lambda a, b: ["sae", "import", str(sae_copy(a, b, "sae", _cfg(d_in=65)))]),
    C("sae-cfg-negative-k", "SAE folder", "cfg.json with k: -3",
      lambda a, b: ["'k'", "-3"],
      lambda a, b: ["sae", "import", str(sae_copy(a, b, "sae", _cfg(k=-3)))]),
    C("sae-cfg-unknown-architecture", "SAE folder", "cfg.json with an unknown architecture",
      lambda a, b: ["'quantum'"],
      lambda a, b: ["sae", "import", str(sae_copy(a, b, "sae", _cfg(architecture="quantum")))]),
    C("sae-cfg-binary", "SAE folder", "a binary cfg.json",
      lambda a, b: [str(b / "sae" / "cfg.json")],
      lambda a, b: ["sae", "import", str(sae_copy(
          a, b, "sae", lambda f: (f / "cfg.json").write_bytes(b"\xff\xfe\x00garbage")))]),
    C("sae-cfg-list", "SAE folder", "a cfg.json holding a list",
      lambda a, b: [str(b / "sae" / "cfg.json")],
      lambda a, b: ["sae", "import", str(sae_copy(
          a, b, "sae", lambda f: (f / "cfg.json").write_text("[]")))]),
    C("sae-a-file", "SAE folder", "a text file instead of an SAE folder",
      lambda a, b: [str(b / "notes.txt")],
      lambda a, b: ["sae", "import", str(write(b, "notes.txt", "hello"))]),
    C("sae-unknown-subfolder", "SAE folder", "a subfolder that does not exist",
      lambda a, b: [str(a.sae_folder / "nope")],
      lambda a, b: ["sae", "import", str(a.sae_folder), "--subfolder", "nope"]),
    # -------------------------------------------------------------- templates
    C("template-not-json", "template file", "a template file that is not JSON",
      lambda a, b: ["t.json"],
      lambda a, b: ["templates", "import", str(write(b, "t.json", "{nope"))]),
    C("template-binary", "template file", "a binary template file",
      lambda a, b: ["t.json"],
      lambda a, b: ["templates", "import", str(write(b, "t.json", BINARY))]),
    C("template-unknown-setting", "template file", "a template with a misspelled setting",
      lambda a, b: ["t.json", "'kk'"],
      lambda a, b: ["templates", "import", str(write(
          b, "t.json", {"templates": [{"name": "x", "config": {"kk": 3}}]}))]),
    C("template-no-name", "template file", "a template without a name",
      lambda a, b: ["name"],
      lambda a, b: ["templates", "import", str(write(
          b, "t.json", {"templates": [{"config": {"k": 3}}]}))]),
    C("template-extraction-no-settings", "template file",
      "an extraction template without its settings object",
      lambda a, b: ["t.json", "'config'"],
      lambda a, b: ["templates", "import", "--kind", "extraction", str(write(
          b, "t.json", {"templates": [{"name": "e", "settings": {"layers": [1]}}]}))]),
    C("template-duplicate-name", "template", "saving a template under a taken name",
      lambda a, b: [f"'{a.template}'"],
      lambda a, b: ["templates", "save", a.template, "--config",
                    str(write(b, "c.json", {"k": 4}))]),
    C("template-negative-k", "template", "saving a template with k: -4",
      lambda a, b: ["k must", "-4"],
      lambda a, b: ["templates", "save", "neg", "--config", str(write(b, "c.json", {"k": -4}))]),
    C("template-unknown", "template", "a template name that does not exist",
      lambda a, b: ["'no such template'"],
      lambda a, b: ["templates", "show", "no such template"]),
    C("template-delete-builtin", "template", "deleting a built-in template",
      lambda a, b: ["Built-in"], lambda a, b: ["templates", "delete", "OpenAI-style TopK"]),
    # -------------------------------------------------------------- dataset files
    C("dataset-binary", "dataset file", "a binary file as a .txt dataset",
      lambda a, b: [str(b / "d.txt")],
      lambda a, b: ["datasets", "add", str(write(b, "d.txt", BINARY))]),
    C("dataset-latin1", "dataset file", "a Latin-1 text file read as UTF-8",
      lambda a, b: [str(b / "d.txt"), "--encoding"],
      lambda a, b: ["datasets", "add", str(write(b, "d.txt", LATIN1))]),
    C("dataset-unknown-encoding", "dataset file", "an encoding that does not exist",
      lambda a, b: ["'klingon'"],
      lambda a, b: ["datasets", "add", str(write(b, "d.txt", "hello\n\nworld")),
                    "--encoding", "klingon"]),
    C("dataset-empty", "dataset file", "an empty .txt file",
      lambda a, b: [str(b / "d.txt")],
      lambda a, b: ["datasets", "add", str(write(b, "d.txt", ""))]),
    C("dataset-jsonl-bad-line", "dataset file", "a .jsonl file whose line 2 is not JSON",
      lambda a, b: [str(b / "d.jsonl"), "line 2"],
      lambda a, b: ["datasets", "add", str(write(b, "d.jsonl", '{"text": "a"}\nnot json\n'))]),
    C("dataset-csv-no-column", "dataset file", "a CSV without the chosen text column",
      lambda a, b: [str(b / "d.csv"), "'body'"],
      lambda a, b: ["datasets", "add", str(write(b, "d.csv", "a,b\n1,2\n")),
                    "--text-column", "body"]),
    C("dataset-missing-file", "dataset file", "a file that does not exist",
      lambda a, b: [str(b / "none.txt")],
      lambda a, b: ["datasets", "add", str(b / "none.txt")]),
    C("dataset-negative-limit", "datasets", "--limit -5 documents",
      lambda a, b: ["limit"],
      lambda a, b: ["datasets", "add", str(write(b, "d.txt", "hello\n\nworld")),
                    "--limit", "-5"]),
    C("dataset-unknown-id", "datasets", "a dataset id that does not exist",
      lambda a, b: ["'ds_nope'"], lambda a, b: ["datasets", "show", "ds_nope"]),
    C("dataset-empty-name", "datasets", "renaming a dataset to an empty name",
      lambda a, b: ["name"], lambda a, b: ["datasets", "rename", a.dataset, " "]),
    C("dataset-docs-negative-limit", "datasets", "datasets docs --limit -3",
      lambda a, b: ["--limit", "-3"],
      lambda a, b: ["datasets", "docs", a.dataset, "--limit", "-3"]),
    C("dataset-docs-unknown-column", "datasets", "--where on a column that does not exist",
      lambda a, b: ["'nocolumn'"],
      lambda a, b: ["datasets", "docs", a.dataset, "--where", "nocolumn=1"]),
    C("tokenize-zero-context", "tokenization", "a context length of 0",
      lambda a, b: ["context length", "0"],
      lambda a, b: ["datasets", "tokenize", a.dataset, "--model", a.model, "--seq-len", "0"]),
    C("tokenize-huge-context", "tokenization", "a context length of 100,000,000",
      lambda a, b: ["context length", "100000000"],
      lambda a, b: ["datasets", "tokenize", a.dataset, "--model", a.model,
                    "--seq-len", "100000000"]),
    C("tokenize-negative-max-sequences", "tokenization", "--max-sequences -1",
      lambda a, b: ["max_sequences", "-1"],
      lambda a, b: ["datasets", "tokenize", a.dataset, "--model", a.model,
                    "--max-sequences", "-1"]),
    C("tokenize-no-tokenizer", "tokenization", "a folder without tokenizer files",
      lambda a, b: [str(b / "empty")],
      lambda a, b: ["datasets", "tokenize", a.dataset, "--model",
                    str(write(b, "empty/readme.md", "x").parent)]),
    # -------------------------------------------------------------- extraction
    C("extract-layer-out-of-range", "extraction", "layer 7 of a 3-layer model",
      lambda a, b: ["[7]", "3 layers"],
      lambda a, b: ["extract", "run", a.model, a.tokenization, "--layers", "7"]),
    C("extract-bad-layer-text", "extraction", "--layers abc",
      lambda a, b: ["'abc'"],
      lambda a, b: ["extract", "run", a.model, a.tokenization, "--layers", "abc"]),
    C("extract-unknown-hook-type", "extraction", "an unknown hook type",
      lambda a, b: ["'resid_sideways'"],
      lambda a, b: ["extract", "run", a.model, a.tokenization, "--hooks", "resid_sideways"]),
    C("extract-unknown-hook-name", "extraction", "a hook name that does not exist",
      lambda a, b: ["'blocks.1.hook_nothing'"],
      lambda a, b: ["extract", "run", a.model, a.tokenization,
                    "--hook-point", "blocks.1.hook_nothing"]),
    C("extract-unknown-module", "extraction", "a module path that does not exist",
      lambda a, b: ["'transformer.h.99'"],
      lambda a, b: ["extract", "run", a.model, a.tokenization,
                    "--hook-point", "module:transformer.h.99"]),
    C("extract-zero-batch", "extraction", "--batch-size 0",
      lambda a, b: ["batch size", "0"],
      lambda a, b: ["extract", "run", a.model, a.tokenization, "--batch-size", "0"]),
    C("extract-negative-max-tokens", "extraction", "--max-tokens -10",
      lambda a, b: ["max tokens", "-10"],
      lambda a, b: ["extract", "run", a.model, a.tokenization, "--max-tokens", "-10"]),
    C("extract-unknown-template", "extraction", "an extraction template that does not exist",
      lambda a, b: ["'nope'"],
      lambda a, b: ["extract", "run", a.model, a.tokenization, "--template", "nope"]),
    C("extract-unknown-tokenization", "extraction", "a tokenization id that does not exist",
      lambda a, b: ["'tok_nope'"], lambda a, b: ["extract", "run", a.model, "tok_nope"]),
    C("extract-resume-complete", "extraction", "resuming a complete extraction",
      lambda a, b: [a.activation_set, "already complete"],
      lambda a, b: ["extract", "resume", a.activation_set]),
    # -------------------------------------------------------------- models
    C("model-folder-without-config", "model folder", "a folder without config.json",
      lambda a, b: [str(b / "m"), "config.json"],
      lambda a, b: ["models", "add", str(write(b, "m/weights.bin", BINARY).parent)]),
    C("model-fake-gguf", "model file", "a .gguf file of random bytes",
      lambda a, b: ["fake.gguf"],
      lambda a, b: ["models", "add", str(write(b, "fake.gguf", BINARY))]),
    C("model-bad-hub-id", "models", "a Hub id with spaces",
      lambda a, b: ["'not a hub id!'"], lambda a, b: ["models", "add", "not a hub id!"]),
    C("model-unknown", "models", "a model that does not exist",
      lambda a, b: ["'m_nope'"], lambda a, b: ["models", "hooks", "m_nope"]),
    C("model-tree-negative-depth", "models", "models tree --depth -1",
      lambda a, b: ["--depth", "-1"], lambda a, b: ["models", "tree", a.model, "--depth", "-1"]),
    # -------------------------------------------------------------- SAEs, evaluation, jobs
    C("evaluate-zero-tokens", "evaluation", "evaluating on 0 tokens",
      lambda a, b: ["token", "0"], lambda a, b: ["sae", "evaluate", a.sae, "--tokens", "0"]),
    C("evaluate-layer-out-of-range", "evaluation", "evaluating at layer 9 of a 3-layer model",
      lambda a, b: ["blocks.9.hook_resid_post"],
      lambda a, b: ["sae", "evaluate", a.sae, "--hook", "blocks.9.hook_resid_post"]),
    C("evaluate-unknown-model", "evaluation", "evaluating in a model that does not exist",
      lambda a, b: ["'nope'"], lambda a, b: ["sae", "evaluate", a.sae, "--model", "nope"]),
    C("sae-list-unknown-training", "SAEs", "listing the SAEs of a training that does not exist",
      lambda a, b: ["'tr_nope'"], lambda a, b: ["sae", "list", "--training", "tr_nope"]),
    C("sae-resume-complete", "SAEs", "resuming a complete training",
      lambda a, b: [a.training], lambda a, b: ["sae", "resume", a.training]),
    C("sae-export-unknown", "SAEs", "exporting an SAE that does not exist",
      lambda a, b: ["'sae_nope'"],
      lambda a, b: ["sae", "export", "sae_nope", str(b / "out")]),
    C("job-unknown", "jobs", "a job id that does not exist",
      lambda a, b: ["'job_nope'"], lambda a, b: ["jobs", "show", "job_nope"]),
    C("analyze-negative-max-tokens", "analysis", "analyze --max-tokens -5",
      lambda a, b: ["Max tokens"], lambda a, b: ["analyze", a.sae, "--max-tokens", "-5"]),
    C("features-no-analysis", "analysis", "showing features of an SAE never analysed",
      lambda a, b: [a.sae], lambda a, b: ["features", "show", a.sae, "5"]),
    # -------------------------------------------------------------- steering
    C("steer-feature-out-of-range", "steering", "feature 99999 of a 128-feature SAE",
      lambda a, b: ["99999", "128"], lambda a, b: steer(a, "--feature", "99999:+4")),
    C("steer-bad-feature-text", "steering", "--feature abc",
      lambda a, b: ["'abc'"], lambda a, b: steer(a, "--feature", "abc")),
    C("steer-unknown-preset", "steering preset", "a preset that does not exist",
      lambda a, b: ["'nope'"], lambda a, b: steer(a, "--preset", "nope")),
    C("steer-binary-vector", "steering", "a binary file as a steering vector",
      lambda a, b: [str(b / "v.json")],
      lambda a, b: steer(a, "--vector", f"{write(b, 'v.json', BINARY)}:3")),
    C("steer-negative-new-tokens", "steering", "--max-new-tokens -3",
      lambda a, b: ["-3"], lambda a, b: steer(a, "--feature", "3:+4", "--max-new-tokens", "-3")),
    C("steer-negative-temperature", "steering", "sampling at temperature -1",
      lambda a, b: ["emperature", "-1"],
      lambda a, b: steer(a, "--feature", "3:+4", "--sample", "--temperature", "-1")),
    # -------------------------------------------------------------- the data folder
    C("data-folder-read-only", "data folder", "a data folder the user cannot write",
      lambda a, b: [str(a.data)], lambda a, b: ["templates", "save", "x", "--config",
                                                str(write(b, "c.json", {"k": 4}))],
      read_only=True),
    # -------------------------------------------------------------- dialogs
    C("dialog-template-not-json", "dialog", "Templates tab: importing a file that is not JSON",
      lambda a, b: ["t.json"], dialog="templates_import_not_json"),
    C("dialog-template-unknown-setting", "dialog",
      "Templates tab: importing a template with a misspelled setting",
      lambda a, b: ["'kk'"], dialog="templates_import_unknown_setting"),
    C("dialog-dataset-binary", "dialog", "Datasets tab: adding a binary file",
      lambda a, b: [str(b / "d.txt")], dialog="dataset_add_binary"),
    C("dialog-dataset-latin1-preview", "dialog",
      "Add dataset dialog: previewing a Latin-1 file as UTF-8",
      lambda a, b: [str(b / "d.txt")], dialog="dataset_preview_latin1"),
    C("dialog-preset-not-a-preset", "dialog",
      "Steering tab: importing a JSON file that is not a preset",
      lambda a, b: [str(b / "p.json")], dialog="preset_import_not_a_preset"),
    C("dialog-tokenize-no-tokenizer", "dialog",
      "Tokenize dialog: a tokenizer folder without tokenizer files",
      lambda a, b: [str(b / "empty")], dialog="tokenize_folder_without_tokenizer"),
    C("dialog-extract-layer-out-of-range", "dialog",
      "Models tab, Extract: layer 7 of a 3-layer model, then Start",
      lambda a, b: ["[7]", "3 layers"], dialog="extract_layer_out_of_range"),
    C("dialog-sae-folder-empty", "dialog", "SAEs page: importing a folder without an SAE",
      lambda a, b: [str(b / "empty")], dialog="sae_import_empty_folder"),
]


def by_id() -> dict[str, BadInput]:
    return {e.id: e for e in CATALOGUE}


def normalise(text: str, a, b: Path) -> str:
    """The message with this run's folders and ids replaced by placeholders, so that the
    recorded text is the same on every machine."""
    swaps = [(str(b), "<files>"), (str(a.sae_folder), "<sae folder>"),
             (str(a.data), "<data>"), (str(a.files), "<user files>"),
             (a.dataset, "<dataset>"), (a.model, "<model>"),
             (a.tokenization, "<tokenization>"), (a.activation_set, "<activation set>"),
             (a.training, "<training>"), (a.sae, "<sae>")]
    for old, new in swaps:
        text = text.replace(old, new)
    text = re.sub(r"\d+(\.\d+)? (B|KB|MB|GB|TB)\b", "<size>", text)  # machine's memory
    return text.strip()


def recorded_messages() -> dict[str, str]:
    if not MESSAGES_FILE.exists():
        return {}
    return json.loads(MESSAGES_FILE.read_text(encoding="utf-8"))


def record_message(entry_id: str, message: str) -> None:
    data = recorded_messages()
    data[entry_id] = message
    order = [e.id for e in CATALOGUE]
    data = {k: data[k] for k in sorted(data, key=lambda k: order.index(k) if k in order else 1e9)
            if k in order}
    MESSAGES_FILE.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n",
                             encoding="utf-8")
