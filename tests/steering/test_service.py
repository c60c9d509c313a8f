"""studio.steering: jobs and history, units, presets, bad inputs, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mistudio.errors import JobCancelled, UserError
from mistudio.steering.interventions import Column, Intervention, parse_sweep, sweep_columns
from tests.steering.conftest import HOOK, make_sae

GREEDY = {"max_new_tokens": 8}


def test_a_generation_is_a_job_with_a_history_row_a_file_and_a_stream(steer_studio):
    studio, model, sae = steer_studio
    svc = studio.steering
    cols = [Column([Intervention("add", 3, 40.0)]), Column([Intervention("clamp", 5, 20.0)])]
    rec, job = svc.start(model.id, sae.id, cols, "The cat sat", sampling=GREEDY)
    assert studio.get_job(job.id).kind == "steering.generate" and job.target == rec.id
    result = svc.wait(rec.id)
    assert [c["label"] for c in result["columns"]] == ["baseline", "#3 +40", "#5 = 20"]
    row = svc.get(rec.id)
    assert row.status == "completed" and row.job_id == job.id
    assert [s["label"] for s in row.summary] == ["baseline", "#3 +40", "#5 = 20"]
    assert svc.history()[0].id == rec.id
    live = svc.live(job.id)
    assert live["done"] and ["".join(p) for p in live["pieces"]] == \
        [c["text"] for c in result["columns"]]
    for col in result["columns"][1:]:
        assert len(col["kl"]) == len(col["tokens"]) and col["targets"]
    again, job2 = svc.rerun(rec.id)
    assert [c["tokens"] for c in svc.wait(again.id)["columns"]] == \
        [c["tokens"] for c in result["columns"]]
    svc.delete(rec.id)
    assert not any(r.id == rec.id for r in svc.history())


def test_sweep_makes_one_column_per_value():
    cols = sweep_columns([Intervention("clamp", 9, 1.0), Intervention("add", 123, 1.0)],
                         parse_sweep("123:-8..8:5"))
    assert [c.interventions[-1].value for c in cols] == [-8, -4, 0, 4, 8]
    assert all(len(c.interventions) == 2 and c.interventions[0].feature == 9 for c in cols)
    assert [c.interventions[0].feature for c in
            sweep_columns([], parse_sweep("10,20,30:+8"))] == [10, 20, 30]


def test_norm_units_use_a_measured_cached_norm_and_say_where_it_came_from(steer_studio):
    from mistudio.steering.engine import NORM_TEXTS

    studio, model, sae = steer_studio
    svc = studio.steering
    res = svc.run(model.id, sae.id, [Column([Intervention("add", 3, 1.0, "norm")])], "Hello",
                  sampling=GREEDY)
    # by hand: mean L2 norm of block 1's output over the built-in texts, position 0 left out
    loaded = studio.models.load(model.id)
    norms = []
    for text in NORM_TEXTS:
        ids = loaded.tokenizer(text)["input_ids"]
        with torch.no_grad():
            hs = loaded.model(input_ids=torch.tensor([ids]), output_hidden_states=True)
        norms += hs.hidden_states[2][0, 1:].double().norm(dim=-1).tolist()
    assert res["typical_norm"] == pytest.approx(float(np.mean(norms)), rel=1e-5)
    assert "short pass" in res["norm_source"]
    cached = svc.typical_norm(model.id, HOOK)
    assert cached["norm"] == pytest.approx(res["typical_norm"]) and cached["tokens"] == len(norms)


def test_max_units_need_an_analysis_of_the_sae(steer_studio):
    studio, model, sae = steer_studio
    with pytest.raises(UserError, match="needs? an analysis of this SAE"):
        studio.steering.prepare(model.id, sae.id, [Column([Intervention("add", 3, 2, "max")])],
                                "Hi")


def test_raw_and_contrastive_vectors_steer(steer_studio):
    studio, model, sae = steer_studio
    svc = studio.steering
    vec = (torch.randn(64, generator=torch.Generator().manual_seed(0)) * 30).tolist()
    cols = [Column([Intervention("vector", value=1.0, vector=vec, name="random")]),
            Column([Intervention("vector", value=8.0, name="happy-sad",
                                 positive=["I am so happy", "What a joy"],
                                 negative=["I am so sad", "What a loss"])])]
    res = svc.run(model.id, sae.id, cols, "The cat sat", sampling=GREEDY)
    base = res["columns"][0]["tokens"]
    assert all(c["tokens"] != base for c in res["columns"][1:])
    assert all(c["kl_mean"] > 0 for c in res["columns"][1:])


def test_presets_round_trip_and_refuse_another_sae(steer_studio, tmp_path):
    from mistudio.sae.formats import save_saelens

    studio, model, sae = steer_studio
    svc = studio.steering
    ivs = [Intervention("add", 3, 8.0, "raw"), Intervention("clamp", 45, 0.0),
           Intervention("ablate", 7)]
    saved = svc.save_preset("more cats", sae.id, ivs, scope="generated", description="d")
    assert (studio.paths.root / "steering" / "presets" / "more-cats.json").exists()
    assert svc.preset_for("more cats", sae.id).to_dict() == saved.to_dict()
    assert saved.sae.d_sae == 128 and saved.sae.hook_name == HOOK and len(saved.sae.file_hash) == 64
    out = svc.export_preset("more cats", tmp_path / "exported.json")
    svc.delete_preset("more cats")
    assert svc.presets() == []
    back = svc.import_preset(out)
    assert back.to_dict() == saved.to_dict()
    assert [i.to_dict() for i in back.interventions] == [i.to_dict() for i in ivs]
    with pytest.raises(UserError, match="exists already"):
        svc.import_preset(out)
    # another SAE with the same shape and hook point: different weights, refused
    save_saelens(tmp_path / "other", make_sae("topk", seed=9), hook_name=HOOK)
    other = studio.trainings.import_sae(str(tmp_path / "other"))
    with pytest.raises(UserError, match="another SAE.*different weights"):
        svc.preset_for("more cats", other.id)
    save_saelens(tmp_path / "hook0", make_sae("topk"), hook_name="blocks.0.hook_resid_post")
    moved = studio.trainings.import_sae(str(tmp_path / "hook0"))
    with pytest.raises(UserError, match="hook point"):
        svc.preset_for("more cats", moved.id)
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        svc.import_preset(tmp_path / "junk.json")


def test_bad_inputs_give_clear_errors(steer_studio, tiny_llama_dir, tmp_path):
    from mistudio.sae.formats import save_saelens

    studio, model, sae = steer_studio
    svc = studio.steering
    add = [Column([Intervention("add", 3, 8.0)])]
    cases = [
        ([Column([Intervention("add", 128, 1.0)])], "Hi", "Feature 128 does not exist.*0..127"),
        ([Column([Intervention("add", 3, float("nan"))])], "Hi", "must be a finite number"),
        ([Column([Intervention("clamp", 3, float("inf"))])], "Hi", "must be a finite number"),
        (add, "", "prompt is empty"),
        (add, "   ", "prompt is empty"),
        ([Column([])], "Hi", "Nothing to steer"),
    ]
    for cols, prompt, match in cases:
        with pytest.raises(UserError, match=match):
            svc.prepare(model.id, sae.id, cols, prompt)
    with pytest.raises(UserError, match="over the model's context length \\(128"):
        svc.run(model.id, sae.id, add, "The cat sat on the mat. " * 40, sampling=GREEDY)
    with pytest.raises(UserError, match="Max new tokens"):
        svc.prepare(model.id, sae.id, add, "Hi", sampling={"max_new_tokens": 0})
    # an SAE of another model: recorded for tiny-gpt2, used with tiny-llama
    m2, job = studio.models.add_local(str(tiny_llama_dir), name="tiny-llama")
    studio.jobs.wait(job.id, 60)
    with pytest.raises(UserError, match="trained on tiny-gpt2's activations"):
        svc.prepare("tiny-llama", sae.id, add, "Hi")
    # an SAE of another width, or for a layer the model does not have
    save_saelens(tmp_path / "w32", make_sae("topk", d=32), hook_name=HOOK)
    narrow = studio.trainings.import_sae(str(tmp_path / "w32"))
    with pytest.raises(UserError, match="width 32.*another model"):
        svc.prepare(model.id, narrow.id, add, "Hi")
    save_saelens(tmp_path / "l7", make_sae("topk"), hook_name="blocks.7.hook_resid_post")
    deep = studio.trainings.import_sae(str(tmp_path / "l7"))
    with pytest.raises(UserError, match="blocks.7.*3 layers"):
        svc.prepare(model.id, deep.id, add, "Hi")
    save_saelens(tmp_path / "odd", make_sae("topk"), hook_name="blocks.1.hook_nowhere")
    odd = studio.trainings.import_sae(str(tmp_path / "odd"))
    with pytest.raises(UserError, match="hook point 'blocks.1.hook_nowhere' does not exist"):
        svc.prepare(model.id, odd.id, add, "Hi")
    assert svc.saes_for_model(model.id) and narrow.id not in \
        [s.id for s in svc.saes_for_model(model.id)]


def test_stop_ends_a_generation_between_tokens(steer_studio, monkeypatch):
    from mistudio.jobs.context import JobContext
    from mistudio.steering import stream as stream_mod
    from mistudio.steering.job import generate_job

    studio, model, sae = steer_studio
    params = studio.steering.prepare(model.id, sae.id, [Column([Intervention("add", 3, 9.0)])],
                                     "Once", sampling={"max_new_tokens": 100})
    ctx = JobContext("job_stoptest", params)
    push = stream_mod.GenerationStream.push

    def push_then_stop(self, pieces, finished):
        push(self, pieces, finished)
        if len(self.pieces[0]) == 3:
            ctx.request_cancel()  # what the Stop button does, mid-generation

    monkeypatch.setattr(stream_mod.GenerationStream, "push", push_then_stop)
    with pytest.raises(JobCancelled):
        generate_job(params, ctx)
    snap = stream_mod.get_stream("job_stoptest").snapshot()
    assert snap["done"] and len(snap["pieces"][0]) == 3 and len(snap["pieces"][1]) == 3


def test_cli_prints_both_outputs_and_metrics_and_json(steer_studio, capsys):
    from mistudio.cli import main

    studio, model, sae = steer_studio
    data = str(studio.paths.root)
    rc = main(["--data-dir", data, "steer", model.id, "--sae", sae.id, "--feature", "3:+40",
               "--clamp", "5:0", "--prompt", "The cat", "--max-new-tokens", "6",
               "--save-preset", "cats"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "=== baseline ===" in out and "=== #3 +40, #5 = 0 ===" in out
    assert "mean KL vs baseline" in out and "feature 3:" in out
    rc = main(["--data-dir", data, "steer", model.id, "--sae", sae.id, "--sweep", "3:-20..20:3",
               "--prompt", "The cat", "--max-new-tokens", "4", "--json", "--sample",
               "--seed", "3"])
    cap = capsys.readouterr()
    assert cap.out, cap.err
    res = json.loads(cap.out)
    assert rc == 0 and [c["label"] for c in res["columns"]] == ["baseline", "#3 -20", "#3 +0",
                                                                  "#3 +20"]
    assert res["sampling"]["seed"] == 3 and not res["sampling"]["greedy"]
    rc = main(["--data-dir", data, "steer", model.id, "--sae", sae.id, "--feature", "999:+1",
               "--prompt", "x"])
    err = capsys.readouterr().err
    assert rc == 2 and "Feature 999 does not exist" in err and "Traceback" not in err
    rc = main(["--data-dir", data, "steer", model.id, "--sae", sae.id, "--feature", "3:abc",
               "--prompt", "x"])
    assert rc == 2 and "not a number" in capsys.readouterr().err
    assert main(["--data-dir", data, "steer", "--history"]) == 0
    assert "The cat" in capsys.readouterr().out
    assert main(["--data-dir", data, "steer", "--list-presets"]) == 0
    assert "#3 +40, #5 = 0" in capsys.readouterr().out
    rc = main(["--data-dir", data, "steer", model.id, "--sae", sae.id, "--preset", "cats",
               "--prompt", "The cat", "--max-new-tokens", "3", "--json"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["columns"][1]["label"] == \
        "#3 +40, #5 = 0"
