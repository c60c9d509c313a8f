"""The kill harness: real CLI jobs killed outright, then everything checked (docs/reliability.md).

For each kill: a copy of a prepared data folder (a tiny GPT-2 model, a dataset, its
tokenization, an activation set, a trained SAE), one real ``python -m mistudio ...`` job in a
child process, killed with SIGKILL either at a random instant or at a named crash point
(``MISTUDIO_CRASH_AT=phase:n``, :mod:`mistudio.reliability`). Then, in this process:

1. ``PRAGMA integrity_check`` of the database file is ``ok``;
2. the store reopened (a restart): no job, and no dataset, tokenization, activation set,
   training, analysis or generation row, is left active;
3. every artifact the database calls complete verifies against its manifest (sizes and
   SHA-256 written last); a stopped training's row matches its newest checkpoint;
4. the job is resumed the way a user would (``resume`` where the product offers it, else run
   again) and reaches the very result of an uninterrupted run (bytes/tensors compared; CPU
   eager, one thread), with no partial files left behind.

Kills are seeded (``random.Random(seed)``) and each is logged. Named crash points are chosen
least-hit first, so a long run hits each at least ``--min-per-point`` times.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.reliability.kill_scenarios import (  # noqa: F401 - the tests use them from here
    KINDS, REPO, Base, child_env, cli_args, fingerprint, open_studio, prepare_base,
    record_ids, resume, training_config)

# ============================================================================ the checks


def integrity(db: Path) -> str:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def check_store(s) -> list[str]:
    """Nothing left active; every complete artifact verifies; stopped trainings' rows match
    their newest checkpoint. Returns the problems found."""
    from mistudio.manifest import verify_manifest
    from mistudio.sae.checkpoints import find_checkpoint, list_checkpoints

    problems = []
    active = [j for j in s.list_jobs() if j.status in ("queued", "running", "paused")]
    problems += [f"job {j.id} ({j.kind}) left {j.status}" for j in active]
    for d in s.datasets.list():
        if d.status != "ready":
            problems.append(f"dataset {d.id} left {d.status}")
        else:
            problems += verify_manifest(s.datasets.folder(d.id))
    for t in s.datasets.tokenizations():
        if t.status != "ready":
            problems.append(f"tokenization {t.id} left {t.status}")
        else:
            problems += verify_manifest(t.path, "COMPLETE")
    for a in s.activations.list():
        if a.status == "extracting":
            problems.append(f"activation set {a.id} left extracting")
        elif a.status == "ready":
            problems += verify_manifest(a.folder, "COMPLETE")
    for tr in s.trainings.list_trainings():
        if tr.status in ("queued", "running", "paused"):
            problems.append(f"training {tr.id} left {tr.status}")
        for c in list_checkpoints(tr.folder):
            problems += verify_manifest(c.path)
        if tr.status == "completed":
            for sae in s.trainings.list_saes(tr.id):
                problems += verify_manifest(sae.folder)
        elif tr.status in ("interrupted", "cancelled", "failed"):
            newest = find_checkpoint(tr.folder)
            if newest is not None and (tr.step, tr.tokens) != (newest.step, newest.tokens):
                problems.append(f"training {tr.id}: row at {tr.tokens} tokens, newest "
                                f"checkpoint at {newest.tokens}")
    for sae in s.trainings.list_saes():
        problems += verify_manifest(sae.folder)
    for rec in s.features.list_analyses():
        if rec.status in ("queued", "running"):
            problems.append(f"analysis {rec.id} left {rec.status}")
        elif rec.status == "completed":
            problems += verify_manifest(rec.folder, "COMPLETE")
            n = len(s.features.feature_rows(analysis=rec.id))
            if n != rec.d_sae:
                problems.append(f"analysis {rec.id}: {n} feature rows of {rec.d_sae}")
    for g in s.steering.history():
        if g.status in ("queued", "running"):
            problems.append(f"generation {g.id} left {g.status}")
        elif g.status == "completed":
            try:
                json.loads(Path(g.file).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                problems.append(f"generation {g.id}: its file {g.file} unreadable: {exc}")
    return problems


def leftovers(data: Path) -> list[str]:
    """Partial files of killed writes still under the data folder (tmp/ is emptied at start)."""
    found = []
    for root, dirs, files in os.walk(data):
        rel = Path(root).relative_to(data)
        if rel.parts[:1] in (("tmp",), ("logs",), ("backups",)):
            continue
        for name in dirs + files:
            if name.startswith(".") and name.endswith((".tmp", ".partial", ".old")):
                found.append(str(Path(root) / name))
        if Path(root).parent.parent.name == "features" and "work" in dirs:
            found.append(str(Path(root) / "work"))
    return found


# ============================================================================ one kill


@dataclass
class Attempt:
    index: int
    kind: str
    mode: str  # "point" | "random"
    phase: str = ""  # crash point as phase:n, or the random delay
    delay_s: float = 0.0
    killed: bool = False
    returncode: int | None = None
    seconds: float = 0.0
    problems: list = field(default_factory=list)

    def log_line(self) -> str:
        where = self.phase if self.mode == "point" else f"after {self.delay_s:.2f} s"
        state = "killed" if self.killed else f"ran to the end (rc {self.returncode})"
        verdict = "ok" if not self.problems else "FAIL: " + "; ".join(self.problems[:3])
        return (f"#{self.index:03d} {self.kind:<8} {self.mode:<6} {where:<34} {state} "
                f"({self.seconds:.0f} s): {verdict}")


def run_child(args: list[str], data: Path, *, crash_at: str = "", trace: str = "",
              kill_after: float | None = None, timeout: float = 300) -> tuple[int, float, str]:
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "mistudio", *args], cwd=str(REPO),
                            env=child_env(data, crash_at, trace), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        if kill_after is not None:
            try:
                proc.wait(kill_after)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
        _out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    return proc.returncode, time.monotonic() - t0, err or ""


def fresh_copy(base: Base, run_dir: Path) -> Path:
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    data = run_dir / "data"
    shutil.copytree(base.data, data)
    return data


def verify_and_resume(kind: str, base: Base, data: Path, run_dir: Path, base_ids: dict,
                      reference: dict | None) -> tuple[list[str], dict]:
    problems = []
    check = integrity(data / "mistudio.db")
    if check != "ok":
        return [f"integrity_check: {check}"], {}
    s = open_studio(data)  # the restart
    try:
        problems += ["after the kill: " + p for p in check_store(s)]
        resume(kind, s, base, run_dir, base_ids)
        problems += ["after resuming: " + p for p in check_store(s)]
        result = fingerprint(kind, s, base_ids)
    finally:
        s.close(timeout=30)
    problems += [f"left behind: {p}" for p in leftovers(data)]
    check = integrity(data / "mistudio.db")
    if check != "ok":
        problems.append(f"integrity_check after resuming: {check}")
    if reference is not None and result != reference:
        diff = sorted(k for k in set(result) | set(reference) if result.get(k) != reference.get(k))
        problems.append(f"the resumed result differs from an uninterrupted run in {diff}")
    return problems, result


def run_attempt(attempt: Attempt, base: Base, base_ids: dict, reference: dict,
                scratch: Path, keep_failed: Path | None = None) -> Attempt:
    run_dir = scratch / f"a{attempt.index:04d}-{attempt.kind}"
    data = fresh_copy(base, run_dir)
    args = cli_args(attempt.kind, base, run_dir)
    t0 = time.monotonic()
    if attempt.mode == "point":
        rc, _secs, err = run_child(args, data, crash_at=attempt.phase)
    else:
        rc, _secs, err = run_child(args, data, kill_after=attempt.delay_s)
    attempt.returncode = rc
    attempt.killed = rc == -signal.SIGKILL
    if not attempt.killed and rc != 0:
        attempt.problems.append(f"the job failed without being killed (rc {rc}): "
                                f"{err.strip()[-300:]}")
    try:
        problems, _result = verify_and_resume(attempt.kind, base, data, run_dir, base_ids,
                                              reference[attempt.kind])
        attempt.problems += problems
    except Exception as exc:  # noqa: BLE001 - a harness failure is a finding, reported
        import traceback

        attempt.problems.append(f"{type(exc).__name__}: {exc} "
                                f"{traceback.format_exc(limit=4)[-600:]}")
    attempt.seconds = time.monotonic() - t0
    if attempt.problems and keep_failed is not None:
        shutil.copytree(run_dir, keep_failed / run_dir.name, dirs_exist_ok=True)
    shutil.rmtree(run_dir, ignore_errors=True)
    return attempt


# ============================================================================ the plan


@dataclass
class Profile:
    """An uninterrupted traced run of one kind: its crash points (hits) and duration."""

    kind: str
    hits: dict
    seconds: float
    reference: dict


def profile_kind(kind: str, base: Base, base_ids: dict, scratch: Path) -> Profile:
    run_dir = scratch / f"profile-{kind}"
    data = fresh_copy(base, run_dir)
    trace = run_dir / "trace.txt"
    rc, secs, err = run_child(cli_args(kind, base, run_dir), data, trace=str(trace))
    if rc != 0:
        raise RuntimeError(f"the uninterrupted {kind} run failed (rc {rc}): {err[-2000:]}")
    hits = Counter(trace.read_text().split()) if trace.exists() else Counter()
    problems, result = verify_and_resume(kind, base, data, run_dir, base_ids, None)
    if problems:
        raise RuntimeError(f"the uninterrupted {kind} run fails the checks: {problems}")
    shutil.rmtree(run_dir, ignore_errors=True)
    return Profile(kind, dict(hits), secs, result)


def reference_in_process(kind: str, base: Base, base_ids: dict, scratch: Path) -> dict:
    """An uninterrupted run of ``kind`` in this process (resume() on an untouched copy
    starts it fresh): the reference when no traced child run was made (the CI set)."""
    run_dir = scratch / f"reference-{kind}"
    data = fresh_copy(base, run_dir)
    s = open_studio(data)
    try:
        resume(kind, s, base, run_dir, base_ids)
        result = fingerprint(kind, s, base_ids)
    finally:
        s.close(timeout=30)
    shutil.rmtree(run_dir, ignore_errors=True)
    return result


def reference_for(harness: dict, kind: str) -> dict:
    """The (cached) in-process references of a harness dict made by :func:`prepare_harness`."""
    refs = harness["references"]
    if kind not in refs:
        refs[kind] = reference_in_process(kind, harness["base"], harness["ids"],
                                          harness["scratch"])
    return refs


def prepare_harness(work: Path) -> dict:
    base = prepare_base(work / "setup")
    s = open_studio(Path(base.data))
    try:
        ids = record_ids(s)
    finally:
        s.close(timeout=30)
    return {"base": base, "ids": ids, "scratch": work / "runs", "references": {}}


def plan(kills: int, seed: int, profiles: dict[str, Profile], kinds: tuple[str, ...],
         random_share: float = 0.2) -> list[Attempt]:
    """Seeded. ``random_share`` of the kills land at a uniform instant of a run (kinds in
    turn); the others at a named crash point: the least-hit name first, in the job kind that
    reached it least, at its n-th hit (uniform over the hits an uninterrupted run makes), so
    every name gets its share however many kinds pass it."""
    rng = random.Random(seed)
    by_name: dict[str, list[str]] = {}
    for kind in kinds:
        for point in profiles[kind].hits:
            by_name.setdefault(point, []).append(kind)
    per_name: Counter = Counter()
    per_pair: Counter = Counter()
    random_turn = 0
    out = []
    for i in range(kills):
        if not by_name or rng.random() < random_share:
            kind = kinds[random_turn % len(kinds)]
            random_turn += 1
            out.append(Attempt(i, kind, "random",
                               delay_s=rng.uniform(0.2, profiles[kind].seconds)))
            continue
        fewest = min(per_name[n] for n in by_name)
        name = rng.choice(sorted(n for n in by_name if per_name[n] == fewest))
        least = min(per_pair[(k, name)] for k in by_name[name])
        kind = rng.choice([k for k in by_name[name] if per_pair[(k, name)] == least])
        per_name[name] += 1
        per_pair[(kind, name)] += 1
        nth = rng.randint(1, profiles[kind].hits[name])
        out.append(Attempt(i, kind, "point", phase=f"{name}:{nth}"))
    return out


def summarize(attempts: list[Attempt], seconds: float) -> dict:
    by_kind = Counter(a.kind for a in attempts if a.killed)
    by_phase = Counter(a.phase.split(":")[0] for a in attempts if a.killed and a.mode == "point")
    by_kind_phase = Counter(f"{a.kind} {a.phase.split(':')[0]}" for a in attempts
                            if a.killed and a.mode == "point")
    return {"attempts": len(attempts), "kills": sum(a.killed for a in attempts),
            "random_kills": sum(a.killed and a.mode == "random" for a in attempts),
            "point_kills": sum(a.killed and a.mode == "point" for a in attempts),
            "ran_to_end": sum(not a.killed for a in attempts),
            "failures": [a.log_line() for a in attempts if a.problems],
            "kills_by_kind": dict(sorted(by_kind.items())),
            "kills_by_point": dict(sorted(by_phase.items())),
            "kills_by_kind_and_point": dict(sorted(by_kind_phase.items())),
            "seconds": round(seconds, 1)}


def markdown_report(summary: dict) -> str:
    """The summary as the tables docs/reliability.md shows."""
    lines = [f"{summary['kills']} kills of {summary['attempts']} attempts (seed "
             f"{summary.get('seed')}): {summary['point_kills']} at named crash points, "
             f"{summary['random_kills']} at random instants; {len(summary['failures'])} "
             f"failures; {summary['seconds'] / 60:.0f} minutes.", "",
             "| job kind | kills |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in summary["kills_by_kind"].items()]
    lines += ["", "| crash point | kills | by job kind |", "|---|---|---|"]
    pairs = summary["kills_by_kind_and_point"]
    for point, n in summary["kills_by_point"].items():
        kinds = ", ".join(f"{kp.split(' ')[0]} {v}" for kp, v in pairs.items()
                          if kp.split(" ", 1)[1] == point)
        lines.append(f"| `{point}` | {n} | {kinds} |")
    if summary["failures"]:
        lines += ["", "Failures:", ""] + [f"- `{f}`" for f in summary["failures"]]
    return "\n".join(lines) + "\n"


def run_harness(kills: int, seed: int, work: Path, *, kinds: tuple[str, ...] = KINDS,
                workers: int = 1, log=print, keep_failed: Path | None = None,
                random_share: float = 0.2) -> dict:
    """Prepare, profile every kind, run ``kills`` seeded kills; returns the summary."""
    import torch

    torch.set_num_threads(1)
    for name in ("MISTUDIO_CRASH_AT", "MISTUDIO_CRASH_TRACE"):
        os.environ.pop(name, None)
    t0 = time.monotonic()
    base = prepare_base(work / "setup")
    s = open_studio(Path(base.data))
    try:
        base_ids = record_ids(s)
    finally:
        s.close(timeout=30)
    scratch = work / "runs"
    profiles = {k: profile_kind(k, base, base_ids, scratch) for k in kinds}
    for p in profiles.values():
        log(f"profile {p.kind}: {p.seconds:.1f} s, crash points "
            + ", ".join(f"{k}x{v}" for k, v in sorted(p.hits.items())))
    attempts = plan(kills, seed, profiles, kinds, random_share)
    reference = {k: p.reference for k, p in profiles.items()}
    done = []
    if workers <= 1:
        for a in attempts:
            done.append(run_attempt(a, base, base_ids, reference, scratch, keep_failed))
            log(done[-1].log_line())
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init) as pool:
            futures = [pool.submit(run_attempt, a, base, base_ids, reference, scratch,
                                   keep_failed) for a in attempts]
            for f in futures:
                done.append(f.result())
                log(done[-1].log_line())
    summary = summarize(done, time.monotonic() - t0)
    summary["seed"] = seed
    summary["profiles"] = {k: {"seconds": round(p.seconds, 1), "points": p.hits}
                           for k, p in profiles.items()}
    return summary


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=24, help="kills to run (default 24)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kinds", default=",".join(KINDS),
                    help=f"comma-separated job kinds (default: {','.join(KINDS)})")
    ap.add_argument("--workers", type=int, default=1, help="kills run side by side")
    ap.add_argument("--random-share", type=float, default=0.2,
                    help="share of the kills at a random instant (the rest: crash points)")
    ap.add_argument("--work", default="", help="scratch folder (default: a temporary one)")
    ap.add_argument("--keep-failed", default="", help="copy failed runs' folders here")
    ap.add_argument("--json", default="", help="write the summary to this file")
    ap.add_argument("--markdown", default="", help="write the summary's tables to this file")
    args = ap.parse_args(argv)
    kinds = tuple(k for k in args.kinds.split(",") if k)
    unknown = set(kinds) - set(KINDS)
    if unknown:
        ap.error(f"unknown kinds {sorted(unknown)}; choose from {', '.join(KINDS)}")
    import tempfile

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="kill-harness-"))
    keep = Path(args.keep_failed) if args.keep_failed else None
    try:
        summary = run_harness(args.kills, args.seed, work, kinds=kinds, workers=args.workers,
                              keep_failed=keep, log=lambda m: print(m, flush=True),
                              random_share=args.random_share)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    if args.markdown:
        Path(args.markdown).write_text(markdown_report(summary), encoding="utf-8")
    return 1 if summary["failures"] else 0

