"""The same trial function as Ray tasks, on a local Ray instance (2 CPUs, no dashboard)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from regnet_zoo.design_space import read_jsonl, run_sweep_ray, write_jsonl_atomic
from regnet_zoo.design_space.records import append_jsonl

from .conftest import FAST, tiny_trials

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # each test starts a local Ray instance (tens of seconds)


def test_ray_runs_pending_trials(tmp_path):
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


def _tree(root: int) -> set[int]:
    """All live descendants of ``root`` (Linux /proc)."""
    parent = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                pass
    out, todo = set(), [root]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out.update(kids)
        todo += kids
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "XZ"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process table from /proc")
def test_kill_9_leaves_no_ray_processes(tmp_path):
    # Ray's own fate sharing ends raylet and GCS with the driver, but its dashboard and runtime-env
    # agents hang on exit; the runner's reaper must leave nothing of the local instance behind
    tfile = write_jsonl_atomic(tmp_path / "t.jsonl", tiny_trials(3))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "regnet_zoo", "sweep", "train", str(tfile), "--out", str(out), "--engine", "ray",
           "--ray-num-cpus", "1", "--epochs", "2", "--batch-size", "32", "--limit-train-batches", "30",
           "--limit-val-batches", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results, seen = out / "results.jsonl", set()
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not (results.exists() and results.read_bytes().count(b"\n") >= 1):
            seen |= _tree(proc.pid)
            time.sleep(0.2)
        seen |= _tree(proc.pid)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert len(seen) >= 4  # reaper, GCS, raylet, agents, a worker
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(p) for p in seen):
        time.sleep(0.1)
    assert [p for p in seen if _alive(p)] == []
    assert len(read_jsonl(results)) >= 1
