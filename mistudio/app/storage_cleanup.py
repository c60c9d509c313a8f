"""The cleanup policy applied: reads what each rule needs (records through their
repositories, folders, live jobs), builds one plan, and deletes its items through the
owning services (``StorageService`` holds one :class:`CleanupRunner`).

The real run re-plans and deletes only what the new plan lists; given the plan a preview
showed (``expected``), it deletes only items in both, so nothing the user was not shown goes.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from dataclasses import dataclass, field
from typing import Callable

from mistudio.app.jobs import JobService
from mistudio.paths import DataPaths, atomic_write_json
from mistudio.storage import rules
from mistudio.storage.cleanup import (PROTECTING_STATUSES, CleanupItem, CleanupPlan,
                                      cleanup_plan, delete_items)

log = logging.getLogger(__name__)
GB = 1024 ** 3
LAST_RUN_FILE = "cleanup-last.json"  # under logs/: the newest run's summary


@dataclass
class CleanupPolicy:
    """The rules and their settings (``Settings.cleanup_*``)."""

    tmp: bool = True
    orphans: bool = True
    cache_limit_gb: float = 20.0          # 0: never trim
    keep_activation_sets: int = 0         # 0: keep all
    thin_checkpoints: bool = False
    checkpoints_kept: int = 6
    feature_visuals: bool = True
    at_startup: bool = False

    @classmethod
    def from_settings(cls, s) -> "CleanupPolicy":
        return cls(tmp=s.cleanup_tmp, orphans=s.cleanup_orphans,
                   cache_limit_gb=float(s.cleanup_cache_limit_gb),
                   keep_activation_sets=int(s.cleanup_keep_activation_sets),
                   thin_checkpoints=s.cleanup_thin_checkpoints,
                   checkpoints_kept=int(s.cleanup_checkpoints_kept),
                   feature_visuals=s.cleanup_feature_visuals, at_startup=s.cleanup_at_startup)

    def to_settings(self) -> dict:
        return {"cleanup_tmp": self.tmp, "cleanup_orphans": self.orphans,
                "cleanup_cache_limit_gb": float(self.cache_limit_gb),
                "cleanup_keep_activation_sets": int(self.keep_activation_sets),
                "cleanup_thin_checkpoints": self.thin_checkpoints,
                "cleanup_checkpoints_kept": int(self.checkpoints_kept),
                "cleanup_feature_visuals": self.feature_visuals,
                "cleanup_at_startup": self.at_startup}

    def describe(self) -> list[str]:
        """One line per rule, what it does with these settings."""
        on = lambda b: "on" if b else "off"  # noqa: E731
        return [
            f"tmp/ of no live job: {on(self.tmp)}",
            f"orphan folders and records: {on(self.orphans)}",
            "cache LRU: " + (f"trim to {self.cache_limit_gb:g} GB" if self.cache_limit_gb > 0
                             else "off"),
            "activation sets: " + (f"keep the newest {self.keep_activation_sets} (and pinned "
                                   "or used ones)" if self.keep_activation_sets > 0
                                   else "off (keep all)"),
            "checkpoint thinning: " + (f"keep {self.checkpoints_kept} log-spaced, the newest "
                                       "included" if self.thin_checkpoints else "off"),
            f"feature visualisations of deleted SAEs: {on(self.feature_visuals)}",
            f"run at start-up: {on(self.at_startup)}",
        ]


@dataclass
class CleanupSummary:
    """What one run did (shown in the Storage view and the status bar after start-up)."""

    at: str
    trigger: str  # "start-up" | "on demand"
    deleted: int
    bytes: int
    kept: int
    rules: dict = field(default_factory=dict)  # rule -> items deleted
    error: str = ""

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def text(self) -> str:
        from mistudio.paths import human_bytes

        when = self.at[:16].replace("T", " ")
        if self.error and not self.deleted:
            return f"Cleanup ({self.trigger}, {when}) failed: {self.error}"
        if self.error:
            return (f"Cleanup ({self.trigger}, {when}): deleted {self.deleted} item(s), freed "
                    f"{_human(self.bytes)}, then {self.error}.")
        if not self.deleted:
            return f"Cleanup ({self.trigger}, {when}): nothing to delete."
        per = ", ".join(f"{n} {r}" for r, n in sorted(self.rules.items()))
        return (f"Cleanup ({self.trigger}, {when}): deleted {self.deleted} item(s) ({per}), "
                f"freed {human_bytes(self.bytes)}.")


class CleanupRunner:
    def __init__(self, *, store, paths: DataPaths, jobs: JobService,
                 policy: Callable[[], CleanupPolicy],
                 row_deleters: dict[str, Callable[[str], None]],
                 checkpoint_deleter: Callable[[str, str], None] | None,
                 orphans: Callable[[], list]):
        self.store = store
        self.paths = paths
        self.jobs = jobs  # what runs now and what ran (never the raw queue or table)
        self.policy = policy
        self.row_deleters = row_deleters
        self.checkpoint_deleter = checkpoint_deleter
        self.orphans = orphans

    def live_jobs(self) -> list[str]:
        return self.jobs.live_ids()

    # ------------------------------------------------------------------ planning

    def plan(self, policy: CleanupPolicy | None = None) -> CleanupPlan:
        from mistudio.activations.repository import ActivationSetsRepo
        from mistudio.analysis.repository import FeatureAnalysesRepo
        from mistudio.sae.checkpoints import list_checkpoints
        from mistudio.sae.repository import SAEsRepo, TrainingsRepo

        policy = policy or self.policy()
        root = self.paths.root
        live = self.live_jobs()
        protecting = self.jobs.list(status=PROTECTING_STATUSES)
        base = cleanup_plan(root, self.orphans() if policy.orphans else [], live_jobs=live,
                            protecting_jobs=protecting, row_tables=self.row_deleters,
                            tmp=policy.tmp)
        items, kept = list(base.items), list(base.kept)

        def add(found):
            got, stays = found
            listed = {i.where for i in items}
            items.extend(i for i in got if i.where not in listed)
            kept.extend(stays)

        trainings = TrainingsRepo(self.store).list()
        saes = SAEsRepo(self.store).list()
        analyses = FeatureAnalysesRepo(self.store).list()
        if policy.feature_visuals:
            add(rules.feature_visual_rule(self.paths.cache, {s.id for s in saes}, analyses,
                                          active_jobs=set(live), root=root,
                                          needed=self._analysis_users()))
        if policy.keep_activation_sets > 0:
            users = self._set_users(trainings, saes, protecting)
            users += [(f"feature analysis {a.id}", a.activation_path) for a in analyses
                      if a.activation_path]
            add(rules.activation_rule(ActivationSetsRepo(self.store).list(),
                                      policy.keep_activation_sets, users=users, root=root))
        if policy.thin_checkpoints and self.checkpoint_deleter is not None:
            guarded = self._guarded_trainings(trainings, protecting, set(live))
            cks = {t.id: list_checkpoints(t.folder) for t in trainings if t.folder}
            add(rules.checkpoint_rule(trainings, cks, policy.checkpoints_kept,
                                      guarded=guarded,
                                      users=[(f"SAE {s.name or s.id}", s.folder)
                                             for s in saes]))
        if policy.cache_limit_gb > 0:
            skip = {i.where for i in items}
            add(rules.cache_rule(self.paths.cache, int(policy.cache_limit_gb * GB),
                                 live_jobs=live, skip=skip))
        items.sort(key=lambda i: (-i.bytes, i.rule, i.where))
        return CleanupPlan(items, kept)

    def _analysis_users(self) -> dict[str, str]:
        """Analysis id -> the auto-interp runs that refer to it (no service deletes those)."""
        from mistudio.autointerp.repository import AutointerpRepo

        runs: dict[str, list[str]] = {}
        for r in AutointerpRepo(self.store).list_runs():
            runs.setdefault(r.analysis_id, []).append(r.id)
        return {a: f"auto-interp run(s) {', '.join(ids[:3])}" for a, ids in runs.items()}

    @staticmethod
    def _set_users(trainings, saes, protecting) -> list[tuple[str, str]]:
        by_training: dict[str, list[str]] = {}
        for s in saes:
            if s.training_id:
                by_training.setdefault(s.training_id, []).append(s.name or s.id)
        users = []
        for t in trainings:
            names = by_training.get(t.id)
            who = f"training {t.name or t.id}" + (f" (SAE {', '.join(names[:2])})" if names
                                                 else "")
            users.append((who, json.dumps([t.activation_id, t.activation_path,
                                           t.target_activation_path, t.config], default=str)))
        for j in protecting:
            users.append((f"the {j.status} job {j.id}", json.dumps(j.params, default=str)
                          + " " + (j.target or "")))
        return users

    @staticmethod
    def _guarded_trainings(trainings, protecting, live: set[str]) -> dict[str, str]:
        guarded = {}
        for t in trainings:
            if t.job_id and t.job_id in live:
                guarded[t.id] = f"its job {t.job_id} is running"
                continue
            for j in protecting:
                text = json.dumps(j.params, default=str)
                if j.target == t.id or j.id == t.job_id or (t.folder and t.folder in text):
                    guarded[t.id] = f"its job {j.id} is {j.status}: resume needs the newest"
                    break
        return guarded

    # ------------------------------------------------------------------ running

    def run(self, *, dry_run: bool = True, expected: CleanupPlan | None = None,
            trigger: str = "on demand", policy: CleanupPolicy | None = None) -> CleanupPlan:
        """The plan (dry run), or what was deleted. A job that starts while the real run
        deletes stops it: what is left moves to ``kept`` with why (the plan was made while
        that job did not exist, e.g. a resume needing a checkpoint)."""
        planned_live = set(self.live_jobs())
        plan = self.plan(policy)
        if expected is not None:  # only what the preview showed, and only if still listed
            shown = {i.key for i in expected.items}
            plan = CleanupPlan([i for i in plan.items if i.key in shown], plan.kept)
        if dry_run:
            return plan
        done: list[CleanupItem] = []
        error = ""
        try:
            for n, item in enumerate(plan.items):
                started = [j for j in self.live_jobs() if j not in planned_live]
                if started:
                    why = f"left: the job {started[0]} started during the cleanup"
                    plan.kept += [CleanupItem(i.rule, i.where, i.bytes, why, i.owner)
                                  for i in plan.items[n:]]
                    error = (f"stopped after {len(done)} item(s): the job {started[0]} "
                             "started; run it again later")
                    break
                done += delete_items([item], self.row_deleters, self.checkpoint_deleter)
        except Exception as exc:
            self._remember(CleanupSummary(_now(), trigger, len(done), sum(i.bytes for i in done),
                                          len(plan.kept), _per_rule(done), error=str(exc)))
            raise
        self._remember(CleanupSummary(_now(), trigger, len(done), sum(i.bytes for i in done),
                                      len(plan.kept), _per_rule(done), error=error))
        return CleanupPlan(done, plan.kept)

    def _remember(self, summary: CleanupSummary) -> None:
        try:
            atomic_write_json(self.paths.logs / LAST_RUN_FILE, summary.to_dict())
        except OSError:
            log.exception("cannot record the cleanup summary")
        log.info(summary.text())

    def last_run(self) -> CleanupSummary | None:
        try:
            raw = json.loads((self.paths.logs / LAST_RUN_FILE).read_text(encoding="utf-8"))
            return CleanupSummary(**raw)
        except (OSError, ValueError, TypeError):
            return None


def _human(n: int) -> str:
    from mistudio.paths import human_bytes

    return human_bytes(n)


def _per_rule(items: list[CleanupItem]) -> dict:
    out: dict[str, int] = {}
    for i in items:
        out[i.rule] = out.get(i.rule, 0) + 1
    return out


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
