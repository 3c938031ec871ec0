"""The same trial function on Ray Tune, with a local Ray instance (2 CPUs, no dashboard)."""

import pytest

from regnet_zoo.design_space import read_jsonl, run_sweep_ray
from regnet_zoo.design_space.records import append_jsonl

from .conftest import FAST, tiny_trials

ray = pytest.importorskip("ray")


def test_ray_tune_runs_pending_trials(tmp_path):
    trials = tiny_trials(4)
    done = {**trials[0], "status": "ok", "error": 12.5, "settings": FAST.as_dict()}  # finished by an earlier run
    append_jsonl(tmp_path / "results.jsonl", done)
    bad = {**trials[3], "cfg": {**trials[3]["cfg"], "w0": 12}}  # cannot be built: recorded as failed
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        s = run_sweep_ray(trials[:3] + [bad], tmp_path, FAST, cpus_per_trial=1)
    finally:
        ray.shutdown()
    assert (s.finished, s.failed, s.skipped) == (2, 1, 1)
    recs = read_jsonl(tmp_path / "results.jsonl")
    assert recs[0] == done and sorted(r["id"] for r in recs) == [t["id"] for t in trials]
    ok = sorted((r for r in recs[1:] if r["status"] == "ok"), key=lambda r: r["id"])
    for r, t in zip(ok, trials[1:3], strict=True):
        assert 0 <= r["error"] <= 100 and r["cfg"] == t["cfg"] and r["settings"]["limit_train_batches"] == 2
    failed = [r for r in recs if r["status"] == "failed"]
    assert failed[0]["id"] == bad["id"] and "w0 must be a positive multiple of q=8" in failed[0]["message"]
    # nothing left to do (the failed trial is not in this list): returns without starting Ray
    assert run_sweep_ray(trials[:3], tmp_path, FAST).skipped == 3 and not ray.is_initialized()
