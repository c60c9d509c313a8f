"""The loaded-model pool: reuse, least-recently-used eviction while memory allows, release on
demand, leases, and its place in memory estimates. Real tiny models load through the real
loader; only the reading of free memory is given by the test (the machine's is not ours)."""

import pytest

from mistudio.models.pool import ModelPool, expected_load_bytes, model_memory_bytes


class FreeMemory:
    """Free bytes of a pretend device: what the pool's models take is not free."""

    def __init__(self, pool_ref, total: int):
        self.pool_ref, self.total = pool_ref, total

    def __call__(self, device: str) -> int:
        return self.total - sum(e.memory_bytes for e in self.pool_ref[0].loaded())


def _pool(total: int, **kw) -> ModelPool:
    ref = []
    pool = ModelPool(free_bytes=FreeMemory(ref, total), **kw)
    ref.append(pool)
    return pool


@pytest.fixture(scope="module")
def one_model_bytes(tiny_gpt2_dir):
    pool = ModelPool(free_bytes=lambda d: 1 << 40)
    return pool.get(tiny_gpt2_dir).memory_bytes


def test_a_model_is_loaded_once_and_reused(tiny_gpt2_dir):
    pool = ModelPool(free_bytes=lambda d: 1 << 40)
    a = pool.get(tiny_gpt2_dir, dtype="float32", device="cpu")
    b = pool.get(tiny_gpt2_dir, dtype="float32", device="cpu")
    assert a is b and len(pool.loaded()) == 1
    # the figure the pool counts is the model's own footprint, summed per device
    assert a.memory_bytes == model_memory_bytes(a.model) > 0
    assert pool.held_bytes("cpu") == a.memory_bytes and pool.held_bytes("cuda") == 0


def test_the_least_recently_used_model_is_evicted_when_memory_runs_short(
        tiny_gpt2_dir, tiny_llama_dir, one_model_bytes):
    # room for two fp32 tiny models (with headroom), not three
    pool = _pool(total=int(2.9 * one_model_bytes * 1.2) + 1)
    gpt2 = pool.get(tiny_gpt2_dir, dtype="float32")
    llama = pool.get(tiny_llama_dir, dtype="float32")
    assert [e.folder for e in pool.loaded()] == [gpt2.folder, llama.folder]
    pool.get(tiny_gpt2_dir, dtype="float32")  # used again: now the llama is the oldest
    assert [e.folder for e in pool.loaded()] == [llama.folder, gpt2.folder]
    # a new model needing more than is free: the oldest idle one gives way, not the newest
    pool.get(tiny_gpt2_dir, dtype="bfloat16", expected_bytes=2 * one_model_bytes)
    folders = [e.folder for e in pool.loaded()]
    assert llama.folder not in folders, "the least recently used model stays loaded"
    assert gpt2.folder in folders


def test_a_leased_model_is_never_evicted(tiny_gpt2_dir, tiny_llama_dir, one_model_bytes):
    pool = _pool(total=int(1.5 * one_model_bytes))
    with pool.lease(tiny_gpt2_dir) as held:
        assert held.users == 1
        pool.get(tiny_llama_dir, expected_bytes=one_model_bytes)
        assert held.key in [e.key for e in pool.loaded()]
    assert held.users == 0
    # once the job lets go, the older model gives way to a new one
    pool.get(tiny_gpt2_dir, dtype="bfloat16", expected_bytes=one_model_bytes)
    assert held.key not in [e.key for e in pool.loaded()]


def test_max_models_keeps_the_pool_small(tiny_gpt2_dir, tiny_llama_dir):
    pool = ModelPool(free_bytes=lambda d: 1 << 40, max_models=1)
    pool.get(tiny_gpt2_dir)
    pool.get(tiny_llama_dir)
    assert [e.folder for e in pool.loaded()] == [str(tiny_llama_dir.resolve())]


def test_release_on_demand(tiny_gpt2_dir, tiny_llama_dir):
    pool = ModelPool(free_bytes=lambda d: 1 << 40)
    pool.get(tiny_gpt2_dir)
    pool.get(tiny_llama_dir)
    assert pool.release(tiny_gpt2_dir) == 1
    assert [e.folder for e in pool.loaded()] == [str(tiny_llama_dir.resolve())]
    assert pool.release() == 1 and pool.loaded() == []


def test_expected_bytes_follow_the_weight_files(tiny_gpt2_dir):
    fp32 = expected_load_bytes(tiny_gpt2_dir, "float32", "none")
    files = sum(f.stat().st_size for f in tiny_gpt2_dir.glob("*.safetensors"))
    assert fp32 == pytest.approx(files, rel=0.01)  # the fixture saves fp32 weights
    assert expected_load_bytes(tiny_gpt2_dir, "bfloat16", "none") == pytest.approx(fp32 / 2, rel=0.01)


def test_the_models_service_counts_the_pool_in_estimates(studio, tiny_gpt2_dir):
    rec, job = studio.models.add_local(str(tiny_gpt2_dir), name="tiny")
    studio.jobs.wait(job.id, timeout=60)
    model = rec.id
    studio.models.release(model)
    base = studio.models.held_bytes("cpu")  # other tests' models in the process pool
    before = studio.models.memory_estimate(model, device="cpu")
    assert before["already_loaded_bytes"] == base
    loaded = studio.models.load(model, dtype="float32", device="cpu")
    try:
        after = studio.models.memory_estimate(model, device="cpu")
        assert after["already_loaded_bytes"] == base + loaded.memory_bytes
        # an idle loaded model would be evicted for a new one: its memory counts as free
        assert after["evictable_bytes"] == before["evictable_bytes"] + loaded.memory_bytes
        assert studio.models.loaded()[-1]["bytes"] == loaded.memory_bytes
    finally:
        assert studio.models.release(model) == 1
    assert studio.models.held_bytes("cpu") == base


def test_a_lease_can_be_kept_and_closed_once(tiny_gpt2_dir):
    pool = ModelPool(free_bytes=lambda d: 1 << 40)
    lease = pool.lease(tiny_gpt2_dir)
    assert lease.loaded.users == 1
    lease.close()
    lease.close()  # idempotent: a second close never lets go of another holder's lease
    assert lease.loaded.users == 0


def _pooled(folder):
    from mistudio.models.pool import MODEL_POOL

    key = str(folder.resolve())
    return [e for e in MODEL_POOL.loaded() if e.folder == key and e.dtype == "float32"
            and e.device == "cpu"]


def _squeeze_pool() -> None:
    """Another job asking for all the memory there is: every idle model gives way."""
    from mistudio.models.pool import MODEL_POOL

    MODEL_POOL.make_room("cpu", 1 << 60)


def test_extraction_holds_its_model_while_it_runs(tmp_path, tiny_gpt2_dir, packed_tokenization):
    """A load for another job in the middle of an extraction must not evict the extraction's
    model (with ``get`` instead of ``lease`` it did: the job then ran on a model the pool
    had dropped, and the next job loaded a second copy)."""
    from mistudio.activations.extract import run as extract
    from mistudio.jobs.context import JobContext

    seen = []

    def on_event(_job, kind, payload):
        if kind == "progress" and "tokens/s" in (payload.get("message") or "") and not seen:
            _squeeze_pool()
            seen.append([e.users for e in _pooled(tiny_gpt2_dir)])

    hook = "blocks.0.hook_resid_post"
    params = {"model_folder": str(tiny_gpt2_dir), "tokenization": str(packed_tokenization),
              "hook_points": [hook], "device": "cpu", "model_dtype": "float32",
              "outputs": {hook: {"set_id": "act_x", "folder": str(tmp_path / "set")}},
              "batch_size": 2, "store_dtype": "float32"}
    result = extract(params, JobContext.standalone(tmp_path / "job", on_event=on_event))
    assert result["tokens"] > 0
    assert seen == [[1]], "the model was evicted (or not held) while the extraction ran"
    assert [e.users for e in _pooled(tiny_gpt2_dir)] == [0]  # let go when it ended


def test_evaluation_holds_its_model_while_it_runs(tiny_gpt2_dir, packed_tokenization):
    from mistudio.sae.evaluation import EvalSpec, evaluate_reconstruction

    spec = EvalSpec(model_folder=str(tiny_gpt2_dir), tokenization=str(packed_tokenization),
                    hook_name="blocks.0.hook_resid_post", model_dtype="float32")
    seen = []

    def reconstruct(x):  # runs inside the spliced forward passes
        if not seen:
            _squeeze_pool()
            seen.append([e.users for e in _pooled(tiny_gpt2_dir)])
        return x

    metrics, _ = evaluate_reconstruction(spec, reconstruct, 64, "cpu")
    assert metrics["eval_tokens"] > 0
    assert seen == [[1]], "the model was evicted (or not held) while the evaluation ran"
    assert [e.users for e in _pooled(tiny_gpt2_dir)] == [0]
