"""Byte-exact resumption under random cuts: each trial cuts its connection
(FIN or RST) one to five times at random offsets and resumes through tus or
the IETF draft; the application gets exactly one request per upload, with
the exact body.  A bounded count here; benchmarks/bench_resumable.py runs
the full 1000 trials of up to 8 MiB."""
from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from resumable_support import Recorder, serving
from resumable_trial import run_trial

TRIALS = 24
MAX_SIZE = 1024 * 1024


@pytest.mark.parametrize("door", ["server", "werkzeug"])
def test_random_cuts_resume_byte_exact_and_call_the_app_once(door: str, tmp_path: Path) -> None:
    app = Recorder()
    rng = random.Random(f"resumable-{door}")
    with serving(door, app, resumable_dir=str(tmp_path)) as port:
        outcomes = [run_trial(port, rng, MAX_SIZE) for _ in range(TRIALS)]
    assert {o.protocol for o in outcomes} == {"tus", "ietf"}
    assert sum(len(o.cuts) for o in outcomes) >= TRIALS
    calls = Counter(call.upload["id"] for call in app.calls)
    assert len(app.calls) == TRIALS and set(calls.values()) == {1}
    received = {call.upload["id"]: (call.size, call.body_sha256) for call in app.calls}
    for outcome in outcomes:
        assert received[outcome.upload_id] == (outcome.size, outcome.sha256), outcome
