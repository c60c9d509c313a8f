"""The training loop: one activation stream, one or more SAEs (a sweep), checkpoints, metrics.

:class:`Trainer` is Qt-free and used the same way by the job (:mod:`mistudio.sae.job`), the
CLI (also under ``torchrun`` with DistributedDataParallel) and tests. Per step it reads one
batch and trains every SAE of the sweep on it: Adam (fused where available), LR warm-up and
decay, sparsity-coefficient warm-up, gradient clipping, per-architecture decoder-norm
rules, optional bf16/fp16 autocast (weights stay fp32) and ``torch.compile``.

Determinism: weights are initialised from per-SAE seeded generators, batches come in a
fixed order from ``(seed, epoch)``, and a checkpoint stores everything that changes
(weights, optimizer, trackers, stream cursor, RNG), so a resumed run continues exactly.

A non-finite loss stops the run with a clear error; checkpoints are only written while the
loss is finite, so the last good one is kept.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mistudio.errors import JobCancelled, UserError
from mistudio.paths import atomic_write_json, no_room_as_user_error, remove_partials
from mistudio.reliability import crash_point, crash_point_armed
from mistudio.sae import checkpoints as ckpt
from mistudio.sae.architectures import BatchTopKSAE, SparseAutoencoder, build_sae
from mistudio.sae.config import TOPK_FAMILY, TrainingConfig
from mistudio.sae.data import ActivationStream, BatchSource, estimate_norm_scale
from mistudio.sae.distributed import all_reduce, broadcast
from mistudio.sae.formats import save_saelens
from mistudio.sae.metrics import MemberTracker, lr_factor, sparsity_warmup
from mistudio.sae.train_setup import (_describe, _NullContext, make_optimizer,  # noqa: F401
                                      resolve_matmul_dtype)

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"
RESULT_FILE = "result.json"
SAES_DIR = "saes"


@dataclass
class Member:
    """One SAE of the run with its optimizer and trackers."""

    cfg: TrainingConfig
    sae: SparseAutoencoder
    optimizer: torch.optim.Optimizer
    tracker: MemberTracker
    module: torch.nn.Module  # the SAE, or its DDP wrapper
    last_metrics: dict = field(default_factory=dict)
    held_out: bool | None = None  # whether the final spliced evaluation used held-out tokens
    compiled_step: object = None  # torch.compile'd training_step (dense architectures)

    @property
    def name(self) -> str:
        return self.cfg.member_name


#: Under DDP, how often the processes agree on a stop (Ctrl+C, a cancelled job).
STOP_CHECK_EVERY_STEPS = 8


class Trainer:
    def __init__(self, config: TrainingConfig, source: BatchSource, out_dir: str | Path | None,
                 *, ctx=None, device: str | torch.device = "cpu", rank: int = 0,
                 world_size: int = 1, resume_from: str | Path | None = None,
                 evaluation: dict | None = None):
        self.config = config
        self.source = source
        self.out_dir = Path(out_dir) if out_dir else None
        self.ctx = ctx or _NullContext()
        self.device = torch.device(device)
        self.rank, self.world_size = rank, world_size
        self.is_main = rank == 0
        self.matmul_dtype = resolve_matmul_dtype(config.dtype, self.device)
        self.total_steps = config.total_steps
        config.validate(d_in=source.d_in, d_out=source.d_out, num_rows=source.num_rows)
        self.stream = ActivationStream(source, config.batch_size, seed=config.seed,
                                       shuffle=config.shuffle, rank=rank, world_size=world_size)
        self.step = 0
        self.tokens = 0
        self.scale_in = self.scale_out = 1.0
        self.members: list[Member] = []
        self._last_ckpt_tokens = 0
        self._ckpt_due_at = math.inf  # time.monotonic() of the next wall-time checkpoint
        self._ckpt_time_agreed = False  # DDP: the processes agreed a wall-time checkpoint
        self._resume_state = ckpt.load_checkpoint(resume_from) if resume_from else None
        # spliced-in evaluation: {"spec": EvalSpec dict} or {"skip_reason": "..."}
        self._evaluation = dict(evaluation or {})
        self._evaluator = None
        self._build()

    # ------------------------------------------------------------------ setup

    def _build(self) -> None:
        state = self._resume_state
        src = self.source
        if state is not None:
            if int(state["d_in"]) != src.d_in or int(state["d_out"]) != src.d_out:
                raise UserError(
                    f"The checkpoint was trained on activations of width {state['d_in']}, but "
                    f"the activation set has width {src.d_in}.",
                    hint="Resume with the activation set the training started on.")
            self.scale_in, self.scale_out = state["scale_in"], state["scale_out"]
        elif self.config.normalize_activations == "expected_average_only_in":
            self.scale_in, self.scale_out = estimate_norm_scale(
                src, self.config.normalization_tokens, seed=self.config.seed)
            if self.world_size > 1:  # every process uses rank 0's estimate
                scales = broadcast(torch.tensor([self.scale_in, self.scale_out],
                                                dtype=torch.float64, device=self.device))
                self.scale_in, self.scale_out = (float(v) for v in scales.tolist())
        for m_cfg in self.config.members():
            sae = build_sae(m_cfg, src.d_in, src.d_out).to(self.device)
            module: torch.nn.Module = sae
            if self.world_size > 1:
                if isinstance(sae, BatchTopKSAE):
                    sae.world_size = self.world_size  # select over the global batch
                from torch.nn.parallel import DistributedDataParallel as DDP

                with warnings.catch_warnings():
                    # torch 2.13 deprecates broadcast_buffers but says to keep it for buffers
                    # that must not be synced at init; ours are equal on every rank anyway
                    warnings.simplefilter("ignore", FutureWarning)
                    module = DDP(sae, device_ids=[self.device.index]
                                 if self.device.type == "cuda" else None,
                                 broadcast_buffers=False)
            opt = make_optimizer(sae.parameters(), m_cfg, self.device)
            tracker = MemberTracker(sae.d_sae, self.device, m_cfg.dead_window_tokens,
                                    sae.metric_names())
            member = Member(m_cfg, sae, opt, tracker, module)
            if m_cfg.compile and self.world_size == 1:
                member.compiled_step = self._compile(sae, m_cfg)
            self.members.append(member)
        if state is not None:
            by_name = {m["name"]: m for m in state["members"]}
            for m in self.members:
                saved = by_name.get(m.name)
                if saved is None:
                    raise UserError(f"The checkpoint has no SAE named {m.name!r}.",
                                    hint="Resume with the configuration the training used.")
                m.sae.load_state_dict(saved["sae"])
                m.optimizer.load_state_dict(saved["optimizer"])
                m.tracker.load_state_dict(saved["tracker"])
                if not self.is_main:  # the saved metric sums are global: count them once
                    m.tracker.sums.zero_()
                    m.tracker.extra_sums.zero_()
                m.last_metrics = saved.get("last_metrics", {})
            self.step, self.tokens = int(state["step"]), int(state["tokens"])
            self._last_ckpt_tokens = self.tokens
            self.stream.load_state_dict(state["stream"])
            ckpt.restore_rng(state["rng"])
            self._resume_state = None

    def _compile(self, sae: SparseAutoencoder, cfg: TrainingConfig):
        """``torch.compile`` the dense training step; None (eager) with the reason logged."""
        if sae.architecture not in ("relu", "jumprelu"):
            # TopK-style SAEs run sparse kernels that break the graph: compiled, their step
            # was slower (TopK 0.88x, BatchTopK 0.96x on CPU, benchmarks/sae_compile_bench.py); dense ones gain
            self.ctx.log(f"torch.compile is used for dense SAEs only; {cfg.member_name} "
                         f"({sae.architecture}) runs its sparse kernels eagerly.")
            return None
        try:
            return torch.compile(sae.training_step, backend=cfg.compile_backend)
        except Exception as exc:  # unknown backend, a Python torch.compile does not support...
            self.ctx.log(f"torch.compile is not available ({_describe(exc)}); training "
                         "without it.", "warning")
            return None

    # ------------------------------------------------------------------ state

    def state_dict(self, sums: dict | None = None) -> dict:
        """Everything a resume needs. ``sums``: each member's global metric sums (DDP:
        :meth:`_global_sums` on every process, since it is collective)."""
        sums = sums or {}
        return {
            "format": 1, "step": self.step, "tokens": self.tokens,
            "d_in": self.source.d_in, "d_out": self.source.d_out,
            "scale_in": self.scale_in, "scale_out": self.scale_out,
            "stream": self.stream.state_dict(), "rng": ckpt.rng_state(),
            "config": self.config.to_dict(),
            "members": [{"name": m.name, "sae": m.sae.state_dict(),
                         "optimizer": m.optimizer.state_dict(),
                         "tracker": {**m.tracker.state_dict(),
                                     **({"sums": sums[m.name].cpu()} if m.name in sums else {})},
                         "last_metrics": m.last_metrics}
                        for m in self.members],
        }

    def _global_sums(self, m: Member) -> torch.Tensor:
        """The tracker's metric sums over all processes (a copy; collective under DDP)."""
        return all_reduce(m.tracker.sums.clone()) if self.world_size > 1 else m.tracker.sums

    # ------------------------------------------------------------------ loop

    def _nonfinite(self, m: Member) -> bool:
        """Did a loss become NaN/inf since the last report, on any process?"""
        if self.world_size == 1:
            return m.tracker.nonfinite()
        flag = m.tracker.sums[m.tracker.SUMS.index("finite")].clone()
        return bool(all_reduce(flag).item() < 0)

    def _check_finite(self) -> None:
        for m in self.members:
            if self._nonfinite(m):
                last = ckpt.find_checkpoint(self.out_dir) if self.out_dir else None
                kept = (f" The last good checkpoint (step {last.step}) was kept."
                        if last else " No checkpoint had been written yet.")
                raise UserError(
                    f"Training diverged: the loss of SAE {m.name!r} became NaN or infinite "
                    f"before step {self.step}.{kept}",
                    hint="Lower the learning rate (or the sparsity coefficient), keep gradient "
                         "clipping on, and check the activations for extreme values.")

    def _train_member(self, m: Member, x: torch.Tensor, y: torch.Tensor, lr_mult: float,
                      n_global: int) -> None:
        lr = m.cfg.lr * lr_mult
        for g in m.optimizer.param_groups:
            g["lr"] = lr
        scale = sparsity_warmup(self.step, self.total_steps, m.cfg.l1_warmup_fraction)
        dead = m.tracker.dead_mask() if m.sae.architecture in TOPK_FAMILY else None
        if self.world_size > 1:
            out = m.module(x, y, sparsity_scale=scale, dead_mask=dead,
                           matmul_dtype=self.matmul_dtype)
        elif m.compiled_step is not None:
            try:
                out = m.compiled_step(x, y, sparsity_scale=scale, dead_mask=dead,
                                      matmul_dtype=self.matmul_dtype)
            except Exception as exc:  # no compiler toolchain, unsupported op...
                self.ctx.log(f"torch.compile failed ({_describe(exc)}); continuing without "
                             "it.", "warning")
                m.compiled_step = None
                m.optimizer.zero_grad(set_to_none=True)
                out = m.sae.training_step(x, y, sparsity_scale=scale, dead_mask=dead,
                                          matmul_dtype=self.matmul_dtype)
        else:
            out = m.sae.training_step(x, y, sparsity_scale=scale, dead_mask=dead,
                                      matmul_dtype=self.matmul_dtype)
        m.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        m.sae.constrain_gradients()
        if m.cfg.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(m.sae.parameters(), m.cfg.grad_clip_norm, foreach=True)
        m.optimizer.step()
        m.sae.after_step()
        fired = out.fired
        if self.world_size == 1:
            m.tracker.update(out, y, fired, n_global)
        else:
            # one all_reduce: firing counts (dead latents, density) and the batch's column
            # sums (its global mean, for the explained variance's total variance)
            yf = y.float()
            both = all_reduce(torch.cat([fired, yf.sum(dim=0)]))
            fired, mean_global = both[:fired.numel()], both[fired.numel():] / n_global
            m.tracker.update(out, y, fired, n_global)
            # the tracker measured variance around this process's mean; around the global
            # one it is larger by B * ||mean_local - mean_global||^2
            shift = (yf.mean(dim=0) - mean_global).pow(2).sum() * yf.shape[0]
            m.tracker.sums[m.tracker.SUMS.index("var")] += shift.to(torch.float64)
        m._lr, m._scale = lr, scale

    def run(self) -> dict:
        """Train to ``total_tokens``; returns the result summary (also saved as result.json)."""
        try:
            return self._run()
        finally:
            self.close()

    def close(self) -> None:
        """Give the evaluation's model back to the pool (leased while the training runs)."""
        if self._evaluator is not None:
            self._evaluator[0].close()
            self._evaluator = None

    def _run(self) -> dict:
        cfg = self.config
        if self.is_main and self.out_dir:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.out_dir / CONFIG_FILE, cfg.to_dict())
            self._truncate_metrics(self.step)
        self.ctx.log(f"Training {len(self.members)} SAE(s) on {self.source.num_rows:,} tokens "
                     f"of width {self.source.d_in}; {self.total_steps:,} steps of "
                     f"{cfg.batch_size} tokens on {self.device}"
                     + (f" with {self.matmul_dtype} autocast" if self.matmul_dtype else "")
                     + (f", starting at step {self.step}" if self.step else "") + ".")
        self._schedule_time_checkpoint(first=True)
        window_t0, window_tokens = time.perf_counter(), 0
        window_steps = 0
        try:
            while self.step < self.total_steps:
                self._control_point()
                item = self.stream.next()
                x, y = item if isinstance(item, tuple) else (item, None)
                x = x.to(self.device, non_blocking=True).mul_(self.scale_in)
                y = x if y is None else y.to(self.device, non_blocking=True).mul_(self.scale_out)
                lr_mult = lr_factor(self.step, self.total_steps, schedule=cfg.lr_schedule,
                                    warmup_steps=cfg.lr_warmup_steps,
                                    decay_fraction=cfg.lr_decay_fraction,
                                    min_fraction=cfg.lr_min_fraction)
                for m in self.members:
                    self._train_member(m, x, y, lr_mult, cfg.batch_size)
                self.step += 1
                self.tokens += cfg.batch_size
                window_tokens += cfg.batch_size
                window_steps += 1
                if self.step % cfg.metrics_every_steps == 0 or self.step == self.total_steps:
                    if self.device.type == "cuda":
                        torch.cuda.synchronize(self.device)
                    elapsed = time.perf_counter() - window_t0
                    self._report(window_tokens / max(elapsed, 1e-9),
                                 1000 * elapsed / max(window_steps, 1))
                    window_t0, window_tokens, window_steps = time.perf_counter(), 0, 0
                if (cfg.eval_every_steps and self.step % cfg.eval_every_steps == 0
                        and self.step < self.total_steps and self.world_size == 1):
                    # (under DDP only the final one: rank 0 alone evaluates, and a stop
                    # during it would break the processes' lockstep)
                    self.evaluate_spliced()
                    window_t0 = time.perf_counter()  # evaluation time is not training time
                if self.step < self.total_steps and self._checkpoint_due():
                    self.save_checkpoint()
        except JobCancelled:
            # Stop cleanly where we are: a checkpoint lets the run resume from here.
            self._check_finite()
            if self.tokens != self._last_ckpt_tokens:
                self.save_checkpoint()
            raise
        finally:
            self.stream.close()
        self._check_finite()
        return self.finish()

    def _schedule_time_checkpoint(self, first: bool = False, took_s: float = 0.0) -> None:
        """When the next wall-time checkpoint is due: the first after a quarter of the
        interval (a crash early in a long run loses little), then every interval, but never
        sooner than 20x the last save took, so saving costs at most ~5% of the time."""
        every = float(self.config.checkpoint_every_seconds or 0)
        if every <= 0:
            self._ckpt_due_at = math.inf
            return
        wait = every / 4 if first else max(every, 20 * took_s)
        self._ckpt_due_at = time.monotonic() + wait

    def _checkpoint_due(self) -> bool:
        """After a step: has it crossed a multiple of the token interval, or is the
        wall-time checkpoint due? (Under DDP the time is agreed in :meth:`_control_point`,
        since a checkpoint is collective and the processes' clocks differ.)"""
        every = self.config.checkpoint_interval_tokens
        if self.tokens // every > (self.tokens - self.config.batch_size) // every:
            return True
        if self.world_size > 1:
            return self._ckpt_time_agreed
        return time.monotonic() >= self._ckpt_due_at

    def _control_point(self) -> None:
        """Pause/cancel between steps. Under DDP every process must stop at the same step:
        a stop asked of any process (Ctrl+C; rank 0's job cancelled) is agreed on with one
        tiny all_reduce every STOP_CHECK_EVERY_STEPS steps; pausing is not offered (the
        other processes would time out)."""
        if self.world_size == 1:
            self.ctx.pause_point()
            return
        if self.step % STOP_CHECK_EVERY_STEPS:  # .item() syncs the host with the GPU: not
            return                              # every step (all processes skip alike)
        due = self.is_main and time.monotonic() >= self._ckpt_due_at
        flag = torch.tensor([1.0 if self.ctx.cancelled else 0.0, 1.0 if due else 0.0],
                            device=self.device)
        stop, checkpoint = all_reduce(flag, "max").tolist()
        if stop > 0:
            raise JobCancelled()
        self._ckpt_time_agreed = checkpoint > 0

    def _report(self, tokens_per_s: float, step_ms: float) -> None:
        self._check_finite()
        shared = {"tokens": float(self.tokens), "tokens_per_s": tokens_per_s,
                  "step_time_ms": step_ms}
        values = dict(shared)
        multi = len(self.members) > 1
        for m in self.members:
            if self.world_size > 1:  # every process reports the global batch's numbers
                m.tracker.sums.copy_(self._global_sums(m))
                if m.tracker.extra_names:
                    m.tracker.extra_sums.copy_(all_reduce(m.tracker.extra_sums.clone()))
            rep = m.tracker.report()
            rep["lr"] = getattr(m, "_lr", m.cfg.lr)
            rep["sparsity_coef"] = getattr(m, "_scale", 1.0) * {
                "relu": m.cfg.l1_coefficient, "jumprelu": m.cfg.l0_coefficient}.get(
                    m.sae.architecture, 0.0)
            if hasattr(m.sae, "threshold"):
                rep["threshold"] = float(m.sae.threshold.detach().float().mean())
            m.last_metrics = rep
            for k, v in rep.items():
                values[f"{m.name}/{k}" if multi else k] = v
        if not self.is_main:
            return
        self.ctx.metric(self.step, **values)
        self._write_metrics_line(values)
        first = self.members[0].last_metrics
        self.ctx.progress(self.step, self.total_steps,
                          f"step {self.step:,}/{self.total_steps:,} · loss {first['loss']:.4g} · "
                          f"L0 {first['l0']:.1f} · EV {first['explained_variance']:.3f} · "
                          f"{tokens_per_s:,.0f} tok/s")

    def _write_metrics_line(self, values: dict) -> None:
        if self.out_dir:
            line = json.dumps({"step": self.step, "time": time.time(),
                               **{k: (v if math.isfinite(v) else None)
                                  for k, v in values.items()}}) + "\n"
            with no_room_as_user_error(self.out_dir / METRICS_FILE), \
                    open(self.out_dir / METRICS_FILE, "a", encoding="utf-8") as fh:
                if crash_point_armed():
                    # an append cut in half (a power cut, a full disk): readers and the
                    # resume's truncation must cope with a torn last line
                    fh.write(line[: len(line) // 2])
                    fh.flush()
                    crash_point("train.metrics.append")
                fh.write(line[len(line) // 2:] if crash_point_armed() else line)

    # ------------------------------------------------------------------ spliced evaluation

    def evaluate_spliced(self, final: bool = False) -> dict[str, dict]:
        """CE loss score and KL score of every SAE spliced into the model (rank 0).

        Needs ``evaluation={"spec": ...}`` (the service builds it when the activation set's
        model is registered); otherwise the reason is logged once and nothing happens.
        Metrics go to the job context, ``metrics.jsonl`` and each SAE's final metrics.
        """
        cfg = self.config
        if not cfg.eval_tokens or not self.is_main or "skipped" in self._evaluation:
            return {}
        spec_dict = self._evaluation.get("spec")
        if not spec_dict:
            self._skip_evaluation(self._evaluation.get("skip_reason")
                                  or "no model was given to splice the SAE into")
            return {}
        from mistudio.sae.evaluation import (EvalSpec, evaluate_reconstruction, open_evaluator,
                                             sae_reconstructor)

        spec = EvalSpec.from_dict(spec_dict)
        device = self.device.type if self.device.index in (None, 0) else str(self.device)
        if self._evaluator is None:
            try:
                self._evaluator = open_evaluator(spec, device)
            except JobCancelled:
                raise
            except Exception as exc:
                self._skip_evaluation(str(exc) if isinstance(exc, UserError) else
                                      f"{type(exc).__name__}: {exc}")
                return {}
        evaluator, tok = self._evaluator
        values, out = {}, {}
        multi = len(self.members) > 1
        for m in self.members:
            if final:
                self.ctx.progress(self.step, self.total_steps,
                                  f"Evaluating {m.name} spliced into {spec.model_name or 'the model'}...")
            was_training = m.sae.training
            m.sae.eval()
            try:
                with torch.no_grad():
                    metrics, held_out = evaluate_reconstruction(
                        spec, sae_reconstructor(m.sae, self.scale_in, self.scale_out),
                        cfg.eval_tokens, device, evaluator=evaluator, tok=tok,
                        check_cancelled=self.ctx.check_cancelled,
                        log=self.ctx.log if final else None)
            except JobCancelled:
                raise
            except Exception as exc:  # an evaluation problem must never cost the trained SAEs
                self._skip_evaluation(str(exc) if isinstance(exc, UserError) else
                                      f"{type(exc).__name__}: {exc}")
                return {}
            finally:
                m.sae.train(was_training)
            out[m.name] = metrics
            if final:
                m.last_metrics = {**m.last_metrics, **metrics}
                m.held_out = held_out
            for k, v in metrics.items():
                values[f"{m.name}/{k}" if multi else k] = v
        self.ctx.metric(self.step, **values)
        self._write_metrics_line(values)
        first = out[self.members[0].name]
        self.ctx.log(f"Spliced evaluation at step {self.step:,} on {first['eval_tokens']:,.0f} "
                     "tokens: " + "; ".join(
                         f"{name} CE loss score {v['ce_loss_score']:.4f}, KL score "
                         f"{v['kl_div_score']:.4f}" for name, v in out.items()) + ".")
        return out

    def _skip_evaluation(self, reason: str) -> None:
        self._evaluation["skipped"] = reason
        self.ctx.log(f"Spliced evaluation (CE loss score, KL score) skipped: {reason}",
                     "warning")

    def _truncate_metrics(self, step: int) -> None:
        """After a resume, drop metric lines past the checkpoint (they will be redone)."""
        path = self.out_dir / METRICS_FILE
        if not path.exists():
            return
        keep = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except ValueError:  # a line torn by a crash mid-append: it is redone
                continue
            if isinstance(row, dict) and row.get("step", 0) <= step:
                keep.append(line)
        from mistudio.paths import atomic_write_text

        atomic_write_text(path, "".join(line + "\n" for line in keep))

    def save_checkpoint(self) -> ckpt.CheckpointInfo | None:
        self._check_finite()
        started = time.monotonic()
        self._last_ckpt_tokens = self.tokens
        self._ckpt_time_agreed = False
        # under DDP the window's metric sums are saved summed over every process
        sums = ({m.name: self._global_sums(m) for m in self.members} if self.world_size > 1
                else None)
        if not (self.is_main and self.out_dir):
            return None
        info = ckpt.save_checkpoint(self.out_dir, self.state_dict(sums), step=self.step,
                                    tokens=self.tokens,
                                    metrics={m.name: m.last_metrics for m in self.members},
                                    keep=self.config.keep_checkpoints)
        self._schedule_time_checkpoint(took_s=time.monotonic() - started)
        self.ctx.checkpoint(step=self.step, tokens=self.tokens, path=info.path)
        self.ctx.log(f"Checkpoint at step {self.step:,} ({self.tokens:,} tokens).")
        return info

    def finish(self) -> dict:
        """Final checkpoint, SAELens folders for every SAE, and ``result.json``."""
        result = {"step": self.step, "tokens": self.tokens, "scale_in": self.scale_in,
                  "scale_out": self.scale_out, "saes": []}
        if self._last_ckpt_tokens != self.tokens and (self.out_dir or self.world_size > 1):
            self.save_checkpoint()  # on every process: it is collective under DDP
        if self.is_main and self.out_dir:
            self.evaluate_spliced(final=True)
            if "skipped" in self._evaluation:
                result["evaluation_skipped"] = self._evaluation["skipped"]
            meta = self.source.meta
            model = self.config.model_name or str(meta.get("model_name") or meta.get("model")
                                                  or meta.get("model_id") or "")
            hook = self.config.hook_name or str(meta.get("hook_name") or "")
            hook_out = self.config.hook_name_out or str(
                getattr(self.source, "meta_out", {}).get("hook_name") or "")
            for m in self.members:
                density = m.tracker.density()
                folder = self.out_dir / SAES_DIR / m.name
                save_saelens(folder, m.sae, scale_in=self.scale_in, scale_out=self.scale_out,
                             model_name=model, hook_name=hook, hook_name_out=hook_out,
                             extra_metadata={"member": m.name, "tokens": self.tokens,
                                             "activation_id": self.config.activation_id},
                             log_feature_sparsity=density["log10_frequency"])
                result["saes"].append({
                    "member": m.name, "path": str(folder), "architecture": m.sae.architecture,
                    "d_in": m.sae.d_in, "d_sae": m.sae.d_sae, "k": m.cfg.k,
                    "metrics": m.last_metrics, "density_histogram": density["histogram"],
                    "dead_latents": density["dead_latents"],
                    "dead_fraction": density["dead_latents"] / max(m.sae.d_sae, 1),
                    "dead_window_tokens": density["dead_window_tokens"],
                    "eval_held_out": m.held_out,
                    "hyperparameters": {
                        k: getattr(m.cfg, k) for k in ("lr", "k", "l1_coefficient",
                                                        "l0_coefficient", "init_seed")}})
            atomic_write_json(self.out_dir / RESULT_FILE, result)
            for leftovers in (self.out_dir, self.out_dir / ckpt.CHECKPOINT_DIR,
                              self.out_dir / SAES_DIR):
                remove_partials(leftovers)  # of writes that a kill before a resume cut short
            self.ctx.progress(self.total_steps, self.total_steps, "Done.")
        return result
