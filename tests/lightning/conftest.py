"""Shared fixtures of the Lightning tests: a tiny RegNet, fast digits data, quiet trainers."""

from __future__ import annotations

import logging
import warnings

import pytest

# 3 stages (widths 8, 16, 32), 4 blocks: trains on 16x16 digits in a second per epoch on one core.
TINY_CFG = {"type": "regnet", "depth": 4, "w0": 8, "wa": 8.0, "wm": 2.0, "group_width": 8}


@pytest.fixture
def tiny_cfg() -> dict:
    return dict(TINY_CFG)


@pytest.fixture
def trainer_kwargs(tmp_path) -> dict:
    """Quiet single-CPU trainer settings writing under tmp_path."""
    return dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                default_root_dir=str(tmp_path), num_sanity_val_steps=0)


@pytest.fixture(autouse=True)
def _quiet_lightning():
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        yield
