"""Sweep runner: the Lightning trial function, parallel workers, resume after kill -9, failures."""

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from regnet_zoo.design_space import (
    SweepFileError,
    TrainSettings,
    read_jsonl,
    run_sweep,
    run_trial,
    write_jsonl_atomic,
)

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


def test_kill_9_then_resume(tmp_path):
    trials = tiny_trials(4)
    tfile = write_jsonl_atomic(tmp_path / "trials.jsonl", trials)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "regnet_zoo", "sweep", "train", str(tfile), "--out", str(out), "--workers", "0",
           "--epochs", "1", "--batch-size", "32", "--limit-train-batches", "2", "--limit-val-batches", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = out / "results.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (results.exists() and results.read_bytes().count(b"\n") >= 1):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = read_jsonl(results)
    assert 1 <= len(before) < 4
    with open(results, "ab") as f:  # the worst case: killed in the middle of a line
        f.write(b'{"id": "tiny-0003", "status": "o')
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{len(before)} already done" in done.stdout
    after = read_jsonl(results)
    assert sorted(r["id"] for r in after) == [t["id"] for t in trials]  # each exactly once
    assert after[:len(before)] == before


def test_settings_validation():
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        TrainSettings(epochs=0)
    with pytest.raises(ValueError, match="'digits' or an image-folder root"):
        TrainSettings(data="no/such/folder")
    with pytest.raises(ValueError, match=r"unknown train settings \['lr'\]"):
        TrainSettings.from_dict({"lr": 1})
    with pytest.raises(ValueError, match="workers must be an integer >= 0"):
        run_sweep([], "unused", workers=-1)
