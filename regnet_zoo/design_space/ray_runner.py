"""Run a sweep's trials on Ray Tune (a cluster, or a local Ray instance) with the same trial function.

Every pending trial becomes one Tune trial (a grid over the trial list) that calls
``sweep.run_trial`` with ``cpus_per_trial`` CPUs (and ``gpus_per_trial`` GPUs). A driver-side Tune
callback appends each result to ``<out>/results.jsonl`` the moment it arrives (the same durable,
resumable file as the local runner), so workers need no shared file system and a restarted
sweep skips what is already there. Requires ``ray[tune]`` (``pip install regnet-zoo[ray]``).

A local Ray instance started here dies with this process even after kill -9: Ray fate-shares its
raylet and GCS with the driver on Linux, but its dashboard and runtime-env agents hang on exit when
the raylet vanishes; a small reaper process (``reap_ray_descendants``) kills what is left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from regnet_zoo.design_space.records import RESULTS_NAME, append_jsonl
from regnet_zoo.design_space.sweep import (
    LargeDigitsWarning,
    SweepSummary,
    TrainSettings,
    digits_size_warning,
    failed_record,
    pending_trials,
    run_trial,
)


def _tune_trainable(config: dict[str, Any]) -> None:
    """Tune function trainable: one sweep trial, reported once (the whole record as JSON)."""
    from ray import tune

    rec = run_trial(config["trial"], config["settings"])
    tune.report({"error": rec["error"], "record": json.dumps(rec)})


def _results_callback(results_path: Path, settings: TrainSettings):
    """A Tune callback appending each trial's record (or failure) to ``results_path``; it holds
    only the path (Tune pickles its callbacks) and counts what it wrote."""
    from ray import tune

    class ResultsWriter(tune.Callback):
        def __init__(self):
            self.finished = self.failed = 0

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if "record" in result:
                append_jsonl(results_path, json.loads(result["record"]))
                self.finished += 1

        def on_trial_error(self, iteration, trials, trial, **info):
            message = "the trial raised (see the Ray logs)"
            try:  # the traceback Ray saved, when this driver can read it
                path = trial.error_file
                message = Path(path).read_text()[-2000:] if path and Path(path).is_file() else str(trial.get_error())
            except Exception:  # noqa: BLE001 (a message is all we need; Ray's API varies by version)
                pass
            append_jsonl(results_path, failed_record(trial.config["trial"], settings, f"Ray trial error: {message}"))
            self.failed += 1

    return ResultsWriter()


def _ray_descendants(root: int) -> dict[int, str]:
    """Ray processes (``ray`` in the command line) below ``root``: pid -> start time (Linux /proc)."""
    parent: dict[int, int] = {}
    start: dict[int, str] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parent[int(d.name)], start[int(d.name)] = int(fields[1]), fields[19]
    out, todo = {}, [root]
    while todo:
        p = todo.pop()
        for child in [c for c, pp in parent.items() if pp == p]:
            todo.append(child)
            try:
                if b"ray" in Path(f"/proc/{child}/cmdline").read_bytes():
                    out[child] = start[child]
            except OSError:
                pass
    return out


def reap_ray_descendants(driver: int, poll_s: float = 0.5) -> None:
    """Run in a child of ``driver``: note the driver's Ray descendants every ``poll_s`` s and, once the
    driver is gone, SIGKILL those still alive (same pid and start time). Linux only."""
    known: dict[int, str] = {}
    while os.getppid() == driver:
        known.update(_ray_descendants(driver))
        known.pop(os.getpid(), None)
        time.sleep(poll_s)
    for pid, started in known.items():
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19] == started:
                os.kill(pid, signal.SIGKILL)
        except (OSError, IndexError):
            pass


def _start_reaper() -> subprocess.Popen | None:
    if not sys.platform.startswith("linux"):
        return None
    code = f"from regnet_zoo.design_space.ray_runner import reap_ray_descendants; reap_ray_descendants({os.getpid()})"
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL, start_new_session=True)


def run_sweep_ray(
    trials: list[dict[str, Any]],
    out_dir: str | os.PathLike,
    settings: TrainSettings | None = None,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    cpus_per_trial: int | None = None,
    gpus_per_trial: float = 0,
    max_concurrent: int = 0,
) -> SweepSummary:
    """Train the pending trials on Ray Tune; see the module docstring.

    ``address`` joins an existing cluster (``"auto"`` or ``"ray://host:10001"``); otherwise a local
    Ray instance is started with ``num_cpus`` CPUs (all if None) unless one is already running.
    ``cpus_per_trial`` defaults to ``settings.threads``; ``max_concurrent`` 0 = as resources allow.
    """
    import ray
    from ray import tune

    settings = settings or TrainSettings()
    out = Path(out_dir).resolve()
    results_path = out / RESULTS_NAME
    todo, skipped = pending_trials(trials, results_path, settings)
    if (msg := digits_size_warning(todo, settings)) is not None:
        warnings.warn(msg, LargeDigitsWarning, stacklevel=2)
    t0 = time.perf_counter()
    if not todo:
        return SweepSummary(len(trials), skipped, 0, 0, results_path, 0.0)
    started_here, reaper = False, None
    if not ray.is_initialized():
        if address:
            ray.init(address=address)
        else:
            reaper = _start_reaper()
            try:
                ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
            except BaseException:
                if reaper is not None:
                    reaper.terminate()
                raise
        started_here = True
    cpus = cpus_per_trial or settings.threads
    out.mkdir(parents=True, exist_ok=True)
    writer = _results_callback(results_path, settings)
    try:
        tuner = tune.Tuner(
            tune.with_resources(_tune_trainable, {"cpu": cpus, "gpu": gpus_per_trial}),
            param_space={"trial": tune.grid_search(todo), "settings": settings.as_dict()},
            tune_config=tune.TuneConfig(num_samples=1, max_concurrent_trials=max_concurrent or None),
            run_config=tune.RunConfig(
                name=f"sweep-{int(time.time())}", storage_path=str(out / "ray"), callbacks=[writer], verbose=0,
                failure_config=tune.FailureConfig(max_failures=0, fail_fast=False)),
        )
        tuner.fit()
    finally:
        if started_here:
            ray.shutdown()
        if reaper is not None:
            reaper.terminate()
            reaper.wait()
    return SweepSummary(len(trials), skipped, writer.finished, writer.failed, results_path,
                        time.perf_counter() - t0)
