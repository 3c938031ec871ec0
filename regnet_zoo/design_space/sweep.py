"""Sweep runner: train every trial briefly with the Lightning recipe and record its error.

``run_trial`` (one trial: ``RegNetClassifier`` fitted by a plain ``lightning.Trainer``) runs in worker
processes on this machine (``run_sweep``) or as Ray tasks (``run_sweep_ray``: a cluster or a local Ray
instance; ``pip install regnet-zoo[ray]``). Either way the driver appends each result to a resumable
``<out>/results.jsonl`` as it arrives, so workers need no shared file system. A sweep killed with -9
leaves nothing running: local workers end with their parent, and a local Ray instance started here
ends with its driver (Ray fate-shares raylet and GCS with it on Linux; its dashboard and runtime-env
agents, which hang on exit when the raylet vanishes, are killed by a small reaper process,
``reap_ray_descendants``). torch, Lightning and Ray are imported when a trial runs.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import ctypes
import functools
import logging
import multiprocessing
import os
import platform
import signal
import subprocess
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from regnet_zoo.design_space.records import RESULTS_NAME, SweepFileError, append_jsonl, finished_ids, read_jsonl


def _batches(text: str) -> int | float:
    """A Lightning ``limit_*_batches`` from the command line: a count (>= 1) or a fraction of the batches."""
    value = float(text)
    return int(value) if value >= 1 else value


def _setting(default: Any, help: str, **cli: Any) -> Any:
    """A ``TrainSettings`` field; its metadata is its ``sweep train`` option (``help``, ``type``, ``flag``)."""
    return field(default=default, metadata={"help": help, **cli})


@dataclass(frozen=True)
class TrainSettings:
    """How each trial is trained (the same for every trial of a sweep); each field's help says what it is."""

    data: str = _setting("digits", "'digits' (scikit-learn's embedded 8x8 digits) or an image folder with "
                                   "train/ and val/")
    epochs: int = _setting(5, "training epochs per model (the schedule length too)")
    batch_size: int = _setting(64, "images per step")
    base_lr: float = _setting(0.2, "base LR per 128 images (scaled with the batch)", flag="--lr")
    warmup_epochs: float = _setting(1.0, "linear warmup epochs (the recipe's 5 are too long for short sweeps)")
    zero_init_last: bool = _setting(True, "zero-init each residual branch's last BN, so every block starts as "
                                          "the identity (default on: deep nets train in few epochs)")
    weight_decay: float = _setting(5e-5, "SGD weight decay")
    image_size: int | None = _setting(None, "input side in pixels (default: each trial's sampling resolution; "
                                            "sample at 32 px for the digits)", type=int)
    seed: int = _setting(0, "seed of weights init and data order (the same for every trial)")
    threads: int = _setting(1, "torch threads per trial (= Ray CPUs per trial)")
    augment: bool = _setting(False, "random affine jitter of the digits")
    accelerator: str = _setting("cpu", "Lightning accelerator: cpu, gpu, auto")
    num_workers: int = _setting(0, "data loader workers per trial (0: load in the trial's process)")
    limit_train_batches: int | float | None = _setting(None, "(smoke tests) batches per epoch, a count or a "
                                                             "fraction (default: all)", type=_batches)
    limit_val_batches: int | float | None = _setting(None, "(smoke tests) validation batches", type=_batches)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not self.base_lr > 0:
            raise ValueError(f"base_lr must be > 0, got {self.base_lr!r}")
        if self.data != "digits" and not Path(self.data).is_dir():
            raise ValueError(f"data must be 'digits' or an image-folder root with train/ and val/, got {self.data!r}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainSettings:
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise ValueError(f"unknown train settings {unknown}; allowed: {sorted(allowed)}")
        return cls(**d)


def _quiet_lightning() -> None:
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "lightning_utilities"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*litlogger.*")  # case-insensitive: LitLogger too


def run_trial(trial: dict[str, Any], settings: dict[str, Any] | TrainSettings) -> dict[str, Any]:
    """Train one trial's model; returns the trial's fields plus the result fields (status "ok").

    Result fields: ``error`` and ``error_top5`` (validation top-1/top-5 error, %), ``val_loss``,
    ``train_loss``, ``train_time_s`` (fit wall time), ``time_s`` (whole trial), ``epochs``,
    ``settings``, ``host``, ``finished_at`` (Unix time).
    """
    _quiet_lightning()  # before Lightning is imported
    import lightning as L
    import torch

    from regnet_zoo.lightning import DigitsDataModule, ImageFolderDataModule, RegNetClassifier

    settings = settings if isinstance(settings, TrainSettings) else TrainSettings.from_dict(settings)
    torch.set_num_threads(settings.threads)
    t0 = time.perf_counter()
    L.seed_everything(settings.seed, verbose=False)
    in_chans = int(trial.get("in_chans", 3))
    model = RegNetClassifier(model=trial["cfg"], num_classes=int(trial["num_classes"]), in_chans=in_chans,
                             base_lr=settings.base_lr, warmup_epochs=settings.warmup_epochs,
                             weight_decay=settings.weight_decay, zero_init_last=settings.zero_init_last)
    loading = {"image_size": settings.image_size or int(trial["resolution"]), "batch_size": settings.batch_size,
               "seed": settings.seed, "num_workers": settings.num_workers}
    data = DigitsDataModule(in_chans=in_chans, augment=settings.augment, **loading) if settings.data == "digits" \
        else ImageFolderDataModule(root=settings.data, pin_memory=False, **loading)
    trainer = L.Trainer(
        max_epochs=settings.epochs, accelerator=settings.accelerator, devices=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, check_val_every_n_epoch=settings.epochs,
        limit_train_batches=settings.limit_train_batches, limit_val_batches=settings.limit_val_batches)
    t1 = time.perf_counter()
    trainer.fit(model, datamodule=data)
    train_time = time.perf_counter() - t1
    m = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    if "val/acc1" not in m:
        raise RuntimeError(f"trial {trial.get('id')}: no validation accuracy after training (metrics: {sorted(m)})")
    return {
        **trial,
        "status": "ok",
        "error": 100.0 * (1.0 - m["val/acc1"]),
        "error_top5": 100.0 * (1.0 - m.get("val/acc5", float("nan"))),
        "val_loss": m.get("val/loss"),
        "train_loss": m.get("train/loss_epoch"),
        "epochs": int(trainer.current_epoch),
        "train_time_s": train_time,
        "time_s": time.perf_counter() - t0,
        "settings": settings.as_dict(),
        "host": platform.node(),
        "finished_at": time.time(),
    }


def failed_record(trial: dict[str, Any], settings: TrainSettings, exc: BaseException) -> dict[str, Any]:
    """The results line of a trial that raised (it is retried on the next run)."""
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return {**trial, "status": "failed", "message": text[-2000:], "settings": settings.as_dict(),
            "host": platform.node(), "finished_at": time.time()}


def exit_with_parent(parent_pid: int, poll_s: float = 0.5) -> None:
    """End this worker as soon as ``parent_pid`` (its sweep) is gone: the kernel sends SIGKILL (Linux
    ``PR_SET_PDEATHSIG``), and on every platform a daemon thread exits when ``os.getppid()`` changes
    (checked every ``poll_s`` seconds)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # no prctl in this libc: the polling thread still works
            pass
    if os.getppid() != parent_pid:  # the parent died before we got here
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _worker_init(threads: int, parent_pid: int) -> None:
    exit_with_parent(parent_pid)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))  # before the trial imports torch


def _proc_stat(pid: int | str) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (state, ppid, ...; Linux)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _ray_descendants(root: int) -> dict[int, str]:
    """Ray processes (``ray`` in the command line) below ``root``: pid -> start time (Linux /proc)."""
    stats: dict[int, list[str]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                stats[int(d.name)] = _proc_stat(d.name)
    out, todo = {}, [root]
    while todo:
        parent = str(todo.pop())
        for child in [c for c, stat in stats.items() if stat[1] == parent]:
            todo.append(child)
            with contextlib.suppress(OSError):
                if b"ray" in Path(f"/proc/{child}/cmdline").read_bytes():
                    out[child] = stats[child][19]  # start time: a reused pid is not killed
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
        with contextlib.suppress(OSError, IndexError):
            if _proc_stat(pid)[19] == started:
                os.kill(pid, signal.SIGKILL)


DIGITS_IMAGES = 1797  # scikit-learn's digits: 8 x 8 px each
DIGITS_LARGE_SIZE = 64  # px: above this, training on the digits warns


class LargeDigitsWarning(UserWarning):
    """Digits would be trained at a large resolution (slow, memory-hungry, no gain)."""


def digits_size_warning(trials: list[dict[str, Any]], settings: TrainSettings) -> str | None:
    """A warning text when ``settings`` would train ``trials`` on the digits above ``DIGITS_LARGE_SIZE``
    pixels (each trial trains at ``settings.image_size`` or its sampling resolution), else None."""
    if settings.data != "digits" or not trials:
        return None
    size = max(settings.image_size or int(t["resolution"]) for t in trials)
    if size <= DIGITS_LARGE_SIZE:
        return None
    chans = max(int(t.get("in_chans", 3)) for t in trials)
    gib = DIGITS_IMAGES * chans * size ** 2 * 4 / 2 ** 30
    return (f"training on the 8x8 digits at {size} px: the upsampled images alone take {gib:.1f} GiB per trial "
            f"and every step costs about {(size / 32) ** 2:.0f}x the compute of 32 px, for no more information. "
            "Sample the trials at 32 px so the flops band refers to what is trained: `regnet-zoo sweep sample "
            "--space SPACE --flops 4e6:6e6 --resolution 32 --num-classes 10 ...` (the paper's 360-400 MF band at "
            "224 px scales to about 8 MF at 32 px); `--image-size 32` would train these trials at 32 px, but "
            "their flops then lie outside the sampled band.")


@dataclass
class SweepSummary:
    """What one ``run_sweep`` or ``run_sweep_ray`` call did."""

    total: int  # trials in the list
    skipped: int  # already finished before this run
    finished: int  # finished in this run
    failed: int  # raised in this run (recorded as "failed", retried next run)
    results_path: Path
    wall_s: float


# settings that only change how fast a trial runs, not its result
_RUNTIME_ONLY = ("threads", "num_workers", "accelerator")


def _recipe(settings: dict[str, Any] | TrainSettings) -> dict[str, Any]:
    """Settings that decide a trial's result, normalised (missing fields at their defaults) but not
    re-validated: a stored ``data`` folder that has moved since must not make reading results fail."""
    d = settings.as_dict() if isinstance(settings, TrainSettings) else dict(settings)
    full = {f.name: d.pop(f.name, f.default) for f in fields(TrainSettings)}
    full.update(d)  # fields unknown to this version stay, and differ from the current settings
    return {k: v for k, v in full.items() if k not in _RUNTIME_ONLY}


def pending_trials(trials: list[dict[str, Any]], results_path: Path,
                   settings: TrainSettings | None = None) -> tuple[list[dict[str, Any]], int]:
    """Trials without an ``ok`` result in ``results_path``, and how many were skipped.

    With ``settings``, raises ``SweepFileError`` when finished results were trained otherwise (other
    epochs, LR, data...): their errors would not be comparable.
    """
    results = read_jsonl(results_path) if results_path.exists() else []
    done = finished_ids(results, trials)
    if settings is not None:
        want = _recipe(settings)
        for r in results:
            was = _recipe(r["settings"]) if r.get("status") == "ok" and "settings" in r else want
            if was != want:
                diff = {k: (was.get(k), want.get(k)) for k in sorted(set(was) | set(want)) if was.get(k) != want.get(k)}
                raise SweepFileError(
                    f"{results_path}: trial {r.get('id')!r} was trained with other settings {diff} "
                    "(results: was, now); use another --out folder or the same settings")
    todo = [t for t in trials if t["id"] not in done]
    return todo, len(trials) - len(todo)


# what an engine yields as trials finish: (trial, a call returning its record or raising its error)
Results = Iterator[tuple[dict[str, Any], Callable[[], dict[str, Any]]]]


def _sweep(trials: list[dict[str, Any]], out_dir: str | os.PathLike, settings: TrainSettings | None,
           engine: Callable[[list[dict[str, Any]], TrainSettings], Results],
           on_result: Callable[[dict[str, Any]], None] | None) -> SweepSummary:
    """Both engines' driver: runs ``engine`` on the pending trials and appends each record (or its
    ``failed_record``) to ``<out_dir>/results.jsonl`` the moment it finishes, then calls ``on_result``."""
    settings = settings or TrainSettings()
    results_path = Path(out_dir) / RESULTS_NAME
    todo, skipped = pending_trials(trials, results_path, settings)
    if (msg := digits_size_warning(todo, settings)) is not None:
        warnings.warn(msg, LargeDigitsWarning, stacklevel=3)
    t0 = time.perf_counter()
    finished = failed = 0
    if todo:
        with contextlib.closing(engine(todo, settings)) as results:
            for trial, result in results:
                try:
                    rec = result()
                except Exception as e:  # noqa: BLE001 (a failing model must not stop the sweep)
                    rec = failed_record(trial, settings, e)
                append_jsonl(results_path, rec)
                finished += rec["status"] == "ok"
                failed += rec["status"] != "ok"
                if on_result is not None:
                    on_result(rec)
    return SweepSummary(len(trials), skipped, finished, failed, results_path, time.perf_counter() - t0)


def _local_results(todo: list[dict[str, Any]], settings: TrainSettings, workers: int) -> Results:
    if workers == 0:
        for t in todo:
            yield t, functools.partial(run_trial, t, settings)
        return
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                  initializer=_worker_init, initargs=(settings.threads, os.getpid()))
    try:
        futures = {pool.submit(run_trial, t, settings): t for t in todo}
        for fut in cf.as_completed(futures):
            yield futures[fut], fut.result
    except BaseException:  # also GeneratorExit: the driver stopped early
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def run_sweep(
    trials: list[dict[str, Any]],
    out_dir: str | os.PathLike,
    settings: TrainSettings | None = None,
    *,
    workers: int = 1,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> SweepSummary:
    """Train the pending trials, ``workers`` processes at a time (0: in this process); each record is
    appended to ``<out_dir>/results.jsonl`` as it finishes (a durable line) and passed to ``on_result``."""
    if not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be an integer >= 0, got {workers!r}")
    return _sweep(trials, out_dir, settings, functools.partial(_local_results, workers=workers), on_result)


def _ray_results(todo: list[dict[str, Any]], settings: TrainSettings, *, address: str | None,
                 num_cpus: int | None, cpus_per_trial: int | None, gpus_per_trial: float,
                 max_concurrent: int) -> Results:
    import ray

    started_here = not ray.is_initialized()
    reaper = None
    if started_here and not address and sys.platform.startswith("linux"):
        code = f"from regnet_zoo.design_space.sweep import reap_ray_descendants; reap_ray_descendants({os.getpid()})"
        reaper = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        if started_here and address:
            ray.init(address=address)
        elif started_here:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        task = ray.remote(num_cpus=cpus_per_trial or settings.threads, num_gpus=gpus_per_trial)(run_trial)
        waiting, running = list(todo), {}
        while waiting or running:
            while waiting and len(running) < (max_concurrent or len(todo)):
                trial = waiting.pop(0)
                running[task.remote(trial, settings)] = trial
            [ref], _ = ray.wait(list(running))
            yield running.pop(ref), functools.partial(ray.get, ref)
    finally:
        if started_here:
            ray.shutdown()
        if reaper is not None:
            reaper.terminate()
            reaper.wait()


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
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> SweepSummary:
    """``run_sweep`` with each pending trial a Ray task of ``cpus_per_trial`` CPUs (default
    ``settings.threads``) and ``gpus_per_trial`` GPUs, ``max_concurrent`` at a time (0: as resources allow).

    ``address`` joins an existing cluster (``"auto"`` or ``"ray://host:10001"``); otherwise a local
    Ray instance is started with ``num_cpus`` CPUs (all if None) unless one is already running.
    """
    engine = functools.partial(_ray_results, address=address, num_cpus=num_cpus, cpus_per_trial=cpus_per_trial,
                               gpus_per_trial=gpus_per_trial, max_concurrent=max_concurrent)
    return _sweep(trials, out_dir, settings, engine, on_result)
