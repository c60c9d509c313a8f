"""The kill harness's short seeded set (CI): real CLI jobs SIGKILLed at named crash points and
at a random instant, then the store, the artifacts and the resumed results checked
(tests/reliability/kill_harness.py says what; docs/reliability.md has the long run).

Each case is a window where the harness found a fault (docs/reliability.md): the training
row behind its newest checkpoint, a metrics line torn in half, the analysis's sums newer than
its checkpoint, its result arrays half moved out of work/, a re-run analysis that ends at once
before its row names its job, a re-tokenization's old folder set aside, a generation's temp
file and its row; and a finished import whose row was not told.
"""

from __future__ import annotations

import random

import pytest

from tests.reliability import kill_harness as kh

CASES = [
    ("train", "train.checkpoint.renamed:2"),
    ("train", "train.metrics.append:3"),
    ("analyze", "analyze.stream.checkpoint:2"),
    ("analyze", "analyze.arrays.move:5"),
    ("analyze", "job.row.final:1"),
    ("tokenize", "atomic.dir.swap:1"),
    ("import", "import.row.ready:1"),
    ("steer", "steer.row:2"),
    ("steer", "atomic.file.replace:1"),
]


def _reference(harness, kind):
    return kh.reference_for(harness, kind)


def _attempt(harness, attempt):
    refs = _reference(harness, attempt.kind)
    return kh.run_attempt(attempt, harness["base"], harness["ids"], refs, harness["scratch"])


@pytest.mark.timeout(400)
@pytest.mark.parametrize("kind,point", CASES, ids=[f"{k}-{p}" for k, p in CASES])
def test_killed_at_a_crash_point_loses_nothing_and_resumes_exactly(harness, one_torch_thread,
                                                                  kind, point):
    done = _attempt(harness, kh.Attempt(0, kind, "point", phase=point))
    assert done.killed, f"the crash point {point} was not reached (rc {done.returncode})"
    assert not done.problems, done.log_line()


@pytest.mark.timeout(400)
def test_killed_at_a_random_instant(harness, one_torch_thread):
    rng = random.Random(17)  # seeded: the same instant every run
    delay = rng.uniform(4.0, 9.0)  # past the imports: inside the training most of the time
    done = _attempt(harness, kh.Attempt(0, "train", "random", delay_s=delay))
    assert not done.problems, done.log_line()


def test_the_plan_covers_every_point_evenly():
    """The long run's planner: seeded, each name's kills spread over the kinds reaching it,
    every name hit before any is hit twice."""
    profiles = {
        "a": kh.Profile("a", {"x": 3, "shared": 1}, 5.0, {}),
        "b": kh.Profile("b", {"y": 2, "shared": 1}, 5.0, {}),
    }
    one = kh.plan(60, 3, profiles, ("a", "b"), random_share=0.2)
    assert [a.phase for a in one] == [a.phase for a in kh.plan(60, 3, profiles, ("a", "b"),
                                                               random_share=0.2)]
    points = [a for a in one if a.mode == "point"]
    counts = kh.Counter(a.phase.split(":")[0] for a in points)
    assert set(counts) == {"x", "y", "shared"} and max(counts.values()) - min(counts.values()) <= 1
    shared = kh.Counter(a.kind for a in points if a.phase.startswith("shared"))
    assert abs(shared["a"] - shared["b"]) <= 1
    for a in points:  # the n-th hit exists in an uninterrupted run
        name, nth = a.phase.split(":")
        assert 1 <= int(nth) <= profiles[a.kind].hits[name]
    randoms = [a for a in one if a.mode == "random"]
    assert randoms and all(0.2 <= a.delay_s <= 5.0 for a in randoms)
