"""The kill harness's scenarios: the prepared data folder, the CLI job of each kind, how a user
finishes a killed one, and what its result must equal (tests/reliability/kill_harness.py)."""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KINDS = ("import", "tokenize", "extract", "train", "analyze", "steer")

CORPUS_LINES = [
    "The quick brown fox jumps over the lazy dog. A sparse autoencoder learns features.",
    "Paris is the capital of France. Berlin is the capital of Germany. Rome is in Italy.",
    "Mathematics studies numbers, shapes and patterns. Biology studies living things.",
    "The cat sat on the mat. Once upon a time there was a little girl named Lily.",
    "Neural networks compute with matrices; transformers use attention over tokens.",
    "Water boils at one hundred degrees Celsius at sea level. The sun is a star.",
]


def child_env(data: Path, crash_at: str = "", trace: str = "") -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MISTUDIO_CRASH_AT", "MISTUDIO_CRASH_TRACE")}
    env.update(MISTUDIO_DATA_DIR=str(data), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               MISTUDIO_NO_KEYRING="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(REPO))
    if crash_at:
        env["MISTUDIO_CRASH_AT"] = crash_at
    if trace:
        env["MISTUDIO_CRASH_TRACE"] = trace
    return env


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ============================================================================ the base folder


def build_tiny_model(out: Path) -> Path:
    """A GPT-2 shape (3 layers, d 64, vocab 512) with a BPE tokenizer trained on the corpus
    (as tests/conftest.py builds its tiny models)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, AutoModelForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=["<|endoftext|>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS_LINES * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>", unk_token="<|endoftext|>",
                                   pad_token="<pad>")
    cfg = GPT2Config(vocab_size=512, n_positions=128, n_embd=64, n_layer=3, n_head=4,
                     bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    model.save_pretrained(out, safe_serialization=True)
    fast.save_pretrained(out)
    return out


def write_corpus(path: Path, n_docs: int = 240) -> Path:
    rng = random.Random(7)
    docs = [" ".join(rng.choice(CORPUS_LINES) for _ in range(rng.randint(1, 4)))
            for _ in range(n_docs)]
    path.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    return path


def open_studio(data: Path):
    from mistudio.secrets_test_support import MemorySecrets
    from mistudio.studio import Studio

    return Studio(data, secrets=MemorySecrets())


def wait_ok(studio, job, what: str, timeout: float = 300):
    rec = studio.jobs.wait(job.id, timeout)
    if rec is None or rec.status != "completed":
        raise RuntimeError(f"{what} did not complete: {rec and rec.status} {rec and rec.error}")
    return rec


def training_config(act_id: str) -> dict:
    from mistudio.sae.config import TrainingConfig

    return TrainingConfig(activation_id=act_id, architecture="topk", k=4, d_sae=128,
                          batch_size=128, total_tokens=128 * 48, lr=3e-3,
                          metrics_every_steps=4, dead_window_tokens=128 * 16,
                          checkpoint_every_tokens=128 * 8, checkpoint_every_seconds=0,
                          keep_checkpoints=3, eval_tokens=0, eval_every_steps=0).to_dict()


@dataclass
class Base:
    """The prepared data folder and what the scenarios refer to."""

    work: str
    data: str
    corpus: str
    model_id: str
    dataset_id: str
    tokenization_id: str
    act_id: str
    sae_id: str


def prepare_base(work: Path) -> Base:
    import torch

    torch.set_num_threads(1)
    work.mkdir(parents=True, exist_ok=True)
    model_dir = build_tiny_model(work / "tiny_gpt2")
    corpus = write_corpus(work / "corpus.txt")
    data = work / "base"
    s = open_studio(data)
    try:
        mrec, job = s.models.add_local(str(model_dir), name="tiny")
        if job is not None:
            wait_ok(s, job, "adding the model")
        ds, job = s.datasets.add_local(str(corpus), name="corpus")
        wait_ok(s, job, "the import")
        tok, job = s.datasets.tokenize(ds.id, mrec.id, {"seq_len": 32})
        if job is not None:
            wait_ok(s, job, "the tokenization")
        sets, job = s.activations.start_extraction(
            mrec.id, tok.id, hook_points=["blocks.1.hook_resid_post"], max_tokens=4096,
            batch_size=8, shard_rows=1024, name="base")
        wait_ok(s, job, "the extraction")
        job = s.trainings.start_training(training_config(sets[0].id))
        wait_ok(s, job, "the training")
        (sae,) = s.trainings.list_saes(job.target)
        return Base(str(work), str(data), str(corpus), mrec.id, ds.id, tok.id, sets[0].id,
                    sae.id)
    finally:
        s.close(timeout=30)


# ============================================================================ scenarios


def cli_args(kind: str, base: Base, run_dir: Path) -> list[str]:
    if kind == "import":
        return ["datasets", "add", base.corpus, "--name", "killed"]
    if kind == "tokenize":
        # a re-tokenization (--force): rebuilt beside the old one, which it then replaces
        return ["datasets", "tokenize", base.dataset_id, "--tokenizer", base.model_id,
                "--seq-len", "32", "--force"]
    if kind == "extract":
        return ["extract", "run", base.model_id, base.tokenization_id, "--hook-point",
                "blocks.2.hook_resid_post", "--max-tokens", "4096", "--batch-size", "8",
                "--shard-rows", "512", "--name", "killed"]
    if kind == "train":
        cfg = run_dir / "train.json"
        cfg.write_text(json.dumps(training_config(base.act_id)), encoding="utf-8")
        return ["train", "--config", str(cfg), "--quiet"]
    if kind == "analyze":
        return ["analyze", base.sae_id, "--tokens", base.tokenization_id, "--max-tokens",
                "2048", "--chunk-rows", "512", "--block-features", "32", "--device", "cpu",
                "--json"]
    if kind == "steer":
        return ["steer", base.model_id, "--sae", base.sae_id, "--prompt", "The cat sat on",
                "--feature", "3:+4", "--max-new-tokens", "6", "--device", "cpu", "--json"]
    raise ValueError(kind)


def _new(items, old_ids):
    return [x for x in items if x.id not in old_ids]


def resume(kind: str, s, base: Base, run_dir: Path, base_ids: dict) -> None:
    """Finish the killed job the way a user would: resume where offered, else run again."""
    if kind == "import":
        if not [d for d in _new(s.datasets.list(), base_ids["datasets"]) if d.status == "ready"]:
            _ds, job = s.datasets.add_local(base.corpus, name="killed")
            wait_ok(s, job, "the import (again)")
    elif kind == "tokenize":  # whatever state it was left in, run it again
        _t, job = s.datasets.tokenize(base.dataset_id, base.model_id, {"seq_len": 32},
                                      force=True)
        if job is not None:
            wait_ok(s, job, "the tokenization (again)")
    elif kind == "extract":
        new = _new(s.activations.list(), base_ids["activations"])
        if new and new[0].status == "ready":
            return
        if new and new[0].status == "incomplete":
            wait_ok(s, s.activations.resume_extraction(new[0].id), "the extraction resume")
        else:
            _sets, job = s.activations.start_extraction(
                base.model_id, base.tokenization_id, hook_points=["blocks.2.hook_resid_post"],
                max_tokens=4096, batch_size=8, shard_rows=512, name="killed")
            wait_ok(s, job, "the extraction (again)")
    elif kind == "train":
        new = _new(s.trainings.list_trainings(), base_ids["trainings"])
        if new and new[0].status == "completed":
            return
        if new and s.trainings.can_resume(new[0].id):
            wait_ok(s, s.trainings.resume_training(new[0].id), "the training resume")
        else:  # killed before its first checkpoint: nothing to resume, start again
            for tr in new:
                s.trainings.delete_training(tr.id)
            wait_ok(s, s.trainings.start_training(training_config(base.act_id)),
                    "the training (again)")
    elif kind == "analyze":
        recs = s.features.list_analyses()
        if recs and recs[0].status == "completed":
            return
        if recs:
            wait_ok(s, s.features.resume_analysis(recs[0].id), "the analysis resume")
        else:
            wait_ok(s, s.features.start_analysis(
                base.sae_id, tokenization=base.tokenization_id, max_tokens=2048,
                chunk_rows=512, block_features=32, device="cpu"), "the analysis (again)")
    elif kind == "steer":
        done = [g for g in s.steering.history() if g.status == "completed"]
        if not done:  # what `mistudio steer` (cli_args) asks for
            from mistudio.steering.interventions import Column, Intervention

            params = s.steering.prepare(
                base.model_id, base.sae_id, [Column([Intervention("add", 3, 4.0)])],
                "The cat sat on", sampling={"max_new_tokens": 6, "greedy": True},
                device="cpu")
            rec, _job = s.steering.submit(params)
            s.steering.wait(rec.id, timeout=300)


def fingerprint(kind: str, s, base_ids: dict) -> dict:
    """What an uninterrupted run and a killed-then-resumed one must agree on, bit for bit."""
    import numpy as np

    if kind == "import":
        (ds,) = [d for d in _new(s.datasets.list(), base_ids["datasets"]) if d.status == "ready"]
        files = json.loads((s.datasets.folder(ds.id) / "manifest.json").read_text())["files"]
        return {"n_docs": ds.n_docs, "documents": files["documents.arrow"]["sha256"]}
    if kind == "tokenize":
        (t,) = [t for t in s.datasets.tokenizations() if t.status == "ready"]
        files = json.loads((Path(t.path) / "COMPLETE").read_text())["files"]
        return {"n_seq": t.n_seq, **{k: v["sha256"] for k, v in files.items()
                                     if k.endswith(".npy")}}
    if kind == "extract":
        (rec,) = _new(s.activations.list(), base_ids["activations"])
        aset = s.activations.open(rec.id)
        return {"rows": aset.num_rows,
                "acts": sha256_bytes(np.ascontiguousarray(aset.rows(0, aset.num_rows)).tobytes()),
                "pos": sha256_bytes(np.ascontiguousarray(aset.positions()).tobytes())}
    if kind == "train":
        from safetensors.torch import load_file

        (tr,) = [t for t in _new(s.trainings.list_trainings(), base_ids["trainings"])
                 if t.status == "completed"]
        out = {"tokens": tr.tokens}
        for sae in s.trainings.list_saes(tr.id):
            tensors = load_file(str(Path(sae.folder) / "sae_weights.safetensors"))
            for name in sorted(tensors):
                out[f"{sae.member}/{name}"] = sha256_bytes(
                    tensors[name].contiguous().numpy().tobytes())
        return out
    if kind == "analyze":
        (rec,) = [r for r in s.features.list_analyses() if r.status == "completed"]
        folder = Path(rec.folder)
        rows = s.features.feature_rows(analysis=rec.id)
        out = {"n_rows": len(rows), "rows": sha256_bytes(json.dumps(
            [[r.feature, r.firing_count, r.max_act, r.top_tokens] for r in rows]).encode())}
        for f in sorted(folder.glob("*.npy")):
            out[f.name] = hashlib.sha256(f.read_bytes()).hexdigest()
        return out
    if kind == "steer":
        (g,) = [g for g in s.steering.history() if g.status == "completed"]
        result = s.steering.result(g.id)
        return {c["label"]: c["text"] for c in result["columns"]}
    raise ValueError(kind)


def record_ids(s) -> dict:
    return {"datasets": {d.id for d in s.datasets.list()},
            "tokenizations": {t.id for t in s.datasets.tokenizations()},
            "activations": {a.id for a in s.activations.list()},
            "trainings": {t.id for t in s.trainings.list_trainings()}}
