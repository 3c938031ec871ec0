"""Fixtures shared by several test folders."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from regnet_zoo.cli import main

ROOT = Path(__file__).resolve().parents[1]
DEMO_COMMAND = "regnet-zoo fit --config recipes/demo_digits.yaml"  # the main job, as the docs show it
DEMO_ROOT = "runs/demo_digits"  # the recipe's trainer.default_root_dir, relative to the cwd


def pytest_configure(config) -> None:
    """Under pytest-xdist (``-n N``) the N workers share the cores: one thread each, for their subprocesses too."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


@dataclass(frozen=True)
class DemoRun:
    """One run of ``DEMO_COMMAND``: its exit code, stdout and run folder (``checkpoints/best.ckpt``, ...)."""

    returncode: int
    stdout: str
    root: Path  # the folder of DEMO_ROOT


def _train_demo(folder: Path) -> tuple[int, str]:
    """Run ``DEMO_COMMAND`` as written, in-process, with ``folder`` (given a link to ``recipes/``) as the cwd.

    Returns the exit code and stdout; the run's files are under ``folder / DEMO_ROOT``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "recipes").symlink_to(ROOT / "recipes", target_is_directory=True)
    out = io.StringIO()
    with contextlib.chdir(folder), contextlib.redirect_stdout(out):
        rc = main(shlex.split(DEMO_COMMAND)[1:])
    return rc, out.getvalue()


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> DemoRun:
    """The main job, trained once per test run (~35 s on 2 cores) for the tests that need a trained model
    and for the docs test, which shows this command.

    Under pytest-xdist the first worker to ask trains it in the run's shared temporary folder while the
    others wait on a file lock, then read its result (the pattern of pytest-xdist's documentation).
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        folder = tmp_path_factory.mktemp("demo")
        rc, stdout = _train_demo(folder)
    else:
        folder = tmp_path_factory.getbasetemp().parent / "demo"  # one folder for all workers of this run
        result = folder.with_suffix(".json")
        with FileLock(str(result) + ".lock"):
            if not result.is_file():
                result.write_text(json.dumps(_train_demo(folder)))
            rc, stdout = json.loads(result.read_text())
    return DemoRun(rc, stdout, folder / DEMO_ROOT)
