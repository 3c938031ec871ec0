"""Fixtures shared by several test folders."""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from regnet_zoo.cli import main

DEMO = Path(__file__).resolve().parents[1] / "recipes" / "demo_digits.yaml"


def pytest_configure(config) -> None:
    """Under pytest-xdist (``-n N``) the N workers share the cores: one thread each, for their subprocesses too."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


@dataclass(frozen=True)
class DemoRun:
    """One run of ``regnet-zoo fit --config recipes/demo_digits.yaml``: exit code, stdout, folders."""

    returncode: int
    stdout: str
    root: Path  # trainer.default_root_dir (checkpoints/)
    exported: Path  # --export_dir: the trained model in save_pretrained format


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> DemoRun:
    """The main job, trained once per session (~35 s on 2 cores) for the tests that need a trained model."""
    root = tmp_path_factory.mktemp("demo_digits")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["fit", "--config", str(DEMO), "--trainer.default_root_dir", str(root),
                   "--trainer.enable_progress_bar", "false", "--export_dir", str(root / "exported")])
    return DemoRun(rc, out.getvalue(), root, root / "exported")
