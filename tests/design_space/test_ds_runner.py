"""Sweep runner: the Lightning trial function, parallel workers, resume after kill -9, failures."""

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from regnet_zoo.design_space import (
    SweepFileError,
    TrainSettings,
    read_jsonl,
    run_sweep,
    run_trial,
    write_jsonl_atomic,
)
from regnet_zoo.design_space.records import append_jsonl
from regnet_zoo.design_space.sweep import pending_trials

from .conftest import FAST, tiny_trials


def test_trial_trains_and_records():
    trial = tiny_trials(2)[1]
    rec = run_trial(trial, TrainSettings(epochs=2, batch_size=32))
    assert rec["status"] == "ok" and rec["id"] == trial["id"] and rec["cfg"] == trial["cfg"]
    assert rec["complexity"] == trial["complexity"] and rec["epochs"] == 2
    # it learns: 10 classes (chance error 90%) -> well below chance after two epochs on the digits
    assert rec["error"] < 70.0 and 0 <= rec["error_top5"] <= rec["error"]
    assert rec["train_time_s"] > 0 and rec["time_s"] >= rec["train_time_s"]
    assert rec["settings"]["epochs"] == 2 and rec["settings"]["data"] == "digits"


@pytest.mark.slow
def test_parallel_workers_then_resume(tmp_path):
    trials = tiny_trials(3)
    seen = []
    s = run_sweep(trials, tmp_path, FAST, workers=2, on_result=seen.append)
    assert (s.finished, s.failed, s.skipped) == (3, 0, 0)
    recs = read_jsonl(tmp_path / "results.jsonl")
    assert sorted(r["id"] for r in recs) == [t["id"] for t in trials] == sorted(r["id"] for r in seen)
    assert all(r["status"] == "ok" and 0 <= r["error"] <= 100 for r in recs)
    again = run_sweep(trials, tmp_path, replace(FAST, threads=2), workers=2)  # threads do not change results
    assert (again.finished, again.skipped) == (0, 3) and len(read_jsonl(tmp_path / "results.jsonl")) == 3
    # results trained with other settings are not mixed in
    with pytest.raises(SweepFileError, match=r"other settings \{'epochs': \(1, 3\)\}"):
        run_sweep(trials + tiny_trials(4)[3:], tmp_path, replace(FAST, epochs=3), workers=2)


def test_failing_trial_is_recorded_and_retried(tmp_path):
    good, bad = tiny_trials(2)
    bad = {**bad, "cfg": {**bad["cfg"], "w0": 12}}  # not a multiple of 8: the model cannot be built
    s = run_sweep([good, bad], tmp_path, FAST, workers=0)
    assert (s.finished, s.failed) == (1, 1)
    failed = [r for r in read_jsonl(tmp_path / "results.jsonl") if r["status"] == "failed"]
    assert failed[0]["id"] == bad["id"] and "w0 must be a positive multiple of q=8" in failed[0]["message"]
    s = run_sweep([good, bad], tmp_path, FAST, workers=0)
    assert (s.skipped, s.failed) == (1, 1)  # failures are retried, finished trials are not


def _children(pid: int) -> list[int]:
    """Ids of the live processes whose parent is ``pid`` (Linux /proc)."""
    kids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and _state_ppid(int(d.name))[1] == pid:
            kids.append(int(d.name))
    return kids


def _state_ppid(pid: int) -> tuple[str, int]:
    """(state letter, parent id) of a process; ("X", 0) when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return "X", 0
    return fields[0], int(fields[1])


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process table from /proc")
def test_kill_9_with_workers_then_resume(tmp_path):
    trials = tiny_trials(3)
    tfile = write_jsonl_atomic(tmp_path / "trials.jsonl", trials)
    out = tmp_path / "run"
    # ~60 steps per trial (seconds): after the first result the next trial is still training at the kill
    cmd = [sys.executable, "-m", "regnet_zoo", "sweep", "train", str(tfile), "--out", str(out), "--workers", "2",
           "--epochs", "2", "--batch-size", "32", "--limit-train-batches", "30", "--limit-val-batches", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = out / "results.jsonl"
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not (results.exists() and results.read_bytes().count(b"\n") >= 1):
            time.sleep(0.05)
        workers = _children(proc.pid)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert len(workers) >= 2  # the two trial workers (and multiprocessing's resource tracker)
    # the workers end with their parent instead of training on as orphans
    deadline = time.time() + 3
    while time.time() < deadline and any(_state_ppid(w)[0] not in "XZ" for w in workers):
        time.sleep(0.05)
    assert [w for w in workers if _state_ppid(w)[0] not in "XZ"] == []
    before = read_jsonl(results)  # parses: no torn line in the middle
    assert len(before) in (1, 2) and len({r["id"] for r in before}) == len(before)
    with open(results, "ab") as f:  # the worst case: killed in the middle of a line
        f.write(b'{"id": "tiny-0002", "status": "o')
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{len(before)} already done" in done.stdout
    after = read_jsonl(results)
    assert sorted(r["id"] for r in after) == [t["id"] for t in trials]  # each exactly once
    assert after[:len(before)] == before


def test_stored_settings_are_compared_without_revalidation(tmp_path):
    trials = tiny_trials(2)
    results = tmp_path / "results.jsonl"
    old = {k: v for k, v in FAST.as_dict().items() if k != "augment"}  # a field added later: its default applies
    append_jsonl(results, {**trials[0], "status": "ok", "error": 5.0, "settings": old})
    assert pending_trials(trials, results, FAST) == ([trials[1]], 1)
    # trained on an image folder that has moved since: the stored settings cannot be re-validated, but
    # the message is the intended one, not TrainSettings' "data must be 'digits' or a folder"
    append_jsonl(results, {**trials[1], "status": "ok", "error": 5.0, "settings": {**old, "data": "moved/images"}})
    with pytest.raises(SweepFileError, match=r"'tiny-0001' was trained with other settings "
                                             r"\{'data': \('moved/images', 'digits'\)\}"):
        pending_trials(trials, results, FAST)


def test_settings_validation():
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        TrainSettings(epochs=0)
    with pytest.raises(ValueError, match="'digits' or an image-folder root"):
        TrainSettings(data="no/such/folder")
    with pytest.raises(ValueError, match=r"unknown train settings \['lr'\]"):
        TrainSettings.from_dict({"lr": 1})
    with pytest.raises(ValueError, match="workers must be an integer >= 0"):
        run_sweep([], "unused", workers=-1)
